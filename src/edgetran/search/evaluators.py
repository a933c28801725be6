"""Evaluators: what a (model, device) pair scores — replayed from a table, or live.

An evaluator offers candidate pairs and evaluates one at a time. ``evaluate`` returns
:class:`Evaluation`: the four metrics under their names with units
(:data:`~edgetran.metrics.METRIC_KEYS`), which of them are predicted rather than measured, and
the 90% interval ends of predicted values (constraints are checked on them).
"""

from __future__ import annotations

import abc
import inspect
import math
from collections.abc import Collection, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from edgetran.errors import read_json_file
from edgetran.search.objectives import SearchError
from edgetran.search.table import Pair, read_table_curves
from edgetran.space import REFERENCE_SPACE, DesignSpace, sample

if TYPE_CHECKING:
    from edgetran.search.fidelity import Reporter


@dataclass(frozen=True)
class Accuracy:
    """An accuracy as the accuracy oracle reports it: ``value`` and its standard deviation
    (``None``: unknown)."""

    value: float
    std: float | None = None


@dataclass
class Evaluation:
    """Metrics of one pair under :data:`~edgetran.metrics.METRIC_KEYS`; ``predicted`` names
    estimated metrics, with interval ends (under the same keys).

    ``accuracy_runs`` holds the accuracy of each training run (seed) behind
    ``metrics["accuracy"]``, their mean; ``accuracy_std`` is that mean's standard deviation
    (``None``: unknown, e.g. a replayed table). ``contended``: the hardware metrics come from
    a stored measurement taken while other processes crowded the cores (its latency measures
    them too); never set for predicted metrics."""

    metrics: dict[str, float]
    predicted: list[str] = field(default_factory=list)
    lower: dict[str, float] = field(default_factory=dict)
    upper: dict[str, float] = field(default_factory=dict)
    accuracy_runs: list[float] = field(default_factory=list)
    accuracy_std: float | None = None
    accuracy_run_stds: list[float | None] = field(default_factory=list)
    contended: bool = False

    def add_accuracy_run(self, accuracy: Accuracy) -> None:
        """Another training run's accuracy: the mean of the runs becomes the accuracy, and its
        standard deviation combines each run's own (test-set) variance, which does not average
        down (every run is scored on the same test examples), with the spread between runs,
        which does: ``sqrt(mean(std_i²) + var(runs) / n)`` (``None`` for one run of unknown
        standard deviation)."""
        self.accuracy_runs.append(float(accuracy.value))
        self.accuracy_run_stds.append(accuracy.std)
        runs = np.array(self.accuracy_runs)
        self.metrics["accuracy"] = float(runs.mean())
        if len(runs) == 1 and accuracy.std is None:
            self.accuracy_std = None
            return
        within = float(np.mean([(s or 0.0) ** 2 for s in self.accuracy_run_stds]))
        between = float(runs.var(ddof=1)) if len(runs) > 1 else 0.0
        self.accuracy_std = float(np.sqrt(within + between / len(runs)))


#: Each cost → the device surrogate's prediction of it, and whether that prediction is per
#: batch (to divide by the batch size; peak power is a rate, the same for any batch).
SURROGATE_PREDICTION = {
    "latency_s": ("latency", True),
    "energy_j": ("energy", True),
    "peak_power_w": ("peak_power", False),
}


class Evaluator(abc.ABC):
    """Contract: ``devices`` is fixed; ``candidates`` returns pairs not in ``exclude`` (keys);
    ``evaluate`` is deterministic for a pair and may be slow (it trains or profiles).

    An evaluator whose training reports at rungs (:mod:`edgetran.search.fidelity`) sets
    :attr:`reports_rungs`; a search with a pruner refuses one that does not."""

    devices: tuple[str, ...]
    #: Whether :meth:`evaluate` calls its ``report`` at each rung of the training.
    reports_rungs: bool = False

    @abc.abstractmethod
    def candidates(self, n: int, rng: np.random.Generator, exclude: set[str]) -> list[Pair]:
        """Up to ``n`` distinct pairs whose keys are not in ``exclude``."""

    @abc.abstractmethod
    def evaluate(self, pair: Pair, report: Reporter | None = None) -> Evaluation:
        """The pair's metrics.

        With ``report`` (a search with a pruner passes one, only to an evaluator that
        :attr:`reports_rungs`), the evaluator calls ``report(rung, fidelity, evaluation)`` at
        each rung of its training, :data:`~edgetran.search.fidelity.RUNG_FRACTIONS` of its
        steps, with the evaluation so far (the pair's costs, the accuracy at that rung), the
        last rung included, and lets the :class:`~edgetran.search.fidelity.PrunedEvaluation`
        it may raise propagate (after freeing what the training holds)."""

    def reevaluate(self, pair: Pair, run: int) -> Accuracy | None:
        """The pair's accuracy from training run ``run`` (1, 2, …: another seed than
        :meth:`evaluate`'s run 0), or ``None`` where this evaluator has one accuracy per pair
        (a replayed table)."""
        return None

    def offers(self, pair: Pair) -> bool:
        """Whether ``pair`` is one this evaluator could offer as a candidate (a search's start
        pairs are checked with it before anything is evaluated)."""
        return pair.device in self.devices


