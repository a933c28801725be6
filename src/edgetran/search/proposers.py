"""Search strategies: the :class:`Proposer` contract and the built-in proposers.

A search (:func:`edgetran.search.study.run_search`) owns the study, the claims, the budget
and every evaluation; a proposer only chooses the next pair. The registry
:data:`edgetran.plugins.SAMPLERS` holds proposer factories, ``factory(setup) -> Proposer``
(a :class:`Proposer` subclass is one), so an entry point in the group ``edgetran.samplers``
adds a strategy, and ``edgetran.testing.check_proposer`` checks it.

Built in:

- ``boshcode`` (:func:`boshcode`): BOSHCODE's initial design, then
  :class:`ForestsProposer` (a forest per metric, the default) or :class:`NetworksProposer`
  (the reference's networks and GOBI), as ``BoshcodeSettings.surrogate`` says, with a
  ``BoshcodeSettings.portfolio`` share of the proposals Optuna's TPE's (off by default);
- ``trees`` (:class:`edgetran.search.trees.TreesProposer`): extra-trees UCB over the pool;
- ``random``, ``tpe``, ``nsga2``, ``gp``: Optuna's samplers through one adapter,
  :class:`OptunaProposer`, which asks the study and projects the answer to the pool.
"""

from __future__ import annotations

import abc
import inspect
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import numpy as np

from edgetran.search.encoding import (
    COMPACT_FEATURES,
    ArchitectureEncoder,
    arch_vector,
    size_columns,
)
from edgetran.search.forests import SMALLEST_COST, MetricForests, feasible_ucb
from edgetran.search.objectives import METRIC_KEYS, SearchError
from edgetran.search.settings import BoshcodeSettings
from edgetran.search.table import Pair
from edgetran.space import REFERENCE_SPACE

if TYPE_CHECKING:
    from edgetran.search.evaluators import Evaluator
    from edgetran.search.study import Record, SearchSettings

#: Candidates drawn per step (all unevaluated pairs of a smaller table), and the size of the
#: seeded sample an encoder is scaled on.
POOL_SIZE = 1024
#: Subtracted from the target of a pair that broke the constraints, so that no proposer is
#: led towards pairs the user ruled out.
INFEASIBLE_PENALTY = 1.0
#: The trial parameters a proposer may ask Optuna in (:class:`Coordinates`).
COORDINATES = ("embedding", "compact")


@dataclass(frozen=True)
class Proposal:
    """The pair to evaluate next (one of the pool's) and how it was chosen, in a word that
    the record keeps (``initial``, ``ucb``, ``tpe`` …)."""

    pair: Pair
    how: str


@dataclass(frozen=True)
class Setup:
    """What a proposer is built from: the search's settings, its devices as vectors
    (``device → array`` in [0, 1]) and its evaluator, which a proposer may only ask for
    seeded samples of candidates (:meth:`encoder`), never for an evaluation."""

    settings: SearchSettings
    devices: Mapping[str, np.ndarray]
    evaluator: Evaluator
    _encoders: dict[str, ArchitectureEncoder] = field(
        default_factory=dict, init=False, repr=False, compare=False
    )

    @property
    def seed(self) -> int:
        """The search's seed: a proposer's randomness derives from it (or from ``rng``)."""
        return self.settings.seed

    def encoder(self, kind: str) -> ArchitectureEncoder:
        """The architecture encoding ``kind``; one other than ``embedding`` is scaled on a
        sample of candidates fixed by the seed, so a resumed search encodes as before."""
        if kind == "embedding":
            return ArchitectureEncoder("embedding")
        if kind not in self._encoders:
            sample = self.evaluator.candidates(POOL_SIZE, np.random.default_rng(self.seed), set())
            self._encoders[kind] = ArchitectureEncoder(kind).fit(sample)
        return self._encoders[kind]

    def coordinates(self, kind: str) -> Coordinates:
        """The trial parameters of ``kind`` (one of :data:`COORDINATES`)."""
        if kind not in COORDINATES:
            raise SearchError(
                f"sampler {self.settings.sampler!r} asks for coordinates {kind!r}; "
                f"allowed: {', '.join(COORDINATES)}"
            )
        if kind == "embedding":
            return Coordinates(self.evaluator.devices)
        return Coordinates(self.evaluator.devices, self.encoder(kind))

    def device_inputs(self, pairs: Sequence[Pair]) -> np.ndarray:
        """``(n, d)``: each pair's device vector."""
        return np.stack([self.devices[p.device] for p in pairs])


