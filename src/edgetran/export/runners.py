"""One interface to run a model on PyTorch, ONNX Runtime, OpenVINO, LiteRT or a plug-in runtime.

The profiler times :meth:`Runner.run` on inputs made once by :meth:`Runner.prepare`, so a
timing holds inference only; :meth:`Runner.__call__` does prepare → run → NumPy for everything
else. A :class:`Runtime` pairs a runner with the export format it runs; the runtimes are
registered in :data:`edgetran.plugins.RUNTIMES` (entry point group ``edgetran.runtimes``).
Optional runtimes are imported when a runner is created, never at package import.

The int8 runtimes (``onnxruntime-int8``, ``openvino-int8``, ``litert-int8``) run their base
runtime's format quantised by that runtime's own quantiser (:data:`DYNAMIC_INT8`); their
runners are the base runners, which say so in :meth:`Runner.describe`.
"""

from __future__ import annotations

import abc
import importlib
import os
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, ClassVar

import numpy as np
import torch

from edgetran.errors import EdgeTranError, MissingDependencyError
from edgetran.plugins import RUNTIMES

INPUT_NAMES = ("input_ids", "attention_mask")
#: Largest allowed absolute difference from PyTorch in float32 (a runtime's default tolerance).
TOLERANCE = 1e-4
#: Dynamic-range int8: int8 weights, activations quantised on the fly (by each runtime's own
#: quantiser: ONNX Runtime's, NNCF for OpenVINO, ai-edge-quantizer for LiteRT).
DYNAMIC_INT8 = "dynamic-int8"


class RunnerError(EdgeTranError):
    """A runner cannot be created for the requested runtime, artifact or device."""


def check_device(runtime: str, device: str) -> None:
    """Raise :class:`RunnerError` naming the allowed devices if ``device`` is no device name of
    the registered ``runtime`` (when the runtime has a device check). Only the spelling is
    checked (a job may run elsewhere); whether the device exists is checked where the runner is
    created."""
    check = get_runtime(runtime).check_device
    if check is not None:
        check(device)


def _check_torch_device(device: str) -> None:
    try:
        torch.device(device)
    except (RuntimeError, TypeError, ValueError):
        raise RunnerError(
            f"device {device!r} is invalid for torch; allowed: cpu, cuda[:N], mps, xpu[:N] "
            "or another torch device type"
        ) from None


def _check_onnxruntime_device(device: str) -> None:
    if device not in ("cpu", "cuda") and not (device.startswith("cuda:") and device[5:].isdigit()):
        raise RunnerError(f"device {device!r} is invalid for onnxruntime; allowed: cpu, cuda[:N]")


def _check_openvino_device(device: str) -> None:
    if device.upper() not in {"CPU", "GPU", "NPU", "AUTO"} and not device.startswith("GPU."):
        raise RunnerError(
            f"device {device!r} is invalid for openvino; allowed: CPU, GPU[.N], NPU, AUTO"
        )


def _check_litert_device(device: str) -> None:
    if device != "cpu":
        raise RunnerError(f"device {device!r} is invalid for litert; allowed: cpu")


def _require(module: str, feature: str, extra: str = "export") -> Any:
    try:
        return importlib.import_module(module)
    except ImportError as err:
        raise MissingDependencyError(
            f"{feature} needs the '{module}' package ({err}); pip install 'edgetran[{extra}]'"
        ) from None


def _artifact(path: str | Path, kind: str) -> Path:
    """``path`` once it names a file; else a :class:`RunnerError`: ``PATH: no such KIND file``."""
    path = Path(path)
    if not path.is_file():
        raise RunnerError(f"{path}: no such {kind} file")
    return path


def require_runtime(name: str) -> None:
    """Raise :class:`RunnerError` saying why when the registered runtime ``name`` cannot run
    here (a package it needs is missing: the message names the extra to install)."""
    why = RUNTIMES.why_not(name)
    if why:
        raise RunnerError(f"runtime {name!r} is not usable here: {why}")


