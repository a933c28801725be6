"""``edgetran codesign``: the main job — the best model–device pair for a task and budgets."""

from __future__ import annotations

import contextlib
import sys
from pathlib import Path
from typing import Annotated

import typer

from edgetran.cli._common import print_json, quiet_optuna
from edgetran.cli.cluster_cmds import (
    JobTimeoutOption,
    SchedulerOption,
    TlsCaFileOption,
    TlsCertOption,
    TlsKeyOption,
    cluster_options,
    cluster_session,
)

#: The embedded default, shown by --help (kept in step with CodesignConfig's defaults).
DEFAULT_DEVICES = "cpu/torch,cpu/onnxruntime,cpu/openvino,cpu/onnxruntime-int8"


def codesign(
    task: Annotated[
        str, typer.Option(help="tweet-sentiment, glue/<task>, or a CSV/JSONL file.")
    ] = "tweet-sentiment",
    devices: Annotated[
        str,
        typer.Option(
            help="Comma-separated: live HARDWARE/RUNTIME pairs and measurement files "
            "(.json ProTran, .csv, .parquet)."
        ),
    ] = DEFAULT_DEVICES,
    max_latency_ms: Annotated[float | None, typer.Option(help="Budget per sequence.")] = None,
    max_energy_mj: Annotated[float | None, typer.Option(help="Budget per sequence.")] = None,
    max_peak_power_w: Annotated[float | None, typer.Option(help="Budget.")] = None,
    min_accuracy: Annotated[float | None, typer.Option(help="Budget (a fraction).")] = None,
    budget: Annotated[str, typer.Option(help="Accuracy budget of the search.")] = "quick",
    final_budget: Annotated[str, typer.Option(help="Training budget of the winner.")] = "quick",
    evaluations: Annotated[int, typer.Option(min=1, help="Co-search evaluations.")] = 6,
    sampler: Annotated[str, typer.Option(help="boshcode, tpe, … (edgetran env).")] = "boshcode",
    compare: Annotated[
        str | None, typer.Option(help="A second sampler on the same evaluations, for the report.")
    ] = None,
    objective: Annotated[
        str, typer.Option(help="What the search maximises: paper, pareto or accuracy.")
    ] = "paper",
    norms: Annotated[
        str,
        typer.Option(
            help="Paper objective's cost scale: run (the largest reference on the slowest live "
            "device), reference (1000 s, 2000 J, 300 W) or L_S,E_J,P_W."
        ),
    ] = "run",
    choose: Annotated[
        str,
        typer.Option(
            help="The answer: one-std (the fastest pair within one accuracy std of the most "
            "accurate) or best (the objective's maximum)."
        ),
    ] = "one-std",
    space: Annotated[
        Path | None, typer.Option(help="Design space file (default: a CPU-sized space).")
    ] = None,
    profile_budget: Annotated[
        int, typer.Option(min=8, help="Measurements per live device before the search.")
    ] = 10,
    seq_len: Annotated[
        int, typer.Option(min=1, help="Sequence length measured and exported for.")
    ] = 64,
    meter: Annotated[str, typer.Option(help="Power meter (edgetran profile --help).")] = "auto",
    threads: Annotated[
        int | None,
        typer.Option(min=1, help="CPU threads (default: the cores free at each measurement)."),
    ] = None,
    idle_s: Annotated[
        float, typer.Option(min=0, help="Seconds of idle power before each measurement.")
    ] = 0.5,
    profile_max_time: Annotated[
        float, typer.Option(min=0, help="Seconds of timed runs per measurement.")
    ] = 1.0,
    references: Annotated[
        str, typer.Option(help="Named BERTs measured beside the winner, comma-separated.")
    ] = "bert-tiny,bert-mini",
    references_first: Annotated[
        bool,
        typer.Option(help="Start the profile and the search from the references in the space."),
    ] = True,
    require_quiet: Annotated[
        bool,
        typer.Option(
            "--require-quiet", help="Wait for a quiet machine before each live measurement."
        ),
    ] = False,
    growprune: Annotated[bool, typer.Option(help="Refine the winner with grow-and-prune.")] = True,
    growprune_iterations: Annotated[int, typer.Option(min=1, help="Grow-and-prune steps.")] = 1,
    eval_timeout_s: Annotated[
        float | None, typer.Option(min=0, help="An accuracy evaluation running longer fails.")
    ] = None,
    seed: Annotated[int, typer.Option(help="Seed of every stage.")] = 0,
    workspace: Annotated[Path, typer.Option(help="Tokenizers and checkpoints.")] = Path(
        "edgetran-workspace"
    ),
    out: Annotated[Path, typer.Option("--out", help="Output folder.")] = Path("codesign-out"),
    db: Annotated[
        str | None,
        typer.Option("--db", help="SQLAlchemy URL or SQLite file (default edgetran.db)."),
    ] = None,
    resume: Annotated[bool, typer.Option("--resume", help="Continue the run in --out.")] = False,
    restart: Annotated[
        bool,
        typer.Option(
            "--restart",
            help="Discard the run's finished stages and searches in the database and start it "
            "again (its --out may be overwritten).",
        ),
    ] = False,
    force: Annotated[
        bool,
        typer.Option("--force", help="Start afresh in a non-empty --out (clears it first)."),
    ] = False,
    as_json: Annotated[bool, typer.Option("--json", help="Print only the result (JSON).")] = False,
    scheduler: SchedulerOption = None,
    parallel: Annotated[
        int, typer.Option("--parallel", min=1, help="Search evaluations kept in flight.")
    ] = 1,
    tls_ca_file: TlsCaFileOption = None,
    tls_cert: TlsCertOption = None,
    tls_key: TlsKeyOption = None,
    job_timeout_s: JobTimeoutOption = 3600.0,
) -> None:
    """Find, train, export and measure the best model–device pair; write a report.

    With --scheduler, measurements run on the workers of their devices and trainings on
    training workers (local:N: N workers on this machine, which offer its live devices); this
    process stores every result. --out and --workspace must then be shared with the workers."""
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
        references_first=references_first,
        growprune=growprune,
        growprune_iterations=growprune_iterations,
        eval_timeout_s=eval_timeout_s,
        seed=seed,
        workspace=str(workspace),
        out=str(out),
        db=db,
    )
    lab = cluster_options(
        scheduler, tls_ca_file, tls_cert, tls_key, job_timeout_s,
        local_devices=[spec.name for spec in config.device_specs() if spec.live],
    )  # fmt: skip
    console = Console(stderr=True, highlight=False)
    status = console.status("co-design") if sys.stderr.isatty() else contextlib.nullcontext()
    with status, cluster_session(lab) as cluster:
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
