"""``edgetran search``: co-search of (model, device) pairs."""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer

from edgetran.cli import cluster_cmds
from edgetran.cli._common import (
    DbOption,
    JsonOption,
    SeedOption,
    database_name,
    fail,
    on_interrupt,
    option_groups,
    print_json,
    quiet_optuna,
    resolve_space,
)
from edgetran.search.settings import (
    BOSHCODE_SURROGATES,
    ENCODINGS,
    OBJECTIVES,
    BoshcodeSettings,
    parse_norms,
)

if TYPE_CHECKING:
    from edgetran.cluster import ClusterOptions

#: BOSHCODE's defaults, shown by --help.
_BOSHCODE = BoshcodeSettings()


@option_groups(lab=cluster_cmds.lab_options)
def search(
    benchmark: Annotated[
        Path | None, typer.Option("--benchmark", help="Replay table (JSON Lines).")
    ] = None,
    task: Annotated[str | None, typer.Option(help="Live search: accuracy task.")] = None,
    devices: Annotated[
        str | None, typer.Option(help="Live search: devices, comma-separated.")
    ] = None,
    sampler: Annotated[
        str,
        typer.Option(help="boshcode, trees, random, tpe, nsga2, gp or a plug-in (edgetran env)."),
    ] = "boshcode",
    budget: Annotated[
        int,
        typer.Option(
            min=1,
            help="Evaluations in all; a replay table's search ends (with a warning) once every "
            "pair is evaluated.",
        ),
    ] = 50,
    seed: SeedOption = 0,
    objective: Annotated[str, typer.Option(help="paper, pareto or accuracy.")] = "paper",
    norms: Annotated[
        str | None,
        typer.Option(
            help="Paper objective's cost scale: run (the largest stored reference's costs on "
            "its slowest device), reference (1000 s, 2000 J, 300 W) or L_S,E_J,P_W. Default: "
            "run for a live search, reference for a replay table."
        ),
    ] = None,
    max_latency_ms: Annotated[float | None, typer.Option(help="Budget (pareto).")] = None,
    max_energy_mj: Annotated[float | None, typer.Option(help="Budget (pareto).")] = None,
    max_peak_power_w: Annotated[float | None, typer.Option(help="Budget (pareto).")] = None,
    min_accuracy: Annotated[float | None, typer.Option(help="Budget (pareto).")] = None,
    space: Annotated[
        Path | None, typer.Option(help="Live search: design space file (default: reference).")
    ] = None,
    accuracy_budget: Annotated[
        str, typer.Option(help="Live search: accuracy-oracle budget (quick/standard/full).")
    ] = "quick",
    device_features: Annotated[
        Path | None,
        typer.Option(help="JSON {device: [numbers]} describing devices (default one-hot)."),
    ] = None,
    ucb_k: Annotated[float, typer.Option(help="BOSHCODE: UCB = mean + k·σ.")] = _BOSHCODE.ucb_k,
    stalled_ucb_k: Annotated[
        float | None,
        typer.Option(
            help="BOSHCODE forests: the UCB's k while the search has stalled (no better value "
            "in 10 evaluations); --ucb-k's value turns it off."
        ),
    ] = _BOSHCODE.stalled_ucb_k,
    stalled_every: Annotated[
        int,
        typer.Option(
            min=1, help="BOSHCODE forests: while stalled, every N-th step explores with that k."
        ),
    ] = _BOSHCODE.stalled_every,
    surrogate: Annotated[
        str,
        typer.Option(
            help="BOSHCODE's surrogate: forests (extra-trees per metric, composed through the "
            "objective) or networks (the reference's, with GOBI)."
        ),
    ] = _BOSHCODE.surrogate,
    alpha: Annotated[
        float,
        typer.Option(
            help="BOSHCODE networks: probability of taking the most uncertain candidate."
        ),
    ] = _BOSHCODE.alpha,
    beta: Annotated[
        float, typer.Option(help="BOSHCODE networks: probability of taking a random candidate.")
    ] = _BOSHCODE.beta,
    portfolio: Annotated[
        float,
        typer.Option(
            help="BOSHCODE: the share of proposals (after the initial design) that Optuna's TPE "
            "makes instead of the surrogate, in [0, 1)."
        ),
    ] = _BOSHCODE.portfolio,
    arch_encoding: Annotated[
        str,
        typer.Option(
            help="BOSHCODE's (and trees') architecture input: embedding, features or compact."
        ),
    ] = _BOSHCODE.encoding,
    db: DbOption = None,
    study: Annotated[
        str | None, typer.Option(help="Study name (default from the options).")
    ] = None,
    resume: Annotated[
        bool,
        typer.Option(
            "--resume",
            help="Continue a stored search; several processes may run one study at once.",
        ),
    ] = False,
    parallel: Annotated[
        int,
        typer.Option(
            "--parallel", help="Evaluations in flight at once (threads of this process)."
        ),
    ] = 1,
    pruner: Annotated[
        str,
        typer.Option(
            help="Stop weak trainings at a rung: none, median, sha or hyperband (Optuna's "
            "pruners; a replay table needs learning curves)."
        ),
    ] = "none",
    verbose: Annotated[bool, typer.Option("--verbose", help="One line per evaluation.")] = False,
    as_json: JsonOption = False,
    *,
    lab: ClusterOptions | None,
) -> None:
    """Find the (model, device) pair that maximises accuracy and minimises cost.

    With --scheduler, a live search trains its candidates on the cluster's training workers
    (with --parallel Q, Q at once) and stores every result here."""
    from edgetran.search import (
        Constraints,
        ReplayEvaluator,
        SearchSettings,
        read_device_features,
    )
    from edgetran.search.fidelity import PRUNERS

    quiet_optuna()
    if (benchmark is None) == (task is None):
        fail("give either --benchmark FILE.jsonl or --task TASK --devices D1,D2,…")
    from edgetran.plugins import list_samplers

    if sampler not in list_samplers():
        fail(f"--sampler {sampler!r} is invalid; allowed: {', '.join(list_samplers())}")
    if arch_encoding not in ENCODINGS:
        fail(f"--arch-encoding {arch_encoding!r} is invalid; allowed: {', '.join(ENCODINGS)}")
    if surrogate not in BOSHCODE_SURROGATES:
        fail(f"--surrogate {surrogate!r} is invalid; allowed: {', '.join(BOSHCODE_SURROGATES)}")
    if objective not in OBJECTIVES:
        fail(f"--objective {objective!r} is invalid; allowed: {', '.join(OBJECTIVES)}")
    if not 0.0 <= portfolio < 1.0:
        fail(f"--portfolio {portfolio} is invalid; expected a share in [0, 1)")
    if stalled_ucb_k is not None and not stalled_ucb_k >= 0:
        fail(f"--stalled-ucb-k {stalled_ucb_k} is invalid; expected k ≥ 0")
    if parallel < 1:
        fail(f"--parallel {parallel} is invalid; expected an integer ≥ 1")
    if pruner not in PRUNERS:
        fail(f"--pruner {pruner!r} is invalid; allowed: {', '.join(PRUNERS)}")
    scale = parse_norms(norms or ("reference" if benchmark else "run"))
    settings = SearchSettings(
        sampler=sampler,
        budget=budget,
        seed=seed,
        objective=objective,
        constraints=Constraints(max_latency_ms, max_energy_mj, max_peak_power_w, min_accuracy),
        device_features=device_features and read_device_features(device_features),
        boshcode=BoshcodeSettings(
            ucb_k=ucb_k,
            alpha=alpha,
            beta=beta,
            encoding=arch_encoding,
            surrogate=surrogate,
            portfolio=portfolio,
            stalled_ucb_k=stalled_ucb_k,
            stalled_every=stalled_every,
        ),
        pruner=pruner,
    )
    if task and parallel > 1 and lab is None:
        fail(
            f"--parallel {parallel} trains several candidates at once: a live search needs "
            "--scheduler (local:N or an address) for that"
        )
    if benchmark and lab:
        fail("--scheduler trains and measures live candidates; a replay table has none")
    with cluster_cmds.cluster_session(lab) as cluster:
        evaluator = (
            ReplayEvaluator(benchmark)
            if benchmark
            else _live(task, devices, db, accuracy_budget, space, cluster)
        )
        if settings.objective == "paper" or norms is not None:  # else norms are unused
            settings = _with_norms(settings, scale, devices, db)
        _search(evaluator, settings, benchmark, task, devices, study, db, resume, verbose,
                parallel, as_json)  # fmt: skip


