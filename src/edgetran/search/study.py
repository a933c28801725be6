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

BOSHCODE proposes from its own surrogate, refitted on the completed trials at each step; a
pool sampler (one with ``pick_from_pool``, such as ``trees``) scores the unevaluated candidates
itself after BOSHCODE's initial design. A pair that breaks the constraints is told to Optuna
with its objective less ``INFEASIBLE_PENALTY``, as BOSHCODE's targets are, so no sampler is led
towards pairs the user ruled out.

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
"""

from __future__ import annotations

import json
import math
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field, replace
from typing import Any

import numpy as np

from edgetran.errors import EdgeTranError
from edgetran.plugins import SAMPLERS
from edgetran.search.boshcode import Boshcode, nearest_candidate
from edgetran.search.encoding import COMPACT_FEATURES, ArchitectureEncoder, arch_vector
from edgetran.search.evaluators import Accuracy, Evaluation, Evaluator, device_matrix
from edgetran.search.objectives import (
    DIRECTIONS,
    METRIC_KEYS,
    Constraints,
    PaperObjective,
    SearchError,
    pareto_mask,
)
from edgetran.search.settings import OBJECTIVES, BoshcodeSettings
from edgetran.search.table import Pair
from edgetran.space import REFERENCE_SPACE, Architecture
from edgetran.store.database import StoreError, check_database_url, database_error, mask_url

#: Candidates drawn per step for projection and GOBI (all unevaluated pairs of a smaller table).
POOL_SIZE = 1024
#: What a failed evaluation of one candidate raises (out of memory, a NaN loss, an export
#: error, a timeout): it is recorded as failed, with its reason, and the search goes on.
#: A database error is not a candidate's fault and ends the search.
CANDIDATE_FAILURES = (EdgeTranError, MemoryError, RuntimeError, FloatingPointError)
INFEASIBLE_PENALTY = 1.0
#: Training runs (seeds) a near-tied pair's accuracy may rest on.
MAX_ACCURACY_RUNS = 3
#: At most this share of the budget trains near-tied pairs again: a small budget (the demo's
#: four evaluations) is for finding pairs; with six, two re-evaluations left four models.
REEVALUATION_SHARE = 0.2


@dataclass(frozen=True)
class SearchSettings:
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

    def __post_init__(self) -> None:
        SAMPLERS.validate(self.sampler)
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


@dataclass
class Record:
    """One evaluation, in order."""

    pair: Pair
    evaluation: Evaluation
    value: float
    feasible: bool
    how: str


@dataclass
class Failure:
    """One pair whose evaluation failed, and why (one line)."""

    pair: Pair
    reason: str

    def to_dict(self) -> dict[str, Any]:
        return {
            "arch": self.pair.arch.to_model_dict(),
            "device": self.pair.device,
            "reason": self.reason,
        }


@dataclass
class SearchResult:
    records: list[Record]
    objective: str
    seconds_per_proposal: list[float] = field(default_factory=list)
    constraints: Constraints = field(default_factory=Constraints)
    failures: list[Failure] = field(default_factory=list)
    reevaluations: int = 0

    def to_dict(self) -> dict[str, Any]:
        history = [r.value for r in self.records]
        best = self._best()
        out: dict[str, Any] = {
            "best": None if best is None else _describe(best),
            "evaluations": len(self.records),
            "reevaluations": self.reevaluations,
            "evaluations_to_best": None
            if best is None
            else 1 + next(i for i, v in enumerate(history) if v >= best.value),
            "history": history,
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
            feasible = [r for r in self.records if r.feasible]
            mask = pareto_mask([[r.evaluation.metrics[k] for k in METRIC_KEYS] for r in feasible])
            out["pareto_front"] = [
                _describe(r) for r, keep in zip(feasible, mask, strict=True) if keep
            ]
        return out

    def _best(self) -> Record | None:
        feasible = [r for r in self.records if r.feasible]
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
) -> SearchResult:
    """Search until ``settings.budget`` evaluations (failed ones included) exist in the
    study; a candidate whose evaluation fails is recorded as failed and never retried."""
    # Inputs are checked before the study is opened: a refused search leaves no study behind.
    devices = device_matrix(evaluator.devices, settings.device_features)
    _check_start(settings, evaluator)
    coordinates = _coordinates(evaluator, settings)
    study = _open_study(settings, storage, study_name, resume, evaluator.devices)
    records = [_record_from_trial(t) for t in _completed(study)]
    failures = _failures(study)
    reevaluations, settled = _apply_reevaluations(study, records, settings)
    timings: list[float] = []
    proposer = _own_proposer(study, evaluator, settings, devices)
    while len(records) + len(failures) + reevaluations < settings.budget:
        step = len(records) + len(failures) + reevaluations
        may_reevaluate = reevaluations < int(settings.budget * REEVALUATION_SHARE)
        tied = _noisy_tie(records, settings, settled) if may_reevaluate else None
        if tied is not None:
            done_runs = _reevaluate(study, evaluator, tied, settings, coordinates)
            if done_runs is None:  # this evaluator has one accuracy per pair
                settled.add(tied.pair.key)
                continue
            reevaluations += 1
            if done_runs < 0:  # the run failed: no more runs of this pair
                settled.add(tied.pair.key)
            elif on_evaluation is not None:
                on_evaluation(step + 1, replace(tied, how=f"reevaluation (run {done_runs})"))
            continue
        rng = np.random.default_rng([settings.seed, step])
        began = time.perf_counter()
        done = {r.pair.key for r in records} | {f.pair.key for f in failures}
        pair = next((p for p in settings.start if p.key not in done), None)
        how = "start"
        if pair is None:
            pool = evaluator.candidates(POOL_SIZE, rng, done)
            if not pool:
                break
            if proposer is not None:
                index, how = proposer.pick(records, pool, rng, step)
            else:
                index, how = _optuna_pick(study, coordinates, pool, devices), settings.sampler
            timings.append(time.perf_counter() - began)
            pair = pool[index]
        try:
            evaluation = evaluator.evaluate(pair)
        except StoreError:
            raise
        except CANDIDATE_FAILURES as err:
            failure = Failure(pair, _reason(err))
            study.add_trial(_failed_trial(failure, coordinates))
            failures.append(failure)
            if on_failure is not None:
                on_failure(step + 1, failure)
            continue
        value, feasible = score(evaluation, settings)
        record = Record(pair, evaluation, value, feasible, how)
        study.add_trial(_trial(record, coordinates, settings))
        records.append(record)
        if on_evaluation is not None:
            on_evaluation(step + 1, record)
    return SearchResult(
        records, settings.objective, timings, settings.constraints, failures, reevaluations
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
    if settings.objective != "paper" or len(records) < settings.boshcode.n_initial:
        return None
    ranked = sorted((r for r in records if r.feasible), key=lambda r: r.value, reverse=True)
    if len(ranked) < 2:
        return None
    best, second = ranked[:2]
    stds = (best.evaluation.accuracy_std, second.evaluation.accuracy_std)
    if not all(s is not None and math.isfinite(s) for s in stds):
        return None  # a replayed table, a GLUE score, a study from before accuracy_std
    noise = settings.paper.accuracy_weight * float(np.hypot(*stds))
    if best.value - second.value > noise:
        return None
    open_ = [
        r
        for r in (best, second)
        if len(r.evaluation.accuracy_runs) < MAX_ACCURACY_RUNS and r.pair.key not in settled
    ]
    return min(open_, key=lambda r: len(r.evaluation.accuracy_runs)) if open_ else None


def _reevaluate(
    study, evaluator: Evaluator, record: Record, settings, coordinates: _Coordinates
) -> int | None:
    """Train ``record``'s pair again (its next run), store it and fold its accuracy in.
    Returns the runs the accuracy now rests on, −1 when the run failed (stored with its
    reason), ``None`` when the evaluator cannot re-evaluate (nothing stored)."""
    run = len(record.evaluation.accuracy_runs)
    try:
        accuracy = evaluator.reevaluate(record.pair, run)
    except StoreError:
        raise
    except CANDIDATE_FAILURES as err:
        study.add_trial(_reevaluation_trial(record.pair, run, None, _reason(err), coordinates))
        return -1
    if accuracy is None:
        return None
    study.add_trial(_reevaluation_trial(record.pair, run, accuracy, None, coordinates))
    _fold_in(record, accuracy, settings)
    return len(record.evaluation.accuracy_runs)


def _fold_in(record: Record, accuracy: Accuracy, settings: SearchSettings) -> None:
    record.evaluation.add_accuracy_run(accuracy)
    record.value, record.feasible = score(record.evaluation, settings)


def _reevaluation_trial(pair: Pair, run: int, accuracy, reason, coordinates: _Coordinates):
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
            "reason": reason,
        },
    )


def _apply_reevaluations(
    study, records: list[Record], settings: SearchSettings
) -> tuple[int, set[str]]:
    """Fold the stored re-evaluations into ``records`` (in order): their number, and the keys
    of pairs whose re-evaluation failed (settled)."""
    from optuna.trial import TrialState

    by_key = {r.pair.key: r for r in records}
    count, settled = 0, set()
    for t in study.get_trials(deepcopy=False, states=(TrialState.FAIL,)):
        a = t.user_attrs
        if a.get("role") != "reevaluation" or a.get("key") not in by_key:
            continue
        count += 1
        if a["accuracy"] is None:
            settled.add(a["key"])
        else:
            _fold_in(by_key[a["key"]], Accuracy(a["accuracy"], a["accuracy_std"]), settings)
    return count, settled


def _reason(err: BaseException) -> str:
    """One line: the error's type and its first line."""
    text = str(err).strip()
    return f"{type(err).__name__}: {text.splitlines()[0]}" if text else type(err).__name__


