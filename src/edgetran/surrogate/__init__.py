"""Surrogates of latency, energy and peak power with calibrated uncertainty."""

from edgetran.surrogate.base import Prediction, Surrogate, SurrogateError, conformal_quantile
from edgetran.surrogate.device import (
    METRICS,
    DeviceSurrogate,
    cross_validate,
    make_surrogate,
    scores,
)
from edgetran.surrogate.features import architecture_features, feature_matrix, feature_names
from edgetran.surrogate.gbdt import GBDTEnsemble

__all__ = [
    "METRICS",
    "DeviceSurrogate",
    "GBDTEnsemble",
    "Prediction",
    "Surrogate",
    "SurrogateError",
    "architecture_features",
    "conformal_quantile",
    "cross_validate",
    "feature_matrix",
    "feature_names",
    "make_surrogate",
    "scores",
]
