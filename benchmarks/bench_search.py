"""Co-search on the replay table: every sampler, several seeds, the same budget.

Build the table first (``benchmarks/build_replay_table.py``; its docstring says what the
accuracy stand-in is). For each run we record the 1-based evaluation at which the table's best
pair (paper objective) was first evaluated, the best objective after 25, 50 and 100
evaluations, and BOSHCODE's seconds per proposal. Runs append to ``--out`` (JSON Lines), so
samplers can run in separate processes; ``--summary`` prints the table for BENCHMARKS.md.

    python benchmarks/build_replay_table.py --out /tmp/replay.jsonl
    python benchmarks/bench_search.py --table /tmp/replay.jsonl --samplers tpe --out runs.jsonl
    python benchmarks/bench_search.py --summary runs.jsonl --table /tmp/replay.jsonl

``--suite`` runs the benchmark suite instead (:mod:`edgetran.search.suite`: the table's
hardware under six accuracy landscapes, the stand-in under a latency cap, and the tables
shaped like real ones generated from ``--data``), every sampler (default boshcode, tpe, trees
and random) × problem × seed (default 10) at budget 150 by default, skipping runs already in
``--out``, and prints one table: the median simple regret after 25, 50, 100 and 150
evaluations, the median evaluations to within 0.001 of the best and to the best pair, and the
misses (with ``--summary`` it only prints the table of ``--out``):

    python benchmarks/bench_search.py --suite --table /tmp/replay.jsonl \
        --samplers trees,tpe --out suite.jsonl [--problems rugged,capped,real-shaped]
    python benchmarks/bench_search.py --suite --summary --out suite.jsonl

``--quick`` is the same report in seconds (a small synthetic table, budget 12, 2 seeds,
regret after 4, 8 and 12 evaluations); a test in ``make test`` runs it.

``--pruners`` runs the time-to-quality benchmark (issue 42) instead: the suite's problems with
learning curves (:func:`~edgetran.search.suite.with_curves`, ``--crossings`` the share of slow
starters), every sampler × pruner × seed until its training cost reaches ``--cost`` full
trainings (a pruned evaluation costs the fraction of the training it reached), and one table:
the median regret at costs 10, 25, 50 and 100, the cost to reach the no-pruner runs' median
final regret (and its ratio to theirs: the goal is ≤ 0.5) and the distinct candidates:

    python benchmarks/bench_search.py --pruners none,median,sha,hyperband \
        --samplers boshcode,tpe,trees --problems sparse-devices,real-shaped --out ttq.jsonl
    python benchmarks/bench_search.py --pruners none,sha --quick   # seconds (make test)
"""

from __future__ import annotations

import argparse
import json
import tempfile
import time
from pathlib import Path

import numpy as np
import torch

from edgetran.search import (
    BoshcodeSettings,
    PaperObjective,
    ReplayEvaluator,
    SearchSettings,
    run_search,
)
from edgetran.search import suite as bench_suite

MARKS = (25, 50, 100)
DATA = Path(__file__).resolve().parents[2] / "shared" / "data" / "protran"
SUITE_SAMPLERS = "boshcode,tpe,trees,random"
#: ``--quick``: budget, seeds and regret marks of the small report.
QUICK_BUDGET, QUICK_SEEDS, QUICK_MARKS = 12, 2, (4, 8, 12)
#: "Near the best": one standard deviation of the stand-in accuracy's noise in objective units
#: (0.5 × 0.004); pairs this close to the best differ mostly by the luck of the noise draw.
NEAR = 0.002


def table_best(evaluator: ReplayEvaluator) -> tuple[str, float]:
    objective = PaperObjective()
    key = max(evaluator.table, key=lambda k: objective.value(evaluator.table[k][1]))
    return key, objective.value(evaluator.table[key][1])


def one_run(
    evaluator: ReplayEvaluator, sampler: str, seed: int, budget: int, boshcode: dict
) -> dict:
    best_key, _ = table_best(evaluator)
    began = time.perf_counter()
    settings = SearchSettings(
        sampler=sampler, budget=budget, seed=seed, boshcode=BoshcodeSettings(**boshcode)
    )
    result = run_search(evaluator, settings)
    keys = [r.pair.key for r in result.records]
    history = [r.value for r in result.records]
    return {
        "sampler": sampler + (f" {boshcode}" if boshcode and sampler == "boshcode" else ""),
        "seed": seed,
        "budget": budget,
        "to_best_pair": keys.index(best_key) + 1 if best_key in keys else None,
        "best_after": {m: max(history[:m]) for m in MARKS if m <= len(history)},
        "history": history,
        "seconds": time.perf_counter() - began,
        "seconds_per_proposal": float(np.mean(result.seconds_per_proposal)),
    }