def score(evaluation: Evaluation, settings: SearchSettings) -> tuple[float, bool]:
    """The scalar value recorded in ``history`` (the paper objective, for ``pareto`` too, so
    runs compare) and feasibility under the constraints."""
    violated = settings.constraints.violations(
        evaluation.metrics,
        {**evaluation.metrics, **evaluation.upper},
        {**evaluation.metrics, **evaluation.lower},
    )
    return settings.paper.value(evaluation.metrics), not violated


def _open_study(
    settings: SearchSettings,
    storage: str | None,
    name: str,
    resume: bool,
    devices: tuple[str, ...],
):
    import optuna

    url, storage = storage, _storage(storage)
    directions = ["maximize"] if settings.objective == "paper" else list(DIRECTIONS)
    exists = storage is not None and name in optuna.study.get_all_study_names(storage)
    if exists and not resume:
        raise SearchError(
            f"a search named {name!r} exists in {mask_url(url)}; pass --resume or another --study"
        )
    if exists:
        study = optuna.load_study(study_name=name, storage=storage, sampler=_sampler(settings))
        changed = _changed(study.user_attrs.get("settings"), _signature(settings, devices))
        if changed:
            raise SearchError(
                f"search {name!r} was started with other settings ({', '.join(changed)} "
                "differ); cannot resume"
            )
        _close_interrupted(study)
        return study
    study = optuna.create_study(
        study_name=name, storage=storage, directions=directions, sampler=_sampler(settings)
    )
    study.set_user_attr("settings", _signature(settings, devices))
    return study