class Proposer(abc.ABC):
    """A search strategy: given what has been evaluated, the next pair to evaluate.

    The search builds one proposer per process (``factory(setup)``), before the study is
    opened, and then asks for proposals (:meth:`propose_batch`, whose default calls
    :meth:`propose` once per proposal), in its own thread, until the budget is spent. With
    evaluations in flight (``parallel > 1``, or other processes on a shared study) it asks
    again while earlier proposals are still ``pending``.

    What a proposer may assume:

    - ``records`` are the stored evaluations, oldest first (a resumed search's included),
      each with its pair, metrics, scalar ``value``, ``feasible`` flag and ``fidelity``: 1.0
      for a complete training; below 1 for a pair the pruner stopped (``record.pruned``),
      whose metrics and value are its last rung's, an accuracy below where its training
      would have ended. BOSHCODE and ``trees`` learn from such a record as it is, a
      penalised low-fidelity observation (measured better than ignoring them on the suite's
      ``sparse-devices`` with curves, issue 42); a proposer may drop them; none of them is
      ever in the pool again;
    - ``pending`` are the pairs in flight (here or in other processes): they will become
      records, and none of them is in the pool;
    - ``pool`` is a non-empty list of distinct candidate pairs, none evaluated, in flight or
      claimed; in a replay search, every remaining pair while at most :data:`POOL_SIZE`;
    - ``step`` counts the evaluations claimed before this one (0 for the first);
    - ``rng`` is seeded by the search's seed and ``step`` (already used to draw the pool):
      a proposer that draws from it proposes the same pair again when a killed search is
      resumed at that step;
    - :attr:`setup` holds the settings, the seed and the device vectors.

    What it must do: return a :class:`Proposal` of one of ``pool``'s pairs, the same one
    for the same setup and arguments (a search is reproducible for its seed).

    What it must not do: change ``records`` (or their evaluations), ``pending`` or ``pool``;
    evaluate a pair or call the evaluator (the search does, and counts the budget); open,
    read or write the study, its storage or the claims (an Optuna sampler's ``ask`` comes
    through :meth:`attach`); draw from global random state (``random``, ``np.random.*``,
    torch's default generator left changed).

    Batches: the search asks for all its free slots at once through :meth:`propose_batch`
    (``parallel - in flight`` of them; one with ``parallel=1``), and claims and submits each
    proposal as it takes it, before it takes the next. The default calls :meth:`propose` once
    per slot, lazily, each earlier proposal of the batch added to ``pending`` (and, for an
    Optuna sampler, already a RUNNING trial), so a proposer needs nothing more; one whose
    proposal costs a fit (BOSHCODE's) overrides it to choose the batch from one fit. A batch
    holds at most ``q`` distinct pairs of ``pool``, none ``pending``; with ``q=1`` its one
    proposal is :meth:`propose`'s (the sequential search is unchanged).

    Optional hooks, for a proposer that asks an Optuna sampler (:class:`OptunaProposer`):
    :attr:`coordinates`, :meth:`optuna_sampler`, :meth:`attach`; :meth:`propose_batch`; and
    :meth:`signature` for settings a resumed search must share.
    """

    #: The trial parameters the study stores pairs in (one of :data:`COORDINATES`).
    coordinates: str = "embedding"

    def __init__(self, setup: Setup) -> None:
        self.setup = setup

    @abc.abstractmethod
    def propose(
        self,
        records: Sequence[Record],
        pending: Sequence[Pair],
        pool: Sequence[Pair],
        step: int,
        rng: np.random.Generator,
    ) -> Proposal:
        """The next pair to evaluate, one of ``pool``'s, and how it was chosen."""

    def propose_batch(
        self,
        records: Sequence[Record],
        pending: Sequence[Pair],
        pool: Sequence[Pair],
        step: int,
        rng: np.random.Generator,
        q: int,
    ) -> Iterable[Proposal]:
        """Up to ``q`` distinct pairs of ``pool`` to evaluate at once, in the order to take
        them (same arguments as :meth:`propose`, ``step`` the first one's). The default: one
        :meth:`propose` per pair taken, lazily, each with the earlier ones ``pending``, out of
        the pool and counted in ``step``."""
        return _in_turn(self.propose, records, pending, pool, step, rng, q)

    def optuna_sampler(self) -> Any:
        """The Optuna sampler the study is created with; the default only stores trials
        (a proposer that asks Optuna nothing needs no other)."""
        import optuna

        return optuna.samplers.RandomSampler()

    def attach(self, ask: Callable[[], dict[str, Any]]) -> None:  # noqa: B027 (an optional hook)
        """Receive the search's ``ask()``: a proposal trial asked of the study's sampler in
        :attr:`coordinates`, closed at once (FAIL, so no sampler learns from it); its
        parameters. Called once, before the first proposal; the default ignores it."""

    def signature(self) -> dict[str, Any]:
        """Settings a resumed search must share with the stored one, beyond the sampler's
        name, seed and objective (JSON values)."""
        return {}


