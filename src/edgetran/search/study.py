"""The co-search loop: an Optuna study (ask/tell) of (model, device) pairs, resumable.

Every evaluation is one COMPLETE trial whose parameters are the evaluated pair (37 embedding
positions ``e0``…``e36`` and ``device``; for a sampler whose class names other
``coordinates``, such as ``gp``, the ``compact`` encoding's ``f0``…``f14`` in [0, 1] and
``device``) and whose user attributes hold the ``model_dict``,
metrics and flags. Optuna's samplers propose through ``ask``; their proposal is projected to the
nearest unevaluated candidate, the proposal trial is closed as FAIL (tagged ``proposal``; every
Optuna sampler ignores failed trials), and the evaluated pair is added as its own trial. So
each sampler learns from exactly the pairs evaluated, the study in the database is the whole
state, and ``resume`` continues a killed search without losing or repeating an evaluation.

Which pair comes next is the proposer's choice (:mod:`edgetran.search.proposers`: one
built from the factory registered as ``settings.sampler``, before the study is opened); this
module keeps the study, the claims, the budget and resume. BOSHCODE proposes from its own
surrogate, refitted on the completed trials at each step; ``trees`` scores the unevaluated
candidates itself after BOSHCODE's initial design. A pair that breaks the constraints is told
to Optuna with its objective less ``INFEASIBLE_PENALTY``, as BOSHCODE's targets are, so no
sampler is led towards pairs the user ruled out.

Accuracy is noisy (the oracle reports ``accuracy_std``). After the initial design, when the
best feasible pair and the runner-up are within each other's noise on the paper objective
(their gap at most ``accuracy_weight · sqrt(std₁² + std₂²)``), the one resting on fewer
training runs is trained again at another seed
(:meth:`~edgetran.search.evaluators.Evaluator.reevaluate`, at most :data:`MAX_ACCURACY_RUNS`
runs a pair); its accuracy becomes the runs' mean, and BOSHCODE and pool samplers learn from
that mean (Optuna's samplers keep the value told at the pair's first run: a COMPLETE trial is
not changed afterwards). A re-evaluation spends one evaluation of the budget and is stored as
its own trial (tagged ``reevaluation``),
so a resumed search applies it again and repeats none.

Evaluations in flight (``run_search(…, parallel=Q)``, ``edgetran search --parallel Q``). The
search keeps Q evaluations running (in threads; one runs in the caller's thread, as before)
and folds each result in as soon as it comes, whichever finishes first: throughput first, so
with Q > 1 a search is not reproducible to the pair (Q = 1 is the sequential search, proposal
for proposal). A pair in flight is a RUNNING trial of the study (tagged ``pending``, with its
process's ``owner`` id), which becomes its COMPLETE (or failed) trial when the evaluation
ends. No proposal takes a pair in flight: the pool leaves them out, and

- Optuna's samplers see them as RUNNING trials: TPE is created with ``constant_liar`` (Optuna
  5's default) and counts them as bad trials, GP conditions on them, the others ignore them,
  and the projection to the pool keeps the batch distinct;
- BOSHCODE and pool samplers (``trees``) use a pessimistic *constant liar*: each pair in
  flight enters the fit with the worst target observed (BOSHCODE's forests: the worst of each
  metric), so the next proposal moves away from
  it (kriging believer, the surrogate's own mean, would keep proposing next to it); pairs in
  flight also count towards the initial design's ``n_initial``.

A re-evaluation is an evaluation in flight too, and a pair is trained again only when no run
of it is in flight. The budget counts what is in flight: never more than ``budget``
evaluations are started.

Multi-fidelity (``settings.pruner``, issue 42: :mod:`edgetran.search.fidelity`). With a pruner
(scalar objectives only), the study is created with Optuna's pruner and the evaluator gets a
reporter: at each rung of the training it stores the objective so far (the pair's costs, the
accuracy at that rung) as the trial's intermediate value at step ``rung`` and asks the pruner,
which may stop the training. A stopped pair is a PRUNED trial with its last rung's metrics and
``fidelity`` and ``rung`` in its user attributes: it counts as one evaluation of the budget,
the proposers learn from it (Optuna's samplers natively, BOSHCODE and ``trees`` as a penalised
observation), it is never the search's best or on its front, and a resumed search neither
evaluates it again nor changes it. Without a pruner, ``evaluate(pair)`` is called as before.

Shared studies: several processes may run one stored study (``--db URL --study NAME
--resume``): each claims a pair atomically before evaluating it (:mod:`edgetran.search.claims`),
so none is evaluated twice, and the RUNNING trials and claims of a process found dead are
closed (tagged ``abandoned``) and released, so none is lost. On resume, only dead processes'
trials are closed; a live one's evaluations go on.

A search whose evaluations all failed is not finished: resumed (with no other process running
it), it tries its failed pairs again, since a failure that hit every pair is usually the
setup's (a missing task file or package), fixed since. The failed trials stay in the study;
the study's ``failures_retried_below`` attribute (a trial number) tells later reads to skip
them.
"""

from __future__ import annotations

import contextlib
import json
import math
import threading
import time
from collections.abc import Callable, Iterator, Mapping
from dataclasses import asdict, dataclass, field, replace
from typing import Any

import numpy as np

from edgetran.metrics import unit_key, with_unit_keys
from edgetran.plugins import SAMPLERS
from edgetran.search.claims import (
    CLAIMED,
    FULL,
    STALE_AFTER_S,
    DatabaseClaims,
    LocalClaims,
    new_owner,
    pair_of,
    run_key,
)
from edgetran.search.evaluators import Accuracy, Evaluation, Evaluator, device_matrix
from edgetran.search.fidelity import PRUNERS, PrunedEvaluation, Reporter, optuna_pruner
from edgetran.search.objectives import (
    DIRECTIONS,
    METRIC_KEYS,
    Constraints,
    PaperObjective,
    SearchError,
    pareto_mask,
)
from edgetran.search.pending import InlineRunner, Job, Outcome, ThreadRunner
from edgetran.search.proposers import (
    INFEASIBLE_PENALTY,
    POOL_SIZE,
    Coordinates,
    Proposal,
    Proposer,
    Setup,
)
from edgetran.search.settings import OBJECTIVES, BoshcodeSettings
from edgetran.search.table import Pair
from edgetran.space import Architecture
from edgetran.store.database import check_database_url, database_error, mask_url
from edgetran.store.masking import mask_secrets

