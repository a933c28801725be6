"""Live co-search with and without pruning at an equal wall-clock budget (issue 42, item 5).

Setup, once and untimed: the CPU-sized space's architectures (``edgetran codesign``'s) sampled
and profiled on ``--device`` (default ``cpu/onnxruntime``) into ``OUT/base.db``. Then one arm
per pruner (``none`` first), each on its own copy of that database and a fresh workspace, so
that no arm reads another's trainings: a live co-search on tweet-sentiment at the quick budget
(the demo's task and budget), the same sampler and seed, with a large evaluation budget,
stopped once ``--minutes`` have passed (at the next training rung, or the next training's
start, where the clock is read: the last training runs past the limit by at most one rung).
Each arm reports the pairs trained to the full budget (distinct), the pruned ones, the
failures, and its winner (the best feasible full-budget pair by the paper objective, norms at
the run's scale as ``edgetran codesign`` takes them) with its accuracy and latency.

    python benchmarks/bench_pruning_live.py --minutes 10 --pruners none,median --out bench-pruning

prints one JSON line per arm (also appended to ``OUT/runs.jsonl``) and a Markdown table for
BENCHMARKS.md. On two cores the arms can run at once, one process each under the same load
(BENCHMARKS.md's run): ``OMP_NUM_THREADS=1 taskset -c N python … --pruners P --out OUT`` for
N, P = 0, none and 1, sha, the second started once ``OUT/base.db`` exists. Issue 42's goal: at
least twice the candidates in the same wall time.
``--quick`` is the same harness in seconds (a toy task, a simulated device, a tiny space and
budget, a few seconds per arm); a test in ``make test`` runs it.
"""

from __future__ import annotations

import argparse
import contextlib
import csv
import json
import shutil
import time
from pathlib import Path

import numpy as np

#: ``--quick``: the toy budget (fine-tuning steps), the seconds per arm and the toy space.
QUICK_SECONDS = 6.0
QUICK_SPACE = {"layers": [1], "hidden_sizes": [16, 32], "head_counts": [2], "ff_depths": [1],
               "ff_widths": [32, 64]}  # fmt: skip


class Deadline(Exception):
    """The arm's wall-clock budget is spent (not a candidate's failure: it ends the search)."""


def profile_base(db: Path, device: str, n: int, seed: int) -> None:
    """``n`` architectures of the CPU-sized space profiled on ``device`` into ``db``."""
    from edgetran.codesign.config import CPU_SPACE
    from edgetran.profile import ProfileSettings, profile_into_store
    from edgetran.space import DesignSpace, sample
    from edgetran.store import Store

    hardware, runtime = device.split("/")
    archs = sample(n, method="random", seed=seed, space=DesignSpace.from_dict(CPU_SPACE))
    settings = ProfileSettings(
        device=hardware, runtime=runtime, batch_size=1, seq_len=64, meter="estimate",
        max_time_s=1.0, idle_s=0.5, seed=seed,
    )  # fmt: skip
    with Store(db) as store:
        for _ in profile_into_store(archs, settings, store):
            pass


def simulated_base(db: Path, seed: int) -> None:
    """A simulated device ``sim`` (cost follows FLOPs) over the toy space, for ``--quick``."""
    from edgetran.space import DesignSpace, sample
    from edgetran.store import Measurement, Store

    archs = sample(10, method="random", seed=seed, space=DesignSpace.from_dict(QUICK_SPACE))
    rng = np.random.default_rng(seed)
    items = []
    for arch in archs:
        latency = 1e-4 * arch.layers[0].hidden * rng.lognormal(0, 0.05)
        items.append(Measurement(
            hash=arch.hash, model_dict=arch.to_model_dict(), device="sim", runtime="sim",
            batch_size=1, seq_len=64, latency_s=latency, latency_s_per_seq=latency,
            energy_j=3 * latency, energy_j_per_seq=3 * latency, peak_power_w=5 + latency,
            meter="sim", meter_kind="estimated",
        ))  # fmt: skip
    with Store(db) as store:
        store.add_many(items)


