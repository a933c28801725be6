"""Parallel co-search (Q evaluations in flight) and shared studies (several processes)."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import replace
from pathlib import Path

import numpy as np
import optuna
import pytest
from optuna.trial import TrialState
from sqlalchemy import create_engine, insert, select, update

from edgetran.search import (
    Accuracy,
    BoshcodeSettings,
    PaperObjective,
    ReplayEvaluator,
    SearchError,
    SearchSettings,
    run_search,
)
from edgetran.search import claims as claims_module
from edgetran.search import study as study_module
from edgetran.search.claims import DatabaseClaims, claims_table, host_id, owners_table
from edgetran.search.proposers import Coordinates
from edgetran.search.study import Failure, _failed_trial
from edgetran.testing import synthetic_table as write_table

FAST = BoshcodeSettings(epochs=20, warm_epochs=5, starts=3, gobi_steps=5, n_initial=4)


@pytest.fixture
def table(tmp_path: Path) -> Path:
    return write_table(tmp_path / "table.jsonl")


@pytest.fixture(autouse=True)
def one_torch_thread():
    """BOSHCODE's tiny fits on one thread: on busy shared cores, torch's thread pool waits
    more than it computes."""
    import torch

    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


class _Slow(ReplayEvaluator):
    """The table, ``seconds`` per evaluation; counts the evaluations in flight."""

    def __init__(self, path, seconds: float = 0.05) -> None:
        super().__init__(path)
        self.seconds = seconds
        self.lock = threading.Lock()
        self.now = self.most = 0
        self.calls: list[str] = []

    def evaluate(self, pair):
        with self.lock:
            self.now += 1
            self.most = max(self.most, self.now)
            self.calls.append(pair.key)
        try:
            time.sleep(self.seconds)
            return super().evaluate(pair)
        finally:
            with self.lock:
                self.now -= 1


def _keys(result) -> list[str]:
    return [r.pair.key for r in result.records] + [f.pair.key for f in result.failures]


# -- Q evaluations in flight --------------------------------------------------------------------
@pytest.mark.parametrize(
    ("sampler", "surrogate"),
    [("boshcode", "forests"), ("boshcode", "networks"), ("trees", None), ("tpe", None),
     ("random", None)],
)  # fmt: skip
def test_q_evaluations_in_flight_spend_the_budget_once_per_pair(table, sampler, surrogate):
    evaluator = _Slow(table)
    boshcode = replace(FAST, surrogate=surrogate or "forests")
    settings = SearchSettings(sampler=sampler, budget=10, seed=1, boshcode=boshcode)
    result = run_search(evaluator, settings, parallel=4)
    keys = _keys(result)
    assert len(keys) == 10 == len(set(keys)) and set(keys) <= set(evaluator.table)
    assert sorted(evaluator.calls) == sorted(keys)  # each pair evaluated once, all stored
    assert 1 < evaluator.most <= 4
    out = result.to_dict()
    assert out["best"]["objective"] == max(out["history"])
    assert out["history"][out["evaluations_to_best"] - 1] == out["best"]["objective"]


@pytest.mark.parametrize("sampler", ["boshcode", "tpe"])
def test_a_parallel_search_of_a_whole_table_finds_its_best_pair(tmp_path, sampler):
    """A budget above the table's size: every pair once, however many are in flight."""
    evaluator = _Slow(write_table(tmp_path / "small.jsonl", n_archs=6), seconds=0.01)
    best = max(PaperObjective().value(m) for _, m in evaluator.table.values())
    settings = SearchSettings(sampler=sampler, budget=20, seed=0, boshcode=FAST)
    result = run_search(evaluator, settings, parallel=3)
    assert sorted(_keys(result)) == sorted(evaluator.table) == sorted(evaluator.calls)
    assert result.to_dict()["best"]["objective"] == pytest.approx(best)


def test_boshcode_batches_lie_about_pending_pairs(table):
    """The constant liar: pairs in flight enter the fit at the worst target observed."""
    from edgetran.search.proposers import _with_fantasies

    records = run_search(ReplayEvaluator(table), SearchSettings(sampler="random", budget=5))
    pending = [p for p, _ in ReplayEvaluator(table).table.values()][:2]
    settings = SearchSettings()
    pairs, y = _with_fantasies(records.records, pending, settings, np.random.default_rng(0))
    told = [r.value for r in records.records]
    assert pairs[-2:] == pending and list(y[:5]) == told and list(y[5:]) == [min(told)] * 2


