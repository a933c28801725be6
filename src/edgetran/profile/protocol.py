"""The ProTran measurement protocol, fixed.

For one architecture on one device and runtime:

1. build the model (seeded random weights: cost does not depend on them) and its runner
   (exported to a temporary ONNX/OpenVINO artifact when that runtime is asked for), pin the
   thread count (:func:`measurement_threads`), and prepare the inputs once;
2. measure idle power for ``idle_s`` with nothing running;
3. run ``warmup`` untimed inferences;
4. time repeats of inference only while the power sampler runs, until the 95% confidence
   interval of the median latency lies within ±``target_ci`` of the median (at least
   ``min_repeats``), or ``max_repeats`` / ``max_time_s`` is reached;
5. energy per batch = the window's mean power × the median latency (total), and the mean
   power above idle power × the median latency (dynamic): the energy of the run whose latency
   is reported; peak power = the largest sample in the window (at least the mean).

The reference timed whole processes (start-up and loading included), polled every 0.2–4 s,
never subtracted idle power and ran no warm-up.

:func:`profile_job` is the plain, serialisable entry point a remote worker runs.
"""

from __future__ import annotations

import os
import statistics
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from scipy.stats import binom

from edgetran.configs import JsonConfig
from edgetran.cores import choose_threads, requested_threads
from edgetran.errors import InvalidInputError
from edgetran.export import ExportSpec, ExportWrapper, export_model, random_inputs
from edgetran.export.runners import Runner, check_device, create_timed_runner, get_runtime
from edgetran.model import FlexiBertConfig, FlexiBertModel
from edgetran.plugins import list_runtimes
from edgetran.profile.contention import (
    Contention,
    ContentionError,
    ContentionMonitor,
    wait_until_quiet,
)
from edgetran.profile.environment import environment_snapshot, usable_cores
from edgetran.profile.meters import (
    DEFAULT_CORE_W,
    DEFAULT_IDLE_W,
    WORKER_METER_ENV,
    Meter,
    create_meter,
)
from edgetran.profile.sampler import DEFAULT_PERIOD_S, PowerSampler, mean_power_w, run_costs
from edgetran.seeding import torch_seeded
from edgetran.space import Architecture
from edgetran.store import Measurement


