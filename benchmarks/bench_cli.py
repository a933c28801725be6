"""Start-up time of the ``edgetran`` CLI: help screens and the light ``space`` commands.

Each command runs in a fresh interpreter (as a user types it); the figure is the median
wall time of ``--repeats`` runs. ``--src DIR`` times another checkout's sources (e.g. a
worktree of an older commit) with this environment, so before/after come from one run,
interleaved, on the same machine:

    git worktree add /tmp/before <commit>
    python benchmarks/bench_cli.py --src /tmp/before/src --src src
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import time
from pathlib import Path

COMMANDS = (
    ("--help",),
    ("space", "--help"),
    ("model", "--help"),
    ("measurements", "--help"),
    ("surrogate", "--help"),
    ("train", "--help"),
    ("search", "--help"),
    ("space", "size", "--json"),
    ("space", "describe", "bert-mini", "--json"),
)


def run_once(src: Path, args: tuple[str, ...]) -> float:
    env = {**os.environ, "PYTHONPATH": str(src.resolve())}
    start = time.perf_counter()
    done = subprocess.run(
        [sys.executable, "-m", "edgetran.cli.main", *args], env=env, capture_output=True
    )
    seconds = time.perf_counter() - start
    if done.returncode != 0:
        raise SystemExit(f"{src}: edgetran {' '.join(args)} exited {done.returncode}")
    return seconds


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--src", type=Path, action="append", help="source folder(s) to time")
    parser.add_argument("--repeats", type=int, default=5)
    options = parser.parse_args()
    sources = options.src or [Path("src")]
    times: dict[tuple[Path, tuple[str, ...]], list[float]] = {}
    for _ in range(options.repeats):  # interleaved, so load changes hit every source alike
        for args in COMMANDS:
            for src in sources:
                times.setdefault((src, args), []).append(run_once(src, args))
    header = " | ".join(str(src) for src in sources)
    print(f"| command | {header} |")
    print("|---" * (len(sources) + 1) + "|")
    for args in COMMANDS:
        cells = " | ".join(f"{statistics.median(times[src, args]):.2f} s" for src in sources)
        print(f"| `edgetran {' '.join(args)}` | {cells} |")


if __name__ == "__main__":
    main()