class _Noisy(_Slow):
    """Accuracy with a standard deviation of 0.05 (near-best pairs tie); runs land 0.01·run
    above it; every pair whose key sorts third fails."""

    def __init__(self, path) -> None:
        super().__init__(path, seconds=0.02)
        self.runs: list[tuple[str, int]] = []

    def evaluate(self, pair):
        if sorted(self.table).index(pair.key) % 5 == 2:
            raise MemoryError("out of memory (simulated)")
        evaluation = super().evaluate(pair)
        evaluation.accuracy_runs.clear()
        evaluation.add_accuracy_run(Accuracy(evaluation.metrics["accuracy"], 0.05))
        return evaluation

    def reevaluate(self, pair, run):
        with self.lock:
            self.runs.append((pair.key, run))
        time.sleep(self.seconds)
        return Accuracy(self.table[pair.key][1]["accuracy"] + 0.01 * run, 0.05)


def test_parallel_reevaluations_and_failures_stay_within_the_budget(table):
    evaluator = _Noisy(table)
    settings = SearchSettings(sampler="random", budget=16, seed=0,
                              boshcode=BoshcodeSettings(n_initial=2))  # fmt: skip
    result = run_search(evaluator, settings, parallel=3)
    assert result.failures and result.reevaluations == len(evaluator.runs) > 0
    assert len(result.records) + len(result.failures) + result.reevaluations == 16
    assert result.reevaluations <= int(16 * study_module.REEVALUATION_SHARE)
    assert len(set(evaluator.runs)) == len(evaluator.runs)  # no run twice
    keys = _keys(result)
    assert len(keys) == len(set(keys))
    for record in result.records:
        runs = record.evaluation.accuracy_runs
        assert 1 <= len(runs) <= study_module.MAX_ACCURACY_RUNS
        assert record.evaluation.metrics["accuracy"] == pytest.approx(np.mean(runs))


# -- Q = 1 is the sequential search -------------------------------------------------------------
#: Recorded with the sequential loop, before parallel searches existed (tpe, budget 14, seed 0;
#: the first ten are TPE's random start-up trials).
SEQUENTIAL_TPE = [
    "gpu:8f633d4f2e", "edge:f7f2ff40a7", "gpu:f7f2ff40a7", "gpu:4bd290b39d", "edge:8f633d4f2e",
    "edge:4bd290b39d", "edge:1581105bdf", "edge:915a0af6e8", "edge:81cf2be484",
    "edge:89cb3cc501", "edge:676f1f1a53", "edge:286ebc70e6", "edge:176f6c2f69",
    "edge:0abd9b80bd",
]  # fmt: skip
#: The same for random with noisy accuracies: pair and runs its accuracy rests on (2
#: re-evaluations).
SEQUENTIAL_NOISY = [
    "gpu:8f633d4f2e:1", "edge:f7f2ff40a7:2", "gpu:f7f2ff40a7:1", "gpu:4bd290b39d:1",
    "edge:8f633d4f2e:2", "edge:4bd290b39d:1", "edge:1581105bdf:1", "edge:915a0af6e8:1",
    "edge:81cf2be484:1", "edge:89cb3cc501:1", "gpu:89cb3cc501:1", "edge:286ebc70e6:1",
]  # fmt: skip


class _NoisyReplay(ReplayEvaluator):
    def evaluate(self, pair):
        evaluation = super().evaluate(pair)
        evaluation.accuracy_runs.clear()
        evaluation.add_accuracy_run(Accuracy(evaluation.metrics["accuracy"], 0.05))
        return evaluation

    def reevaluate(self, pair, run):
        return Accuracy(self.table[pair.key][1]["accuracy"] + 0.01 * run, 0.05)


def test_one_in_flight_is_the_sequential_search(table, tmp_path):
    for budget, storage in ((14, None), (3, f"sqlite:///{tmp_path / 's.db'}")):
        settings = SearchSettings(sampler="tpe", budget=budget, seed=0)
        result = run_search(ReplayEvaluator(table), settings, storage=storage, parallel=1)
        assert [f"{r.pair.device}:{r.pair.arch.hash[:10]}" for r in result.records] == (
            SEQUENTIAL_TPE[:budget]
        )
    noisy = run_search(_NoisyReplay(table), SearchSettings(sampler="random", budget=14, seed=0))
    assert noisy.reevaluations == 2
    assert [
        f"{r.pair.device}:{r.pair.arch.hash[:10]}:{len(r.evaluation.accuracy_runs)}"
        for r in noisy.records
    ] == SEQUENTIAL_NOISY


