"""Active learning against random sampling on replayed devices.

A :class:`~edgetran.surrogate.active.ReplayDevice` answers "profile this" with the recorded
measurement. For each seed, a random quarter of the table is held out as the test set and never
offered; each strategy starts from the same 10 random measurements and adds one at a time from
a fresh pool of 64 candidates. We report the test-set latency MAPE of a surrogate fitted on the
first n measurements, mean over seeds.

    python benchmarks/bench_active.py --seeds 4
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

import numpy as np

from edgetran.profile import read_measurements
from edgetran.space import Architecture
from edgetran.surrogate.active import ReplayDevice, _fit, active_learning
from edgetran.surrogate.device import targets

DATA = Path(__file__).resolve().parents[2] / "shared" / "data" / "protran"
DEVICES = ("cpu_jetson-nano_b1_r1", "gpu_a100_b128_r3")
CHECKPOINTS = (20, 30, 40, 60)


def test_mape(measured, test, seed: int) -> float:
    surrogate = _fit(measured, seed, metrics=("latency",))
    archs = [Architecture.from_dict(m.model_dict) for m in test]
    predicted = surrogate.predict(archs)["latency"].mean
    y = targets(test, "latency")
    return float(np.mean(np.abs(predicted - y) / y))


def run(items, acquisition: str, seed: int) -> dict[int, float]:
    rng = np.random.default_rng(seed)
    order = rng.permutation(len(items))
    test = [items[i] for i in order[: len(items) // 4]]
    offered = [items[i] for i in order[len(items) // 4 :]]
    device = ReplayDevice(offered)
    start = [device.archs[offered[i].hash] for i in rng.choice(len(offered), 10, replace=False)]
    result = active_learning(
        device.profile,
        initial=start,
        candidates=device.candidates,
        budget=max(CHECKPOINTS),
        acquisition=acquisition,
        metrics=("latency",),
        seed=seed,
    )
    return {n: test_mape(result.measurements[:n], test, seed) for n in CHECKPOINTS}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--seeds", type=int, default=4)
    parser.add_argument("--acquisitions", default="random,uncertainty,diverse")
    args = parser.parse_args()
    print("| device | acquisition | " + " | ".join(f"n={n}" for n in CHECKPOINTS) + " | s/run |")
    print("|---|---|" + "---|" * (len(CHECKPOINTS) + 1))
    for device in DEVICES:
        items = read_measurements(DATA / f"{device}.json", "protran", None)
        for acquisition in args.acquisitions.split(","):
            began = time.perf_counter()
            runs = [run(items, acquisition, seed) for seed in range(args.seeds)]
            seconds = (time.perf_counter() - began) / args.seeds
            cells = " | ".join(f"{np.mean([r[n] for r in runs]):.3f}" for n in CHECKPOINTS)
            print(f"| {device} | {acquisition} | {cells} | {seconds:.0f} |", flush=True)


if __name__ == "__main__":
    main()