@dataclass(frozen=True)
class ProfileSettings(JsonConfig):
    """How to profile. Validated on construction; round-trips through :meth:`to_dict`.

    Attributes:
        device: ``cpu``, ``cuda:N`` (torch, onnxruntime) or ``CPU``/``GPU``/``NPU``/``AUTO``
            (openvino).
        runtime: ``torch``, ``onnxruntime``, ``openvino``, ``litert``, their int8 versions
            (``onnxruntime-int8`` …) or a runtime plug-in (``edgetran env``).
        batch_size, seq_len: input shape (default 1 × 128).
        threads: CPU threads, pinned and recorded (default: ``OMP_NUM_THREADS`` when set,
            else the usable cores other processes leave free when a measurement starts; see
            :func:`measurement_threads`).
        warmup: untimed runs before timing.
        min_repeats, max_repeats, max_time_s: bounds of the timed loop.
        target_ci: stop once the 95% CI of the median is within ± this share of it.
        idle_s: seconds of idle power measurement before the runs (0 to skip).
        sample_period_s: power sampling period (the meter may impose a longer one).
        meter: ``auto``, ``zeus``, ``estimate``, ``command:CMD`` or ``csv:PATH``.
        core_watts, idle_watts: parameters of the CPU-time estimate (``estimate`` meter).
        position_embedding_type, vocab_size: model configuration (reference defaults).
        seed: seed of the random weights and inputs.
        require_quiet: wait (up to ``quiet_wait_s``) until other processes leave the CPUs
            this run needs, before and, if the timed window was contended, after it; refuse
            (:class:`~edgetran.profile.contention.ContentionError`) if they do not.
        quiet_wait_s: the longest wait for a quiet machine.
    """

    config_error = InvalidInputError
    setting_name = "profile setting"

    device: str = "cpu"
    runtime: str = "torch"
    batch_size: int = 1
    seq_len: int = 128
    threads: int | None = None
    warmup: int = 3
    min_repeats: int = 10
    max_repeats: int = 200
    max_time_s: float = 30.0
    target_ci: float = 0.02
    idle_s: float = 1.0
    sample_period_s: float = DEFAULT_PERIOD_S
    meter: str = "auto"
    core_watts: float = DEFAULT_CORE_W
    idle_watts: float = DEFAULT_IDLE_W
    position_embedding_type: str = "relative_key"
    vocab_size: int = 50265
    seed: int = 0
    require_quiet: bool = False
    quiet_wait_s: float = 60.0

    def __post_init__(self) -> None:
        if self.runtime not in list_runtimes():
            raise InvalidInputError(
                f"runtime={self.runtime!r}; allowed: {', '.join(list_runtimes())}"
            )
        check_device(self.runtime, self.device)
        for name in ("batch_size", "seq_len", "min_repeats", "max_repeats", "vocab_size"):
            _check(name, getattr(self, name), positive=True)
        for name in (
            "warmup",
            "max_time_s",
            "idle_s",
            "sample_period_s",
            "target_ci",
            "core_watts",
            "idle_watts",
            "quiet_wait_s",
        ):
            _check(name, getattr(self, name), positive=False)
        if self.threads is not None:
            _check("threads", self.threads, positive=True)
        if not isinstance(self.require_quiet, bool):
            raise InvalidInputError(
                f"require_quiet={self.require_quiet!r} is invalid; allowed: true or false"
            )
        if self.min_repeats > self.max_repeats:
            raise InvalidInputError(
                f"min_repeats={self.min_repeats} exceeds max_repeats={self.max_repeats}"
            )

    @property
    def pinned_threads(self) -> int:
        """The device's thread count, contention is judged against: ``threads``, else
        ``OMP_NUM_THREADS``, else every usable core."""
        return self.threads or requested_threads() or usable_cores()


def measurement_threads(settings: ProfileSettings) -> tuple[int, str]:
    """``(threads, where they came from)`` of one measurement: ``threads`` or
    ``OMP_NUM_THREADS`` when given; under ``require_quiet`` every usable core (it waits for a
    quiet machine); else the cores other processes leave free now. A thread that shares its
    core with another process stalls every parallel region (BERT-Tiny read 156 ms beside a busy
    process, 1 ms alone), so fewer threads measure the model, and the measurement is flagged
    ``contended`` (it is not the device at its thread count)."""
    if settings.require_quiet and settings.threads is None and requested_threads() is None:
        return settings.pinned_threads, "usable cores"
    # a profile holds its host alone (the cluster's host rule): no worker's share applies
    return choose_threads(settings.threads, share=False)


def _check(name: str, value: Any, positive: bool) -> None:
    ok = isinstance(value, int | float) and not isinstance(value, bool)
    if not ok or value < 0 or (positive and value <= 0) or value != value:
        bound = "> 0" if positive else "≥ 0"
        raise InvalidInputError(f"{name}={value!r} is invalid; allowed: a number {bound}")


# -- statistics -------------------------------------------------------------------------------
def median_ci95(samples: list[float]) -> tuple[float, float]:
    """Distribution-free 95% confidence interval of the median (binomial order statistics)."""
    ordered = sorted(samples)
    n = len(ordered)
    j = max(1, int(binom.ppf(0.025, n, 0.5)))
    return ordered[j - 1], ordered[max(n - j, j - 1)]


def converged(samples: list[float], target: float) -> bool:
    """Whether the median's 95% interval lies within ±``target`` of the median."""
    median = statistics.median(samples)
    low, high = median_ci95(samples)
    return low >= (1 - target) * median and high <= (1 + target) * median


# -- the protocol ------------------------------------------------------------------------------
@dataclass
class RunnerProfile:
    """What :func:`profile_runner` measured."""

    latency_s: float
    latency_ci95_s: tuple[float, float]
    repeats: int
    window_s: float
    energy_j: float
    dynamic_energy_j: float
    idle_power_w: float
    peak_power_w: float
    power_samples: int
    power_period_s: float
    contention: Contention


