"""How ``codesign`` chooses its answer, and how the answer stands against the references.

Pure functions over numbers (no training, no measuring), so each rule is tested on numbers like
the demo's. The pipeline builds one :class:`Candidate` per feasible model–device pair it knows
(the search's evaluations, each evaluated architecture on every other device, every reference
on every device), measures the ones a rule needs measured, and calls :func:`choose`.

The rules, and why:

- ``one-std`` (the default): accuracy is noisy (a quick evaluation's test-set std is about 0.007
  on tweet-sentiment, as large as the differences between many models), so every feasible pair
  within one std of the most accurate is as good as it; of those, the fastest by measured
  latency wins, and energy (then peak power) decides only between pairs whose latencies are
  within each other's 95% interval.
- ``best``: the objective's plain maximum, except that a cost from the CPU-time estimate (energy
  and peak power without a power sensor: busy cores × watts) never overrides a measured latency
  difference larger than the latencies' 95% intervals. An estimate may break a tie; it never
  decides alone.

A reference that dominates the answer (no less accurate within one std, measurably faster) is
the answer instead (:func:`dominating_reference`): the search must beat what a user would pick
by hand, or say plainly that it did not.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field
from typing import Any

VERDICTS = ("dominates", "trades", "dominated")


@dataclass(frozen=True)
class Candidate:
    """One model–device pair the answer may be.

    Attributes:
        device: the device's name (``cpu/onnxruntime``, a recorded device's name).
        arch: the architecture's ``model_dict``; ``arch_hash`` its hash.
        metrics: :data:`~edgetran.metrics.METRIC_KEYS` (their units in their names), per
            sequence.
        accuracy_std: the accuracy's standard deviation (``None``: unknown, taken as 0);
            ``accuracy_runs``: the training runs (seeds) the accuracy is the mean of.
        latency_ci95_s: the measured latency's 95% interval (a prediction's interval for a
            predicted latency; ``None``: unknown, taken as a point).
        measured: the costs a device measured (latency by its timer; energy and peak power by a
            power sensor); ``estimated``: from the CPU-time estimate; ``predicted``: a
            surrogate's prediction.
        name: the reference's name when the pair is a named reference's; ``source`` says where
            the pair came from (``search``, ``device choice``, ``reference``).
        parameters: the model's parameter count (for the headline).
        contended: a measurement behind it was taken while other processes crowded the cores.
        accuracy_from: ``pytorch`` (the oracle's), or the runtime whose artifact was scored
            (a quantised device's pairs: the model as it runs there).
    """

    device: str
    arch: dict[str, Any]
    arch_hash: str
    metrics: dict[str, float]
    accuracy_std: float | None = None
    accuracy_runs: int = 1
    latency_ci95_s: tuple[float, float] | None = None
    measured: tuple[str, ...] = ()
    estimated: tuple[str, ...] = ()
    predicted: tuple[str, ...] = ()
    name: str | None = None
    source: str = "search"
    feasible: bool = True
    objective: float | None = None
    parameters: int | None = None
    contended: bool = False
    accuracy_from: str = "pytorch"

    @property
    def key(self) -> tuple[str, str]:
        """The pair's key: ``(arch_hash, device)``."""
        return self.arch_hash, self.device

    @property
    def std(self) -> float:
        """The accuracy's std, 0 when unknown."""
        s = self.accuracy_std
        return float(s) if s is not None and math.isfinite(s) else 0.0

    @property
    def latency_half_width_s(self) -> float:
        """Half the latency's 95% interval (0 when unknown)."""
        if not self.latency_ci95_s:
            return 0.0
        low, high = self.latency_ci95_s
        return max(0.0, (high - low) / 2)

    @property
    def label(self) -> str:
        """How a person names the pair: ``bert-tiny on cpu/torch`` or ``3f2a9c01 on …``."""
        return f"{self.name or self.arch_hash[:8]} on {self.device}"

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready; the metrics also flat (``accuracy``, ``latency_s`` …), as tables read
        them."""
        out = asdict(self) | dict(self.metrics)
        for name in ("measured", "estimated", "predicted"):
            out[name] = list(out[name])
        out["latency_ci95_s"] = list(self.latency_ci95_s) if self.latency_ci95_s else None
        return out


@dataclass(frozen=True)
class Decision:
    """The chosen pair, the rule, the candidate set and why this pair won."""

    rule: str
    winner: Candidate
    candidates: list[Candidate]
    best_accuracy: float
    best_accuracy_std: float
    threshold: float
    why: str
    within: list[tuple[str, str]] = field(default_factory=list)

    def to_dict(self) -> dict[str, Any]:
        """The decision as ``result.json`` holds it: the rule, every candidate and the winner."""
        within = set(self.within)
        return {
            "rule": self.rule,
            "best_accuracy": self.best_accuracy,
            "best_accuracy_std": self.best_accuracy_std,
            "threshold": self.threshold,
            "candidates": [
                c.to_dict()
                | {"within_one_std": c.key in within, "chosen": c.key == self.winner.key}
                for c in self.candidates
            ],
            "winner": self.winner.to_dict(),
            "why": self.why,
        }


def measurably_faster(a: Candidate, b: Candidate) -> bool:
    """Whether ``a``'s latency is below ``b``'s by more than their 95% intervals allow (the
    half-widths combined in quadrature)."""
    margin = math.hypot(a.latency_half_width_s, b.latency_half_width_s)
    return a.metrics["latency_s"] < b.metrics["latency_s"] - margin


def within_one_std(candidates: Sequence[Candidate]) -> tuple[Candidate, float, list[Candidate]]:
    """The most accurate feasible pair, the threshold one std below it, and the feasible
    pairs at or above the threshold (the one-standard-error rule)."""
    feasible = [c for c in candidates if c.feasible]
    best = max(feasible, key=lambda c: (c.metrics["accuracy"], -c.metrics["latency_s"]))
    threshold = best.metrics["accuracy"] - best.std
    return best, threshold, [c for c in feasible if c.metrics["accuracy"] >= threshold]


def fastest_then_cheapest(pairs: Sequence[Candidate]) -> tuple[Candidate, list[Candidate]]:
    """The fastest pair, unless others are not measurably slower than it: then, of those tied
    on latency, the one of least energy, then peak power (the only place an estimated cost
    counts). Returns the chosen pair and the latency tie it was chosen from."""
    fastest = min(pairs, key=lambda c: c.metrics["latency_s"])
    tied = [c for c in pairs if not measurably_faster(fastest, c)]
    chosen = min(
        tied,
        key=lambda c: (c.metrics["energy_j"], c.metrics["peak_power_w"], c.metrics["latency_s"]),
    )
    return chosen, tied


def choose(
    candidates: Sequence[Candidate],
    rule: str = "one-std",
    value: Callable[[Candidate], float] | None = None,
) -> Decision | None:
    """The answer among ``candidates`` under ``rule`` (``one-std`` or ``best``; ``value`` is
    the objective ``best`` maximises, default accuracy); ``None`` when none is feasible."""
    feasible = [c for c in candidates if c.feasible]
    if not feasible:
        return None
    best, threshold, within = within_one_std(feasible)
    if rule == "one-std":
        winner, tied = fastest_then_cheapest(within)
        why = _one_std_why(winner, tied, within, best)
    elif rule == "best":
        winner, why = _best(feasible, value or (lambda c: c.metrics["accuracy"]))
    else:
        raise ValueError(f"rule={rule!r}; allowed: one-std, best")
    return Decision(
        rule, winner, list(candidates), best.metrics["accuracy"], best.std, threshold, why,
        [c.key for c in within],
    )  # fmt: skip


def _one_std_why(
    winner: Candidate, tied: list[Candidate], within: list[Candidate], best: Candidate
) -> str:
    head = (
        f"{len(within)} feasible pair{'s' if len(within) > 1 else ''} lie within one std "
        f"({best.std:.4f}) of the most accurate ({best.label}, {best.metrics['accuracy']:.4f})"
    )
    if len(tied) == 1:
        return f"{head}; {winner.label} is the fastest of them by measured latency."
    estimated = "estimated " if "energy_j" in winner.estimated else ""
    return (
        f"{head}; {len(tied)} of them are within each other's 95% latency interval, and of "
        f"those {winner.label} takes the least {estimated}energy."
    )


def _best(feasible: list[Candidate], value: Callable[[Candidate], float]) -> tuple[Candidate, str]:
    """The objective's maximum, unless it won only by estimated costs over a pair that is
    measurably faster: then that pair (an estimate breaks ties, never decides alone)."""
    top = max(feasible, key=value)
    fair = max(feasible, key=lambda c: value(_estimates_as(c, top)))
    if fair.key != top.key and measurably_faster(fair, top):
        return fair, (
            f"{top.label} has the highest objective only through estimated costs "
            f"({', '.join(top.estimated)}); {fair.label} is measurably faster and best without "
            "them, so it is the answer."
        )
    return top, f"{top.label} has the highest objective ({value(top):.4f})."


def _estimates_as(candidate: Candidate, other: Candidate) -> Candidate:
    """``candidate`` with its estimated costs replaced by ``other``'s: compared this way, the
    estimates cannot tell the two apart."""
    if not candidate.estimated:
        return candidate
    metrics = dict(candidate.metrics)
    for name in candidate.estimated:
        metrics[name] = other.metrics[name]
    return Candidate(**{**asdict(candidate), "metrics": metrics})


# -- the answer against the references ----------------------------------------------------------
def compare_with_reference(winner: Candidate, reference: Candidate) -> dict[str, Any]:
    """One ``versus_references`` entry: latency and energy ratios (the reference's over the
    winner's: above 1, the winner is cheaper), Δaccuracy ± std (winner − reference), and the
    winner's verdict: ``dominates``, ``trades`` or ``dominated``.

    Judged on accuracy (a tie within one std, the larger of the two pairs': the rule the
    decision's one-std window uses, so that the verdict never contradicts the decision on the
    same numbers), latency (a tie within the 95% intervals) and energy only where both
    energies come from a power sensor: an estimate is shown, never judged on. The std shown
    with Δaccuracy is the difference's, ``hypot`` of the two.
    """
    w, r = winner.metrics, reference.metrics
    delta = w["accuracy"] - r["accuracy"]
    delta_std = math.hypot(winner.std, reference.std)
    one_std = max(winner.std, reference.std)
    judged = {
        "accuracy": _side(delta > one_std, delta < -one_std),
        "latency_s": _side(
            measurably_faster(winner, reference), measurably_faster(reference, winner)
        ),
    }
    if "energy_j" in winner.measured and "energy_j" in reference.measured:
        judged["energy_j"] = _side(w["energy_j"] < r["energy_j"], w["energy_j"] > r["energy_j"])
    return {
        "reference": reference.name,
        "device": reference.device,
        "accuracy": r["accuracy"],
        "accuracy_std": reference.accuracy_std,
        "latency_s": r["latency_s"],
        "energy_j": r["energy_j"],
        "peak_power_w": r["peak_power_w"],
        "latency_x": _ratio(r["latency_s"], w["latency_s"]),
        "energy_x": _ratio(r["energy_j"], w["energy_j"]),
        "accuracy_delta": delta,
        "accuracy_delta_std": delta_std,
        "judged": judged,
        "verdict": _verdict(judged.values()),
        "measured": "latency_s" in reference.measured and "latency_s" in winner.measured,
        "estimated": sorted(set(reference.estimated) | set(winner.estimated)),
        "contended": reference.contended or winner.contended,
    }


def dominating_reference(winner: Candidate, references: Sequence[Candidate]) -> Candidate | None:
    """The reference pair that is the answer instead of ``winner``: of the references that
    dominate it on measured latency at equal accuracy within one std, the one the one-std rule
    prefers (fastest, then least energy); ``None`` when none does."""
    dominating = [
        r
        for r in references
        if r.key != winner.key
        and r.feasible
        and "latency_s" in r.measured
        and "latency_s" in winner.measured
        and compare_with_reference(winner, r)["verdict"] == "dominated"
    ]
    return fastest_then_cheapest(dominating)[0] if dominating else None


def best_reference(references: Sequence[Candidate], rule: str = "one-std", value=None):
    """The reference pair a user would pick by hand: the rule applied to the references alone
    (``None`` when none is feasible)."""
    decision = choose(references, rule, value)
    return None if decision is None else decision.winner


def headline(answer: Candidate, reference: Candidate | None, rule: str, is_reference: bool) -> str:
    """The report's first sentence: the answer, its ratios to the best reference pair, the
    accuracy difference ± std, and the rule that chose it."""
    size = f"{answer.parameters / 1e6:.1f} M-parameter model" if answer.parameters else "model"
    if is_reference:
        return (
            f"Nothing in this space beat {answer.name} on {answer.device}: it is the answer "
            f"(accuracy {answer.metrics['accuracy']:.3f} ± {answer.std:.3f}, "
            f"{answer.metrics['latency_s'] * 1e3:.2f} ms per sequence; rule {rule})."
        )
    if reference is None:
        return (
            f"The answer is a {size} on {answer.device} (accuracy "
            f"{answer.metrics['accuracy']:.3f} ± {answer.std:.3f}, "
            f"{answer.metrics['latency_s'] * 1e3:.2f} ms per sequence; rule {rule}); no "
            "reference pair was feasible to compare it with."
        )
    versus = compare_with_reference(answer, reference)
    energy = "estimated " if versus["estimated"] else ""
    return (
        f"The answer is a {size} on {answer.device}: {_times(versus['latency_x'])} latency "
        f"and {_times(versus['energy_x'])} {energy}energy than {reference.label}, the best "
        f"reference pair, at accuracy {versus['accuracy_delta']:+.3f} ± "
        f"{versus['accuracy_delta_std']:.3f}; chosen by the {rule} rule."
    )


def _times(ratio: float | None) -> str:
    if ratio is None:
        return "unknown"
    return f"{ratio:.2f}× lower" if ratio >= 1 else f"{1 / ratio:.2f}× higher"


def _side(better: bool, worse: bool) -> str:
    return "better" if better else "worse" if worse else "tie"


def _verdict(sides) -> str:
    sides = list(sides)
    if "better" in sides and "worse" not in sides:
        return "dominates"
    if "worse" in sides and "better" not in sides:
        return "dominated"
    return "trades"


def _ratio(numerator: float, denominator: float) -> float | None:
    return numerator / denominator if denominator > 0 else None