def _search(evaluator, settings, benchmark, task, devices, study, db, resume, verbose, parallel,
            as_json) -> None:  # fmt: skip
    """Run the search and print its result."""
    from rich.console import Console
    from rich.progress import Progress

    from edgetran.search import run_search
    from edgetran.store import database_url

    budget, sampler, seed = settings.budget, settings.sampler, settings.seed
    objective = settings.objective
    if benchmark and budget > len(evaluator.table):
        typer.echo(
            f"warning: --budget {budget} exceeds the {len(evaluator.table)} pairs of "
            f"{benchmark}; the search ends when all of them are evaluated",
            err=True,
        )
    source = benchmark.stem if benchmark else f"{task}-{devices}".replace("/", "_")
    name = study or f"{source}-{sampler}-{objective}-seed{seed}"
    console = Console(stderr=True)
    again = "the same command" + ("" if resume else " with --resume")
    kept = f"the evaluations so far are stored in {database_name(db)}; run {again} to continue"
    with (
        on_interrupt(kept),
        Progress(console=console, disable=not sys.stderr.isatty()) as progress,
    ):
        bar = progress.add_task("searching", total=budget)

        def report(n: int, record) -> None:
            progress.update(bar, completed=n)
            if verbose:
                m = record.evaluation.metrics
                console.print(
                    f"{n:4d} {record.how:>11} {record.pair.device:>24} "
                    f"{record.pair.arch.hash[:10]} acc {m['accuracy']:.4f} "
                    f"lat {m['latency_s']:.4g}s E {m['energy_j']:.4g}J P {m['peak_power_w']:.4g}W "
                    f"→ {record.value:.5f}"
                    + (f" (pruned at {record.fidelity:g})" if record.pruned else "")
                )

        result = run_search(
            evaluator, settings, storage=database_url(db), study_name=name, resume=resume,
            on_evaluation=report, parallel=parallel,
        )  # fmt: skip
    out = {
        **result.to_dict(), "sampler": sampler, "seed": seed, "study": name, "parallel": parallel,
    }  # fmt: skip
    if as_json:
        print_json(out)
        return
    best = out["best"]
    if best is None:
        typer.echo(out["message"])
        return
    typer.echo(
        f"best: {best['device']} {json.dumps(best['arch'])} objective {best['objective']:.5f} "
        f"(evaluation {out['evaluations_to_best']} of {out['evaluations']})"
    )


def _with_norms(settings, scale, devices: str | None, db: str | None):
    """``settings`` with the paper objective's norms resolved (``run``: from the store)."""
    from dataclasses import replace

    from edgetran.search import paper_with_norms
    from edgetran.search.live import stored_reference_costs
    from edgetran.store import Store

    def costs():
        names = [d.strip() for d in (devices or "").split(",") if d.strip()]
        return stored_reference_costs(Store(db), names)

    paper, _ = paper_with_norms(scale, costs, settings.paper)
    return replace(settings, paper=paper)


def _live(task: str, devices: str | None, db: str | None, accuracy_budget: str, space, cluster):
    """The live evaluator of ``--task`` and ``--devices`` (training on ``cluster``)."""
    from edgetran.search.live import live_evaluator
    from edgetran.store import Store

    if not devices:
        fail("--task needs --devices D1,D2,… (devices with measurements in the store)")
    names = [d.strip() for d in devices.split(",") if d.strip()]
    return live_evaluator(
        task, names, Store(db), accuracy_budget=accuracy_budget, space=resolve_space(space),
        cluster=cluster,
    )  # fmt: skip
