"""Latency of exported models in ONNX Runtime and OpenVINO (f32 and bf16) against PyTorch eager.

All runners of one model are timed in the same process, interleaved round by round, on the
same inputs (batch 1 × 128, no padding); each timing covers inference only (inputs prepared
beforehand). Prints a Markdown table of medians and ratios to PyTorch eager.

    python benchmarks/bench_export.py [--repeats 30] [--threads 2]
"""

from __future__ import annotations

import argparse
import platform
import statistics
import tempfile
import time
from pathlib import Path

import numpy as np
import torch
from transformers.utils import logging as hf_logging

from edgetran.export import ExportSpec, ExportWrapper, create_runner, export_model
from edgetran.model import FlexiBertConfig, FlexiBertModel
from edgetran.space import Architecture, Layer, named_architecture

SEQ_LEN = 128
VOCAB = 30522
HETERO = Architecture(
    (
        Layer(256, ("sa_sdp", "sa_sdp", "l_dft", "c_9"), 64, (1024,)),
        Layer(256, ("sa_wma", "l_dct", "l_dft", "c_5"), 64, (512, 512)),
        Layer(512, ("sa_sdp",) * 4 + ("l_dft",) * 2 + ("c_13",) * 2, 64, (2048,)),
        Layer(256, ("sa_sdp", "sa_wma", "l_dct", "c_5"), 64, (1024,)),
    )
)
MODELS = {
    "BERT-Mini": named_architecture("bert-mini"),
    "BERT-Small": named_architecture("bert-small"),
    "heterogeneous (all 7 ops, h 256/512)": HETERO,
}


def median_latencies(runners: dict, repeats: int) -> dict[str, float]:
    rng = np.random.default_rng(0)
    ids = rng.integers(0, VOCAB, (1, SEQ_LEN), dtype=np.int64)
    mask = np.ones_like(ids)
    prepared = {name: runner.prepare(ids, mask) for name, runner in runners.items()}
    samples: dict[str, list[float]] = {name: [] for name in runners}
    for name, runner in runners.items():  # warm-up
        for _ in range(3):
            runner.run(prepared[name])
    for _ in range(repeats):
        for name, runner in runners.items():
            start = time.perf_counter()
            runner.run(prepared[name])
            samples[name].append(time.perf_counter() - start)
    return {name: statistics.median(values) for name, values in samples.items()}


def runners_for(arch: Architecture, workdir: Path, threads: int) -> dict:
    torch.manual_seed(0)
    config = FlexiBertConfig(arch, vocab_size=VOCAB, position_embedding_type="absolute")
    model = FlexiBertModel(config).eval()
    spec = dict(batch_size=1, seq_len=SEQ_LEN)
    onnx = export_model(model, workdir / "onnx", ExportSpec("onnx", **spec), verify=True)
    ov = export_model(model, workdir / "ov", ExportSpec("openvino", **spec), verify=True)
    assert onnx.verification["passed"] and ov.verification["passed"]
    bf16 = create_runner("openvino", ov.artifact, precision="bf16", threads=threads)
    return {
        "torch": create_runner("torch", ExportWrapper(model)),
        "onnxruntime": create_runner("onnxruntime", onnx.artifact, threads=threads),
        "openvino f32": create_runner("openvino", ov.artifact, precision="f32", threads=threads),
        f"openvino bf16 (applied: {bf16.precision})": bf16,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--repeats", type=int, default=30)
    parser.add_argument("--threads", type=int, default=2)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    hf_logging.set_verbosity_error()
    print(
        f"Machine: {platform.machine()}, {args.threads} threads, torch {torch.__version__}; "
        f"batch 1 × {SEQ_LEN}, absolute positions, median of {args.repeats} interleaved runs.\n"
    )
    print("| model | runtime | median (ms) | × torch eager |")
    print("|---|---|---|---|")
    with tempfile.TemporaryDirectory() as tmp:
        for label, arch in MODELS.items():
            runners = runners_for(arch, Path(tmp) / label.split()[0], args.threads)
            medians = median_latencies(runners, args.repeats)
            for name, seconds in medians.items():
                ratio = seconds / medians["torch"]
                print(f"| {label} | {name} | {seconds * 1e3:.2f} | {ratio:.2f} |")


if __name__ == "__main__":
    main()
