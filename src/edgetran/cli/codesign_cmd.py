"""``edgetran codesign``: the main job — the best model–device pair for a task and budgets."""

from __future__ import annotations

import contextlib
import functools
import sys
from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer

from edgetran.cli import cluster_cmds
from edgetran.cli._common import force_option, option_groups, print_json, quiet_optuna

if TYPE_CHECKING:
    from edgetran.cluster import ClusterOptions

#: The panels of --help (the lab's is cluster_cmds'), and an option of each.
PANELS = ("Task and budgets", "Devices and profiling", "Search and choice", "Outputs")
_TASK, _DEVICES, _SEARCH, _OUTPUTS = (
    functools.partial(typer.Option, rich_help_panel=panel) for panel in PANELS
)
#: The embedded default, shown by --help (kept in step with CodesignConfig's defaults).
DEFAULT_DEVICES = "cpu/torch,cpu/onnxruntime,cpu/openvino,cpu/onnxruntime-int8"
#: The default --workspace and --out.
WORKSPACE, OUT = Path("edgetran-workspace"), Path("codesign-out")


@option_groups(lab=cluster_cmds.lab_options)
def codesign(
    task: Annotated[
        str, _TASK(metavar="TASK", help="tweet-sentiment, glue/<task>, or a CSV/JSONL file.")
    ] = "tweet-sentiment",
    devices: Annotated[
        str,
        _DEVICES(
            metavar="LIST",
            help="HARDWARE/RUNTIME pairs and measurement files (default: 4 CPU runtimes).",
            show_default=False,
        ),
    ] = DEFAULT_DEVICES,
    max_latency_ms: Annotated[
        float | None, _TASK(metavar="MS", help="Budget per sequence.")
    ] = None,
    max_energy_mj: Annotated[
        float | None, _TASK(metavar="MJ", help="Budget per sequence.")
    ] = None,
    max_peak_power_w: Annotated[float | None, _TASK(metavar="W", help="Budget.")] = None,
    min_accuracy: Annotated[float | None, _TASK(metavar="X", help="Budget (a fraction).")] = None,
    budget: Annotated[str, _TASK(metavar="NAME", help="Accuracy budget of the search.")] = "quick",
    final_budget: Annotated[
        str, _TASK(metavar="NAME", help="Training budget of the winner.")
    ] = "quick",
    evaluations: Annotated[int, _TASK(metavar="N", min=1, help="Co-search evaluations.")] = 6,
    sampler: Annotated[
        str, _SEARCH(metavar="NAME", help="boshcode, tpe, trees … (edgetran env).")
    ] = "boshcode",
    compare: Annotated[
        str | None, _SEARCH(metavar="NAME", help="A second sampler, for the report.")
    ] = None,
    objective: Annotated[
        str, _SEARCH(metavar="RULE", help="paper, pareto or accuracy.")
    ] = "paper",
    norms: Annotated[
        str,
        _SEARCH(
            metavar="SCALE",
            help="run (largest reference), reference (1000 s, 2000 J, 300 W) or L,E,P.",
        ),
    ] = "run",
    choose: Annotated[
        str,
        _SEARCH(
            metavar="RULE", help="one-std (fastest within one accuracy std) or best (the maximum)."
        ),
    ] = "one-std",
    space: Annotated[
        Path | None, _TASK(metavar="FILE", help="Design space (default: CPU-sized).")
    ] = None,
    profile_budget: Annotated[
        int, _DEVICES(metavar="N", min=8, help="Measurements per live device.")
    ] = 10,
    seq_len: Annotated[
        int, _DEVICES(metavar="N", min=1, help="Tokens measured and exported for.")
    ] = 64,
    meter: Annotated[
        str, _DEVICES(metavar="METER", help="Power meter (see edgetran env).")
    ] = "auto",
    threads: Annotated[
        int | None, _DEVICES(metavar="N", min=1, help="CPU threads (default: the free cores).")
    ] = None,
    idle_s: Annotated[
        float, _DEVICES(metavar="S", min=0, help="Idle power seconds per measurement.")
    ] = 0.5,
    profile_max_time: Annotated[
        float, _DEVICES(metavar="S", min=0, help="Timed seconds per measurement.")
    ] = 1.0,
    references: Annotated[
        str, _SEARCH(metavar="LIST", help="Named BERTs compared with the answer.")
    ] = "bert-tiny,bert-mini",
    no_references_first: Annotated[
        bool, _SEARCH("--no-references-first", help="Do not start from the references.")
    ] = False,
    require_quiet: Annotated[
        bool, _DEVICES("--require-quiet", help="Measure only on a quiet machine.")
    ] = False,
    no_growprune: Annotated[
        bool, _SEARCH("--no-growprune", help="Skip grow-and-prune of the winner.")
    ] = False,
    growprune_iterations: Annotated[
        int, _SEARCH(min=1, metavar="N", help="Grow-and-prune steps.")
    ] = 1,
    eval_timeout_s: Annotated[
        float | None, _SEARCH(metavar="S", min=0, help="A longer evaluation fails.")
    ] = None,
    pruner: Annotated[
        str, _SEARCH(metavar="NAME", help="Stop weak trainings: none, median, sha, hyperband.")
    ] = "none",
    promote: Annotated[
        int | None,
        _SEARCH(metavar="K", help="Train the K best pairs at --final-budget before choosing."),
    ] = None,
    seed: Annotated[int, _TASK(metavar="N", help="Seed of every stage.")] = 0,
    workspace: Annotated[
        Path, _OUTPUTS(metavar="DIR", help="Tokenizers and checkpoints.")
    ] = WORKSPACE,
    out: Annotated[Path, _OUTPUTS("--out", metavar="DIR", help="Output folder.")] = OUT,
    db: Annotated[
        str | None,
        _OUTPUTS(
            "--db", metavar="URL", help="SQLAlchemy URL or SQLite file (default: edgetran.db)."
        ),
    ] = None,
    resume: Annotated[bool, _OUTPUTS("--resume", help="Continue the run in --out.")] = False,
    restart: Annotated[
        bool, _OUTPUTS("--restart", help="Discard the run's record and start it again.")
    ] = False,
    force: Annotated[bool, force_option(rich_help_panel=PANELS[-1])] = False,
    as_json: Annotated[bool, _OUTPUTS("--json", help="Print only the result (JSON).")] = False,
    *,
    lab: ClusterOptions | None,
    parallel: Annotated[
        int,
        cluster_cmds.lab_option("--parallel", "Q", "Search evaluations kept in flight.", min=1),
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
        pruner=pruner,
        promote=promote,
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