def test_parallel_is_checked(table, run_cli, tmp_path):
    for bad in (0, -1, True, 2.0):
        with pytest.raises(SearchError, match=r"parallel=.*expected an integer ≥ 1"):
            run_search(ReplayEvaluator(table), SearchSettings(budget=2), parallel=bad)
    code, out, err = run_cli("search", "--benchmark", table, "--parallel", 0,
                             "--db", tmp_path / "x.db")  # fmt: skip
    assert code == 2 and out == ""
    assert err.strip().splitlines() == ["error: --parallel 0 is invalid; expected an integer ≥ 1"]
    assert not (tmp_path / "x.db").exists()


def test_search_cli_parallel(run_cli, table, tmp_path):
    code, out, err = run_cli("search", "--benchmark", table, "--sampler", "trees", "--budget", 6,
                             "--parallel", 3, "--db", tmp_path / "p.db", "--json")  # fmt: skip
    assert code == 0, err
    result = json.loads(out)
    assert result["parallel"] == 3 and result["evaluations"] == 6


# -- interrupted and shared studies -------------------------------------------------------------
def _study_state(url: str, name: str = "s") -> tuple[list, list]:
    """Every trial of the study, and every claim row."""
    study = optuna.load_study(study_name=name, storage=url)
    engine = create_engine(url)
    with engine.connect() as conn:
        rows = conn.execute(select(claims_table).where(claims_table.c.study == name)).all()
    engine.dispose()
    return study.get_trials(deepcopy=False), rows


def _evaluated(trials) -> list[str]:
    """Pair keys of the stored evaluations (completed or failed)."""
    return [
        t.user_attrs["key"]
        for t in trials
        if t.state == TrialState.COMPLETE
        or (t.state == TrialState.FAIL and t.user_attrs.get("role") == "failed")
    ]


def _check_nothing_lost(url: str, budget: int) -> list[str]:
    trials, rows = _study_state(url)
    evaluated = _evaluated(trials)
    assert len(evaluated) == budget == len(set(evaluated))
    assert not [t for t in trials if t.state == TrialState.RUNNING]
    assert all(r.state == "done" for r in rows) and len(rows) == budget
    assert {r.key for r in rows} == set(evaluated)  # every claimed pair was evaluated
    return evaluated


def test_an_interrupted_parallel_search_resumes_without_loss_or_repeat(table, tmp_path):
    url = f"sqlite:///{tmp_path / 'search.db'}"
    evaluator = _Slow(table)
    settings = SearchSettings(sampler="trees", budget=10, seed=0)  # the initial design

    def crash(n: int, _record) -> None:
        if n == 5:
            raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        run_search(evaluator, settings, storage=url, study_name="s", on_evaluation=crash,
                   parallel=4)  # fmt: skip
    trials, rows = _study_state(url)
    assert not [t for t in trials if t.state == TrialState.RUNNING]  # closed on the way out
    assert all(r.state == "done" for r in rows) and len(rows) == 5
    result = run_search(evaluator, settings, storage=url, study_name="s", resume=True,
                        parallel=2)  # fmt: skip
    assert sorted(_keys(result)) == sorted(_check_nothing_lost(url, 10))


_WORKER = """
import os, signal, sys, time
from pathlib import Path
from edgetran.search import ReplayEvaluator, SearchSettings, run_search

class Slow(ReplayEvaluator):
    def evaluate(self, pair):
        time.sleep(0.2)
        return super().evaluate(pair)

def kill(n, _record):  # kill -9 after the kill_at-th evaluation, with others in flight
    if n >= kill_at > 0:
        os.kill(os.getpid(), signal.SIGKILL)

table, url, budget, sampler, workers, kill_at = sys.argv[1:7]
workers, kill_at = int(workers), int(kill_at)
Path(f"ready-{os.getpid()}").touch()  # start together, whatever the import times
while len(list(Path().glob("ready-*"))) < workers:
    time.sleep(0.01)
settings = SearchSettings(sampler=sampler, budget=int(budget), seed=0)
result = run_search(Slow(table), settings, storage=url, study_name="s", resume=True, parallel=2,
                    on_evaluation=kill)
print(len(result.records) + len(result.failures))
"""


def _worker(tmp_path: Path, *args, kill_at: int) -> subprocess.Popen:
    command = [sys.executable, "-c", _WORKER, *map(str, args), "2", str(kill_at)]
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    return subprocess.Popen(command, cwd=tmp_path, env=env, stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True)  # fmt: skip


