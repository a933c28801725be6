"""Co-search objectives: the reference scalarisation and Pareto search under budgets.

Metrics are read under their names with units (:mod:`edgetran.metrics`): ``accuracy``
(fraction), ``latency_s`` (s per sequence), ``energy_j`` (J per sequence), ``peak_power_w`` (W).
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping, Sequence
from dataclasses import astuple, dataclass, fields, replace

import numpy as np

from edgetran.errors import SearchError
from edgetran.metrics import COST_KEYS
from edgetran.metrics import METRIC_KEYS as METRIC_KEYS  # re-exported: search reads it here

#: Pareto directions: accuracy up, the costs down.
DIRECTIONS = ("maximize", "minimize", "minimize", "minimize")


@dataclass(frozen=True)
class PaperObjective:
    """``perf = w_a·accuracy + w_l·(1 − latency/L) + w_e·(1 − energy/E) + w_p·(1 − P/Pn)``,
    maximised (reference ``run_codesign.py``; defaults 0.5/0.2/0.2/0.1, 1000 s, 2000 J, 300 W).
    """

    accuracy_weight: float = 0.5
    latency_weight: float = 0.2
    energy_weight: float = 0.2
    peak_power_weight: float = 0.1
    latency_norm_s: float = 1000.0
    energy_norm_j: float = 2000.0
    peak_power_norm_w: float = 300.0

    def __post_init__(self) -> None:
        for name in ("latency_norm_s", "energy_norm_j", "peak_power_norm_w"):
            if getattr(self, name) <= 0:
                raise SearchError(f"{name}={getattr(self, name)}; expected a positive number")

    def value(self, metrics: Mapping[str, float]) -> float:
        """The objective of ``metrics`` (:data:`METRIC_KEYS`; numbers or arrays of draws)."""
        return (
            self.accuracy_weight * metrics["accuracy"]
            + self.latency_weight * (1 - metrics["latency_s"] / self.latency_norm_s)
            + self.energy_weight * (1 - metrics["energy_j"] / self.energy_norm_j)
            + self.peak_power_weight * (1 - metrics["peak_power_w"] / self.peak_power_norm_w)
        )

    def with_norms(self, latency_s: float, energy_j: float, peak_power_w: float) -> PaperObjective:
        """The same weights over other cost normalisers (validated as at construction)."""
        return replace(
            self, latency_norm_s=latency_s, energy_norm_j=energy_j, peak_power_norm_w=peak_power_w
        )

    @property
    def weights(self) -> dict[str, float]:
        """The weights by metric, in units' names (as ``result.json`` shows them)."""
        # the fields are declared as the weights in METRIC_KEYS' order, then the norms
        return dict(zip(METRIC_KEYS, astuple(self)[:4], strict=True))

    @property
    def norms(self) -> dict[str, float]:
        """The cost normalisers by metric, in units' names."""
        return dict(zip(COST_KEYS, astuple(self)[4:], strict=True))


@dataclass(frozen=True)
class ReferenceCost:
    """A named reference's measured (or predicted) costs on one device, per sequence: what
    :func:`run_scale_norms` chooses the normalisers from."""

    name: str
    device: str
    parameters: int
    latency_s: float
    energy_j: float
    peak_power_w: float


def run_scale_norms(costs: Sequence[ReferenceCost]) -> tuple[dict[str, float], ReferenceCost]:
    """The paper objective's normalisers at this run's scale: the largest reference's (most
    parameters) costs on its slowest device, and the cost they come from.

    Why: the reference code's 1000 s / 2000 J / 300 W were made for its tables of Raspberry
    Pis and A100s; at millisecond latencies they move the objective by less than 1e-5, so only
    accuracy and peak power decide. Divided by the largest reference's own costs, a model
    twice as fast as that reference gains half the latency weight.

    Raises:
        SearchError: no costs, or a cost that is not a positive number.
    """
    if not costs:
        raise SearchError("run-scale norms need a reference's measured costs; none were given")
    largest = max(c.parameters for c in costs)
    basis = max((c for c in costs if c.parameters == largest), key=lambda c: c.latency_s)
    norms = {
        "latency_s": basis.latency_s,
        "energy_j": basis.energy_j,
        "peak_power_w": basis.peak_power_w,
    }
    for name, value in norms.items():
        if not (isinstance(value, int | float) and 0 < value < math.inf):
            raise SearchError(
                f"{basis.name} on {basis.device} has {name}={value!r}; run-scale norms need "
                "positive costs (pass --norms reference or three numbers)"
            )
    return norms, basis