def _storage(url: str | None):
    """Optuna's storage at ``url`` (``None``: in memory). A malformed URL, a missing driver or
    an unreachable database is a typed error, and no message shows the URL's password."""
    if url is None:
        return None
    import optuna
    from sqlalchemy.exc import SQLAlchemyError

    check_database_url(url)
    try:
        return optuna.storages.RDBStorage(url)
    except SQLAlchemyError as err:
        raise database_error(url, "cannot open the search database", err) from None


def _close_interrupted(study) -> None:
    """Close as FAIL the proposal a killed run left RUNNING, as a finished proposal is closed."""
    from optuna.trial import TrialState

    for trial in study.get_trials(deepcopy=False, states=(TrialState.RUNNING,)):
        study.tell(trial.number, state=TrialState.FAIL)


def _signature(settings: SearchSettings, devices: tuple[str, ...]) -> dict[str, Any]:
    """What a resumed search must share with the stored one, in its JSON form: the sampler
    and also the objective (weights, constraints, devices and their features), since records
    scored under another objective would mislead the sampler."""
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
    if settings.sampler == "boshcode" or _proposes_from_pool(settings.sampler):
        signature["boshcode"] = asdict(settings.boshcode)
    kind = _coordinates_kind(settings.sampler)
    if kind != "embedding":  # trials in other parameters: a study of the embedding's is foreign
        signature["coordinates"] = kind
    return json.loads(json.dumps(signature))