def summary(path: Path, evaluator: ReplayEvaluator) -> None:
    runs = [json.loads(line) for line in path.read_text().splitlines() if line.strip()]
    _, best = table_best(evaluator)
    print(f"table best objective {best:.5f}; {len(evaluator.table)} pairs")
    print("| sampler | seeds | found best pair | median evaluations to best pair | "
          f"median evaluations to within {NEAR} | "
          + " | ".join(f"best after {m}" for m in MARKS) + " | s/proposal |")  # fmt: skip
    print("|---|---|---|---|---|" + "---|" * len(MARKS) + "---|")
    for sampler in dict.fromkeys(r["sampler"] for r in runs):
        mine = [r for r in runs if r["sampler"] == sampler]
        budget = mine[0]["budget"]
        # Runs that never found it count as budget + 1 (a lower bound), so the median is one.
        shown = _median_shown([r["to_best_pair"] or budget + 1 for r in mine], budget)
        near = _median_to_near(mine, best, budget)
        cells = " | ".join(
            f"{np.median([r['best_after'][str(m)] for r in mine]):.5f}"
            if all(str(m) in r["best_after"] for r in mine)
            else "–"
            for m in MARKS
        )
        hits = sum(r["to_best_pair"] is not None for r in mine)
        seconds = np.mean([r["seconds_per_proposal"] for r in mine])
        print(f"| {sampler} | {len(mine)} | {hits}/{len(mine)} | {shown} | {near} | {cells} | "
              f"{seconds:.3f} |")  # fmt: skip


def _median_to_near(runs: list[dict], best: float, budget: int) -> str:
    """Median evaluations to come within NEAR of the best (budget + 1 when never); "–" for
    runs recorded without their history."""
    if not all("history" in r for r in runs):
        return "–"
    reached = [
        next((i + 1 for i, v in enumerate(r["history"]) if v >= best - NEAR), budget + 1)
        for r in runs
    ]
    return _median_shown(reached, budget)


def _median_shown(evaluations: list[int], budget: int) -> str:
    median = float(np.median(evaluations))
    return f"{median:g}" if median <= budget else f"> {budget}"


def run_suite(args: argparse.Namespace) -> None:
    """Every sampler × problem × seed not yet in ``args.out``; then the table."""
    if not args.summary:
        wanted = args.problems.split(",") if args.problems else None
        problems = [p for p in bench_suite.PROBLEMS if wanted is None or p.name in wanted]
        tables = suite_tables(args, problems)
        done = {bench_suite.run_key(r) for r in bench_suite.read_runs(args.out)}
        overrides = json.loads(args.boshcode)
        for sampler in args.samplers.split(","):
            label = sampler + (f" {args.boshcode}" if overrides and sampler == "boshcode" else "")
            for problem in problems:
                evaluator, paper = tables[problem.name]
                for seed in range(args.first_seed, args.first_seed + args.seeds):
                    if (problem.name, label, seed) in done:
                        continue
                    run = bench_suite.suite_run(
                        evaluator, problem, sampler, seed, args.budget,
                        BoshcodeSettings(**overrides), label, paper,
                    )  # fmt: skip
                    with args.out.open("a") as handle:
                        handle.write(json.dumps(run) + "\n")
                    print(problem.name, label, seed, run["to_best_pair"],
                          f"{run['seconds']:.0f}s", flush=True)  # fmt: skip
    rows = bench_suite.summarise(bench_suite.read_runs(args.out))
    print(bench_suite.markdown_table(rows))


def suite_tables(
    args: argparse.Namespace, problems: list[bench_suite.Problem]
) -> dict[str, tuple[ReplayEvaluator, PaperObjective | None]]:
    """``problem name → (evaluator, objective)`` over :func:`suite_paths`' tables."""
    return {
        name: (ReplayEvaluator(path), paper)
        for name, (path, paper) in suite_paths(args, problems).items()
    }


