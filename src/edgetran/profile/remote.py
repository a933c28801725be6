"""Profiling on a lab's device worker: :func:`remote_profiler` stands in for
:func:`~edgetran.profile.protocol.profile_architecture` and sends each measurement to the
worker that hosts the device (``edgetran worker --device NODE``), through a cluster such as
:class:`edgetran.cluster.Cluster`. The worker builds its own meter from the settings (``auto``
finds the node's sensor); the measurement comes back to the client, which stores it.

A node's measurements are stored under the node's name as their hardware (``rpi4``, with the
runtime and input shape as usual), so several boards that all call their processor ``cpu``
stay apart; ``settings.device`` is the runner's device on the node (``cpu``, ``cuda:0``).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import replace
from typing import Any, Protocol

from edgetran.profile.meters import Meter
from edgetran.profile.protocol import ProfileSettings, profile_job
from edgetran.space import Architecture
from edgetran.store import Measurement

#: ``(arch, settings, meter) → Measurement``, as :func:`profile_architecture`.
Profiler = Callable[[Architecture, ProfileSettings, Meter | None], Measurement]


class ProfilingCluster(Protocol):
    """What profiling needs of a cluster (:class:`edgetran.cluster.Cluster` is one)."""

    def run_profile(self, device: str, fn, /, *args: Any, **kwargs: Any) -> Any:
        """Run ``fn(*args, **kwargs)`` on a worker offering ``device``; its result."""

    def offered_devices(self) -> dict[str, list[str]]:
        """The devices each worker offers, by worker."""


def worker_for(cluster: ProfilingCluster, node: str, runtime: str) -> str:
    """The device a profile on ``node`` under ``runtime`` is routed to: ``NODE/RUNTIME`` (what
    ``edgetran worker --device NODE --runtime RUNTIME`` offers), or ``NODE`` when only a worker
    without a runtime offers it."""
    named = f"{node}/{runtime}"
    offered = cluster.offered_devices()
    return node if named not in offered and node in offered else named


def remote_profiler(cluster: ProfilingCluster, node: str) -> Profiler:
    """A profiler that measures on ``node``'s device worker (one job at a time there, alone
    on its host) and returns the measurement under ``node``'s name."""

    def profile(
        arch: Architecture, settings: ProfileSettings, meter: Meter | None = None
    ) -> Measurement:
        data = cluster.run_profile(
            worker_for(cluster, node, settings.runtime),
            profile_job,
            arch.to_model_dict(),
            settings.to_dict(),
        )
        measurement = Measurement.from_dict(data)
        return measurement if measurement.device == node else replace(measurement, device=node)

    return profile
