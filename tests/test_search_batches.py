"""Batches of proposals (issue 43, item 4): the Proposer's ``propose_batch`` hook, BOSHCODE's
one-fit batch, and the parallel search that asks for its free slots at once."""

from __future__ import annotations

import json
from dataclasses import replace
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import optuna
import pytest

from edgetran.search import BoshcodeSettings, ReplayEvaluator, SearchSettings, run_search
from edgetran.search.evaluators import device_matrix
from edgetran.search.objectives import SearchError
from edgetran.search.proposers import (
    ForestsProposer,
    Proposal,
    Proposer,
    Setup,
    _believed,
    portfolio_turn,
)
from edgetran.testing import synthetic_table
from tests.test_search_parallel import _Slow

SMALL = BoshcodeSettings(n_initial=4, trees=20)


class _First(Proposer):
    """The pool's first pair."""

    def propose(self, records, pending, pool, step, rng):
        return Proposal(pool[0], f"first at {step}")


@pytest.fixture
def evaluator(tmp_path: Path) -> ReplayEvaluator:
    return ReplayEvaluator(synthetic_table(tmp_path / "table.jsonl", n_archs=12))


def _state(evaluator: ReplayEvaluator, settings: SearchSettings, evaluated: int):
    """Records of a random search of ``evaluated`` pairs, two further pairs in flight, and
    the pool of the rest."""
    random = SearchSettings(sampler="random", budget=evaluated, seed=3)
    records = tuple(run_search(evaluator, random).records)
    seen = {r.pair.key for r in records}
    rest = [pair for pair, _ in evaluator.table.values() if pair.key not in seen]
    pending, pool = tuple(rest[:2]), rest[2:]
    return Setup(settings, device_matrix(evaluator.devices), evaluator), records, pending, pool


def _check_batch(batch: list[Proposal], q: int, pending, pool) -> None:
    keys = [p.pair.key for p in batch]
    assert len(keys) == q == len(set(keys))
    assert set(keys) <= {p.key for p in pool} and not set(keys) & {p.key for p in pending}


def test_the_default_batch_proposes_in_turn_with_the_earlier_ones_pending(evaluator):
    setup, records, pending, pool = _state(evaluator, SearchSettings(), 6)
    rng = np.random.default_rng(0)
    batch = list(_First(setup).propose_batch(records, pending, pool, 6, rng, 3))
    _check_batch(batch, 3, pending, pool)
    assert [p.pair for p in batch] == pool[:3]
    assert [p.how for p in batch] == ["first at 6", "first at 7", "first at 8"]
    assert len(list(_First(setup).propose_batch(records, pending, pool[:2], 6, rng, 5))) == 2


@pytest.mark.parametrize("acquisition", ["ucb", "thompson"])
def test_boshcode_s_batch_is_q_distinct_pool_pairs_from_one_fit(evaluator, acquisition):
    settings = SearchSettings(
        boshcode=BoshcodeSettings(n_initial=4, trees=20, acquisition=acquisition)
    )
    setup, records, pending, pool = _state(evaluator, settings, 8)
    proposer = ForestsProposer(setup)
    fits = []
    fit = proposer.model.fit
    proposer.model.fit = lambda *args: fits.append(1) or fit(*args)
    batch = proposer.propose_batch(records, pending, pool, 8, np.random.default_rng(8), 4)
    _check_batch(batch, 4, pending, pool)
    assert len(fits) == 1 and {p.how for p in batch} == {acquisition}
    # Q = 1 is the sequential proposal.
    one = proposer.propose_batch(records, pending, pool, 8, np.random.default_rng(8), 1)
    assert one == [proposer.propose(records, pending, pool, 8, np.random.default_rng(8))]


def test_boshcode_s_batch_finishes_the_initial_design_first(evaluator):
    setup, records, pending, pool = _state(evaluator, SearchSettings(boshcode=SMALL), 1)
    batch = ForestsProposer(setup).propose_batch(
        records, pending, pool, 1, np.random.default_rng(1), 4
    )
    _check_batch(batch, 4, pending, pool)
    # 1 record and 2 in flight: one more initial pair, then the surrogate's.
    assert [p.how for p in batch] == ["initial", "ucb", "ucb", "ucb"]