class Runner(abc.ABC):
    """Runs one model on one runtime and device.

    Contract:
        - inputs are ``input_ids`` and ``attention_mask``, int64 arrays of shape ``(B, S)``;
        - the output is the model's main output as float32: ``last_hidden_state``
          ``(B, S, h)`` or ``logits`` ``(B, S, V)`` / ``(B, C)``;
        - :attr:`device` is where the runtime really runs the model (as the runtime reports
          it), which may differ from what was requested (e.g. OpenVINO ``AUTO``);
        - :meth:`run` returns only when the result is computed (it synchronises).
    """

    runtime: ClassVar[str]
    #: How the artifact it runs was quantised (``ExportSpec.quantize``; ``none``: float32).
    quantize: ClassVar[str] = "none"

    @property
    @abc.abstractmethod
    def device(self) -> str:
        """The device the model really runs on, e.g. ``cpu``, ``cuda:0``, ``CPU``, ``GPU.0``."""

    @abc.abstractmethod
    def prepare(self, input_ids: np.ndarray, attention_mask: np.ndarray) -> Any:
        """Runtime-native inputs, made once before timing."""

    @abc.abstractmethod
    def run(self, prepared: Any) -> Any:
        """One synchronous inference on prepared inputs; returns the runtime-native output."""

    @abc.abstractmethod
    def to_numpy(self, output: Any) -> np.ndarray:
        """The output of :meth:`run` as a NumPy array."""

    def __call__(self, input_ids: np.ndarray, attention_mask: np.ndarray) -> np.ndarray:
        """``to_numpy(run(prepare(input_ids, attention_mask)))``."""
        return self.to_numpy(self.run(self.prepare(input_ids, attention_mask)))

    def describe(self) -> dict[str, str]:
        """The runtime, the device and, for a quantised artifact, its ``quantize`` mode."""
        described = {"runtime": self.runtime, "device": self.device}
        return described if self.quantize == "none" else described | {"quantize": self.quantize}


def synchronize(device: torch.device) -> None:
    """Wait for every kernel queued on ``device``: accelerators (``cuda``, ``mps``, ``xpu`` …)
    run them asynchronously, so a timer read before this under-measures the run."""
    if device.type in ("cpu", "meta"):
        return
    accelerator = getattr(torch, "accelerator", None)
    if hasattr(accelerator, "synchronize"):  # torch ≥ 2.6: one call for every accelerator
        accelerator.synchronize(device)
    elif device.type == "mps":  # its synchronize takes no device (there is one)
        torch.mps.synchronize()
    else:
        getattr(torch, device.type).synchronize(device)


class TorchRunner(Runner):
    """PyTorch eager (an ``nn.Module``) or a ``torch.export`` program (``.pt2`` file)."""

    runtime = "torch"

    def __init__(self, model: torch.nn.Module | str | Path, device: str = "cpu") -> None:
        if isinstance(model, str | Path):
            model = torch.export.load(_artifact(model, ".pt2")).module()
        _check_torch_device(device)
        if device.startswith("cuda") and not torch.cuda.is_available():
            raise RunnerError(f"device {device!r} requested but CUDA is not available")
        self._device = torch.device(device)
        self.model = model.to(self._device)
        if hasattr(self.model, "eval") and not isinstance(self.model, torch.fx.GraphModule):
            self.model.eval()

    @property
    def device(self) -> str:
        """The torch device it runs on, e.g. ``cpu`` or ``cuda:0``."""
        return str(self._device)

    def prepare(self, input_ids, attention_mask):
        """The inputs as int64 tensors on the runner's device."""
        return tuple(
            torch.as_tensor(a, dtype=torch.int64, device=self._device)
            for a in (input_ids, attention_mask)
        )

    def run(self, prepared):
        """One synchronous forward pass; the main output tensor."""
        with torch.inference_mode():
            output = self.model(*prepared)
        output = output if isinstance(output, torch.Tensor) else output[0]
        synchronize(self._device)
        return output

    def to_numpy(self, output) -> np.ndarray:
        """The output as a float32 array on the host."""
        return output.detach().float().cpu().numpy()