#: Training runs (seeds) a near-tied pair's accuracy may rest on.
MAX_ACCURACY_RUNS = 3
#: At most this share of the budget trains near-tied pairs again: a small budget (the demo's
#: four evaluations) is for finding pairs; with six, two re-evaluations left four models.
REEVALUATION_SHARE = 0.2
#: Seconds between two looks at a shared study while only other processes have evaluations
#: of this search's budget in flight.
POLL_S = 1.0
#: Seconds a process resuming a study waits for the settings of one another process has just
#: created (the study and its settings are two writes).
SETTINGS_WAIT_S = 10.0
#: The study attribute below whose trial number failures were tried again (skipped on reads).
RETRIED_BELOW = "failures_retried_below"


@dataclass(frozen=True)
class SearchSettings:
    """What a search is: its sampler (a registered proposer's name), budget of evaluations,
    seed, objective (``paper``, ``pareto`` or ``accuracy``) and constraints, BOSHCODE's
    settings, the devices' features and the pairs evaluated first."""

    sampler: str = "boshcode"
    budget: int = 50
    seed: int = 0
    objective: str = "paper"
    paper: PaperObjective = field(default_factory=PaperObjective)
    constraints: Constraints = field(default_factory=Constraints)
    boshcode: BoshcodeSettings = field(default_factory=BoshcodeSettings)
    device_features: dict[str, tuple[float, ...]] | None = None
    #: Pairs evaluated first, in order, before any proposal (known models, e.g. the named
    #: BERTs a co-design is compared with): they count towards the budget and the initial
    #: design, so the sampler learns from them and they are never trained twice.
    start: tuple[Pair, ...] = ()
    #: Optuna's pruner that stops weak trainings at a rung (:mod:`edgetran.search.fidelity`):
    #: one of :data:`~edgetran.search.fidelity.PRUNERS`.
    pruner: str = "none"

    def __post_init__(self) -> None:
        SAMPLERS.validate(self.sampler)
        if self.pruner not in PRUNERS:
            raise SearchError(f"pruner {self.pruner!r} is unknown; allowed: {', '.join(PRUNERS)}")
        keys = [p.key for p in self.start]
        if len(set(keys)) < len(keys):
            raise SearchError(f"start={keys}: a pair is given twice")
        if len(keys) > self.budget:
            raise SearchError(
                f"start has {len(keys)} pairs; allowed: at most the budget ({self.budget})"
            )
        if self.objective not in OBJECTIVES:
            raise SearchError(
                f"objective {self.objective!r} is unknown; allowed: {', '.join(OBJECTIVES)}"
            )
        if self.budget < 1:
            raise SearchError(f"budget={self.budget}; expected an integer ≥ 1")
        if self.pruner != "none" and not self.scalar:
            raise SearchError(
                f"pruner={self.pruner!r} with objective={self.objective!r}: a pruner compares "
                "one value per rung; allowed: pruner=none, or objective paper or accuracy"
            )

    @property
    def scalar(self) -> bool:
        """Whether the search maximises one value (``paper``, ``accuracy``), not a front."""
        return self.objective != "pareto"

    @property
    def accuracy_weight(self) -> float:
        """How much one unit of accuracy moves the scalar value (noisy ties are judged on it)."""
        return 1.0 if self.objective == "accuracy" else self.paper.accuracy_weight

    def value(self, metrics: Mapping[str, float]) -> float:
        """The scalar value of ``metrics``: accuracy for ``accuracy``, else the paper objective
        (``pareto`` records it too, so that runs compare)."""
        if self.objective == "accuracy":  # arrays too: BOSHCODE's forests pass their draws
            return metrics["accuracy"]
        return self.paper.value(metrics)


@dataclass
class Record:
    """One evaluation, in order. ``fidelity`` is the share of the training it reached: 1.0
    for a complete one; below 1 for one the pruner stopped at rung ``rung`` (its metrics,
    ``value`` and ``feasible`` are that rung's), never a search's best pair."""

    pair: Pair
    evaluation: Evaluation
    value: float
    feasible: bool
    how: str
    fidelity: float = 1.0
    rung: int | None = None

    @property
    def pruned(self) -> bool:
        """Whether the pruner stopped this pair's training before the end."""
        return self.fidelity < 1.0


@dataclass
class Failure:
    """One pair whose evaluation failed, and why (one line)."""

    pair: Pair
    reason: str

    def to_dict(self) -> dict[str, Any]:
        """The failure as JSON: the architecture, the device and the reason."""
        return {
            "arch": self.pair.arch.to_model_dict(),
            "device": self.pair.device,
            "reason": self.reason,
        }


@dataclass
class SearchResult:
    """A finished search: its records in trial order, failures, re-evaluations and the
    seconds each proposal took."""

    records: list[Record]
    objective: str
    seconds_per_proposal: list[float] = field(default_factory=list)
    constraints: Constraints = field(default_factory=Constraints)
    failures: list[Failure] = field(default_factory=list)
    reevaluations: int = 0

    def to_dict(self) -> dict[str, Any]:
        """The search's JSON summary: best pair, history (every evaluation's value, a pruned
        one's at its last rung), the pruned pairs, failures (and the front)."""
        history = [r.value for r in self.records]
        best = self._best()
        out: dict[str, Any] = {
            "best": None if best is None else _describe(best),
            "evaluations": len(self.records),
            "reevaluations": self.reevaluations,
            "evaluations_to_best": None
            if best is None
            else 1
            + next(
                i for i, r in enumerate(self.records) if not r.pruned and r.value >= best.value
            ),
            "history": history,
            "pruned": [_describe(r) for r in self.records if r.pruned],
            "failed": [f.to_dict() for f in self.failures],
        }
        if best is None:
            out["message"] = (
                f"no evaluated pair met the constraints ({self.constraints.describe()})"
                if self.records
                else "no pair was evaluated"
            )
        if self.objective == "pareto":
            out["history_metrics"] = [r.evaluation.metrics for r in self.records]
            feasible = [r for r in self.records if r.feasible and not r.pruned]
            mask = pareto_mask([[r.evaluation.metrics[k] for k in METRIC_KEYS] for r in feasible])
            out["pareto_front"] = [
                _describe(r) for r, keep in zip(feasible, mask, strict=True) if keep
            ]
        return out

    @property
    def best(self) -> Record | None:
        """The feasible, completely trained record of highest value (``None``: none)."""
        return self._best()

    def _best(self) -> Record | None:
        feasible = [r for r in self.records if r.feasible and not r.pruned]
        return max(feasible, key=lambda r: r.value) if feasible else None


