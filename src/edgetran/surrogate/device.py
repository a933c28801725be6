"""Per-device surrogates of latency, energy and peak power, cross-device transfer, and CV.

:class:`DeviceSurrogate` predicts the three metrics of one device from architectures. With
``priors`` (measurements of other devices), it first fits one surrogate per prior device and
metric on that device's own data. On the target device, a ridge regression maps the priors'
log-predictions to the target's log-values (a few points fix that map: devices differ mostly
by scale and by which operations they favour), refitted with Huber weights so that an outlying
recording does not tilt it, and a second surrogate learns the residual from the architecture
features. The priors never see the target device's data, so cross-validation stays honest.

For an architecture that a prior device measured (the probe set, :mod:`edgetran.space.probes`,
is made to be measured on every device), predictions use that device's *measured* log-value
(mean over repeats) instead of its surrogate's prediction. The map itself is fitted on the
priors' predictions, also where they measured the architecture: it is applied to predictions,
and fitting it on measured values made it worse (a noisy A100 at 10 points: 6% worse than own
data alone, BENCHMARKS.md). A held-out architecture's prior measurement is no leak in
cross-validation: it comes from another device and is as known when a user asks for a
prediction. ``DeviceSurrogate.shared_rows_`` counts the target's measurements of
architectures a prior measured too.

The transferred model (map + residual) and the own-data model are then *blended* in log
space, with the weight of the transferred one chosen on out-of-fold predictions by the
one-standard-error rule (:func:`blend_weight`): the smallest weight whose error is within one
standard error of the best. Keeping whichever of the two had the lower out-of-fold error (the
rule before issue 19) picked wrongly with ~15 noisy points and made a new device much worse;
the blend never falls far behind own data alone and keeps most of the transfer's gain
(BENCHMARKS.md, "A new device from a few measurements").

Two kinds of measurement are left out of every fit: contended ones (the profiler saw other
processes crowd the cores, :mod:`edgetran.profile.contention`), and recordings far slower than
the own-data model expects out of fold (:func:`inliers`), as a contended run that was not
caught looks. Feeding the prior predictions to the GBDT as extra features ("stacking") was
tried first and gained nothing: with few points the trees rarely split on them.

Input shapes (issue 44): measurements of one ``(batch_size, seq_len)`` give a surrogate of
that shape, exactly as before. Measurements of several shapes give one surrogate of all of
them: the shape enters as features (the cost features at that shape and the logs of batch and
sequence, :func:`~edgetran.surrogate.features.shaped_feature_matrix`), each metric's log is
modelled as a linear trend in the shape's log FLOPs, bytes, batch and sequence plus a learned
residual (:class:`_ShapeTrend`: trees alone cannot extrapolate to a larger shape than they
saw), and :meth:`DeviceSurrogate.predict` takes the shape to predict at.
"""

from __future__ import annotations

import pickle
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
from scipy.stats import spearmanr
from sklearn.linear_model import RidgeCV

from edgetran.plugins import SURROGATES
from edgetran.space import Architecture
from edgetran.space.probes import PROBE_HASHES
from edgetran.store import Measurement
from edgetran.surrogate.base import (
    MIN_SAMPLES,
    InputShapeError,
    Prediction,
    Surrogate,
    SurrogateError,
    calibrated,
    grouped_folds,
)
from edgetran.surrogate.features import (
    feature_matrix,
    shaped_feature_matrix,
    shaped_feature_names,
)

