"""Repeatability of the profiler and its agreement with an independent timing loop.

For each model: five profiles with the default protocol (repeatability: coefficient of
variation of their median latencies), each followed by an independent loop written here —
plain ``time.perf_counter`` around the PyTorch forward, 50 runs after 5 warm-ups — so both
see the same machine state; the ratio of the two medians shows agreement.

    python benchmarks/bench_profile.py
"""

from __future__ import annotations

import statistics
import time

import torch

from edgetran.model import FlexiBertConfig, FlexiBertModel
from edgetran.profile import ProfileSettings, profile_architecture
from edgetran.profile.environment import cpu_model, usable_cores
from edgetran.space import Architecture, Layer, named_architecture

MODELS = {
    "BERT-Tiny": named_architecture("bert-tiny"),
    "BERT-Mini": named_architecture("bert-mini"),
    "heterogeneous (4 × 256, all ops)": Architecture(
        (
            Layer(256, ("sa_sdp", "sa_wma", "l_dft", "c_9"), 64, (1024,)),
            Layer(256, ("l_dct", "l_dft", "c_5", "c_13"), 64, (512, 512)),
        )
        * 2
    ),
}
SETTINGS = ProfileSettings(meter="estimate", idle_s=0.5)


def independent_median_s(arch: Architecture, runs: int = 50) -> float:
    torch.manual_seed(SETTINGS.seed)
    config = FlexiBertConfig(arch, vocab_size=SETTINGS.vocab_size)
    model = FlexiBertModel(config).eval()
    ids = torch.randint(0, SETTINGS.vocab_size, (SETTINGS.batch_size, SETTINGS.seq_len))
    mask = torch.ones_like(ids)
    torch.set_num_threads(SETTINGS.pinned_threads)
    times = []
    with torch.inference_mode():
        for _ in range(5):
            model(ids, mask)
        for _ in range(runs):
            start = time.perf_counter()
            model(ids, mask)
            times.append(time.perf_counter() - start)
    return statistics.median(times)


def main() -> None:
    print(
        f"Machine: {cpu_model()}, {usable_cores()} threads; batch 1 × 128, relative-key "
        "positions, torch eager on CPU, estimate meter.\n"
    )
    print(
        "| model | profiler medians (ms), 5 profiles | CV | repeats per profile | "
        "independent loop medians (ms) | CV | profiler / independent, per pair: median (range) |"
    )
    print("|---|---|---|---|---|---|---|")
    for label, arch in MODELS.items():
        profiled, independent, repeats = [], [], []
        for _ in range(5):
            m = profile_architecture(arch, SETTINGS)
            profiled.append(m.latency_s)
            repeats.append(m.repeats)
            independent.append(independent_median_s(arch))
        ratios = [p / i for p, i in zip(profiled, independent, strict=True)]
        print(
            f"| {label} | {_join(profiled)} | {_cv(profiled):.3f} | "
            f"{min(repeats)}–{max(repeats)} | {_join(independent)} | {_cv(independent):.3f} | "
            f"{statistics.median(ratios):.3f} ({min(ratios):.3f}–{max(ratios):.3f}) |"
        )


def _join(seconds: list[float]) -> str:
    return ", ".join(f"{x * 1e3:.2f}" for x in seconds)


def _cv(values: list[float]) -> float:
    return statistics.stdev(values) / statistics.mean(values)


if __name__ == "__main__":
    main()
