"""The co-search benchmark suite (landscapes, runs, counts), the ``trees`` sampler and ``gp`` on
the compact encoding."""

from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np
import pytest

from edgetran.search import Constraints, ReplayEvaluator, SearchSettings, run_search
from edgetran.search.proposers import INFEASIBLE_PENALTY, Coordinates
from edgetran.search.study import _trial
from edgetran.search.suite import (
    LANDSCAPES,
    Problem,
    best_pair,
    landscape_rows,
    markdown_table,
    stand_in_accuracy,
    suite_run,
    summarise,
)
from edgetran.space import Architecture
from edgetran.testing import synthetic_table
from tests.conftest import search_resumed_after


@pytest.fixture
def rows(tmp_path: Path) -> list[dict]:
    path = synthetic_table(tmp_path / "table.jsonl", n_archs=8)
    return [json.loads(line) for line in path.read_text().splitlines()]


def _accuracies(rows: list[dict]) -> list[float]:
    return [row["metrics"]["accuracy"] for row in rows]


def test_landscapes_are_deterministic_per_seed_and_keep_the_hardware(rows):
    for landscape in LANDSCAPES:
        first = landscape_rows(rows, landscape, seed=3)
        assert first == landscape_rows(rows, landscape, seed=3)
        assert all(0 <= a <= 1 for a in _accuracies(first))
        assert [{**r["metrics"], "accuracy": 0} for r in first] == [
            {**r["metrics"], "accuracy": 0} for r in rows
        ]
        # one accuracy per architecture, whatever the device
        by_arch = {json.dumps(r["arch"]): r["metrics"]["accuracy"] for r in first}
        assert all(by_arch[json.dumps(r["arch"])] == r["metrics"]["accuracy"] for r in first)
        if landscape != "stand-in":
            assert _accuracies(landscape_rows(rows, landscape, seed=4)) != _accuracies(first)
    stand_in = landscape_rows(rows, "stand-in")
    assert _accuracies(stand_in) == [
        round(stand_in_accuracy(Architecture.from_dict(r["arch"])), 6) for r in rows
    ]


def test_landscapes_differ_in_kind(rows):
    rankings = {
        landscape: np.argsort(_accuracies(landscape_rows(rows, landscape))[::2])
        for landscape in LANDSCAPES
    }
    assert len({tuple(r) for r in rankings.values()}) == len(LANDSCAPES)


def test_summary_reports_regret_and_counts_a_miss_as_budget_plus_one():
    histories = ([None, 0.4, 0.3, 0.5], [0.2, 0.4995, 0.45, 0.46], [None, None, 0.1, 0.2])
    runs = [
        {"problem": "p", "sampler": "s", "seed": seed, "budget": 4, "to_best_pair": found,
         "best": 0.5, "history": history, "seconds_per_proposal": 0.5}
        for seed, (found, history) in enumerate(zip((4, None, None), histories, strict=True))
    ]  # fmt: skip
    (row,) = summarise(runs, marks=(1, 2, 4, 5))
    assert row["runs"] == 3 and row["misses"] == 2
    assert row["to_best"] == 5  # median of 4, 5, 5
    assert row["to_best_p90"] == 5
    assert row["to_epsilon"] == 4  # within 0.001: 4, 2 and never (5)
    # after 1: ∞ (nothing feasible), 0.3, ∞; after 4: 0, 0.0005, 0.3; none past the budget
    assert row["regret"] == {1: math.inf, 2: pytest.approx(0.1), 4: pytest.approx(0.0005), 5: None}
    assert "| p | s | 3 | ∞ | 0.10000 | 0.00050 | – | 4 | > 4 | > 4 | 2 |" in markdown_table([row])


def test_suite_run_finds_the_best_feasible_pair_honestly(tmp_path, rows):
    path = tmp_path / "landscape.jsonl"
    path.write_text("\n".join(json.dumps(r) for r in landscape_rows(rows, "rugged")) + "\n")
    evaluator = ReplayEvaluator(path)
    capped = Problem("capped", "rugged", Constraints(max_peak_power_w=100))  # edge device only
    key, value = best_pair(evaluator, capped.constraints)
    assert key.endswith("@edge")
    run = suite_run(evaluator, capped, "random", seed=0, budget=12)
    assert len(run["history"]) == 12 and None in run["history"]  # gpu pairs are infeasible
    assert run["to_best_pair"] is not None
    assert run["history"][run["to_best_pair"] - 1] == pytest.approx(value) == run["best"]


