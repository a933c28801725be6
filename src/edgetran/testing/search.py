"""The contract checks of evaluators and search strategies (proposers), and the small table
they run on."""

from __future__ import annotations

import contextlib
import json
import random
import tempfile
from collections.abc import Callable, Iterator
from dataclasses import replace
from pathlib import Path
from typing import Any

import numpy as np

from edgetran.plugins import SAMPLERS
from edgetran.search.evaluators import Accuracy, Evaluation, Evaluator, device_matrix
from edgetran.search.objectives import METRIC_KEYS
from edgetran.search.proposers import Proposal, Proposer, Setup
from edgetran.search.table import Pair
from edgetran.space import REFERENCE_SPACE, sample
from edgetran.testing._contract import Clauses, is_number

#: Evaluations of the tiny search a proposer is checked with.
SAMPLER_BUDGET = 6


def synthetic_table(path: str | Path, n_archs: int = 12, seed: int = 0) -> Path:
    """Write a replay table of ``n_archs`` reference-space architectures on two devices:
    accuracy grows with depth, the ``edge`` device is cheap and slow, ``gpu`` fast and hungry."""
    archs = sample(n_archs, method="random", seed=seed, space=REFERENCE_SPACE)
    lines = []
    for arch in archs:
        accuracy = 0.5 + 0.03 * arch.num_layers
        for device, latency, power in (("edge", 2.0, 5.0), ("gpu", 0.01, 250.0)):
            metrics = {
                "accuracy": accuracy,
                "latency_s": latency * arch.num_layers,
                "energy_j": latency * power,
                "peak_power_w": power,
            }
            row = {"arch": arch.to_model_dict(), "device": device, "metrics": metrics}
            lines.append(json.dumps(row))
    path = Path(path)
    path.write_text("\n".join(lines) + "\n")
    return path


def check_evaluator(evaluator: Evaluator, *, n: int = 4, seed: int = 0) -> None:
    """Assert that ``evaluator`` keeps the :class:`~edgetran.search.evaluators.Evaluator`
    contract: fixed devices, distinct candidates on those devices that avoid ``exclude``, and
    one deterministic evaluation (every metric, predicted ones within their interval).

    Raises:
        ContractError: naming the clause that failed.
    """
    c = Clauses("Evaluator", type(evaluator).__name__)
    c.require(isinstance(evaluator, Evaluator), "an evaluator subclasses Evaluator")
    devices = evaluator.devices
    c.require(
        isinstance(devices, tuple)
        and bool(devices)
        and all(isinstance(d, str) and d for d in devices)
        and len(set(devices)) == len(devices),
        "devices is a non-empty tuple of distinct device names",
        repr(devices),
    )
    pool = evaluator.candidates(n, np.random.default_rng(seed), set())
    _check_candidates(pool, n, devices, set(), c)
    c.require(bool(pool), "candidates offers pairs while any remain")
    exclude = {pool[0].key}
    _check_candidates(
        evaluator.candidates(n, np.random.default_rng(seed), exclude), n, devices, exclude, c
    )
    c.require(evaluator.devices == devices, "devices is fixed", repr(evaluator.devices))
    c.require(all(evaluator.offers(p) for p in pool), "offers() accepts every candidate")
    first = evaluator.evaluate(pool[0])
    _check_evaluation(first, c)
    again = evaluator.evaluate(pool[0])
    c.require(
        isinstance(again, Evaluation) and again.metrics == first.metrics,
        "evaluate is deterministic for a pair",
        f"{first.metrics} then {getattr(again, 'metrics', again)}",
    )
    if first.accuracy_std is not None:
        c.require(
            is_number(first.accuracy_std) and first.accuracy_std >= 0,
            "accuracy_std is a finite number ≥ 0 (or None)",
            repr(first.accuracy_std),
        )
    rerun = evaluator.reevaluate(pool[0], 1)
    c.require(
        rerun is None or (isinstance(rerun, Accuracy) and is_number(rerun.value)),
        "reevaluate returns None or an Accuracy of a finite value",
        repr(rerun),
    )