def _describe(record: Record) -> dict[str, Any]:
    e = record.evaluation
    return {
        "arch": record.pair.arch.to_model_dict(),
        "device": record.pair.device,
        "metrics": e.metrics,
        "predicted": e.predicted,
        "objective": record.value,
        "accuracy_std": e.accuracy_std,
        # how many training runs (seeds) the accuracy rests on; 1: a single seed
        "accuracy_runs": len(e.accuracy_runs) or 1,
        "contended": e.contended,
        **({"fidelity": record.fidelity, "rung": record.rung} if record.pruned else {}),
    }


# -- the loop -----------------------------------------------------------------------------------
def run_search(
    evaluator: Evaluator,
    settings: SearchSettings,
    *,
    storage: str | None = None,
    study_name: str = "edgetran-search",
    resume: bool = False,
    on_evaluation: Callable[[int, Record], None] | None = None,
    on_failure: Callable[[int, Failure], None] | None = None,
    parallel: int = 1,
    on_stored: Callable[[int, Record | Failure], None] | None = None,
    proposer: Callable[[Setup], Proposer] | None = None,
) -> SearchResult:
    """Search until ``settings.budget`` evaluations (failed ones included) exist in the
    study; a candidate whose evaluation fails is recorded as failed and not retried, unless
    a resumed study holds no successful evaluation (then its failed pairs are tried again).

    ``parallel`` (Q ≥ 1) evaluations are kept in flight: with Q > 1 the evaluator is called
    from Q threads at once (see :mod:`edgetran.search.pending`). Q is no setting of the study:
    a resumed search may change it. Several processes may run one stored study at once
    (``storage`` and ``resume``): together they evaluate no pair twice and lose none, and each
    returns once the study holds its budget's evaluations and none is in flight anywhere
    (see :mod:`edgetran.search.claims`). ``on_evaluation`` and ``on_failure`` are called in
    the caller's thread with the study's count of finished evaluations; ``on_stored`` with
    each evaluation (record or failure) a resumed study already held, numbered in trial
    order, before any new one. ``proposer``, a factory of
    :class:`~edgetran.search.proposers.Proposer`, replaces the one registered as
    ``settings.sampler`` (a contract check's; the study still records the sampler's name)."""
    # Inputs are checked before the study is opened: a refused search leaves no study behind.
    _check_parallel(parallel)
    devices = device_matrix(evaluator.devices, settings.device_features)
    _check_start(settings, evaluator)
    _check_pruner(settings, evaluator)
    setup = Setup(settings, devices, evaluator)
    made = SAMPLERS.create(settings.sampler, setup) if proposer is None else proposer(setup)
    coordinates = setup.coordinates(made.coordinates)
    owner = new_owner()
    if storage is not None:
        check_database_url(storage)  # a typed error before any engine is made
    claims = LocalClaims(owner) if storage is None else DatabaseClaims(storage, study_name, owner)
    search: _Search | None = None
    try:
        study, backend = _open_study(
            settings, storage, study_name, resume, evaluator.devices, claims, made
        )
        claims.register()
        made.attach(_asker(study, coordinates, owner))
        search = _Search(study, backend, claims, evaluator, settings, coordinates, made)
        if on_stored is not None:
            search.replay(on_stored)
        search.run(parallel, on_evaluation, on_failure)
    except BaseException:
        with contextlib.suppress(Exception):  # the first error is the one to report
            if search is not None:
                search.abandon()
            claims.close()
        raise
    claims.close()
    return search.result()


def _check_pruner(settings: SearchSettings, evaluator: Evaluator) -> None:
    """Refuse, before the study is opened, a pruner with an evaluator that reports no rungs."""
    if settings.pruner != "none" and not evaluator.reports_rungs:
        raise SearchError(
            f"pruner={settings.pruner!r}: this evaluator ({type(evaluator).__name__}) reports "
            "no accuracy during training (a replay table without learning curves?); allowed: "
            "pruner=none, or an evaluator that reports rungs"
        )


def _check_parallel(parallel: int) -> None:
    if isinstance(parallel, bool) or not isinstance(parallel, int) or parallel < 1:
        raise SearchError(
            f"parallel={parallel!r}; expected an integer ≥ 1 (evaluations in flight)"
        )