def toy_task(path: Path, n: int = 120, seed: int = 0) -> str:
    """A separable two-class CSV task (word identity decides), for ``--quick``."""
    rng = np.random.default_rng(seed)
    words = {"pos": ["great", "love", "fun", "nice"], "neg": ["awful", "hate", "dull", "bad"]}
    with path.open("w", newline="") as handle:
        writer = csv.writer(handle)
        writer.writerow(["text", "label"])
        for i in range(n):
            label = ("neg", "pos")[i % 2]
            text = " ".join([*rng.choice(["the", "movie", "was", "so"], 4),
                             *rng.choice(words[label], 2)])  # fmt: skip
            writer.writerow([f"{text} {i}", label])
    return str(path)


def timed(accuracy, deadline: float):
    """``accuracy`` that raises :class:`Deadline` at a training's start or rung once the
    clock passes ``deadline`` (every arm's trainings report rungs to it, pruned or not)."""

    def check() -> None:
        if time.perf_counter() > deadline:
            raise Deadline

    def wrapped(arch, run: int = 0, on_rung=None):
        check()

        def rung(index: int, fidelity: float, value: float) -> None:
            check()
            if on_rung is not None:
                on_rung(index, fidelity, value)

        return accuracy(arch, run=run, on_rung=rung)

    return wrapped


def run_arm(base: Path, out: Path, args, pruner: str, task: str, devices: list[str]) -> dict:
    """One arm: the co-search with ``pruner`` until the wall-clock budget is spent."""
    from edgetran.search import (
        LiveEvaluator,
        SearchSettings,
        device_costs,
        oracle_accuracy,
        paper_with_norms,
        run_search,
    )
    from edgetran.search.live import stored_reference_costs
    from edgetran.space import DesignSpace
    from edgetran.store import Store

    folder = out / pruner
    shutil.rmtree(folder, ignore_errors=True)
    folder.mkdir(parents=True)
    db = folder / "edgetran.db"
    shutil.copy(base, db)
    space = DesignSpace.from_dict(QUICK_SPACE if args.quick else _cpu_space())
    records, failures = [], []
    with Store(db) as store:
        paper, _ = paper_with_norms("run", lambda: stored_reference_costs(store, devices))
        settings = SearchSettings(
            sampler=args.sampler, budget=args.evaluations, seed=args.seed, paper=paper,
            **({"pruner": pruner} if pruner != "none" else {}),
        )  # fmt: skip
        measured, surrogates, contended = device_costs(
            store, devices, surrogate_options={"n_models": 2, "n_estimators": 40}
        )
        oracle = oracle_accuracy(task, store, args.budget, workspace=folder / "ws", seed=args.seed)
        began = time.perf_counter()
        evaluator = LiveEvaluator(
            timed(oracle, began + args.seconds), measured, surrogates, space, contended
        )
        with contextlib.suppress(Deadline):  # the budget spent: the records so far count
            run_search(
                evaluator, settings, storage=f"sqlite:///{folder / 'search.db'}",
                study_name=f"pruning-{pruner}", on_evaluation=lambda n, r: records.append(r),
                on_failure=lambda n, f: failures.append(f),
            )  # fmt: skip
        seconds = time.perf_counter() - began
    return summary(pruner, records, failures, seconds, args)


def summary(pruner: str, records, failures, seconds: float, args) -> dict:
    """An arm's JSON line: candidates trained to the full budget, pruned, failed, winner."""
    full = [r for r in records if getattr(r, "fidelity", 1.0) >= 1.0]
    pruned = [r for r in records if getattr(r, "fidelity", 1.0) < 1.0]
    feasible = [r for r in full if r.feasible]
    winner = max(feasible, key=lambda r: r.value) if feasible else None
    return {
        "pruner": pruner,
        "seed": args.seed,
        "sampler": args.sampler,
        "budget": args.budget,
        "seconds": round(seconds, 1),
        "limit_s": args.seconds,
        "trained": len({r.pair.key for r in full}),
        "pruned": len({r.pair.key for r in pruned}),
        "failed": len(failures),
        "candidates": len({r.pair.key for r in records}),
        "winner": None if winner is None else {
            "pair": winner.pair.key,
            "objective": winner.value,
            "accuracy": winner.evaluation.metrics["accuracy"],
            "accuracy_std": winner.evaluation.accuracy_std,
            "latency_ms": winner.evaluation.metrics["latency_s"] * 1e3,
            "latency_predicted": "latency_s" in winner.evaluation.predicted,
        },
    }  # fmt: skip


