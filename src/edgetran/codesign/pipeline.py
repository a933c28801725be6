"""The co-design pipeline: task, devices and budgets in; the best model–device pair, trained,
exported for that device's runtime and measured there, and the evidence, out.

Stages, in order (each recorded in the workspace database when it finishes; a resumed run
skips the finished ones, and the unfinished one resumes from what the database holds):

1. ``profile``: each live device is profiled with active learning up to ``profile_budget``
   measurements (stored ones count); recorded devices' files are imported.
2. ``surrogates``: one surrogate per device, with held-out (parity) predictions for the report.
3. ``objective``: the objective's rule, weights and norms; ``run`` norms are the largest
   reference's measured costs on the slowest live device, so that a cost term moves the
   objective by the share its weight promises (the reference code's 1000 s, 2000 J, 300 W move
   it by less than 1e-5 at millisecond scale).
4. ``search``: the co-search (BOSHCODE or another sampler) with the accuracy oracle, under the
   budgets; ``compare`` runs a second sampler on the same number of evaluations.
5. ``references``: the named BERTs on every device: accuracy at the search's budget and at
   ``final_budget``, costs measured on the live devices.
6. ``decision``: every evaluated architecture and every reference on every device (accuracy
   does not depend on the device; another device's cost is a stored measurement or a
   prediction, not a training), the pairs the rule needs measured measured, and the answer
   chosen by ``choose`` (:mod:`edgetran.codesign.decision`).
7. ``growprune``: GPTran's grow-and-prune of the winner on its device (skipped, saying why,
   when the search budget trains no MLM steps: its losses would be untrained models').
8. ``final_training``: the winner trained at ``final_budget`` and saved in ``OUT/model``.
9. ``verdict``: the answer against every reference pair at the final budget; a reference that
   dominates it is the answer instead (its classifier becomes ``OUT/model``).
10. ``export``: the model exported to the answer's runtime, verified against PyTorch.
11. ``final_measurement``: the exported artifact profiled on the live device (measured).

A stage that cannot run (grow-and-prune switched off, export and final measurement of a
recorded device) is skipped and says why. Every evaluation, measurement and trained model
lives in the database or the workspace, so ``kill -9`` followed by ``resume`` repeats none.

Whatever can be checked is checked before any work (:func:`check_before_work`). A stage's
seconds are those of every attempt (a killed one's included: each records its time as it
goes). A search none of whose evaluations succeeded is not finished: the run stops and
``resume`` tries it again. ``restart`` discards the run's record (its stages and searches) and
starts it again; a run that finished no stage is simply started again.
"""

from __future__ import annotations

import hashlib
import json
import math
import platform
import shutil
import signal
import threading
import time
import uuid
from collections import Counter
from collections.abc import Callable
from contextlib import contextmanager, suppress
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
from sqlalchemy.exc import SQLAlchemyError

from edgetran.codesign.config import (
    FILE_FORMATS,
    MIN_SURROGATE_SAMPLES,
    CodesignConfig,
    CodesignError,
    DeviceSpec,
    check_local_devices,
)
from edgetran.errors import Interrupted
from edgetran.metrics import COST_KEYS
from edgetran.space import NAMED_ARCHITECTURES, Architecture
from edgetran.store import Store
from edgetran.store.masking import mask_secrets

STAGES = (
    "profile",
    "surrogates",
    "objective",
    "search",
    "compare",
    "references",
    "decision",
    "growprune",
    "final_training",
    "verdict",
    "export",
    "final_measurement",
)
#: Folds of the held-out predictions behind the parity plots.
PARITY_FOLDS = 5
#: Dev examples on which a quantised artifact must predict PyTorch's labels (99% of them)
#: before its test accuracy counts: a seeded subset, which keeps an int8 pair's scoring to
#: seconds (the whole dev split of tweet-sentiment is 3,720 examples).
INT8_DEV_EXAMPLES = 1000
#: Ensemble settings of the surrogates fitted here (the active-learning loop's lighter ones).
SURROGATE_OPTIONS = {"n_models": 3, "n_estimators": 200, "learning_rate": 0.06}
#: Seconds between two records of a running stage's time: a killed attempt loses at most this.
PROGRESS_S = 5.0


class EvaluationTimeout(CodesignError):
    """An accuracy evaluation ran past ``eval_timeout_s``."""


@dataclass
class CodesignResult:
    """``result``: what ``OUT/result.json`` holds; ``out``: the output folder."""

    out: Path
    result: dict[str, Any]

    @property
    def best(self) -> dict[str, Any] | None:
        return self.result.get("best")


def run_key(config: CodesignConfig) -> str:
    """The run's key in the database: its output folder (one run per folder)."""
    where = str(Path(config.out).resolve())
    return "codesign-" + hashlib.sha256(where.encode()).hexdigest()[:16]


def run_codesign(
    config: CodesignConfig,
    *,
    resume: bool = False,
    restart: bool = False,
    force: bool = False,
    on_event: Callable[[str], None] | None = None,
    cluster: Any = None,
    parallel: int = 1,
) -> CodesignResult:
    """Run (or, with ``resume``, continue) the co-design ``config`` describes.

    A fresh run refuses an output folder that holds files (but the run's own database and
    workspace) unless ``force``, which clears it first: a run never mixes its files with an
    earlier one's.

    With ``cluster`` (:class:`edgetran.cluster.Cluster`), every measurement runs on the
    worker of its device (a live device's hardware name: ``cpu`` for this machine's
    ``local:N`` workers, a lab node's name otherwise) and every training on a training worker;
    this process stays the database's one writer. A device whose worker stops answering is
    left for later and tried again once the others are profiled; if it is still gone, the
    run goes on without it. ``parallel`` evaluations of the search are kept in flight. Neither
    is part of the run's identity: a run may resume with another cluster or ``parallel``.
    ``restart`` discards the run's record in the database (its finished stages and its
    searches) and starts it again; measurements, evaluations and trained models stay in the
    workspace and are reused.

    Raises:
        CodesignError: the run finished a stage and neither ``resume`` nor ``restart`` is set,
            or it was started with another configuration; the output folder holds files and
            neither ``resume`` nor ``force`` is set; an input that cannot be used
            (:func:`check_before_work`); a search none of whose evaluations succeeded; no
            feasible pair was found.
        Interrupted: Ctrl-C, saying what the run stored and how to continue it.
    """
    if resume and restart:
        raise CodesignError(
            "resume and restart exclude each other: resume continues the run, restart "
            "discards its finished stages and starts it again"
        )
    if resume and force:
        raise CodesignError(
            "--resume continues the run in --out and --force starts afresh there: give one"
        )
    check_before_work(config, cluster=cluster, parallel=parallel)
    out = Path(config.out)
    with Store(config.db) as store:
        run = _Run(config, store, out, on_event or (lambda _line: None), cluster, parallel)
        run.open(resume, restart, force)
        try:
            result = run.execute()
        except KeyboardInterrupt:
            raise Interrupted(run.kept(resume)) from None
    from edgetran.codesign.report import write_report

    write_report(result, out / "report.html")
    return CodesignResult(out, result)


