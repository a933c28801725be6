"""Surrogates of latency, energy and peak power with calibrated uncertainty.

Fifth stage of the data flow, after ``profile`` (its measurements).
"""

import lazy_loader

# Names load with their submodule on first use (lazy_loader), so that importing a light
# part of the package, or the CLI, does not import torch and friends.
__getattr__, __dir__, __all__ = lazy_loader.attach(
    __name__,
    submod_attrs={
        "base": [
            "InputShapeError",
            "Prediction",
            "Surrogate",
            "SurrogateError",
            "conformal_quantile",
        ],
        "device": [
            "METRICS",
            "DeviceSurrogate",
            "cross_validate",
            "make_surrogate",
            "predict_measured",
            "scores",
        ],
        "features": [
            "architecture_features",
            "feature_matrix",
            "feature_names",
            "shaped_feature_matrix",
        ],
        "gbdt": ["GBDTEnsemble"],
    },
)