#: Metric name → measurement field (per batch).
METRICS = {"latency": "latency_s", "energy": "energy_j", "peak_power": "peak_power_w"}
#: Bumped whenever pickled internals change (2: one BOSHNAS network trio, issue 12; 3: the
#: blended transfer, issue 19; 4: priors keep their measured values; 5: input shapes, issue 44).
FORMAT_VERSION = 5
#: Formats :meth:`DeviceSurrogate.load` reads (a format-4 file is a surrogate of one shape).
READ_FORMATS = (4, 5)
#: Inputs of the linear trend of a surrogate of several shapes (:class:`_ShapeTrend`).
TREND_INPUTS = ("log_flops", "log_bytes", "log_batch_size", "log_seq_len")
#: Penalties the prior map's ridge regression chooses from (leave-one-out).
RIDGE_ALPHAS = np.logspace(-3, 3, 13)
#: An out-of-fold residual more than OUTLIER_K robust standard deviations above the median
#: and more than a factor of 2 (log units) marks an outlying recording (a contended 4× run),
#: left out of the fit; at most OUTLIER_SHARE of the points (see :func:`inliers`).
OUTLIER_K = 3.5
OUTLIER_MIN_LOG = float(np.log(2.0))
OUTLIER_SHARE = 0.2
#: Weights of the transferred model tried in the blend with the own-data model.
BLEND_WEIGHTS = np.linspace(0.0, 1.0, 11)
#: Standard errors of slack in :func:`blend_weight`'s rule. 0.5 kept more of the transfer's
#: gain on clean tables (A100 at 10 points: 0.185 against 0.213) but made a noisy Raspberry Pi
#: at 20 points 4.7% worse than own data alone (bench_fewshot.py, 3 seeds); 1.0 stayed within 2%.
BLEND_SLACK_SE = 1.0


def make_surrogate(model: str = "gbdt", random_state: int = 0, **kwargs: Any) -> Surrogate:
    """A registered surrogate model (``gbdt``, ``nn`` or a plug-in), not fitted."""
    return SURROGATES.create(model, random_state=random_state, **kwargs)


def targets(measurements: Sequence[Measurement], metric: str) -> np.ndarray:
    """The values of ``metric`` in the measurements (each must have one)."""
    field = METRICS[metric]
    values = [getattr(m, field) for m in measurements]
    if any(v is None for v in values):
        raise SurrogateError(f"some measurements have no {field}")
    return np.asarray(values, dtype=float)


def uncontended(measurements: Sequence[Measurement]) -> list[Measurement]:
    """The measurements whose timed window other processes did not crowd: a contended timing
    measures them, not the model (``profile/contention.py``), so fits leave it out — unless
    fewer than :data:`MIN_SAMPLES` would remain; then all are kept, as the best there is
    (``DeviceSurrogate.contended_kept_`` counts them)."""
    quiet = [m for m in measurements if not m.contended]
    return quiet if len(quiet) >= MIN_SAMPLES else list(measurements)


def shape_names(shapes: Sequence[tuple[int, int]]) -> str:
    """``1×128, 8×64``: shapes as a reader writes them."""
    return ", ".join(f"{batch}×{seq}" for batch, seq in shapes)


def _shape(measurements: Sequence[Measurement]) -> tuple[int, int]:
    shapes = {(m.batch_size, m.seq_len) for m in measurements}
    if len(shapes) != 1:
        raise SurrogateError(f"measurements mix input shapes {sorted(shapes)}; filter them first")
    return shapes.pop()


@dataclass
class _Prior:
    device: str
    batch_size: int
    seq_len: int
    models: dict[str, Surrogate]
    #: Metric → architecture hash → the mean log of its measured values.
    measured: dict[str, dict[str, float]]

    def columns(self, archs: Sequence[Architecture], metric: str, fitting: bool) -> np.ndarray:
        """``(n, 1)`` the prior device's log-prediction; unless ``fitting`` the map, its
        measured log-value where it measured the architecture."""
        mean = self.models[metric].predict(feature_matrix(archs, self.batch_size, self.seq_len))
        column = np.log(mean.mean)
        if not fitting:
            for i, arch in enumerate(archs):
                column[i] = self.measured[metric].get(arch.hash, column[i])
        return column[:, None]


def measured_logs(measurements: Sequence[Measurement], metric: str) -> dict[str, float]:
    """Architecture hash → mean log-value of its measurements (repeats pooled)."""
    logs: dict[str, list[float]] = {}
    for m, value in zip(measurements, np.log(targets(measurements, metric)), strict=True):
        logs.setdefault(m.hash, []).append(float(value))
    return {h: float(np.mean(values)) for h, values in logs.items()}