def _changed(stored: Any, signature: dict[str, Any]) -> list[str]:
    """The signature's keys whose stored value differs (all of them for a foreign study)."""
    if not isinstance(stored, dict):
        return sorted(signature)
    return sorted(
        key for key in set(stored) | set(signature) if stored.get(key) != signature.get(key)
    )


def _sampler(settings: SearchSettings):
    """The registered Optuna sampler (BOSHCODE's only stores the trials: BOSHCODE proposes)."""
    return SAMPLERS.create(settings.sampler, seed=settings.seed)


def _completed(study) -> list:
    from optuna.trial import TrialState

    return [t for t in study.get_trials(deepcopy=False) if t.state == TrialState.COMPLETE]


def _trial(record: Record, coordinates: _Coordinates, settings: SearchSettings):
    import optuna

    m = record.evaluation.metrics
    feasible_values = [m["accuracy"], m["latency"], m["energy"], m["peak_power"]]
    return optuna.trial.create_trial(
        params=coordinates.params(record.pair),
        distributions=coordinates.distributions,
        values=[_told_value(record)] if settings.objective == "paper" else feasible_values,
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
        },
        system_attrs={"constraints": [0.0 if record.feasible else 1.0]},
    )


def _told_value(record: Record) -> float:
    return record.value - (0.0 if record.feasible else INFEASIBLE_PENALTY)


def _failed_trial(failure: Failure, coordinates: _Coordinates):
    import optuna
    from optuna.trial import TrialState

    return optuna.trial.create_trial(
        params=coordinates.params(failure.pair),
        distributions=coordinates.distributions,
        state=TrialState.FAIL,
        user_attrs={"role": "failed", **failure.to_dict()},
    )


def _failures(study) -> list[Failure]:
    """The failed evaluations stored in the study (not the closed proposals)."""
    from optuna.trial import TrialState

    return [
        Failure(
            Pair(Architecture.from_dict(t.user_attrs["arch"]), t.user_attrs["device"]),
            t.user_attrs["reason"],
        )
        for t in study.get_trials(deepcopy=False, states=(TrialState.FAIL,))
        if t.user_attrs.get("role") == "failed"
    ]


def _record_from_trial(trial) -> Record:
    a = trial.user_attrs
    evaluation = Evaluation(a["metrics"], a["predicted"], a["lower"], a["upper"])
    for value, std in zip(a.get("accuracy_runs", []), a.get("accuracy_run_stds", []), strict=True):
        evaluation.add_accuracy_run(Accuracy(value, std))
    pair = Pair(Architecture.from_dict(a["model_dict"]), a["device"])
    return Record(pair, evaluation, a["objective"], a["feasible"], a["how"])