# -- BOSHCODE's initial design, then a surrogate ------------------------------------------------
#: BoshcodeSettings fields added after studies were stored: a resume signature names one only
#: where it differs from its default, so a study stored before one was added resumes, under
#: that default.
ADDED_SETTINGS = ("portfolio", "stalled_ucb_k", "stalled_every")


class SurrogateProposer(Proposer):
    """BOSHCODE's initial design (devices in turn, ``n_initial`` pairs; pairs in flight
    count), then the subclass's :meth:`choose`, on the architecture encoding of
    ``BoshcodeSettings.encoding`` next to the device vector."""

    def __init__(self, setup: Setup) -> None:
        super().__init__(setup)
        self.encoder = setup.encoder(setup.settings.boshcode.encoding)
        self.portfolio = setup.settings.boshcode.portfolio
        self.tpe = tpe(setup) if self.portfolio else None

    def optuna_sampler(self) -> Any:
        """The portfolio's TPE where it has a share of the proposals; else a sampler that only
        stores trials."""
        return super().optuna_sampler() if self.tpe is None else self.tpe.optuna_sampler()

    def attach(self, ask: Callable[[], dict[str, Any]]) -> None:
        """Hand the search's ``ask`` to the portfolio's TPE."""
        if self.tpe is not None:
            self.tpe.attach(ask)

    def propose(self, records, pending, pool, step, rng) -> Proposal:
        """The initial design's pick while it lasts, then TPE's on the portfolio's turns
        (:func:`portfolio_turn`), else :meth:`choose`'s."""
        settings = self.setup.settings
        if _initial(records, pending, settings):
            seen = [r.pair for r in records] + list(pending)
            index = _initial_pick(pool, sorted(self.setup.devices), settings.seed, step, rng, seen)
            return Proposal(pool[index], "initial")
        if portfolio_turn(self.portfolio, step):
            return self._from_tpe(pool)
        return self.choose(records, pending, pool, step, rng)

    def _from_tpe(self, pool: Sequence[Pair]) -> Proposal:
        """The portfolio's TPE proposal (asked of the study), projected to the pool."""
        pair = self.tpe.propose((), (), pool, 0, None).pair  # TPE reads the study, not these
        return Proposal(pair, "tpe")

    def propose_batch(self, records, pending, pool, step, rng, q) -> list[Proposal]:
        """The initial design's picks while it lasts (each earlier one pending), then
        :meth:`choose_batch`'s from one fit for the rest of the ``q``, TPE's on the
        portfolio's turns among them."""
        settings = self.setup.settings
        proposals: list[Proposal] = []
        pending, pool = list(pending), list(pool)
        while len(proposals) < q and pool and _initial(records, pending, settings):
            proposal = self.propose(records, tuple(pending), pool, step + len(proposals), rng)
            proposals.append(proposal)
            pending.append(proposal.pair)
            pool = _without(pool, proposal.pair)
        if len(proposals) < q and pool:
            at = step + len(proposals)
            turns = [portfolio_turn(self.portfolio, s) for s in range(at, step + q)]
            wanted = min(turns.count(False), len(pool))
            chosen = (
                self.choose_batch(records, tuple(pending), pool, at, rng, wanted) if wanted else []
            )
            proposals += self._with_tpe_turns(turns, list(chosen), pool)
        return proposals

    def _with_tpe_turns(
        self, turns: list[bool], chosen: list[Proposal], pool: Sequence[Pair]
    ) -> list[Proposal]:
        """The surrogate's ``chosen`` in step order, with TPE's proposal on each of the
        portfolio's ``turns`` (a pair neither of them took yet)."""
        taken = {p.pair.key for p in chosen}
        batch = []
        for turn in turns:
            left = [p for p in pool if p.key not in taken] if turn else []
            if left:
                batch.append(self._from_tpe(left))
                taken.add(batch[-1].pair.key)
            elif not turn and chosen:
                batch.append(chosen.pop(0))
        return batch

    def choose_batch(self, records, pending, pool, step, rng, q) -> list[Proposal]:
        """Up to ``q`` distinct proposals after the initial design; the default: one
        :meth:`choose` each, the earlier ones pending (a fit each)."""
        return list(_in_turn(self.choose, records, pending, pool, step, rng, q))

    @abc.abstractmethod
    def choose(
        self,
        records: Sequence[Record],
        pending: Sequence[Pair],
        pool: Sequence[Pair],
        step: int,
        rng: np.random.Generator,
    ) -> Proposal:
        """The proposal after the initial design (same arguments as :meth:`propose`)."""

    def signature(self) -> dict[str, Any]:
        """BOSHCODE's settings (encoding, initial design, surrogate); those added after
        studies were stored (:data:`ADDED_SETTINGS`) only where they differ from their
        default, so such a study resumes."""
        from dataclasses import asdict

        settings, defaults = asdict(self.setup.settings.boshcode), asdict(BoshcodeSettings())
        for name in ADDED_SETTINGS:
            if settings[name] == defaults[name]:
                del settings[name]
        return {"boshcode": settings}

    def inputs(self, pairs: Sequence[Pair]) -> np.ndarray:
        """``(n, d)``: the architecture encoding next to the device vector."""
        return np.hstack([self.encoder(list(pairs)), self.setup.device_inputs(pairs)])


