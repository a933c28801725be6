"""The live pruning benchmark's harness (benchmarks/bench_pruning_live.py, issue 42) in its
``--quick`` form: a toy task, a simulated device, a few seconds per arm."""

from __future__ import annotations

import importlib.util
import json
import sys
from pathlib import Path

SCRIPT = Path(__file__).resolve().parents[1] / "benchmarks" / "bench_pruning_live.py"


def test_the_quick_live_pruning_benchmark_reports_each_arm(tmp_path, monkeypatch, capsys):
    from edgetran.train import oracle

    spec = importlib.util.spec_from_file_location("bench_pruning_live", SCRIPT)
    bench = importlib.util.module_from_spec(spec)
    monkeypatch.setitem(sys.modules, "bench_pruning_live", bench)
    spec.loader.exec_module(bench)
    monkeypatch.setitem(oracle.BUDGETS, "quick", bench.toy_budget())
    rows = bench.quick(tmp_path)
    assert [r["pruner"] for r in rows] == ["none", "median"]
    for row in rows:
        # stopped by the clock (a training may run one rung past it), not by the budget
        assert row["limit_s"] == bench.QUICK_SECONDS <= row["seconds"] < 60
        assert row["candidates"] == row["trained"] + row["pruned"] >= 1
        assert row["winner"] is None or 0 <= row["winner"]["accuracy"] <= 1
    lines = (tmp_path / "runs.jsonl").read_text().splitlines()
    assert [json.loads(line)["pruner"] for line in lines] == ["none", "median"]
    assert "| pruner | wall s |" in capsys.readouterr().out