def check_before_work(config: CodesignConfig, *, cluster: Any = None, parallel: int = 1) -> None:
    """Refuse, before any work (no database, folder or measurement is made), what would
    otherwise fail later: the input shape, ``parallel`` without a cluster, a lab node without
    one, the task (loaded and its columns and labels checked, without training), recorded
    devices' files, and live devices' profile settings and meters (a cluster's workers bring
    their own meters)."""
    check_input_shape(config)
    if parallel > 1 and cluster is None:
        raise CodesignError(
            f"parallel={parallel} trains several candidates at once: it needs a cluster "
            "(--scheduler local:N or an address); here, trainings share one process's torch"
        )
    if parallel > 1 and config.eval_timeout_s is not None:
        raise CodesignError(
            "eval_timeout_s applies to one evaluation at a time; with parallel > 1 the "
            "cluster's job time limit (--job-timeout-s) bounds each training"
        )
    specs = config.device_specs()
    if cluster is None:
        check_local_devices(specs)
    check_task(config.task)
    for spec in specs:
        if not spec.live:
            check_recorded_device(spec)
            continue
        settings = profile_settings(config, spec)
        if cluster is None:
            _meter(settings)


def check_task(task: str) -> None:
    """Load ``task`` as the accuracy oracle will (its file read, its columns and labels
    checked; ``glue/all``: every GLUE task), without training.

    Raises:
        TaskError: the task is unknown, or its data cannot be used.
    """
    from edgetran.train.tasks import GLUE_TASKS, load_task

    for name in [f"glue/{n}" for n in GLUE_TASKS] if task == "glue/all" else [task]:
        load_task(name)


def check_recorded_device(spec: DeviceSpec) -> None:
    """Read a recorded device's file: each device it holds needs the measurements a surrogate
    is fitted on.

    Raises:
        CodesignError: the file holds no measurements, or too few of a device.
    """
    from edgetran.profile import read_measurements

    path = Path(spec.path)
    counts = Counter(
        m.device for m in read_measurements(path, FILE_FORMATS[path.suffix.lower()], None)
    )
    if not counts:
        raise CodesignError(
            f"device file {spec.path}: no measurements; allowed: a file with at least "
            f"{MIN_SURROGATE_SAMPLES} of each device (its surrogate is fitted on them)"
        )
    for device, n in sorted(counts.items()):
        if n < MIN_SURROGATE_SAMPLES:
            raise CodesignError(
                f"device file {spec.path}: {n} measurements of {device}; allowed: at least "
                f"{MIN_SURROGATE_SAMPLES} (its surrogate is fitted on them)"
            )


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


def _meter(settings):
    from edgetran.profile import create_meter

    return create_meter(settings.meter, settings.device, per_core_w=settings.core_watts)


def check_input_shape(config: CodesignConfig) -> None:
    """Refuse, before any work, a measured sequence length the final model cannot take: the
    winner is exported and measured at ``seq_len``, so it must fit the model's positions."""
    from edgetran.train.oracle import BUDGETS, budget_positions

    positions = budget_positions(config.final_budget)
    if config.seq_len > positions:
        raise CodesignError(
            f"seq_len={config.seq_len} is invalid; allowed: at most {positions} (the "
            f"{config.final_budget} budget trains on texts of up to "
            f"{BUDGETS[config.final_budget].max_length} tokens; the devices are measured at the "
            "length the winner will run at)"
        )


