"""Surrogate cross-validation on the five reference devices, beside the reference-style baseline.

Per device (``../shared/data/protran``), 5-fold CV (seed 0) of latency, energy and peak power:
our default surrogate (bagged LightGBM on normalised embedding + analytic features, log target,
cross-conformal intervals) and the reference-style baseline (scikit-learn
``GradientBoostingRegressor`` with default settings on the raw 37-integer embedding), on the
same folds in the same run. Then a learning curve on one device with and without the other
devices as priors, and fit/predict times.

    python benchmarks/bench_surrogate.py
"""

from __future__ import annotations

import statistics
import sys
import time
from pathlib import Path

import numpy as np
from sklearn.ensemble import GradientBoostingRegressor

from edgetran.profile import read_measurements
from edgetran.space import Architecture
from edgetran.surrogate import DeviceSurrogate, cross_validate
from edgetran.surrogate.device import fit_priors, targets
from edgetran.surrogate.features import embedding_only

DATA = Path(__file__).resolve().parents[2] / "shared" / "data" / "protran"
METRICS = ("latency", "energy", "peak_power")


def baseline_mape(items, metric: str, folds: int = 5, seed: int = 0) -> float:
    """Reference-style GBR on the raw embedding, on the same folds as ``cross_validate``."""
    X = embedding_only([Architecture.from_dict(m.model_dict) for m in items])
    y = targets(items, metric)
    order = np.random.default_rng(seed).permutation(len(items))
    predicted = np.empty_like(y)
    for k in range(folds):
        held = order[k::folds]
        train = np.setdiff1d(order, held)
        model = GradientBoostingRegressor(random_state=0).fit(X[train], y[train])
        predicted[held] = model.predict(X[held])
    return float(np.mean(np.abs(predicted - y) / y))


def learning_curve(devices: dict, target: str, sizes=(10, 20, 40, 80), repeats: int = 3):
    """Held-out latency MAPE and 90% coverage with own data only and with the other devices
    as priors (fitted once, on their own data only)."""
    items = devices[target]
    priors = fit_priors({d: m for d, m in devices.items() if d != target}, ("latency",))
    rows = []
    for n in sizes:
        scores: dict[str, list[tuple[float, float]]] = {"own": [], "priors": []}
        for seed in range(repeats):
            order = np.random.default_rng(seed).permutation(len(items))
            train = [items[i] for i in order[:n]]
            test = [items[i] for i in order[n:]]
            archs = [Architecture.from_dict(m.model_dict) for m in test]
            y = targets(test, "latency")
            for name, fitted in (("own", []), ("priors", priors)):
                surrogate = DeviceSurrogate(metrics=("latency",), random_state=seed)
                surrogate.priors_ = fitted
                p = surrogate._fit_targets(train).predict(archs)["latency"]
                inside = float(np.mean((p.lower <= y) & (y <= p.upper)))
                scores[name].append((float(np.mean(np.abs(p.mean - y) / y)), inside))
        rows.append((n, *(tuple(np.mean(scores[k], axis=0)) for k in ("own", "priors"))))
    return rows


def print_learning_curves(devices: dict) -> None:
    print("Learning curves, latency, held-out MAPE (90% coverage), mean of 3 seeds:\n")
    print("| device | training measurements | own data only | with the 4 other devices |")
    print("|---|---|---|---|")
    for target in devices:
        for n, own, prior in learning_curve(devices, target):
            print(f"| {target} | {n} | {own[0]:.3f} ({own[1]:.2f}) | "
                  f"{prior[0]:.3f} ({prior[1]:.2f}) |", flush=True)  # fmt: skip


def main() -> None:
    files = sorted(DATA.glob("*.json"))
    devices = {f.stem: read_measurements(f, "protran", None) for f in files}
    if "--curves-only" in sys.argv:
        print_learning_curves(devices)
        return
    print(
        "| device | n | metric | MAPE ours | MAPE baseline | within ±10% | R² | Spearman | "
        "coverage 90% |"
    )
    print("|---|---|---|---|---|---|---|---|---|")
    ours_lat_energy, base_lat_energy = [], []
    for device, items in devices.items():
        result = cross_validate(items, folds=5, seed=0)
        for metric in METRICS:
            s = result[metric]
            base = baseline_mape(items, metric)
            if metric != "peak_power":
                ours_lat_energy.append(s["mape"])
                base_lat_energy.append(base)
            print(
                f"| {device} | {s['n']} | {metric} | {s['mape']:.3f} | {base:.3f} | "
                f"{s['within_10pct']:.2f} | {s['r2']:.3f} | {s['spearman']:.3f} | "
                f"{s['coverage_90']:.2f} |"
            )
    print(
        f"\nLatency and energy MAPE over the five devices: ours mean "
        f"{statistics.mean(ours_lat_energy):.3f}, worst {max(ours_lat_energy):.3f}; "
        f"baseline mean {statistics.mean(base_lat_energy):.3f}, worst "
        f"{max(base_lat_energy):.3f}.\n"
    )
    print_learning_curves(devices)
    target = "cpu_jetson-nano_b1_r1"
    items = devices[target]
    archs = [Architecture.from_dict(m.model_dict) for m in items]
    start = time.perf_counter()
    surrogate = DeviceSurrogate().fit(items)
    fit_s = time.perf_counter() - start
    start = time.perf_counter()
    surrogate.predict(archs)
    predict_s = time.perf_counter() - start
    print(
        f"\nFit (3 metrics, {len(items)} measurements): {fit_s:.1f} s; predict "
        f"{len(archs)} architectures: {predict_s * 1e3:.0f} ms "
        f"({predict_s / len(archs) * 1e3:.2f} ms each, features included)."
    )


if __name__ == "__main__":
    main()
