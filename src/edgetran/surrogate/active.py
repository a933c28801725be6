"""Active-learning profiling (``edgetran profile --active``): measure few models, chosen
where the surrogate knows least.

Starting from a Latin-hypercube set, each step fits the surrogate on everything measured, draws
a fresh random pool of candidates, and profiles the one with the highest acquisition score. It
stops at the budget, or when the latency MAPE on a random held-out split of the measured set
meets the target. Every profile is handed to ``on_measured`` (the CLI stores it at once), and
already-measured architectures are passed back in as ``existing``, so a killed run resumes
where it stopped.

Acquisitions (``BENCHMARKS.md``, "Active learning", has the replay figures):

- ``uncertainty`` (default): the largest predicted relative uncertainty (std / mean, summed
  over the metrics). On replays of the Jetson Nano and A100 tables it reached a lower held-out
  MAPE than random sampling after 60 measurements (−15% and −3%);
- ``diverse``: that uncertainty times the distance, in the normalised embedding, to the nearest
  measured architecture (meant to stop it re-sampling one corner; it did no better);
- ``random``: the baseline.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

import numpy as np

from edgetran.space import REFERENCE_SPACE, Architecture, DesignSpace, sample
from edgetran.store import Measurement, Store
from edgetran.surrogate.base import MIN_SAMPLES, SurrogateError
from edgetran.surrogate.device import METRICS, DeviceSurrogate, targets

if TYPE_CHECKING:
    from edgetran.profile import Meter, ProfileSettings

Profiler = Callable[[Architecture], Measurement]
CandidateSource = Callable[[int, np.random.Generator], list[Architecture]]

#: Lighter ensemble settings: the loop refits at every step.
FAST_GBDT = {"n_models": 3, "n_estimators": 200, "learning_rate": 0.06}


@dataclass
class ActiveResult:
    """What active profiling measured, how each round went and why it stopped."""

    measurements: list[Measurement]
    history: list[dict[str, float]] = field(default_factory=list)
    stopped_because: str = "budget"


def holdout_mape(measurements: Sequence[Measurement], seed: int, share: float = 0.2) -> float:
    """Latency MAPE of a surrogate fitted on a random (1 − share) of the measurements."""
    order = np.random.default_rng(seed).permutation(len(measurements))
    n_test = max(1, round(share * len(measurements)))
    test = [measurements[i] for i in order[:n_test]]
    train = [measurements[i] for i in order[n_test:]]
    surrogate = _fit(train, seed, metrics=("latency",))
    archs = [Architecture.from_dict(m.model_dict) for m in test]
    predicted = surrogate.predict(archs)["latency"].mean
    y = targets(test, "latency")
    return float(np.mean(np.abs(predicted - y) / y))


def _fit(
    measurements: Sequence[Measurement], seed: int, metrics: Sequence[str] = tuple(METRICS)
) -> DeviceSurrogate:
    return DeviceSurrogate("gbdt", metrics, seed, model_options=FAST_GBDT).fit(measurements)


ACQUISITIONS = ("diverse", "uncertainty", "random")


def relative_uncertainty(surrogate: DeviceSurrogate, pool: Sequence[Architecture]) -> np.ndarray:
    """``(n,)`` predicted std / mean, summed over the surrogate's metrics."""
    predictions = surrogate.predict(pool)
    return sum(p.std / np.maximum(p.mean, 1e-12) for p in predictions.values())


def distance_to_measured(
    pool: Sequence[Architecture], measured: Sequence[Architecture]
) -> np.ndarray:
    """``(n,)`` Euclidean distance in the normalised embedding to the nearest measured one."""
    P = np.array([REFERENCE_SPACE.encode_normalised(a) for a in pool])  # (n, 37)
    M = np.array([REFERENCE_SPACE.encode_normalised(a) for a in measured])  # (m, 37)
    return np.sqrt(((P[:, None, :] - M[None, :, :]) ** 2).sum(-1)).min(axis=1)


def acquire(
    acquisition: str,
    surrogate: DeviceSurrogate,
    pool: Sequence[Architecture],
    measured: Sequence[Architecture],
    rng: np.random.Generator,
) -> int:
    """Index in ``pool`` of the next architecture to profile."""
    if acquisition == "random":
        return int(rng.integers(len(pool)))
    score = relative_uncertainty(surrogate, pool)
    if acquisition == "diverse":
        score = score * distance_to_measured(pool, measured)
    return int(np.argmax(score))