class _Run:
    def __init__(
        self, config: CodesignConfig, store: Store, out: Path, emit, cluster=None, parallel=1
    ) -> None:
        self.config, self.store, self.out, self.emit = config, store, out, emit
        self.cluster, self.parallel = cluster, parallel
        self.key = run_key(config)
        self.specs = config.device_specs()
        self.surrogates: dict[str, Any] = {}
        self.current: str | None = None  # the stage at work
        self.evaluated = 0  # evaluations the running search's study holds

    # -- bookkeeping ---------------------------------------------------------------------------
    def open(self, resume: bool, restart: bool = False, force: bool = False) -> None:
        """Register the run, or take up the stored one: ``restart`` discards it first (and
        writes over its folder, as ``force`` does); one that finished no stage is taken up with
        these settings (nothing of it is lost)."""
        if restart:
            self.restart()
        stored = self.store.codesign_run(self.key)
        wanted = self.config.to_dict()
        if stored is not None:  # a setting added since the run began counts at its default
            stored = {**_added_settings(stored), **stored}
        finished = self.store.codesign_stages(self.key) if stored is not None else {}
        if stored is not None and not finished:
            if stored != wanted:  # nothing finished under the old settings: these replace them
                self.emit(
                    f"the run into {self.out} finished no stage: it starts with these settings"
                )
                self.discard()
            stored = None
        if stored is not None and not resume:
            raise CodesignError(
                f"a co-design run into {self.out} exists in the workspace ({', '.join(finished)} "
                "finished); pass --resume to continue it, --restart to start it again, or "
                "another --out"
            )
        if stored is not None and stored != wanted:
            changed = sorted(
                k for k in set(stored) | set(wanted) if stored.get(k) != wanted.get(k)
            )
            raise CodesignError(
                f"the co-design run into {self.out} was started with other settings "
                f"({', '.join(changed)} differ); cannot resume: pass its settings, --restart "
                "to start it again with these (its finished stages are discarded), or another "
                "--out"
            )
        if not resume:
            self.claim_folder(force or restart)
        self.out.mkdir(parents=True, exist_ok=True)
        self.store.add_codesign_run(self.key, wanted)
        self.done = self.store.codesign_stages(self.key)

    def restart(self) -> None:
        finished = self.store.codesign_stages(self.key)
        self.discard()
        self.emit(
            f"restart: the run into {self.out} starts again ({len(finished)} finished stages "
            "discarded)"
        )

    def discard(self) -> None:
        """Forget the run's record: its searches' studies first, then its stages and
        configuration (a kill in between leaves the record, whose unfinished searches then
        start afresh)."""
        from edgetran.search import delete_studies

        delete_studies(self.store.url, f"{self.key}-")
        self.store.delete_codesign_run(self.key)

    def claim_folder(self, force: bool) -> None:
        """A fresh run's folder: empty (its database and workspace may lie in it), or
        cleared with ``force``."""
        from edgetran.errors import OVERWRITE_ADVICE, clear_output_dir, prepare_output_dir

        keep = [self.config.workspace]
        if self.store.url.startswith("sqlite:///"):
            keep.append(self.store.url.removeprefix("sqlite:///"))
        if force:
            clear_output_dir(self.out, CodesignError, keep=keep)
        else:
            advice = f"{OVERWRITE_ADVICE}, or --resume to continue its run"
            prepare_output_dir(self.out, CodesignError, empty=True, keep=keep, advice=advice)

    def kept(self, resume: bool) -> str:
        """What an interrupted run has stored, and how to continue it."""
        from edgetran.store.database import mask_url

        during = f"during the {self.current} stage: " if self.current else ""
        searched = (
            f" and {_count(self.evaluated, 'evaluation')}"
            if self.current in ("search", "compare")
            else ""
        )
        again = "the same command" if resume else "the same command with --resume"
        where = mask_url(self.store.url).removeprefix("sqlite:///")
        return (
            f"{during}{where} keeps {_count(len(self.done), 'finished stage')}{searched}; "
            f"run {again} to continue"
        )

    def stage(self, name: str, work: Callable[[], dict[str, Any]]) -> dict[str, Any]:
        """The stage's record: stored earlier, or made now and stored. Its ``seconds`` are
        those of every attempt at it, earlier (killed or failed) ones included."""
        if name in self.done:
            self.emit(f"{name}: done earlier ({self.done[name]['seconds']:.1f} s), skipped")
            return self.done[name]
        earlier = self.store.codesign_stage_seconds(self.key, name)
        self.emit(f"{name}: started" + (f" again ({earlier:.1f} s before)" if earlier else ""))
        self.current, self.evaluated = name, 0
        with _StageClock(self.store, self.key, name) as clock:
            record = work()
        record["seconds"] = earlier + clock.seconds
        self.store.add_codesign_stage(self.key, name, record)
        self.done[name] = record
        why = f" ({record['skipped']})" if record.get("skipped") else ""
        self.emit(f"{name}: {'skipped' if why else 'finished'} in {record['seconds']:.1f} s{why}")
        return record

    # -- the pipeline --------------------------------------------------------------------------
    def execute(self) -> dict[str, Any]:
        profiled = self.stage("profile", self.profile)
        self.names = profiled["devices"]
        self.stage("surrogates", self.fit_surrogates)
        self.load_surrogates()
        self.stage("objective", self.objective)
        search = self.stage("search", lambda: self.search(self.config.sampler, "search"))
        self.stage(
            "compare",
            lambda: (
                self.search(self.config.compare, "compare")
                if self.config.compare
                else {"skipped": "no --compare sampler"}
            ),
        )
        self.stage("references", self.references)
        decision = self.stage("decision", lambda: self.decide(search))
        if decision.get("winner") is None:
            raise CodesignError(decision.get("message") or search.get("message", "no pair"))
        winner = decision["winner"]
        growprune = self.stage("growprune", lambda: self.growprune(winner))
        arch = Architecture.from_dict(growprune.get("final", winner)["arch"])
        self.stage("final_training", lambda: self.final_training(arch))
        verdict = self.stage("verdict", lambda: self.verdict(winner, arch))
        answer = verdict["answer"]
        spec = self.spec(answer["device"])
        exported = self.stage("export", lambda: self.export(spec))
        self.stage("final_measurement", lambda: self.final_measurement(spec, exported))
        return self.summary(answer, Architecture.from_dict(answer["arch"]))

    def spec(self, device: str) -> DeviceSpec:
        return next((s for s in self.specs if s.name == device), DeviceSpec(device, path="-"))

    def profile_settings(self, spec: DeviceSpec):
        return profile_settings(self.config, spec)

    def profiler(self, spec: DeviceSpec):
        """How a live device is measured: here (``None``) or on its cluster worker."""
        if self.cluster is None:
            return None
        from edgetran.profile.remote import remote_profiler

        return remote_profiler(self.cluster, spec.hardware)

    def meter(self, spec: DeviceSpec):
        return _meter(self.profile_settings(spec))

    def profile(self) -> dict[str, Any]:
        from edgetran.profile import read_measurements

        if self.cluster is not None:  # a device no worker offers is refused before any work
            from edgetran.profile.remote import worker_for

            live = [s for s in self.specs if s.live]
            self.cluster.check_devices(
                [worker_for(self.cluster, s.hardware, s.runtime) for s in live]
            )

        devices: list[str] = []
        info: dict[str, Any] = {}
        for spec in self.specs:
            if not spec.live:
                items = read_measurements(
                    Path(spec.path), FILE_FORMATS[Path(spec.path).suffix.lower()], None
                )
                self.store.add_many(items)
                for name in sorted({m.device for m in items}):
                    devices.append(name)
                    info[name] = {
                        "kind": "recorded",
                        "file": spec.path,
                        "measurements": sum(m.device == name for m in items),
                    }
                continue
            devices.append(spec.name)
            info[spec.name] = self.profile_live(spec)
        for name in [d for d in devices if info[d].get("kind") == "unanswered"]:
            info[name] = self.profile_again(self.spec(name), info[name]["reason"])
            if info[name]["kind"] == "unavailable":
                devices.remove(name)
        if not devices:  # a recorded file read empty since the run was checked has no info
            reasons = _reasons(info) or "the recorded devices' files hold no measurements"
            raise CodesignError("no device could be profiled: " + reasons)
        return {"devices": devices, "info": info}

    def profile_live(self, spec: DeviceSpec) -> dict[str, Any]:
        """Active profiling of one live device, here or on its worker; a worker that stops
        answering leaves the device ``unanswered`` (with the reason) for a later try."""
        from edgetran.errors import JobTimeoutError
        from edgetran.surrogate.active import profile_actively

        profiler = self.profiler(spec)
        meter = None if profiler else self.meter(spec)  # a worker measures with its own
        try:
            result = profile_actively(
                self.profile_settings(spec),
                meter,
                self.config.design_space(),
                self.store,
                self.config.profile_budget,
                initial=min(10, self.config.profile_budget),
                first=self.config.references_in_space(),
                on_measured=lambda m, d=spec.name: self.emit(
                    f"  {d}: {m.hash[:10]} {m.latency_s_per_seq * 1e3:.2f} ms/seq"
                ),
                profiler=profiler,
                device=spec.hardware,
            )
        except JobTimeoutError as err:
            self.emit(f"  {spec.name}: {_said(err)}; trying again after the other devices")
            return {"kind": "unanswered", "reason": _said(err)}
        return {
            "kind": "live",
            "measurements": len(result.measurements),
            "meter": meter.name if meter else "the device worker's",
            "meter_kind": meter.kind if meter else _meter_kind(result.measurements),
        }

    def profile_again(self, spec: DeviceSpec, reason: str) -> dict[str, Any]:
        """The second try of a device whose worker did not answer: when a worker offers it
        again (the stored measurements count, so it resumes); else it is left out."""
        offered = self.cluster.offered_devices() if self.cluster is not None else {}
        if spec.name in offered or spec.hardware in offered:
            info = self.profile_live(spec)
            if info["kind"] == "live":
                return info
            reason = info["reason"]
        self.emit(f"  {spec.name}: left out of the search ({reason})")
        return {"kind": "unavailable", "reason": reason}

    def shape(self, device: str) -> tuple[int, int] | None:
        live = self.spec(device).live
        return (self.config.batch_size, self.config.seq_len) if live else None

    def fit_surrogates(self) -> dict[str, Any]:
        from edgetran.search import device_measurements
        from edgetran.surrogate import DeviceSurrogate

        folder = self.out / "surrogates"
        folder.mkdir(parents=True, exist_ok=True)
        parity = {}
        for device in self.names:
            items = device_measurements(self.store, device, self.shape(device))
            surrogate = DeviceSurrogate(model_options=SURROGATE_OPTIONS, random_state=0)
            surrogate.fit(items).save(folder / _file_name(device))
            parity[device] = _parity(items, self.config.seed)
        return {"parity": parity}

    def load_surrogates(self) -> None:
        from edgetran.surrogate import DeviceSurrogate

        for device in self.names:
            path = self.out / "surrogates" / _file_name(device)
            if not path.is_file():  # the output folder was cleared after the stage
                self.done.pop("surrogates", None)
                self.fit_surrogates()
            self.surrogates[device] = DeviceSurrogate.load(path)

    def accuracy(self, budget: str) -> Callable[..., Any]:
        """``(arch, run=0) → Accuracy`` at ``budget``: the oracle under ``eval_timeout_s``,
        a NaN refused. At the final budget the classifiers are kept, so the final training of
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

        def accuracy(arch: Architecture, run: int = 0):
            # on a cluster the job's time limit bounds a training (an alarm here would leave
            # the job running on its worker)
            limit = c.eval_timeout_s if self.cluster is None else None
            with _time_limit(limit):
                result = oracle(arch, run=run)
            if not math.isfinite(result.value):
                raise CodesignError(
                    f"accuracy of {arch.hash[:10]} is {result.value} (a NaN loss?)"
                )
            return result

        return accuracy

    def quantised(self, device: str) -> bool:
        """Whether ``device`` runs a quantised runtime (``cpu/onnxruntime-int8`` …): its pairs'
        accuracy is the classifier's as that runtime runs it, not PyTorch's."""
        spec = self.spec(device)
        if not spec.live:
            return False
        from edgetran.export.runners import get_runtime

        return get_runtime(spec.runtime).quantize != "none"

    def any_quantised(self) -> bool:
        return any(self.quantised(spec.name) for spec in self.specs if spec.live)

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
        from edgetran.train.oracle import kept_classifier, train_classifier

        c = self.config
        if model is None:
            kept = kept_classifier(arch, c.task, budget, store=self.store, seed=c.seed)
            model = kept["model"] if kept else None
        if model is None:  # evaluated before classifiers were kept: trained once more, here
            model = self.out / "classifiers" / f"{arch.hash}-{budget}"
            if not (model / "config.json").is_file():
                train_classifier(
                    arch, c.task, budget, store=self.store, workspace=c.workspace, seed=c.seed,
                    out=model,
                )  # fmt: skip
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

    def objective(self) -> dict[str, Any]:
        """The objective's rule, weights and norms (``run``: from the references' costs)."""
        from edgetran.search import paper_with_norms
        from edgetran.search.settings import parse_norms

        paper, described = paper_with_norms(parse_norms(self.config.norms), self.reference_costs)
        self.emit(f"  norms: {described['norms']} ({described['norms_basis']})")
        return {"rule": self.config.objective, "weights": paper.weights, **described}

    def reference_costs(self) -> list:
        """Every reference's costs per sequence on every live device, measured (stored ones
        are reused: the profile measured those in the space first); predicted on the
        recorded devices when no device is live."""
        from edgetran.search import ReferenceCost
        from edgetran.space.costs import estimate_costs

        live = [d for d in self.names if self.spec(d).live]
        costs = []
        for name in self.config.references:
            arch = NAMED_ARCHITECTURES[name]
            for device in live or self.names:
                hardware = self.hardware(arch, device, measure=True)["metrics"]
                costs.append(
                    ReferenceCost(
                        name, device, estimate_costs(arch).parameters, hardware["latency_s"],
                        hardware["energy_j"], hardware["peak_power_w"],
                    )
                )  # fmt: skip
        return costs

    def failed(self, name: str, n: int, reason: str) -> None:
        self.evaluated = n
        self.emit(f"  {name} {n:3d} failed: {reason}")

    def search(self, sampler: str, name: str) -> dict[str, Any]:
        from edgetran.search import BoshcodeSettings, run_search
        from edgetran.search.study import Failure

        settings = self.search_settings(
            sampler=sampler,
            budget=self.config.evaluations,
            seed=self.config.seed,
            boshcode=BoshcodeSettings(n_initial=initial_design(self.config, len(self.names))),
            start=self.start_pairs(),
        )

        def report(n: int, record, stored: str = "") -> None:
            self.evaluated = n
            m = record.evaluation.metrics
            flag = " (predicted)" if record.evaluation.predicted else ""
            self.emit(
                f"  {name} {n:3d} {record.pair.device:>16} {record.pair.arch.hash[:10]} "
                f"acc {m['accuracy']:.3f} lat {m['latency_s'] * 1e3:.2f} ms{flag} "
                f"→ {record.value:.4f}{'' if record.feasible else ' infeasible'}{stored}"
            )

        def failed(n: int, failure, stored: str = "") -> None:
            self.failed(name, n, f"{failure.reason}{stored}")

        def replay(n: int, item) -> None:  # what a resumed search holds already
            (failed if isinstance(item, Failure) else report)(n, item, " (stored)")

        result = run_search(
            self.evaluator(),
            settings,
            storage=self.store.url,
            study_name=f"{self.key}-{name}-{sampler}",
            resume=True,
            on_evaluation=report,
            on_failure=failed,
            on_stored=replay,
            parallel=self.parallel,
        )
        if not result.records:  # not finished: the stage stays unrecorded, resume retries it
            raise CodesignError(_no_success(name, result.failures))
        out = result.to_dict()
        out["sampler"] = sampler
        out["records"] = [
            {
                "arch": r.pair.arch.to_model_dict(),
                "device": r.pair.device,
                "metrics": r.evaluation.metrics,
                "predicted": r.evaluation.predicted,
                "lower": r.evaluation.lower,
                "upper": r.evaluation.upper,
                "accuracy_std": r.evaluation.accuracy_std,
                "accuracy_runs": len(r.evaluation.accuracy_runs) or 1,
                "objective": r.value,
                "feasible": r.feasible,
                "how": r.how,
                "contended": r.evaluation.contended,
            }
            for r in result.records
        ]
        return out

    def start_pairs(self) -> tuple:
        """The references in the space, on the devices in turn, as the search's first
        evaluations (no more than half the budget: the search must also search)."""
        from edgetran.search import Pair

        archs = self.config.references_in_space()[: self.config.evaluations // 2]
        # live devices first: a reference is measured on each of them anyway
        names = sorted(self.names, key=lambda d: not self.spec(d).live)
        return tuple(Pair(a, names[i % len(names)]) for i, a in enumerate(archs))

    # -- pairs and their costs -------------------------------------------------------------------
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
            return _measured_costs(found)
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

    def value(self, candidate) -> float:
        """The scalar objective of a candidate (the paper objective for ``pareto``)."""
        return self.search_settings().value(candidate.metrics)

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

    def references(self) -> dict[str, Any]:
        """Every reference on every device: its accuracy at the search's budget (the decision
        weighs it against the search's pairs) and at the final budget (the verdict weighs it
        against the answer), its costs measured on the live devices. On a quantised device
        both accuracies are its classifiers' as that runtime runs them; an artifact whose
        labels disagree with PyTorch's is a failed pair (``failed``: why), never an answer."""
        from edgetran.export.verify import LabelAgreementError

        c = self.config
        search_accuracy = self.accuracy(c.budget)
        final = self.accuracy(c.final_budget)
        rows = []
        for name in c.references:
            arch = NAMED_ARCHITECTURES[name]
            at_search = search_accuracy(arch)
            # the winner is trained at the final budget: so is what it is compared with
            at_final = at_search if c.final_budget == c.budget else final(arch)
            for device in self.names:
                accuracy = _Scored(at_search.value, at_search.std, "pytorch")
                final_accuracy = _Scored(at_final.value, at_final.std, "pytorch")
                failed = None
                if self.quantised(device):
                    try:
                        accuracy = self.scored_in_runtime(arch, device, c.budget)
                        final_accuracy = (
                            accuracy
                            if c.final_budget == c.budget
                            else self.scored_in_runtime(arch, device, c.final_budget)
                        )
                    except LabelAgreementError as err:
                        failed = str(err)
                made = self.candidate(
                    arch, device, accuracy.value, accuracy.std, name=name, source="reference",
                    measure=True, accuracy_from=accuracy.source,
                )  # fmt: skip
                row = made.to_dict() | {
                    "final_accuracy": final_accuracy.value,
                    "final_accuracy_std": final_accuracy.std,
                }
                if failed:
                    row |= {"feasible": False, "failed": failed}
                rows.append(row)
                self.emit(
                    f"  {name} on {device}: acc {accuracy.value:.3f} (final "
                    f"{final_accuracy.value:.3f}) lat {made.metrics['latency_s'] * 1e3:.2f} ms"
                    + (f" failed: {failed}" if failed else "")
                )
        return {"rows": rows}

    def scored_in_runtime(self, arch: Architecture, device: str, budget: str, model=None):
        """:meth:`runtime_accuracy` as an accuracy with its std and its source."""
        result = self.runtime_accuracy(arch, device, budget, model)
        return _Scored(result["accuracy"], result["accuracy_std"], self.spec(device).runtime)

    # -- the decision --------------------------------------------------------------------------
    def candidates(self, search: dict[str, Any]) -> dict[tuple[str, str], Any]:
        """Every evaluated architecture and every reference on every device, keyed by
        ``(hash, device)``: the search's accuracy (the mean of its runs; accuracy does not
        depend on the device), the hardware stored or predicted (a training is never repeated,
        a prediction costs nothing)."""
        from edgetran.codesign.decision import Candidate

        names = {NAMED_ARCHITECTURES[n].hash: n for n in self.config.references}
        by_arch: dict[str, dict[str, Any]] = {}
        for record in search["records"]:  # the record whose accuracy rests on most runs
            key = Architecture.from_dict(record["arch"]).hash
            if record["accuracy_runs"] > by_arch.get(key, {}).get("accuracy_runs", 0):
                by_arch[key] = record
        evaluated = {
            (Architecture.from_dict(r["arch"]).hash, r["device"]) for r in search["records"]
        }
        found: dict[tuple[str, str], Any] = {}
        for key, record in by_arch.items():
            arch = Architecture.from_dict(record["arch"])
            accuracy = record["metrics"]["accuracy"]
            for device in self.names:
                source = "search" if (key, device) in evaluated else "device choice"
                found[(key, device)] = self.candidate(
                    arch, device, accuracy, record["accuracy_std"], name=names.get(key),
                    source=source, runs=record["accuracy_runs"],
                )  # fmt: skip
        for row in self.done["references"]["rows"]:
            known = found.get((row["arch_hash"], row["device"]))
            reference = Candidate(**_candidate_fields(row))
            if row.get("failed"):  # its artifact's labels disagree with PyTorch's
                found.pop(reference.key, None)
            elif (
                known is None
                or "latency_s" not in known.measured
                or (reference.accuracy_from != "pytorch")
            ):
                found[reference.key] = reference
        return found

    def decide(self, search: dict[str, Any]) -> dict[str, Any]:
        """The answer (:mod:`edgetran.codesign.decision`): the candidates a rule needs
        measured are measured on their live devices first, so that it is chosen on measured
        latency, not on a prediction."""
        from edgetran.codesign.decision import choose

        found = self.candidates(search)
        rule, measured_now, failed = self.config.choose, 0, []
        while True:
            decision = choose(list(found.values()), rule, self.value)
            if decision is None:
                return {
                    "winner": None,
                    "message": search.get("message")
                    or f"no pair met the budgets ({self.config.constraints().describe()})",
                }
            unscored = self.to_score(decision, found)
            if unscored is not None:
                self.score_in_runtime(unscored, found, failed)
                continue
            pending = self.to_measure(decision, found)
            if pending is None:
                break
            found[pending.key] = self.candidate(
                Architecture.from_dict(pending.arch), pending.device,
                pending.metrics["accuracy"], pending.accuracy_std, name=pending.name,
                source=pending.source, measure=True, runs=pending.accuracy_runs,
            )  # fmt: skip
            measured_now += 1
        winner = decision.winner
        self.emit(f"  answer: {winner.label} ({decision.why})")
        return {
            "winner": winner.to_dict(),
            "decision": decision.to_dict(),
            "pairs_scored": len(found),
            "measured_now": measured_now,
            "failed": failed,
        }

    def to_score(self, decision, found) -> Any:
        """A pair on a quantised device within one std of the most accurate whose accuracy is
        still PyTorch's: it must be scored as its runtime runs it before it may be chosen."""
        within = set(decision.within)
        return next(
            (
                c
                for c in found.values()
                if c.key in within and c.accuracy_from == "pytorch" and self.quantised(c.device)
            ),
            None,
        )

    def score_in_runtime(self, candidate, found, failed: list) -> None:
        """``candidate``'s accuracy as its runtime runs it, in ``found``; a failed label check
        takes it out and into ``failed``."""
        from dataclasses import replace

        from edgetran.export.verify import LabelAgreementError

        arch = Architecture.from_dict(candidate.arch)
        try:
            scored = self.scored_in_runtime(arch, candidate.device, self.config.budget)
        except LabelAgreementError as err:
            self.emit(f"  {candidate.label}: failed ({err})")
            failed.append({"arch": candidate.arch, "device": candidate.device, "reason": str(err)})
            del found[candidate.key]
            return
        metrics = candidate.metrics | {"accuracy": scored.value}
        made = replace(
            candidate, metrics=metrics, accuracy_std=scored.std, accuracy_from=scored.source
        )
        found[candidate.key] = replace(made, objective=self.value(made))

    def to_measure(self, decision, found) -> Any:
        """The next unmeasured pair on a live device that could change the decision: the
        winner itself, or (one-std) a pair of the candidate set whose predicted latency's lower
        end is below the winner's latency; ``None`` when there is none."""

        def unmeasured(c) -> bool:
            return "latency_s" not in c.measured and self.spec(c.device).live

        winner = decision.winner
        if unmeasured(winner):
            return winner
        if decision.rule != "one-std":
            return None
        within = set(decision.within)
        rivals = [
            c
            for c in found.values()
            if c.key in within
            and unmeasured(c)
            and _fastest_possible(c) < winner.metrics["latency_s"]
        ]
        return min(rivals, key=_fastest_possible) if rivals else None

    def growprune(self, winner: dict[str, Any]) -> dict[str, Any]:
        if not self.config.growprune:
            return {"skipped": "grow-and-prune switched off"}
        from edgetran.growprune import GrowPruneSettings, LiveDevice, grow_and_prune
        from edgetran.train import BUDGETS

        c = self.config
        if not BUDGETS[c.budget].pretrain_steps and not self._mlm_trained_model():
            # measured in the demo: a quick root at MLM loss 8.96 ≈ ln(vocabulary), children
            # within 0.02 of it, and a grown child accepted on that noise
            return {
                "skipped": f"grow-and-prune ranks children by MLM loss; the {c.budget} budget "
                "trains no MLM steps and the workspace holds no MLM-trained model to start the "
                "root from, so every loss would be an untrained model's (`edgetran train "
                "parent` makes one)"
            }
        spec = self.spec(winner["device"])
        device = (
            LiveDevice(self.profile_settings(spec), self.store, self.profiler(spec), spec.hardware)
            if spec.live
            else self.surrogates[winner["device"]]
        )
        settings = GrowPruneSettings(
            budget=c.budget,
            iterations=c.growprune_iterations,
            seed=c.seed,
            max_latency_ms=c.max_latency_ms,
            max_energy_mj=c.max_energy_mj,
            max_peak_power_w=c.max_peak_power_w,
            workspace=c.workspace,
        )
        result = grow_and_prune(
            Architecture.from_dict(winner["arch"]),
            c.task,
            device,
            settings,
            store=self.store,
            out=self.out / "growprune",
            resume=True,
            on_event=self.emit,
        )
        return {
            "final": {"arch": result.final["model_dict"], "loss": result.final.get("loss")},
            "root": {"arch": result.root["model_dict"], "loss": result.root.get("loss")},
            "iterations": result.iterations,
            "stopped": result.stopped,
        }

    def _mlm_trained_model(self) -> bool:
        """Whether the workspace holds a model with MLM steps (a parent) to start a root from."""
        return any(m["steps"] and Path(m["path"]).is_dir() for m in self.store.trained_models())

    def final_training(self, arch: Architecture) -> dict[str, Any]:
        from edgetran.train.oracle import kept_classifier, train_classifier

        c = self.config
        kept = kept_classifier(arch, c.task, c.final_budget, store=self.store, seed=c.seed)
        if kept is not None:  # trained at this budget and seed already: that model
            target = self.out / "model"
            shutil.rmtree(target, ignore_errors=True)  # what a killed final training left
            shutil.copytree(kept["model"], target)
            self.emit(f"  reusing the classifier trained during the search: {kept['model']}")
            return {**kept, "model": str(target), "reused_from": kept["model"]}
        if self.cluster is not None:  # the model folder must be shared with the worker
            from edgetran.train.remote import train_on_cluster

            return train_on_cluster(
                self.cluster, arch, c.task, c.final_budget, store=self.store,
                workspace=c.workspace, seed=c.seed, out=self.out / "model",
            )  # fmt: skip
        return train_classifier(
            arch,
            c.task,
            c.final_budget,
            store=self.store,
            workspace=c.workspace,
            seed=c.seed,
            out=self.out / "model",
        )

    def verdict(self, winner: dict[str, Any], arch: Architecture) -> dict[str, Any]:
        """The answer against every reference pair, all at the final budget and on the same
        measurements: a reference that dominates the answer (no less accurate within one std,
        measurably faster) is the answer instead, with its classifier as the model."""
        from edgetran.codesign.decision import (
            Candidate,
            best_reference,
            compare_with_reference,
            dominating_reference,
            headline,
        )

        trained = self.done["final_training"]
        final = _Scored(trained["accuracy"], trained.get("accuracy_std"), "pytorch")
        if self.quantised(winner["device"]):  # the final model as its runtime runs it
            final = self.scored_in_runtime(
                arch, winner["device"], self.config.final_budget, self.out / "model"
            )
        answer = self.candidate(
            arch, winner["device"], final.value, final.std,
            name=winner.get("name") if arch.hash == winner["arch_hash"] else None,
            source=winner["source"], measure=True, accuracy_from=final.source,
        )  # fmt: skip
        references = [
            Candidate(
                **_candidate_fields(row)
                | {"metrics": row["metrics"] | {"accuracy": row["final_accuracy"]}}
                | {"accuracy_std": row["final_accuracy_std"]}
            )
            for row in self.done["references"]["rows"]
            if not row.get("failed")
        ]
        switched = dominating_reference(answer, references)
        final_training = None
        if switched is not None:
            self.emit(f"  {switched.label} dominates {answer.label}: it is the answer")
            final_training = self.reference_model(switched)
            answer = switched
        others = [r for r in references if r.key != answer.key]
        chosen_from = best_reference(others, self.config.choose, self.value)
        return {
            "answer": answer.to_dict(),
            "switched_from": None if switched is None else winner,
            "final_training": final_training,
            "versus_references": [compare_with_reference(answer, r) for r in others],
            "best_reference": None if chosen_from is None else chosen_from.to_dict(),
            "headline": headline(
                answer, chosen_from, self.config.choose, is_reference=answer.name is not None
            ),
        }

    def reference_model(self, reference) -> dict[str, Any]:
        """A reference's classifier at the final budget, copied to ``OUT/model`` (it was
        trained for the references stage; trained now if it was not kept)."""
        from edgetran.train.oracle import kept_classifier

        c = self.config
        arch = Architecture.from_dict(reference.arch)
        kept = kept_classifier(arch, c.task, c.final_budget, store=self.store, seed=c.seed)
        target = self.out / "model"
        shutil.rmtree(target, ignore_errors=True)
        if kept is None:
            return self.final_training(arch)
        shutil.copytree(kept["model"], target)
        return {**kept, "model": str(target), "reused_from": kept["model"]}

    def export(self, spec: DeviceSpec) -> dict[str, Any]:
        if not spec.live:
            return {"skipped": f"{spec.name} is a recorded device: no runtime here to export to"}
        from edgetran.export import ExportSpec, export_model
        from edgetran.model import FlexiBertForSequenceClassification

        model_dir = self.out / "model"
        model = FlexiBertForSequenceClassification.from_pretrained(model_dir)
        verdict = getattr(self, "done", {}).get("verdict")
        answer = verdict["answer"]["arch_hash"] if verdict else None
        if answer is not None and model.config.arch.hash != answer:
            raise CodesignError(
                f"{model_dir} holds {model.config.arch.hash[:10]}, not the answer "
                f"{answer[:10]}: the folder changed since the verdict; run the same command with "
                "--restart"
            )
        # an int8 device's winner is exported quantised, as its device was profiled
        export_spec = ExportSpec.for_runtime(
            spec.runtime, batch_size=self.config.batch_size, seq_len=self.config.seq_len
        )
        result = export_model(
            model, self.out / "export", export_spec, verify=True, seed=self.config.seed
        )
        verification = result.verification or {}
        if not verification.get("passed"):
            raise CodesignError(
                f"the exported {spec.runtime} artifact differs from PyTorch (max |Δ| "
                f"{verification.get('max_abs_diff')}); see {self.out / 'export/metadata.json'}"
            )
        out = {
            "artifact": str(result.artifact),
            "format": export_spec.format,
            "verification": verification,
        }
        if self.quantised(spec.name):  # no tensor tolerance fits int8: PyTorch's labels do
            scored = self.runtime_accuracy(
                model.config.arch, spec.name, self.config.final_budget, model_dir
            )
            out["labels"] = scored["verification"]
        return out

    def final_measurement(self, spec: DeviceSpec, exported: dict[str, Any]) -> dict[str, Any]:
        if exported.get("skipped"):
            return {"skipped": exported["skipped"]}
        from edgetran.codesign.measure import (
            contention_note,
            measure_artifact,
            measure_artifact_job,
        )

        settings = self.profile_settings(spec)
        if self.cluster is not None:  # on the device's worker; the artifact folder is shared
            artifact = str(Path(exported["artifact"]).resolve())
            from edgetran.profile.remote import worker_for

            device = worker_for(self.cluster, spec.hardware, spec.runtime)
            measured = self.cluster.run_profile(
                device, measure_artifact_job, artifact, settings.to_dict()
            )
        else:
            measured = measure_artifact(Path(exported["artifact"]), settings, self.meter(spec))
        note = contention_note(measured)
        if note:
            self.emit(f"  {note}")
        return measured

    # -- the result ----------------------------------------------------------------------------
    def summary(self, answer: dict[str, Any], arch: Architecture) -> dict[str, Any]:
        """``result.json``: the answer (measured on its exported artifact where the device is
        live), how it was chosen, how it stands against the references, and every stage's
        record. One name per quantity, with its unit: ``latency_s``, ``energy_j``,
        ``peak_power_w`` (per sequence)."""
        verdict = self.done["verdict"]
        trained = verdict.get("final_training") or self.done["final_training"]
        final = self.done["final_measurement"]
        search, compare, decision = (
            self.done["search"],
            self.done["compare"],
            self.done["decision"],
        )
        metrics = dict(answer["metrics"])  # accuracy: the final model's, where it runs
        measured, estimated = ["accuracy", *answer["measured"]], list(answer["estimated"])
        if not final.get("skipped"):
            metrics |= {k: final[k] for k in COST_KEYS}
            measured = ["accuracy", "latency_s"]
            costs = ["energy_j", "peak_power_w"]
            measured += costs if final["meter_kind"] == "measured" else []
            estimated = [] if final["meter_kind"] == "measured" else costs
        best = {
            "name": answer.get("name"),
            "arch": arch.to_model_dict(),
            "device": answer["device"],
            "metrics": metrics,
            "accuracy_std": answer.get("accuracy_std"),
            "accuracy_from": answer.get("accuracy_from", "pytorch"),
            "measured": measured,
            "estimated": estimated,
            "predicted": [k for k in answer["predicted"] if k not in measured],
            "contended": bool(final.get("contended", answer.get("contended", False))),
            "objective": self.search_settings().value(metrics),
            "source": answer["source"],
            "latency_ci95_s": final.get("latency_ci95_s") or answer.get("latency_ci95_s"),
            "meter": final.get("meter"),
            "meter_kind": final.get("meter_kind"),
            "search": decision["winner"],
        }
        evaluations = [*search["records"], *_other_pairs(decision)]
        result = {
            "headline": verdict["headline"],
            "best": best,
            "objective": self.done["objective"],
            "decision": decision.get("decision"),
            "versus_references": verdict["versus_references"],
            "best_reference": verdict.get("best_reference"),
            "references": self.done["references"]["rows"],
            "evaluations": evaluations,
            "failed": [
                *search["failed"],
                *decision.get("failed", []),
                *(
                    {"arch": r["arch"], "device": r["device"], "reason": r["failed"]}
                    for r in self.done["references"]["rows"]
                    if r.get("failed")
                ),
            ],
            "search": {
                k: search.get(k)
                for k in (
                    "history",
                    "evaluations",
                    "evaluations_to_best",
                    "reevaluations",
                    "sampler",
                )
            },
            "compare": None
            if compare.get("skipped")
            else {k: compare.get(k) for k in ("sampler", "history", "reevaluations")},
            "device_choice": {
                "pairs_scored": decision.get("pairs_scored"),
                "measured_now": decision.get("measured_now"),
                "search_best": search["best"]
                and {k: search["best"][k] for k in ("device", "objective")},
            },
            "surrogates": self.done["surrogates"]["parity"],
            "growprune": self.done["growprune"],
            "final_training": trained,
            "export": self.done["export"],
            "final_measurement": final,
            "devices": self.done["profile"]["info"],
            "stages": {name: self.done[name]["seconds"] for name in STAGES if name in self.done},
            "skipped": {
                n: self.done[n]["skipped"] for n in STAGES if self.done.get(n, {}).get("skipped")
            },
            "config": self.config.to_dict(),
            "environment": _environment(),
        }
        # what is shown or written out: the run's record in the database keeps the real URL
        result = mask_secrets(result)
        (self.out / "result.json").write_text(json.dumps(_finite(result), indent=1) + "\n")
        return result


