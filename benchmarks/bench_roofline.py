"""The roofline on this CPU (issue 44): each runtime's latency against the limit
max(FLOPs / peak, bytes / bandwidth).

Measures in one run this machine's float32 GEMM peak (a large square product, best of several,
in torch (MKL) and in NumPy (OpenBLAS), the higher: one library alone may miss the peak)
and its memory bandwidth (a large tensor copy: bytes read + written per second, best of
several); then, for BERT-Tiny, BERT-Mini, BERT-Small and two heterogeneous models sampled with
seed 0 from the co-search's CPU-sized space (``codesign.config.CPU_SPACE``), at batch 1 × 64
and 8 × 128, the median latency of each runtime (runners interleaved round by round on the same
inputs, as ``bench_export.py`` does) against the limit of the model's FLOPs and bytes from
``edgetran.space.costs``. Models are built as ``make demo`` deploys them: absolute positions,
BERT's vocabulary, seeded random weights; OpenVINO runs at f32.

Goal: the best float32 runtime within 2× of the limit at batch 8 × 128. Where it is not, the
costliest operation is named: torch.profiler's top operator by self CPU time for the torch run
and OpenVINO's top layer type by its per-layer counters (``PERF_COUNT``).

    python benchmarks/bench_roofline.py [--repeats 10] [--threads 2] [--jsonl roofline.jsonl]
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import tempfile
import time
from collections import defaultdict
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from edgetran.codesign.config import CPU_SPACE as CODESIGN_CPU_SPACE
from edgetran.profile.environment import cpu_model
from edgetran.space import Architecture, DesignSpace, named_architecture, sample
from edgetran.space.costs import estimate_costs

VOCAB = 30522
MAX_POSITIONS = 512
SHAPES = ((1, 64), (8, 128))
GOAL_SHAPE = (8, 128)
GOAL_RATIO = 2.0
RUNTIMES = ("torch", "onnxruntime", "openvino", "onnxruntime-int8")
#: Runtimes judged against the float32 roofline (int8 has another peak; it is shown only).
FLOAT_RUNTIMES = ("torch", "onnxruntime", "openvino")
#: ``edgetran codesign``'s default space (the co-search's CPU-sized corner).
CPU_SPACE = DesignSpace(**CODESIGN_CPU_SPACE)


def models(seed: int = 0) -> dict[str, Architecture]:
    """The named BERTs and two heterogeneous models drawn from ``CPU_SPACE`` with ``seed``."""
    labels = ("BERT-Tiny", "BERT-Mini", "BERT-Small")
    named = {label: named_architecture(label.lower()) for label in labels}
    for arch in sample(2, method="random", seed=seed, space=CPU_SPACE):
        named[f"{arch.hash[:10]} (hetero)"] = arch
    return named


# -- the machine ---------------------------------------------------------------------------------
def gemm_flops(n: int = 2048, repeats: int = 5, threads: int = 2) -> dict[str, float]:
    """The best float32 FLOP/s of an ``(n, n) @ (n, n)`` product (2n³ FLOPs) on ``threads``
    threads in torch (MKL) and in NumPy (OpenBLAS); the machine's peak is the higher."""
    import torch
    from threadpoolctl import threadpool_limits

    generator = torch.Generator().manual_seed(0)
    a, b = (torch.rand(n, n, generator=generator) for _ in range(2))
    out = torch.empty(n, n)
    a_np, b_np, out_np = a.numpy(), b.numpy(), out.numpy().copy()
    products = {
        "torch": lambda: torch.mm(a, b, out=out),
        "numpy": lambda: np.matmul(a_np, b_np, out=out_np),
    }
    best = {}
    with threadpool_limits(threads):
        torch.set_num_threads(threads)
        for library, product in products.items():
            product()  # warm-up: thread pool and caches
            best[library] = 2 * n**3 / min(_seconds(product) for _ in range(repeats))
    return best


