"""Clean measurements of our own: profile a CPU-sized sub-space here, then cross-validate.

Profiles ``--n`` architectures (LHS, hidden ≤ 256, ≤ 6 layers) on this machine's CPU with the
project's profiler (torch, batch 1 × 128, absolute positions, 1 thread so that the power
sampler and the model never share a core), stores them in ``--db`` (resumable: re-running skips
what is stored), then runs the same 5-fold CV as on the reference data. Commit the script, not
the database.

    python benchmarks/bench_surrogate_own.py --n 160 --db /tmp/own.db
"""

from __future__ import annotations

import argparse
import time

from edgetran.profile import ProfileSettings, profile_architecture
from edgetran.space import DesignSpace, sample
from edgetran.store import Store
from edgetran.surrogate import cross_validate

SPACE = DesignSpace(layers=(2, 4, 6), hidden_sizes=(128, 256))
SETTINGS = ProfileSettings(
    threads=1, meter="estimate", idle_s=0.0, max_time_s=2.0, position_embedding_type="absolute"
)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--n", type=int, default=160)
    parser.add_argument("--db", default="own-measurements.db")
    args = parser.parse_args()
    archs = sample(args.n, method="lhs", seed=0, space=SPACE)
    start = time.perf_counter()
    with Store(args.db) as store:
        done = {m.hash for m in store.measurements("cpu")}
        for arch in archs:
            if arch.hash not in done:
                store.add(profile_architecture(arch, SETTINGS))
                done.add(arch.hash)
        items = [m for m in store.measurements("cpu") if m.hash in {a.hash for a in archs}]
    profiled_s = time.perf_counter() - start
    result = cross_validate(items, folds=5, seed=0, metrics=("latency",))["latency"]
    print(f"{len(items)} architectures profiled in {profiled_s:.0f} s (1 thread, batch 1 × 128).")
    print("| metric | n | MAPE | within ±10% | R² | Spearman | coverage 90% |")
    print("|---|---|---|---|---|---|---|")
    print(
        f"| latency | {result['n']} | {result['mape']:.3f} | {result['within_10pct']:.2f} | "
        f"{result['r2']:.3f} | {result['spearman']:.3f} | {result['coverage_90']:.2f} |"
    )


if __name__ == "__main__":
    main()