@dataclass(frozen=True)
class _Scored:
    """An accuracy, its std, and where it comes from (``pytorch`` or a runtime's name)."""

    value: float
    std: float | None
    source: str


def _measured_costs(measurement) -> dict[str, Any]:
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


def _fastest_possible(candidate) -> float:
    """The lower end of a candidate's latency interval (its latency when it has none)."""
    interval = candidate.latency_ci95_s
    return interval[0] if interval else candidate.metrics["latency_s"]


def _candidate_fields(row: dict[str, Any]) -> dict[str, Any]:
    """The :class:`~edgetran.codesign.decision.Candidate` fields of a stored row."""
    from dataclasses import fields

    from edgetran.codesign.decision import Candidate

    names = {f.name for f in fields(Candidate)}
    out = {k: v for k, v in row.items() if k in names}
    for name in ("measured", "estimated", "predicted"):
        out[name] = tuple(out.get(name) or ())
    if out.get("latency_ci95_s"):
        out["latency_ci95_s"] = tuple(out["latency_ci95_s"])
    return out


def _other_pairs(decision: dict[str, Any]) -> list[dict[str, Any]]:
    """The decision's candidates the search did not evaluate (each evaluated architecture on
    the other devices, the references), as ``evaluations`` entries with ``how`` saying so."""
    rows = []
    for c in (decision.get("decision") or {}).get("candidates", []):
        if c["source"] == "search":
            continue
        rows.append(
            {
                "arch": c["arch"],
                "device": c["device"],
                "name": c["name"],
                "metrics": c["metrics"],
                "predicted": c["predicted"],
                "estimated": c["estimated"],
                "accuracy_std": c["accuracy_std"],
                "accuracy_runs": c["accuracy_runs"],
                "objective": c["objective"],
                "feasible": c["feasible"],
                "how": c["source"],
                "contended": c["contended"],
            }
        )
    return rows


