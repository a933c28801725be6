"""Export a FlexiBERT model to ONNX, OpenVINO IR, a ``torch.export`` program, LiteRT
(``.tflite``) or a plug-in format; ONNX, OpenVINO and LiteRT also as dynamic int8, each through
its own runtime's quantiser.

Every artifact takes ``input_ids`` and ``attention_mask`` (int64, ``(B, S)``; int32 in LiteRT,
whose converter narrows 64-bit types) and returns one tensor, ``last_hidden_state`` (base model)
or ``logits`` (MLM and classification heads). DFT and DCT heads are plain matmuls, so no FFT
operator reaches any runtime. A ``metadata.json`` beside the artifact records the architecture,
shapes, versions and the verification result.

Each format belongs to a :class:`~edgetran.export.runners.Runtime` (the built-ins are at the
end of this module); a runtime plug-in brings its own format and exporter.
"""

from __future__ import annotations

import contextlib
import hashlib
import io
import json
import logging
import shutil
import tempfile
import warnings
from collections import OrderedDict
from dataclasses import asdict, dataclass, replace
from pathlib import Path
from typing import Any

import torch
from torch import nn

import edgetran
from edgetran._versions import package_version
from edgetran.errors import EdgeTranError, ExportError, prepare_output_dir
from edgetran.export.runners import (
    DYNAMIC_INT8,
    INPUT_NAMES,
    LiteRtInt8Runner,
    LiteRtRunner,
    OnnxRuntimeInt8Runner,
    OnnxRuntimeRunner,
    OpenVinoInt8Runner,
    OpenVinoRunner,
    Runtime,
    TorchRunner,
    _check_litert_device,
    _check_onnxruntime_device,
    _check_openvino_device,
    _check_torch_device,
    _require,
    get_runtime,
    set_torch_threads,
)
from edgetran.export.verify import Verification, random_inputs, verify_artifact
from edgetran.model import FlexiBertModel, FlexiBertPreTrainedModel
from edgetran.plugins import RUNTIMES

MIN_OPSET = 18


def export_formats() -> tuple[str, ...]:
    """The export formats of the registered runtimes (``pt2``, ``onnx``, ``openvino`` …); a
    plug-in may reuse a built-in format."""
    return tuple(dict.fromkeys(RUNTIMES.get(name).format for name in RUNTIMES.names()))


def runtime_of_format(fmt: str) -> Runtime:
    """The runtime that runs artifacts of ``fmt``."""
    for name in RUNTIMES.names():
        runtime: Runtime = RUNTIMES.get(name)
        if runtime.format == fmt:
            return runtime
    raise ExportError(f"format={fmt!r} is invalid; allowed: {', '.join(export_formats())}")


def runtime_of_spec(spec: ExportSpec) -> Runtime:
    """The runtime that runs the artifacts of ``spec``: the one registered for its format and
    quantisation (``onnxruntime-int8`` for a dynamic-int8 ONNX model), else its format's."""
    for name in RUNTIMES.names():
        runtime: Runtime = RUNTIMES.get(name)
        if runtime.format == spec.format and runtime.quantize == spec.quantize:
            return runtime
    return runtime_of_format(spec.format)


@dataclass(frozen=True)
class ExportSpec:
    """What to export: format, input shapes and quantisation (``none`` keeps float32).
    Validated on construction."""

    format: str
    batch_size: int = 1
    seq_len: int = 128
    dynamic_batch: bool = False
    opset: int = MIN_OPSET
    quantize: str = "none"

    def __post_init__(self) -> None:
        runtime = runtime_of_format(self.format)
        if self.quantize not in runtime.quantize_modes:
            raise ExportError(
                f"quantize={self.quantize!r} is invalid for format {self.format!r}; allowed: "
                f"{', '.join(runtime.quantize_modes)}"
            )
        if self.dynamic_batch and not runtime.dynamic_batch:
            raise ExportError(
                f"dynamic_batch=True is invalid for format {self.format!r}; allowed: a static "
                "batch (batch_size)"
            )
        for name in ("batch_size", "seq_len"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int) or value <= 0:
                raise ExportError(f"{name}={value!r} is invalid; allowed: a positive integer")
        if self.opset < MIN_OPSET:
            raise ExportError(f"opset={self.opset} is invalid; allowed: {MIN_OPSET} or newer")

    @classmethod
    def for_runtime(cls, runtime: str, **shape: Any) -> ExportSpec:
        """The spec of the artifacts the registered ``runtime`` runs (its format and
        quantisation) at ``shape`` (``batch_size``, ``seq_len``, ``dynamic_batch`` …)."""
        found = get_runtime(runtime)
        return cls(found.format, quantize=found.quantize, **shape)


