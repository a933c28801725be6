"""Verification of an exported artifact against PyTorch eager, in the artifact's own runtime.

A float32 artifact, run with its runtime's ``verify_options``, must match PyTorch's output
tensor within the runtime's ``tolerance`` (:data:`TOLERANCE` unless it says otherwise); a
quantised one (int8) cannot, and is verified by its predicted labels instead: on a task's
examples it must predict PyTorch's class for at least :data:`LABEL_AGREEMENT` of them
(:func:`verify_labels`).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import torch

from edgetran.errors import VerificationError
from edgetran.export.runners import TOLERANCE as TOLERANCE  # the runtimes' default, kept here
from edgetran.export.runners import Runner, create_runner, get_runtime

if TYPE_CHECKING:
    from edgetran.export.exporters import ExportSpec

#: Smallest share of examples on which a quantised classifier must predict PyTorch's label.
LABEL_AGREEMENT = 0.99
#: Rows per PyTorch batch when the reference labels are computed.
_REFERENCE_BATCH = 256


@dataclass
class Verification:
    """Result of comparing an artifact's outputs with PyTorch's on random padded inputs.

    Attributes:
        passed: ``max_abs_diff <= tolerance``; for a quantised artifact (``quantize`` other than
            ``none``, ``tolerance`` ``None``) only that its output is finite: int8 is judged by
            task accuracy (``benchmarks/bench_export.py``), not by a tensor tolerance.
        max_abs_diff: largest absolute difference over every checked batch size (float32).
        batch_sizes: the batch sizes checked (two when the batch is dynamic).
        bf16_max_abs_diff: for information, where the runtime has ``bf16_options`` (OpenVINO):
            the difference when run in bf16; ``bf16_precision`` is what the runner applied
            (OpenVINO: f32 where the CPU lacks bf16 support).
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
        """One line: passed or failed, the difference, the bound and where it ran."""
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
    tolerance: float | None = None,
) -> Verification:
    """Run ``artifact`` in ``runtime`` (its own, with its ``verify_options``) and compare with
    ``wrapper`` (PyTorch eager) within ``tolerance`` (default: the runtime's)."""
    plugin = get_runtime(runtime)
    tolerance = plugin.tolerance if tolerance is None else tolerance
    runner = create_runner(runtime, artifact, **plugin.verify_options)
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
    if plugin.bf16_options is not None:
        bf16 = create_runner(runtime, artifact, **plugin.bf16_options)
        ids, mask = random_inputs(spec.batch_size, spec.seq_len, vocab, seed)
        result.bf16_max_abs_diff = float(
            np.abs(bf16(ids, mask) - _reference(wrapper, ids, mask)).max()
        )
        result.bf16_precision = getattr(bf16, "precision", None)
    return result


@dataclass
class LabelAgreement:
    """How often an artifact, in its runtime, predicts the class PyTorch predicts: the
    verification of a quantised (int8) classifier, which no tensor tolerance fits.

    Attributes:
        agreement: the share of ``examples`` whose predicted class is PyTorch's.
        passed: ``agreement >= threshold``.
        batch_size: the runtime's batch (per-tensor activation scales make a row's int8 result
            depend on the rows beside it; batch 1 is how a device serves it).
    """

    agreement: float
    examples: int
    passed: bool
    threshold: float
    runtime: str
    device: str
    quantize: str
    batch_size: int

    def summary(self) -> str:
        """One line: passed or failed, the agreement and the threshold, where it ran."""
        verdict = "passed" if self.passed else "FAILED"
        return (
            f"label agreement {verdict}: {self.agreement:.4f} of {self.examples} examples "
            f"predict PyTorch's class (at least {self.threshold:g} needed) on "
            f"{self.runtime}/{self.device}"
        )


class LabelAgreementError(VerificationError):
    """An artifact predicts PyTorch's labels on fewer examples than the threshold asks.

    Attributes:
        agreement: the :class:`LabelAgreement` that failed.
    """

    def __init__(self, agreement: LabelAgreement) -> None:
        self.agreement = agreement
        super().__init__(agreement.summary())