def run_pruners(args: argparse.Namespace) -> None:
    """Every sampler × pruner × problem × seed not yet in ``args.out``, each until its
    training cost reaches ``args.cost``; then the time-to-quality table."""
    if not args.summary:
        wanted = args.problems.split(",") if args.problems else None
        problems = [p for p in bench_suite.PROBLEMS if wanted is None or p.name in wanted]
        paths = suite_paths(args, problems)
        done = {bench_suite.run_key(r) for r in bench_suite.read_runs(args.out)}
        overrides = BoshcodeSettings(**json.loads(args.boshcode))
        for problem in problems:
            path, paper = paths[problem.name]
            evaluator = ReplayEvaluator(curve_table(path, args.crossings))
            for sampler in args.samplers.split(","):
                for pruner in args.pruners.split(","):
                    for seed in range(args.first_seed, args.first_seed + args.seeds):
                        if (problem.name, f"{sampler}+{pruner}", seed) in done:
                            continue
                        run = bench_suite.cost_run(evaluator, problem, sampler, pruner, seed,
                                                   args.cost, overrides, paper)  # fmt: skip
                        with args.out.open("a") as handle:
                            handle.write(json.dumps(run) + "\n")
                        print(problem.name, run["sampler"], seed, run["distinct"],
                              f"{run['seconds']:.0f}s", flush=True)  # fmt: skip
    rows = bench_suite.cost_summary(bench_suite.read_runs(args.out), cost_marks(args.cost))
    print(bench_suite.cost_table(rows))


def cost_marks(cost: float) -> tuple[float, ...]:
    """The cost marks up to ``cost`` (and ``cost`` itself)."""
    return tuple(sorted({*(m for m in bench_suite.COST_MARKS if m < cost), cost}))


def curve_table(path: Path, crossings: float) -> Path:
    """``path``'s table with learning curves, written beside it."""
    rows = [json.loads(line) for line in path.read_text().splitlines() if line.strip()]
    out = path.with_name(f"{path.stem}-curves{crossings:g}.jsonl")
    curved = bench_suite.with_curves(rows, crossings)
    out.write_text("".join(json.dumps(row) + "\n" for row in curved))
    return out


def suite_paths(
    args: argparse.Namespace, problems: list[bench_suite.Problem]
) -> dict[str, tuple[Path, PaperObjective | None]]:
    """``problem name → (table path, objective)``: the landscapes rescore ``--table``, the
    shaped problems are generated from ``--data`` (written beside ``--out``)."""
    where = args.out.parent / "tables"
    paths: dict[str, tuple[Path, PaperObjective | None]] = {}
    if any(p.shape is None for p in problems):
        if args.table is None:
            raise SystemExit("error: the landscape problems need --table")
        for name, path in bench_suite.write_landscape_tables(args.table, where).items():
            paths.update({p.name: (path, None) for p in problems
                          if p.landscape == name and p.shape is None})  # fmt: skip
    if any(p.shape is not None for p in problems):
        paths.update(bench_suite.write_shaped_tables(args.data, where))
    return paths


#: ``--pruners --quick``: the cost each run spends and the seeds.
QUICK_COST, QUICK_COST_SEEDS = 8.0, 2


def quick_pruners(out_dir: Path, samplers: str, pruners: str) -> list[dict]:
    """The time-to-quality report in seconds: ``samplers`` × ``pruners`` on a small synthetic
    table with curves (16 architectures on 2 devices), :data:`QUICK_COST_SEEDS` seeds, each
    until :data:`QUICK_COST` full trainings are spent; runs in ``out_dir/quick.jsonl``,
    :func:`~edgetran.search.suite.cost_summary`'s rows returned."""
    from edgetran.testing import synthetic_table

    table = curve_table(synthetic_table(out_dir / "table.jsonl", n_archs=16), 0.2)
    evaluator = ReplayEvaluator(table)
    problem = bench_suite.Problem("synthetic", "stand-in")
    runs = [
        bench_suite.cost_run(evaluator, problem, sampler, pruner, seed, QUICK_COST)
        for sampler in samplers.split(",")
        for pruner in pruners.split(",")
        for seed in range(QUICK_COST_SEEDS)
    ]
    (out_dir / "quick.jsonl").write_text("".join(json.dumps(r) + "\n" for r in runs))
    return bench_suite.cost_summary(runs, (2.0, 4.0, QUICK_COST))


