"""The contract checks of runners and runtimes (a runner with its exporter)."""

from __future__ import annotations

import tempfile
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

import numpy as np

from edgetran.export.runners import (
    TOLERANCE,
    Runner,
    RunnerError,
    Runtime,
    create_timed_runner,
    get_runtime,
)
from edgetran.export.verify import random_inputs
from edgetran.testing._contract import Clauses, is_number

#: The tiny model a runtime is checked with: one layer, hidden 16, two heads, a short vocabulary.
VOCAB = 61
BATCH = 2
SEQ = 8
#: Largest difference between two runs of the same runner on the same inputs.
REPEAT_ATOL = 1e-6
#: Largest ``‖output − reference‖ / ‖reference‖`` of a quantised runtime: no tensor tolerance
#: applies to int8 (it is judged by predicted labels and task accuracy), but an output this far
#: from PyTorch's is no longer the model's (the built-in int8 runtimes stay within 0.006 here).
QUANTIZED_RELATIVE_ERROR = 0.1


def check_runner(
    runner_factory: Callable[[], Runner],
    *,
    batch_size: int = BATCH,
    seq_len: int = SEQ,
    vocab_size: int = VOCAB,
    reference: Callable[[np.ndarray, np.ndarray], np.ndarray] | None = None,
    tolerance: float = TOLERANCE,
) -> None:
    """Assert that the runner made by ``runner_factory()`` keeps the
    :class:`~edgetran.export.runners.Runner` contract on ``(batch_size, seq_len)`` inputs; with
    ``reference`` (``(input_ids, attention_mask) → output``, e.g. PyTorch eager), that its
    output matches within ``tolerance``.

    Raises:
        ContractError: naming the clause that failed.
    """
    runner = runner_factory()
    c = Clauses("Runner", type(runner).__name__)
    c.require(isinstance(runner, Runner), "a runner subclasses edgetran.export.runners.Runner")
    c.require(
        isinstance(runner.runtime, str) and bool(runner.runtime),
        "runtime names the runtime",
        repr(getattr(runner, "runtime", None)),
    )
    device = runner.device
    c.require(
        isinstance(device, str) and bool(device),
        "device reports where the model really runs",
        repr(device),
    )
    described = runner.describe()
    c.require(
        described.get("runtime") == runner.runtime and described.get("device") == device,
        "describe() reports the runtime and the device",
        repr(described),
    )
    ids, mask = random_inputs(batch_size, seq_len, vocab_size, seed=0)
    output = runner(ids, mask)
    c.require(
        isinstance(output, np.ndarray) and output.dtype == np.float32,
        "the output is a float32 NumPy array",
        f"{type(output).__name__} {getattr(output, 'dtype', '')}",
    )
    c.require(
        output.ndim in (2, 3)
        and output.shape[0] == batch_size
        and (output.ndim == 2 or output.shape[1] == seq_len),
        f"int64 (B, S) inputs give a (B, S, h), (B, S, V) or (B, C) output; B={batch_size}, "
        f"S={seq_len}",
        repr(output.shape),
    )
    c.require(bool(np.isfinite(output).all()), "the output is finite")
    prepared = runner.prepare(ids, mask)
    runs = [runner.to_numpy(runner.run(prepared)) for _ in range(2)]
    for again in runs:
        c.require(
            again.shape == output.shape
            and bool(np.allclose(again, output, rtol=0, atol=REPEAT_ATOL)),
            "runs on the same inputs give the same result, and __call__ is "
            "to_numpy(run(prepare(...)))",
            f"max |Δ| {np.abs(again - output).max() if again.shape == output.shape else '-'}",
        )
    if reference is not None:
        expected = reference(ids, mask)
        worst = float(np.abs(output - expected).max()) if output.shape == expected.shape else None
        c.require(
            worst is not None and worst <= tolerance,
            f"the output matches the reference within {tolerance:g}",
            f"max |Δ| {worst}" if worst is not None else f"shape {output.shape}",
        )