class ExportWrapper(nn.Module):
    """``(input_ids, attention_mask)`` → the model's main output tensor."""

    def __init__(self, model: FlexiBertPreTrainedModel) -> None:
        super().__init__()
        self.model = model
        self.output_name = "last_hidden_state" if isinstance(model, FlexiBertModel) else "logits"

    def forward(self, input_ids: torch.Tensor, attention_mask: torch.Tensor) -> torch.Tensor:
        """The wrapped model's main output for int64 ids and mask."""
        return self.model(input_ids=input_ids, attention_mask=attention_mask)[self.output_name]


@dataclass
class ExportResult:
    """What :func:`export_model` wrote: the artifact's path and its ``metadata.json``."""

    artifact: Path
    metadata: dict[str, Any]

    @property
    def verification(self) -> dict[str, Any] | None:
        """The verification in the metadata (``None`` when not verified)."""
        return self.metadata.get("verification")


def export_model(
    model: FlexiBertPreTrainedModel,
    out_dir: str | Path,
    spec: ExportSpec,
    *,
    verify: bool = False,
    seed: int = 0,
    tolerance: float | None = None,
) -> ExportResult:
    """Write the artifact and ``metadata.json`` into ``out_dir``; optionally verify it (within
    ``tolerance``; default: the runtime's).

    Raises:
        ExportError: the output folder is not writable, or the exporter failed.
        ArchitectureError: ``spec.seq_len`` runs past the model's position table.
        MissingDependencyError: the format's optional package is not installed.
    """
    model.config.check_seq_len(spec.seq_len)
    out = prepare_output_dir(out_dir, ExportError)
    wrapper = ExportWrapper(model.eval()).eval()
    ids, mask = random_inputs(spec.batch_size, spec.seq_len, model.config.vocab_size, seed)
    example = (torch.from_numpy(ids), torch.from_numpy(mask))
    runtime = runtime_of_spec(spec)
    artifact = out / runtime.artifact_name
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            runtime.export(wrapper, example, artifact, spec)
    except (EdgeTranError, OSError):
        raise
    except Exception as err:  # exporters raise many types; report one line, keep the cause
        first_line = str(err).strip().splitlines()[0] if str(err).strip() else ""
        raise ExportError(
            f"{spec.format} export failed: {type(err).__name__}: {first_line}"
        ) from err
    verification: Verification | None = None
    if verify:
        verification = verify_artifact(
            wrapper, artifact, runtime.name, spec, seed=seed, tolerance=tolerance
        )
    metadata = _metadata(model, wrapper, artifact, spec, verification) | {"runtime": runtime.name}
    (out / "metadata.json").write_text(json.dumps(metadata, indent=2) + "\n")
    return ExportResult(artifact, metadata)


def _batch_dim(spec: ExportSpec) -> Any:
    return torch.export.Dim("batch", min=1, max=4096) if spec.dynamic_batch else None


def _dynamic_shapes(spec: ExportSpec) -> dict[str, Any] | None:
    if not spec.dynamic_batch:
        return None
    batch = _batch_dim(spec)
    return {name: {0: batch} for name in INPUT_NAMES}


def _export_onnx(wrapper: ExportWrapper, example, artifact: Path, spec: ExportSpec) -> None:
    _require("onnxscript", "ONNX export")
    if spec.quantize == DYNAMIC_INT8:  # before the slow part
        _require("onnxruntime.quantization", "ONNX Runtime int8 quantisation")
    key = _onnx_export_key(wrapper, example, spec)
    kept = FLOAT32_ONNX.get(key)
    if spec.quantize != DYNAMIC_INT8:
        if kept is not None:
            shutil.copyfile(kept, artifact)
            return
        _dynamo_export(wrapper, example, spec).save(str(artifact))
        FLOAT32_ONNX.put(key, artifact)
        return
    if kept is not None:
        _onnx_dynamic_int8(kept, artifact)
        return
    with tempfile.TemporaryDirectory(dir=artifact.parent) as tmp:
        float32 = Path(tmp) / artifact.name
        _dynamo_export(wrapper, example, spec).save(str(float32))
        FLOAT32_ONNX.put(key, float32)
        _onnx_dynamic_int8(float32, artifact)