class OnnxRuntimeRunner(Runner):
    """ONNX Runtime on the CPU, or on CUDA where the CUDA execution provider is installed.

    ``spinning`` lets idle intra-op threads busy-wait (ONNX Runtime's default; off here).
    """

    runtime = "onnxruntime"

    def __init__(
        self,
        path: str | Path,
        device: str = "cpu",
        threads: int | None = None,
        spinning: bool = False,
    ) -> None:
        ort = _require("onnxruntime", "the onnxruntime runner")
        path = _artifact(path, "ONNX")
        options = ort.SessionOptions()
        if threads:
            options.intra_op_num_threads = threads
        # Idle worker threads spin by default: that burns power between runs and steals cores
        # from whatever runs beside them, so it is off unless asked for.
        options.add_session_config_entry(
            "session.intra_op.allow_spinning", "1" if spinning else "0"
        )
        _check_onnxruntime_device(device)
        providers: list[Any] = ["CPUExecutionProvider"]
        if device.startswith("cuda"):
            if "CUDAExecutionProvider" not in ort.get_available_providers():
                raise RunnerError("CUDA requested but onnxruntime has no CUDAExecutionProvider")
            index = int(device.split(":")[1]) if ":" in device else 0
            providers.insert(0, ("CUDAExecutionProvider", {"device_id": index}))
            self._cuda_index = index
        self.session = ort.InferenceSession(str(path), options, providers=providers)
        self._ort = ort

    @property
    def device(self) -> str:
        """``cuda:N`` when the CUDA execution provider runs the session, else ``cpu``."""
        return f"cuda:{self._cuda_index}" if self._on_cuda else "cpu"

    @property
    def _on_cuda(self) -> bool:
        return self.session.get_providers()[0] == "CUDAExecutionProvider"

    def prepare(self, input_ids, attention_mask):
        """The input feed, or an I/O binding holding the inputs on the GPU."""
        arrays = (np.ascontiguousarray(a, dtype=np.int64) for a in (input_ids, attention_mask))
        feed = dict(zip(INPUT_NAMES, arrays, strict=True))
        return self._bind_on_cuda(feed) if self._on_cuda else feed

    def _bind_on_cuda(self, feed: dict[str, np.ndarray]) -> Any:
        """An I/O binding holding the inputs on the GPU, copied once as the torch runner's are,
        and the outputs left there for :meth:`run` to wait for."""
        binding = self.session.io_binding()
        for name, array in feed.items():
            value = self._ort.OrtValue.ortvalue_from_numpy(array, "cuda", self._cuda_index)
            binding.bind_ortvalue_input(name, value)
        for output in self.session.get_outputs():
            binding.bind_output(output.name, "cuda", self._cuda_index)
        return binding

    def run(self, prepared):
        """One synchronous inference; the first output."""
        if isinstance(prepared, dict):
            return self.session.run(None, prepared)[0]
        # Outputs left on the GPU are not copied to the host, so no copy waits for the CUDA
        # stream: synchronising them explicitly makes the timer stop once they are computed.
        self.session.run_with_iobinding(prepared)
        prepared.synchronize_outputs()
        return prepared.get_outputs()[0]

    def to_numpy(self, output) -> np.ndarray:
        """The output as a float32 array on the host."""
        # On CUDA the output is an OrtValue on the GPU; .numpy() copies it to the host.
        return np.asarray(output if isinstance(output, np.ndarray) else output.numpy(), np.float32)


class OpenVinoRunner(Runner):
    """OpenVINO on ``CPU``, ``GPU``, ``NPU`` or ``AUTO``.

    ``precision`` sets ``INFERENCE_PRECISION_HINT`` (``f32`` or ``bf16``); ``None`` keeps the
    plugin's default, which is bf16 on CPUs with AVX512-BF16/AMX.
    """

    runtime = "openvino"

    def __init__(
        self,
        path: str | Path,
        device: str = "CPU",
        precision: str | None = "f32",
        threads: int | None = None,
    ) -> None:
        ov = _require("openvino", "the openvino runner")
        path = _artifact(path, "OpenVINO IR (.xml)")
        core = ov.Core()
        config: dict[str, Any] = {}
        if precision is not None:
            config["INFERENCE_PRECISION_HINT"] = precision
        if threads and device.upper() == "CPU":
            config["INFERENCE_NUM_THREADS"] = threads
        _check_openvino_device(device)
        if device.upper() not in ("AUTO",) and device.split(".")[0].upper() not in {
            d.split(".")[0] for d in core.available_devices
        }:
            raise RunnerError(
                f"OpenVINO device {device!r} not found; available: {core.available_devices}"
            )
        self.compiled = core.compile_model(core.read_model(path), device.upper(), config)
        self.request = self.compiled.create_infer_request()

    @property
    def device(self) -> str:
        """The devices OpenVINO executes on (``EXECUTION_DEVICES``)."""
        try:
            return ",".join(self.compiled.get_property("EXECUTION_DEVICES"))
        except RuntimeError:
            return "CPU"

    @property
    def precision(self) -> str:
        """The inference precision the plugin actually applies."""
        hint = self.compiled.get_property("INFERENCE_PRECISION_HINT")
        return hint.to_string() if hasattr(hint, "to_string") else str(hint)

    def prepare(self, input_ids, attention_mask):
        """The inputs as contiguous int64 arrays."""
        return [np.ascontiguousarray(a, dtype=np.int64) for a in (input_ids, attention_mask)]

    def run(self, prepared):
        """One synchronous inference; the first output tensor's data."""
        self.request.infer(prepared)
        return self.request.get_output_tensor(0).data

    def to_numpy(self, output) -> np.ndarray:
        """The output as a float32 array."""
        return np.array(output, dtype=np.float32)


