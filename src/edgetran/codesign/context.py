"""What every co-design stage shares: the run's configuration, database and output folder, the
records of the stages done so far, and the helpers several stages use (a device's spec and
meter, the accuracy oracle, the search's evaluator and objective, a pair's costs and its
:class:`~edgetran.codesign.decision.Candidate`).

The stages themselves are functions in :mod:`edgetran.codesign.stages` and the modules it
names; :class:`RunContext` holds no stage's logic.
"""

from __future__ import annotations

import hashlib
import math
import signal
import threading
from collections.abc import Callable
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from edgetran.codesign.config import CodesignConfig, CodesignError, DeviceSpec
from edgetran.metrics import COST_KEYS
from edgetran.space import Architecture
from edgetran.store import Store

#: Dev examples on which a quantised artifact must predict PyTorch's labels (99% of them)
#: before its test accuracy counts: a seeded subset, which keeps an int8 pair's scoring to
#: seconds (the whole dev split of tweet-sentiment is 3,720 examples).
INT8_DEV_EXAMPLES = 1000


class EvaluationTimeout(CodesignError):
    """An accuracy evaluation ran past ``eval_timeout_s``."""


@dataclass(frozen=True)
class Scored:
    """An accuracy, its std, and where it comes from (``pytorch`` or a runtime's name)."""

    value: float
    std: float | None
    source: str


def run_key(config: CodesignConfig) -> str:
    """The run's key in the database: its output folder (one run per folder)."""
    where = str(Path(config.out).resolve())
    return "codesign-" + hashlib.sha256(where.encode()).hexdigest()[:16]


def profile_settings(config: CodesignConfig, spec: DeviceSpec):
    """How the run measures the live device ``spec`` (:class:`ProfileSettings`)."""
    from edgetran.profile import ProfileSettings

    return ProfileSettings(
        device=spec.runner,
        runtime=spec.runtime,
        batch_size=config.batch_size,
        seq_len=config.seq_len,
        threads=config.threads,
        meter=config.meter,
        max_time_s=config.profile_max_time_s,
        idle_s=config.idle_s,
        require_quiet=config.require_quiet,
        seed=config.seed,
    )


def create_run_meter(settings):
    """The meter ``settings`` name, for the device they measure."""
    from edgetran.profile import create_meter

    return create_meter(settings.meter, settings.device, per_core_w=settings.core_watts)


