"""``edgetran surrogate``: cv, fit, predict."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from edgetran.cli._common import (
    ForceFile,
    JsonOption,
    SeedOption,
    fail,
    print_json,
    resolve_arch,
)

app = typer.Typer(
    help="Fit and evaluate latency/energy/peak-power surrogates.", no_args_is_help=True
)

Source = Annotated[str, typer.Option("--measurements", help="File, folder or database URL.")]
Format = Annotated[str, typer.Option("--format", help="protran, csv, parquet or db.")]
Device = Annotated[str, typer.Option("--device", help="Device to model (protran: file name).")]
Model = Annotated[str, typer.Option("--model", help="gbdt (default) or nn.")]
Priors = Annotated[
    list[str] | None,
    typer.Option("--prior", help="Measurements of other devices (same format); repeatable."),
]

UNITS = {"latency": "s", "energy": "J", "peak_power": "W"}


@app.command()
def cv(
    measurements: Source,
    format: Format,
    device: Device,
    folds: Annotated[int, typer.Option(min=2, help="Cross-validation folds.")] = 5,
    seed: SeedOption = 0,
    model: Model = "gbdt",
    prior: Priors = None,
    as_json: JsonOption = False,
) -> None:
    """K-fold cross-validation: MAPE, share within ±10%, R², Spearman, 90% coverage."""
    from edgetran.surrogate import cross_validate
    from edgetran.surrogate.data import load_device, load_priors

    items = load_device(measurements, format, device)
    priors = load_priors(prior or [], format, exclude=device)
    result = cross_validate(items, folds=folds, seed=seed, model=model, priors=priors)
    report = {
        **result,
        "device": device,
        "model": model,
        "folds": folds,
        "seed": seed,
        "priors": sorted(priors),
    }
    if as_json:
        print_json(report)
        return
    for metric, s in result.items():
        typer.echo(
            f"{metric:>10}: n={s['n']} MAPE={s['mape']:.3f} within±10%="
            f"{s['within_10pct']:.2f} R²={s['r2']:.3f} ρ={s['spearman']:.3f} "
            f"coverage90={s['coverage_90']:.2f}"
        )


@app.command()
def fit(
    measurements: Source,
    format: Format,
    device: Device,
    out: Annotated[Path, typer.Option("--out", help="Output surrogate file.")],
    seed: SeedOption = 0,
    model: Model = "gbdt",
    prior: Priors = None,
    force: ForceFile = False,
) -> None:
    """Fit a device's surrogate on all its measurements and save it."""
    from edgetran.errors import prepare_output_file
    from edgetran.surrogate import METRICS, DeviceSurrogate
    from edgetran.surrogate.data import load_device, load_priors

    prepare_output_file(out, force=force)

    items = load_device(measurements, format, device)
    priors = load_priors(prior or [], format, exclude=device)
    surrogate = DeviceSurrogate(model, tuple(METRICS), seed).fit(items, priors)
    surrogate.save(out)
    typer.echo(
        f"fitted {model} surrogate of {device} on {len(items)} measurements "
        f"(priors: {', '.join(sorted(priors)) or 'none'}) → {out}",
        err=True,
    )
    if priors:
        typer.echo(
            "measurements of architectures a prior device measured too: "
            f"{surrogate.shared_rows_} (probes: {surrogate.shared_probes_})",
            err=True,
        )
    if surrogate.contended_left_out_:
        typer.echo(f"left out {surrogate.contended_left_out_} contended measurements", err=True)
    if surrogate.contended_kept_:
        typer.echo(
            f"kept {surrogate.contended_kept_} contended measurements (too few quiet ones); "
            "profile again with --require-quiet",
            err=True,
        )


@app.command()
def predict(
    surrogate: Annotated[Path, typer.Option("--surrogate", help="A file from 'surrogate fit'.")],
    arch: Annotated[list[str], typer.Option("--arch", help="Architecture; repeatable.")],
    level: Annotated[float, typer.Option(min=0.01, max=0.99, help="Interval level.")] = 0.9,
    batch_size: Annotated[
        int | None, typer.Option(min=1, help="Input shape to predict at, with --seq-len.")
    ] = None,
    seq_len: Annotated[
        int | None,
        typer.Option(min=1, help="Default: the measured shape, where the surrogate has one."),
    ] = None,
    as_json: JsonOption = False,
) -> None:
    """Mean, standard deviation and interval of each metric (per batch, as profiled)."""
    from edgetran.surrogate import DeviceSurrogate

    if (batch_size is None) != (seq_len is None):
        fail("--batch-size and --seq-len go together: name both, or neither")
    fitted = DeviceSurrogate.load(surrogate)
    shape = fitted.prediction_shape(None if batch_size is None else (batch_size, seq_len))
    archs = [resolve_arch(a) for a in arch]
    predictions = fitted.predict(archs, level, shape)
    records = []
    for i, architecture in enumerate(archs):
        record = {
            "hash": architecture.hash,
            "device": fitted.device_,
            "batch_size": shape[0],
            "seq_len": shape[1],
            "predicted": True,
        }
        for metric, p in predictions.items():
            record[metric] = {**p.to_records()[i], "unit": UNITS[metric]}
        records.append(record)
    if as_json:
        print_json(records if len(records) > 1 else records[0])
        return
    for record in records:
        parts = [
            f"{m}={record[m]['mean']:.4g}±{record[m]['std']:.2g} {record[m]['unit']}"
            for m in predictions
        ]
        typer.echo(f"{record['hash'][:12]}  " + "  ".join(parts))