def runner_outputs(
    runner: Runner, input_ids: np.ndarray, attention_mask: np.ndarray, batch_size: int = 1
) -> np.ndarray:
    """The runner's output for every row of ``(N, S)`` inputs, ``batch_size`` rows at a time;
    a last, shorter batch is filled up with copies of its last row (an artifact's batch may be
    static) whose outputs are dropped."""
    outputs = []
    for start in range(0, len(input_ids), batch_size):
        rows = np.arange(start, min(start + batch_size, len(input_ids)))
        filled = np.concatenate([rows, np.full(batch_size - len(rows), rows[-1])])
        outputs.append(runner(input_ids[filled], attention_mask[filled])[: len(rows)])
    return np.concatenate(outputs)


def reference_outputs(
    model: torch.nn.Module, input_ids: np.ndarray, attention_mask: np.ndarray
) -> np.ndarray:
    """PyTorch eager's output of ``model`` (a FlexiBERT model or its
    :class:`~edgetran.export.exporters.ExportWrapper`) for every row of ``(N, S)`` inputs."""
    from edgetran.export.exporters import ExportWrapper

    wrapper = model if isinstance(model, ExportWrapper) else ExportWrapper(model)
    wrapper.eval()
    return np.concatenate(
        [
            _reference(
                wrapper,
                input_ids[i : i + _REFERENCE_BATCH],
                attention_mask[i : i + _REFERENCE_BATCH],
            )
            for i in range(0, len(input_ids), _REFERENCE_BATCH)
        ]
    )


def predicted_labels(logits: np.ndarray) -> np.ndarray:
    """The class of each row of ``(N, C)`` classifier logits; refuses a regression head."""
    if logits.ndim != 2 or logits.shape[1] < 2:
        raise VerificationError(
            f"label agreement needs a classifier's (N, C ≥ 2) logits; got shape "
            f"{tuple(logits.shape)} (a regression head or no classifier)"
        )
    return logits.argmax(axis=1)


def verify_labels(
    model: torch.nn.Module,
    artifact: str | Path,
    runtime: str,
    input_ids: np.ndarray,
    attention_mask: np.ndarray,
    *,
    threshold: float = LABEL_AGREEMENT,
    batch_size: int = 1,
    **options: Any,
) -> LabelAgreement:
    """Run the classifier ``artifact`` in ``runtime`` on a task's tokenised examples (``(N, S)``
    ``input_ids`` and ``attention_mask``, e.g. the dev split) and compare its predicted
    classes with those of ``model`` (the PyTorch classifier it was exported from).

    ``options`` go to the runner (``threads``). A failed check returns ``passed=False``;
    :class:`LabelAgreementError` is its error for callers that stop on it.

    Raises:
        VerificationError: the model is not a classifier (one output per row), or no examples.
    """
    runner = create_runner(runtime, artifact, **options)
    return label_agreement(
        runner, model, input_ids, attention_mask, threshold=threshold, batch_size=batch_size
    )


def label_agreement(
    runner: Runner,
    model: torch.nn.Module,
    input_ids: np.ndarray,
    attention_mask: np.ndarray,
    *,
    threshold: float = LABEL_AGREEMENT,
    batch_size: int = 1,
) -> LabelAgreement:
    """:func:`verify_labels` with a runner made already."""
    if len(input_ids) == 0:
        raise VerificationError("label agreement needs at least one example; got none")
    ours = predicted_labels(runner_outputs(runner, input_ids, attention_mask, batch_size))
    theirs = predicted_labels(reference_outputs(model, input_ids, attention_mask))
    agreement = float(np.mean(ours == theirs))
    return LabelAgreement(
        agreement=agreement,
        examples=len(ours),
        passed=agreement >= threshold,
        threshold=threshold,
        runtime=runner.runtime,
        device=runner.device,
        quantize=runner.quantize,
        batch_size=batch_size,
    )