def _check_candidates(
    pool: list[Pair], n: int, devices: tuple[str, ...], exclude: set[str], c: Clauses
) -> None:
    c.require(
        isinstance(pool, list) and all(isinstance(p, Pair) for p in pool),
        "candidates returns a list of Pairs",
        repr(pool)[:200],
    )
    keys = [p.key for p in pool]
    c.require(len(pool) <= n, f"candidates(n={n}) returns at most n pairs", str(len(pool)))
    c.require(len(set(keys)) == len(keys), "candidates are distinct", repr(keys))
    c.require(
        not set(keys) & exclude, "candidates avoid the excluded keys", repr(set(keys) & exclude)
    )
    c.require(
        all(p.device in devices for p in pool),
        "candidates lie on the evaluator's devices",
        repr(sorted({p.device for p in pool} - set(devices))),
    )


def _check_evaluation(evaluation: Evaluation, c: Clauses) -> None:
    c.require(isinstance(evaluation, Evaluation), "evaluate returns an Evaluation")
    metrics = evaluation.metrics
    c.require(
        all(is_number(metrics.get(k)) for k in METRIC_KEYS),
        f"metrics hold {', '.join(METRIC_KEYS)} as finite numbers",
        repr(metrics),
    )
    c.require(0 <= metrics["accuracy"] <= 1, "accuracy is a fraction", repr(metrics["accuracy"]))
    c.require(
        all(metrics[k] > 0 for k in METRIC_KEYS[1:]),
        "latency_s, energy_j and peak_power_w are positive",
        repr(metrics),
    )
    for metric in evaluation.predicted:
        c.require(metric in metrics, "predicted names metrics of the evaluation", metric)
        low, high = evaluation.lower.get(metric), evaluation.upper.get(metric)
        c.require(
            is_number(low) and is_number(high) and low <= metrics[metric] <= high,
            "a predicted metric has lower ≤ value ≤ upper",
            f"{metric}: {low}, {metrics[metric]}, {high}",
        )


def check_proposer(
    proposer: str | Callable[[Setup], Proposer], *, budget: int = SAMPLER_BUDGET, seed: int = 0
) -> None:
    """Assert that a search strategy keeps the :class:`~edgetran.search.proposers.Proposer`
    contract: ``proposer`` (a registered sampler's name, or a factory ``factory(setup)``, such
    as a Proposer subclass) builds a Proposer, and tiny replay searches with it evaluate
    ``budget`` distinct pairs of the table, each proposal one of the pool's and none in
    flight, the records, pool and pairs in flight left as they were, and the same pairs for
    the same seed whatever the global random state.

    Raises:
        ContractError: naming the clause that failed.
    """
    from edgetran.search.evaluators import ReplayEvaluator
    from edgetran.search.settings import BoshcodeSettings
    from edgetran.search.study import SearchSettings, run_search

    named = isinstance(proposer, str)
    factory = SAMPLERS.get(proposer) if named else proposer
    c = Clauses("Proposer", repr(proposer) if named else getattr(proposer, "__name__", proposer))
    # Few epochs: the check is about the contract, not about the surrogate's fit.
    fast = BoshcodeSettings(
        epochs=5, warm_epochs=2, starts=2, gobi_steps=3, mc_samples=3, n_initial=budget - 2
    )
    settings = SearchSettings(budget=budget, seed=seed, boshcode=fast)
    if named:
        settings = replace(settings, sampler=proposer)
    with tempfile.TemporaryDirectory(prefix="edgetran-check-") as tmp:
        evaluator = ReplayEvaluator(synthetic_table(Path(tmp) / "table.jsonl", n_archs=6))
    made = factory(Setup(settings, device_matrix(evaluator.devices), evaluator))
    c.require(
        isinstance(made, Proposer),
        "the factory returns a Proposer for a Setup",
        type(made).__name__,
    )

    def checked(setup: Setup) -> Proposer:
        return _Checked(factory(setup), c)

    runs = []
    for global_seed in (1, 2):
        with _global_random_state(global_seed):
            records = run_search(evaluator, settings, proposer=checked).records
        runs.append([r.pair.key for r in records])
    keys = runs[0]
    c.require(len(keys) == budget, f"a search evaluates budget={budget} pairs", str(len(keys)))
    c.require(len(set(keys)) == len(keys), "no pair is evaluated twice", repr(keys))
    c.require(
        set(keys) <= set(evaluator.table), "every evaluated pair is a candidate of the space"
    )
    c.require(
        runs[1] == keys,
        "the same seed gives the same proposals (whatever the global random state)",
        f"{keys} then {runs[1]}",
    )
    # Batches (proposals beside pending ones): the checks above hold for each.
    run_search(evaluator, settings, proposer=checked, parallel=3)


