"""Suite problems shaped like real co-design tables (issue 43), generated from the ProTran
measurements in ../shared/data: sparse devices, a needle, the reference's normalisers, noisy
boards; and the quick regret report of benchmarks/bench_search.py."""

from __future__ import annotations

import importlib.util
import json
import sys
from collections import Counter
from pathlib import Path

import numpy as np
import pytest

from edgetran.metrics import COST_KEYS
from edgetran.search import PaperObjective, ReplayEvaluator
from edgetran.search.suite import (
    NEEDLE_GAP,
    PLATEAU_WIDTH,
    SHAPED_PROBLEMS,
    RealShape,
    board_noise,
    read_boards,
    shaped_table,
    suite_run,
)
from edgetran.space import Architecture
from tests import conftest

SCRIPT = Path(__file__).resolve().parents[1] / "benchmarks" / "bench_search.py"


@pytest.fixture(scope="module")
def boards():
    if not conftest.SHARED_DATA.is_dir():
        pytest.skip("../shared/data is not available")
    return read_boards(conftest.SHARED_DATA / "protran")


@pytest.fixture(scope="module")
def tables(boards):
    """The clean dense table and every shaped problem's, by name."""
    return {"clean": shaped_table(boards, RealShape())} | {
        p.name: shaped_table(boards, p.shape) for p in SHAPED_PROBLEMS
    }


def _devices_per_arch(rows: list[dict]) -> Counter:
    return Counter(Counter(Architecture.from_dict(r["arch"]).hash for r in rows).values())


def _accuracy_by_arch(rows: list[dict]) -> dict[str, float]:
    return {Architecture.from_dict(r["arch"]).hash: r["metrics"]["accuracy"] for r in rows}


def _best_row(table) -> dict:
    return max(table.rows, key=lambda r: table.paper.value(r["metrics"]))


def test_the_clean_table_offers_every_architecture_on_every_board(tables, boards):
    counts = _devices_per_arch(tables["clean"].rows)
    assert set(counts) == {len(boards)}
    assert tables["clean"].needle is None


def test_sparse_devices_offers_most_architectures_on_one_board_only(tables, boards):
    counts = _devices_per_arch(tables["sparse-devices"].rows)
    archs = sum(counts.values())
    assert counts[1] / archs > 0.9  # as the reference: 670 of 686
    assert counts[len(boards)] == 16  # ProTran's shared Latin-hypercube models
    measured = {(a.hash, d) for d, pairs in boards.items() for a, _ in pairs}
    offered = {(Architecture.from_dict(r["arch"]).hash, r["device"])
               for r in tables["sparse-devices"].rows}  # fmt: skip
    assert offered == measured
    clean = {json.dumps(r["arch"]) + r["device"]: r for r in tables["clean"].rows}
    assert all(clean[json.dumps(r["arch"]) + r["device"]] == r
               for r in tables["sparse-devices"].rows)  # fmt: skip


@pytest.mark.parametrize("name", ["needle", "real-shaped"])
def test_needle_is_one_best_model_above_a_plateau(tables, name):
    table = tables[name]
    accuracy = _accuracy_by_arch(table.rows)
    ranked = sorted(accuracy.values(), reverse=True)
    assert accuracy[table.needle] == ranked[0]
    assert ranked[0] - ranked[1] == pytest.approx(NEEDLE_GAP, abs=2e-6)
    # a quarter of the models within the plateau's width of the next best
    plateau = [a for a in ranked[1:] if a >= ranked[1] - PLATEAU_WIDTH - 1e-6]
    assert len(plateau) >= 0.2 * len(ranked)
    assert Architecture.from_dict(_best_row(table)["arch"]).hash == table.needle


def _variance_shares(table) -> dict[str, float]:
    keys = ("accuracy", *COST_KEYS)
    metrics = {k: np.array([r["metrics"][k] for r in table.rows]) for k in keys}
    weights, norms = table.paper.weights, {"accuracy": 1.0, **table.paper.norms}
    variance = {k: np.var(weights[k] * metrics[k] / norms[k]) for k in metrics}
    return {k: v / sum(variance.values()) for k, v in variance.items()}