def fit_priors(
    priors: dict[str, Sequence[Measurement]],
    metrics: Sequence[str],
    model: str = "gbdt",
    random_state: int = 0,
    model_options: dict[str, Any] | None = None,
) -> list[_Prior]:
    """One surrogate per prior device and metric, each fitted on that device's own data."""
    fitted = []
    for device, given in sorted(priors.items()):
        items = uncontended(given)
        batch, seq = _shape(items)
        archs = [Architecture.from_dict(m.model_dict) for m in items]
        X = feature_matrix(archs, batch, seq)
        models = {
            metric: make_surrogate(model, random_state, **(model_options or {})).fit(
                X, targets(items, metric)
            )
            for metric in metrics
        }
        measured = {metric: measured_logs(items, metric) for metric in metrics}
        fitted.append(_Prior(device, batch, seq, models, measured))
    return fitted


class DeviceSurrogate:
    """Surrogates of one device's metrics, optionally stacked on prior devices.

    Args:
        model: ``gbdt`` (bagged LightGBM, default) or ``nn`` (BOSHNAS heteroscedastic network).
        metrics: which of ``latency``, ``energy``, ``peak_power`` to model.
        random_state: seed.
        model_options: keyword arguments of the surrogate class (e.g. ``n_models``).
    """

    def __init__(
        self,
        model: str = "gbdt",
        metrics: Sequence[str] = tuple(METRICS),
        random_state: int = 0,
        model_options: dict[str, Any] | None = None,
    ) -> None:
        self.model = model
        self.metrics = tuple(metrics)
        self.random_state = random_state
        self.model_options = model_options

    def fit(
        self,
        measurements: Sequence[Measurement],
        priors: dict[str, Sequence[Measurement]] | None = None,
    ) -> DeviceSurrogate:
        """Fit on one device's measurements; ``priors`` maps other devices to theirs."""
        self.priors_ = fit_priors(
            priors or {}, self.metrics, self.model, self.random_state, self.model_options
        )
        return self._fit_targets(measurements)

    def _fit_targets(self, given: Sequence[Measurement]) -> DeviceSurrogate:
        measurements = uncontended(given)
        self.contended_left_out_ = len(given) - len(measurements)
        self.contended_kept_ = sum(bool(m.contended) for m in measurements)
        devices = {m.device for m in measurements}
        if len(devices) != 1:
            raise SurrogateError(f"measurements of one device expected; got {sorted(devices)}")
        self.device_ = devices.pop()
        shapes = [(m.batch_size, m.seq_len) for m in measurements]
        self.shapes_ = tuple(sorted(set(shapes)))
        # Unique shape: as before issue 44; several: None, and predict needs a shape.
        self.batch_size_, self.seq_len_ = (
            self.shapes_[0] if len(self.shapes_) == 1 else (None,) * 2
        )
        if self.priors_ and len(self.shapes_) > 1:
            raise SurrogateError(
                f"measurements at several input shapes ({shape_names(self.shapes_)}) cannot "
                "take priors yet; fit on one shape, or without priors"
            )
        # Every metric of a prior holds the same hashes.
        shared = {h for prior in self.priors_ for h in prior.measured[self.metrics[0]]}
        self.shared_rows_ = sum(m.hash in shared for m in measurements)
        probes = shared & PROBE_HASHES
        self.shared_probes_ = sum(m.hash in probes for m in measurements)
        archs = [Architecture.from_dict(m.model_dict) for m in measurements]
        X = self._features(archs, shapes)
        self.models_: dict[str, Surrogate | _Transfer | _ShapeTrend] = {}
        self.outliers_left_out_: dict[str, int] = {}
        for metric in self.metrics:
            y = targets(measurements, metric)
            own = self._fit_own(X, y)
            keep = inliers(np.log(y) - own.oof_mu_) if own.log_target else np.ones(len(y), bool)
            if not keep.all():
                own = self._fit_own(X[keep], y[keep])
            self.outliers_left_out_[metric] = int((~keep).sum())
            kept = [arch for arch, k in zip(archs, keep, strict=True) if k]
            self.models_[metric] = (
                self._transfer(kept, X[keep], y[keep], metric, own) if self.priors_ else own
            )
        return self

    def _features(
        self, archs: Sequence[Architecture], shapes: Sequence[tuple[int, int]]
    ) -> np.ndarray:
        if len(self.shapes_) == 1:
            return feature_matrix(archs, *self.shapes_[0])
        return shaped_feature_matrix(archs, shapes)

    def _fit_own(self, X: np.ndarray, y: np.ndarray) -> Surrogate | _ShapeTrend:
        """The own-data model of one metric; at several shapes, a trend plus residual."""
        options = self.model_options or {}
        if len(self.shapes_) == 1:
            return make_surrogate(self.model, self.random_state, **options).fit(X, y)
        residual = make_surrogate(self.model, self.random_state, log_target=False, **options)
        return fit_shape_trend(X, y, residual)

    def _transfer(
        self, archs: Sequence[Architecture], X: np.ndarray, y: np.ndarray, metric: str, own
    ) -> _Transfer:
        """The own-data model blended with the transferred one (weight 0: own data only)."""
        if (y <= 0).any():
            raise SurrogateError(f"{metric}: targets must be positive for a log-space fit")
        P, z = self._prior_columns(archs, metric, fitting=True), np.log(y)
        base, weights = robust_map(P, z)
        base_oof = _out_of_fold_base(P, z, base.alpha_, weights)
        options = self.model_options or {}
        residual = make_surrogate(self.model, self.random_state, log_target=False, **options)
        residual.fit(X, z - base_oof)
        transferred_oof = base_oof + residual.oof_mu_
        weight = blend_weight(z, own.oof_mu_, transferred_oof)
        mu = weight * transferred_oof + (1 - weight) * own.oof_mu_
        sigma = weight * residual.oof_sigma_ + (1 - weight) * own.oof_sigma_
        floor = 0.1 * float(np.median(sigma)) + 1e-12
        return _Transfer(own, residual, base, weight, np.abs(z - mu) / (sigma + floor), floor)

    def _prior_columns(
        self, archs: Sequence[Architecture], metric: str, fitting: bool = False
    ) -> np.ndarray:
        return np.hstack([prior.columns(archs, metric, fitting) for prior in self.priors_])

    def predict(
        self,
        archs: Sequence[Architecture],
        level: float = 0.9,
        shape: tuple[int, int] | None = None,
    ) -> dict[str, Prediction]:
        """Each metric's prediction (per batch) for ``archs`` at input shape ``shape``
        (``(batch_size, seq_len)``; default: the measured shape, where there is one).

        Raises:
            InputShapeError: no ``shape`` where several were measured, or a shape other than
                the measured one where one was.
        """
        if not hasattr(self, "models_"):
            raise SurrogateError("the surrogate is not fitted yet")
        at = self.prediction_shape(shape)
        X = self._features(archs, [at] * len(archs))
        out = {}
        for metric, model in self.models_.items():
            if isinstance(model, _Transfer):
                out[metric] = model.predict(X, self._prior_columns(archs, metric), level)
            else:
                out[metric] = model.predict(X, level)
        return out

    def prediction_shape(self, shape: tuple[int, int] | None = None) -> tuple[int, int]:
        """The shape a prediction asked at ``shape`` is made at; see :meth:`predict`."""
        shapes = self.shapes_
        if shape is None:
            if len(shapes) == 1:
                return shapes[0]
            raise InputShapeError(
                f"the surrogate learned input shapes {shape_names(shapes)}; name the shape "
                "(batch size and sequence length) to predict at",
                shape,
                shapes,
            )
        if (
            not isinstance(shape, Sequence)
            or len(shape) != 2
            or not all(isinstance(v, int | np.integer) and v > 0 for v in shape)
        ):
            raise InputShapeError(
                f"shape={shape!r} is invalid; allowed: (batch_size, seq_len), positive integers",
                shape,
                shapes,
            )
        shape = (int(shape[0]), int(shape[1]))
        if len(shapes) == 1 and shape != shapes[0]:
            raise InputShapeError(
                f"shape={shape_names([shape])} is invalid; allowed: {shape_names(shapes)} (the "
                "surrogate was fitted at one input shape; fit it on measurements of several "
                "shapes to predict at others)",
                shape,
                shapes,
            )
        return shape

    def __setstate__(self, state: dict[str, Any]) -> None:
        # A format-4 file (before issue 44) knew its one shape as batch_size_ × seq_len_.
        if "batch_size_" in state and "shapes_" not in state:
            state["shapes_"] = ((state["batch_size_"], state["seq_len_"]),)
        self.__dict__.update(state)

    def save(self, path: str | Path) -> None:
        """Write the fitted surrogate to ``path``."""
        Path(path).write_bytes(pickle.dumps({"format": FORMAT_VERSION, "surrogate": self}))

    @classmethod
    def load(cls, path: str | Path) -> DeviceSurrogate:
        """A surrogate that :meth:`save` wrote."""
        try:
            payload = pickle.loads(Path(path).read_bytes())
        except OSError as err:
            raise SurrogateError(f"{path}: cannot read ({err.strerror})") from None
        except Exception as err:  # a truncated or foreign file can raise nearly anything
            raise SurrogateError(
                f"{path}: not a surrogate file of this edgetran version ({type(err).__name__}); "
                "fit it again"
            ) from None
        if not isinstance(payload, dict) or "surrogate" not in payload:
            raise SurrogateError(f"{path}: not an edgetran surrogate file")
        if payload.get("format") not in READ_FORMATS:
            raise SurrogateError(
                f"{path}: surrogate file format {payload.get('format')!r}; this edgetran "
                f"reads formats {' and '.join(map(str, READ_FORMATS))}: fit it again"
            )
        return payload["surrogate"]