def test_portfolio_turns_are_evenly_interleaved():
    assert [s for s in range(12) if portfolio_turn(0.25, s)] == [3, 7, 11]
    assert [s for s in range(10) if portfolio_turn(0.2, s)] == [4, 9]
    assert [s for s in range(30) if portfolio_turn(0.1, s)] == [9, 19, 29]  # no float drift
    assert not any(portfolio_turn(0.0, s) for s in range(100))
    with pytest.raises(SearchError, match="portfolio"):
        BoshcodeSettings(portfolio=1.0)


@pytest.mark.parametrize("parallel", [1, 4])
def test_a_portfolio_share_of_boshcode_s_proposals_is_tpe_s(tmp_path, parallel):
    evaluator = _Slow(synthetic_table(tmp_path / "t.jsonl", n_archs=20), seconds=0.01)
    settings = SearchSettings(
        sampler="boshcode", budget=16, seed=1, boshcode=replace(SMALL, portfolio=0.25)
    )
    result = run_search(evaluator, settings, parallel=parallel)
    hows = [r.how for r in result.records]
    keys = [r.pair.key for r in result.records]
    assert len(keys) == 16 == len(set(keys))
    # The initial design (4), then every fourth step TPE's: steps 7, 11 and 15.
    assert [i for i, how in enumerate(hows) if how == "tpe"] == [7, 11, 15]
    assert set(hows[:4]) == {"initial"} and set(hows) == {"initial", "ucb", "tpe"}
    # TPE learns from every evaluation: it is the study's sampler (without a share, a
    # sampler that only stores trials).
    setup = Setup(settings, device_matrix(evaluator.devices), evaluator)
    assert isinstance(ForestsProposer(setup).optuna_sampler(), optuna.samplers.TPESampler)
    plain = Setup(SearchSettings(boshcode=SMALL), device_matrix(evaluator.devices), evaluator)
    assert isinstance(ForestsProposer(plain).optuna_sampler(), optuna.samplers.RandomSampler)
    # A study stored before the option (no ``portfolio`` in its signature) still resumes.
    assert "portfolio" not in ForestsProposer(plain).signature()["boshcode"]
    assert ForestsProposer(setup).signature()["boshcode"]["portfolio"] == 0.25


def test_the_believer_takes_the_spread_of_what_moves_with_a_chosen_pair():
    rng = np.random.default_rng(0)
    shared, own = rng.standard_normal(200), rng.standard_normal(200)
    values = np.stack([shared, 2 * shared + 1, own], axis=1)  # (T, 3)
    believed = _believed(values, 0)
    assert np.allclose(believed.mean(axis=0), values.mean(axis=0))
    assert np.allclose(believed[:, :2].std(axis=0), 0.0)  # the pick, and what moves with it
    assert believed[:, 2].std() == pytest.approx(values[:, 2].std(), rel=0.1)


def test_a_parallel_boshcode_search_evaluates_distinct_pairs_in_batches(tmp_path):
    evaluator = _Slow(synthetic_table(tmp_path / "t.jsonl", n_archs=20), seconds=0.05)
    fits: list[int] = []

    def counted(setup: Setup) -> ForestsProposer:
        proposer = ForestsProposer(setup)
        fit = proposer.model.fit
        proposer.model.fit = lambda *args: fits.append(1) or fit(*args)
        return proposer

    settings = SearchSettings(sampler="boshcode", budget=16, seed=2, boshcode=SMALL)
    result = run_search(evaluator, settings, parallel=4, proposer=counted)
    keys = [r.pair.key for r in result.records]
    assert len(keys) == 16 == len(set(keys)) and sorted(evaluator.calls) == sorted(keys)
    assert evaluator.most == 4
    chosen = sum(r.how == "ucb" for r in result.records)
    assert chosen >= 8 and len(fits) < chosen  # batches: fewer fits than proposals
    assert len(result.seconds_per_proposal) == 16


def _bench_parallel():
    import importlib.util
    import sys

    script = Path(__file__).resolve().parents[1] / "benchmarks" / "bench_parallel.py"
    spec = importlib.util.spec_from_file_location("bench_parallel", script)
    module = importlib.util.module_from_spec(spec)
    sys.modules["bench_parallel"] = module
    spec.loader.exec_module(module)
    return module