def quick(out_dir: Path, samplers: str = SUITE_SAMPLERS) -> list[dict]:
    """The suite's report in seconds: ``samplers`` on a small synthetic table (8 architectures
    on 2 devices), :data:`QUICK_SEEDS` seeds at budget :data:`QUICK_BUDGET`; the runs are
    written to ``out_dir/quick.jsonl`` and :func:`~edgetran.search.suite.summarise`'s rows,
    regret after :data:`QUICK_MARKS`, returned."""
    from edgetran.testing import synthetic_table

    evaluator = ReplayEvaluator(synthetic_table(out_dir / "table.jsonl", n_archs=8))
    problem = bench_suite.Problem("synthetic", "stand-in")
    runs = [
        bench_suite.suite_run(evaluator, problem, sampler, seed, QUICK_BUDGET)
        for sampler in samplers.split(",")
        for seed in range(QUICK_SEEDS)
    ]
    (out_dir / "quick.jsonl").write_text("".join(json.dumps(r) + "\n" for r in runs))
    return bench_suite.summarise(runs, QUICK_MARKS)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--table", type=Path)
    parser.add_argument("--suite", action="store_true", help="run the benchmark suite")
    parser.add_argument("--quick", action="store_true", help="the suite's report in seconds")
    parser.add_argument("--problems", help="suite problems to run (default: all)")
    parser.add_argument(
        "--data", type=Path, default=DATA, help=f"ProTran JSON files (default {DATA})"
    )
    parser.add_argument(
        "--samplers", help=f"default {SUITE_SAMPLERS} with --suite or --quick, else "
        "boshcode,random,tpe,nsga2,gp"
    )  # fmt: skip
    parser.add_argument("--seeds", type=int, default=10)
    parser.add_argument("--first-seed", type=int, default=0)
    parser.add_argument("--budget", type=int, help="default 100, or 150 with --suite")
    parser.add_argument("--out", type=Path, default=Path("search-runs.jsonl"))
    parser.add_argument(
        "--summary", nargs="?", type=Path, const=True, help="print the table of runs"
    )
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument(
        "--pruners", help="time-to-quality: pruners to compare, e.g. none,median,sha,hyperband"
    )
    parser.add_argument(
        "--cost", type=float, default=100.0, help="time-to-quality: full trainings per run"
    )
    parser.add_argument(
        "--crossings", type=float, default=0.1, help="time-to-quality: share of slow starters"
    )
    parser.add_argument(
        "--boshcode", default="{}", help='BoshcodeSettings overrides as JSON, e.g. {"alpha": 0}'
    )
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    if args.budget is None:
        args.budget = 150 if args.suite else 100
    if args.samplers is None:
        args.samplers = (
            SUITE_SAMPLERS
            if args.suite or args.quick or args.pruners
            else "boshcode,random,tpe,nsga2,gp"
        )
    import optuna

    optuna.logging.set_verbosity(optuna.logging.WARNING)
    if args.pruners and args.quick:
        samplers = args.samplers if args.samplers != SUITE_SAMPLERS else "tpe,trees"
        with tempfile.TemporaryDirectory() as tmp:
            rows = quick_pruners(Path(tmp), samplers, args.pruners)
            print(bench_suite.cost_table(rows))
        return
    if args.pruners:
        run_pruners(args)
        return
    if args.quick:
        with tempfile.TemporaryDirectory() as tmp:
            print(bench_suite.markdown_table(quick(Path(tmp), args.samplers)))
        return
    if args.table is None and not args.suite:
        parser.error("--table is required")
    if args.suite:
        run_suite(args)
        return
    evaluator = ReplayEvaluator(args.table)
    if args.summary:
        summary(args.summary, evaluator)
        return
    for sampler in args.samplers.split(","):
        for seed in range(args.first_seed, args.first_seed + args.seeds):
            run = one_run(evaluator, sampler, seed, args.budget, json.loads(args.boshcode))
            with args.out.open("a") as handle:
                handle.write(json.dumps(run) + "\n")
            print(sampler, seed, run["to_best_pair"], f"{run['seconds']:.0f}s", flush=True)


if __name__ == "__main__":
    main()
