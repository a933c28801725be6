"""Latency of exported models in ONNX Runtime, OpenVINO (f32 and bf16) and LiteRT (f32 and
dynamic int8, when edgetran[litert] is installed) against PyTorch eager; artifact sizes; and
LiteRT int8's accuracy change on a fine-tuned classifier.

All runners of one model are timed in the same process, interleaved round by round, on the
same inputs (batch 1 × 128, no padding); each timing covers inference only (inputs prepared
beforehand). Prints Markdown tables of medians and ratios to PyTorch eager, and of sizes.

``--accuracy DIR`` scores a BERT-Mini classifier fine-tuned on tweet-sentiment (the oracle's
quick budget; trained into DIR first when DIR holds none) on the test split in PyTorch, LiteRT
f32 and LiteRT dynamic int8.

    python benchmarks/bench_export.py [--repeats 30] [--threads 2] [--models BERT-Mini ...]
    python benchmarks/bench_export.py --accuracy DIR [--threads 2]
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

from edgetran.export import DYNAMIC_INT8, ExportSpec, ExportWrapper, create_runner, export_model
from edgetran.model import FlexiBertConfig, FlexiBertModel, load_model
from edgetran.plugins import RUNTIMES
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


def runners_for(arch: Architecture, workdir: Path, threads: int) -> tuple[dict, dict]:
    """The runners of one model, and the size in MB of each artifact (every file the exporter
    wrote but metadata.json)."""
    torch.manual_seed(0)
    config = FlexiBertConfig(arch, vocab_size=VOCAB, position_embedding_type="absolute")
    model = FlexiBertModel(config).eval()
    spec = dict(batch_size=1, seq_len=SEQ_LEN)
    onnx = export_model(model, workdir / "onnx", ExportSpec("onnx", **spec), verify=True)
    ov = export_model(model, workdir / "ov", ExportSpec("openvino", **spec), verify=True)
    assert onnx.verification["passed"] and ov.verification["passed"]
    bf16 = create_runner("openvino", ov.artifact, precision="bf16", threads=threads)
    runners = {
        "torch": create_runner("torch", ExportWrapper(model)),
        "onnxruntime": create_runner("onnxruntime", onnx.artifact, threads=threads),
        "openvino f32": create_runner("openvino", ov.artifact, precision="f32", threads=threads),
        f"openvino bf16 (applied: {bf16.precision})": bf16,
    }
    sizes = {"onnx": artifact_mb(onnx.artifact), "openvino": artifact_mb(ov.artifact)}
    if RUNTIMES.why_not("litert"):
        print(f"LiteRT skipped: {RUNTIMES.why_not('litert')}")
        return runners, sizes
    for quantize in ("none", DYNAMIC_INT8):
        name = "litert f32" if quantize == "none" else f"litert {quantize}"
        litert_spec = ExportSpec("litert", quantize=quantize, **spec)
        started = time.perf_counter()
        result = export_model(model, workdir / name, litert_spec, verify=True)
        # int8 has no tensor tolerance (its accuracy is --accuracy's job): print its max |Δ|
        print(f"{name}: exported in {time.perf_counter() - started:.0f} s; "
              f"{result.verification['max_abs_diff']:.3g} max |Δ| from torch")  # fmt: skip
        assert result.verification["passed"]
        runners[name] = create_runner("litert", result.artifact, threads=threads)
        sizes[name] = artifact_mb(result.artifact)
    return runners, sizes


def artifact_mb(artifact: Path) -> float:
    files = [f for f in artifact.parent.iterdir() if f.name != "metadata.json"]
    return sum(f.stat().st_size for f in files) / 1e6


def accuracy(model_dir: Path, threads: int) -> None:
    """Test-split accuracy of a fine-tuned BERT-Mini in PyTorch, LiteRT f32 and LiteRT int8."""
    from transformers import AutoTokenizer

    from edgetran.store import Store
    from edgetran.train.data import TokenisedTexts
    from edgetran.train.finetune import predict_split
    from edgetran.train.metrics import score
    from edgetran.train.oracle import budget_settings, train_classifier
    from edgetran.train.tasks import load_task

    if not (model_dir / "config.json").is_file():
        started = time.perf_counter()
        with Store(model_dir.parent / "bench_export.db") as store:
            result = train_classifier(
                named_architecture("bert-mini"), "tweet-sentiment", "quick", store=store,
                workspace=model_dir.parent / "workspace", out=model_dir,
            )  # fmt: skip
        print(f"fine-tuned in {time.perf_counter() - started:.0f} s; oracle test accuracy "
              f"{result['accuracy']:.4f} ± {result['accuracy_std']:.4f}")  # fmt: skip
    task = load_task("tweet-sentiment")
    seq_len = budget_settings("quick")[1].max_length  # the length it was fine-tuned at
    test = TokenisedTexts(
        AutoTokenizer.from_pretrained(model_dir), task.test.texts, seq_len,
        labels=task.test.labels,
    )  # fmt: skip
    labels = test.labels.numpy()
    model = load_model(model_dir).eval()
    predictions = {"torch": predict_split(model, test, task.num_labels)}
    sizes = {"torch": sum(f.stat().st_size for f in model_dir.glob("*.safetensors")) / 1e6}
    ids, mask = test.input_ids.numpy(), test.attention_mask.numpy()
    with tempfile.TemporaryDirectory() as tmp:
        for quantize in ("none", DYNAMIC_INT8):
            name = "litert f32" if quantize == "none" else f"litert {quantize}"
            spec = ExportSpec("litert", batch_size=1, seq_len=seq_len, quantize=quantize)
            exported = export_model(model, Path(tmp) / name, spec)
            runner = create_runner("litert", exported.artifact, threads=threads)
            predictions[name] = np.array(
                [runner(ids[i : i + 1], mask[i : i + 1]).argmax(-1)[0] for i in range(len(ids))]
            )
            sizes[name] = artifact_mb(exported.artifact)
    reference = score(task.metric, labels, predictions["torch"])
    print(f"tweet-sentiment test split: {len(labels)} examples at {seq_len} tokens, batch 1\n")
    print("| model | accuracy | Δ vs torch | predictions as torch | size (MB) |")
    print("|---|---|---|---|---|")
    for name, predicted in predictions.items():
        value = score(task.metric, labels, predicted)
        same = float(np.mean(predicted == predictions["torch"]))
        print(f"| {name} | {value:.4f} | {value - reference:+.4f} | {same:.4f} "
              f"| {sizes[name]:.1f} |")  # fmt: skip


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--repeats", type=int, default=30)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument(
        "--models", nargs="+", choices=[label.split()[0] for label in MODELS],
        default=[label.split()[0] for label in MODELS],
    )  # fmt: skip
    parser.add_argument("--accuracy", type=Path, metavar="DIR")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    hf_logging.set_verbosity_error()
    if args.accuracy is not None:
        accuracy(args.accuracy, args.threads)
        return
    print(
        f"Machine: {platform.machine()}, {args.threads} threads, torch {torch.__version__}; "
        f"batch 1 × {SEQ_LEN}, absolute positions, median of {args.repeats} interleaved runs.\n"
    )
    table = ["| model | runtime | median (ms) | × torch eager |", "|---|---|---|---|"]
    size_table = ["| model | artifact | size (MB) |", "|---|---|---|"]
    with tempfile.TemporaryDirectory() as tmp:
        for label, arch in MODELS.items():
            if label.split()[0] not in args.models:
                continue
            runners, sizes = runners_for(arch, Path(tmp) / label.split()[0], args.threads)
            medians = median_latencies(runners, args.repeats)
            for name, seconds in medians.items():
                ratio = seconds / medians["torch"]
                table.append(f"| {label} | {name} | {seconds * 1e3:.2f} | {ratio:.2f} |")
            size_table += [f"| {label} | {name} | {mb:.1f} |" for name, mb in sizes.items()]
    print("\n".join(table) + "\n\n" + "\n".join(size_table))


if __name__ == "__main__":
    main()