class ForestsProposer(SurrogateProposer):
    """BOSHCODE with :class:`~edgetran.search.forests.MetricForests`: a forest per metric,
    the objective and the constraints evaluated on each tree's draw, the pool scored whole."""

    def __init__(self, setup: Setup) -> None:
        super().__init__(setup)
        boshcode = setup.settings.boshcode
        self.gp_encoder = setup.encoder("compact") if boshcode.accuracy_gp else None
        self.size_encoder = setup.encoder("features")
        self.model = MetricForests(boshcode.trees, setup.seed, cost_trend=boshcode.cost_trend)

    def choose(self, records, pending, pool, step, rng) -> Proposal:
        """UCB over the draws (or one draw: Thompson) of the feasible objective."""
        return self.choose_batch(records, pending, pool, step, rng, 1)[0]

    def choose_batch(self, records, pending, pool, step, rng, q) -> list[Proposal]:
        """One fit, then ``q`` distinct pool pairs in turn: each the best by UCB once the
        draws are conditioned on the earlier ones at their means (:func:`_believed`), or, with
        Thompson sampling, the best of a fresh draw."""
        settings, devices = self.setup.settings, self.setup.device_inputs
        objective = _objective_function(records, settings, rng)
        pairs, metrics = _metric_fantasies(records, pending)
        self.model.fit(self.encoder(pairs), devices(pairs), metrics, step,
                       self._gp_inputs(pairs), self._size_inputs(pairs))  # fmt: skip
        draws = self.model.draws(
            self.encoder(pool), devices(pool), self._gp_inputs(pool), self._size_inputs(pool)
        )
        values, feasible = objective(draws), settings.constraints.within(draws)
        ucb_ks = self.ucb_ks(records, step, q)
        thompson = settings.boshcode.acquisition == "thompson"
        chosen: list[int] = []
        for slot in range(min(q, len(pool))):
            if thompson:
                t = int(rng.integers(len(values)))
                scores = feasible_ucb(values[t : t + 1], feasible[t : t + 1], 0.0)
            else:
                scores = feasible_ucb(values, feasible, ucb_ks[slot])
            scores[chosen] = -np.inf
            chosen.append(int(np.argmax(scores)))
            if not thompson and len(chosen) < q:
                values = _believed(values, chosen[-1])
        how = "thompson" if thompson else "ucb"
        return [Proposal(pool[i], how) for i in chosen]

    def ucb_ks(self, records: Sequence[Record], step: int, q: int = 1) -> list[float]:
        """The UCB's ``k`` for the ``q`` proposals from ``step`` on: ``stalled_ucb_k`` (where
        set) on every ``stalled_every``-th step while the search has stalled, else ``ucb_k``.
        Exploring on alternate steps only keeps the exploitation between them that problems
        with a learnable optimum need (issue 43)."""
        boshcode = self.setup.settings.boshcode
        if boshcode.stalled_ucb_k is None or not _stalled(records, self.setup.settings):
            return [boshcode.ucb_k] * q
        return [
            boshcode.stalled_ucb_k if s % boshcode.stalled_every == 0 else boshcode.ucb_k
            for s in range(step, step + q)
        ]

    def _gp_inputs(self, pairs: Sequence[Pair]) -> np.ndarray | None:
        return None if self.gp_encoder is None else self.gp_encoder(list(pairs))

    def _size_inputs(self, pairs: Sequence[Pair]) -> np.ndarray:
        """``(n, 3)``: log FLOPs, parameters and bytes in [0, 1], for the cost trend."""
        return size_columns(self.size_encoder(list(pairs)))


