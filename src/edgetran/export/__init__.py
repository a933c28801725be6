"""Export to ONNX, OpenVINO IR, ``torch.export`` or a plug-in runtime's format, verified against
PyTorch; the runners of every runtime."""

from edgetran.export.exporters import (
    ExportResult,
    ExportSpec,
    ExportWrapper,
    export_formats,
    export_model,
    runtime_of_format,
)
from edgetran.export.runners import (
    OnnxRuntimeRunner,
    OpenVinoRunner,
    Runner,
    RunnerError,
    Runtime,
    TorchRunner,
    create_runner,
    get_runtime,
)
from edgetran.export.verify import TOLERANCE, Verification, random_inputs

__all__ = [
    "TOLERANCE",
    "ExportResult",
    "ExportSpec",
    "ExportWrapper",
    "OnnxRuntimeRunner",
    "OpenVinoRunner",
    "Runner",
    "RunnerError",
    "Runtime",
    "TorchRunner",
    "Verification",
    "create_runner",
    "export_formats",
    "export_model",
    "get_runtime",
    "random_inputs",
    "runtime_of_format",
]