def check_sampler(name: str, *, budget: int = SAMPLER_BUDGET, seed: int = 0) -> None:
    """:func:`check_proposer` of the registered sampler ``name`` (the name it had when the
    registry held Optuna samplers)."""
    check_proposer(name, budget=budget, seed=seed)


class _Checked(Proposer):
    """A proposer whose every proposal is checked against the contract's clauses."""

    def __init__(self, inner: Proposer, clauses: Clauses) -> None:
        super().__init__(inner.setup)
        self.inner, self.clauses = inner, clauses
        self.coordinates = inner.coordinates

    def optuna_sampler(self) -> Any:
        """The checked proposer's."""
        return self.inner.optuna_sampler()

    def attach(self, ask: Callable[[], dict[str, Any]]) -> None:
        """Hand ``ask`` to the checked proposer."""
        self.inner.attach(ask)

    def signature(self) -> dict[str, Any]:
        """The checked proposer's."""
        return self.inner.signature()

    def propose(self, records, pending, pool, step, rng) -> Proposal:
        """The checked proposer's proposal, once the clauses hold."""
        c = self.clauses
        seen = (_snapshot(records), [p.key for p in pending], [p.key for p in pool])
        proposal = self.inner.propose(records, pending, pool, step, rng)
        c.require(isinstance(proposal, Proposal), "propose returns a Proposal", repr(proposal))
        key = proposal.pair.key
        c.require(key not in seen[1], "a proposal is no pair in flight (pending)", key)
        c.require(key in seen[2], "a proposal is one of the pool's pairs", key)
        c.require(
            isinstance(proposal.how, str) and bool(proposal.how),
            "a proposal says how it was chosen (a non-empty str)",
            repr(proposal.how),
        )
        c.require(
            _snapshot(records) == seen[0],
            "propose leaves the records (and their evaluations) as they were",
        )
        c.require(
            ([p.key for p in pending], [p.key for p in pool]) == seen[1:],
            "propose leaves pending and pool as they were",
        )
        return proposal

    def propose_batch(self, records, pending, pool, step, rng, q) -> Iterator[Proposal]:
        """The checked proposer's batch, each proposal checked as it is taken (the default
        batch's through the checked :meth:`propose`)."""
        c = self.clauses
        seen = (_snapshot(records), [p.key for p in pending], [p.key for p in pool])
        taken: list[str] = []
        if type(self.inner).propose_batch is Proposer.propose_batch:
            batch = Proposer.propose_batch(self, records, pending, pool, step, rng, q)
        else:
            batch = self.inner.propose_batch(records, pending, pool, step, rng, q)
        for proposal in batch:
            c.require(isinstance(proposal, Proposal), "a batch holds Proposals", repr(proposal))
            key = proposal.pair.key
            c.require(len(taken) < q, f"a batch holds at most q={q} proposals", repr(taken))
            c.require(key not in taken, "a batch's proposals are distinct", key)
            c.require(key not in seen[1], "a proposal is no pair in flight (pending)", key)
            c.require(key in seen[2], "a proposal is one of the pool's pairs", key)
            c.require(
                _snapshot(records) == seen[0]
                and ([p.key for p in pending], [p.key for p in pool]) == seen[1:],
                "propose_batch leaves the records, pending and pool as they were",
            )
            taken.append(key)
            yield proposal


def _snapshot(records) -> list[tuple]:
    return [(r.pair.key, r.value, r.feasible, r.how, dict(r.evaluation.metrics)) for r in records]


@contextlib.contextmanager
def _global_random_state(seed: int) -> Iterator[None]:
    """Seed Python's and NumPy's global generators, and put them back afterwards."""
    python, numpy = random.getstate(), np.random.get_state()
    random.seed(seed)
    np.random.seed(seed)
    try:
        yield
    finally:
        random.setstate(python)
        np.random.set_state(numpy)