class LiteRtRunner(Runner):
    """The LiteRT (TensorFlow Lite) interpreter on the CPU, through XNNPACK where it applies.

    The artifact's inputs are int32 (the converter narrows int64); :meth:`prepare` casts to
    what the artifact wants. ``threads`` defaults to every core, as the other runtimes do.
    """

    runtime = "litert"

    def __init__(self, path: str | Path, device: str = "cpu", threads: int | None = None) -> None:
        interpreter = _require("ai_edge_litert.interpreter", "the litert runner", "litert")
        path = _artifact(path, ".tflite")
        _check_litert_device(device)
        self.threads = threads or os.cpu_count() or 1
        self.interpreter = interpreter.Interpreter(model_path=str(path), num_threads=self.threads)
        self.signature = self.interpreter.get_signature_runner()
        inputs = self.signature.get_input_details()
        missing = set(INPUT_NAMES) - set(inputs)
        if missing:
            raise RunnerError(
                f"{path}: inputs {sorted(inputs)} lack {', '.join(sorted(missing))}; allowed: "
                "a .tflite from edgetran export --format litert"
            )
        self._dtypes = {name: inputs[name]["dtype"] for name in INPUT_NAMES}

    @property
    def device(self) -> str:
        """Always ``cpu``: the interpreter runs on the CPU."""
        return "cpu"

    def describe(self) -> dict[str, str]:
        """The runtime, the device and the thread count."""
        return super().describe() | {"threads": str(self.threads)}

    def prepare(self, input_ids, attention_mask):
        """The inputs cast to the dtypes the artifact wants."""
        arrays = (input_ids, attention_mask)
        return {
            name: np.ascontiguousarray(a, dtype=self._dtypes[name])
            for name, a in zip(INPUT_NAMES, arrays, strict=True)
        }

    def run(self, prepared):
        """One synchronous inference through the model's signature; its output."""
        (output,) = self.signature(**prepared).values()
        return output

    def to_numpy(self, output) -> np.ndarray:
        """The output as a float32 array."""
        return np.asarray(output, dtype=np.float32)


class OnnxRuntimeInt8Runner(OnnxRuntimeRunner):
    """ONNX Runtime on a model quantised by ``onnxruntime.quantization.quantize_dynamic``."""

    runtime = "onnxruntime-int8"
    quantize = DYNAMIC_INT8


class OpenVinoInt8Runner(OpenVinoRunner):
    """OpenVINO on a model whose weights NNCF compressed to int8; the CPU plugin quantises
    activations on the fly (dynamic quantisation) where the CPU has int8 instructions."""

    runtime = "openvino-int8"
    quantize = DYNAMIC_INT8


class LiteRtInt8Runner(LiteRtRunner):
    """The LiteRT interpreter on a model quantised by ai-edge-quantizer (dynamic int8)."""

    runtime = "litert-int8"
    quantize = DYNAMIC_INT8