class ReplayEvaluator(Evaluator):
    """Recorded pairs only: the pool is the table, each query one evaluation. A table with
    learning curves (``curves``: key → accuracy per rung) replays them to a ``report``."""

    def __init__(self, path: str | Path) -> None:
        self.table, self.curves = read_table_curves(path)
        self.devices = tuple(sorted({pair.device for pair, _ in self.table.values()}))

    @property
    def reports_rungs(self) -> bool:  # type: ignore[override]
        """Whether the table has learning curves to report."""
        return bool(self.curves)

    def candidates(self, n, rng, exclude) -> list[Pair]:
        """Up to ``n`` recorded pairs not in ``exclude``, drawn with ``rng``."""
        keys = [k for k in self.table if k not in exclude]
        if len(keys) > n:
            keys = [keys[i] for i in np.sort(rng.choice(len(keys), n, replace=False))]
        return [self.table[k][0] for k in keys]

    def offers(self, pair: Pair) -> bool:
        """Whether ``pair`` is recorded in the table."""
        return pair.key in self.table

    def evaluate(self, pair: Pair, report: Reporter | None = None) -> Evaluation:
        """The recorded metrics of ``pair``; with ``report`` and a curve, each rung's
        evaluation (the recorded costs, the curve's accuracy) is reported first."""
        if pair.key not in self.table:
            raise SearchError(f"pair {pair.key} is not in the benchmark table")
        metrics = self.table[pair.key][1].to_dict()
        if report is not None and pair.key in self.curves:
            from edgetran.search.fidelity import RUNG_FRACTIONS

            for rung, (fraction, accuracy) in enumerate(
                zip(RUNG_FRACTIONS, self.curves[pair.key], strict=True)
            ):
                report(rung, fraction, Evaluation({**metrics, "accuracy": accuracy}))
        return Evaluation(metrics)


class LiveEvaluator(Evaluator):
    """Accuracy from the accuracy oracle; hardware from the store when measured there, else
    from the device's surrogate (flagged as predicted, with its 90% interval).

    Args:
        accuracy: ``arch → accuracy``, a float or an :class:`Accuracy` (e.g.
            :func:`~edgetran.search.live.oracle_accuracy`); one that reports a standard
            deviation may also take ``run=k`` (the k-th training run, another seed), which
            :meth:`reevaluate` then uses.
        measured: ``(arch hash, device) → metrics`` already in the store.
        contended: the keys of ``measured`` whose measurement was contended (carried into
            the evaluation's ``contended``).
        surrogates: ``device → DeviceSurrogate`` for the rest. They predict per batch, so
            latency and energy are divided by the batch size of the measurements they learned
            from (``batch_size_``): every metric here is per sequence, as ``measured`` is.
        space: where candidate architectures are sampled.
    """

    def __init__(
        self,
        accuracy,
        measured,
        surrogates,
        space: DesignSpace = REFERENCE_SPACE,
        contended: Collection[tuple[str, str]] = (),
    ):
        self.accuracy = accuracy
        self.measured = measured
        self.contended = frozenset(contended)
        self.surrogates = surrogates
        self.devices = tuple(sorted(surrogates))
        self.space = space
        self.takes_run = _takes(accuracy, "run")
        self.reports_rungs = _takes(accuracy, "on_rung")

    def candidates(self, n, rng, exclude) -> list[Pair]:
        """Up to ``n`` distinct pairs of the space on the devices, not in ``exclude``."""
        archs = sample(n, method="random", seed=int(rng.integers(2**31)), space=self.space)
        devices = rng.choice(len(self.devices), size=n)
        pairs = [Pair(a, self.devices[d]) for a, d in zip(archs, devices, strict=True)]
        return list({p.key: p for p in pairs if p.key not in exclude}.values())

    def offers(self, pair: Pair) -> bool:
        """Whether ``pair`` lies in the space and on one of the devices."""
        return pair.device in self.devices and self.space.contains(pair.arch)

    def evaluate(self, pair: Pair, report: Reporter | None = None) -> Evaluation:
        """Accuracy from the oracle; hardware from the store, else predicted.

        With ``report`` (a :data:`~edgetran.search.fidelity.Reporter`), the costs come first
        and the training calls ``report(rung, fidelity, evaluation so far)`` at each rung: the
        costs and the rung's accuracy (its standard deviation unknown). What ``report`` raises
        (:class:`~edgetran.search.fidelity.PrunedEvaluation`) stops the training and
        propagates."""
        costs = self._costs(pair)
        if report is None:
            return _with_accuracy(costs, _as_accuracy(self.accuracy(pair.arch)))
        if not self.reports_rungs:
            raise SearchError(
                "this evaluator's accuracy does not report rungs (a training on a cluster "
                "cannot): use --pruner none"
            )

        def on_rung(rung: int, fidelity: float, accuracy: float) -> None:
            report(rung, fidelity, _with_accuracy(costs, Accuracy(accuracy)))

        return _with_accuracy(costs, _as_accuracy(self.accuracy(pair.arch, on_rung=on_rung)))

    def _costs(self, pair: Pair) -> Evaluation:
        """The pair's costs (no accuracy): from the store, else predicted."""
        evaluation = Evaluation({})
        stored = self.measured.get((pair.arch.hash, pair.device))
        if stored is not None:
            evaluation.metrics.update(stored)
            evaluation.contended = (pair.arch.hash, pair.device) in self.contended
            return evaluation
        surrogate = self.surrogates[pair.device]
        predictions = surrogate.predict([pair.arch], level=0.9)
        for metric, (predicted, per_batch) in SURROGATE_PREDICTION.items():
            p = predictions[predicted]
            per = surrogate.batch_size_ if per_batch else 1
            evaluation.metrics[metric] = float(p.mean[0]) / per
            evaluation.lower[metric] = float(p.lower[0]) / per
            evaluation.upper[metric] = float(p.upper[0]) / per
            evaluation.predicted.append(metric)
        return evaluation

    def reevaluate(self, pair: Pair, run: int) -> Accuracy | None:
        """Training run ``run``'s accuracy, or ``None`` for an oracle without runs."""
        if not self.takes_run:  # a plain ``arch → accuracy``: one accuracy per pair
            return None
        return _as_accuracy(self.accuracy(pair.arch, run=run))


