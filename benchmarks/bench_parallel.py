"""Parallel co-search on the replay table: wall-clock speed-up with Q evaluations in flight.

Each evaluation of the replay table sleeps ``--eval-seconds`` (default 1 s), standing in for
training or measuring a model, so that a search's wall-clock time is what a slow evaluator
makes of it; the search keeps Q evaluations in flight (``run_search(…, parallel=Q)``, threads).
For each sampler, seed and Q we record the search's wall-clock seconds, its history and the
evaluations to the table's best pair (paper objective), counted in the order the evaluations
were started; a run that never evaluates it counts as budget + 1. The summary compares each Q
with Q = 1 on the same seeds: the median of the per-seed speed-ups (wall at Q = 1 / wall at
Q) and of the per-seed changes in evaluations to the best pair, next to the median simple
regret (the table's best minus the best found, :func:`edgetran.search.suite.regret_after`)
after 50 and 150 evaluations. Issue 43's goal: BOSHCODE at Q = 4 at least 3.5× faster, with
its median regret at 150 no worse than at Q = 1. Q = 1 is the sequential search, proposal for
proposal; at Q > 1 which result comes first depends on timing, so a run is not reproducible
to the pair.

Runs append to ``--out`` (JSON Lines) and runs already there are skipped, so a killed
benchmark resumes where it stopped:

    python benchmarks/build_replay_table.py --out /tmp/replay.jsonl
    python benchmarks/bench_parallel.py --table /tmp/replay.jsonl --out parallel.jsonl
    python benchmarks/bench_parallel.py --summary --out parallel.jsonl --table /tmp/replay.jsonl

Defaults (issue 43): samplers boshcode, trees and tpe; Q in {1, 4}; seeds 0–9; budget 150;
1 s per evaluation (about 3 × 10 × (150 + 38) s ≈ 94 min of sleeping, plus the proposals).
"""

from __future__ import annotations

import argparse
import json
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
from edgetran.search.suite import regret_after

#: Evaluations after which the summary shows the median simple regret.
MARKS = (50, 150)


class TimedReplay(ReplayEvaluator):
    """The replay table, ``seconds`` of sleep per evaluation (safe from several threads)."""

    def __init__(self, path: Path, seconds: float) -> None:
        super().__init__(path)
        self.seconds = seconds

    def evaluate(self, pair):
        time.sleep(self.seconds)
        return super().evaluate(pair)


def best_key(evaluator: ReplayEvaluator) -> str:
    objective = PaperObjective()
    return max(evaluator.table, key=lambda k: objective.value(evaluator.table[k][1]))


def one_run(
    evaluator: TimedReplay, sampler: str, seed: int, parallel: int, budget: int, boshcode: dict
) -> dict:
    settings = SearchSettings(
        sampler=sampler, budget=budget, seed=seed, boshcode=BoshcodeSettings(**boshcode)
    )
    began = time.perf_counter()
    result = run_search(evaluator, settings, parallel=parallel)
    seconds = time.perf_counter() - began
    keys = [r.pair.key for r in result.records]
    target = best_key(evaluator)
    return {
        "sampler": sampler + (f" {boshcode}" if boshcode and sampler == "boshcode" else ""),
        "parallel": parallel,
        "seed": seed,
        "budget": budget,
        "eval_seconds": evaluator.seconds,
        "seconds": seconds,
        "evaluations": len(keys),
        "to_best_pair": keys.index(target) + 1 if target in keys else None,
        "best": max((r.value for r in result.records), default=None),
        "table_best": PaperObjective().value(evaluator.table[target][1]),
        "history": [r.value for r in result.records],
        "seconds_per_proposal": float(np.mean(result.seconds_per_proposal or [0.0])),
    }


def run_key(run: dict) -> tuple:
    return run["sampler"], run["parallel"], run["seed"], run["budget"], run["eval_seconds"]


def read_runs(path: Path) -> list[dict]:
    if not path.exists():
        return []
    return [json.loads(line) for line in path.read_text().splitlines() if line.strip()]