class NetworksProposer(SurrogateProposer):
    """BOSHCODE with the reference's networks and GOBI (:class:`~edgetran.search.boshcode.
    Boshcode`), warm-started from one fit to the next."""

    def __init__(self, setup: Setup) -> None:
        from edgetran.search.boshcode import Boshcode

        super().__init__(setup)
        self.model = Boshcode(setup.settings.boshcode, setup.seed)

    def choose(self, records, pending, pool, step, rng) -> Proposal:
        """GOBI on the networks' UCB (aleatoric spread in once the search stalls)."""
        settings, devices = self.setup.settings, self.setup.device_inputs
        pairs, y = _with_fantasies(records, pending, settings, rng)
        self.model.fit(self.encoder(pairs), devices(pairs), y, step)
        stalled = _stalled(records, settings)
        index, how = self.model.propose(self.encoder(pool), devices(pool), rng, aleatoric=stalled)
        return Proposal(pool[index], how)


def boshcode(setup: Setup) -> SurrogateProposer:
    """BOSHCODE on the surrogate ``BoshcodeSettings.surrogate`` names: the forests or the
    networks (the ``boshcode`` factory of :data:`~edgetran.plugins.SAMPLERS`)."""
    if setup.settings.boshcode.surrogate == "networks":
        return NetworksProposer(setup)
    return ForestsProposer(setup)


