"""What this machine has: devices, runtimes and every plug-in; and the snapshot stored with a
profile."""

from __future__ import annotations

import os
import platform
from functools import cache
from pathlib import Path
from typing import Any

import torch

import edgetran
from edgetran._versions import package_version
from edgetran.cores import usable_cores
from edgetran.plugins import RUNTIMES, describe_all
from edgetran.profile.meters import explain_auto_meter

PACKAGES = (
    "torch",
    "transformers",
    "onnxruntime",
    "openvino",
    "ai-edge-litert",
    # the quantisers of the int8 runtimes (ONNX Runtime's ships with it)
    "nncf",
    "ai-edge-quantizer",
    "zeus",
    "edgetran",
)
#: The device kinds ``edgetran env`` names a meter for, present here or not: where a job on that
#: kind would be measured from, as ``--meter auto`` chooses.
METERED_DEVICE_KINDS = ("cpu", "cuda", "mps", "xpu")


@cache
def cpu_model() -> str:
    """The CPU's model name (``/proc/cpuinfo``, else what ``platform`` says)."""
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def environment_snapshot(device: str, runtime: str, meter: dict[str, Any]) -> dict[str, Any]:
    """The facts that make a measurement interpretable, stored beside it."""
    snapshot: dict[str, Any] = {
        "device": device,
        "runtime": runtime,
        "cpu_model": cpu_model(),
        "cpu_cores": os.cpu_count(),
        "usable_cores": usable_cores(),
        "platform": platform.platform(),
        "python": platform.python_version(),
        "versions": {p: package_version(p) for p in PACKAGES} | {"edgetran": edgetran.__version__},
        "meter": meter,
    }
    if device.startswith("cuda") and torch.cuda.is_available():
        snapshot["gpu_name"] = torch.cuda.get_device_name(torch.device(device))
    return snapshot


def discover() -> dict[str, Any]:
    """Devices, the meter ``auto`` gives each device kind here and why, runtime versions, and
    every registered plug-in with whether it is usable here and why not (for ``edgetran env``)."""
    devices: list[dict[str, Any]] = [
        {"name": "cpu", "model": cpu_model(), "cores": usable_cores()}
    ]
    if torch.cuda.is_available():
        devices += [
            {"name": f"cuda:{i}", "model": torch.cuda.get_device_name(i)}
            for i in range(torch.cuda.device_count())
        ]
    if torch.backends.mps.is_available():
        devices.append({"name": "mps", "model": "Apple silicon GPU"})
    if hasattr(torch, "xpu") and torch.xpu.is_available():
        devices += [
            {"name": f"xpu:{i}", "model": torch.xpu.get_device_name(i)}
            for i in range(torch.xpu.device_count())
        ]
    runtimes: list[dict[str, Any]] = [
        {"name": "torch", "version": torch.__version__, "devices": [d["name"] for d in devices]}
    ]
    if not RUNTIMES.why_not("onnxruntime"):
        import onnxruntime

        runtimes.append(
            {
                "name": "onnxruntime",
                "version": onnxruntime.__version__,
                "providers": onnxruntime.get_available_providers(),
            }
        )
    if not RUNTIMES.why_not("openvino"):
        try:
            import openvino

            runtimes.append(
                {
                    "name": "openvino",
                    "version": openvino.__version__,
                    "devices": openvino.Core().available_devices,
                }
            )
        except Exception as err:  # a broken plugin must not hide the other runtimes
            runtimes.append({"name": "openvino", "error": str(err)})
    if not RUNTIMES.why_not("litert"):
        runtimes.append(
            {"name": "litert", "version": package_version("ai-edge-litert"), "devices": ["cpu"]}
        )
    plugins = {family: [row.to_dict() for row in rows] for family, rows in describe_all().items()}
    meters = [explain_auto_meter(kind) for kind in METERED_DEVICE_KINDS]
    return {"devices": devices, "meters": meters, "runtimes": runtimes, "plugins": plugins}