# -- proposals ----------------------------------------------------------------------------------
@dataclass
class _Coordinates:
    """How a pair becomes an Optuna trial's parameters, and a proposal a point to project.

    Without ``encoder``: ``e0``…``e36``, the reference embedding's integers. With the
    ``compact`` encoder: ``f0``…``f14`` in [0, 1], the encoder fitted on a sample fixed by the
    seed, so a resumed study gets the same parameters.
    """

    devices: tuple[str, ...]
    encoder: ArchitectureEncoder | None = None

    @property
    def distributions(self) -> dict[str, Any]:
        from optuna.distributions import (
            CategoricalDistribution,
            FloatDistribution,
            IntDistribution,
        )

        if self.encoder is None:
            dists: dict[str, Any] = {
                f"e{i}": IntDistribution(low, max(high, low + 1))
                for i, (low, high) in enumerate(REFERENCE_SPACE.embedding_bounds())
            }
        else:
            dists = {f"f{i}": FloatDistribution(0.0, 1.0) for i in range(len(COMPACT_FEATURES))}
        dists["device"] = CategoricalDistribution(list(self.devices))
        return dists

    def params(self, pair: Pair) -> dict[str, Any]:
        if self.encoder is None:
            params: dict[str, Any] = {
                f"e{i}": int(v) for i, v in enumerate(REFERENCE_SPACE.encode(pair.arch))
            }
        else:
            params = {f"f{i}": float(v) for i, v in enumerate(self.encoder([pair])[0])}
        params["device"] = pair.device
        return params

    def point(self, params: dict[str, Any]) -> np.ndarray:
        """A proposal's architecture coordinates, on the scale of :meth:`vectors`."""
        if self.encoder is None:
            bounds = REFERENCE_SPACE.embedding_bounds()
            return np.array([params[f"e{i}"] / max(high, 1) for i, (_, high) in enumerate(bounds)])
        return np.array([params[f"f{i}"] for i in range(len(COMPACT_FEATURES))])

    def vectors(self, pairs: list[Pair]) -> np.ndarray:
        if self.encoder is None:
            return np.stack([arch_vector(p) for p in pairs])
        return self.encoder(pairs)


def _coordinates_kind(sampler: str) -> str:
    """The trial parameters an Optuna sampler asks in: its class's ``coordinates``
    (``embedding`` unless it says ``compact``)."""
    kind = getattr(SAMPLERS.get(sampler), "coordinates", "embedding")
    if kind not in ("embedding", "compact"):
        raise SearchError(
            f"sampler {sampler!r} asks for coordinates {kind!r}; allowed: embedding, compact"
        )
    return kind


def _coordinates(evaluator: Evaluator, settings: SearchSettings) -> _Coordinates:
    kind = _coordinates_kind(settings.sampler)
    if kind == "embedding":
        return _Coordinates(evaluator.devices)
    return _Coordinates(evaluator.devices, _fitted_encoder(kind, evaluator, settings.seed))


def _optuna_pick(study, coordinates: _Coordinates, pool: list[Pair], devices) -> int:
    """Ask the sampler, close the proposal as FAIL, return the nearest pool candidate."""
    from optuna.trial import TrialState

    trial = study.ask(coordinates.distributions)
    target = coordinates.point(trial.params)
    device = devices[trial.params["device"]]
    trial.set_user_attr("role", "proposal")
    study.tell(trial, state=TrialState.FAIL)
    pool_d = np.stack([devices[p.device] for p in pool])
    return nearest_candidate(coordinates.vectors(pool), pool_d, target, device)


def _encoder(evaluator: Evaluator, settings: SearchSettings) -> ArchitectureEncoder:
    """BOSHCODE's architecture encoding, scaled on a sample of candidates fixed by the seed
    (so a resumed search encodes as before)."""
    if settings.boshcode.encoding == "embedding":
        return ArchitectureEncoder("embedding")
    return _fitted_encoder(settings.boshcode.encoding, evaluator, settings.seed)


def _fitted_encoder(kind: str, evaluator: Evaluator, seed: int) -> ArchitectureEncoder:
    """An encoder scaled on a sample of candidates fixed by ``seed`` (a resumed search encodes
    as before)."""
    sample = evaluator.candidates(POOL_SIZE, np.random.default_rng(seed), set())
    return ArchitectureEncoder(kind).fit(sample)


def _own_proposer(study, evaluator: Evaluator, settings: SearchSettings, devices):
    """BOSHCODE's proposer, a pool sampler's (one with ``pick_from_pool``, e.g. ``trees``), or
    None for the Optuna samplers, which propose through ``ask``."""
    if settings.sampler == "boshcode":
        return _BoshcodeProposer(settings, devices, _encoder(evaluator, settings))
    if _proposes_from_pool(settings.sampler):
        return _PoolProposer(settings, devices, _encoder(evaluator, settings), study.sampler)
    return None


def _proposes_from_pool(sampler: str) -> bool:
    return hasattr(SAMPLERS.get(sampler), "pick_from_pool")