# -- Optuna's samplers ----------------------------------------------------------------------------
class OptunaProposer(Proposer):
    """An Optuna sampler as a proposer: the search creates its study with the sampler, each
    proposal asks it (a trial closed as FAIL at once) and takes the nearest pool candidate in
    the sampler's coordinates (``sampler.coordinates`` if the class names them, else the
    embedding). Pairs in flight are RUNNING trials of the study: TPE is made with
    ``constant_liar`` where its class takes it, so it keeps away from them.

    Args:
        setup: the search's setup.
        sampler: an Optuna sampler class or factory, called as ``sampler(seed=SEED)``.
    """

    def __init__(self, setup: Setup, sampler: Callable[..., Any]) -> None:
        super().__init__(setup)
        self.sampler = sampler
        self.coordinates = getattr(sampler, "coordinates", "embedding")
        self.space = setup.coordinates(self.coordinates)
        self._ask: Callable[[], dict[str, Any]] | None = None

    def optuna_sampler(self) -> Any:
        """The sampler for the search's seed, with ``constant_liar=True`` where it takes it
        (TPE: Optuna 5's default, not Optuna 4's); with nothing in flight it samples as
        without."""
        try:
            liar = "constant_liar" in inspect.signature(self.sampler).parameters
        except (TypeError, ValueError):  # no signature to read
            liar = False
        options = {"constant_liar": True} if liar else {}
        return self.sampler(seed=self.setup.seed, **options)

    def attach(self, ask: Callable[[], dict[str, Any]]) -> None:
        """Keep the search's ``ask``: every proposal goes through it."""
        self._ask = ask

    def propose(self, records, pending, pool, step, rng) -> Proposal:
        """The pool candidate nearest to the sampler's answer (the pool holds no pair in
        flight; the sampler sees those as RUNNING trials)."""
        from edgetran.search.boshcode import nearest_candidate

        if self._ask is None:
            raise SearchError(f"sampler {self.setup.settings.sampler!r}: proposed before attach")
        params = self._ask()
        target = self.space.point(params)
        device = self.setup.devices[params["device"]]
        pool_d = self.setup.device_inputs(pool)
        index = nearest_candidate(self.space.vectors(list(pool)), pool_d, target, device)
        return Proposal(pool[index], self.setup.settings.sampler)

    def signature(self) -> dict[str, Any]:
        """The coordinates, where not the embedding's (a study of the embedding's trials is
        foreign to a sampler that asks in others)."""
        return {} if self.coordinates == "embedding" else {"coordinates": self.coordinates}


def random(setup: Setup) -> OptunaProposer:
    """Optuna's random sampling."""
    import optuna

    return OptunaProposer(setup, optuna.samplers.RandomSampler)


def tpe(setup: Setup) -> OptunaProposer:
    """Optuna's tree-structured Parzen estimator."""
    import optuna

    return OptunaProposer(setup, optuna.samplers.TPESampler)


def nsga2(setup: Setup) -> OptunaProposer:
    """Optuna's NSGA-II."""
    import optuna

    return OptunaProposer(setup, optuna.samplers.NSGAIISampler)


def gp(setup: Setup) -> OptunaProposer:
    """Optuna's Gaussian process on the 15 ``compact`` features (:mod:`edgetran.search.gp`)."""
    from edgetran.search.gp import FeatureGPSampler

    return OptunaProposer(setup, FeatureGPSampler)


def portfolio_turn(share: float, step: int) -> bool:
    """Whether ``step`` is one of a ``share`` of steps, evenly interleaved (0.25: steps
    3, 7, 11 …): where ⌊(step + 1)·share⌋ moves on."""
    return share > 0 and int((step + 1) * share + 1e-9) > int(step * share + 1e-9)