def inliers(residuals: np.ndarray) -> np.ndarray:
    """``(n,)`` bool: False for the points whose out-of-fold residual (log units) lies more
    than :data:`OUTLIER_K` robust standard deviations (MAD) *above* the median and is more
    than a factor of 2 (:data:`OUTLIER_MIN_LOG`): recorded slower than the model expects, as
    a contended run is. Both directions were tried: trees extrapolate badly, so the smallest
    and largest honest architectures also have large residuals, and leaving them out cost
    more than the outliers. At most :data:`OUTLIER_SHARE` of the
    points, the furthest, are left out, and never so many that too few remain."""
    offset = residuals - np.median(residuals)
    scale = 1.4826 * float(np.median(np.abs(offset))) + 1e-12
    centred = offset  # contention only ever makes a run slower (and costlier)
    limit = min(int(OUTLIER_SHARE * len(residuals)), len(residuals) - MIN_SAMPLES)
    flagged = np.zeros(len(residuals), dtype=bool)
    if limit > 0:
        furthest = np.argsort(-centred, kind="stable")[:limit]
        flagged[furthest] = centred[furthest] > max(OUTLIER_K * scale, OUTLIER_MIN_LOG)
    return ~flagged


def huber_weights(residuals: np.ndarray, k: float = 1.345) -> np.ndarray:
    """IRLS weights of the Huber loss: 1 within ``k`` robust standard deviations (MAD) of
    the median residual, falling as 1/|r| beyond."""
    centred = np.abs(residuals - np.median(residuals))
    scale = 1.4826 * float(np.median(centred)) + 1e-9
    return np.minimum(1.0, k * scale / np.maximum(centred, 1e-12))


