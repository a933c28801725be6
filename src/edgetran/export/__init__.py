"""Export to ONNX, OpenVINO IR, ``torch.export``, LiteRT or a plug-in runtime's format (and
dynamic int8 for the int8 runtimes), verified against PyTorch; the runners of every runtime.

Third stage of the data flow, after ``model``: profiling runs the artifacts made here.
"""

import lazy_loader

# Names load with their submodule on first use (lazy_loader), so that importing a light
# part of the package, or the CLI, does not import torch and friends.
__getattr__, __dir__, __all__ = lazy_loader.attach(
    __name__,
    submod_attrs={
        "exporters": [
            "DYNAMIC_INT8",
            "ExportResult",
            "ExportSpec",
            "ExportWrapper",
            "export_formats",
            "export_model",
            "runtime_of_format",
            "runtime_of_spec",
        ],
        "runners": [
            "LiteRtInt8Runner",
            "LiteRtRunner",
            "OnnxRuntimeInt8Runner",
            "OnnxRuntimeRunner",
            "OpenVinoInt8Runner",
            "OpenVinoRunner",
            "Runner",
            "RunnerError",
            "Runtime",
            "TorchRunner",
            "check_device",
            "create_runner",
            "create_timed_runner",
            "get_runtime",
            "require_runtime",
        ],
        "verify": [
            "LABEL_AGREEMENT",
            "TOLERANCE",
            "LabelAgreement",
            "LabelAgreementError",
            "Verification",
            "random_inputs",
            "verify_labels",
        ],
    },
)