# -- how pairs become Optuna parameters ---------------------------------------------------------
@dataclass
class Coordinates:
    """How a pair becomes an Optuna trial's parameters, and a proposal a point to project.

    Without ``encoder``: ``e0``…``e36``, the reference embedding's integers. With the
    ``compact`` encoder: ``f0``…``f14`` in [0, 1], the encoder fitted on a sample fixed by the
    seed, so a resumed study gets the same parameters.
    """

    devices: tuple[str, ...]
    encoder: ArchitectureEncoder | None = None

    @property
    def distributions(self) -> dict[str, Any]:
        """Optuna's distribution of each parameter."""
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
        """The pair as trial parameters."""
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
        """``(n, d)``: the pairs' architecture coordinates."""
        if self.encoder is None:
            return np.stack([arch_vector(p) for p in pairs])
        return self.encoder(pairs)


# -- batches ------------------------------------------------------------------------------------
def _in_turn(
    propose: Callable[..., Proposal],
    records: Sequence[Record],
    pending: Sequence[Pair],
    pool: Sequence[Pair],
    step: int,
    rng: np.random.Generator,
    q: int,
) -> Iterator[Proposal]:
    """Up to ``q`` proposals of ``propose``, made as they are taken, each with the earlier
    ones pending, out of the pool and counted in the step."""
    pending, pool = list(pending), list(pool)
    for i in range(q):
        if not pool:
            return
        proposal = propose(tuple(records), tuple(pending), pool, step + i, rng)
        yield proposal
        pending.append(proposal.pair)
        pool = _without(pool, proposal.pair)


def _without(pool: Sequence[Pair], pair: Pair) -> list[Pair]:
    return [p for p in pool if p.key != pair.key]


def _believed(values: np.ndarray, j: int) -> np.ndarray:
    """Draws ``(T, m)`` of the objective conditioned on candidate ``j`` being observed at
    its mean (a kriging believer on the ensemble, without a refit): each candidate's draws
    lose what their covariance across the draws with ``j``'s explains, so ``j`` and the
    candidates that move with it (the same architecture on another device, its neighbours in
    the trees' leaves) lose their spread, and the means stay."""
    centred = values - values.mean(axis=0)
    spread = centred[:, j]
    variance = float(spread @ spread)
    if variance <= 0.0:
        return values
    return values - np.outer(spread, centred.T @ spread / variance)


# -- targets and fantasies ------------------------------------------------------------------------
def _metric_fantasies(
    records: Sequence[Record], pending: Sequence[Pair]
) -> tuple[list[Pair], np.ndarray]:
    """The pairs and ``(n, 4)`` metrics the forests learn from: the records', and each pair in
    flight with the worst of each metric observed (a pessimistic constant liar, as
    :func:`_with_fantasies` for one target)."""
    M = np.array([[r.evaluation.metrics[k] for k in METRIC_KEYS] for r in records], dtype=float)
    pairs = [r.pair for r in records]
    if not pending:
        return pairs, M
    worst = np.concatenate([M[:, :1].min(axis=0), M[:, 1:].max(axis=0)])
    return pairs + list(pending), np.vstack([M, np.tile(worst, (len(pending), 1))])


def _initial(records: Sequence[Record], pending: Sequence[Pair], settings: SearchSettings) -> bool:
    """Whether a proposal is still one of the initial design's ``n_initial`` (pairs in
    flight count: they will be records)."""
    return not records or len(records) + len(pending) < settings.boshcode.n_initial


def _with_fantasies(
    records: Sequence[Record], pending: Sequence[Pair], settings: SearchSettings, rng
) -> tuple[list[Pair], np.ndarray]:
    """The pairs and targets a surrogate is fitted on: the records', and each pair in flight
    with a pessimistic constant lie, the worst target observed (as Optuna's TPE treats its
    RUNNING trials), so that a batch spreads out instead of proposing one region Q times."""
    y = _targets(records, settings, rng)
    pairs = [r.pair for r in records]
    if not pending:
        return pairs, y
    return pairs + list(pending), np.concatenate([y, np.full(len(pending), y.min())])