def measure_idle_power_w(meter: Meter, seconds: float, period_s: float) -> float:
    """The mean power over ``seconds`` with nothing running."""
    sampler = PowerSampler(meter, period_s)
    sampler.start()
    time.sleep(seconds)
    return mean_power_w(sampler.stop())


def profile_runner(
    runner: Runner, prepared: Any, meter: Meter, settings: ProfileSettings
) -> RunnerProfile:
    """Steps 2–5 of the protocol on a ready runner and prepared inputs."""
    idle_w = (
        measure_idle_power_w(meter, settings.idle_s, settings.sample_period_s)
        if settings.idle_s > 0
        else 0.0
    )
    for _ in range(settings.warmup):
        runner.run(prepared)
    sampler = PowerSampler(meter, settings.sample_period_s)
    durations: list[float] = []
    sampler.start()
    monitor = ContentionMonitor().start()
    begin = time.perf_counter()
    while True:
        start = time.perf_counter()
        runner.run(prepared)
        durations.append(time.perf_counter() - start)
        n = len(durations)
        if n >= settings.min_repeats and converged(durations, settings.target_ci):
            break
        if n >= settings.max_repeats or time.perf_counter() - begin >= settings.max_time_s:
            break
    contention = monitor.stop()
    readings = sampler.stop()
    latency = statistics.median(durations)
    # Energy is the reported (median) run's: the window's mean power × the median latency. The
    # window's energy / repeats was the mean run's (gaps between runs included), and a few slow
    # runs lift the mean far above the median: one child read 37 W of energy / latency
    # against a 5.6 W peak. So energy / latency is the window's mean power, never above its peak.
    energy, dynamic, peak = run_costs(readings, latency, idle_w)
    return RunnerProfile(
        latency_s=latency,
        latency_ci95_s=median_ci95(durations),
        repeats=len(durations),
        window_s=sampler.end_s - sampler.start_s,
        energy_j=energy,
        dynamic_energy_j=dynamic,
        idle_power_w=idle_w,
        peak_power_w=peak,
        power_samples=len(readings),
        power_period_s=sampler.period_s,
        contention=contention,
    )


def build_runner(
    arch: Architecture, settings: ProfileSettings, workdir: Path, threads: int | None = None
) -> Runner:
    """The model with seeded random weights, in the requested runtime and device, pinned to
    ``threads`` (default: ``settings.pinned_threads``)."""
    config = FlexiBertConfig(
        arch,
        vocab_size=settings.vocab_size,
        position_embedding_type=settings.position_embedding_type,
    )
    config.check_seq_len(settings.seq_len)
    with torch_seeded(settings.seed):
        model = FlexiBertModel(config).eval()
    runner, _ = model_runner(
        model,
        settings.runtime,
        settings.device,
        workdir,
        threads=threads or settings.pinned_threads,
        batch_size=settings.batch_size,
        seq_len=settings.seq_len,
        seed=settings.seed,
    )
    return runner


def model_runner(
    model: torch.nn.Module,
    runtime: str,
    device: str | None,
    workdir: Path,
    *,
    threads: int | None,
    batch_size: int,
    seq_len: int,
    seed: int = 0,
) -> tuple[Runner, Path | None]:
    """``(runner, artifact)``: ``model`` in ``runtime`` on ``device``, as profiling times it.

    A runtime that runs the module itself (``runs_module``: torch) gets it as it is (artifact
    ``None``); any other is exported into ``workdir`` first (an int8 runtime: its quantised
    artifact). The runner is pinned to ``threads`` and has the runtime's ``measure_options``
    (:func:`~edgetran.export.runners.create_timed_runner`).
    """
    if get_runtime(runtime).runs_module:
        return create_timed_runner(runtime, ExportWrapper(model), device, threads), None
    spec = ExportSpec.for_runtime(runtime, batch_size=batch_size, seq_len=seq_len)
    artifact = export_model(model, workdir, spec, seed=seed).artifact
    return create_timed_runner(runtime, artifact, device, threads), artifact


