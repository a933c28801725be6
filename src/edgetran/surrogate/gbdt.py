"""The fast default surrogate: a bagged, seeded LightGBM ensemble (sklearn fallback)."""

from __future__ import annotations

import importlib.util

import numpy as np

from edgetran.surrogate.base import Surrogate


class GBDTEnsemble(Surrogate):
    """``n_models`` gradient-boosted tree models, each on a bootstrap sample with its own seed.

    The ensemble mean is the prediction; the members' spread is the (uncalibrated) epistemic
    ``sigma`` that the base class calibrates. LightGBM is used when installed, else
    scikit-learn's ``HistGradientBoostingRegressor``.

    Args:
        n_models: ensemble size.
        n_estimators, learning_rate, num_leaves: boosting settings of each member.
        huber_delta: the Huber loss's threshold, in target units (log units for log targets):
            a point further than this from the fit pulls on it linearly, not quadratically,
            so a few contended recordings (4× = 1.39 in log units) pull less. ``None``
            (default): squared error; :class:`~edgetran.surrogate.DeviceSurrogate` leaves
            outlying recordings out instead, which helped more (trees isolate an outlier in a
            leaf of its own whatever the loss). The scikit-learn fallback uses squared error.
        log_target, calibration_folds, random_state: see :class:`Surrogate`.
    """

    def __init__(
        self,
        n_models: int = 5,
        n_estimators: int = 400,
        learning_rate: float = 0.03,
        num_leaves: int = 4,
        huber_delta: float | None = None,
        log_target: bool = True,
        calibration_folds: int = 5,
        random_state: int | None = 0,
    ) -> None:
        super().__init__(log_target, calibration_folds, random_state)
        self.n_models = n_models
        self.n_estimators = n_estimators
        self.learning_rate = learning_rate
        self.num_leaves = num_leaves
        self.huber_delta = huber_delta

    def _member(self, n: int, seed: int):
        # Small, shallow trees: profiling sets hold tens to hundreds of points.
        min_leaf = max(2, min(5, n // 20))
        if importlib.util.find_spec("lightgbm") is not None:
            from lightgbm import LGBMRegressor

            robust = {"objective": "huber", "alpha": self.huber_delta}
            return LGBMRegressor(
                **(robust if self.huber_delta is not None else {}),
                n_estimators=self.n_estimators,
                learning_rate=self.learning_rate,
                num_leaves=self.num_leaves,
                min_child_samples=min_leaf,
                min_data_in_bin=1,
                subsample=0.8,
                subsample_freq=1,
                colsample_bytree=0.5,
                random_state=seed,
                n_jobs=1,
                verbose=-1,
            )
        from sklearn.ensemble import HistGradientBoostingRegressor

        return HistGradientBoostingRegressor(
            max_iter=self.n_estimators,
            learning_rate=self.learning_rate,
            max_leaf_nodes=self.num_leaves,
            min_samples_leaf=min_leaf,
            random_state=seed,
        )

    def _fit_core(self, X, z, rng):
        members = []
        for _ in range(self.n_models):
            rows = rng.integers(0, len(z), len(z))
            member = self._member(len(z), int(rng.integers(2**31 - 1)))
            members.append(member.fit(X[rows], z[rows]))
        return members

    def _predict_core(self, core, X):
        predictions = np.stack([member.predict(X) for member in core])
        return predictions.mean(axis=0), predictions.std(axis=0)
