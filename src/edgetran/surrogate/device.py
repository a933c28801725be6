"""Per-device surrogates of latency, energy and peak power, cross-device transfer, and CV.

:class:`DeviceSurrogate` predicts the three metrics of one device from architectures. With
``priors`` (measurements of other devices), it first fits one surrogate per prior device and
metric on that device's own data. On the target device, a ridge regression maps the priors'
log-predictions to the target's log-values (a few points fix that map: devices differ mostly
by scale and by which operations they favour), and the target's own surrogate learns only the
residual from the architecture features. A device with ~10–20 measurements then borrows the
shape of the cost landscape from the devices already measured (BENCHMARKS.md, "Learning curve
and cross-device transfer"). The priors never see the target device's data, so
cross-validation on the target stays honest. With many measurements the map can cost more than
it gives, so each metric keeps the transferred model or an own-data model, whichever has the
lower out-of-fold error. Feeding the prior predictions to the GBDT as
extra features instead ("stacking") was tried first and gained nothing: with few points the
trees rarely split on them.
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
from edgetran.store import Measurement
from edgetran.surrogate.base import Prediction, Surrogate, SurrogateError, grouped_folds
from edgetran.surrogate.features import feature_matrix

#: Metric name → measurement field (per batch).
METRICS = {"latency": "latency_s", "energy": "energy_j", "peak_power": "peak_power_w"}
#: Bumped whenever pickled internals change (2: one BOSHNAS network trio, issue 12).
FORMAT_VERSION = 2


def make_surrogate(model: str = "gbdt", random_state: int = 0, **kwargs: Any) -> Surrogate:
    """A registered surrogate model (``gbdt``, ``nn`` or a plug-in), not fitted."""
    return SURROGATES.create(model, random_state=random_state, **kwargs)


def targets(measurements: Sequence[Measurement], metric: str) -> np.ndarray:
    field = METRICS[metric]
    values = [getattr(m, field) for m in measurements]
    if any(v is None for v in values):
        raise SurrogateError(f"some measurements have no {field}")
    return np.asarray(values, dtype=float)


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

    def columns(self, archs: Sequence[Architecture], metric: str) -> np.ndarray:
        """``(n, 1)`` the prior device's log-prediction."""
        mean = self.models[metric].predict(feature_matrix(archs, self.batch_size, self.seq_len))
        return np.log(mean.mean)[:, None]


def fit_priors(
    priors: dict[str, Sequence[Measurement]],
    metrics: Sequence[str],
    model: str = "gbdt",
    random_state: int = 0,
    model_options: dict[str, Any] | None = None,
) -> list[_Prior]:
    """One surrogate per prior device and metric, each fitted on that device's own data."""
    fitted = []
    for device, items in sorted(priors.items()):
        batch, seq = _shape(items)
        archs = [Architecture.from_dict(m.model_dict) for m in items]
        X = feature_matrix(archs, batch, seq)
        models = {
            metric: make_surrogate(model, random_state, **(model_options or {})).fit(
                X, targets(items, metric)
            )
            for metric in metrics
        }
        fitted.append(_Prior(device, batch, seq, models))
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

    def _fit_targets(self, measurements: Sequence[Measurement]) -> DeviceSurrogate:
        devices = {m.device for m in measurements}
        if len(devices) != 1:
            raise SurrogateError(f"measurements of one device expected; got {sorted(devices)}")
        self.device_ = devices.pop()
        self.batch_size_, self.seq_len_ = _shape(measurements)
        archs = [Architecture.from_dict(m.model_dict) for m in measurements]
        X = feature_matrix(archs, self.batch_size_, self.seq_len_)
        options = self.model_options or {}
        self.models_, self.bases_ = {}, {}
        for metric in self.metrics:
            y = targets(measurements, metric)
            if not self.priors_:
                self.models_[metric] = make_surrogate(self.model, self.random_state, **options)
                self.models_[metric].fit(X, y)
                continue
            if (y <= 0).any():
                raise SurrogateError(f"{metric}: targets must be positive for a log-space fit")
            P, z = self._prior_columns(archs, metric), np.log(y)
            base = RidgeCV(alphas=np.logspace(-3, 3, 13)).fit(P, z)
            residual = z - _out_of_fold_base(P, z, base.alpha_)
            transferred = make_surrogate(
                self.model, self.random_state, log_target=False, **options
            )
            transferred.fit(X, residual)
            own = make_surrogate(self.model, self.random_state, **options).fit(X, y)
            # Both errors are out-of-fold and in log units: keep whichever generalises better
            # (the priors help with ~10–20 measurements and can hurt with many).
            if transferred.oof_abs_error_ < own.oof_abs_error_:
                self.models_[metric], self.bases_[metric] = transferred, base
            else:
                self.models_[metric] = own
        return self

    def _prior_columns(self, archs: Sequence[Architecture], metric: str) -> np.ndarray:
        return np.hstack([prior.columns(archs, metric) for prior in self.priors_])

    def predict(self, archs: Sequence[Architecture], level: float = 0.9) -> dict[str, Prediction]:
        if not hasattr(self, "models_"):
            raise SurrogateError("the surrogate is not fitted yet")
        X = feature_matrix(archs, self.batch_size_, self.seq_len_)
        out = {}
        for metric, model in self.models_.items():
            prediction = model.predict(X, level)
            if metric in getattr(self, "bases_", {}):
                base = self.bases_[metric].predict(self._prior_columns(archs, metric))
                prediction = _shift_log(prediction, base)
            out[metric] = prediction
        return out

    def save(self, path: str | Path) -> None:
        Path(path).write_bytes(pickle.dumps({"format": FORMAT_VERSION, "surrogate": self}))

    @classmethod
    def load(cls, path: str | Path) -> DeviceSurrogate:
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
        if payload.get("format") != FORMAT_VERSION:
            raise SurrogateError(
                f"{path}: surrogate file format {payload.get('format')!r}; this edgetran "
                f"reads format {FORMAT_VERSION}: fit it again"
            )
        return payload["surrogate"]