def _dynamo_export(wrapper: ExportWrapper, example, spec: ExportSpec) -> Any:
    # The exporter warns once per missing torchvision operator; nothing here uses them.
    logging.getLogger("torch.onnx._internal.exporter._registration").setLevel(logging.ERROR)
    return torch.onnx.export(
        wrapper,
        example,
        dynamo=True,
        opset_version=spec.opset,
        input_names=list(INPUT_NAMES),
        output_names=[wrapper.output_name],
        dynamic_shapes=_dynamic_shapes(spec),
        verbose=False,
    )


def _onnx_export_key(wrapper: ExportWrapper, example, spec: ExportSpec) -> str:
    """What determines the float32 ONNX program: the model's configuration, head and every
    weight and buffer, the example's shapes and the exporter's settings."""
    digest = hashlib.sha256()
    config = wrapper.model.config.to_dict()
    settings = [
        config,
        type(wrapper.model).__name__,
        wrapper.output_name,
        [list(t.shape) for t in example],
        spec.opset,
        spec.dynamic_batch,
        torch.__version__,
    ]
    digest.update(json.dumps(settings, sort_keys=True, default=str).encode())
    for name, tensor in wrapper.model.state_dict().items():
        digest.update(f"{name}:{tensor.dtype}:{list(tensor.shape)}".encode())
        raw = tensor.detach().cpu().contiguous().reshape(-1).view(torch.uint8)
        digest.update(raw.numpy().tobytes())
    return digest.hexdigest()


class _ExportCache:
    """Recent float32 ONNX programs of this process, by :func:`_onnx_export_key`: the
    ``onnxruntime`` and ``onnxruntime-int8`` artifacts of one model share one dynamo export
    (4–7 s a model on 2 cores), as profiling every device of a co-search makes both. Copies
    live in a private temporary folder, removed at exit; the oldest go past ``max_bytes``."""

    def __init__(self, max_bytes: int = 1 << 30) -> None:
        self.max_bytes = max_bytes
        self._folder: tempfile.TemporaryDirectory | None = None
        self._paths: OrderedDict[str, Path] = OrderedDict()

    def get(self, key: str) -> Path | None:
        path = self._paths.get(key)
        if path is None or not path.is_file():
            self._paths.pop(key, None)
            return None
        self._paths.move_to_end(key)
        return path

    def put(self, key: str, source: Path) -> None:
        if self._folder is None:
            self._folder = tempfile.TemporaryDirectory(prefix="edgetran-onnx-")
        if (
            source.stat().st_size > self.max_bytes
            or source.with_name(source.name + ".data").exists()
        ):
            return  # a program too large for one file (its weights beside it) is not kept
        kept = Path(self._folder.name) / f"{key}.onnx"
        shutil.copyfile(source, kept)
        self._paths[key] = kept
        while sum(p.stat().st_size for p in self._paths.values()) > self.max_bytes:
            _, oldest = self._paths.popitem(last=False)
            oldest.unlink(missing_ok=True)

    def clear(self) -> None:
        for path in self._paths.values():
            path.unlink(missing_ok=True)
        self._paths.clear()


#: The float32 ONNX programs this process exported (see :class:`_ExportCache`).
FLOAT32_ONNX = _ExportCache()


#: The ONNX operators whose weights ONNX Runtime's dynamic int8 quantises: matmuls (linear
#: layers and the DFT/DCT heads' constant head-dimension basis), convolutions and the embedding
#: tables; the sequence basis and attention products have no constant operand and stay float.
ONNX_INT8_OPS = ("MatMul", "Gemm", "Conv", "Gather")


def _onnx_dynamic_int8(source: Path, artifact: Path) -> None:
    """``quantize_dynamic``: signed weights per output channel, activations quantised to uint8
    on the fly by ``DynamicQuantizeLinear``.

    Weights keep 7 bits (``reduce_range``): x86 CPUs without VNNI multiply uint8 by int8 into
    saturating 16-bit sums, and full-range weights per channel put a tiny classifier's logits
    0.38 (relative norm) from PyTorch's on this EPYC, 7 bits 0.024 (per tensor: 0.18, 0.043).
    """
    quantization = _require("onnxruntime.quantization", "ONNX Runtime int8 quantisation")
    # It logs a hint to run its shape-inference pre-processing first, which changes nothing
    # here: the dynamo exporter writes shapes already.
    with _dropped_log_records("pre-processing before quantization"):
        quantization.quantize_dynamic(
            source,
            artifact,
            op_types_to_quantize=list(ONNX_INT8_OPS),
            per_channel=True,
            reduce_range=True,
            weight_type=quantization.QuantType.QInt8,
        )