def _profile_quietly(
    runner: Runner, prepared: Any, meter: Meter, settings: ProfileSettings
) -> RunnerProfile:
    """:func:`profile_runner`; under ``require_quiet``, after waiting for a quiet machine, and
    once more if other processes still crowded the timed window."""
    if not settings.require_quiet:
        return profile_runner(runner, prepared, meter, settings)
    threads = settings.pinned_threads
    for _ in range(2):
        wait_until_quiet(threads, settings.quiet_wait_s)
        result = profile_runner(runner, prepared, meter, settings)
        if not result.contention.contended(threads):
            return result
    raise ContentionError(
        f"other processes used {result.contention.other_cpu_cores:.2f} CPU cores during two "
        f"timed windows beside {threads} thread(s); profile when the machine is quiet"
    )


@contextmanager
def torch_threads_kept() -> Iterator[None]:
    """Restore torch's thread count afterwards: the torch runner pins it (a process-wide
    setting), and training later in the same process must not inherit a profile's pinning."""
    threads = torch.get_num_threads()
    try:
        yield
    finally:
        torch.set_num_threads(threads)


def profile_architecture(
    arch: Architecture, settings: ProfileSettings, meter: Meter | None = None
) -> Measurement:
    """Profile one architecture; returns a :class:`~edgetran.store.Measurement`."""
    meter = meter or create_meter(
        settings.meter, settings.device, per_core_w=settings.core_watts, idle_w=settings.idle_watts
    )
    threads, chosen_from = measurement_threads(settings)
    with tempfile.TemporaryDirectory(prefix="edgetran-profile-") as tmp, torch_threads_kept():
        runner = build_runner(arch, settings, Path(tmp), threads)
        ids, mask = random_inputs(
            settings.batch_size, settings.seq_len, settings.vocab_size, settings.seed
        )
        mask = np.ones_like(mask)  # cost is measured on full sequences
        result = _profile_quietly(runner, runner.prepare(ids, mask), meter, settings)
        device = runner.device
    batch = settings.batch_size
    return Measurement(
        hash=arch.hash,
        model_dict=arch.to_model_dict(),
        device=settings.device,
        runtime=settings.runtime,
        batch_size=batch,
        seq_len=settings.seq_len,
        latency_s=result.latency_s,
        latency_s_per_seq=result.latency_s / batch,
        latency_ci95_s=list(result.latency_ci95_s),
        energy_j=result.energy_j,
        energy_j_per_seq=result.energy_j / batch,
        dynamic_energy_j=result.dynamic_energy_j,
        idle_power_w=result.idle_power_w,
        peak_power_w=result.peak_power_w,
        power_samples=result.power_samples,
        power_period_s=result.power_period_s,
        meter=meter.name,
        meter_kind=meter.kind,
        threads=threads,
        repeats=result.repeats,
        warmup=settings.warmup,
        source="profiler",
        other_cpu_cores=result.contention.other_cpu_cores,
        contended=result.contention.contended(settings.pinned_threads)
        or threads < settings.pinned_threads,
        environment=environment_snapshot(device, settings.runtime, meter.describe())
        | {
            "window_cpu_mhz": result.contention.cpu_mhz,
            "window_temperature_c": result.contention.temperature_c,
        },
        extra={
            "settings": settings.to_dict(),
            "window_s": result.window_s,
            "runner_device": device,
            "threads_from": chosen_from,
        },
    )


def worker_settings(settings: dict[str, Any]) -> ProfileSettings:
    """A job's settings on this worker: ``meter="auto"`` becomes the worker's own meter."""
    if settings.get("meter", "auto") == "auto" and os.environ.get(WORKER_METER_ENV):
        settings = {**settings, "meter": os.environ[WORKER_METER_ENV]}
    return ProfileSettings.from_dict(settings)


def profile_job(model_dict: dict[str, Any], settings: dict[str, Any]) -> dict[str, Any]:
    """Plain, serialisable job: (architecture dict, settings dict) → measurement dict.

    This is what a remote worker (e.g. a Dask worker on a device node) runs.
    """
    return profile_architecture(
        Architecture.from_dict(model_dict), worker_settings(settings)
    ).to_dict()
