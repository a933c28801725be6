"""``edgetran space``: sample, size, describe."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated

import typer

from edgetran.cli._common import (
    ArchArgument,
    ForceFile,
    JsonOption,
    SeedOption,
    VocabSize,
    print_json,
    resolve_arch,
    resolve_space,
)

app = typer.Typer(help="Explore the design space: sample, size, describe.", no_args_is_help=True)

SpaceOption = Annotated[
    Path | None, typer.Option("--space", help="YAML/JSON design space (default: reference).")
]


@app.command()
def sample(
    n: Annotated[int, typer.Option("--n", min=1, help="Number of architectures.")],
    out: Annotated[Path, typer.Option("--out", help="Output JSON Lines file.")],
    method: Annotated[str, typer.Option(help="Sampling method: lhs or random.")] = "lhs",
    seed: SeedOption = 0,
    space: SpaceOption = None,
    force: ForceFile = False,
) -> None:
    """Sample architectures; one JSON object per line (hash, model_dict, embedding)."""
    from edgetran.errors import prepare_output_file
    from edgetran.space import sample as sample_architectures

    prepare_output_file(out, force=force)
    design_space = resolve_space(space)
    archs = sample_architectures(n, method=method, seed=seed, space=design_space)
    with out.open("w") as stream:
        for arch in archs:
            record = {
                "hash": arch.hash,
                "model_dict": arch.to_model_dict(),
                "embedding": design_space.encode(arch),
            }
            stream.write(json.dumps(record) + "\n")
    typer.echo(f"wrote {len(archs)} architectures to {out}", err=True)


@app.command()
def size(
    space: SpaceOption = None,
    as_json: JsonOption = False,
) -> None:
    """The exact number of architectures in the space."""
    design_space = resolve_space(space)
    if as_json:
        print_json({"size": design_space.size, "log10_size": design_space.log10_size})
    else:
        typer.echo(f"{design_space.size} (≈ 10^{design_space.log10_size:.3f})")


@app.command()
def describe(
    arch: ArchArgument,
    vocab_size: VocabSize = 50265,
    batch_size: Annotated[int, typer.Option(min=1, help="Batch size for FLOPs.")] = 1,
    seq_len: Annotated[int, typer.Option(min=1, help="Sequence length for FLOPs.")] = 128,
    space: SpaceOption = None,
    as_json: JsonOption = False,
) -> None:
    """Hash, embedding, grid membership, parameters and FLOPs of one architecture."""
    from edgetran.space.costs import estimate_costs

    architecture = resolve_arch(arch)
    design_space = resolve_space(space)
    costs = estimate_costs(
        architecture, batch_size=batch_size, seq_len=seq_len, vocab_size=vocab_size
    )
    info = {
        "hash": architecture.hash,
        "embedding": design_space.encode(architecture),
        "on_grid": design_space.contains(architecture),
        "parameters": costs.parameters,
        "flops": costs.flops,
        "bytes": costs.bytes,
        "batch_size": batch_size,
        "seq_len": seq_len,
        "num_layers": architecture.num_layers,
        "model_dict": architecture.to_model_dict(),
        "by_kind": {kind: cost.to_dict() for kind, cost in costs.by_kind().items()},
    }
    if as_json:
        print_json(info)
        return
    for key in ("hash", "on_grid", "parameters", "flops", "bytes", "num_layers", "embedding"):
        typer.echo(f"{key:>11}: {info[key]}")