def _export_openvino(wrapper: ExportWrapper, example, artifact: Path, spec: ExportSpec) -> None:
    ov = _require("openvino", "OpenVINO export")
    if spec.quantize == DYNAMIC_INT8:  # before the slow part
        _require("nncf", "OpenVINO int8 quantisation", "openvino-int8")
    batch = -1 if spec.dynamic_batch else spec.batch_size
    shapes = [(name, ov.PartialShape([batch, spec.seq_len]), ov.Type.i64) for name in INPUT_NAMES]
    ov_model = ov.convert_model(wrapper, example_input=example, input=shapes)
    ov_model.outputs[0].get_tensor().set_names({wrapper.output_name})
    if spec.quantize == DYNAMIC_INT8:
        ov_model = _openvino_dynamic_int8(ov_model)
    # save_model compresses weights to fp16 by default; keep float32 so verification holds.
    ov.save_model(ov_model, str(artifact), compress_to_fp16=False)


def _openvino_dynamic_int8(ov_model: Any) -> Any:
    """NNCF's int8 weight compression (per output channel, asymmetric) of the matmuls and
    embedding tables; OpenVINO's CPU plugin then quantises their activations on the fly
    (dynamic quantisation, ``DYNAMIC_QUANTIZATION_GROUP_SIZE``) where the CPU has int8 dot
    products. NNCF has no dynamic int8 of activations itself: its ``quantize`` is static and
    needs calibration data."""
    nncf = _require("nncf", "OpenVINO int8 quantisation", "openvino-int8")
    logger = logging.getLogger("nncf")
    level = logger.level
    # NNCF logs a table and draws a progress bar on stdout, where `--json` output goes.
    nncf.set_log_level(logging.ERROR)
    try:
        with contextlib.redirect_stdout(io.StringIO()):
            return nncf.compress_weights(ov_model, mode=nncf.CompressWeightsMode.INT8_ASYM)
    finally:
        nncf.set_log_level(level)


def _export_pt2(wrapper: ExportWrapper, example, artifact: Path, spec: ExportSpec) -> None:
    program = torch.export.export(wrapper, example, dynamic_shapes=_dynamic_shapes(spec))
    torch.export.save(program, str(artifact))


class _NamedOutput(nn.Module):
    """The wrapper's output under its name: LiteRT names signature outputs by dict keys."""

    def __init__(self, wrapper: ExportWrapper) -> None:
        super().__init__()
        self.wrapper = wrapper

    def forward(self, input_ids: torch.Tensor, attention_mask: torch.Tensor):
        return {self.wrapper.output_name: self.wrapper(input_ids, attention_mask)}


@contextlib.contextmanager
def _dropped_log_records(text: str):
    """Drop the root logger's records that contain ``text`` for the duration of the block."""

    class Drop(logging.Filter):
        def filter(self, record: logging.LogRecord) -> bool:
            return text not in record.getMessage()

    notice = Drop()
    logging.getLogger().addFilter(notice)
    try:
        yield
    finally:
        logging.getLogger().removeFilter(notice)


def _export_litert(wrapper: ExportWrapper, example, artifact: Path, spec: ExportSpec) -> None:
    litert_torch = _require("litert_torch", "LiteRT export", "litert")
    shown = litert_torch.config.show_progress
    litert_torch.config.show_progress = False
    try:
        # The converter warns that int64 inputs become int32; the LiteRT runner casts for it.
        with _dropped_log_records("enable_x64"):
            edge = litert_torch.convert(
                _NamedOutput(wrapper).eval(),
                sample_kwargs=dict(zip(INPUT_NAMES, example, strict=True)),
            )
        content = edge.model_content()
    finally:
        litert_torch.config.show_progress = shown
    if spec.quantize == DYNAMIC_INT8:
        content = _dynamic_int8(content)
    artifact.write_bytes(content)