class _Search:
    """The state of one search process: what the study holds (records, failures, applied
    re-evaluations) as far as this process has read it, what it has in flight, and what it
    knows others have."""

    def __init__(
        self, study, backend, claims, evaluator: Evaluator, settings: SearchSettings,
        coordinates: Coordinates, proposer: Proposer,
    ) -> None:  # fmt: skip
        self.study, self.backend, self.claims = study, backend, claims
        self.study_id = backend.get_study_id_from_name(study.study_name)
        self.evaluator, self.settings = evaluator, settings
        self.coordinates, self.proposer = coordinates, proposer
        self.on_evaluation: Callable[[int, Record], None] | None = None
        self.on_failure: Callable[[int, Failure], None] | None = None
        self.records: list[Record] = []
        self.numbers: dict[str, int] = {}  # pair key → its trial's number (the result's order)
        self.failures: list[tuple[int, Failure]] = []
        self.reevaluations = 0
        self.settled: set[str] = set()
        self.finished: set[str] = set()  # claim keys whose evaluation is stored
        self.known: set[int] = set()  # trial numbers read or written
        self.timings: list[float] = []
        self.in_flight: dict[int, Job] = {}
        self.batch: Iterator[Proposal] | None = None  # the free slots' proposals, not yet taken
        self.submitted = 0
        self.pruning = threading.Lock()  # reporters run in evaluation threads (parallel > 1)
        # What other processes do, as of the last read of a shared study:
        self.others: dict[str, Pair] = {}  # their pairs in flight
        self.claimed: frozenset[str] = frozenset()  # every claimed pair key
        self.pending_claims: dict[str, str] = {}  # claim key → owner, while in flight
        self.busy: set[str] = set()  # pairs with a re-evaluation in flight anywhere
        self.exhausted = False
        self.retried_below = study.user_attrs.get(RETRIED_BELOW, 0)
        self._read(study.get_trials(deepcopy=False))
        if not self.records and self.failures and self._alone():
            self._retry_failures()
        claims.backfill(self.finished)

    @property
    def done(self) -> int:
        """Evaluations stored in the study (as far as read): the on_* callbacks' count."""
        return len(self.records) + len(self.failures) + self.reevaluations

    def _alone(self) -> bool:
        """Whether no other live process runs this study (nothing of theirs is in flight)."""
        pending = set(self.claims.snapshot().pending.values())
        return not self.claims.owners(pending).live

    def _retry_failures(self) -> None:
        """Make the stored failures' pairs free again: the study's later reads skip them and
        their claims go, so they count towards no budget."""
        self.retried_below = max(number for number, _ in self.failures) + 1
        self.study.set_user_attr(RETRIED_BELOW, self.retried_below)
        keys = [failure.pair.key for _, failure in self.failures]
        self.claims.forget(keys)
        self.finished.difference_update(keys)
        self.failures.clear()

    def replay(self, on_stored: Callable[[int, Record | Failure], None]) -> None:
        """Call ``on_stored`` with each evaluation the study held when opened, in trial order."""
        stored = [(self.numbers[r.pair.key], r) for r in self.records] + self.failures
        for n, (_, item) in enumerate(sorted(stored, key=lambda pair: pair[0]), start=1):
            on_stored(n, item)

    # -- the loop -------------------------------------------------------------------------------
    def run(
        self,
        parallel: int,
        on_evaluation: Callable[[int, Record], None] | None = None,
        on_failure: Callable[[int, Failure], None] | None = None,
    ) -> None:
        """Keep ``parallel`` evaluations in flight until the budget is claimed or the
        candidates run out; fold each result in as it comes (first finished, first folded)."""
        self.on_evaluation, self.on_failure = on_evaluation, on_failure
        runner = (InlineRunner if parallel == 1 else ThreadRunner)(self.evaluator)
        budget = self.settings.budget
        while True:
            if self.claims.shared:
                self._refresh()
            self.batch = None  # results came in: the free slots get a batch of their own
            while len(self.in_flight) < parallel:
                job = self._next_job(parallel - len(self.in_flight))
                if job is None:
                    break
                self._submit(job, runner)
            if self.in_flight:
                for outcome in runner.wait():
                    self._fold(outcome)
                continue
            if not self.claims.shared or self._finished_elsewhere(budget):
                break
        if self.claims.shared:  # what other processes stored meanwhile
            self._read(self.study.get_trials(deepcopy=False))

    def _finished_elsewhere(self, budget: int) -> bool:
        """With nothing of ours in flight and nothing to start: whether the shared study is
        finished (the budget's evaluations stored, or the candidates gone and nothing in
        flight); else wait :data:`POLL_S` while other processes' evaluations run (they
        finish, or their owner is found dead and their pairs come free), and say no. Decided
        on a fresh read of the claims: the last refresh may be older than the last claim."""
        snapshot = self.claims.snapshot()
        if snapshot.count - len(snapshot.pending) >= budget:
            return True
        if any(owner != self.claims.owner for owner in snapshot.pending.values()):
            time.sleep(POLL_S)
            return False
        return self.exhausted  # else claims came free since (released or reaped): go on

    def result(self) -> SearchResult:
        records = sorted(self.records, key=lambda r: self.numbers[r.pair.key])
        failures = [f for _, f in sorted(self.failures, key=lambda nf: nf[0])]
        s = self.settings
        return SearchResult(
            records, s.objective, self.timings, s.constraints, failures, self.reevaluations
        )

    # -- proposing ------------------------------------------------------------------------------
    def _next_job(self, slots: int = 1) -> Job | None:
        """Claim the next evaluation: a near-tied pair's re-evaluation, a start pair, or the
        sampler's proposal (the next of a batch for ``slots`` free slots); ``None`` when the
        budget is claimed or the candidates ran out."""
        settings, budget = self.settings, self.settings.budget
        taken: dict[str, Pair] = {}  # pairs others claimed since the last read
        while not self.exhausted:
            step = self.claims.count()
            if step >= budget:
                return None
            tied = self._tie()
            if tied is not None:
                run = len(tied.evaluation.accuracy_runs)
                key = run_key(tied.pair.key, run)
                status = self.claims.claim(key, budget)
                if status == CLAIMED:
                    return Job(tied.pair, "reevaluation", key, run=run, record=tied)
                if status == FULL:
                    return None
                self.busy.add(tied.pair.key)
                continue
            rng = np.random.default_rng([settings.seed, step])
            began = time.perf_counter()
            pending = self._pending(taken)
            exclude = self._excluded() | set(pending)
            pair = next((p for p in settings.start if p.key not in exclude), None)
            how = "start"
            if pair is None:
                proposal = self._proposal(slots, tuple(pending.values()), exclude, step, rng)
                if proposal is None:
                    self.exhausted = True
                    return None
                self.timings.append(time.perf_counter() - began)
                pair, how = proposal.pair, proposal.how
            status = self.claims.claim(pair.key, budget)
            if status == CLAIMED:
                return Job(pair, how, pair.key)
            if status == FULL:
                return None
            taken[pair.key] = pair
        return None

    def _proposal(
        self, slots: int, pending: tuple[Pair, ...], exclude: set[str], step: int, rng
    ) -> Proposal | None:
        """The open batch's next proposal that nobody has claimed meanwhile, else the first
        of a new batch for ``slots`` pairs (one fit for them all); ``None`` when the
        candidates ran out."""
        for proposal in self.batch or ():
            if proposal.pair.key not in exclude:
                return proposal
        pool = self.evaluator.candidates(POOL_SIZE, rng, exclude)
        if not pool:
            return None
        batch = self.proposer.propose_batch(tuple(self.records), pending, pool, step, rng, slots)
        self.batch = iter(batch)
        proposal = next(self.batch, None)
        if proposal is None:
            raise SearchError(f"sampler {self.settings.sampler!r} proposed no pair of its pool")
        return proposal

    def _tie(self) -> Record | None:
        """The near-tied pair to train again, if re-evaluations are still within their share
        of the budget (those in flight, here or elsewhere, count)."""
        ours = sum(job.run is not None for job in self.in_flight.values())
        theirs = sum(
            pair_of(key)[1] is not None and owner != self.claims.owner
            for key, owner in self.pending_claims.items()
        )
        if self.reevaluations + ours + theirs >= int(self.settings.budget * REEVALUATION_SHARE):
            return None
        busy = self.busy | {job.pair.key for job in self.in_flight.values() if job.run is not None}
        return _noisy_tie(self.records, self.settings, self.settled | busy)

    def _pending(self, taken: dict[str, Pair]) -> dict[str, Pair]:
        """Pairs whose evaluation is in flight here or elsewhere (the proposers' fantasies)."""
        ours = {job.pair.key: job.pair for job in self.in_flight.values() if job.run is None}
        return {**ours, **self.others, **taken}

    def _excluded(self) -> set[str]:
        """Keys no proposal may take: stored or claimed pairs."""
        stored = {r.pair.key for r in self.records} | {f.pair.key for _, f in self.failures}
        return stored | set(self.claimed)

    def _submit(self, job: Job, runner: InlineRunner | ThreadRunner) -> None:
        self.submitted += 1
        job.seq = self.submitted
        if job.run is None:  # the pair is a RUNNING trial while in flight
            job.trial_id = self.backend.create_new_trial(
                self.study_id, template_trial=self._pending_trial(job)
            )
            job.number = self.backend.get_trial_number_from_id(job.trial_id)
            self.known.add(job.number)
            if self.settings.pruner != "none":
                job.report = self._reporter(job.trial_id)
        self.in_flight[job.seq] = job
        runner.submit(job)

    def _reporter(self, trial_id: int) -> Reporter:
        """The reporter of the pending trial ``trial_id``: each rung's evaluation scored as
        the trial would be told (less :data:`INFEASIBLE_PENALTY` where it breaks the
        constraints), stored as the intermediate value at step ``rung``, and, before the last
        rung, the study's pruner asked; it raises :class:`PrunedEvaluation` to stop. Called in
        the evaluation's thread: the storage is, the pruners' bookkeeping is made, safe."""
        study, backend = self.study, self.backend

        def report(rung: int, fidelity: float, evaluation: Evaluation) -> None:
            value, feasible = score(evaluation, self.settings)
            told = value - (0.0 if feasible else INFEASIBLE_PENALTY)
            with self.pruning:
                backend.set_trial_intermediate_value(trial_id, rung, told)
                if fidelity >= 1.0:
                    return
                prune = study.pruner.prune(study, backend.get_trial(trial_id))
            if prune:
                raise PrunedEvaluation(evaluation, fidelity, rung)

        return report

    def _pending_trial(self, job: Job):
        import optuna
        from optuna.trial import TrialState

        return optuna.trial.create_trial(
            params=self.coordinates.params(job.pair),
            distributions=self.coordinates.distributions,
            state=TrialState.RUNNING,
            user_attrs={
                "role": "pending",
                "owner": self.claims.owner,
                "key": job.key,
                "model_dict": job.pair.arch.to_model_dict(),
                "device": job.pair.device,
                "how": job.how,
            },
        )

    # -- folding results in ---------------------------------------------------------------------
    def _fold(self, outcome: Outcome) -> None:
        job = outcome.job
        if job.run is not None:
            self._fold_reevaluation(job, outcome)
        elif outcome.reason is not None:
            failure = Failure(job.pair, outcome.reason)
            self._finish_trial(job, _failed_trial(failure, self.coordinates))
            self.failures.append((job.number, failure))
            if self.on_failure is not None:
                self.on_failure(self.done, failure)
        else:
            pruned = outcome.pruned
            evaluation = outcome.value if pruned is None else pruned.evaluation
            value, feasible = score(evaluation, self.settings)
            record = Record(job.pair, evaluation, value, feasible, job.how)
            if pruned is not None:
                record.fidelity, record.rung = pruned.fidelity, pruned.rung
            self._finish_trial(job, _trial(record, self.coordinates, self.settings))
            self.records.append(record)
            self.numbers[job.pair.key] = job.number
            if self.on_evaluation is not None:
                self.on_evaluation(self.done, record)

    def _finish_trial(self, job: Job, trial) -> None:
        """Store ``trial``'s outcome in ``job``'s pending trial, then mark its claim done
        (a crash in between leaves a stored evaluation whose claim a reaper marks done)."""
        import optuna

        role = trial.user_attrs.get("role", "evaluation")
        try:
            for key, value in {**trial.user_attrs, "role": role}.items():
                self.backend.set_trial_user_attr(job.trial_id, key, value)
            for key, value in trial.system_attrs.items():
                self.backend.set_trial_system_attr(job.trial_id, key, value)
            self.backend.set_trial_state_values(job.trial_id, trial.state, trial.values)
        except optuna.exceptions.UpdateFinishedTrialError:
            raise self._lost() from None
        del self.in_flight[job.seq]
        self.claims.finish(job.key)
        self.finished.add(job.key)

    def _fold_reevaluation(self, job: Job, outcome: Outcome) -> None:
        """Store a re-evaluation (its accuracy, or why it failed) as its own trial and fold
        it into the pair's record; an evaluator without runs settles the pair, unstored."""
        record, run = job.record, job.run
        if outcome.reason is None and outcome.value is None:  # one accuracy per pair
            self.claims.release(job.key)
            del self.in_flight[job.seq]
            self.settled.add(record.pair.key)
            return
        accuracy = None if outcome.reason is not None else outcome.value
        trial = _reevaluation_trial(record.pair, run, accuracy, outcome.reason, self.coordinates)
        trial_id = self.backend.create_new_trial(self.study_id, template_trial=trial)
        self.known.add(self.backend.get_trial_number_from_id(trial_id))
        del self.in_flight[job.seq]
        self.claims.finish(job.key)
        self.finished.add(job.key)
        self.reevaluations += 1
        if accuracy is None:  # the run failed: no more runs of this pair
            self.settled.add(record.pair.key)
            return
        _fold_in(record, accuracy, self.settings)
        if self.on_evaluation is not None:
            runs = len(record.evaluation.accuracy_runs)
            self.on_evaluation(self.done, replace(record, how=f"reevaluation (run {runs})"))

    # -- reading the study ----------------------------------------------------------------------
    def _read(self, trials: list) -> None:
        """Fold in the stored evaluations not yet known, in trial order: records, failures,
        then re-evaluations (applied to their pair's record)."""
        from optuna.trial import TrialState

        fresh = [t for t in trials if t.number not in self.known and t.state.is_finished()]
        for t in fresh:
            role = t.user_attrs.get("role")
            if t.state == TrialState.COMPLETE or (
                t.state == TrialState.PRUNED and role == "evaluation"
            ):
                record = _record_from_trial(t)
                self.records.append(record)
                self.numbers[record.pair.key] = t.number
                self.finished.add(record.pair.key)
            elif role == "failed" and t.number >= self.retried_below:
                failure = _failure_from_trial(t)
                self.failures.append((t.number, failure))
                self.finished.add(failure.pair.key)
            elif role == "reevaluation":
                continue
            self.known.add(t.number)
        by_key = {r.pair.key: r for r in self.records}
        for t in fresh:
            a = t.user_attrs
            if t.state != TrialState.FAIL or a.get("role") != "reevaluation":
                continue
            if a.get("key") not in by_key:  # not (yet) a record here: read again later
                continue
            self.known.add(t.number)
            self.finished.add(run_key(a["key"], a["run"]))
            self.reevaluations += 1
            if a["accuracy"] is None:
                self.settled.add(a["key"])
            else:
                accuracy = Accuracy(a["accuracy"], a["accuracy_std"])
                _fold_in(by_key[a["key"]], accuracy, self.settings)

    def _refresh(self) -> None:
        """Read what other processes stored, claimed and have in flight; close the trials
        and release the claims of dead processes (their pairs come free: none is lost)."""
        from optuna.trial import TrialState

        # Trials, then claims, then owners: the owner of anything read is registered by then.
        trials = self.study.get_trials(deepcopy=False)
        self._read(trials)
        snapshot = self.claims.snapshot()
        me = self.claims.owner
        running = [
            t for t in trials if t.state == TrialState.RUNNING and t.user_attrs.get("owner") != me
        ]
        candidates = {t.user_attrs["owner"] for t in running if "owner" in t.user_attrs}
        owners = self.claims.owners(candidates | set(snapshot.pending.values()))
        for t in running:
            owner = t.user_attrs.get("owner")
            # A trial without owner is a proposal a killed run left (or one of a version
            # before owners): closed once no other process lives that could be asking it.
            if owner in owners.dead or (owner is None and not owners.live):
                self._abandon(t.number)
        for owner in sorted(owners.dead):
            self.claims.reap(owner, self.finished)
        if owners.dead:
            snapshot = self.claims.snapshot()
        self.others = {
            a["key"]: Pair(Architecture.from_dict(a["model_dict"]), a["device"])
            for t in running
            if (a := t.user_attrs).get("role") == "pending" and a.get("owner") in owners.live
        }
        self.pending_claims = dict(snapshot.pending)
        self.claimed = frozenset(pair_of(k)[0] for k in snapshot.keys if pair_of(k)[1] is None)
        self.busy = {pair_of(k)[0] for k in snapshot.pending if pair_of(k)[1] is not None}
        self.exhausted = False
        if self.claims.lost:
            raise self._lost()

    def _abandon(self, number: int) -> None:
        """Close a RUNNING trial whose process is gone (FAIL, role ``abandoned``: no
        evaluation and no failure); a trial closed meanwhile by another process is left, to be
        read (its owner stored it between our read of the trials and our look at the owners)."""
        import optuna
        from optuna.trial import TrialState

        trial_id = self.backend.get_trial_id_from_study_id_trial_number(self.study_id, number)
        with contextlib.suppress(optuna.exceptions.UpdateFinishedTrialError):
            self.backend.set_trial_user_attr(trial_id, "role", "abandoned")
            self.backend.set_trial_state_values(trial_id, TrialState.FAIL)
            self.known.add(number)

    def abandon(self) -> None:
        """On an error: close this process's pending trials and release their claims, so that
        their pairs are free at once (a resumed search evaluates them)."""
        for job in list(self.in_flight.values()):
            if job.number is not None:
                self._abandon(job.number)
            self.claims.release(job.key)
        self.in_flight.clear()

    def _lost(self) -> SearchError:
        return SearchError(
            f"search {self.study.study_name!r}: another process took this one for dead (no "
            f"heartbeat for {STALE_AFTER_S:g} s) and released its pairs; run it again with "
            "--resume"
        )