def summary(runs: list[dict]) -> str:
    """One row per sampler and Q: medians over seeds, against Q = 1 on the same seeds."""
    lines = [
        "| sampler | Q | seeds | median wall s | median speed-up vs Q=1 | evaluation time "
        "busy | found best pair | median evaluations to best pair | median change vs Q=1 | "
        + " | ".join(f"median regret after {m}" for m in MARKS)
        + " |",
        "|---|---|---|---|---|---|---|---|---|" + "---|" * len(MARKS),
    ]
    for sampler in dict.fromkeys(r["sampler"] for r in runs):
        mine = [r for r in runs if r["sampler"] == sampler]
        sequential = {(r["seed"], r["budget"]): r for r in mine if r["parallel"] == 1}
        for q in sorted({r["parallel"] for r in mine}):
            at_q = [r for r in mine if r["parallel"] == q]
            budget = at_q[0]["budget"]
            to_best = [r["to_best_pair"] or budget + 1 for r in at_q]
            pairs = [(sequential.get((r["seed"], r["budget"])), r) for r in at_q]
            pairs = [(one, r) for one, r in pairs if one is not None]
            speedups = [one["seconds"] / r["seconds"] for one, r in pairs]
            changes = [
                (r["to_best_pair"] or budget + 1) - (one["to_best_pair"] or budget + 1)
                for one, r in pairs
            ]
            # share of the Q evaluation slots' time spent evaluating: 1 means never idle
            busy = [r["evaluations"] * r["eval_seconds"] / (q * r["seconds"]) for r in at_q]
            hits = sum(r["to_best_pair"] is not None for r in at_q)
            wall = float(np.median([r["seconds"] for r in at_q]))
            lines.append(
                f"| {sampler} | {q} | {len(at_q)} | {wall:.1f}"
                f" | {_median(speedups, '{:.2f}×')} | {np.median(busy):.0%} | {hits}/{len(at_q)}"
                f" | {_shown(float(np.median(to_best)), budget)} | {_median(changes, '{:+g}')} | "
                + " | ".join(_regret(at_q, mark) for mark in MARKS)
                + " |"
            )
    return "\n".join(lines)


def _regret(runs: list[dict], evaluations: int) -> str:
    """The median simple regret after ``evaluations`` ('–' where a run is shorter or was
    recorded before runs kept the table's best)."""
    if any("table_best" not in r for r in runs):
        return "–"
    values = [regret_after({**r, "best": r["table_best"]}, evaluations) for r in runs]
    return "–" if None in values else f"{float(np.median(values)):.5f}"


def _median(values: list[float], form: str) -> str:
    return form.format(float(np.median(values))) if values else "–"


def _shown(median: float, budget: int) -> str:
    return f"{median:g}" if median <= budget else f"> {budget}"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--table", type=Path, help="replay table (build_replay_table.py)")
    parser.add_argument("--samplers", default="boshcode,trees,tpe")
    parser.add_argument("--parallel", default="1,4", help="values of Q, comma-separated")
    parser.add_argument("--seeds", type=int, default=10)
    parser.add_argument("--first-seed", type=int, default=0)
    parser.add_argument("--budget", type=int, default=150)
    parser.add_argument("--eval-seconds", type=float, default=1.0)
    parser.add_argument("--out", type=Path, default=Path("parallel-runs.jsonl"))
    parser.add_argument("--summary", action="store_true", help="only print the table of --out")
    parser.add_argument("--threads", type=int, default=1, help="torch threads (BOSHCODE)")
    parser.add_argument(
        "--boshcode", default="{}", help='BoshcodeSettings overrides as JSON, e.g. {"alpha": 0}'
    )
    args = parser.parse_args()
    if not args.summary:
        if args.table is None:
            parser.error("--table is required")
        run_all(args)
    print(summary(read_runs(args.out)))


def run_all(args: argparse.Namespace) -> None:
    """Every sampler × seed × Q not yet in ``args.out``; Q = 1 first, for the comparison."""
    import optuna

    optuna.logging.set_verbosity(optuna.logging.WARNING)
    torch.set_num_threads(args.threads)
    evaluator = TimedReplay(args.table, args.eval_seconds)
    overrides = json.loads(args.boshcode)
    done = {run_key(r) for r in read_runs(args.out)}
    qs = sorted(int(q) for q in args.parallel.split(","))
    for sampler in args.samplers.split(","):
        for seed in range(args.first_seed, args.first_seed + args.seeds):
            for q in qs:
                label = sampler + (f" {overrides}" if overrides and sampler == "boshcode" else "")
                if (label, q, seed, args.budget, args.eval_seconds) in done:
                    continue
                run = one_run(evaluator, sampler, seed, q, args.budget, overrides)
                with args.out.open("a") as handle:
                    handle.write(json.dumps(run) + "\n")
                print(f"{label} seed {seed} Q={q}: {run['seconds']:.0f} s, best pair at "
                      f"{run['to_best_pair']}", flush=True)  # fmt: skip


if __name__ == "__main__":
    main()
