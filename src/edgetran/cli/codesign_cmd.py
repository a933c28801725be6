"""``edgetran codesign``: the main job — the best model–device pair for a task and budgets."""

from __future__ import annotations

import contextlib
import sys
from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer

from edgetran.cli import cluster_cmds
from edgetran.cli._common import force_option, option_groups, print_json, quiet_optuna

if TYPE_CHECKING:
    from edgetran.cluster import ClusterOptions

#: The embedded default, shown by --help (kept in step with CodesignConfig's defaults).
DEFAULT_DEVICES = "cpu/torch,cpu/onnxruntime,cpu/openvino,cpu/onnxruntime-int8"


@option_groups(lab=cluster_cmds.lab_options)
def codesign(
    task: Annotated[
        str,
        typer.Option(
            metavar="TASK",
            help="tweet-sentiment, glue/<task>, or a CSV/JSONL file.",
            rich_help_panel="Task and budgets",
        ),
    ] = "tweet-sentiment",
    devices: Annotated[
        str,
        typer.Option(
            metavar="LIST",
            help="HARDWARE/RUNTIME pairs and measurement files (default: 4 CPU runtimes).",
            show_default=False,
            rich_help_panel="Devices and profiling",
        ),
    ] = DEFAULT_DEVICES,
    max_latency_ms: Annotated[
        float | None,
        typer.Option(
            metavar="MS", help="Budget per sequence.", rich_help_panel="Task and budgets"
        ),
    ] = None,
    max_energy_mj: Annotated[
        float | None,
        typer.Option(
            metavar="MJ", help="Budget per sequence.", rich_help_panel="Task and budgets"
        ),
    ] = None,
    max_peak_power_w: Annotated[
        float | None, typer.Option(metavar="W", help="Budget.", rich_help_panel="Task and budgets")
    ] = None,
    min_accuracy: Annotated[
        float | None,
        typer.Option(metavar="X", help="Budget (a fraction).", rich_help_panel="Task and budgets"),
    ] = None,
    budget: Annotated[
        str,
        typer.Option(
            metavar="NAME",
            help="Accuracy budget of the search.",
            rich_help_panel="Task and budgets",
        ),
    ] = "quick",
    final_budget: Annotated[
        str,
        typer.Option(
            metavar="NAME",
            help="Training budget of the winner.",
            rich_help_panel="Task and budgets",
        ),
    ] = "quick",
    evaluations: Annotated[
        int,
        typer.Option(
            metavar="N", min=1, help="Co-search evaluations.", rich_help_panel="Task and budgets"
        ),
    ] = 6,
    sampler: Annotated[
        str,
        typer.Option(
            metavar="NAME",
            help="boshcode, tpe, trees … (edgetran env).",
            rich_help_panel="Search and choice",
        ),
    ] = "boshcode",
    compare: Annotated[
        str | None,
        typer.Option(
            metavar="NAME",
            help="A second sampler, for the report.",
            rich_help_panel="Search and choice",
        ),
    ] = None,
    objective: Annotated[
        str,
        typer.Option(
            metavar="RULE",
            help="paper, pareto or accuracy.",
            rich_help_panel="Search and choice",
        ),
    ] = "paper",
    norms: Annotated[
        str,
        typer.Option(
            metavar="SCALE",
            help="run (largest reference), reference (1000 s, 2000 J, 300 W) or L,E,P.",
            rich_help_panel="Search and choice",
        ),
    ] = "run",
    choose: Annotated[
        str,
        typer.Option(
            metavar="RULE",
            help="one-std (fastest within one accuracy std) or best (the maximum).",
            rich_help_panel="Search and choice",
        ),
    ] = "one-std",
    space: Annotated[
        Path | None,
        typer.Option(
            metavar="FILE",
            help="Design space (default: CPU-sized).",
            rich_help_panel="Task and budgets",
        ),
    ] = None,
    profile_budget: Annotated[
        int,
        typer.Option(
            metavar="N",
            min=8,
            help="Measurements per live device.",
            rich_help_panel="Devices and profiling",
        ),
    ] = 10,
    seq_len: Annotated[
        int,
        typer.Option(
            metavar="N",
            min=1,
            help="Tokens measured and exported for.",
            rich_help_panel="Devices and profiling",
        ),
    ] = 64,
    meter: Annotated[
        str,
        typer.Option(
            metavar="METER",
            help="Power meter (see edgetran env).",
            rich_help_panel="Devices and profiling",
        ),
    ] = "auto",
    threads: Annotated[
        int | None,
        typer.Option(
            metavar="N",
            min=1,
            help="CPU threads (default: the free cores).",
            rich_help_panel="Devices and profiling",
        ),
    ] = None,
    idle_s: Annotated[
        float,
        typer.Option(
            metavar="S",
            min=0,
            help="Idle power seconds per measurement.",
            rich_help_panel="Devices and profiling",
        ),
    ] = 0.5,
    profile_max_time: Annotated[
        float,
        typer.Option(
            metavar="S",
            min=0,
            help="Timed seconds per measurement.",
            rich_help_panel="Devices and profiling",
        ),
    ] = 1.0,
    references: Annotated[
        str,
        typer.Option(
            metavar="LIST",
            help="Named BERTs compared with the answer.",
            rich_help_panel="Search and choice",
        ),
    ] = "bert-tiny,bert-mini",
    no_references_first: Annotated[
        bool,
        typer.Option(
            "--no-references-first",
            help="Do not start from the references.",
            rich_help_panel="Search and choice",
        ),
    ] = False,
    require_quiet: Annotated[
        bool,
        typer.Option(
            "--require-quiet",
            help="Measure only on a quiet machine.",
            rich_help_panel="Devices and profiling",
        ),
    ] = False,
    no_growprune: Annotated[
        bool,
        typer.Option(
            "--no-growprune",
            help="Skip grow-and-prune of the winner.",
            rich_help_panel="Search and choice",
        ),
    ] = False,
    growprune_iterations: Annotated[
        int,
        typer.Option(
            min=1, metavar="N", help="Grow-and-prune steps.", rich_help_panel="Search and choice"
        ),
    ] = 1,
    eval_timeout_s: Annotated[
        float | None,
        typer.Option(
            metavar="S",
            min=0,
            help="A longer evaluation fails.",
            rich_help_panel="Search and choice",
        ),
    ] = None,
    seed: Annotated[
        int,
        typer.Option(metavar="N", help="Seed of every stage.", rich_help_panel="Task and budgets"),
    ] = 0,
    workspace: Annotated[
        Path,
        typer.Option(metavar="DIR", help="Tokenizers and checkpoints.", rich_help_panel="Outputs"),
    ] = Path("edgetran-workspace"),
    out: Annotated[
        Path,
        typer.Option("--out", metavar="DIR", help="Output folder.", rich_help_panel="Outputs"),
    ] = Path("codesign-out"),
    db: Annotated[
        str | None,
        typer.Option(
            "--db",
            metavar="URL",
            help="SQLAlchemy URL or SQLite file (default: edgetran.db).",
            rich_help_panel="Outputs",
        ),
    ] = None,
    resume: Annotated[
        bool,
        typer.Option("--resume", help="Continue the run in --out.", rich_help_panel="Outputs"),
    ] = False,
    restart: Annotated[
        bool,
        typer.Option(
            "--restart",
            help="Discard the run's record and start it again.",
            rich_help_panel="Outputs",
        ),
    ] = False,
    force: Annotated[bool, force_option(rich_help_panel="Outputs")] = False,
    as_json: Annotated[
        bool,
        typer.Option("--json", help="Print only the result (JSON).", rich_help_panel="Outputs"),
    ] = False,
    *,
    lab: ClusterOptions | None,
    parallel: Annotated[
        int,
        typer.Option(
            "--parallel",
            metavar="Q",
            min=1,
            help="Search evaluations kept in flight.",
            rich_help_panel="Lab",
        ),
    ] = 1,
) -> None:
    """Find, train, export and measure the best model–device pair; write a report.

    With --scheduler, measurements run on their devices' workers and trainings
    on training workers (local:N: N workers here); this process stores every
    result, and --out and --workspace must be shared with the workers."""
    from rich.console import Console

    from edgetran.codesign import CodesignConfig, run_codesign
    from edgetran.space import DesignSpace

    quiet_optuna()
    config = CodesignConfig(
        task=task,
        devices=tuple(d.strip() for d in devices.split(",") if d.strip()),
        max_latency_ms=max_latency_ms,
        max_energy_mj=max_energy_mj,
        max_peak_power_w=max_peak_power_w,
        min_accuracy=min_accuracy,
        budget=budget,
        final_budget=final_budget,
        evaluations=evaluations,
        sampler=sampler,
        compare=compare,
        objective=objective,
        norms=norms,
        choose=choose,
        **({"space": DesignSpace.from_file(space).to_dict()} if space else {}),
        profile_budget=profile_budget,
        seq_len=seq_len,
        meter=meter,
        threads=threads,
        idle_s=idle_s,
        profile_max_time_s=profile_max_time,
        require_quiet=require_quiet,
        references=tuple(r.strip() for r in references.split(",") if r.strip()),
        references_first=not no_references_first,
        growprune=not no_growprune,
        growprune_iterations=growprune_iterations,
        eval_timeout_s=eval_timeout_s,
        seed=seed,
        workspace=str(workspace),
        out=str(out),
        db=db,
    )
    lab = cluster_cmds.offering(lab, [spec.name for spec in config.device_specs() if spec.live])
    console = Console(stderr=True, highlight=False)
    status = console.status("co-design") if sys.stderr.isatty() else contextlib.nullcontext()
    with status, cluster_cmds.cluster_session(lab) as cluster:
        result = run_codesign(
            config, resume=resume, restart=restart, force=force, on_event=console.print,
            cluster=cluster,
            parallel=parallel,
        )  # fmt: skip
    if as_json:
        print_json(result.result)
        return
    best = result.best
    m = best["metrics"]
    if result.result.get("headline"):
        typer.echo(result.result["headline"])
    crowded = (
        " (measured while other processes crowded the cores: contended)"
        if best.get("contended")
        else ""
    )
    typer.echo(
        f"best: {best['device']} accuracy {m['accuracy']:.4f}, latency "
        f"{m['latency_s'] * 1e3:.3f} ms/seq, energy {m['energy_j'] * 1e3:.3f} mJ/seq, peak "
        f"{m['peak_power_w']:.3g} W (measured: {', '.join(best['measured'])}){crowded}"
    )
    typer.echo(f"report: {result.out / 'report.html'}")