def _check_start(settings: SearchSettings, evaluator: Evaluator) -> None:
    """Refuse, before the study is opened, a start pair the evaluator would not offer."""
    for pair in settings.start:
        if pair.device not in evaluator.devices:
            raise SearchError(
                f"start pair {pair.arch.hash[:10]} is on device {pair.device!r}; "
                f"allowed: {', '.join(evaluator.devices)}"
            )
        if not evaluator.offers(pair):
            raise SearchError(
                f"start pair {pair.key} is not a candidate of this search (outside its space "
                "or its table)"
            )


def _noisy_tie(
    records: list[Record], settings: SearchSettings, settled: set[str]
) -> Record | None:
    """The pair to train again: of the best feasible pair and the runner-up, when their
    objective values are within their accuracies' noise, the one on fewer runs (the best on
    a draw); ``None`` when there is no such tie, or both are settled (at
    :data:`MAX_ACCURACY_RUNS` runs, or a run of theirs failed), or during the initial design
    (random pairs: the best of them is rarely the best of the search)."""
    if not settings.scalar or len(records) < settings.boshcode.n_initial:
        return None
    ranked = sorted(
        (r for r in records if r.feasible and not r.pruned), key=lambda r: r.value, reverse=True
    )
    if len(ranked) < 2:
        return None
    best, second = ranked[:2]
    stds = (best.evaluation.accuracy_std, second.evaluation.accuracy_std)
    if not all(s is not None and math.isfinite(s) for s in stds):
        return None  # a replayed table, a GLUE score, a study from before accuracy_std
    noise = settings.accuracy_weight * float(np.hypot(*stds))
    if best.value - second.value > noise:
        return None
    open_ = [
        r
        for r in (best, second)
        if len(r.evaluation.accuracy_runs) < MAX_ACCURACY_RUNS and r.pair.key not in settled
    ]
    return min(open_, key=lambda r: len(r.evaluation.accuracy_runs)) if open_ else None