def _meter_kind(measurements) -> str:
    """The kind of meter a device worker measured with (``measured``, ``estimated``)."""
    kinds = sorted({m.meter_kind for m in measurements})
    return ", ".join(kinds) or "unknown"


def _reasons(info: dict[str, Any]) -> str:
    """Why each device is out; a device whose record says no reason is named by its kind."""
    return "; ".join(
        f"{name}: {i.get('reason') or i.get('kind', 'unknown') + ', no reason recorded'}"
        for name, i in info.items()
    )


def _no_success(name: str, failures: list) -> str:
    """Why a search stage is not finished: none of its evaluations succeeded."""
    reasons = list(dict.fromkeys(f.reason for f in failures))
    said = "; ".join(reasons[:3]) + (f"; and {len(reasons) - 3} more" if len(reasons) > 3 else "")
    what = (
        f"all {len(failures)} of its evaluations failed ({said})"
        if failures
        else "no pair was evaluated"
    )
    return (
        f"{name}: {what}; the stage is not finished: fix the cause and run the same command "
        "with --resume (the failed pairs are tried again)"
    )


def _said(err: BaseException) -> str:
    """An error as one line: its message, or its kind when it has none."""
    return str(err).strip() or f"{type(err).__name__} (without a message)"


class _StageClock:
    """The seconds one attempt (this process) spends on a stage, recorded in the database as
    it goes (every :data:`PROGRESS_S`, from a thread of its own) and at its end: a killed
    attempt's time counts in the stage's total."""

    def __init__(self, store: Store, run: str, stage: str) -> None:
        self.store, self.run, self.stage = store, run, stage
        self.attempt = uuid.uuid4().hex
        self.began = time.perf_counter()
        self.ended: float | None = None
        self._stop = threading.Event()
        self._thread = threading.Thread(
            target=self._beat, name=f"edgetran-stage-{stage}", daemon=True
        )

    @property
    def seconds(self) -> float:
        return (self.ended or time.perf_counter()) - self.began

    def __enter__(self) -> _StageClock:
        self.record()
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join()
        self.ended = time.perf_counter()
        with suppress(SQLAlchemyError):  # the stage's own record (or error) says what matters
            self.record()

    def record(self) -> None:
        self.store.record_codesign_progress(self.run, self.stage, self.attempt, self.seconds)

    def _beat(self) -> None:
        while not self._stop.wait(PROGRESS_S):
            try:
                self.record()
            except SQLAlchemyError:  # a busy database: record again at the next beat
                continue


