"""Latency at an unseen input shape (issue 44, item 4): fit on three shapes, predict the fourth.

Profiles ``--n`` architectures (LHS over the codesign CPU space) at four ``(batch, sequence)``
shapes on this machine's CPU (torch, 1 thread, estimate meter, short timed loops), storing them
in ``--db`` (resumable: re-running skips what is stored). Then, for each shape in turn, fits
the latency surrogate on the other three (shape as input, ``DeviceSurrogate``) and scores it
on the held-out one against two references:

- FLOPs scaling: each architecture's latency at the measured shape nearest in its FLOPs,
  times the ratio of its FLOPs at the two shapes (``space.costs``);
- the shape measured: 5-fold CV of a surrogate fitted on that shape's own measurements
  (what profiling the shape would give). A surrogate of one other shape cannot predict it
  at all (``InputShapeError``).

    python benchmarks/bench_shape.py --n 20 --db /tmp/shape.db
"""

from __future__ import annotations

import argparse
import time

import numpy as np

from edgetran.codesign import CPU_SPACE
from edgetran.profile import ProfileSettings, profile_architecture
from edgetran.profile.environment import cpu_model
from edgetran.space import Architecture, DesignSpace, sample
from edgetran.space.costs import estimate_costs
from edgetran.store import Store
from edgetran.surrogate import (
    DeviceSurrogate,
    InputShapeError,
    cross_validate,
    predict_measured,
)
from edgetran.surrogate.device import targets

SHAPES = ((1, 32), (1, 64), (1, 128), (8, 64))
SETTINGS = {"threads": 1, "meter": "estimate", "idle_s": 0.0, "max_time_s": 1.0}


def profile_all(archs: list[Architecture], db: str) -> list:
    """Every architecture at every shape, from the store where already measured."""
    with Store(db) as store:
        for batch, seq in SHAPES:
            done = {m.hash for m in store.measurements("cpu", batch_size=batch, seq_len=seq)}
            settings = ProfileSettings(batch_size=batch, seq_len=seq, **SETTINGS)
            for arch in archs:
                if arch.hash not in done:
                    store.add(profile_architecture(arch, settings))
        wanted = {a.hash for a in archs}
        return [
            m
            for m in store.measurements("cpu", runtime="torch")
            if m.hash in wanted and (m.batch_size, m.seq_len) in SHAPES
        ]


def flops(m, shape: tuple[int, int]) -> float:
    arch = Architecture.from_dict(m.model_dict)
    return estimate_costs(arch, batch_size=shape[0], seq_len=shape[1]).flops


def flops_scaling(train: list, test: list) -> np.ndarray:
    """Each test item's latency scaled by FLOPs from its architecture's measurement at the
    shape nearest in FLOPs."""
    predicted = []
    for m in test:
        target = flops(m, (m.batch_size, m.seq_len))
        measured = [t for t in train if t.hash == m.hash]
        near = min(
            measured, key=lambda t: abs(np.log(flops(t, (t.batch_size, t.seq_len)) / target))
        )
        predicted.append(near.latency_s * target / flops(near, (near.batch_size, near.seq_len)))
    return np.array(predicted)


def mape(y: np.ndarray, predicted: np.ndarray) -> float:
    return float(np.mean(np.abs(predicted - y) / y))


def held_out_row(items: list, held: tuple[int, int]) -> str:
    train = [m for m in items if (m.batch_size, m.seq_len) != held]
    test = [m for m in items if (m.batch_size, m.seq_len) == held]
    y = targets(test, "latency")
    surrogate = DeviceSurrogate(metrics=("latency",), random_state=0).fit(train)
    p = predict_measured(surrogate, test)["latency"]
    coverage = float(np.mean((p.lower <= y) & (y <= p.upper)))
    first = (train[0].batch_size, train[0].seq_len)
    one_shape = DeviceSurrogate(metrics=("latency",), random_state=0)
    one_shape.fit([m for m in train if (m.batch_size, m.seq_len) == first])
    try:
        one_shape.predict([Architecture.from_dict(test[0].model_dict)], shape=held)
        refused = "predicts?"
    except InputShapeError:
        refused = "refused"
    own = cross_validate(test, folds=5, seed=0, metrics=("latency",))["latency"]["mape"]
    return (
        f"| {held[0]} × {held[1]} | {len(test)} | {1e3 * float(np.median(y)):.1f} | "
        f"{mape(y, p.mean):.3f} | {coverage:.2f} | {mape(y, flops_scaling(train, test)):.3f} | "
        f"{refused} | {own:.3f} |"
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--n", type=int, default=20)
    parser.add_argument("--db", default="shape-measurements.db")
    args = parser.parse_args()
    archs = sample(args.n, method="lhs", seed=0, space=DesignSpace(**CPU_SPACE))
    start = time.perf_counter()
    items = profile_all(archs, args.db)
    profiled_s = time.perf_counter() - start
    contended = sum(bool(m.contended) for m in items)
    print(
        f"{cpu_model()}: {len(archs)} architectures × {len(SHAPES)} shapes, {len(items)} "
        f"measurements ({contended} contended) in {profiled_s:.0f} s; torch, 1 thread.\n"
    )
    print(
        "| held-out shape | n | median latency (ms) | MAPE, 3 other shapes | 90% coverage | "
        "MAPE, FLOPs scaling | one-shape surrogate | MAPE, 5-fold CV at that shape |"
    )
    print("|---|---|---|---|---|---|---|---|")
    for held in SHAPES:
        print(held_out_row(items, held), flush=True)
    print(f"\ntotal {time.perf_counter() - start:.0f} s")


if __name__ == "__main__":
    main()
