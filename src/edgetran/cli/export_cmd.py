"""``edgetran export``: ONNX, OpenVINO IR, .pt2 or LiteRT, optionally verified against PyTorch."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from edgetran.cli._common import Force, fail


def export(
    model: Annotated[str, typer.Argument(help="Saved model directory, or an architecture.")],
    format: Annotated[str, typer.Option("--format", help="onnx, openvino, pt2 or litert.")],
    out: Annotated[Path, typer.Option("--out", help="Output directory.")],
    batch_size: Annotated[int, typer.Option(min=1, help="Batch size of the inputs.")] = 1,
    seq_len: Annotated[int, typer.Option(min=1, help="Sequence length (static).")] = 128,
    dynamic_batch: Annotated[bool, typer.Option(help="Dynamic batch dimension.")] = False,
    verify: Annotated[
        bool, typer.Option(help="Run the artifact in its runtime and compare with PyTorch.")
    ] = False,
    quantize: Annotated[
        str, typer.Option(help="none, or dynamic-int8 (onnx, openvino, litert: int8 weights).")
    ] = "none",
    head: Annotated[str, typer.Option(help="Head for an architecture: base, mlm, cls.")] = "base",
    num_labels: Annotated[int, typer.Option(min=1, help="Labels of a cls head.")] = 2,
    vocab_size: Annotated[
        int, typer.Option(min=1, help="Vocabulary for an architecture.")
    ] = 50265,
    seed: Annotated[int, typer.Option(help="Seed of random weights and inputs.")] = 0,
    tolerance: Annotated[
        float | None,
        typer.Option(
            min=0.0,
            help="Largest allowed max |Δ| from PyTorch (default: the runtime's own, 1e-4).",
        ),
    ] = None,
    force: Force = False,
) -> None:
    """Export a model; with --verify, exit 1 if outputs differ from PyTorch beyond --tolerance."""
    from edgetran.errors import ExportError, output_dir
    from edgetran.export import ExportSpec, Verification, export_formats, export_model
    from edgetran.model import HEADS, model_from_spec

    if format not in export_formats():
        fail(f"--format {format!r} is invalid; allowed: {', '.join(export_formats())}")
    if head not in HEADS:
        fail(f"--head {head!r} is invalid; allowed: {', '.join(HEADS)}")
    spec = ExportSpec(format, batch_size, seq_len, dynamic_batch, quantize=quantize)
    # Fail on an unwritable or non-empty folder before any slow work; a failed export
    # removes the folder again if it made it.
    with output_dir(out, ExportError, empty=not force):
        flexibert = model_from_spec(
            model, head, seed=seed, num_labels=num_labels, vocab_size=vocab_size
        )
        result = export_model(
            flexibert,
            out,
            spec,
            verify=verify,
            seed=seed,
            tolerance=tolerance,  # None: the runtime's own
        )
    typer.echo(f"wrote {result.artifact} and {out / 'metadata.json'}", err=True)
    if result.verification is not None:
        v = Verification(**result.verification)
        line = v.summary()
        if v.bf16_max_abs_diff is not None:
            line += f"; bf16 hint (applied: {v.bf16_precision}): {v.bf16_max_abs_diff:.3g}"
        typer.echo(line, err=True)
        if not v.passed:
            raise typer.Exit(code=1)