class RunContext:
    """One co-design run as its stages see it.

    Attributes:
        config, store, out, emit: the run's configuration, database, output folder and
            progress callback; ``cluster`` and ``parallel``: where and how many at a time.
        key: the run's key in the database (:func:`run_key`).
        names: the devices the profile stage kept; ``surrogates``: their surrogates.
        done: every finished stage's record, by name.
        current: the stage at work; ``evaluated``: evaluations its search holds.
    """

    def __init__(
        self, config: CodesignConfig, store: Store, out: Path, emit, cluster=None, parallel=1
    ) -> None:
        self.config, self.store, self.out, self.emit = config, store, out, emit
        self.cluster, self.parallel = cluster, parallel
        self.key = run_key(config)
        self.specs = config.device_specs()
        self.names: list[str] = []
        self.surrogates: dict[str, Any] = {}
        self.done: dict[str, dict[str, Any]] = {}
        self.current: str | None = None
        self.evaluated = 0

    # -- devices -------------------------------------------------------------------------------
    def spec(self, device: str) -> DeviceSpec:
        """The spec of ``device`` (a recorded file's device: a recorded spec of that name)."""
        return next((s for s in self.specs if s.name == device), DeviceSpec(device, path="-"))

    def profile_settings(self, spec: DeviceSpec):
        """How the run measures the live device ``spec``."""
        return profile_settings(self.config, spec)

    def profiler(self, spec: DeviceSpec):
        """How a live device is measured: here (``None``) or on its cluster worker."""
        if self.cluster is None:
            return None
        from edgetran.profile.remote import remote_profiler

        return remote_profiler(self.cluster, spec.hardware)

    def meter(self, spec: DeviceSpec):
        """The meter that measures the live device ``spec`` here."""
        return create_run_meter(self.profile_settings(spec))

    def shape(self, device: str) -> tuple[int, int] | None:
        """The (batch, length) the run measures ``device`` at; ``None`` for a recorded one."""
        live = self.spec(device).live
        return (self.config.batch_size, self.config.seq_len) if live else None

    def quantised(self, device: str) -> bool:
        """Whether ``device`` runs a quantised runtime (``cpu/onnxruntime-int8`` …): its pairs'
        accuracy is the classifier's as that runtime runs it, not PyTorch's."""
        spec = self.spec(device)
        if not spec.live:
            return False
        from edgetran.export.runners import get_runtime

        return get_runtime(spec.runtime).quantize != "none"

    def any_quantised(self) -> bool:
        """Whether any live device runs a quantised runtime."""
        return any(self.quantised(spec.name) for spec in self.specs if spec.live)

    # -- accuracy ------------------------------------------------------------------------------
    def accuracy(self, budget: str) -> Callable[..., Any]:
        """``(arch, run=0, on_rung=None) → Accuracy`` at ``budget``: the oracle under
        ``eval_timeout_s``, a NaN refused (``on_rung``: its rungs, for a pruner; not on a
        cluster). At the final budget the classifiers are kept, so the final training of
        an architecture already trained there is that model (same budget and seed)."""
        from edgetran.search import oracle_accuracy

        c = self.config
        oracle = oracle_accuracy(
            c.task,
            self.store,
            budget,
            workspace=c.workspace,
            seed=c.seed,
            # a quantised device scores the classifier itself, in its runtime
            keep_models=budget == c.final_budget or self.any_quantised(),
            cluster=self.cluster,
        )

        def accuracy(arch: Architecture, run: int = 0, on_rung=None):
            # on a cluster the job's time limit bounds a training (an alarm here would leave
            # the job running on its worker)
            limit = c.eval_timeout_s if self.cluster is None else None
            rungs = {} if on_rung is None else {"on_rung": on_rung}
            with time_limit(limit):
                result = oracle(arch, run=run, **rungs)
            if not math.isfinite(result.value):
                raise CodesignError(
                    f"accuracy of {arch.hash[:10]} is {result.value} (a NaN loss?)"
                )
            return result

        def on_cluster(arch: Architecture, run: int = 0):  # no rungs: see oracle_accuracy
            return accuracy(arch, run)

        return accuracy if self.cluster is None else on_cluster

    def runtime_accuracy(
        self, arch: Architecture, device: str, budget: str, model: Path | None = None
    ) -> dict[str, Any]:
        """``arch``'s classifier at ``budget`` scored on the test split as ``device``'s runtime
        runs it (:func:`~edgetran.codesign.runtime_accuracy.artifact_accuracy`: its labels
        checked against PyTorch's on the dev split first; cached in the store, so a resumed
        run repeats none).

        Raises:
            LabelAgreementError: the artifact predicts PyTorch's labels on too few dev examples.
        """
        from edgetran.codesign.runtime_accuracy import artifact_accuracy

        c = self.config
        model = model or self.classifier(arch, budget)
        result = artifact_accuracy(
            model, self.spec(device).runtime, c.task, store=self.store,
            workspace=c.workspace, seq_len=c.seq_len, dev_examples=INT8_DEV_EXAMPLES,
            seed=c.seed,
        )  # fmt: skip
        if not result.get("cached"):
            self.emit(
                f"  {arch.hash[:10]} on {device}: accuracy {result['accuracy']:.4f} (PyTorch "
                f"{result['torch_accuracy']:.4f} at the same length; dev labels agree "
                f"{result['verification']['agreement']:.3f})"
            )
        return result

    def classifier(self, arch: Architecture, budget: str) -> Path:
        """The folder of ``arch``'s classifier at ``budget``: the one kept, else trained here."""
        from edgetran.train.oracle import kept_classifier, train_classifier

        c = self.config
        kept = kept_classifier(arch, c.task, budget, store=self.store, seed=c.seed)
        if kept:
            return kept["model"]
        # evaluated before classifiers were kept: trained once more, here
        model = self.out / "classifiers" / f"{arch.hash}-{budget}"
        if not (model / "config.json").is_file():
            train_classifier(
                arch, c.task, budget, store=self.store, workspace=c.workspace, seed=c.seed,
                out=model,
            )  # fmt: skip
        return model

    def scored_in_runtime(self, arch: Architecture, device: str, budget: str, model=None):
        """:meth:`runtime_accuracy` as an accuracy with its std and its source."""
        result = self.runtime_accuracy(arch, device, budget, model)
        return Scored(result["accuracy"], result["accuracy_std"], self.spec(device).runtime)

    # -- the search's view ---------------------------------------------------------------------
    def evaluator(self, accuracy: Callable[..., Any] | None = None):
        """The search's evaluator: ``accuracy`` (default: the oracle at the search budget),
        hardware stored or predicted."""
        from edgetran.search import LiveEvaluator, device_measurements
        from edgetran.search.live import measured_costs

        accuracy = accuracy or self.accuracy(self.config.budget)
        measured, contended = {}, set()
        for device in self.names:
            items = device_measurements(self.store, device, self.shape(device))
            costs, crowded = measured_costs(device, items)
            measured, contended = measured | costs, contended | crowded
        return LiveEvaluator(
            accuracy, measured, self.surrogates, self.config.design_space(), contended
        )

    def search_settings(self, **changes):
        """The search's settings: the objective (its norms from the ``objective`` stage) and the
        budgets."""
        from edgetran.search import PaperObjective, SearchSettings

        norms = self.done["objective"]["norms"]
        paper = PaperObjective().with_norms(
            norms["latency_s"], norms["energy_j"], norms["peak_power_w"]
        )
        return SearchSettings(
            objective=self.config.objective,
            paper=paper,
            constraints=self.config.constraints(),
            **changes,
        )

    def value(self, candidate) -> float:
        """The scalar objective of a candidate (the paper objective for ``pareto``)."""
        return self.search_settings().value(candidate.metrics)

    # -- pairs and their costs -----------------------------------------------------------------
    def stored_measurement(self, arch: Architecture, device: str):
        """The store's latest uncontended measurement of ``arch`` on ``device`` at the run's
        shape, or ``None``."""
        from edgetran.search import device_measurements

        found = [
            m
            for m in device_measurements(self.store, device, self.shape(device))
            if m.hash == arch.hash
        ]
        quiet = [m for m in found if not m.contended]
        return (quiet or found or [None])[-1]

    def measure(self, arch: Architecture, spec: DeviceSpec):
        """``arch`` measured on the live device ``spec`` (a stored measurement is reused)."""
        from edgetran.profile import profile_into_store

        measurement, cached = next(
            profile_into_store(
                [arch],
                self.profile_settings(spec),
                self.store,
                profiler=self.profiler(spec),
                device=spec.hardware,
            )
        )
        if not cached:
            self.emit(
                f"  measured {arch.hash[:10]} on {spec.name}: "
                f"{measurement.latency_s_per_seq * 1e3:.2f} ms/seq"
            )
        return measurement

    def hardware(self, arch: Architecture, device: str, *, measure: bool) -> dict[str, Any]:
        """``arch``'s costs on ``device`` per sequence, in units' names, and where they come
        from: a measurement (stored; with ``measure``, taken now on a live device) or the
        device's surrogate."""
        spec = self.spec(device)
        found = (
            self.measure(arch, spec)
            if measure and spec.live
            else self.stored_measurement(arch, device)
        )
        if found is not None:
            return measured_costs(found)
        return self.predicted_costs(arch, device)

    def predicted_costs(self, arch: Architecture, device: str) -> dict[str, Any]:
        """``arch``'s costs on ``device`` as the device's surrogate predicts them."""
        from edgetran.search import Accuracy, Pair

        evaluation = self.evaluator(lambda _arch: Accuracy(0.0)).evaluate(Pair(arch, device))
        lower, upper = evaluation.lower, evaluation.upper
        return {
            "metrics": {k: evaluation.metrics[k] for k in COST_KEYS},
            "lower": lower,
            "upper": upper,
            "latency_ci95_s": (lower["latency_s"], upper["latency_s"])
            if "latency_s" in lower
            else None,
            "measured": (),
            "estimated": (),
            "predicted": tuple(evaluation.predicted),
            "contended": False,
        }

    def candidate(
        self,
        arch: Architecture,
        device: str,
        accuracy: float,
        accuracy_std: float | None,
        *,
        name: str | None = None,
        source: str = "search",
        measure: bool = False,
        runs: int = 1,
        accuracy_from: str = "pytorch",
    ):
        """A :class:`~edgetran.codesign.decision.Candidate` of ``arch`` on ``device`` with
        this accuracy, its costs stored, measured now (``measure``) or predicted, and its
        feasibility under the budgets (a predicted cost on its interval's upper end)."""
        from dataclasses import replace

        from edgetran.codesign.decision import Candidate
        from edgetran.space.costs import estimate_costs

        hw = self.hardware(arch, device, measure=measure)
        metrics = {"accuracy": float(accuracy), **hw["metrics"]}
        violated = self.config.constraints().violations(
            metrics, {**metrics, **hw.get("upper", {})}, {**metrics, **hw.get("lower", {})}
        )
        made = Candidate(
            device=device, arch=arch.to_model_dict(), arch_hash=arch.hash, metrics=metrics,
            accuracy_std=accuracy_std, accuracy_runs=runs, latency_ci95_s=hw["latency_ci95_s"],
            measured=hw["measured"], estimated=hw["estimated"], predicted=hw["predicted"],
            name=name, source=source, feasible=not violated,
            parameters=estimate_costs(arch).parameters, contended=hw["contended"],
            accuracy_from=accuracy_from,
        )  # fmt: skip
        return replace(made, objective=self.value(made))