def _fold_in(record: Record, accuracy: Accuracy, settings: SearchSettings) -> None:
    record.evaluation.add_accuracy_run(accuracy)
    record.value, record.feasible = score(record.evaluation, settings)


def _reevaluation_trial(pair: Pair, run: int, accuracy, reason, coordinates: Coordinates):
    import optuna
    from optuna.trial import TrialState

    # FAIL, as proposals are: no sampler learns from it (the pair's own trial stands for it)
    return optuna.trial.create_trial(
        params=coordinates.params(pair),
        distributions=coordinates.distributions,
        state=TrialState.FAIL,
        user_attrs={
            "role": "reevaluation",
            "key": pair.key,
            "run": run,
            "accuracy": None if accuracy is None else accuracy.value,
            "accuracy_std": None if accuracy is None else accuracy.std,
            "reason": mask_secrets(reason),
        },
    )


def score(evaluation: Evaluation, settings: SearchSettings) -> tuple[float, bool]:
    """The scalar value recorded in ``history`` (:meth:`SearchSettings.value`) and
    feasibility under the constraints."""
    violated = settings.constraints.violations(
        evaluation.metrics,
        {**evaluation.metrics, **evaluation.upper},
        {**evaluation.metrics, **evaluation.lower},
    )
    return settings.value(evaluation.metrics), not violated