def test_two_processes_share_one_sqlite_study_and_one_is_killed(table, tmp_path):
    """Two processes, same seed (so they keep proposing the same pairs), one study created by
    whichever comes first; one is killed (kill -9) with evaluations in flight. The other
    finds it dead at once (same host, no such process), closes its RUNNING trials, takes its
    pairs back and fills the budget: none lost, none twice."""
    url = f"sqlite:///{tmp_path / 'shared.db'}"
    budget = 10  # trees' initial design: no fit, the claims are what is tested
    killed = _worker(tmp_path, table, url, budget, "trees", kill_at=3)
    survivor = _worker(tmp_path, table, url, budget, "trees", kill_at=0)
    _, err = killed.communicate(timeout=120)  # reaped first: no zombie looks alive
    assert killed.returncode == -signal.SIGKILL, err
    out, err = survivor.communicate(timeout=120)
    assert survivor.returncode == 0, err
    assert out.split() == [str(budget)]  # it returns the whole study
    _check_shared_study(url, budget, table)
    # the killed one's evaluation in flight: closed, its pair free again (and its claim gone)
    abandoned = [t for t in _study_state(url)[0] if t.user_attrs.get("role") == "abandoned"]
    assert [t.user_attrs["owner"] for t in abandoned if "key" in t.user_attrs]


def _check_shared_study(url: str, budget: int, table: Path) -> None:
    evaluated = _check_nothing_lost(url, budget)
    assert set(evaluated) <= set(ReplayEvaluator(table).table)
    trials = _study_state(url)[0]
    owners = {t.user_attrs["owner"] for t in trials if t.state == TrialState.COMPLETE}
    assert len(owners) == 2  # both took part


def test_two_searches_in_threads_share_one_study(table, tmp_path):
    """The same in one process (two owners): the pool sampler learns from the other's
    pending pairs, and each search returns the whole study."""
    url = f"sqlite:///{tmp_path / 'shared.db'}"
    settings = SearchSettings(sampler="trees", budget=10, seed=0,
                              boshcode=replace(FAST, n_initial=7))  # fmt: skip
    with ThreadPoolExecutor(2) as pool:
        runs = [
            pool.submit(run_search, _Slow(table, seconds=0.2), settings, storage=url,
                        study_name="s", resume=True, parallel=2)
            for _ in range(2)
        ]  # fmt: skip
        results = [run.result(timeout=120) for run in runs]
    assert [len(_keys(r)) for r in results] == [10, 10]
    _check_shared_study(url, 10, table)


def _pretend_pending(url: str, evaluator, settings, pair, owner: str) -> None:
    """What a process evaluating ``pair`` leaves in the study: its claim and RUNNING trial."""
    claims = DatabaseClaims(url, "s", owner)
    assert claims.claim(pair.key, 100) == "claimed"
    claims.engine.dispose()
    coordinates = Coordinates(evaluator.devices)  # trees asks in the embedding's
    trial = optuna.trial.create_trial(
        params=coordinates.params(pair),
        distributions=coordinates.distributions,
        state=TrialState.RUNNING,
        user_attrs={"role": "pending", "owner": owner, "key": pair.key,
                    "model_dict": pair.arch.to_model_dict(), "device": pair.device},
    )  # fmt: skip
    optuna.load_study(study_name="s", storage=url).add_trial(trial)


def _register(url: str, owner: str, pid: int, host: str | None = None) -> None:
    engine = create_engine(url)
    with engine.begin() as conn:
        conn.execute(insert(owners_table).values(owner=owner, study="s", host=host or host_id(),
                                                 pid=pid, heartbeat_at=time.time()))  # fmt: skip
    engine.dispose()


