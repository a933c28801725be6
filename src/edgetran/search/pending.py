"""Evaluations in flight: what the search loop submits, and who runs it.

The loop (:func:`edgetran.search.study.run_search`) proposes, stores and learns in its own
thread; only :meth:`~edgetran.search.evaluators.Evaluator.evaluate` and
:meth:`~edgetran.search.evaluators.Evaluator.reevaluate` run elsewhere. With one evaluation
in flight they run in the loop's thread itself (:class:`InlineRunner`: exactly the
sequential search, signals and time limits of the main thread included); with more, each in a
daemon thread of its own (:class:`ThreadRunner`), so the evaluator must then be safe to call
from several threads at once (a replayed table is; a cluster evaluator, which sends each
evaluation away and waits, is what this is for). An interrupted search leaves its threads
behind: their results are dropped, and the process exits without waiting for them.
"""

from __future__ import annotations

import queue
import threading
from dataclasses import dataclass
from typing import Any

from edgetran.errors import EdgeTranError
from edgetran.search.evaluators import Evaluator
from edgetran.search.fidelity import PrunedEvaluation, Reporter
from edgetran.search.table import Pair
from edgetran.store.database import StoreError
from edgetran.store.masking import mask_credentials

#: What a failed evaluation of one candidate raises (out of memory, a NaN loss, an export
#: error, a timeout): it is recorded as failed, with its reason, and the search goes on.
#: A database error is not a candidate's fault and ends the search.
CANDIDATE_FAILURES = (EdgeTranError, MemoryError, RuntimeError, FloatingPointError)


@dataclass
class Job:
    """One evaluation in flight: a pair's (``run`` is ``None``) or a re-evaluation's.

    ``key`` is its claim; ``trial_id``/``number`` its pending trial in the study (a pair's
    evaluation only); ``record`` the record a re-evaluation trains again; ``seq`` its place
    in this process's order of submission; ``report`` the reporter handed to the evaluator
    (a search with a pruner; ``None``: ``evaluate(pair)`` as without one)."""

    pair: Pair
    how: str
    key: str
    run: int | None = None
    record: Any = None
    trial_id: int | None = None
    number: int | None = None
    seq: int = 0
    report: Reporter | None = None


@dataclass
class Outcome:
    """A finished job: ``value`` (an ``Evaluation``, or a re-evaluation's ``Accuracy`` or
    ``None``), ``reason``, the one line of a candidate's failure, or ``pruned``, the pruner's
    stop (its last rung's evaluation and fidelity)."""

    job: Job
    value: Any = None
    reason: str | None = None
    pruned: PrunedEvaluation | None = None


def reason(err: BaseException) -> str:
    """One line: the error's type and its first line (database passwords masked: the reason
    is printed, stored and written to ``result.json``)."""
    text = mask_credentials(str(err)).strip()
    return f"{type(err).__name__}: {text.splitlines()[0]}" if text else type(err).__name__


def attempt(evaluator: Evaluator, job: Job) -> Outcome:
    """Run ``job``; a candidate's failure becomes the outcome's ``reason``, a pruned
    evaluation its ``pruned``, anything else (a database error, an interrupt, a bug) is
    raised."""
    try:
        if job.run is not None:
            return Outcome(job, evaluator.reevaluate(job.pair, job.run))
        if job.report is None:
            return Outcome(job, evaluator.evaluate(job.pair))
        return Outcome(job, evaluator.evaluate(job.pair, report=job.report))
    except PrunedEvaluation as pruned:
        return Outcome(job, pruned=pruned)
    except StoreError:
        raise
    except CANDIDATE_FAILURES as err:
        return Outcome(job, reason=reason(err))


class InlineRunner:
    """One job at a time, in the caller's thread: :meth:`submit` runs it."""

    def __init__(self, evaluator: Evaluator) -> None:
        self.evaluator = evaluator
        self._done: list[Outcome] = []

    def submit(self, job: Job) -> None:
        """Run ``job`` now."""
        self._done.append(attempt(self.evaluator, job))

    def wait(self, timeout: float | None = None) -> list[Outcome]:
        """The outcomes of the jobs run since the last call."""
        done, self._done = self._done, []
        return done


class ThreadRunner:
    """Each job in a daemon thread; :meth:`wait` returns the finished ones (first come)."""

    def __init__(self, evaluator: Evaluator) -> None:
        self.evaluator = evaluator
        self._finished: queue.Queue[tuple[Job, Outcome | None, BaseException | None]]
        self._finished = queue.Queue()

    def submit(self, job: Job) -> None:
        """Start ``job`` in a daemon thread."""
        threading.Thread(
            target=self._work, args=(job,), name=f"edgetran-evaluation-{job.seq}", daemon=True
        ).start()

    def wait(self, timeout: float | None = None) -> list[Outcome]:
        """Every finished job's outcome, in order of submission, blocking until one is
        (``timeout``: at most that long, then maybe none); a job's fatal error is raised."""
        try:
            finished = [self._finished.get(timeout=timeout)]
        except queue.Empty:
            return []
        while True:
            try:
                finished.append(self._finished.get_nowait())
            except queue.Empty:
                break
        finished.sort(key=lambda f: f[0].seq)
        for _, _, error in finished:
            if error is not None:
                raise error
        return [outcome for _, outcome, _ in finished if outcome is not None]

    def _work(self, job: Job) -> None:
        try:
            self._finished.put((job, attempt(self.evaluator, job), None))
        except BaseException as err:  # re-raised in the loop's thread by wait()
            self._finished.put((job, None, err))