def _out_of_fold_base(P: np.ndarray, z: np.ndarray, alpha: float) -> np.ndarray:
    """The ridge map's predictions for points it did not see (≤ 10 folds). The residual model
    learns from these, so its conformal intervals include the map's own error on new points;
    in-sample residuals understated it (90% intervals covered 76% at 10 measurements).
    Repeated measurements of one architecture (equal rows) share a fold; distinct rows keep
    the plain shuffled K-fold split."""
    from sklearn.linear_model import Ridge
    from sklearn.model_selection import KFold, cross_val_predict

    rows = [row.tobytes() for row in P]
    distinct = len(set(rows))
    if distinct == len(rows):
        return cross_val_predict(
            Ridge(alpha=alpha), P, z, cv=KFold(min(len(z), 10), shuffle=True, random_state=0)
        )
    held_out = grouped_folds(rows, max(2, min(distinct, 10)), np.random.default_rng(0))
    splits = [(np.setdiff1d(np.arange(len(z)), held), held) for held in held_out]
    return cross_val_predict(Ridge(alpha=alpha), P, z, cv=splits)


def _shift_log(residual: Prediction, base: np.ndarray) -> Prediction:
    """A log-space residual prediction plus its base, back in target units."""
    mean = np.exp(base + residual.mean)
    return Prediction(
        mean,
        mean * residual.std,  # delta method
        np.exp(base + residual.lower),
        np.exp(base + residual.upper),
        residual.level,
    )


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
    held_out = grouped_folds([m.hash for m in measurements], folds, np.random.default_rng(seed))
    archs = [Architecture.from_dict(m.model_dict) for m in measurements]
    fitted_priors = fit_priors(priors or {}, metrics, model, seed, model_options)
    collected: dict[str, list[tuple[np.ndarray, Prediction]]] = {m: [] for m in metrics}
    for held in held_out:
        train = [measurements[i] for i in np.setdiff1d(np.arange(len(measurements)), held)]
        surrogate = DeviceSurrogate(model, metrics, seed, model_options)
        surrogate.priors_ = fitted_priors  # priors never see the target device's data
        surrogate._fit_targets(train)
        predictions = surrogate.predict([archs[i] for i in held], level)
        for metric in metrics:
            y = targets([measurements[i] for i in held], metric)
            collected[metric].append((y, predictions[metric]))
    return {metric: scores(*_concatenate(parts)) for metric, parts in collected.items()}


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