@dataclass(frozen=True)
class Constraints:
    """User budgets (``None`` = unconstrained). Predicted values are checked on the upper end
    of their 90% interval (the lower end for accuracy), so a pair is never called feasible on
    the strength of an optimistic guess."""

    max_latency_ms: float | None = None
    max_energy_mj: float | None = None
    max_peak_power_w: float | None = None
    min_accuracy: float | None = None

    def __post_init__(self) -> None:
        for name in ("max_latency_ms", "max_energy_mj", "max_peak_power_w", "min_accuracy"):
            value = getattr(self, name)
            if value is None:
                continue
            number = isinstance(value, int | float) and not isinstance(value, bool)
            if name == "min_accuracy":
                if not number or not 0 <= value <= 1:
                    raise SearchError(f"{name}={value!r} is invalid; allowed: a number in [0, 1]")
            elif not number or not 0 < value < math.inf:
                raise SearchError(f"{name}={value!r} is invalid; allowed: a finite value > 0")

    def describe(self) -> str:
        """The budgets set, e.g. ``max_latency_ms=5, min_accuracy=0.8``, or ``none``."""
        budgets = [
            f"{f.name}={getattr(self, f.name):g}"
            for f in fields(self)
            if getattr(self, f.name) is not None
        ]
        return ", ".join(budgets) or "none"

    def violations(
        self,
        metrics: Mapping[str, float],
        upper: Mapping[str, float] | None = None,
        lower: Mapping[str, float] | None = None,
    ) -> list[str]:
        """Names of the violated budgets."""
        return [
            name
            for name, value, bound, sign in self._checks(upper or metrics, lower or metrics)
            if bound is not None and sign * (value - bound) > 0
        ]

    def within(self, metrics: Mapping[str, np.ndarray]) -> np.ndarray:
        """Elementwise over array-valued metrics (any one shape): True where every budget is
        met (a surrogate's draws, which have no interval of their own)."""
        ok = np.ones(np.shape(metrics["accuracy"]), dtype=bool)
        for _, value, bound, sign in self._checks(metrics, metrics):
            if bound is not None:
                ok &= sign * (np.asarray(value) - bound) <= 0
        return ok

    def _checks(self, upper: Mapping[str, float], lower: Mapping[str, float]):
        """``(name, value in the budget's unit, bound, sign)``: violated when
        ``sign·(value − bound) > 0``."""
        return (
            # in the budget's unit (ms, mJ: the person's number), so a bound is exact
            ("max_latency_ms", upper["latency_s"] * 1e3, self.max_latency_ms, 1),
            ("max_energy_mj", upper["energy_j"] * 1e3, self.max_energy_mj, 1),
            ("max_peak_power_w", upper["peak_power_w"], self.max_peak_power_w, 1),
            ("min_accuracy", lower["accuracy"], self.min_accuracy, -1),
        )


def pareto_mask(points: Sequence[Sequence[float]]) -> np.ndarray:
    """``(n,)`` True where a point of :data:`METRIC_KEYS` rows is not
    dominated (accuracy maximised, the rest minimised)."""
    P = np.asarray(points, dtype=float).copy()
    if len(P) == 0:
        return np.zeros(0, dtype=bool)
    P[:, 0] = -P[:, 0]  # all minimised
    keep = np.ones(len(P), dtype=bool)
    for i in range(len(P)):
        dominated = (P[i] >= P).all(axis=1) & (P[i] > P).any(axis=1)
        keep[i] = not dominated.any()
    return keep


def paper_with_norms(
    norms: str | tuple[float, float, float],
    costs: Callable[[], Sequence[ReferenceCost]],
    paper: PaperObjective | None = None,
) -> tuple[PaperObjective, dict[str, object]]:
    """The paper objective under ``norms`` (``run``, ``reference`` or three numbers, as
    :func:`edgetran.search.settings.parse_norms` gives them), and what ``result.json``'s
    ``objective`` records of them: ``norms``, ``norms_source`` and ``norms_basis``.

    ``costs`` is called only for ``run``: the references' costs to take the scale from.
    """
    paper = paper or PaperObjective()
    if norms == "reference":
        return paper, {
            "norms": paper.norms,
            "norms_source": "reference",
            "norms_basis": "the reference code's constants (1000 s, 2000 J, 300 W)",
        }
    if isinstance(norms, tuple):
        paper = paper.with_norms(*norms)
        return paper, {"norms": paper.norms, "norms_source": "given", "norms_basis": "given"}
    scale, basis = run_scale_norms(costs())
    paper = paper.with_norms(scale["latency_s"], scale["energy_j"], scale["peak_power_w"])
    return paper, {
        "norms": paper.norms,
        "norms_source": "run",
        "norms_basis": f"{basis.name} on {basis.device} (the largest reference on its slowest "
        "device)",
    }