def _initial_pick(
    pool: Sequence[Pair], devices: list[str], seed: int, step: int, rng, seen: list[Pair]
) -> int:
    """A random candidate on the device with the fewest pairs ``seen`` (evaluated or in
    flight), the devices taken in turn (in a seeded order) among equals, so the initial
    design sees every device, start pairs included: a one-hot device the surrogate has never
    seen would otherwise keep an arbitrary, confidently wrong prediction."""
    order = np.roll(np.random.default_rng(seed).permutation(devices), -step)
    counts = {device: 0 for device in devices}
    for pair in seen:
        counts[pair.device] = counts.get(pair.device, 0) + 1
    for device in sorted(order, key=lambda d: counts[d]):  # stable: the turn breaks ties
        on_device = [i for i, p in enumerate(pool) if p.device == device]
        if on_device:
            return int(rng.choice(on_device))
    return int(rng.integers(len(pool)))


def _targets(records: Sequence[Record], settings: SearchSettings, rng) -> np.ndarray:
    """Values to maximise: the scalar objective, or (pareto) a random augmented-Chebyshev
    scalarisation of the normalised metrics (ParEGO), redrawn at every step; less
    ``INFEASIBLE_PENALTY`` where a record broke the constraints."""
    penalty = np.array([0.0 if r.feasible else INFEASIBLE_PENALTY for r in records])
    if settings.scalar:
        return np.array([r.value for r in records]) - penalty
    metrics = {k: np.array([r.evaluation.metrics[k] for r in records]) for k in METRIC_KEYS}
    return _objective_function(records, settings, rng)(metrics) - penalty


def _objective_function(records: Sequence[Record], settings: SearchSettings, rng):
    """``metric → array`` to the values to maximise (any one shape): the scalar objective, or
    (pareto) ParEGO's scalarisation with weights drawn from ``rng`` and each metric
    normalised over the ``records`` (log costs, min–max)."""
    if settings.scalar:
        return settings.value
    M = np.array([[r.evaluation.metrics[k] for k in METRIC_KEYS] for r in records], dtype=float)
    M = _minimised(M.T)
    low = M.min(axis=1)
    span = np.where(np.ptp(M, axis=1) > 0, np.ptp(M, axis=1), 1.0)
    weights = rng.dirichlet(np.ones(len(METRIC_KEYS)))

    def chebyshev(metrics: dict[str, np.ndarray]) -> np.ndarray:
        values = _minimised(np.stack([np.asarray(metrics[k], dtype=float) for k in METRIC_KEYS]))
        U = (values - low.reshape((-1,) + (1,) * (values.ndim - 1))) / span.reshape(
            (-1,) + (1,) * (values.ndim - 1)
        )
        weighted = U * weights.reshape((-1,) + (1,) * (values.ndim - 1))
        return -(weighted.max(axis=0) + 0.05 * weighted.sum(axis=0))

    return chebyshev


def _minimised(M: np.ndarray) -> np.ndarray:
    """Metrics along axis 0 (METRIC_KEYS order), each to minimise: −accuracy, log costs."""
    return np.concatenate([-M[:1], np.log(np.maximum(M[1:], SMALLEST_COST))])


def _stalled(records: Sequence[Record], settings: SearchSettings) -> bool:
    """Best value unchanged for ``patience`` complete evaluations (pruned ones do not count):
    the networks switch the aleatoric term in, the forests ``stalled_ucb_k``."""
    values = np.maximum.accumulate([r.value for r in records if not r.pruned])
    patience = settings.boshcode.patience
    return len(values) > patience and values[-1] <= values[-1 - patience]
