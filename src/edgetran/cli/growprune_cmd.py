"""``edgetran growprune``: GPTran's hardware-aware grow-and-prune of a trained model."""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Annotated

import typer

from edgetran.cli._common import (
    DbOption,
    Force,
    JsonOption,
    SeedOption,
    database_name,
    fail,
    on_interrupt,
    print_json,
)

ACCEPTANCE = ("hardware", "loss")
BUDGETS = ("quick", "standard", "full")


def growprune(
    task: Annotated[
        str, typer.Option("--task", help="tweet-sentiment, glue/<task>, or a CSV/JSONL file.")
    ],
    device: Annotated[
        str,
        typer.Option(
            "--device",
            help="Target device: a live HARDWARE/RUNTIME pair (cpu/torch, cpu/onnxruntime …) or "
            "a device with measurements in the store.",
        ),
    ],
    model: Annotated[
        Path | None,
        typer.Option("--model", help="Root: a pretrained FlexiBERT model directory."),
    ] = None,
    arch: Annotated[
        str | None,
        typer.Option(
            "--arch",
            help="Root: an architecture (name or JSON file), pretrained in the workspace first.",
        ),
    ] = None,
    max_latency_ms: Annotated[
        float | None, typer.Option(help="Budget: latency per sequence, ms.")
    ] = None,
    max_energy_mj: Annotated[
        float | None, typer.Option(help="Budget: energy per sequence, mJ.")
    ] = None,
    max_peak_power_w: Annotated[float | None, typer.Option(help="Budget: peak power, W.")] = None,
    budget: Annotated[
        str,
        typer.Option(
            help="quick, standard or full: the root's pretraining and each mode's steps "
            "(the reference's × 0.001, 0.01, 0.1)."
        ),
    ] = "quick",
    iterations: Annotated[int, typer.Option(min=1, help="Iterations at most.")] = 8,
    patience: Annotated[
        int, typer.Option(min=1, help="Stop after this many iterations without a new best.")
    ] = 5,
    children: Annotated[
        int | None, typer.Option(min=1, help="Children per grow step (default 5).")
    ] = None,
    loss_tolerance: Annotated[
        float,
        typer.Option(help="A pruned child may raise its parent's MLM loss by this share."),
    ] = 0.01,
    acceptance: Annotated[
        str,
        typer.Option(help="hardware (budgets and costs) or loss (the reference's rule)."),
    ] = "hardware",
    schedule: Annotated[
        str | None,
        typer.Option(
            help="Schedule: a YAML/JSON file, or default (grow_attn_head, grow_ffnn, "
            "prune_attn_head, prune_ffnn) or grow-only."
        ),
    ] = None,
    seed: SeedOption = 0,
    db: DbOption = None,
    workspace: Annotated[
        Path | None,
        typer.Option(help="Folder for tokenizers and checkpoints (default edgetran-workspace)."),
    ] = None,
    out: Annotated[
        Path | None,
        typer.Option("--out", help="Writes OUT/model (the final model) and OUT/tree.json."),
    ] = None,
    resume: Annotated[
        bool, typer.Option("--resume", help="Continue the stored search of these options.")
    ] = False,
    force: Force = False,
    as_json: JsonOption = False,
) -> None:
    """Grow and prune a trained model for a device within budgets (GPTran, hardware-aware).

    Each iteration applies the next mode of the schedule to the current model, trains its
    children briefly from the parent's weights, and keeps the child that lowers the MLM loss
    (grow) or a cost at a loss within --loss-tolerance (prune), within the budgets; otherwise
    it backtracks to the best model. The tree is stored in the database; --resume continues it.
    """
    from edgetran.errors import prepare_output_dir
    from edgetran.growprune import GrowPruneError, GrowPruneSettings, grow_and_prune
    from edgetran.growprune.schedule import NAMED_SCHEDULES, read_schedule
    from edgetran.store import Store
    from edgetran.train import DEFAULT_WORKSPACE

    if (model is None) == (arch is None):
        fail("give either --model DIR (a pretrained model) or --arch ARCH")
    if budget not in BUDGETS:
        fail(f"--budget {budget!r} is invalid; allowed: {', '.join(BUDGETS)}")
    if acceptance not in ACCEPTANCE:
        fail(f"--acceptance {acceptance!r} is invalid; allowed: {', '.join(ACCEPTANCE)}")
    entries = read_schedule(schedule) if schedule is not None else NAMED_SCHEDULES["default"]
    settings = GrowPruneSettings(
        budget=budget,
        iterations=iterations,
        patience=patience,
        loss_tolerance=loss_tolerance,
        acceptance=acceptance,
        max_latency_ms=max_latency_ms,
        max_energy_mj=max_energy_mj,
        max_peak_power_w=max_peak_power_w,
        schedule=entries,
        children=children,
        seed=seed,
        workspace=str(workspace or DEFAULT_WORKSPACE),
    )
    if out is not None:  # written at the end: a killed search's --out is still empty
        prepare_output_dir(out, GrowPruneError, empty=not force)
    if model is not None and not model.is_dir():
        fail(f"--model {model}: not a directory")
    again = "the same command" + ("" if resume else " with --resume")
    kept = f"the tree so far is stored in {database_name(db)}; run {again} to continue"
    with on_interrupt(kept), Store(db) as store:

        def progress(line: str) -> None:
            if not as_json or sys.stderr.isatty():
                typer.echo(line, err=True)

        result = grow_and_prune(
            model if model is not None else arch, task, device, settings, store=store,
            out=out, resume=resume, on_event=progress,
        )  # fmt: skip
    if as_json:
        print_json(_report(result))
        return
    root, final = result.root, result.final
    typer.echo(
        f"root {root['hash'][:12]}: loss {root['loss']:.4f}, {root['parameters']:,} parameters"
        f"{_cost_text(root)}"
    )
    typer.echo(
        f"final {final['hash'][:12]}: loss {final['loss']:.4f}, {final['parameters']:,} "
        f"parameters{_cost_text(final)} after {len(result.iterations)} iterations "
        f"(stopped: {result.stopped})"
    )
    if result.out:
        typer.echo(f"model and tree in {result.out}")


def _cost_text(node: dict) -> str:
    parts = []
    for metric, scale, unit in (("latency_s", 1e3, "ms"), ("energy_j", 1e3, "mJ"),
                                ("peak_power_w", 1.0, "W")):  # fmt: skip
        entry = node["costs"][metric]
        if entry["value"] is not None:
            how = "measured" if entry["measured"] else "estimated"
            parts.append(f"{metric.split('_')[0]} {entry['value'] * scale:.4g} {unit} ({how})")
    return ", " + ", ".join(parts) if parts else ""


def _report(result) -> dict:
    data = result.to_dict()
    return {
        "root": data["root"],
        "final": data["final"],
        "iterations": data["iterations"],
        "out": data["out"],
        "run": data["run"],
        "device": data["device"],
        "stopped": data["stopped"],
        "root_violates": data["root_violates"],
        "settings": data["settings"],
    }