def check_runtime(name: str, *, tolerance: float | None = None) -> None:
    """Assert that the registered runtime ``name`` exports a tiny FlexiBERT model to its format
    and runs it as PyTorch does (:func:`check_runner` on its runner made with its
    ``verify_options``, eager PyTorch as the reference, within ``tolerance``: default the
    runtime's own), and that its runtime behaviour is well formed: ``set_threads`` is callable
    or ``None``, the option mappings have string keys, and the runners made as profiling
    makes them (:func:`~edgetran.export.runners.create_timed_runner`, one thread where the
    runner takes a ``threads`` option), with ``bf16_options`` and, for ``runs_module``, of the
    PyTorch module itself keep the runner contract. ``set_threads`` is not called: it changes
    the whole process.

    A quantised runtime (``quantize`` other than ``none``, e.g. ``onnxruntime-int8``) exports
    with its quantisation, and ``tolerance`` does not apply to it: its output must be finite,
    of the right shape and dtype, repeatable, and within :data:`QUANTIZED_RELATIVE_ERROR` of
    PyTorch's in relative norm; its predicted labels are checked on a task by
    :func:`edgetran.export.verify.verify_labels`.

    Raises:
        ContractError: naming the clause that failed.
    """
    import torch

    from edgetran.export.exporters import ExportSpec, ExportWrapper
    from edgetran.model import FlexiBertConfig, FlexiBertModel
    from edgetran.space import homogeneous

    runtime = get_runtime(name)
    c = Clauses("Runtime", repr(name))
    c.require(isinstance(runtime, Runtime), "the plug-in is an edgetran.export.runners.Runtime")
    c.require(runtime.name == name, "name is the name it is registered under", runtime.name)
    for field in ("format", "artifact_name", "default_device"):
        value = getattr(runtime, field)
        c.require(isinstance(value, str) and bool(value), f"{field} is a non-empty string")
    quantized = runtime.quantize != "none"
    c.require(
        runtime.quantize in runtime.quantize_modes,
        "quantize is one of the quantize_modes its exporter writes",
        f"{runtime.quantize!r} not in {runtime.quantize_modes}",
    )
    _check_behaviour(c, runtime)
    if runtime.check_device is not None:
        try:
            runtime.check_device(runtime.default_device)
        except RunnerError as err:
            c.require(False, "check_device accepts the default device", str(err))
    config = FlexiBertConfig(homogeneous(1, 16, 2, 32), vocab_size=VOCAB)
    wrapper = ExportWrapper(FlexiBertModel(config).eval()).eval()

    def reference(ids: np.ndarray, mask: np.ndarray) -> np.ndarray:
        with torch.inference_mode():
            return wrapper(torch.from_numpy(ids), torch.from_numpy(mask)).float().numpy()

    ids, mask = random_inputs(BATCH, SEQ, VOCAB, seed=1)
    device = runtime.default_device
    # a process-wide thread setting is left alone; a runner option gets one thread
    threads = None if runtime.set_threads is not None else 1
    with tempfile.TemporaryDirectory(prefix="edgetran-check-") as tmp:
        artifact = Path(tmp) / runtime.artifact_name
        spec = ExportSpec(runtime.format, batch_size=BATCH, seq_len=SEQ, quantize=runtime.quantize)
        runtime.export(wrapper, (torch.from_numpy(ids), torch.from_numpy(mask)), artifact, spec)
        c.require(artifact.exists(), "export writes the artifact at the path it is given")
        check_runner(
            lambda: runtime.runner(artifact, device, **runtime.verify_options),
            reference=None if quantized else reference,
            tolerance=runtime.tolerance if tolerance is None else tolerance,
        )
        check_runner(lambda: create_timed_runner(name, artifact, device, threads))
        if runtime.runs_module:
            check_runner(lambda: create_timed_runner(name, wrapper, device, threads))
        if runtime.bf16_options is not None:
            check_runner(lambda: runtime.runner(artifact, device, **runtime.bf16_options))
        if quantized:
            runner = runtime.runner(artifact, runtime.default_device)
            c.require(
                runner.describe().get("quantize") == runtime.quantize,
                "describe() of a quantised runtime's runner reports its quantize mode",
                repr(runner.describe()),
            )
            _check_relative_error(c, runner(ids, mask), reference(ids, mask))


def _check_behaviour(c: Clauses, runtime: Runtime) -> None:
    """The runtime behaviour fields: types and values, without calling ``set_threads``."""
    c.require(isinstance(runtime.runs_module, bool), "runs_module is a bool")
    c.require(
        runtime.set_threads is None or callable(runtime.set_threads),
        "set_threads is None or set_threads(n) pins n threads",
        repr(runtime.set_threads),
    )
    options: dict[str, Any] = {
        "measure_options": runtime.measure_options,
        "verify_options": runtime.verify_options,
    }
    if runtime.bf16_options is not None:
        options["bf16_options"] = runtime.bf16_options
    for field, value in options.items():
        c.require(
            isinstance(value, Mapping) and all(isinstance(k, str) for k in value),
            f"{field} maps runner option names to values",
            repr(value),
        )
    c.require(
        "threads" not in runtime.measure_options,
        "measure_options leave threads to create_timed_runner",
        repr(runtime.measure_options),
    )
    c.require(
        is_number(runtime.tolerance) and runtime.tolerance > 0,
        "tolerance is a positive number",
        repr(runtime.tolerance),
    )


def _check_relative_error(c: Clauses, output: np.ndarray, expected: np.ndarray) -> None:
    error = float(np.linalg.norm(output - expected) / max(np.linalg.norm(expected), 1e-12))
    c.require(
        error <= QUANTIZED_RELATIVE_ERROR,
        f"a quantised output lies within {QUANTIZED_RELATIVE_ERROR:g} of PyTorch's "
        "in relative norm",
        f"relative error {error:.3g}",
    )