def copy_bandwidth_bytes_per_s(n_bytes: int = 256 * 2**20, repeats: int = 5) -> float:
    """The best memory bandwidth of a float32 tensor copy of ``n_bytes``, counting the bytes
    read and the bytes written."""
    import torch

    source = torch.rand(n_bytes // 4)
    target = torch.empty_like(source)
    target.copy_(source)  # warm-up: the pages are touched
    best = min(_seconds(lambda: target.copy_(source)) for _ in range(repeats))
    return 2 * source.nbytes / best


def _seconds(work) -> float:
    start = time.perf_counter()
    work()
    return time.perf_counter() - start


# -- the limit -----------------------------------------------------------------------------------
@dataclass(frozen=True)
class Limit:
    """The roofline limit of one model at one shape."""

    flops: int
    bytes: int
    compute_s: float
    memory_s: float

    @property
    def limit_s(self) -> float:
        return max(self.compute_s, self.memory_s)

    @property
    def bound(self) -> str:
        return "compute" if self.compute_s >= self.memory_s else "memory"


def roofline_limit(flops: int, n_bytes: int, peak_flops: float, bandwidth: float) -> Limit:
    """max(FLOPs / peak, bytes / bandwidth), with both terms kept."""
    return Limit(flops, n_bytes, flops / peak_flops, n_bytes / bandwidth)


def model_limit(
    arch: Architecture, batch: int, seq_len: int, peak_flops: float, bandwidth: float
) -> Limit:
    """The limit of ``arch`` as :func:`build_model` builds it, from ``space.costs`` (float32)."""
    costs = estimate_costs(
        arch,
        batch_size=batch,
        seq_len=seq_len,
        vocab_size=VOCAB,
        max_position_embeddings=MAX_POSITIONS,
        relative_positions=False,
    )
    return roofline_limit(costs.flops, costs.bytes, peak_flops, bandwidth)


# -- the runtimes --------------------------------------------------------------------------------
def build_model(arch: Architecture, seed: int = 0) -> Any:
    import torch

    from edgetran.model import FlexiBertConfig, FlexiBertModel

    torch.manual_seed(seed)
    config = FlexiBertConfig(
        arch,
        vocab_size=VOCAB,
        max_position_embeddings=MAX_POSITIONS,
        position_embedding_type="absolute",
    )
    return FlexiBertModel(config).eval()


def build_runners(
    model: Any, runtimes: tuple[str, ...], batch: int, seq_len: int, threads: int, workdir: Path
) -> tuple[dict[str, Any], dict[str, Path]]:
    """The project's runner of each runtime, made as profiling makes it
    (:func:`edgetran.profile.protocol.model_runner`), and each exported artifact."""
    from edgetran.profile.protocol import model_runner

    runners: dict[str, Any] = {}
    artifacts: dict[str, Path] = {}
    for runtime in runtimes:
        runner, artifact = model_runner(
            model,
            runtime,
            None,
            workdir / runtime,
            threads=threads,
            batch_size=batch,
            seq_len=seq_len,
        )
        runners[runtime] = runner
        if artifact is not None:
            artifacts[runtime] = artifact
    return runners, artifacts


def example_inputs(batch: int, seq_len: int, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    ids = np.random.default_rng(seed).integers(0, VOCAB, (batch, seq_len), dtype=np.int64)
    return ids, np.ones_like(ids)


def median_latencies(
    runners: dict[str, Any], ids: np.ndarray, mask: np.ndarray, repeats: int, warmup: int = 2
) -> dict[str, float]:
    """The median seconds of each runner, interleaved round by round on the same inputs."""
    prepared = {name: runner.prepare(ids, mask) for name, runner in runners.items()}
    for name, runner in runners.items():
        for _ in range(warmup):
            runner.run(prepared[name])
    samples: dict[str, list[float]] = {name: [] for name in runners}
    for _ in range(repeats):
        for name, runner in runners.items():
            samples[name].append(_seconds(lambda r=runner, p=prepared[name]: r.run(p)))
    return {name: statistics.median(values) for name, values in samples.items()}


# -- the costliest operation ---------------------------------------------------------------------
def top_torch_op(runner: Any, ids: np.ndarray, mask: np.ndarray) -> tuple[str, float]:
    """torch.profiler's operator with the most self CPU time in one run, and its share."""
    from torch.profiler import ProfilerActivity, profile

    prepared = runner.prepare(ids, mask)
    runner.run(prepared)
    with profile(activities=[ProfilerActivity.CPU]) as profiler:
        runner.run(prepared)
    events = profiler.key_averages()
    top = max(events, key=lambda event: event.self_cpu_time_total)
    return top.key, top.self_cpu_time_total / sum(e.self_cpu_time_total for e in events)


def top_openvino_op(
    xml: Path, ids: np.ndarray, mask: np.ndarray, threads: int
) -> tuple[str, float]:
    """OpenVINO's layer type with the most real time in one run (its ``PERF_COUNT`` counters,
    at f32 on the CPU), and its share."""
    import openvino as ov

    core = ov.Core()
    config = {"PERF_COUNT": True, "INFERENCE_PRECISION_HINT": "f32"}
    config["INFERENCE_NUM_THREADS"] = threads
    request = core.compile_model(core.read_model(xml), "CPU", config).create_infer_request()
    inputs = [np.ascontiguousarray(a, dtype=np.int64) for a in (ids, mask)]
    request.infer(inputs)
    request.infer(inputs)  # the counters are the last run's
    seconds: dict[str, float] = defaultdict(float)
    for info in request.profiling_info:
        seconds[info.node_type] += info.real_time.total_seconds()
    top = max(seconds, key=seconds.__getitem__)
    return top, seconds[top] / sum(seconds.values())


# -- one model at one shape ----------------------------------------------------------------------
@dataclass
class Row:
    """One model at one shape: its limit and each runtime's median latency."""

    model: str
    batch: int
    seq_len: int
    limit: Limit
    latency_s: dict[str, float]
    costliest: dict[str, tuple[str, float]] = field(default_factory=dict)

    def ratio(self, runtime: str) -> float:
        return self.latency_s[runtime] / self.limit.limit_s

    def best(self) -> tuple[str, float]:
        """The float32 runtime nearest the limit, and its ratio."""
        floats = [r for r in self.latency_s if r in FLOAT_RUNTIMES] or list(self.latency_s)
        name = min(floats, key=self.ratio)
        return name, self.ratio(name)

    def judged(self) -> bool:
        return (self.batch, self.seq_len) == GOAL_SHAPE

    def met(self) -> bool:
        return self.best()[1] <= GOAL_RATIO

    def to_dict(self) -> dict[str, Any]:
        return asdict(self) | {
            "limit_s": self.limit.limit_s,
            "bound": self.limit.bound,
            "ratio": {r: self.ratio(r) for r in self.latency_s},
            "best": self.best(),
        }


def measure(
    label: str,
    arch: Architecture,
    batch: int,
    seq_len: int,
    *,
    peak_flops: float,
    bandwidth: float,
    runtimes: tuple[str, ...] = RUNTIMES,
    repeats: int = 10,
    threads: int = 2,
    workdir: Path,
) -> Row:
    """One table row: export, time every runtime, and where the goal shape misses the goal,
    profile the costliest operation (torch and OpenVINO, when measured)."""
    from edgetran.profile.protocol import torch_threads_kept

    limit = model_limit(arch, batch, seq_len, peak_flops, bandwidth)
    model = build_model(arch)
    with torch_threads_kept():  # the torch runner pins torch's (process-wide) threads
        runners, artifacts = build_runners(model, runtimes, batch, seq_len, threads, workdir)
        ids, mask = example_inputs(batch, seq_len)
        row = Row(label, batch, seq_len, limit, median_latencies(runners, ids, mask, repeats))
        if row.judged() and not row.met():
            if "torch" in runners:
                row.costliest["torch"] = top_torch_op(runners["torch"], ids, mask)
            if "openvino" in artifacts:
                xml = artifacts["openvino"]
                row.costliest["openvino"] = top_openvino_op(xml, ids, mask, threads)
    return row


# -- the report ----------------------------------------------------------------------------------
def render_table(rows: list[Row]) -> str:
    """A Markdown table, one line per model and each cell one value per shape (``a / b``): the
    GFLOPs, the limit (marked where memory-bound) and per runtime the median ms and its ratio to
    the limit."""
    shapes = list(dict.fromkeys((row.batch, row.seq_len) for row in rows))
    runtimes = list(dict.fromkeys(r for row in rows for r in row.latency_s))
    by_model: dict[str, dict[tuple[int, int], Row]] = defaultdict(dict)
    for row in rows:
        by_model[row.model][row.batch, row.seq_len] = row
    header = " / ".join(f"{batch} × {seq_len}" for batch, seq_len in shapes)
    lines = [
        f"| model ({header}) | GFLOP | limit (ms) | " + " | ".join(runtimes) + " |",
        "|---|---|---|" + "---|" * len(runtimes),
    ]
    for model, found in by_model.items():
        per_shape = [found.get(shape) for shape in shapes]
        cells = [
            _joined(per_shape, lambda row: f"{row.limit.flops / 1e9:.2f}"),
            _joined(per_shape, _limit_cell),
            *(_joined(per_shape, lambda row, r=r: _latency_cell(row, r)) for r in runtimes),
        ]
        lines.append(f"| {model} | " + " | ".join(cells) + " |")
    return "\n".join(lines)


def _joined(rows: list[Row | None], cell) -> str:
    return " / ".join("–" if row is None else cell(row) for row in rows)


def _limit_cell(row: Row) -> str:
    memory = " (memory)" if row.limit.bound == "memory" else ""
    return f"{_ms(row.limit.limit_s)}{memory}"


def _latency_cell(row: Row, runtime: str) -> str:
    if runtime not in row.latency_s:
        return "–"
    return f"{_ms(row.latency_s[runtime])} ({row.ratio(runtime):.1f}×)"


def _ms(seconds: float) -> str:
    """Milliseconds to three significant digits (two decimals below 10 ms)."""
    ms = seconds * 1e3
    return f"{ms:.{2 if ms < 10 else 1 if ms < 100 else 0}f}"


def render_goal(rows: list[Row]) -> str:
    """One line per model at the goal shape: its best float32 runtime's ratio, met or not, and
    where not, the costliest operation."""
    lines = []
    for row in (row for row in rows if row.judged()):
        name, ratio = row.best()
        verdict = "met" if row.met() else "not met"
        line = f"- {row.model}: best {name} {ratio:.1f}× the limit, {verdict}"
        costliest = [f"{r} {op} ({share:.0%})" for r, (op, share) in row.costliest.items()]
        if costliest:
            line += "; costliest: " + ", ".join(costliest)
        lines.append(line)
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--repeats", type=int, default=10)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--runtimes", nargs="+", choices=RUNTIMES, default=list(RUNTIMES))
    parser.add_argument("--jsonl", type=Path, help="also write one JSON line per row here")
    args = parser.parse_args()
    import torch
    from transformers.utils import logging as hf_logging

    torch.set_num_threads(args.threads)
    hf_logging.set_verbosity_error()
    started = time.perf_counter()
    gemm = gemm_flops(threads=args.threads)
    peak = max(gemm.values())
    bandwidth = copy_bandwidth_bytes_per_s()
    print(
        f"Machine: {platform.machine()} {cpu_model()}, {args.threads} threads, torch "
        f"{torch.__version__}, load {os.getloadavg()[0]:.2f}; fp32 GEMM peak "
        f"{peak / 1e9:.1f} GFLOP/s (2048² product, best of 5; "
        + ", ".join(f"{lib} {flops / 1e9:.1f}" for lib, flops in gemm.items())
        + f"), copy bandwidth {bandwidth / 1e9:.1f} GB/s (256 MiB, read + written, best of 5); "
        f"median of {args.repeats} interleaved runs.\n",
        flush=True,
    )
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        for label, arch in models().items():
            for batch, seq_len in SHAPES:
                workdir = Path(tmp) / f"{arch.hash[:10]}-{batch}x{seq_len}"
                row = measure(
                    label, arch, batch, seq_len, peak_flops=peak, bandwidth=bandwidth,
                    runtimes=tuple(args.runtimes), repeats=args.repeats,
                    threads=args.threads, workdir=workdir,
                )  # fmt: skip
                print(f"{label} {batch} × {seq_len}: {row.latency_s}", flush=True)
                rows.append(row)
    if args.jsonl:
        with args.jsonl.open("w") as out:
            for row in rows:
                out.write(json.dumps(row.to_dict()) + "\n")
    print(f"\n{render_table(rows)}\n\n{render_goal(rows)}")
    print(f"\n{time.perf_counter() - started:.0f} s in all; load {os.getloadavg()[0]:.2f}")


if __name__ == "__main__":
    main()
