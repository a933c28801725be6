"""Verification of an exported artifact against PyTorch eager, in the artifact's own runtime."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
import torch

from edgetran.export.runners import create_runner

if TYPE_CHECKING:
    from edgetran.export.exporters import ExportSpec

#: Largest allowed absolute difference from PyTorch in float32.
TOLERANCE = 1e-4


@dataclass
class Verification:
    """Result of comparing an artifact's outputs with PyTorch's on random padded inputs.

    Attributes:
        passed: ``max_abs_diff <= tolerance``; for a quantised artifact (``quantize`` other than
            ``none``, ``tolerance`` ``None``) only that its output is finite: int8 is judged by
            task accuracy (``benchmarks/bench_export.py``), not by a tensor tolerance.
        max_abs_diff: largest absolute difference over every checked batch size (float32).
        batch_sizes: the batch sizes checked (two when the batch is dynamic).
        bf16_max_abs_diff: OpenVINO only, for information: the difference under the plugin's
            bf16 hint; ``bf16_precision`` is what the plugin applied (f32 where the CPU lacks
            bf16 support).
    """

    passed: bool
    max_abs_diff: float
    tolerance: float | None
    runtime: str
    device: str
    batch_sizes: list[int]
    seq_len: int
    seed: int
    bf16_max_abs_diff: float | None = None
    bf16_precision: str | None = None
    quantize: str = "none"

    def summary(self) -> str:
        verdict = "passed" if self.passed else "FAILED"
        bound = (
            f"tolerance {self.tolerance:g}"
            if self.tolerance is not None
            else f"{self.quantize}: no tensor tolerance, judge it by task accuracy"
        )
        return (
            f"verification {verdict}: max |Δ| = {self.max_abs_diff:.3g} ({bound}) "
            f"on {self.runtime}/{self.device}"
        )


def random_inputs(batch: int, seq_len: int, vocab_size: int, seed: int) -> tuple[np.ndarray, ...]:
    """Random ``input_ids`` and an ``attention_mask`` in which every row has some padding."""
    rng = np.random.default_rng(seed)
    ids = rng.integers(0, vocab_size, size=(batch, seq_len), dtype=np.int64)
    mask = np.ones((batch, seq_len), dtype=np.int64)
    for row in range(batch):
        kept = max(1, seq_len - ((row + 1) * seq_len) // (2 * batch))
        mask[row, kept:] = 0
    return ids, mask


def _reference(wrapper: torch.nn.Module, ids: np.ndarray, mask: np.ndarray) -> np.ndarray:
    with torch.inference_mode():
        return wrapper(torch.from_numpy(ids), torch.from_numpy(mask)).float().numpy()


def verify_artifact(
    wrapper: torch.nn.Module,
    artifact: Path,
    runtime: str,
    spec: ExportSpec,
    *,
    seed: int = 0,
    tolerance: float = TOLERANCE,
) -> Verification:
    """Run ``artifact`` in ``runtime`` (its own) and compare with ``wrapper`` (PyTorch eager)."""
    options = {"precision": "f32"} if runtime == "openvino" else {}
    runner = create_runner(runtime, artifact, **options)
    vocab = wrapper.model.config.vocab_size
    batch_sizes = (
        [spec.batch_size, spec.batch_size + 1] if spec.dynamic_batch else [spec.batch_size]
    )
    worst = 0.0
    for offset, batch in enumerate(batch_sizes):
        ids, mask = random_inputs(batch, spec.seq_len, vocab, seed + offset)
        worst = max(worst, float(np.abs(runner(ids, mask) - _reference(wrapper, ids, mask)).max()))
    quantized = spec.quantize != "none"
    result = Verification(
        passed=bool(np.isfinite(worst)) if quantized else worst <= tolerance,
        max_abs_diff=worst,
        tolerance=None if quantized else tolerance,
        runtime=runtime,
        device=runner.device,
        batch_sizes=batch_sizes,
        seq_len=spec.seq_len,
        seed=seed,
        quantize=spec.quantize,
    )
    if runtime == "openvino":
        bf16 = create_runner(runtime, artifact, precision="bf16")
        ids, mask = random_inputs(spec.batch_size, spec.seq_len, vocab, seed)
        result.bf16_max_abs_diff = float(
            np.abs(bf16(ids, mask) - _reference(wrapper, ids, mask)).max()
        )
        result.bf16_precision = bf16.precision
    return result