def table(rows: list[dict]) -> str:
    """The arms as a Markdown table for BENCHMARKS.md."""
    lines = [
        "| pruner | wall s | trained to full budget | pruned | candidates | × none | winner "
        "accuracy | winner latency (ms/seq) |",
        "|---|---|---|---|---|---|---|---|",
    ]
    base = next((r["candidates"] for r in rows if r["pruner"] == "none"), None)
    for r in rows:
        w = r["winner"] or {}
        times = f"{r['candidates'] / base:.2f}×" if base else "–"
        accuracy = f"{w['accuracy']:.4f}" if w else "–"
        latency = f"{w['latency_ms']:.3f}" + (" (pred.)" if w.get("latency_predicted") else "")
        lines.append(
            f"| {r['pruner']} | {r['seconds']:.0f} | {r['trained']} | {r['pruned']} | "
            f"{r['candidates']} | {times} | {accuracy} | {latency if w else '–'} |"
        )
    return "\n".join(lines)


def _cpu_space() -> dict:
    from edgetran.codesign.config import CPU_SPACE

    return dict(CPU_SPACE)


def run(args) -> list[dict]:
    """Every arm of ``args`` (the base database made first, once); their JSON lines."""
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    base = out / "base.db"
    if args.quick:
        task, devices = toy_task(out / "task.csv"), ["sim"]
        if not base.exists():
            simulated_base(base, args.seed)
    else:
        task, devices = "tweet-sentiment", [args.device]
        if not base.exists():
            profile_base(base, args.device, args.profile, args.seed)
    rows = []
    for pruner in args.pruners.split(","):
        row = run_arm(base, out, args, pruner.strip(), task, devices)
        print(json.dumps(row), flush=True)
        with (out / "runs.jsonl").open("a") as handle:
            handle.write(json.dumps(row) + "\n")
        rows.append(row)
    print(table(rows))
    return rows


def quick(out: Path) -> list[dict]:
    """The ``--quick`` run into ``out``, the quick budget already a toy's (:func:`toy_budget`;
    a test patches it in)."""
    return run(parse([f"--out={out}", "--quick"]))


def parse(argv=None):
    """The command line."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--minutes", type=float, default=10.0, help="wall clock per arm")
    parser.add_argument("--pruners", default="none,median", help="arms, none first")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--sampler", default="boshcode")
    parser.add_argument("--budget", default="quick", help="the accuracy oracle's budget")
    parser.add_argument("--evaluations", type=int, default=500, help="more than the time allows")
    parser.add_argument("--device", default="cpu/onnxruntime")
    parser.add_argument("--profile", type=int, default=12, help="architectures profiled")
    parser.add_argument("--out", default="bench-pruning")
    parser.add_argument("--quick", action="store_true", help="a toy run in seconds")
    args = parser.parse_args(argv)
    args.seconds = QUICK_SECONDS if args.quick else args.minutes * 60
    if args.quick:
        args.sampler, args.evaluations = "random", 40
    return args


def toy_budget():
    """``--quick``'s accuracy budget: 16 fine-tuning steps on the toy task."""
    from edgetran.train.oracle import Budget

    return Budget(0, 8, 16, 1, 16, (8,), 20, 20, 5e-4, (1e-3, 3e-3), eval_every=8)


if __name__ == "__main__":
    arguments = parse()
    if arguments.quick:
        from edgetran.train import oracle

        oracle.BUDGETS["quick"] = toy_budget()  # this process only
    run(arguments)
