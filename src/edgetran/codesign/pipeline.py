"""The co-design pipeline: task, devices and budgets in; the best model–device pair, trained,
exported for that device's runtime and measured there, and the evidence, out.

Stages, in order (:data:`edgetran.codesign.stages.TABLE`; each recorded in the workspace
database when it finishes; a resumed run skips the finished ones, and the unfinished one
resumes from what the database holds):

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

Then ``OUT/result.json`` (:mod:`edgetran.codesign.summary`) and, from it alone,
``OUT/report.html`` (:func:`edgetran.codesign.report.report_run`).

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

from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from edgetran.codesign.config import (
    FILE_FORMATS,
    MIN_SURROGATE_SAMPLES,
    CodesignConfig,
    CodesignError,
    DeviceSpec,
    check_local_devices,
)
from edgetran.codesign.context import (
    EvaluationTimeout,
    RunContext,
    create_run_meter,
    profile_settings,
    run_key,
)
from edgetran.codesign.stages import STAGES, run_stages
from edgetran.errors import Interrupted
from edgetran.store import Store

__all__ = [
    "STAGES",
    "CodesignResult",
    "EvaluationTimeout",
    "check_before_work",
    "run_codesign",
    "run_key",
]


@dataclass
class CodesignResult:
    """``result``: what ``OUT/result.json`` holds; ``out``: the output folder."""

    out: Path
    result: dict[str, Any]

    @property
    def best(self) -> dict[str, Any] | None:
        """The answer (``result.json``'s ``best``), or ``None``."""
        return self.result.get("best")


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
    from edgetran.codesign.report import report_run

    report_run(out)  # from result.json alone, as `edgetran report` rebuilds it
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
    if cluster is not None and config.pruner != "none":
        raise CodesignError(
            f"pruner={config.pruner!r} needs the trainings in this process (a rung's callback "
            "cannot reach a cluster's worker); allowed with a cluster: pruner none"
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
            create_run_meter(settings)


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
    """A co-design run's bookkeeping around its stages: registering it (or taking up the
    stored one), claiming its folder, and what an interrupted run has kept."""

    def __init__(
        self, config: CodesignConfig, store: Store, out: Path, emit, cluster=None, parallel=1
    ) -> None:
        self.ctx = RunContext(config, store, out, emit, cluster, parallel)
        self.config, self.store, self.out, self.emit = config, store, out, emit
        self.key = self.ctx.key

    def open(self, resume: bool, restart: bool = False, force: bool = False) -> None:
        """Register the run, or take up the stored one: ``restart`` discards it first (and
        writes over its folder, as ``force`` does); one that finished no stage is taken up with
        these settings (nothing of it is lost)."""
        if restart:
            self.restart()
        wanted = self.config.to_dict()
        stored = self.stored_settings(wanted)
        if stored is not None and not resume:
            finished = self.store.codesign_stages(self.key)
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
        self.ctx.done = self.store.codesign_stages(self.key)

    def stored_settings(self, wanted: dict[str, Any]) -> dict[str, Any] | None:
        """The settings of the stored run that finished a stage (a setting added since it
        began counts at its default); ``None`` when there is none. A stored run that finished
        no stage is taken up with ``wanted`` (nothing of it is lost)."""
        stored = self.store.codesign_run(self.key)
        if stored is None:
            return None
        stored = {**_added_settings(stored), **stored}
        if self.store.codesign_stages(self.key):
            return stored
        if stored != wanted:  # nothing finished under the old settings: these replace them
            self.emit(f"the run into {self.out} finished no stage: it starts with these settings")
            self.discard()
        return None

    def restart(self) -> None:
        """Discard the run's record, saying how many finished stages go with it."""
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

        ctx = self.ctx
        during = f"during the {ctx.current} stage: " if ctx.current else ""
        searched = (
            f" and {_count(ctx.evaluated, 'evaluation')}"
            if ctx.current in ("search", "compare")
            else ""
        )
        again = "the same command" if resume else "the same command with --resume"
        where = mask_url(self.store.url).removeprefix("sqlite:///")
        return (
            f"{during}{where} keeps {_count(len(ctx.done), 'finished stage')}{searched}; "
            f"run {again} to continue"
        )

    def execute(self) -> dict[str, Any]:
        """Every stage of the table in order, then ``result.json``."""
        from edgetran.codesign.summary import write_result

        run_stages(self.ctx)
        return write_result(self.ctx)


def _added_settings(stored: dict[str, Any]) -> dict[str, Any]:
    """The default of each setting a stored run's configuration does not name."""
    defaults = CodesignConfig().to_dict()
    return {k: v for k, v in defaults.items() if k not in stored}


def _count(n: int, noun: str) -> str:
    """``n`` and ``noun``, plural unless ``n`` is 1."""
    return f"{n} {noun}" + ("" if n == 1 else "s")