def test_reference_norms_leave_accuracy_and_peak_power_to_decide(tables):
    reference = tables["reference-norms"]
    assert reference.paper == PaperObjective()
    assert reference.paper.norms == {"latency_s": 1000, "energy_j": 2000, "peak_power_w": 300}
    shares = _variance_shares(reference)
    assert shares["accuracy"] + shares["peak_power_w"] > 0.9
    # the clean table's norms are its largest costs: there latency and energy count
    clean = tables["clean"]
    assert clean.paper.norms == pytest.approx(
        {k: max(r["metrics"][k] for r in clean.rows) for k in COST_KEYS}
    )
    assert _variance_shares(clean)["accuracy"] + _variance_shares(clean)["peak_power_w"] < 0.6


def test_noisy_boards_spread_costs_as_the_data_does(tables, boards):
    def as_boards(rows: list[dict]) -> dict:
        by_device: dict[str, list] = {}
        for r in rows:
            by_device.setdefault(r["device"], []).append(
                (Architecture.from_dict(r["arch"]), r["metrics"])
            )
        return by_device

    data, noisy = board_noise(boards), board_noise(as_boards(tables["noisy-boards"].rows))
    clean = board_noise(as_boards(tables["clean"].rows))
    for device in boards:
        ratio = noisy[device] / data[device]
        assert np.all((ratio > 0.5) & (ratio < 2)), (device, ratio)
        assert np.all(clean[device] < 0.5 * data[device])  # the trend alone is smooth
    # one draw per pair, the same for the same seed
    assert shaped_table(boards, RealShape(noisy_boards=True)).rows == tables["noisy-boards"].rows


def test_a_shaped_problem_is_searched_under_its_own_objective(tmp_path, tables):
    table = tables["real-shaped"]
    path = tmp_path / "real-shaped.jsonl"
    path.write_text("".join(json.dumps(r) + "\n" for r in table.rows))
    problem = next(p for p in SHAPED_PROBLEMS if p.name == "real-shaped")
    assert problem.shape == RealShape(True, True, True, True)
    run = suite_run(ReplayEvaluator(path), problem, "random", seed=0, budget=5, paper=table.paper)
    assert run["best"] == pytest.approx(table.paper.value(_best_row(table)["metrics"]))


def test_real_shape_refuses_a_value_that_is_not_a_flag():
    with pytest.raises(ValueError, match="needle=1; allowed: true, false"):
        RealShape(needle=1)


def test_the_quick_regret_report_has_its_fields_and_regret_never_grows(tmp_path):
    spec = importlib.util.spec_from_file_location("bench_search", SCRIPT)
    bench = importlib.util.module_from_spec(spec)
    sys.modules["bench_search"] = bench
    spec.loader.exec_module(bench)
    rows = bench.quick(tmp_path)
    assert [r["sampler"] for r in rows] == ["boshcode", "tpe", "trees", "random"]
    for row in rows:
        assert row["runs"] == bench.QUICK_SEEDS and row["budget"] == bench.QUICK_BUDGET
        keys = {"regret", "to_epsilon", "to_best", "to_best_p90", "misses", "seconds_per_proposal"}
        assert set(row) >= keys
        regret = [row["regret"][m] for m in bench.QUICK_MARKS]
        assert all(r is not None and r >= 0 for r in regret)
        assert regret == sorted(regret, reverse=True)
        assert 1 <= row["to_epsilon"] <= row["to_best"] <= bench.QUICK_BUDGET + 1
        assert 0 <= row["misses"] <= row["runs"]
    runs = [json.loads(line) for line in (tmp_path / "quick.jsonl").read_text().splitlines()]
    assert len(runs) == 4 * bench.QUICK_SEEDS and all("best" in r for r in runs)