def _takes(accuracy, name: str) -> bool:
    """Whether ``accuracy`` accepts the keyword ``name`` (``run``, ``on_rung``; decided once,
    so that a resumed search knows before its first evaluation)."""
    try:
        parameters = inspect.signature(accuracy).parameters
    except (TypeError, ValueError):  # a callable without a signature: assume the plain form
        return False
    return name in parameters or any(
        p.kind is inspect.Parameter.VAR_KEYWORD for p in parameters.values()
    )


def _with_accuracy(costs: Evaluation, accuracy: Accuracy) -> Evaluation:
    """A new evaluation: ``accuracy`` (one run) and the metrics, intervals and flags of
    ``costs`` (accuracy first among the metrics, as they were always listed)."""
    evaluation = Evaluation(
        {}, predicted=list(costs.predicted), lower=dict(costs.lower), upper=dict(costs.upper),
        contended=costs.contended,
    )  # fmt: skip
    evaluation.add_accuracy_run(accuracy)
    evaluation.metrics.update(costs.metrics)
    return evaluation


def _as_accuracy(value: float | Accuracy) -> Accuracy:
    return value if isinstance(value, Accuracy) else Accuracy(float(value))


def read_device_features(path: str | Path) -> dict[str, tuple[float, ...]]:
    """``device → features`` from a JSON object ``{device: [numbers]}``: every device named,
    every list non-empty, of finite numbers and as long as the others."""
    path = Path(path)
    data = read_json_file(path, SearchError)
    if not isinstance(data, dict) or not data:
        raise SearchError(f"{path}: expected a non-empty JSON object {{device: [numbers]}}")
    features: dict[str, tuple[float, ...]] = {}
    for device, values in data.items():
        if (
            not device
            or not isinstance(values, list)
            or not values
            or not all(
                isinstance(x, int | float) and not isinstance(x, bool) and math.isfinite(x)
                for x in values
            )
        ):
            raise SearchError(
                f"{path}: device {device!r}: expected a non-empty name and a non-empty list of "
                "finite numbers"
            )
        features[device] = tuple(float(x) for x in values)
    lengths = sorted({len(v) for v in features.values()})
    if len(lengths) > 1:
        raise SearchError(f"{path}: feature lists of different lengths {lengths}; expected one")
    return features


def device_matrix(
    devices: Sequence[str], features: dict[str, Sequence[float]] | None = None
) -> dict[str, np.ndarray]:
    """``device → vector`` in [0, 1]: one-hot, or the given features min–max scaled."""
    if not features:
        eye = np.eye(len(devices))
        return {d: eye[i] for i, d in enumerate(devices)}
    missing = [d for d in devices if d not in features]
    if missing:
        raise SearchError(f"device features missing for {', '.join(missing)}")
    F = np.array([features[d] for d in devices], dtype=float)
    span = np.where(np.ptp(F, axis=0) > 0, np.ptp(F, axis=0), 1.0)
    return {d: (F[i] - F.min(axis=0)) / span for i, d in enumerate(devices)}
