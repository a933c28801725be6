"""Multi-fidelity co-search (issue 42), the search side: learning curves in the replay, Optuna's
pruners in the study, pruned trials as information, and the time-to-quality harness."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from edgetran.search import ReplayEvaluator, SearchSettings, run_search
from edgetran.search.fidelity import PRUNERS, RUNG_FRACTIONS, PrunedEvaluation, optuna_pruner
from edgetran.search.objectives import SearchError
from edgetran.search.pending import Job, attempt
from edgetran.search.suite import (
    Problem,
    cost_run,
    cost_summary,
    cost_table,
    regret_at_cost,
    with_curves,
)
from edgetran.space import Architecture
from edgetran.testing import synthetic_table


def _rows(tmp_path: Path, n_archs: int = 16) -> list[dict]:
    path = synthetic_table(tmp_path / "plain.jsonl", n_archs=n_archs)
    return [json.loads(line) for line in path.read_text().splitlines()]


def _write(path: Path, rows: list[dict]) -> Path:
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    return path


@pytest.fixture
def curves(tmp_path: Path) -> Path:
    return _write(tmp_path / "curves.jsonl", with_curves(_rows(tmp_path), crossings=0.25))


# -- learning curves -----------------------------------------------------------------------------
def test_curves_end_at_the_table_accuracy_per_architecture_and_are_seeded(tmp_path):
    rows = _rows(tmp_path)
    out = with_curves(rows, crossings=0.25, seed=3)
    assert out == with_curves(rows, crossings=0.25, seed=3) != with_curves(rows, 0.25, seed=4)
    by_arch: dict[str, list] = {}
    for row in out:
        assert len(row["curve"]) == len(RUNG_FRACTIONS)
        assert row["curve"][-1] == pytest.approx(row["metrics"]["accuracy"], abs=1e-6)
        by_arch.setdefault(Architecture.from_dict(row["arch"]).hash, []).append(row["curve"])
    assert all(c == curves[0] for curves in by_arch.values() for c in curves)


def test_slow_starters_end_among_the_best_but_start_below_others():
    archs = [Architecture.from_dict(r["arch"]) for r in _rows_of(40)]
    rows = [
        {"arch": a.to_model_dict(), "device": "d",
         "metrics": {"accuracy": 0.6 + 0.005 * i, "latency_s": 1.0, "energy_j": 1.0,
                     "peak_power_w": 1.0}}
        for i, a in enumerate(archs)
    ]  # fmt: skip
    plain = with_curves(rows, crossings=0.0)
    crossed = with_curves(rows, crossings=0.2)
    # without slow starters, the first rung ranks like the end (up to its noise)
    first = [r["curve"][0] for r in plain]
    assert np.corrcoef(first, range(len(rows)))[0, 1] > 0.6
    # slow starters: a top-8 architecture starts below the median first rung
    slow = [
        r for r in crossed[-16:] if r["curve"][0] < np.median([x["curve"][0] for x in crossed])
    ]
    assert slow and all(r["curve"][-1] > r["curve"][0] + 0.1 for r in slow)
    with pytest.raises(ValueError, match=r"crossings=1\.5"):
        with_curves(rows, crossings=1.5)


def _rows_of(n: int) -> list[dict]:
    from edgetran.space import REFERENCE_SPACE, sample

    return [{"arch": a.to_model_dict()} for a in sample(n, method="random", seed=1,
                                                         space=REFERENCE_SPACE)]  # fmt: skip


@pytest.mark.parametrize(
    ("curve", "message"),
    [
        ([0.5, 0.6], "'curve' must be 4 accuracies"),
        ([0.5, 0.6, 0.7, 2.0], "'curve' must be 4 accuracies"),
        ([0.5, 0.6, 0.7, 0.1], "the curve ends at 0.1; expected the row's accuracy"),
    ],
)
def test_a_bad_curve_is_refused_naming_its_line(tmp_path, curve, message):
    rows = _rows(tmp_path, 2)
    rows[0]["curve"] = curve
    with pytest.raises(SearchError, match=f"line 1: {message}"):
        ReplayEvaluator(_write(tmp_path / "bad.jsonl", rows))


def test_curves_on_some_rows_only_are_refused(tmp_path):
    rows = with_curves(_rows(tmp_path, 2))
    del rows[2]["curve"]
    with pytest.raises(SearchError, match="line 3: a table has curves on every row or none"):
        ReplayEvaluator(_write(tmp_path / "mixed.jsonl", rows))


def test_replay_reports_each_rung_then_returns_the_table_metrics(curves):
    evaluator = ReplayEvaluator(curves)
    assert evaluator.reports_rungs
    pair, metrics = next(iter(evaluator.table.values()))
    seen = []
    out = evaluator.evaluate(pair, report=lambda *a: seen.append(a))
    assert [(r, f) for r, f, _ in seen] == list(enumerate(RUNG_FRACTIONS))
    assert [e.metrics["accuracy"] for _, _, e in seen] == list(evaluator.curves[pair.key])
    assert all(e.metrics["latency_s"] == metrics.latency_s for _, _, e in seen)
    assert out.metrics == metrics.to_dict() == evaluator.evaluate(pair).metrics


def test_a_pruned_evaluation_becomes_the_outcome(curves):
    evaluator = ReplayEvaluator(curves)
    pair = next(iter(evaluator.table.values()))[0]

    def stop(rung, fidelity, evaluation):
        if rung == 1:
            raise PrunedEvaluation(evaluation, fidelity, rung)

    outcome = attempt(evaluator, Job(pair, "x", pair.key, report=stop))
    assert outcome.value is None and outcome.reason is None
    assert (outcome.pruned.rung, outcome.pruned.fidelity) == (1, 0.25)


# -- the study with a pruner ---------------------------------------------------------------------
def test_every_pruner_is_optunas_and_an_unknown_one_is_refused():
    names = [type(optuna_pruner(p)).__name__ for p in PRUNERS]
    assert names == ["NopPruner", "MedianPruner", "SuccessiveHalvingPruner", "HyperbandPruner"]
    with pytest.raises(SearchError, match="pruner 'asha' is unknown; allowed: none, median"):
        SearchSettings(pruner="asha")


def test_a_pruner_needs_a_scalar_objective_and_an_evaluator_that_reports(tmp_path):
    with pytest.raises(SearchError, match="pruner='sha' with objective='pareto'"):
        SearchSettings(pruner="sha", objective="pareto")
    plain = ReplayEvaluator(synthetic_table(tmp_path / "t.jsonl", n_archs=4))
    assert not plain.reports_rungs
    with pytest.raises(SearchError, match=r"pruner='median': this evaluator \(ReplayEvaluator\)"):
        run_search(plain, SearchSettings(budget=2, pruner="median"))


@pytest.mark.parametrize("sampler", ["tpe", "trees", "boshcode"])
def test_pruned_pairs_count_as_evaluations_and_are_never_the_best(curves, sampler):
    evaluator = ReplayEvaluator(curves)
    result = run_search(evaluator, SearchSettings(sampler=sampler, budget=20, pruner="sha"))
    pruned = [r for r in result.records if r.pruned]
    assert len(result.records) == 20 and len({r.pair.key for r in result.records}) == 20
    assert pruned and all(r.fidelity in RUNG_FRACTIONS[:-1] for r in pruned)
    for r in pruned:  # stored with its last rung's accuracy
        assert r.evaluation.metrics["accuracy"] == evaluator.curves[r.pair.key][r.rung]
    out = result.to_dict()
    assert not result.best.pruned and out["best"]["objective"] == result.best.value
    assert "fidelity" not in out["best"]
    assert [(p["fidelity"], p["rung"]) for p in out["pruned"]] == [
        (r.fidelity, r.rung) for r in pruned
    ]
    assert out["evaluations"] == 20 and len(out["history"]) == 20


def test_pruned_trials_are_stored_pruned_and_stay_so_on_resume(curves, tmp_path):
    import optuna
    from optuna.trial import TrialState

    from tests.conftest import search_resumed_after

    db = f"sqlite:///{tmp_path / 's.db'}"
    settings = SearchSettings(sampler="tpe", budget=16, pruner="sha")
    result = search_resumed_after(ReplayEvaluator(curves), settings, db, crash_at=10)
    keys = [r.pair.key for r in result.records]
    assert len(keys) == len(set(keys)) == 16  # no pruned pair evaluated again
    study = optuna.load_study(study_name="s", storage=db)
    trials = [t for t in study.trials if t.user_attrs.get("role") == "evaluation"]
    states = {_key(t.user_attrs): t.state for t in trials}
    for record in result.records:
        assert states[record.pair.key] == (
            TrialState.PRUNED if record.pruned else TrialState.COMPLETE
        )
    pruned = [t for t in trials if t.state == TrialState.PRUNED]
    assert pruned and all(0 < t.user_attrs["fidelity"] < 1 for t in pruned)
    assert all(max(t.intermediate_values) == t.user_attrs["rung"] for t in pruned)
    complete = [t for t in trials if t.state == TrialState.COMPLETE]
    assert all(sorted(t.intermediate_values) == [0, 1, 2, 3] for t in complete)
    with pytest.raises(SearchError, match="pruner"):  # the pruner is in the signature
        run_search(ReplayEvaluator(curves), SearchSettings(sampler="tpe", budget=16),
                   storage=db, study_name="s", resume=True)  # fmt: skip


def _key(attrs: dict) -> str:
    return f"{Architecture.from_dict(attrs['model_dict']).hash}@{attrs['device']}"


def test_pruning_in_evaluation_threads(curves):
    result = run_search(
        ReplayEvaluator(curves), SearchSettings(sampler="random", budget=14, pruner="median"),
        parallel=3,
    )  # fmt: skip
    assert len({r.pair.key for r in result.records}) == 14 and not result.best.pruned


def test_search_benchmark_replays_curves_with_a_pruner(curves, run_cli, tmp_path):
    code, out, err = run_cli("search", "--benchmark", curves, "--sampler", "tpe", "--budget",
                             "14", "--pruner", "hyperband", "--json",
                             "--db", tmp_path / "s.db")  # fmt: skip
    assert code == 0, err
    data = json.loads(out)
    assert data["evaluations"] == 14 and "fidelity" not in data["best"]
    assert all(0 < p["fidelity"] < 1 for p in data["pruned"])
    code, out, err = run_cli("search", "--benchmark", curves, "--pruner", "asha")
    assert code == 2 and err.strip().splitlines() == [
        "error: --pruner 'asha' is invalid; allowed: none, median, sha, hyperband"
    ]


# -- the time-to-quality harness -----------------------------------------------------------------
def test_a_cost_run_spends_its_cost_and_its_summary_compares_with_no_pruner(curves):
    evaluator = ReplayEvaluator(curves)
    problem = Problem("curves", "stand-in")
    runs = [
        cost_run(evaluator, problem, "random", pruner, seed, cost=6.0)
        for pruner in ("none", "sha")
        for seed in range(2)
    ]
    for run in runs:
        spent = sum(run["costs"])
        assert 6.0 <= spent < 7.0 and len(run["history"]) == len(run["costs"])
        assert run["distinct"] == len(run["costs"])
        assert regret_at_cost(run, 6.0) is not None and regret_at_cost(run, 8.0) is None
    assert all(c == 1.0 for r in runs[:2] for c in r["costs"])
    assert any(c < 1.0 for r in runs[2:] for c in r["costs"])
    rows = cost_summary(runs, marks=(3, 6))
    assert [r["sampler"] for r in rows] == ["random+none", "random+sha"]
    assert rows[0]["ratio"] in (None, 1.0) and rows[1]["distinct"] >= rows[0]["distinct"]
    assert "random+sha" in cost_table(rows)


def test_the_quick_time_to_quality_report_runs_in_seconds(tmp_path):
    import importlib.util
    import sys

    script = Path(__file__).resolve().parents[1] / "benchmarks" / "bench_search.py"
    spec = importlib.util.spec_from_file_location("bench_search", script)
    bench = importlib.util.module_from_spec(spec)
    sys.modules["bench_search"] = bench
    spec.loader.exec_module(bench)
    rows = bench.quick_pruners(tmp_path, "random", "none,sha")
    assert [r["sampler"] for r in rows] == ["random+none", "random+sha"]
    for row in rows:
        assert row["runs"] == bench.QUICK_COST_SEEDS and row["target"] is not None
        regret = [row["regret"][m] for m in (2.0, 4.0, bench.QUICK_COST)]
        assert regret == sorted(regret, reverse=True)
    assert rows[0]["ratio"] == 1.0 and rows[1]["distinct"] >= rows[0]["distinct"]
    assert bench.cost_marks(100.0) == (10, 25, 50, 100.0) and bench.cost_marks(30) == (10, 25, 30)