def robust_map(P: np.ndarray, z: np.ndarray, rounds: int = 3) -> tuple[RidgeCV, np.ndarray]:
    """The ridge map from prior log-predictions to log-values, refitted with Huber weights
    (IRLS) so that a few outlying recordings (a contended 4× run) do not tilt it; the map and
    the final weights."""
    weights = np.ones_like(z)
    base = RidgeCV(alphas=RIDGE_ALPHAS).fit(P, z)
    for _ in range(rounds):
        weights = huber_weights(z - base.predict(P))
        base = RidgeCV(alphas=RIDGE_ALPHAS).fit(P, z, sample_weight=weights)
    return base, weights


def _out_of_fold_base(
    P: np.ndarray, z: np.ndarray, alpha: float, weights: np.ndarray
) -> np.ndarray:
    """The ridge map's predictions for points it did not see (≤ 10 folds). The residual model
    learns from these, so its conformal intervals include the map's own error on new points;
    in-sample residuals understated it (90% intervals covered 76% at 10 measurements).
    Repeated measurements of one architecture (equal rows) share a fold; distinct rows keep
    the plain shuffled K-fold split."""
    from sklearn.linear_model import Ridge
    from sklearn.model_selection import KFold, cross_val_predict

    rows = [row.tobytes() for row in P]
    distinct = len(set(rows))
    fit = {"params": {"sample_weight": weights}}
    if distinct == len(rows):
        cv = KFold(min(len(z), 10), shuffle=True, random_state=0)
        return cross_val_predict(Ridge(alpha=alpha), P, z, cv=cv, **fit)
    held_out = grouped_folds(rows, max(2, min(distinct, 10)), np.random.default_rng(0))
    splits = [(np.setdiff1d(np.arange(len(z)), held), held) for held in held_out]
    return cross_val_predict(Ridge(alpha=alpha), P, z, cv=splits, **fit)


