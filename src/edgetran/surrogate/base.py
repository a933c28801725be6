"""The surrogate contract, and conformal calibration shared by every surrogate.

A surrogate follows scikit-learn's habits: ``__init__`` only stores its arguments, ``fit(X, y)``
validates, learns state whose names end in ``_``, turns ``random_state`` into an RNG, and
returns ``self``. ``predict(X, level)`` returns a :class:`Prediction`: mean, a calibrated
standard deviation and an interval that covers about ``level`` of unseen values.

Subclasses implement two methods on the (log-)transformed target ``z``:
``_fit_core(X, z, rng)`` and ``_predict_core(X) -> (mu, sigma)``, where ``sigma`` is the
model's own, uncalibrated spread (ensemble disagreement, MC-dropout …). The base class fits
one core per calibration fold, scores each on the fold it did not see (normalised scores
``|z − mu| / sigma``), and predicts with the average of the fold cores (cross-conformal), so
intervals are honest even where ``sigma`` is not.
"""

from __future__ import annotations

import abc
import math
from collections.abc import Hashable, Sequence
from dataclasses import dataclass

import numpy as np
from scipy.stats import norm

from edgetran.errors import EdgeTranError

MIN_SAMPLES = 8
ONE_SIGMA = 0.682689492137086


class SurrogateError(EdgeTranError, ValueError):
    """A surrogate cannot be fitted or used with the data given."""


class InputShapeError(SurrogateError):
    """A prediction's input shape is missing where the surrogate learned several, or lies
    outside what it can predict (a surrogate of one shape predicts at that shape only).

    Attributes:
        shape: the ``(batch_size, seq_len)`` asked for, or ``None``.
        allowed: the measured shapes.
    """

    def __init__(self, message: str, shape, allowed: tuple[tuple[int, int], ...]) -> None:
        self.shape, self.allowed = shape, allowed
        super().__init__(message)


@dataclass
class Prediction:
    """Predictions for ``n`` inputs, in target units.

    Attributes:
        mean: ``(n,)`` point predictions (the median in log space for log targets).
        std: ``(n,)`` calibrated one-sigma uncertainty (68.3% conformal half-width, mapped to
            target units by the delta method for log targets).
        lower, upper: ``(n,)`` the calibrated interval at ``level``.
        level: nominal coverage of ``[lower, upper]``.
    """

    mean: np.ndarray
    std: np.ndarray
    lower: np.ndarray
    upper: np.ndarray
    level: float

    def to_records(self) -> list[dict[str, float]]:
        """One ``{mean, std, lower, upper}`` record per prediction."""
        return [
            {
                "mean": float(m),
                "std": float(s),
                "lower": float(lo),
                "upper": float(hi),
                "level": self.level,
            }
            for m, s, lo, hi in zip(self.mean, self.std, self.lower, self.upper, strict=True)
        ]


def conformal_quantile(scores: np.ndarray, level: float) -> float:
    """The finite-sample conformal quantile: the ⌈(n+1)·level⌉-th smallest score."""
    ordered = np.sort(scores)
    rank = min(len(ordered), max(1, math.ceil((len(ordered) + 1) * level)))
    return float(ordered[rank - 1])


def calibrated(
    mu: np.ndarray, sigma: np.ndarray, scores: np.ndarray, level: float, log_target: bool
) -> Prediction:
    """The conformal prediction from (log-)space ``mu``, ``sigma`` and normalised scores
    ``|z − mu| / sigma`` of points the model did not see."""
    half = conformal_quantile(scores, level) * sigma
    one_sigma = conformal_quantile(scores, ONE_SIGMA) * sigma
    if log_target:
        mean = np.exp(mu)
        return Prediction(mean, mean * one_sigma, np.exp(mu - half), np.exp(mu + half), level)
    return Prediction(mu, one_sigma, mu - half, mu + half, level)


def grouped_folds(
    groups: Sequence[Hashable], folds: int, rng: np.random.Generator
) -> list[np.ndarray]:
    """The held-out indices of each of ``folds`` folds, keeping every group (an architecture
    measured more than once) inside one fold, so that no held-out value was seen in training.

    Groups are dealt to the folds in a random order; where every group is a single item this
    is exactly ``rng.permutation(n)[k::folds]``.

    Raises:
        SurrogateError: fewer groups than folds.
    """
    members: dict[Hashable, list[int]] = {}
    for index, group in enumerate(groups):
        members.setdefault(group, []).append(index)
    if len(members) < folds:
        raise SurrogateError(
            f"measurements of {len(members)} distinct architecture(s) cannot make {folds} "
            "folds; profile more architectures (repeated measurements of one count once)"
        )
    ordered = list(members.values())
    order = rng.permutation(len(ordered))
    return [
        np.array([i for g in order[k::folds] for i in ordered[g]], dtype=int) for k in range(folds)
    ]


