"""The measurement of the winner's exported artifact on its live device."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np


def measure_artifact(artifact: Path, settings, meter) -> dict[str, Any]:
    """The ProTran protocol on the exported artifact itself, in its runtime (measured, per
    sequence; energy and peak power flagged by the meter's kind)."""
    from edgetran.profile.protocol import torch_threads_kept

    with torch_threads_kept():
        return _measure(artifact, settings, meter)


def measure_artifact_job(artifact: str, settings: dict[str, Any]) -> dict[str, Any]:
    """:func:`measure_artifact` as a serialisable job for a lab node's device worker: the
    artifact's path must be readable there (a shared folder), and the node builds its own
    meter from the settings."""
    from edgetran.profile import create_meter
    from edgetran.profile.protocol import worker_settings

    profile = worker_settings(settings)
    meter = create_meter(
        profile.meter, profile.device, per_core_w=profile.core_watts, idle_w=profile.idle_watts
    )
    return measure_artifact(Path(artifact), profile, meter)


def _measure(artifact: Path, settings, meter) -> dict[str, Any]:
    from edgetran.export import create_runner, random_inputs
    from edgetran.profile.protocol import profile_runner

    metadata = json.loads((artifact.parent / "metadata.json").read_text())
    options: dict[str, Any] = {"threads": settings.pinned_threads}
    if settings.runtime == "torch":  # threads are torch's global setting, as the profiler pins
        import torch

        torch.set_num_threads(options.pop("threads"))
    if settings.runtime == "openvino":
        options["precision"] = "f32"
    runner = create_runner(settings.runtime, artifact, settings.device, **options)
    ids, mask = random_inputs(
        settings.batch_size, settings.seq_len, metadata["config"]["vocab_size"], settings.seed
    )
    result = profile_runner(runner, runner.prepare(ids, np.ones_like(mask)), meter, settings)
    batch = settings.batch_size
    return {
        "artifact": str(artifact),
        "runtime": settings.runtime,
        "device": runner.device,
        "batch_size": batch,
        "seq_len": settings.seq_len,
        "latency_s": result.latency_s / batch,
        "latency_ci95_s": [v / batch for v in result.latency_ci95_s],
        "energy_j": result.energy_j / batch,
        "peak_power_w": result.peak_power_w,
        "repeats": result.repeats,
        "meter": meter.name,
        "meter_kind": meter.kind,
    }
