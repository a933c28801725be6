"""``edgetran model``: init, import-hf."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from edgetran.cli._common import ArchArgument, VocabSize, resolve_arch

app = typer.Typer(help="Build and convert FlexiBERT models.", no_args_is_help=True)


@app.command()
def init(
    arch: ArchArgument,
    out: Annotated[Path, typer.Option("--out", help="Output directory (save_pretrained).")],
    head: Annotated[str, typer.Option(help="Model head: base, mlm or cls.")] = "base",
    num_labels: Annotated[int, typer.Option(min=1, help="Labels of the cls head.")] = 2,
    seed: Annotated[int, typer.Option(help="Seed of the random initialisation.")] = 0,
    vocab_size: VocabSize = 50265,
    position_embedding_type: Annotated[
        str, typer.Option(help="relative_key (reference) or absolute.")
    ] = "relative_key",
    force: Annotated[
        bool, typer.Option(help="Write into --out even if it already holds files.")
    ] = False,
) -> None:
    """Save a randomly initialised FlexiBERT model into a new or empty directory."""
    from edgetran.errors import output_dir
    from edgetran.model import build_model

    model = build_model(
        resolve_arch(arch),
        head,
        seed=seed,
        vocab_size=vocab_size,
        num_labels=num_labels,
        position_embedding_type=position_embedding_type,
    )
    with output_dir(out, empty=not force):
        model.save_pretrained(out)
    params = sum(p.numel() for p in model.parameters())
    typer.echo(f"saved {head} model ({params:,} parameters, seed {seed}) to {out}", err=True)


@app.command("import-hf")
def import_hf(
    src_dir: Annotated[Path, typer.Argument(help="A saved Hugging Face BertModel.")],
    out_dir: Annotated[Path, typer.Argument(help="Output directory.")],
    force: Annotated[
        bool, typer.Option(help="Write into OUT_DIR even if it already holds files.")
    ] = False,
) -> None:
    """Convert a saved Hugging Face BertModel into a FlexiBERT model with identical outputs."""
    from edgetran.errors import output_dir
    from edgetran.model.hf_import import import_hf as convert_hf

    with output_dir(out_dir, empty=not force):
        model = convert_hf(src_dir, out_dir)
    typer.echo(f"converted {model.config.arch} to {out_dir}", err=True)