def measured_costs(measurement) -> dict[str, Any]:
    """A measurement's costs per sequence and what they are: latency by the device's timer;
    energy and peak power measured by a sensor, or the CPU-time estimate."""
    from edgetran.search.live import per_sequence

    batch = measurement.batch_size
    ci = measurement.latency_ci95_s
    sensed = measurement.meter_kind == "measured"
    costs = ("energy_j", "peak_power_w")
    return {
        "metrics": per_sequence(measurement),
        "latency_ci95_s": (ci[0] / batch, ci[1] / batch) if ci else None,
        "measured": ("latency_s", *(costs if sensed else ())),
        "estimated": () if sensed else costs,
        "predicted": (),
        "contended": bool(measurement.contended),
    }


@contextmanager
def time_limit(seconds: float | None):
    """Raise :class:`EvaluationTimeout` in the main thread after ``seconds`` (POSIX timers;
    elsewhere, or in another thread, no limit)."""
    usable = (
        seconds is not None
        and hasattr(signal, "setitimer")
        and threading.current_thread() is threading.main_thread()
    )
    if not usable:
        yield
        return

    def expire(_signum, _frame):
        raise EvaluationTimeout(f"the evaluation ran past eval_timeout_s={seconds:g}")

    previous = signal.signal(signal.SIGALRM, expire)
    signal.setitimer(signal.ITIMER_REAL, seconds)
    try:
        yield
    finally:
        signal.setitimer(signal.ITIMER_REAL, 0)
        signal.signal(signal.SIGALRM, previous)
