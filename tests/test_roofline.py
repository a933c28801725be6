"""The roofline benchmark (benchmarks/bench_roofline.py, issue 44): its limit, its table and one
tiny end-to-end row, in seconds."""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path

import pytest

from edgetran.space.costs import estimate_costs

from .conftest import tiny_hetero_architecture

SCRIPT = Path(__file__).resolve().parents[1] / "benchmarks" / "bench_roofline.py"


@pytest.fixture(scope="module")
def roofline():
    spec = importlib.util.spec_from_file_location("bench_roofline", SCRIPT)
    module = importlib.util.module_from_spec(spec)
    sys.modules["bench_roofline"] = module  # dataclasses look their module up there
    spec.loader.exec_module(module)
    return module


def test_the_limit_is_the_slower_of_compute_and_memory(roofline):
    compute = roofline.roofline_limit(4e9, 1e6, peak_flops=1e9, bandwidth=1e9)
    assert compute.limit_s == pytest.approx(4.0) and compute.bound == "compute"
    memory = roofline.roofline_limit(1e6, 8e9, peak_flops=1e9, bandwidth=2e9)
    assert memory.limit_s == pytest.approx(4.0) and memory.bound == "memory"


def test_the_limit_counts_flops_and_bytes_as_space_costs_does(roofline):
    arch = tiny_hetero_architecture()
    limit = roofline.model_limit(arch, 8, 128, peak_flops=1e10, bandwidth=1e9)
    costs = estimate_costs(
        arch, batch_size=8, seq_len=128, vocab_size=roofline.VOCAB, relative_positions=False
    )
    assert (limit.flops, limit.bytes) == (costs.flops, costs.bytes)
    assert limit.compute_s == pytest.approx(costs.flops / 1e10)
    assert limit.memory_s == pytest.approx(costs.bytes / 1e9)


def test_the_machine_measurements_are_positive_rates(roofline):
    gemm = roofline.gemm_flops(n=64, repeats=2, threads=1)
    assert set(gemm) == {"torch", "numpy"} and min(gemm.values()) > 1e6
    assert roofline.copy_bandwidth_bytes_per_s(n_bytes=2**20, repeats=2) > 1e6


def test_the_models_are_three_berts_and_two_seeded_heterogeneous_ones(roofline):
    models = roofline.models()
    assert list(models)[:3] == ["BERT-Tiny", "BERT-Mini", "BERT-Small"]
    hetero = list(models.values())[3:]
    assert len(hetero) == 2 and all(roofline.CPU_SPACE.contains(a) for a in hetero)
    assert all(len({op for layer in a.layers for op in layer.ops}) > 1 for a in hetero)
    assert list(roofline.models()) == list(models)


def row(roofline, batch, seq_len, latency_s, costliest=None, model="m"):
    limit = roofline.roofline_limit(2e9, 1e6, peak_flops=1e11, bandwidth=1e10)  # 20 ms
    return roofline.Row(model, batch, seq_len, limit, latency_s, costliest or {})


def test_the_table_gives_each_runtimes_ms_and_ratio_per_shape_and_the_goal_lines(roofline):
    small = row(roofline, 1, 64, {"torch": 0.100})
    met = row(roofline, 8, 128, {"torch": 0.050, "openvino": 0.030, "onnxruntime-int8": 0.010})
    missed = row(roofline, 8, 128, {"torch": 0.100}, {"torch": ("aten::addmm", 0.62)}, "n")
    table = roofline.render_table([small, met, missed]).splitlines()
    assert table[0] == (
        "| model (1 × 64 / 8 × 128) | GFLOP | limit (ms) | torch | openvino | onnxruntime-int8 |"
    )
    assert table[2:] == [
        "| m | 2.00 / 2.00 | 20.0 / 20.0 | 100 (5.0×) / 50.0 (2.5×) | – / 30.0 (1.5×) "
        "| – / 10.0 (0.5×) |",
        "| n | – / 2.00 | – / 20.0 | – / 100 (5.0×) | – / – | – / – |",
    ]
    # int8 is shown but judged against no float32 roofline: the best is openvino's 1.5×
    assert roofline.render_goal([small, met, missed]).splitlines() == [
        "- m: best openvino 1.5× the limit, met",
        "- n: best torch 5.0× the limit, not met; costliest: torch aten::addmm (62%)",
    ]


def test_a_memory_bound_limit_is_marked(roofline):
    limit = roofline.roofline_limit(1e6, 4e9, peak_flops=1e11, bandwidth=1e10)  # 400 ms
    table = roofline.render_table([roofline.Row("m", 1, 64, limit, {"torch": 0.8})])
    assert table.splitlines()[2] == "| m | 0.00 | 400 (memory) | 800 (2.0×) |"


def test_one_tiny_row_end_to_end_names_the_costliest_operation(roofline, tmp_path):
    pytest.importorskip("openvino")
    # an absurd peak puts the limit far below any latency, so the goal is missed
    result = roofline.measure(
        "tiny", tiny_hetero_architecture(), 8, 128, peak_flops=1e18, bandwidth=1e18,
        runtimes=("torch", "openvino"), repeats=2, threads=1, workdir=tmp_path,
    )  # fmt: skip
    assert set(result.latency_s) == {"torch", "openvino"}
    assert all(seconds > 0 for seconds in result.latency_s.values())
    assert not result.met() and set(result.costliest) == {"torch", "openvino"}
    for op, share in result.costliest.values():
        assert op and 0 < share <= 1
    assert result.costliest["torch"][0].startswith("aten::")
    assert roofline.render_table([result]).splitlines()[2].startswith("| tiny | 0.10 | ")