@dataclass
class _PoolProposer:
    """A pool sampler after BOSHCODE's initial design, on BOSHCODE's inputs and targets: the
    architecture encoding next to the device vector."""

    settings: SearchSettings
    devices: dict[str, np.ndarray]
    encoder: ArchitectureEncoder
    sampler: Any

    def pick(self, records: list[Record], pool: list[Pair], rng, step: int) -> tuple[int, str]:
        settings = self.settings
        if len(records) < settings.boshcode.n_initial:
            index = _initial_pick(pool, sorted(self.devices), settings.seed, step, rng, records)
            return index, "initial"
        y = _targets(records, settings, rng)
        index = self.sampler.pick_from_pool(
            self._inputs([r.pair for r in records]), y, self._inputs(pool), step
        )
        return index, settings.sampler

    def _inputs(self, pairs: list[Pair]) -> np.ndarray:
        return np.hstack([self.encoder(pairs), np.stack([self.devices[p.device] for p in pairs])])


@dataclass
class _BoshcodeProposer:
    settings: SearchSettings
    devices: dict[str, np.ndarray]
    encoder: ArchitectureEncoder

    def __post_init__(self) -> None:
        self.model = Boshcode(self.settings.boshcode, self.settings.seed)

    def pick(self, records: list[Record], pool: list[Pair], rng, step: int) -> tuple[int, str]:
        settings = self.settings
        if len(records) < settings.boshcode.n_initial:
            index = _initial_pick(pool, sorted(self.devices), settings.seed, step, rng, records)
            return index, "initial"
        xd = np.stack([self.devices[r.pair.device] for r in records])
        y = _targets(records, settings, rng)
        self.model.fit(self.encoder([r.pair for r in records]), xd, y, step)
        pool_d = np.stack([self.devices[p.device] for p in pool])
        stalled = _stalled(records, settings)
        return self.model.propose(self.encoder(pool), pool_d, rng, aleatoric=stalled)


def _initial_pick(
    pool: list[Pair], devices: list[str], seed: int, step: int, rng, records: list[Record]
) -> int:
    """A random candidate on the device with the fewest records, the devices taken in turn (in
    a seeded order) among equals, so the initial design sees every device, start pairs
    included: a one-hot device the surrogate has never seen would otherwise keep an arbitrary,
    confidently wrong prediction."""
    order = np.roll(np.random.default_rng(seed).permutation(devices), -step)
    seen = {device: 0 for device in devices}
    for record in records:
        seen[record.pair.device] = seen.get(record.pair.device, 0) + 1
    for device in sorted(order, key=lambda d: seen[d]):  # stable: the turn breaks ties
        on_device = [i for i, p in enumerate(pool) if p.device == device]
        if on_device:
            return int(rng.choice(on_device))
    return int(rng.integers(len(pool)))


def _targets(records: list[Record], settings: SearchSettings, rng) -> np.ndarray:
    """Values to maximise: the paper objective, or (pareto) a random augmented-Chebyshev
    scalarisation of the normalised metrics (ParEGO), redrawn at every step."""
    penalty = np.array([0.0 if r.feasible else INFEASIBLE_PENALTY for r in records])
    if settings.objective == "paper":
        return np.array([r.value for r in records]) - penalty
    M = np.array([[r.evaluation.metrics[k] for k in METRIC_KEYS] for r in records], dtype=float)
    M[:, 1:] = np.log(np.maximum(M[:, 1:], 1e-12))
    M[:, 0] = -M[:, 0]  # minimise everything
    span = np.where(np.ptp(M, axis=0) > 0, np.ptp(M, axis=0), 1.0)
    U = (M - M.min(axis=0)) / span
    weights = rng.dirichlet(np.ones(len(METRIC_KEYS)))
    chebyshev = (U * weights).max(axis=1) + 0.05 * (U * weights).sum(axis=1)
    return -chebyshev - penalty


def _stalled(records: list[Record], settings: SearchSettings) -> bool:
    """Best value unchanged for ``patience`` evaluations: switch the aleatoric term in."""
    values = np.maximum.accumulate([r.value for r in records])
    patience = settings.boshcode.patience
    return len(values) > patience and values[-1] <= values[-1 - patience]