def test_a_dead_process_s_pair_is_freed_and_a_live_one_s_is_left(tmp_path, monkeypatch):
    monkeypatch.setattr(study_module, "POLL_S", 0.05)
    evaluator = ReplayEvaluator(write_table(tmp_path / "t.jsonl", n_archs=4))  # 8 pairs
    url = f"sqlite:///{tmp_path / 'search.db'}"
    settings = SearchSettings(sampler="trees", budget=4, seed=0)  # the initial design
    first = run_search(evaluator, settings, storage=url, study_name="s")
    rest = [p for p, _ in evaluator.table.values() if p.key not in _keys(first)]
    dead, live = rest[0], rest[1]
    gone = subprocess.Popen([sys.executable, "-c", "pass"])
    gone.wait()
    _register(url, "d" * 32, gone.pid)  # a process of this host that has exited
    _pretend_pending(url, evaluator, settings, dead, "d" * 32)
    alive = DatabaseClaims(url, "s", "a" * 32)
    alive.register()  # this test's process: alive, and beating
    _pretend_pending(url, evaluator, settings, live, "a" * 32)

    seen, waiting = [], threading.Event()

    def note(n: int, record) -> None:
        seen.append(record.pair.key)
        if n == 7:  # all but the live process's pair
            waiting.set()

    more = replace(settings, budget=8)
    with ThreadPoolExecutor(1) as pool:
        resumed = pool.submit(run_search, evaluator, more, storage=url, study_name="s",
                              resume=True, on_evaluation=note)  # fmt: skip
        assert waiting.wait(60), resumed.done() and resumed.exception()
        time.sleep(0.2)  # the search polls, waiting for the live process's pair
        trials, rows = _study_state(url)
        pending = [t for t in trials if t.state == TrialState.RUNNING]
        assert [t.user_attrs["key"] for t in pending] == [live.key]  # left alone
        assert {r.key: r.state for r in rows}[live.key] == "pending"
        abandoned = [t for t in trials if t.user_attrs.get("role") == "abandoned"]
        assert [t.user_attrs["key"] for t in abandoned] == [dead.key]
        assert dead.key in seen  # the dead process's pair was evaluated again
        # the live process stores its evaluation (a failure) and the search ends
        _finish_as_failed(url, evaluator, settings, pending[0], live)
        alive.finish(live.key)
        result = resumed.result(timeout=60)
    alive.close()
    assert len(result.records) == 7 and [f.pair.key for f in result.failures] == [live.key]
    _check_nothing_lost(url, 8)


def _finish_as_failed(url, evaluator, settings, trial, pair) -> None:
    storage = optuna.storages.RDBStorage(url)
    failed = _failed_trial(Failure(pair, "MemoryError: simulated"), Coordinates(evaluator.devices))
    trial_id = storage.get_trial_id_from_study_id_trial_number(
        storage.get_study_id_from_name("s"), trial.number
    )
    for key, value in failed.user_attrs.items():
        storage.set_trial_user_attr(trial_id, key, value)
    storage.set_trial_state_values(trial_id, TrialState.FAIL)
    storage.engine.dispose()


def test_an_owner_whose_heartbeat_stands_still_is_dead(tmp_path, monkeypatch):
    """On another host no PID tells: a heartbeat unchanged for STALE_AFTER_S (of the
    observer's clock) does; one that moves keeps its owner alive."""
    monkeypatch.setattr(claims_module, "STALE_AFTER_S", 1.0)
    url = f"sqlite:///{tmp_path / 'c.db'}"
    me = DatabaseClaims(url, "s", "m" * 32)
    me.register()
    _register(url, "x" * 32, 1, host="elsewhere")
    _register(url, "y" * 32, 1, host="elsewhere")
    assert me.owners(set()).dead == frozenset()
    time.sleep(0.6)
    with me.engine.begin() as conn:  # y beats
        conn.execute(update(owners_table).where(owners_table.c.owner == "y" * 32)
                     .values(heartbeat_at=time.time()))  # fmt: skip
    assert me.owners(set()).dead == frozenset()
    time.sleep(0.6)
    owners = me.owners({"z" * 32})  # z: no row at all (gone)
    assert owners.dead == {"x" * 32, "z" * 32} and owners.live == {"y" * 32}
    me.close()


def test_claims_are_atomic_across_threads(tmp_path):
    """Eight claimants race for 20 keys with a limit of 12: each key claimed once, 12 in all."""
    url = f"sqlite:///{tmp_path / 'c.db'}"
    everyone = [DatabaseClaims(url, "s", f"{i:032d}") for i in range(8)]
    everyone[0].purge()  # creates the tables
    won: list[tuple[int, str]] = []

    def race(i: int) -> None:
        for key in (f"k{j}" for j in np.random.default_rng(i).permutation(20)):
            if everyone[i].claim(key, 12) == "claimed":
                won.append((i, key))

    with ThreadPoolExecutor(8) as pool:
        list(pool.map(race, range(8)))
    assert len(won) == 12 == len({k for _, k in won})
    assert everyone[0].snapshot().count == 12
    for claims in everyone:
        claims.engine.dispose()