def _dynamic_int8(content: bytes) -> bytes:
    """Int8 weights for the ops with weights (matmuls, convolutions, the embedding table);
    activations stay float32 between them. A ``BATCH_MATMUL`` whose constant is the left
    operand (the DFT/DCT sequence basis) has no int8 kernel, so batch matmuls stay float."""
    quantizer = _require("ai_edge_quantizer", "LiteRT int8 quantisation", "litert")
    ops = _require("ai_edge_quantizer.qtyping", "LiteRT int8 quantisation", "litert")
    job = quantizer.Quantizer(bytearray(content))
    for op in ("FULLY_CONNECTED", "CONV_2D", "DEPTHWISE_CONV_2D", "EMBEDDING_LOOKUP"):
        job.add_dynamic_config(regex=".*", operation_name=ops.TFLOperationName[op], num_bits=8)
    result = job.quantize(enable_progress_bar=False, enable_progress_report=False)
    return bytes(result.quantized_model)


def _metadata(
    model: FlexiBertPreTrainedModel,
    wrapper: ExportWrapper,
    artifact: Path,
    spec: ExportSpec,
    verification: Verification | None,
) -> dict[str, Any]:
    arch = model.config.arch
    batch: int | str = "batch" if spec.dynamic_batch else spec.batch_size
    dtype = runtime_of_format(spec.format).input_dtype
    inputs = [{"name": n, "dtype": dtype, "shape": [batch, spec.seq_len]} for n in INPUT_NAMES]
    packages = (
        *("torch", "transformers", "onnx", "onnxscript", "onnxruntime", "openvino", "nncf"),
        *("litert-torch", "ai-edge-litert", "ai-edge-quantizer"),
    )
    return {
        "format": spec.format,
        "artifact": artifact.name,
        "head": type(model).__name__,
        "hash": arch.hash,
        "architecture": arch.to_dict(),
        "model_dict": arch.to_model_dict(),
        "config": {
            "vocab_size": model.config.vocab_size,
            "position_embedding_type": model.config.position_embedding_type,
            "num_labels": model.config.num_labels,
        },
        "inputs": inputs,
        "outputs": [{"name": wrapper.output_name, "dtype": "float32"}],
        "dynamic_batch": spec.dynamic_batch,
        "quantize": spec.quantize,
        "opset": spec.opset if spec.format == "onnx" else None,
        "versions": {p: package_version(p) for p in packages} | {"edgetran": edgetran.__version__},
        "verification": asdict(verification) if verification is not None else None,
    }


TORCH_RUNTIME = Runtime(
    "torch",
    "pt2",
    "model.pt2",
    _export_pt2,
    TorchRunner,
    check_device=_check_torch_device,
    runs_module=True,
    set_threads=set_torch_threads,
)
ONNX_RUNTIME = Runtime(
    "onnxruntime",
    "onnx",
    "model.onnx",
    _export_onnx,
    OnnxRuntimeRunner,
    check_device=_check_onnxruntime_device,
    quantize_modes=("none", DYNAMIC_INT8),
)
OPENVINO_RUNTIME = Runtime(
    "openvino",
    "openvino",
    "model.xml",
    _export_openvino,
    OpenVinoRunner,
    default_device="CPU",
    check_device=_check_openvino_device,
    quantize_modes=("none", DYNAMIC_INT8),
    # the CPU plugin runs bf16 by default where the CPU has it: timings and verification are
    # of the float32 model; bf16's difference is reported beside, for information
    measure_options={"precision": "f32"},
    verify_options={"precision": "f32"},
    bf16_options={"precision": "bf16"},
)
LITERT_RUNTIME = Runtime(
    "litert",
    "litert",
    "model.tflite",
    _export_litert,
    LiteRtRunner,
    check_device=_check_litert_device,
    quantize_modes=("none", DYNAMIC_INT8),
    dynamic_batch=False,
    input_dtype="int32",
)

#: Precision is part of the design: each base runtime on its own quantiser's dynamic int8.
_INT8 = {"quantize_modes": (DYNAMIC_INT8,), "quantize": DYNAMIC_INT8}
ONNX_INT8_RUNTIME = replace(
    ONNX_RUNTIME, name="onnxruntime-int8", runner=OnnxRuntimeInt8Runner, **_INT8
)
OPENVINO_INT8_RUNTIME = replace(
    OPENVINO_RUNTIME, name="openvino-int8", runner=OpenVinoInt8Runner, bf16_options=None, **_INT8
)
LITERT_INT8_RUNTIME = replace(LITERT_RUNTIME, name="litert-int8", runner=LiteRtInt8Runner, **_INT8)