@dataclass(frozen=True)
class Runtime:
    """A runtime plug-in: the export format it runs, how to write it, and how to run it.

    Attributes:
        name: the runtime's name (``--runtime``), e.g. ``onnxruntime``.
        format: the export format (``edgetran export --format``), e.g. ``onnx``.
        artifact_name: the file the exporter writes, e.g. ``model.onnx``.
        export: ``export(wrapper, (input_ids, attention_mask), path, spec)`` writes the artifact
            of an :class:`~edgetran.export.exporters.ExportWrapper` for an
            :class:`~edgetran.export.exporters.ExportSpec` (example inputs are int64 tensors).
        runner: ``runner(artifact, device, **options)`` → :class:`Runner`; ``options`` may hold
            ``threads`` (and runtime-specific settings).
        default_device: the device used when none is requested.
        check_device: ``check_device(device)`` raises :class:`RunnerError` naming the allowed
            devices when ``device`` is not spelled as the runtime names its devices (``None``:
            any name is passed on to the runner).
        quantize_modes: the ``ExportSpec.quantize`` modes the exporter writes (``none``: the
            float32 model).
        dynamic_batch: whether the exporter can write a dynamic batch dimension.
        input_dtype: the dtype of the artifact's inputs (runners cast int64 ids to it).
        quantize: the ``ExportSpec.quantize`` mode of the artifacts it runs (an int8 runtime:
            ``dynamic-int8``); profiling and :meth:`ExportSpec.for_runtime
            <edgetran.export.exporters.ExportSpec.for_runtime>` export with it.
        runs_module: its runner runs the PyTorch module itself (``torch``), so profiling times
            the model without exporting it first.
        set_threads: ``set_threads(n)`` pins a thread count that is a process-wide setting
            (``torch.set_num_threads`` for ``torch``); ``None`` (the default): the runner takes
            ``threads=n`` as an option. :func:`create_timed_runner` applies it.
        measure_options: runner options for profiling and the final measurement, e.g.
            ``{"precision": "f32"}`` for OpenVINO, so the timing is of the float32 model the
            search scored (default: none).
        verify_options: runner options when an artifact is verified against PyTorch eager
            (default: none).
        tolerance: the largest absolute difference from PyTorch eager a float32 artifact of this
            runtime may show in verification (default :data:`TOLERANCE`).
        bf16_options: runner options that run the artifact in bf16, for the verification's
            informative bf16 difference (``Verification.bf16_max_abs_diff``; ``None``, the
            default: not measured). A runner made with them may report the precision it
            applied as ``precision``.

    A plug-in that sets none of the last six behaves as ONNX Runtime does: it is exported
    before timing, threads go to its runner as ``threads``, no further options.
    """

    name: str
    format: str
    artifact_name: str
    export: Callable[..., None]
    runner: Callable[..., Runner]
    default_device: str = "cpu"
    check_device: Callable[[str], None] | None = None
    quantize_modes: tuple[str, ...] = ("none",)
    dynamic_batch: bool = True
    input_dtype: str = "int64"
    quantize: str = "none"
    runs_module: bool = False
    set_threads: Callable[[int], None] | None = None
    measure_options: Mapping[str, Any] = field(default_factory=dict, hash=False)
    verify_options: Mapping[str, Any] = field(default_factory=dict, hash=False)
    tolerance: float = TOLERANCE
    bf16_options: Mapping[str, Any] | None = field(default=None, hash=False)


def get_runtime(name: str) -> Runtime:
    """The registered runtime ``name``; :class:`RunnerError` names the allowed values."""
    return RUNTIMES.get(name)


def create_runner(
    runtime: str, artifact: Any, device: str | None = None, **options: Any
) -> Runner:
    """A runner for a registered runtime (``torch``, ``onnxruntime``, ``openvino``, ``litert``
    or a plug-in).

    Args:
        runtime: the runtime name.
        artifact: an ``nn.Module`` or ``.pt2`` path (torch), an ``.onnx`` path, an ``.xml`` path,
            a ``.tflite`` path.
        device: the requested device (default: the runtime's, ``CPU`` for OpenVINO).
        options: runtime options (``threads``; ``precision`` for OpenVINO).
    """
    spec = get_runtime(runtime)
    return spec.runner(artifact, device or spec.default_device, **options)


def create_timed_runner(
    runtime: str, artifact: Any, device: str | None = None, threads: int | None = None
) -> Runner:
    """A runner of ``artifact`` as profiling and the final measurement time it: pinned to
    ``threads`` the way the runtime applies them (its ``set_threads``, else the runner's
    ``threads`` option), with the runtime's ``measure_options``."""
    spec = get_runtime(runtime)
    options = dict(spec.measure_options)
    if threads and spec.set_threads is not None:
        spec.set_threads(threads)
    elif threads:
        options["threads"] = threads
    return spec.runner(artifact, device or spec.default_device, **options)


def set_torch_threads(threads: int) -> None:
    """Pin torch's intra-op threads (a process-wide setting): the torch runtime's
    ``set_threads``."""
    torch.set_num_threads(threads)