def blend_weight(z: np.ndarray, own: np.ndarray, transferred: np.ndarray) -> float:
    """The weight of the transferred model's log-prediction in the blend, from out-of-fold
    predictions (absolute errors in log space), by the one-standard-error rule: the smallest
    grid weight whose error is within one standard error of the best weight's gain over own
    data alone. With ~10–20 noisy points the best weight is itself a noisy estimate; the rule
    leans towards the own-data model unless the priors' gain is clear."""
    errors = np.array([np.abs(z - w * transferred - (1 - w) * own) for w in BLEND_WEIGHTS])
    best = int(np.argmin(errors.mean(axis=1)))
    gain = errors[best] - errors[0]
    slack = BLEND_SLACK_SE * float(gain.std(ddof=1) / np.sqrt(len(z))) if len(z) > 1 else 0.0
    within = np.flatnonzero(errors.mean(axis=1) <= errors[best].mean() + slack)
    return float(BLEND_WEIGHTS[within[0]])


def fit_shape_trend(X: np.ndarray, y: np.ndarray, residual: Surrogate) -> _ShapeTrend:
    """One metric's model at several input shapes: the Huber-weighted ridge trend of
    ``log(y)`` in :data:`TREND_INPUTS` (:func:`robust_map`), and ``residual`` (a surrogate
    with ``log_target=False``) fitted on what the trend leaves, out of fold as in
    :meth:`DeviceSurrogate._transfer`, so its calibration includes the trend's own error."""
    if (y <= 0).any():
        raise SurrogateError("targets must be positive for a log-space fit")
    names = shaped_feature_names()
    columns = [names.index(name) for name in TREND_INPUTS]
    z = np.log(y)
    trend, weights = robust_map(X[:, columns], z)
    trend_oof = _out_of_fold_base(X[:, columns], z, trend.alpha_, weights)
    residual.fit(X, z - trend_oof)
    return _ShapeTrend(trend, columns, residual, trend_oof + residual.oof_mu_, residual.oof_sigma_)


