"""Forward latency of FlexiBertModel against Hugging Face BertModel, and the cost of each head op.

Both models of a pair run in the same process, interleaved round by round, so machine noise
hits both alike; the figure that matters is the ratio of their medians.

    python benchmarks/bench_model.py [--repeats 30] [--threads 2]

Prints Markdown tables for BENCHMARKS.md.
"""

from __future__ import annotations

import argparse
import platform
import statistics
import time

import torch
from transformers import BertConfig, BertModel

import edgetran
from edgetran.model import FlexiBertConfig, FlexiBertModel
from edgetran.model.hf_import import from_bert
from edgetran.space import Architecture, Layer, named_architecture

SEQ_LEN = 128
VOCAB = 30522


def timed(model: torch.nn.Module, ids: torch.Tensor, mask: torch.Tensor) -> float:
    start = time.perf_counter()
    model(input_ids=ids, attention_mask=mask)
    return time.perf_counter() - start


def interleaved_medians(models: dict, batch: int, repeats: int) -> dict[str, float]:
    """Median seconds per forward of each model, timed in alternating rounds."""
    ids = torch.randint(0, VOCAB, (batch, SEQ_LEN), generator=torch.Generator().manual_seed(0))
    mask = torch.ones_like(ids)
    samples: dict[str, list[float]] = {name: [] for name in models}
    with torch.inference_mode():
        for model in models.values():  # warm-up
            for _ in range(3):
                timed(model, ids, mask)
        for _ in range(repeats):
            for name, model in models.items():
                samples[name].append(timed(model, ids, mask))
    return {name: statistics.median(values) for name, values in samples.items()}


def hf_pair(name: str) -> tuple[BertModel, FlexiBertModel]:
    layer = named_architecture(name).layers[0]
    config = BertConfig(
        vocab_size=VOCAB,
        hidden_size=layer.hidden,
        num_hidden_layers=named_architecture(name).num_layers,
        num_attention_heads=layer.num_heads,
        intermediate_size=layer.ff[0],
    )
    torch.manual_seed(0)
    bert = BertModel(config).eval()
    return bert, from_bert(bert).eval()


def bench_against_hf(repeats: int) -> list[str]:
    rows = [
        "| model | batch | HF BertModel (ms) | FlexiBertModel (ms) | ratio |",
        "|---|---|---|---|---|",
    ]
    for name in ("bert-tiny", "bert-mini", "bert-small"):
        bert, flexi = hf_pair(name)
        for batch in (1, 8):
            medians = interleaved_medians({"hf": bert, "flexi": flexi}, batch, repeats)
            ratio = medians["flexi"] / medians["hf"]
            rows.append(
                f"| {name} | {batch} | {medians['hf'] * 1e3:.2f} | "
                f"{medians['flexi'] * 1e3:.2f} | {ratio:.3f} |"
            )
    return rows


def op_architecture(op: str) -> Architecture:
    """BERT-Mini-sized: 4 layers × 256, 4 heads of ``op`` (d = 64), FF 1024."""
    return Architecture((Layer(256, (op,) * 4, 64, (1024,)),) * 4)


def bench_ops(repeats: int) -> list[str]:
    ops = ("sa_sdp", "sa_wma", "l_dft", "l_dct", "c_5", "c_9", "c_13")
    models = {}
    for op in ops:
        for position in ("absolute", "relative_key"):
            torch.manual_seed(0)
            config = FlexiBertConfig(
                op_architecture(op), vocab_size=VOCAB, position_embedding_type=position
            )
            models[(op, position)] = FlexiBertModel(config).eval()
    medians = interleaved_medians(models, batch=1, repeats=repeats)
    base = medians[("sa_sdp", "absolute")]
    rows = [
        "| head op (4 layers × 256, 4 heads) | absolute (ms) | × sa_sdp | relative_key (ms) "
        "| × own absolute |",
        "|---|---|---|---|---|",
    ]
    for op in ops:
        absolute, relative = medians[(op, "absolute")], medians[(op, "relative_key")]
        rows.append(
            f"| {op} | {absolute * 1e3:.2f} | {absolute / base:.2f} | {relative * 1e3:.2f} | "
            f"{relative / absolute:.2f} |"
        )
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--repeats", type=int, default=50)
    parser.add_argument("--threads", type=int, default=2)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    print(
        f"Machine: {platform.processor() or platform.machine()}, {torch.get_num_threads()} "
        f"threads, torch {torch.__version__}, edgetran {edgetran.__version__}, Python "
        f"{platform.python_version()}; batch × {SEQ_LEN} tokens, median of {args.repeats} "
        "interleaved forwards after 3 warm-ups.\n"
    )
    print("\n".join(bench_against_hf(args.repeats)))
    print()
    print("\n".join(bench_ops(args.repeats)))


if __name__ == "__main__":
    main()