def _added_settings(stored: dict[str, Any]) -> dict[str, Any]:
    """The default of each setting a stored run's configuration does not name."""
    defaults = CodesignConfig().to_dict()
    return {k: v for k, v in defaults.items() if k not in stored}


def initial_design(config: CodesignConfig, devices: int) -> int:
    """BOSHCODE's random initial evaluations: its default 10, but at most half of a small
    budget (so its surrogate proposes the rest), and at least one per device."""
    return max(devices, min(10, config.evaluations // 2))


def _file_name(device: str) -> str:
    return "".join(ch if ch.isalnum() or ch in "-_." else "_" for ch in device) + ".pkl"


def _parity(items, seed: int) -> dict[str, Any]:
    """Held-out predictions (mean and 90% interval) of each metric against the measured values:
    a point is never predicted by a model that saw it.

    Grouped folds (``method``: ``held-out``) when every fold leaves :data:`MIN_SAMPLES` to fit
    on; with fewer measurements, leave-one-out (``leave-one-out``: each architecture predicted
    by a model fitted on all the others), so that a small profile still shows its surrogate's
    errors. Without :data:`MIN_SAMPLES` beside any architecture, only ``n``.
    """
    from edgetran.surrogate.base import MIN_SAMPLES, grouped_folds

    groups = [m.hash for m in items]
    folds = min(PARITY_FOLDS, len(set(groups)))
    out: dict[str, Any] = {"n": len(items)}
    if folds < 2:
        return out
    held_out = grouped_folds(groups, folds, np.random.default_rng(seed))
    method = "held-out"
    if any(len(items) - len(held) < MIN_SAMPLES for held in held_out):
        held_out = [np.flatnonzero(np.asarray(groups) == g) for g in dict.fromkeys(groups)]
        held_out = [held for held in held_out if len(items) - len(held) >= MIN_SAMPLES]
        method = "leave-one-out"
    if not held_out:
        return out
    rows: dict[str, list] = {}
    for held in held_out:
        for metric, points in _predict_held_out(items, held).items():
            rows.setdefault(metric, []).extend(points)
    return out | {"method": method} | rows  # per measured batch


def _predict_held_out(items, held) -> dict[str, list[list[float]]]:
    """``[measured, predicted mean, lower, upper]`` of the ``held`` items, per metric (named
    as the measurement's per-batch field: ``latency_s`` …), by a surrogate fitted on the
    others."""
    from edgetran.surrogate import DeviceSurrogate
    from edgetran.surrogate.device import METRICS, targets

    train = [items[i] for i in np.setdiff1d(np.arange(len(items)), held)]
    surrogate = DeviceSurrogate(model_options=SURROGATE_OPTIONS).fit(train)
    test = [items[i] for i in held]
    predictions = surrogate.predict([Architecture.from_dict(m.model_dict) for m in test])
    return {
        METRICS[metric]: [
            [float(y), float(mean), float(low), float(high)]
            for y, mean, low, high in zip(
                targets(test, metric), p.mean, p.lower, p.upper, strict=True
            )
        ]
        for metric, p in predictions.items()
    }


def _count(n: int, noun: str) -> str:
    return f"{n} {noun}" + ("" if n == 1 else "s")


@contextmanager
def _time_limit(seconds: float | None):
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


def _environment() -> dict[str, Any]:
    import os

    import edgetran
    from edgetran._versions import package_version
    from edgetran.profile.environment import PACKAGES  # the runtimes a measurement records

    packages = (*PACKAGES, "optuna", "lightgbm")
    return {
        "python": platform.python_version(),
        "platform": platform.platform(),
        "machine": platform.machine(),
        "cpus": os.cpu_count(),
        "versions": {p: package_version(p) for p in packages} | {"edgetran": edgetran.__version__},
    }


def _finite(value: Any) -> Any:
    """JSON has no NaN or infinity: such numbers become ``null``."""
    if isinstance(value, float) and not math.isfinite(value):
        return None
    if isinstance(value, dict):
        return {k: _finite(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_finite(v) for v in value]
    return value
