"""``edgetran demo``: a look at the design space on this machine's CPU, in seconds.

It samples architectures from the space, builds each one, profiles it briefly with the ProTran
protocol on this CPU (energy and power from the real sensor where there is one, else from the
flagged estimate) and prints parameters, FLOPs, latency, energy, peak power and the embedding.
The main job, ``edgetran codesign``, is what ``make demo`` runs.
"""

from __future__ import annotations

from typing import Annotated

import typer

# A CPU-sized corner of the reference space so the demo runs in seconds on a laptop.
DEMO_SPACE = {
    "layers": (2, 4),
    "hidden_sizes": (128, 256),
    "ff_widths": (256, 512, 1024),
    "ff_depths": (1, 2),
}


def demo(
    n: Annotated[int, typer.Option("--n", min=1, help="Architectures to sample.")] = 6,
    seed: Annotated[int, typer.Option(help="Random seed (recorded in the output).")] = 0,
    seq_len: Annotated[int, typer.Option(min=1, help="Sequence length of the timed pass.")] = 128,
) -> None:
    """Sample architectures, build them and print their costs."""
    run_demo(n=n, seed=seed, seq_len=seq_len)


def run_demo(n: int, seed: int, seq_len: int) -> None:
    """Sample ``n`` architectures, build, cost and time them, and print the table."""
    from rich.console import Console
    from rich.table import Table

    from edgetran.profile import ProfileSettings, create_meter, profile_architecture
    from edgetran.space import REFERENCE_SPACE, DesignSpace, sample
    from edgetran.space.costs import estimate_costs
    from edgetran.space.ops import op_sort_key

    console = Console()
    console.print(
        f"Reference space: {REFERENCE_SPACE.size:.4g} architectures "
        f"(10^{REFERENCE_SPACE.log10_size:.2f}). Sampling {n} by LHS from a CPU-sized "
        f"sub-space, seed {seed}."
    )
    settings = ProfileSettings(
        seq_len=seq_len,
        seed=seed,
        idle_s=0.2,
        max_time_s=1.0,
        min_repeats=5,
        position_embedding_type="absolute",
    )
    meter = create_meter(settings.meter, settings.device)
    table = Table(title=f"FlexiBERT 2.0 samples profiled on this CPU (batch 1 × {seq_len})")
    columns = (
        "hash",
        "L",
        "hidden",
        "heads",
        "ops",
        "params (M)",
        "GFLOPs",
        "latency ms",
        f"energy J ({meter.kind})",
        "peak W",
    )
    for column in columns:
        table.add_column(column, justify="right")
    table.add_column("embedding (first 7)")
    for arch in sample(n, method="lhs", seed=seed, space=DesignSpace(**DEMO_SPACE)):
        measurement = profile_architecture(arch, settings, meter)
        costs = estimate_costs(arch, batch_size=1, seq_len=seq_len)
        ops = sorted({op for layer in arch.layers for op in layer.ops}, key=op_sort_key)
        table.add_row(
            arch.hash[:8],
            str(arch.num_layers),
            str(list(arch.hidden_sizes)),
            str([layer.num_heads for layer in arch.layers]),
            " ".join(ops),
            f"{costs.parameters / 1e6:.2f}",
            f"{costs.flops / 1e9:.2f}",
            f"{measurement.latency_s * 1e3:.1f}",
            f"{measurement.energy_j:.3f}",
            f"{measurement.peak_power_w:.1f}",
            ",".join(map(str, REFERENCE_SPACE.encode(arch)[:7])) + ",…",
        )
    console.print(table)
    console.print(
        f"Meter: {meter.name} ({meter.kind}). Short profiles (≤ 1 s of timed runs each); "
        "`edgetran profile` runs the full protocol and stores the results."
    )