def _open_study(
    settings: SearchSettings,
    storage: str | None,
    name: str,
    resume: bool,
    devices: tuple[str, ...],
    claims: LocalClaims | DatabaseClaims,
    proposer: Proposer,
):
    """The study (with the proposer's Optuna sampler) and its storage backend: created (its
    claims reset, then its settings stored), or loaded when ``resume`` (its settings
    compared)."""
    import optuna

    url, backend = storage, _storage(storage)
    signature = _signature(settings, devices, proposer)
    directions = ["maximize"] if settings.scalar else list(DIRECTIONS)
    exists = url is not None and name in optuna.study.get_all_study_names(backend)
    if exists and not resume:
        raise SearchError(_exists_message(name, url))
    pruner = optuna_pruner(settings.pruner)
    if not exists:
        try:
            study = optuna.create_study(
                study_name=name,
                storage=backend,
                directions=directions,
                sampler=proposer.optuna_sampler(),
                pruner=pruner,
            )
        except optuna.exceptions.DuplicatedStudyError:  # another process created it just now
            if not resume:
                raise SearchError(_exists_message(name, url)) from None
        else:
            # Claims of an older study of this name go before the settings are stored: no
            # process resumes this one (it waits for the settings) while they are there.
            claims.purge()
            study.set_user_attr("settings", signature)
            return study, backend
    study = optuna.load_study(
        study_name=name, storage=backend, sampler=proposer.optuna_sampler(), pruner=pruner
    )
    changed = _changed(_stored_settings(study), signature)
    if changed:
        raise SearchError(
            f"search {name!r} was started with other settings ({', '.join(changed)} "
            "differ); cannot resume"
        )
    return study, backend


def delete_studies(storage: str, prefix: str) -> list[str]:
    """Delete every study stored at ``storage`` whose name starts with ``prefix`` (with its
    trials); the names deleted. A later study of such a name starts afresh (its claims are
    reset when it is created)."""
    import optuna

    backend = _storage(storage)
    names = [n for n in optuna.study.get_all_study_names(backend) if n.startswith(prefix)]
    for name in names:
        optuna.delete_study(study_name=name, storage=backend)
    return names


def _exists_message(name: str, url: str | None) -> str:
    return (
        f"a search named {name!r} exists in {mask_url(url or '')}; pass --resume or another "
        "--study"
    )


def _stored_settings(study) -> Any:
    """The study's settings; for a study without trials, waits up to
    :data:`SETTINGS_WAIT_S` for the process that created it to store them."""
    deadline = time.monotonic() + SETTINGS_WAIT_S
    stored = study.user_attrs.get("settings")
    while stored is None and time.monotonic() < deadline and not study.get_trials(deepcopy=False):
        time.sleep(0.1)
        stored = study.user_attrs.get("settings")
    return stored