@dataclass
class _ShapeTrend:
    """A linear trend in the shape's log-costs and sizes plus a residual surrogate, in log
    space. Trees predict within the range they saw: alone, they would give a larger shape
    than any measured the latency of the largest measured one; the trend extrapolates."""

    trend: RidgeCV
    columns: list[int]
    residual: Surrogate
    oof_mu_: np.ndarray
    oof_sigma_: np.ndarray
    log_target: bool = True

    def _predict_cores(self, X: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        mu, sigma = self.residual._predict_cores(X)
        return self.trend.predict(X[:, self.columns]) + mu, sigma

    def predict(self, X: np.ndarray, level: float) -> Prediction:
        mu, sigma = self._predict_cores(X)
        r = self.residual
        return calibrated(mu, sigma + r.sigma_floor_, r.scores_, level, log_target=True)


@dataclass
class _Transfer:
    """One metric's own-data model and transferred model (prior map + residual), blended in
    log space with a fixed weight and calibrated on the blend's out-of-fold scores."""

    own: Surrogate
    residual: Surrogate
    base: RidgeCV
    weight: float
    scores: np.ndarray
    sigma_floor: float

    def predict(self, X: np.ndarray, P: np.ndarray, level: float) -> Prediction:
        own_mu, own_sigma = self.own._predict_cores(X)
        res_mu, res_sigma = self.residual._predict_cores(X)
        w = self.weight
        mu = w * (self.base.predict(P) + res_mu) + (1 - w) * own_mu
        sigma = w * res_sigma + (1 - w) * own_sigma + self.sigma_floor
        return calibrated(mu, sigma, self.scores, level, log_target=True)


# -- evaluation -------------------------------------------------------------------------------
def scores(y: np.ndarray, prediction: Prediction) -> dict[str, float]:
    """MAPE, share within ±10%, R², Spearman ρ and interval coverage, as fractions."""
    relative = np.abs(prediction.mean - y) / y
    residual = ((prediction.mean - y) ** 2).sum()
    total = ((y - y.mean()) ** 2).sum()
    inside = (prediction.lower <= y) & (y <= prediction.upper)
    return {
        "n": len(y),
        "mape": float(relative.mean()),
        "within_10pct": float((relative <= 0.10).mean()),
        "r2": float(1 - residual / total) if total > 0 else float("nan"),
        "spearman": float(spearmanr(prediction.mean, y).statistic),
        f"coverage_{round(prediction.level * 100)}": float(inside.mean()),
    }


def cross_validate(
    measurements: Sequence[Measurement],
    folds: int = 5,
    seed: int = 0,
    model: str = "gbdt",
    priors: dict[str, Sequence[Measurement]] | None = None,
    metrics: Sequence[str] = tuple(METRICS),
    level: float = 0.9,
    model_options: dict[str, Any] | None = None,
) -> dict[str, dict[str, float]]:
    """K-fold CV on one device: held-out predictions of every fold, scored together.

    Repeated measurements of one architecture share a fold (:func:`grouped_folds`), so a
    held-out architecture is never in the training folds.
    """
    if folds < 2:
        raise SurrogateError(f"folds={folds}; need at least 2")
    measurements = uncontended(measurements)
    held_out = grouped_folds([m.hash for m in measurements], folds, np.random.default_rng(seed))
    fitted_priors = fit_priors(priors or {}, metrics, model, seed, model_options)
    collected: dict[str, list[tuple[np.ndarray, Prediction]]] = {m: [] for m in metrics}
    for held in held_out:
        train = [measurements[i] for i in np.setdiff1d(np.arange(len(measurements)), held)]
        surrogate = DeviceSurrogate(model, metrics, seed, model_options)
        surrogate.priors_ = fitted_priors  # priors never see the target device's data
        surrogate._fit_targets(train)
        predictions = predict_measured(surrogate, [measurements[i] for i in held], level)
        for metric in metrics:
            y = targets([measurements[i] for i in held], metric)
            collected[metric].append((y, predictions[metric]))
    return {metric: scores(*_concatenate(parts)) for metric, parts in collected.items()}


def predict_measured(
    surrogate: DeviceSurrogate, measurements: Sequence[Measurement], level: float = 0.9
) -> dict[str, Prediction]:
    """Each metric's prediction for measured architectures, each at its own input shape, in
    the measurements' order."""
    archs = [Architecture.from_dict(m.model_dict) for m in measurements]
    shapes = [(m.batch_size, m.seq_len) for m in measurements]
    parts = []
    for shape in sorted(set(shapes)):
        rows = [i for i, s in enumerate(shapes) if s == shape]
        parts.append((rows, surrogate.predict([archs[i] for i in rows], level, shape)))
    out = {}
    for metric in surrogate.models_:
        fields = {f: np.empty(len(archs)) for f in ("mean", "std", "lower", "upper")}
        for rows, predictions in parts:
            for f, values in fields.items():
                values[rows] = getattr(predictions[metric], f)
        out[metric] = Prediction(**fields, level=level)
    return out


def _concatenate(parts: list[tuple[np.ndarray, Prediction]]) -> tuple[np.ndarray, Prediction]:
    y = np.concatenate([p[0] for p in parts])
    preds = [p[1] for p in parts]
    joined = Prediction(
        *(
            np.concatenate([getattr(p, f) for p in preds])
            for f in ("mean", "std", "lower", "upper")
        ),
        preds[0].level,
    )
    return y, joined