def test_bench_parallel_reports_regret_next_to_the_speed_up(tmp_path):
    bench = _bench_parallel()
    timed = bench.TimedReplay(synthetic_table(tmp_path / "t.jsonl", n_archs=6), 0.0)
    run = bench.one_run(timed, "random", 0, 2, 12, {})
    assert run["table_best"] == max(run["history"]) and len(run["history"]) == 12
    history = [0.5] * 40 + [0.9] * 110
    runs = [
        {**run, "parallel": q, "seconds": s, "history": history, "table_best": 1.0, "budget": 150}
        for q, s in ((1, 100.0), (4, 25.0))
    ]
    table = bench.summary(runs)
    assert "median regret after 50 | median regret after 150 |" in table
    assert "| 4.00× |" in table and table.count("| 0.10000 | 0.10000 |") == 2


def test_a_trial_stored_while_it_was_being_abandoned_is_left_to_be_read(tmp_path, evaluator):
    """Two processes' batches finish together: a process reads a RUNNING trial, its owner
    stores it and dies, and the reader finds the owner dead; the stored trial must stay
    unknown to the reader, so its next read takes the evaluation."""
    import optuna
    from optuna.trial import TrialState

    from edgetran.search.study import _Search

    url = f"sqlite:///{tmp_path / 'study.db'}"
    run_search(evaluator, SearchSettings(sampler="random", budget=1), storage=url, study_name="s")
    study = optuna.load_study(study_name="s", storage=url)
    running = study.ask()
    backend = study._storage
    search = SimpleNamespace(
        backend=backend, study_id=backend.get_study_id_from_name("s"), known=set()
    )
    (stored,) = study.get_trials(states=[TrialState.COMPLETE])
    _Search._abandon(search, stored.number)  # stored meanwhile: left alone, and not known
    _Search._abandon(search, running.number)  # still running: closed, and known
    states = {t.number: t.state for t in study.get_trials(deepcopy=False)}
    assert (
        states[stored.number] == TrialState.COMPLETE and states[running.number] == TrialState.FAIL
    )
    assert search.known == {running.number}


def test_search_cli_takes_a_portfolio_share_and_the_stalled_exploration(run_cli, tmp_path):
    table = synthetic_table(tmp_path / "t.jsonl", n_archs=12)
    code, out, err = run_cli("search", "--benchmark", table, "--budget", 12, "--json",
                             "--portfolio", 0.25, "--stalled-ucb-k", 1.0, "--stalled-every", 2,
                             "--db", tmp_path / "p.db")  # fmt: skip
    assert code == 0, err
    assert json.loads(out)["evaluations"] == 12
    for option, value, message in [
        ("--portfolio", 1, "--portfolio 1.0 is invalid; expected a share in [0, 1)"),
        ("--stalled-ucb-k", -1, "--stalled-ucb-k -1.0 is invalid; expected k ≥ 0"),
        (
            "--stalled-every",
            0,
            "Invalid value for '--stalled-every': Input should be greater than or equal to 1",
        ),
    ]:
        code, out, err = run_cli("search", "--benchmark", table, option, value,
                                 "--db", tmp_path / "x.db")  # fmt: skip
        assert code == 2 and out == ""
        assert err.strip().splitlines() == [f"error: {message}"]
        assert not (tmp_path / "x.db").exists()


@pytest.mark.parametrize("objective", ["pareto", "accuracy"])
def test_the_portfolio_serves_every_objective(tmp_path, objective):
    """TPE asks a multi-objective study (pareto) as well as a scalar one."""
    table = synthetic_table(tmp_path / "t.jsonl", n_archs=12)
    settings = SearchSettings(sampler="boshcode", budget=10, seed=0, objective=objective,
                              boshcode=replace(SMALL, portfolio=0.5))  # fmt: skip
    hows = [r.how for r in run_search(ReplayEvaluator(table), settings).records]
    assert hows == ["initial"] * 4 + ["ucb", "tpe"] * 3  # turns: steps 1, 3, 5 …
