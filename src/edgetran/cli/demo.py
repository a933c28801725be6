"""``edgetran demo``: what the pipeline can do today, on this machine's CPU, in seconds.

Until the co-search exists, the demo samples architectures from the space, builds each one,
times a forward pass and prints parameters, FLOPs and the embedding.
"""

from __future__ import annotations

import time
from typing import Annotated

import torch
import typer
from rich.console import Console
from rich.table import Table

from edgetran.cli._common import user_errors
from edgetran.model import FlexiBertConfig, FlexiBertModel
from edgetran.model.costs import estimate_costs
from edgetran.space import REFERENCE_SPACE, DesignSpace, sample
from edgetran.space.ops import op_sort_key

# A CPU-sized corner of the reference space so the demo runs in seconds on a laptop.
DEMO_SPACE = DesignSpace(
    layers=(2, 4), hidden_sizes=(128, 256), ff_widths=(256, 512, 1024), ff_depths=(1, 2)
)


def demo(
    n: Annotated[int, typer.Option("--n", min=1, help="Architectures to sample.")] = 6,
    seed: Annotated[int, typer.Option(help="Random seed (recorded in the output).")] = 0,
    seq_len: Annotated[int, typer.Option(min=1, help="Sequence length of the timed pass.")] = 128,
) -> None:
    """Sample architectures, build them and print their costs."""
    run_demo(n=n, seed=seed, seq_len=seq_len)


@user_errors
def run_demo(n: int, seed: int, seq_len: int) -> None:
    console = Console()
    torch.manual_seed(seed)
    console.print(
        f"Reference space: {REFERENCE_SPACE.size:.4g} architectures "
        f"(10^{REFERENCE_SPACE.log10_size:.2f}). Sampling {n} by LHS from a CPU-sized "
        f"sub-space, seed {seed}."
    )
    table = Table(title=f"FlexiBERT 2.0 samples (batch 1 × {seq_len}, CPU)")
    for column in ("hash", "L", "hidden", "heads", "ops", "params (M)", "GFLOPs", "forward ms"):
        table.add_column(column, justify="right")
    table.add_column("embedding (first 7)")
    for arch in sample(n, method="lhs", seed=seed, space=DEMO_SPACE):
        model = FlexiBertModel(FlexiBertConfig(arch)).eval()
        ids = torch.randint(0, model.config.vocab_size, (1, seq_len))
        with torch.inference_mode():
            model(ids)  # warm-up
            start = time.perf_counter()
            model(ids)
            elapsed_ms = (time.perf_counter() - start) * 1e3
        costs = estimate_costs(arch, batch_size=1, seq_len=seq_len)
        embedding = REFERENCE_SPACE.encode(arch)
        ops = sorted({op for layer in arch.layers for op in layer.ops}, key=op_sort_key)
        table.add_row(
            arch.hash[:8],
            str(arch.num_layers),
            str(list(arch.hidden_sizes)),
            str([layer.num_heads for layer in arch.layers]),
            " ".join(ops),
            f"{costs.parameters / 1e6:.2f}",
            f"{costs.flops / 1e9:.2f}",
            f"{elapsed_ms:.1f}",
            ",".join(map(str, embedding[:7])) + ",…",
        )
    console.print(table)
    console.print(
        "Forward times are one timed pass after a warm-up: a rough figure, not a profile."
    )
