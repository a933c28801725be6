"""One quick training beside a busy process: torch's threads on every core against the free ones.

Beside one busy process on two cores, a quick training of BERT-Tiny took 253 s at torch's
default thread count (every core) and 25 s at one thread (issue 39): an OpenMP parallel region
ends when its slowest thread does, and a thread sharing its core with another process waits for
a time slice at every region. Trainings now take the cores other processes leave free when they
start (``edgetran.cores.choose_threads``). This script times one training of ``--arch`` on
``--task`` at a shortened quick budget (``--steps`` fine-tuning steps) beside ``--busy``
child processes that each spin on a core, under each ``--threads-policy``:

- ``all``: the old behaviour, torch's default thread count (every core), given explicitly;
- ``free``: the new one, the cores free when the training starts.

Both run in one invocation, alternating for ``--repeats`` rounds, after one untimed warm-up
training (tokenizer, word vectors and imports ready, no busy process); each training is fresh
(no cache, no transfer). Records go to ``--out`` (JSON Lines) when given; the summary prints
the median seconds of each policy and the speed-up. Run it on an otherwise quiet machine:

    python benchmarks/bench_busy.py --out busy.jsonl                 # ~2–5 min on two cores
    python benchmarks/bench_busy.py --steps 20 --dev-examples 50 --test-examples 100 --repeats 1
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from dataclasses import replace
from pathlib import Path

import torch

from edgetran.cores import usable_cores
from edgetran.space import load_architecture
from edgetran.store import Store
from edgetran.train import oracle

#: torch's own default, read before anything sets it: what a training took before (every core).
DEFAULT_THREADS = torch.get_num_threads()
BUSY_LOOP = "while True: pass\n"


def budget(steps: int, dev: int | None, test: int | None) -> oracle.Budget:
    """Quick, cut to ``steps`` fine-tuning steps (dev scored twice)."""
    return replace(
        oracle.BUDGETS["quick"],
        finetune_steps=steps,
        min_finetune_steps=min(steps, oracle.BUDGETS["quick"].min_finetune_steps),
        finetune_flops=None,
        eval_every=max(1, steps // 2),
        dev_examples=dev,
        test_examples=test,
    )


def train_once(arch, task: str, workspace: Path, threads: int | None, seed: int) -> dict:
    """A fresh training (its own database: nothing cached, nothing transferred)."""
    with tempfile.TemporaryDirectory() as tmp, Store(Path(tmp) / "bench.db") as store:
        began = time.perf_counter()
        result = oracle.train_classifier(
            arch, task, "quick", store=store, workspace=workspace, seed=seed, transfer=False,
            threads=threads,
        )  # fmt: skip
        result["wall_seconds"] = time.perf_counter() - began
    return result


def busy_processes(n: int) -> list[subprocess.Popen]:
    loops = [subprocess.Popen([sys.executable, "-c", BUSY_LOOP]) for _ in range(n)]
    time.sleep(1.0)  # running before the training samples the free cores
    return loops


def stop(loops: list[subprocess.Popen]) -> None:
    for loop in loops:
        loop.kill()
        loop.wait()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--threads-policy", nargs="+", choices=("all", "free"), default=["all", "free"]
    )
    parser.add_argument("--arch", default="bert-tiny")
    parser.add_argument("--task", default="tweet-sentiment")
    parser.add_argument("--steps", type=int, default=500, help="fine-tuning steps (quick: 2200)")
    parser.add_argument("--dev-examples", type=int, default=1000)
    parser.add_argument("--test-examples", type=int, default=None, help="default: all")
    parser.add_argument("--busy", type=int, default=1, help="busy child processes")
    parser.add_argument("--repeats", type=int, default=1)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--workspace", type=Path, default=None)
    parser.add_argument("--out", type=Path, default=None)
    args = parser.parse_args()  # fmt: skip
    if "OMP_NUM_THREADS" in os.environ:
        sys.exit("error: unset OMP_NUM_THREADS: it fixes the thread count of both policies")

    import optuna

    optuna.logging.set_verbosity(optuna.logging.WARNING)
    oracle.BUDGETS["quick"] = budget(args.steps, args.dev_examples, args.test_examples)
    arch = load_architecture(args.arch)
    workspace = args.workspace or Path(tempfile.mkdtemp(prefix="bench-busy-"))
    print(f"{usable_cores()} usable cores, torch's default {DEFAULT_THREADS} threads; "
          f"warm-up in {workspace}", flush=True)  # fmt: skip
    train_once(arch, args.task, workspace, None, args.seed)

    records = []
    for round_ in range(args.repeats):
        for policy in args.threads_policy:
            loops = busy_processes(args.busy)
            try:
                threads = DEFAULT_THREADS if policy == "all" else None
                result = train_once(arch, args.task, workspace, threads, args.seed)
            finally:
                stop(loops)
            record = {
                "policy": policy, "round": round_, "busy": args.busy, "arch": args.arch,
                "steps": args.steps, "threads": result["threads"],
                "threads_from": result["threads_from"], "seconds": result["wall_seconds"],
                "train_cpu_seconds": result["train_cpu_seconds"],
                "accuracy": result["accuracy"], "usable_cores": usable_cores(),
            }  # fmt: skip
            records.append(record)
            print(json.dumps(record), flush=True)
            if args.out is not None:
                with args.out.open("a") as handle:
                    handle.write(json.dumps(record) + "\n")

    medians = {
        policy: statistics.median(r["seconds"] for r in records if r["policy"] == policy)
        for policy in args.threads_policy
    }
    for policy, seconds in medians.items():
        print(f"{policy:>4}: {seconds:.1f} s (median of {args.repeats})")
    if set(medians) == {"all", "free"}:
        print(f"speed-up of free over all: {medians['all'] / medians['free']:.1f}×")


if __name__ == "__main__":
    main()
