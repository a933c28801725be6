"""Co-design with pruning and promotion (issue 42): ``--pruner`` into the search's settings,
``--promote K`` trains the search's K best distinct full-budget pairs at the final budget, and
the answer is chosen on those accuracies."""

from __future__ import annotations

import json

import pytest

from edgetran.codesign import CodesignConfig, run_codesign
from edgetran.codesign.conclude import promoted_records
from edgetran.codesign.config import CodesignError
from edgetran.codesign.pipeline import check_before_work
from tests.test_codesign import _args, _config, _inputs, _tiny
from tests.test_train import tiny_arch, tiny_budgets  # noqa: F401 (fixture)


@pytest.mark.parametrize(
    ("extra", "message"),
    [
        (["--pruner", "asha"], "pruner='asha' is invalid; allowed: none, median, sha, hyperband"),
        (["--promote", 0, "--final-budget", "standard"], "promote=0 is invalid"),
        (["--promote", 5, "--final-budget", "standard"], "at most evaluations (4)"),
        (["--promote", 2], "allowed: a final_budget other than budget"),
        (["--pruner", "median", "--objective", "pareto"], "allowed with it: objective paper"),
    ],
)
def test_the_cli_refuses_bad_pruning_and_promotion_before_any_work(
    tmp_path, run_cli, extra, message
):
    task, board, space = _inputs(tmp_path)
    code, _, err = run_cli(*_args(tmp_path, task, board, space), *extra)
    assert code == 2 and message in err and "Traceback" not in err
    assert len(err.strip().splitlines()) == 1
    assert not (tmp_path / "w.db").exists()


def test_a_pruner_is_refused_with_a_cluster_and_round_trips(tmp_path):
    task, board, _ = _inputs(tmp_path)
    config = _config(tmp_path, task, board, pruner="median", promote=2, final_budget="standard")
    assert CodesignConfig.from_dict(json.loads(json.dumps(config.to_dict()))) == config
    with pytest.raises(CodesignError, match="pruner='median' needs the trainings in this"):
        check_before_work(config, cluster=object())
    assert CodesignConfig().pruner == "none" and CodesignConfig().promote is None


def _record(hash_seed: int, device: str, objective: float, **changes) -> dict:
    from edgetran.space import sample

    arch = sample(hash_seed + 1, method="random", seed=0)[hash_seed]
    return {"arch": arch.to_model_dict(), "device": device, "objective": objective,
            "feasible": True, "fidelity": 1.0} | changes  # fmt: skip


def test_promotion_takes_the_best_distinct_full_budget_pairs_feasible_first():
    records = [
        _record(0, "a", 0.5),
        _record(0, "a", 0.6),  # the same pair again (another run): counted once, at its best
        _record(1, "a", 0.9, fidelity=0.25),  # pruned: never promoted
        _record(2, "b", 0.95, feasible=False),
        _record(3, "b", 0.4),
        _record(0, "b", 0.3),  # the same architecture on another device: another pair
    ]
    chosen = promoted_records(records, 3)
    assert [(r["objective"], r["device"]) for r in chosen] == [(0.6, "a"), (0.4, "b"), (0.3, "b")]
    assert len(promoted_records(records, 10)) == 4  # fewer remain than asked


def test_a_promoted_run_chooses_on_final_budget_accuracies_and_records_them(tmp_path, monkeypatch):
    from edgetran.train import oracle

    _tiny(monkeypatch)
    monkeypatch.setitem(
        oracle.BUDGETS, "standard",
        oracle.Budget(0, 8, 16, 1, 8, (8,), 20, 20, 2e-4, (3e-4, 1e-3)),
    )  # fmt: skip
    task, board, _ = _inputs(tmp_path)
    config = _config(tmp_path, task, board, evaluations=3, compare=None, growprune=False,
                     promote=2, final_budget="standard")  # fmt: skip
    result = run_codesign(config).result
    promotion = result["promotion"]
    assert promotion["budget"] == "standard" and len(promotion["pairs"]) == 2
    promoted = {p["arch_hash"]: p for p in promotion["pairs"]}
    searched = result["decision"]["candidates"]
    from_search = [c for c in searched if c["source"] != "reference"]
    assert from_search and {c["arch_hash"] for c in from_search} <= set(promoted)
    for c in from_search:  # at the final budget, on every device
        assert c["accuracy"] == promoted[c["arch_hash"]]["accuracy"]
    report = (tmp_path / "out" / "report.html").read_text()
    assert "2 best distinct pairs were trained at the standard budget" in report
    # resumed: the promoted trainings are read back from the store, not repeated
    resumed = run_codesign(config, resume=True).result
    assert resumed["promotion"] == promotion


@pytest.mark.usefixtures("tiny_budgets")
def test_the_runs_accuracy_reports_rungs_to_a_pruner_except_on_a_cluster(tmp_path):
    from edgetran.codesign.context import RunContext
    from edgetran.search import LiveEvaluator
    from edgetran.search.fidelity import RUNG_FRACTIONS
    from edgetran.store import Store

    task, board, _ = _inputs(tmp_path)
    config = _config(tmp_path, task, board, pruner="median")
    with Store(tmp_path / "w.db") as store:
        ctx = RunContext(config, store, tmp_path / "out", lambda line: None)
        accuracy = ctx.accuracy(config.budget)
        assert LiveEvaluator(accuracy, {}, {}).reports_rungs
        seen = []
        accuracy(tiny_arch(), on_rung=lambda *args: seen.append(args[:2]))
        assert seen == list(enumerate(RUNG_FRACTIONS))
        on_cluster = RunContext(config, store, tmp_path / "out", print, cluster=object())
        assert not LiveEvaluator(on_cluster.accuracy(config.budget), {}, {}).reports_rungs