def active_learning(
    profile: Profiler,
    *,
    initial: Sequence[Architecture],
    candidates: CandidateSource,
    budget: int,
    target_mape: float | None = None,
    pool_size: int = 64,
    acquisition: str = "uncertainty",
    metrics: Sequence[str] = tuple(METRICS),
    seed: int = 0,
    existing: Sequence[Measurement] = (),
    on_measured: Callable[[Measurement], None] | None = None,
) -> ActiveResult:
    """Profile up to ``budget`` architectures (``existing`` ones count towards it).

    ``metrics`` are those whose uncertainty drives the acquisition; the held-out latency MAPE
    (``history``) is computed only when there is a ``target_mape`` to check it against.
    """
    if acquisition not in ACQUISITIONS:
        raise SurrogateError(
            f"acquisition {acquisition!r} is unknown; allowed: {', '.join(ACQUISITIONS)}"
        )
    rng = np.random.default_rng(seed)
    measured = list(existing)
    seen = {m.hash for m in measured}
    result = ActiveResult(measured)

    def take(arch: Architecture) -> None:
        measurement = profile(arch)
        measured.append(measurement)
        seen.add(arch.hash)
        if on_measured is not None:
            on_measured(measurement)

    for arch in initial:
        if len(measured) >= budget:
            break
        if arch.hash not in seen:
            take(arch)
    while len(measured) < budget:
        if target_mape is not None and len(measured) >= max(MIN_SAMPLES + 2, 10):
            error = holdout_mape(measured, seed)
            result.history.append({"n": len(measured), "holdout_mape": error})
            if error <= target_mape:
                result.stopped_because = "target"
                return result
        pool = [a for a in candidates(pool_size, rng) if a.hash not in seen]
        if not pool:
            result.stopped_because = "no candidates left"
            return result
        if len(measured) < MIN_SAMPLES + 2 or acquisition == "random":
            take(pool[int(rng.integers(len(pool)))])
            continue
        archs = [Architecture.from_dict(m.model_dict) for m in measured]
        surrogate = _fit(measured, seed, metrics)
        take(pool[acquire(acquisition, surrogate, pool, archs, rng)])
    return result


def profile_actively(
    settings: ProfileSettings,
    meter: Meter,
    space: DesignSpace,
    store: Store,
    budget: int,
    *,
    target_mape: float | None = None,
    initial: int = 10,
    pool_size: int = 64,
    acquisition: str = "uncertainty",
    on_measured: Callable[[Measurement], None] | None = None,
    first: Sequence[Architecture] = (),
    profiler: Callable[..., Measurement] | None = None,
    device: str | None = None,
) -> ActiveResult:
    """Active-learning profiling of one device, runtime and input shape into ``store``,
    resumable: the stored measurements of that device, runtime and shape count towards
    ``budget`` and are never profiled again; each new one is stored before ``on_measured``
    sees it. ``first`` (known models) are measured before the initial design, in its place.
    ``profiler`` and ``device`` are :func:`~edgetran.profile.profile_into_store`'s (a lab
    node's worker and its name)."""
    from edgetran.profile import profile_architecture, stored_measurements  # torch, when used

    profiler = profiler or profile_architecture

    def measured(measurement: Measurement) -> None:
        store.add(measurement)
        if on_measured is not None:
            on_measured(measurement)

    def candidates(n: int, rng: np.random.Generator) -> list[Architecture]:
        return sample(n, method="random", seed=int(rng.integers(2**31)), space=space)

    return active_learning(
        lambda arch: profiler(arch, settings, meter),
        initial=[
            *first,
            *sample(min(initial, budget), method="lhs", seed=settings.seed, space=space),
        ],
        candidates=candidates,
        budget=budget,
        target_mape=target_mape,
        pool_size=pool_size,
        acquisition=acquisition,
        seed=settings.seed,
        existing=stored_measurements(store, settings, device),
        on_measured=measured,
    )


class ReplayDevice:
    """A simulated device that replays a recorded measurement table.

    Profiling an architecture returns its recorded measurement; candidates are drawn from the
    recorded architectures only (optionally excluding a test set).
    """

    def __init__(self, measurements: Sequence[Measurement], exclude: Sequence[str] = ()) -> None:
        self.table = {m.hash: m for m in measurements}
        self.excluded = set(exclude)
        self.archs = {h: Architecture.from_dict(m.model_dict) for h, m in self.table.items()}

    def profile(self, arch: Architecture) -> Measurement:
        """The recorded measurement of ``arch``."""
        return self.table[arch.hash]

    def candidates(self, n: int, rng: np.random.Generator) -> list[Architecture]:
        """Up to ``n`` recorded architectures not excluded, drawn with ``rng``."""
        keys = [h for h in self.table if h not in self.excluded]
        chosen = rng.choice(len(keys), size=min(n, len(keys)), replace=False)
        return [self.archs[keys[i]] for i in chosen]
