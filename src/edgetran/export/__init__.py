"""Export to ONNX, OpenVINO IR and ``torch.export``, verified against PyTorch; runtime runners."""

from edgetran.export.exporters import (
    ARTIFACT_NAMES,
    FORMATS,
    ExportResult,
    ExportSpec,
    ExportWrapper,
    export_model,
)
from edgetran.export.runners import (
    RUNTIMES,
    OnnxRuntimeRunner,
    OpenVinoRunner,
    Runner,
    RunnerError,
    TorchRunner,
    create_runner,
    runtime_available,
)
from edgetran.export.verify import TOLERANCE, Verification, random_inputs

__all__ = [
    "ARTIFACT_NAMES",
    "FORMATS",
    "RUNTIMES",
    "TOLERANCE",
    "ExportResult",
    "ExportSpec",
    "ExportWrapper",
    "OnnxRuntimeRunner",
    "OpenVinoRunner",
    "Runner",
    "RunnerError",
    "TorchRunner",
    "Verification",
    "create_runner",
    "export_model",
    "random_inputs",
    "runtime_available",
]