def test_trees_search_is_deterministic_and_resumes_without_repeats(tmp_path):
    evaluator = ReplayEvaluator(synthetic_table(tmp_path / "table.jsonl", n_archs=10))
    settings = SearchSettings(sampler="trees", budget=13, seed=2)
    records = run_search(evaluator, settings).records
    whole = [r.pair.key for r in records]
    assert [r.how for r in records][9:] == ["initial", "trees", "trees", "trees"]

    def crash(n: int, _record) -> None:
        if n == 11:
            raise KeyboardInterrupt

    storage = f"sqlite:///{tmp_path / 'search.db'}"
    with pytest.raises(KeyboardInterrupt):
        run_search(evaluator, settings, storage=storage, study_name="s", on_evaluation=crash)
    resumed = run_search(evaluator, settings, storage=storage, study_name="s", resume=True)
    # the same pairs as the run without interruption: deterministic for the seed, and resumed
    assert [r.pair.key for r in resumed.records] == whole


def test_compact_encoding_is_fifteen_scaled_cost_and_shape_features(tmp_path):
    from edgetran.search.encoding import COMPACT_FEATURES, ArchitectureEncoder

    evaluator = ReplayEvaluator(synthetic_table(tmp_path / "table.jsonl", n_archs=6))
    pairs = evaluator.candidates(100, np.random.default_rng(0), set())
    x = ArchitectureEncoder("compact").fit(pairs)(pairs)
    assert x.shape == (len(pairs), len(COMPACT_FEATURES)) == (len(pairs), 15)
    assert x.min() >= 0.0 and x.max() <= 1.0
    assert np.allclose(x.max(axis=0)[np.ptp(x, axis=0) > 0], 1.0)


def test_gp_asks_in_compact_coordinates_and_resumes_without_repeats(tmp_path):
    evaluator = ReplayEvaluator(synthetic_table(tmp_path / "table.jsonl", n_archs=8))
    settings = SearchSettings(sampler="gp", budget=12, seed=1)
    storage = f"sqlite:///{tmp_path / 'search.db'}"
    records = run_search(evaluator, settings, storage=storage, study_name="whole").records
    whole = [r.pair.key for r in records]
    assert len(set(whole)) == 12

    import optuna

    study = optuna.load_study(study_name="whole", storage=storage)
    params = study.get_trials()[-1].params
    assert sorted(params) == sorted([f"f{i}" for i in range(15)] + ["device"])
    assert all(0.0 <= params[f"f{i}"] <= 1.0 for i in range(15))

    resumed = search_resumed_after(evaluator, settings, storage, crash_at=11)
    assert [r.pair.key for r in resumed.records] == whole


def test_a_gp_study_records_its_coordinates_so_an_embedding_study_is_not_resumed_as_one(
    tmp_path,
):
    from edgetran.plugins import SAMPLERS
    from edgetran.search.evaluators import device_matrix
    from edgetran.search.proposers import Setup
    from edgetran.search.study import _signature

    evaluator = ReplayEvaluator(synthetic_table(tmp_path / "table.jsonl", n_archs=4))

    def signature(sampler: str) -> dict:
        settings = SearchSettings(sampler=sampler)
        setup = Setup(settings, device_matrix(evaluator.devices), evaluator)
        return _signature(settings, evaluator.devices, SAMPLERS.create(sampler, setup))

    assert signature("gp")["coordinates"] == "compact"
    assert "coordinates" not in signature("tpe")


def test_optuna_samplers_are_told_that_an_infeasible_pair_is_penalised(tmp_path):
    evaluator = ReplayEvaluator(synthetic_table(tmp_path / "table.jsonl", n_archs=4))
    settings = SearchSettings(sampler="tpe", budget=8, constraints=Constraints(max_latency_ms=50))
    coordinates = Coordinates(evaluator.devices)  # tpe asks in the embedding's
    records = run_search(evaluator, settings).records
    told = [_trial(r, coordinates, settings).value for r in records]
    assert told == [r.value - (0 if r.feasible else INFEASIBLE_PENALTY) for r in records]
    assert {r.feasible for r in records} == {True, False}