def _storage(url: str | None):
    """Optuna's storage at ``url`` (``None``: in memory). A malformed URL, a missing driver or
    an unreachable database is a typed error, and no message shows the URL's password.
    SQLite waits for another process's lock rather than failing at once; two processes that
    create Optuna's tables at the same moment try again."""
    import optuna

    if url is None:
        return optuna.storages.InMemoryStorage()
    from sqlalchemy.engine import make_url
    from sqlalchemy.exc import IntegrityError, SQLAlchemyError

    from edgetran.search.claims import SQLITE_TIMEOUT_S, configure_sqlite

    check_database_url(url)
    sqlite = make_url(url).get_backend_name() == "sqlite"
    engine_kwargs = {"connect_args": {"timeout": SQLITE_TIMEOUT_S}} if sqlite else {}
    for attempt in range(3):
        try:
            backend = optuna.storages.RDBStorage(url, engine_kwargs=engine_kwargs)
            configure_sqlite(backend.engine)
            return backend
        except SQLAlchemyError as err:
            # Optuna creates its tables and version row on first use: two processes doing so
            # at once collide (a duplicate row, a table already there, a locked file).
            racing = isinstance(err, IntegrityError) or any(
                sign in str(err) for sign in ("already exists", "locked")
            )
            if not racing or attempt == 2:
                raise database_error(url, "cannot open the search database", err) from None
            time.sleep(0.2 * (attempt + 1))
    raise AssertionError("unreachable")


def _signature(
    settings: SearchSettings, devices: tuple[str, ...], proposer: Proposer
) -> dict[str, Any]:
    """What a resumed search must share with the stored one, in its JSON form: the sampler
    (and the settings its proposer names: BOSHCODE's, the coordinates of Optuna's trials)
    and also the objective (weights, constraints, devices and their features), since records
    scored under another objective would mislead the sampler. Stored as the study's user
    attribute, so any URL in it is masked (as in every attribute that holds text)."""
    signature: dict[str, Any] = {
        "sampler": settings.sampler,
        "seed": settings.seed,
        "objective": settings.objective,
        "paper": asdict(settings.paper),
        "constraints": asdict(settings.constraints),
        "devices": list(devices),
        "device_features": settings.device_features,
    }
    if settings.start:  # absent when empty: studies from before start pairs still resume
        signature["start"] = [p.key for p in settings.start]
    if settings.pruner != "none":  # likewise absent for studies from before pruners
        signature["pruner"] = settings.pruner
    signature.update(proposer.signature())
    return mask_secrets(json.loads(json.dumps(signature)))


def _changed(stored: Any, signature: dict[str, Any]) -> list[str]:
    """The signature's keys whose stored value differs (all of them for a foreign study)."""
    if not isinstance(stored, dict):
        return sorted(signature)
    return sorted(
        key for key in set(stored) | set(signature) if stored.get(key) != signature.get(key)
    )


def _asker(study, coordinates: Coordinates, owner: str) -> Callable[[], dict[str, Any]]:
    """An Optuna proposer's ``ask()``: a trial asked of the study's sampler in
    ``coordinates``, closed at once as FAIL (tagged ``proposal`` and with this process's
    ``owner``; every Optuna sampler ignores failed trials); its parameters."""

    def ask() -> dict[str, Any]:
        from optuna.trial import TrialState

        trial = study.ask(coordinates.distributions)
        params = trial.params
        trial.set_user_attr("role", "proposal")
        trial.set_user_attr("owner", owner)
        study.tell(trial, state=TrialState.FAIL)
        return params

    return ask


def _trial(record: Record, coordinates: Coordinates, settings: SearchSettings):
    import optuna
    from optuna.trial import TrialState

    m = record.evaluation.metrics
    feasible_values = [m["accuracy"], m["latency_s"], m["energy_j"], m["peak_power_w"]]
    # A pruned trial's value is its last rung's, as Optuna's own tell(state=PRUNED) keeps it.
    return optuna.trial.create_trial(
        params=coordinates.params(record.pair),
        distributions=coordinates.distributions,
        values=[_told_value(record)] if settings.scalar else feasible_values,
        state=TrialState.PRUNED if record.pruned else TrialState.COMPLETE,
        user_attrs={
            "model_dict": record.pair.arch.to_model_dict(),
            "device": record.pair.device,
            "metrics": m,
            "predicted": record.evaluation.predicted,
            "lower": record.evaluation.lower,
            "upper": record.evaluation.upper,
            "objective": record.value,
            "feasible": record.feasible,
            "how": record.how,
            "accuracy_runs": record.evaluation.accuracy_runs,
            "accuracy_run_stds": record.evaluation.accuracy_run_stds,
            "contended": record.evaluation.contended,
            **({"fidelity": record.fidelity, "rung": record.rung} if record.pruned else {}),
        },
        system_attrs={"constraints": [0.0 if record.feasible else 1.0]},
    )


def _told_value(record: Record) -> float:
    return record.value - (0.0 if record.feasible else INFEASIBLE_PENALTY)


def _failed_trial(failure: Failure, coordinates: Coordinates):
    import optuna
    from optuna.trial import TrialState

    return optuna.trial.create_trial(
        params=coordinates.params(failure.pair),
        distributions=coordinates.distributions,
        state=TrialState.FAIL,
        user_attrs={"role": "failed", **mask_secrets(failure.to_dict())},
    )


def _failure_from_trial(trial) -> Failure:
    a = trial.user_attrs
    return Failure(Pair(Architecture.from_dict(a["arch"]), a["device"]), a["reason"])


def _record_from_trial(trial) -> Record:
    a = trial.user_attrs
    # a study stored before the metrics had units resumes under the names with units
    evaluation = Evaluation(
        with_unit_keys(a["metrics"], error=SearchError),
        [unit_key(k) for k in a["predicted"]],
        with_unit_keys(a["lower"], error=SearchError),
        with_unit_keys(a["upper"], error=SearchError),
        contended=a.get("contended", False),
    )
    for value, std in zip(a.get("accuracy_runs", []), a.get("accuracy_run_stds", []), strict=True):
        evaluation.add_accuracy_run(Accuracy(value, std))
    pair = Pair(Architecture.from_dict(a["model_dict"]), a["device"])
    record = Record(pair, evaluation, a["objective"], a["feasible"], a["how"])
    if "fidelity" in a:  # a PRUNED trial
        record.fidelity, record.rung = a["fidelity"], a.get("rung")
    return record
