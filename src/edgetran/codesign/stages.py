"""The co-design run as one ordered table of stages, and the runner that resumes and times them.

Each :class:`Stage` names a function ``(context, prior) → record``: ``prior`` holds the records
of the stages it ``needs``, by name. :func:`run_stage` skips a stage whose record the
workspace database holds (a resumed run), runs it otherwise under a :class:`StageClock` (its
``seconds`` are those of every attempt, a killed one's included) and stores its record; then
the stage's ``then`` hook (if any) takes what the run needs from the record, done now or
earlier. The names and records are those of every earlier version, so old workspaces resume.
"""

from __future__ import annotations

import threading
import time
import uuid
from collections.abc import Callable, Mapping
from contextlib import suppress
from dataclasses import dataclass
from typing import Any

from sqlalchemy.exc import SQLAlchemyError

from edgetran.codesign import conclude, explore
from edgetran.codesign.context import RunContext
from edgetran.store import Store

#: Seconds between two records of a running stage's time: a killed attempt loses at most this.
PROGRESS_S = 5.0

Record = dict[str, Any]


@dataclass(frozen=True)
class Stage:
    """One stage of the run.

    Attributes:
        name: its name in the database and in ``result.json``'s ``stages``.
        run: ``(context, prior) → record``; ``prior`` holds the records of ``needs``.
        needs: the earlier stages it builds on: their records, or what their ``then`` set up.
        then: ``(context, record)``, run after the record is made or found stored: what the
            next stages need from it (the devices, the surrogates), or the run's end.
    """

    name: str
    run: Callable[[RunContext, Mapping[str, Record]], Record]
    needs: tuple[str, ...] = ()
    then: Callable[[RunContext, Record], None] | None = None


#: The run, in order.
TABLE = (
    Stage("profile", explore.profile, then=explore.use_devices),
    Stage("surrogates", explore.surrogates, ("profile",), then=explore.load_surrogates),
    Stage("objective", explore.objective, ("profile", "surrogates")),
    Stage("search", explore.search, ("objective", "surrogates")),
    Stage("compare", explore.compare, ("objective", "surrogates")),
    Stage("references", explore.references, ("objective", "surrogates")),
    Stage("promotion", conclude.promotion, ("search",)),
    Stage(
        "decision",
        conclude.decision,
        ("search", "promotion", "references"),
        then=conclude.need_a_winner,
    ),
    Stage("growprune", conclude.growprune, ("decision",)),
    Stage("final_training", conclude.final_training, ("decision", "growprune")),
    Stage(
        "verdict",
        conclude.verdict,
        ("decision", "growprune", "final_training", "references"),
    ),
    Stage("export", conclude.export, ("verdict",)),
    Stage("final_measurement", conclude.final_measurement, ("verdict", "export")),
)
#: The stages' names, in order.
STAGES = tuple(stage.name for stage in TABLE)


def run_stages(ctx: RunContext, table: tuple[Stage, ...] = TABLE) -> None:
    """Every stage of ``table`` in order (:func:`run_stage`)."""
    for stage in table:
        run_stage(ctx, stage)


def run_stage(ctx: RunContext, stage: Stage) -> Record:
    """The stage's record: stored earlier, or made now and stored. Its ``seconds`` are
    those of every attempt at it, earlier (killed or failed) ones included."""
    record = ctx.done.get(stage.name)
    if record is not None:
        ctx.emit(f"{stage.name}: done earlier ({record['seconds']:.1f} s), skipped")
    else:
        record = _attempt(ctx, stage)
    if stage.then is not None:
        stage.then(ctx, record)
    return record


def _attempt(ctx: RunContext, stage: Stage) -> Record:
    """Run ``stage`` now, timed, and store its record."""
    name = stage.name
    earlier = ctx.store.codesign_stage_seconds(ctx.key, name)
    ctx.emit(f"{name}: started" + (f" again ({earlier:.1f} s before)" if earlier else ""))
    ctx.current, ctx.evaluated = name, 0
    prior = {need: ctx.done[need] for need in stage.needs}
    with StageClock(ctx.store, ctx.key, name) as clock:
        record = stage.run(ctx, prior)
    record["seconds"] = earlier + clock.seconds
    ctx.store.add_codesign_stage(ctx.key, name, record)
    ctx.done[name] = record
    why = f" ({record['skipped']})" if record.get("skipped") else ""
    ctx.emit(f"{name}: {'skipped' if why else 'finished'} in {record['seconds']:.1f} s{why}")
    return record


class StageClock:
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
        """The attempt's seconds so far (to its end, once ended)."""
        return (self.ended or time.perf_counter()) - self.began

    def __enter__(self) -> StageClock:
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
        """The attempt's seconds so far, into the database."""
        self.store.record_codesign_progress(self.run, self.stage, self.attempt, self.seconds)

    def _beat(self) -> None:
        while not self._stop.wait(PROGRESS_S):
            try:
                self.record()
            except SQLAlchemyError:  # a busy database: record again at the next beat
                continue