class Surrogate(abc.ABC):
    """Base of every surrogate; see the module docstring for the contract.

    Args:
        log_target: fit ``log(y)`` (latency and energy span orders of magnitude).
        calibration_folds: folds of the out-of-fold predictions used for calibration.
        random_state: seed (``None``: fresh entropy).
    """

    def __init__(
        self, log_target: bool = True, calibration_folds: int = 5, random_state: int | None = 0
    ) -> None:
        self.log_target = log_target
        self.calibration_folds = calibration_folds
        self.random_state = random_state

    # -- to implement -------------------------------------------------------------------------
    @abc.abstractmethod
    def _fit_core(self, X: np.ndarray, z: np.ndarray, rng: np.random.Generator) -> object:
        """Fit on transformed targets; return a fitted core (used by :meth:`_predict_core`)."""

    @abc.abstractmethod
    def _predict_core(self, core: object, X: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """``(mu, sigma)`` of the transformed target for ``X`` (``sigma`` > 0, uncalibrated)."""

    # -- the estimator API ----------------------------------------------------------------------
    def fit(self, X: np.ndarray, y: np.ndarray) -> Surrogate:
        """Fit the model to features ``X`` and positive targets ``y``; returns itself."""
        X, y = self._validate(X, y)
        rng = np.random.default_rng(self.random_state)
        z = np.log(y) if self.log_target else y
        mu, sigma, self.cores_ = self._out_of_fold(X, z, rng)
        self.sigma_floor_ = 0.1 * float(np.median(sigma)) + 1e-12
        self.scores_ = np.abs(z - mu) / (sigma + self.sigma_floor_)
        self.oof_abs_error_ = float(np.mean(np.abs(z - mu)))  # for choosing between models
        self.oof_mu_, self.oof_sigma_ = mu, sigma  # for blending models (DeviceSurrogate)
        self.n_features_in_ = X.shape[1]
        return self

    def predict(self, X: np.ndarray, level: float = 0.9) -> Prediction:
        """The predicted mean, std and ``level`` interval of each row of ``X``."""
        if not hasattr(self, "cores_"):
            raise SurrogateError("the surrogate is not fitted yet")
        X = np.asarray(X, dtype=float)
        if X.ndim != 2 or X.shape[1] != self.n_features_in_:
            raise SurrogateError(f"X has shape {X.shape}; expected (n, {self.n_features_in_})")
        if not 0 < level < 1:
            raise SurrogateError(f"level={level}; expected a value in (0, 1)")
        mu, sigma = self._predict_cores(X)
        return calibrated(mu, sigma + self.sigma_floor_, self.scores_, level, self.log_target)

    def gaussian_interval(self, X: np.ndarray, level: float = 0.9) -> tuple[np.ndarray, ...]:
        """The uncalibrated ``mu ± z·sigma`` interval, for comparison with the calibrated one."""
        mu, sigma = self._predict_cores(np.asarray(X, dtype=float))
        half = norm.ppf(0.5 + level / 2) * sigma
        low, high = mu - half, mu + half
        return (np.exp(low), np.exp(high)) if self.log_target else (low, high)

    # -- helpers ------------------------------------------------------------------------------
    def _validate(self, X: np.ndarray, y: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        X, y = np.asarray(X, dtype=float), np.asarray(y, dtype=float)
        if X.ndim != 2 or y.ndim != 1 or len(X) != len(y):
            raise SurrogateError(f"X {X.shape} and y {y.shape} do not match")
        if len(y) < MIN_SAMPLES:
            raise SurrogateError(f"too few measurements to fit: {len(y)}; need ≥ {MIN_SAMPLES}")
        if not np.isfinite(X).all() or not np.isfinite(y).all():
            raise SurrogateError("features or targets contain NaN or infinite values")
        if self.log_target and (y <= 0).any():
            raise SurrogateError("targets must be positive for a log-space fit")
        return X, y

    def _out_of_fold(self, X, z, rng) -> tuple[np.ndarray, np.ndarray, list[object]]:
        """Out-of-fold ``mu``/``sigma`` for calibration, and the fold cores that predict.

        Predictions average the fold cores (cross-conformal), so the calibration scores come
        from the very models that predict, each on points it never saw.
        """
        rows = [row.tobytes() for row in X]  # equal rows: one architecture measured again
        folds = min(self.calibration_folds, len(set(rows)))
        mu, sigma = np.empty_like(z), np.empty_like(z)
        cores = []
        for held in grouped_folds(rows, max(folds, 2), rng):
            train = np.setdiff1d(np.arange(len(z)), held)
            cores.append(self._fit_core(X[train], z[train], rng))
            mu[held], sigma[held] = self._predict_core(cores[-1], X[held])
        return mu, sigma, cores

    def _predict_cores(self, X: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        outputs = [self._predict_core(core, X) for core in self.cores_]
        return (
            np.mean([mu for mu, _ in outputs], axis=0),
            np.mean([sigma for _, sigma in outputs], axis=0),
        )
