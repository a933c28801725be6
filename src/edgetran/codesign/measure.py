"""The measurement of the winner's exported artifact on its live device."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np


def measure_artifact(artifact: Path, settings, meter) -> dict[str, Any]:
    """The ProTran protocol on the exported artifact itself, in its runtime (measured, per
    sequence; energy and peak power flagged by the meter's kind).

    A window that other processes crowded (``contended``) is measured once more, and the
    quieter of the two is kept: ``remeasured`` then holds both and which was kept."""
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
    metadata = json.loads((artifact.parent / "metadata.json").read_text())
    result, threads, device = _timed_window(artifact, settings, meter, metadata)
    remeasured = None
    if _contended(result, threads, settings):
        # the winner's number is the run's headline: a crowded window measured the crowd too
        # (303 ms where a quiet one gave 1.7 ms), so it gets a second window, its threads
        # chosen again from the cores free then
        first = (result, threads)
        second = _timed_window(artifact, settings, meter, metadata)[:2]
        kept = min(second, first, key=lambda window: _crowding(*window, settings))
        result, threads = kept
        remeasured = {
            "first": _window(*first, settings),
            "second": _window(*second, settings),
            "kept": "second" if kept is second else "first",
        }
    batch = settings.batch_size
    measured = {
        "artifact": str(artifact),
        "runtime": settings.runtime,
        "device": device,
        "batch_size": batch,
        "seq_len": settings.seq_len,
        "latency_s": result.latency_s / batch,
        "latency_ci95_s": [v / batch for v in result.latency_ci95_s],
        "energy_j": result.energy_j / batch,
        "peak_power_w": result.peak_power_w,
        "repeats": result.repeats,
        "meter": meter.name,
        "meter_kind": meter.kind,
        "threads": threads,
        "contended": _contended(result, threads, settings),
        "other_cpu_cores": result.contention.other_cpu_cores,
    }
    return measured if remeasured is None else {**measured, "remeasured": remeasured}


def _timed_window(artifact: Path, settings, meter, metadata: dict[str, Any]):
    """``(profile, threads, runner device)``: the artifact's runner, pinned to the threads
    free now (:func:`~edgetran.profile.protocol.measurement_threads`), timed once."""
    from edgetran.export import create_timed_runner, random_inputs
    from edgetran.profile.protocol import measurement_threads, profile_runner

    threads = measurement_threads(settings)[0]
    runner = create_timed_runner(settings.runtime, artifact, settings.device, threads)
    ids, mask = random_inputs(
        settings.batch_size, settings.seq_len, metadata["config"]["vocab_size"], settings.seed
    )
    prepared = runner.prepare(ids, np.ones_like(mask))
    return profile_runner(runner, prepared, meter, settings), threads, runner.device


def _contended(result, threads: int, settings) -> bool:
    """Crowded, or given fewer threads than the device has because the cores were."""
    nominal = settings.pinned_threads
    return result.contention.contended(nominal) or threads < nominal


def _crowding(result, threads: int, settings) -> tuple[bool, float]:
    """Order of preference between two windows: quiet first, then the less crowded."""
    return _contended(result, threads, settings), result.contention.other_cpu_cores or 0.0


def _window(result, threads: int, settings) -> dict[str, Any]:
    """What one timed window of the final measurement gave, per sequence."""
    return {
        "latency_s": result.latency_s / settings.batch_size,
        "threads": threads,
        "contended": _contended(result, threads, settings),
        "other_cpu_cores": result.contention.other_cpu_cores,
    }


def contention_note(measurement: dict[str, Any]) -> str | None:
    """A line on a final measurement that other processes crowded (``None`` if none did)."""
    again = measurement.get("remeasured")
    if again is None and not measurement.get("contended"):
        return None
    where = f"{measurement['latency_s'] * 1e3:.3f} ms/seq"
    if again is None:
        return f"the final measurement ({where}) was contended: other processes crowded the cores"
    first, second = again["first"], again["second"]
    state = "still contended" if measurement["contended"] else "quiet"
    return (
        f"the final measurement was contended ({first['latency_s'] * 1e3:.3f} ms/seq); "
        f"measured again ({second['latency_s'] * 1e3:.3f} ms/seq): kept the {again['kept']} "
        f"window ({where}, {state})"
    )
