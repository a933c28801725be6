"""Power and energy meters.

A :class:`Meter` returns timestamped :class:`Reading` s: a cumulative energy counter (NVML,
RAPL, Jetson/Apple SoC through ``zeus``), an instantaneous power (NVML, an external command), or
both. The :class:`~edgetran.profile.sampler.PowerSampler` polls a live meter in a background
thread; an offline meter (a CSV logged by a USB/INA219 meter) is read afterwards and aligned by
timestamp.

Every meter says whether it measures or estimates (:attr:`Meter.estimated`). Where no sensor
exists (this CI machine: a VM without RAPL) :class:`CpuTimeEstimateMeter` models CPU power as
``idle_w + per_core_w × busy cores`` from the process's CPU time — an estimate, recorded as one.

Vendor libraries are imported inside the meters and every failure becomes "not available":
``zeus`` pulls ``amdsmi``, whose module raises on import where the AMD library is absent.

The meters are registered in :data:`edgetran.plugins.METERS`; a meter plug-in (entry point
group ``edgetran.meters``) is chosen with ``--meter NAME`` or ``--meter NAME:ARG``, and
``edgetran env`` says which meters work here.
"""

from __future__ import annotations

import abc
import csv
import os
import shlex
import subprocess
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from edgetran.errors import EdgeTranError, InvalidInputError
from edgetran.plugins import METERS, list_meters

#: Documented defaults of the CPU-time estimate (watts); override with ``--cpu-core-watts``.
DEFAULT_CORE_W = 5.0
DEFAULT_IDLE_W = 0.0


class MeterError(EdgeTranError):
    """A meter cannot be created or read."""


@dataclass(frozen=True)
class Reading:
    """One reading: wall-clock ``time_s`` (``time.time()``), and the meter's quantities."""

    time_s: float
    power_w: float | None = None
    energy_j: float | None = None  # cumulative counter; only differences are meaningful


class Meter(abc.ABC):
    """A source of power readings for one device.

    Contract:
        - :meth:`read` is cheap enough to call every :attr:`min_period_s` from a thread;
        - readings carry ``power_w`` or ``energy_j`` (or both), never neither;
        - :attr:`estimated` is ``True`` when values come from a model rather than a sensor;
        - offline meters (:attr:`live` ``False``) return the readings of a time window through
          :meth:`recorded` instead.
    """

    name: str = "meter"
    estimated: bool = False
    live: bool = True
    min_period_s: float = 0.05

    @abc.abstractmethod
    def read(self) -> Reading:
        """A reading now."""

    def recorded(self, start_s: float, end_s: float) -> list[Reading]:
        """Readings between two wall-clock times (offline meters only)."""
        raise MeterError(f"{self.name} is a live meter; it has no recording to read")

    @property
    def kind(self) -> str:
        """``estimated`` or ``measured``."""
        return "estimated" if self.estimated else "measured"

    def describe(self) -> dict[str, Any]:
        """The meter's name, kind, liveness and minimum sampling period."""
        return {
            "name": self.name,
            "kind": self.kind,
            "live": self.live,
            "min_period_s": self.min_period_s,
        }


class FunctionMeter(Meter):
    """Power given by a function of wall-clock time; for tests and simulated devices."""

    def __init__(
        self, power_w: Callable[[float], float], name: str = "function", estimated: bool = False
    ) -> None:
        self.power_w, self.name, self.estimated = power_w, name, estimated
        self.min_period_s = 0.001

    def read(self) -> Reading:
        """The function's power now."""
        now = time.time()
        return Reading(now, power_w=float(self.power_w(now)))


class CpuTimeEstimateMeter(Meter):
    """Estimated CPU power: ``idle_w + per_core_w × (Δ process CPU time / Δ wall time)``.

    The estimate counts the CPU time of this process (all its threads), which is where the
    model runs; it is an estimate, recorded as such, never a measurement.
    """

    estimated = True

    def __init__(self, per_core_w: float = DEFAULT_CORE_W, idle_w: float = DEFAULT_IDLE_W) -> None:
        if per_core_w < 0 or idle_w < 0:
            raise MeterError("per-core and idle watts must be ≥ 0")
        self.per_core_w, self.idle_w = per_core_w, idle_w
        try:
            self.cores = len(os.sched_getaffinity(0))
        except AttributeError:
            self.cores = os.cpu_count() or 1
        self.name = f"estimate:cpu-time({per_core_w:g} W/core + {idle_w:g} W)"
        self._last: tuple[float, float] | None = None

    def read(self) -> Reading:
        """The estimated power since the previous reading."""
        now, cpu = time.time(), time.process_time()
        last, self._last = self._last, (now, cpu)
        if last is None or now <= last[0]:
            busy = 0.0
        else:
            # The two clocks are read one after the other, so a descheduled sampler thread can
            # see more CPU than wall time; no process can keep more cores busy than it has.
            busy = min(float(self.cores), max(0.0, (cpu - last[1]) / (now - last[0])))
        return Reading(now, power_w=self.idle_w + self.per_core_w * busy)


class CommandMeter(Meter):
    """An external command that prints the current power in watts (first number on stdout)."""

    def __init__(self, command: str, min_period_s: float = 0.2) -> None:
        self.command = shlex.split(command)
        if not self.command:
            raise MeterError("the power command is empty")
        self.name = f"command:{command}"
        self.min_period_s = min_period_s

    def read(self) -> Reading:
        """The power the command prints now."""
        try:
            out = subprocess.run(
                self.command, capture_output=True, text=True, timeout=10, check=True
            ).stdout
            return Reading(time.time(), power_w=float(out.split()[0]))
        except (OSError, subprocess.SubprocessError, ValueError, IndexError) as err:
            raise MeterError(f"power command {self.command[0]!r} gave no watts ({err})") from None


class CsvMeter(Meter):
    """A CSV of ``timestamp,watts`` rows logged by an external meter (USB power meter, INA219).

    Timestamps are Unix seconds on the same clock as this machine (synchronise clocks with NTP);
    the run's window is cut from the file after the run.
    """

    live = False

    def __init__(self, path: str | Path, time_offset_s: float = 0.0) -> None:
        self.path = Path(path)
        self.offset = time_offset_s
        self.name = f"csv:{self.path.name}"

    def read(self) -> Reading:
        """Refused: a CSV meter is read after the run (:meth:`recorded`)."""
        raise MeterError(f"{self.name} is read after the run, not live")

    def recorded(self, start_s: float, end_s: float) -> list[Reading]:
        """The file's readings between two wall-clock times."""
        readings = [r for r in self._load() if start_s <= r.time_s <= end_s]
        if not readings:
            raise MeterError(f"{self.path}: no samples between {start_s:.3f} and {end_s:.3f}")
        return readings

    def _load(self) -> list[Reading]:
        try:
            rows = list(csv.reader(self.path.read_text().splitlines()))
        except OSError as err:
            raise MeterError(f"{self.path}: cannot read ({err.strerror})") from None
        readings = []
        for number, row in enumerate(rows, start=1):
            if not row or row[0].strip().lower() in ("timestamp", "time", "time_s"):
                continue
            try:
                stamp, watts = float(row[0]) + self.offset, float(row[1])
            except (ValueError, IndexError):
                raise InvalidInputError(
                    f"{self.path}, line {number}: expected 'timestamp,watts', got {row!r}"
                ) from None
            readings.append(Reading(stamp, power_w=watts))
        return sorted(readings, key=lambda r: r.time_s)


# -- zeus-backed meters (NVML, RAPL, SoC) -------------------------------------------------------
def _zeus(module: str) -> Any:
    """Import a zeus module; any failure (zeus or a vendor library missing) means unavailable."""
    import importlib

    try:
        return importlib.import_module(module)
    except Exception as err:  # amdsmi and friends raise arbitrary errors on import
        raise MeterError(f"zeus is unavailable ({type(err).__name__}: {err})") from None


class ZeusGpuMeter(Meter):
    """An NVIDIA (NVML) or AMD GPU through zeus: energy counter and instantaneous power."""

    def __init__(self, index: int | str = 0) -> None:
        try:
            index = int(index)
        except ValueError:
            raise MeterError(f"GPU index {index!r} is invalid; allowed: 0, 1, …") from None
        try:
            self.gpus = _zeus("zeus.device").get_gpus()
            if index >= len(self.gpus):
                raise MeterError(f"GPU {index} not found ({len(self.gpus)} GPUs)")
            self.counter = self.gpus.supports_get_total_energy_consumption(index)
        except MeterError:
            raise
        except Exception as err:
            raise MeterError(f"no GPU meter ({type(err).__name__}: {err})") from None
        self.index = index
        self.name = f"zeus:gpu{index}"

    def read(self) -> Reading:
        """The GPU's power now (and its energy counter where it has one)."""
        now = time.time()
        power = self.gpus.get_instant_power_usage(self.index) / 1e3
        energy = self.gpus.get_total_energy_consumption(self.index) / 1e3 if self.counter else None
        return Reading(now, power_w=power, energy_j=energy)


class ZeusCpuMeter(Meter):
    """Intel/AMD package (+ DRAM when available) energy through RAPL, via zeus."""

    def __init__(self) -> None:
        try:
            self.cpus = _zeus("zeus.device").get_cpus()
            self.count = len(self.cpus)
            if self.count == 0:
                raise MeterError("no RAPL package found")
        except MeterError:
            raise
        except Exception as err:
            raise MeterError(f"no CPU meter ({type(err).__name__}: {err})") from None
        self.name = "zeus:rapl"

    def read(self) -> Reading:
        """The packages' (and DRAM's) energy counter now."""
        total_mj = 0.0
        for i in range(self.count):
            m = self.cpus.get_total_energy_consumption(i)
            total_mj += m.cpu_mj + (m.dram_mj or 0.0)
        return Reading(time.time(), energy_j=total_mj / 1e3)


#: zeus's SoC readings by platform: the module, its availability check, and the class
#: ``get_soc()`` returns there. Imported one by one, so a zeus without one falls back.
SOC_PLATFORMS = {
    "jetson": ("zeus.device.soc.jetson", "jetson_is_available", "Jetson"),
    "apple": ("zeus.device.soc.apple", "apple_silicon_is_available", "AppleSilicon"),
}


def _require_soc(platform: str) -> str:
    """The class name zeus's SoC reading has on ``platform``; :class:`MeterError` says why
    there is none here (unknown platform, a zeus without that reading, another machine)."""
    if platform not in SOC_PLATFORMS:
        raise MeterError(f"SoC {platform!r} is unknown; allowed: {', '.join(SOC_PLATFORMS)}")
    module_name, check_name, class_name = SOC_PLATFORMS[platform]
    try:
        module = _zeus(module_name)
        is_available = getattr(module, check_name)
    except (MeterError, AttributeError) as err:
        raise MeterError(f"this zeus has no {class_name} reading ({err})") from None
    if is_available():
        return class_name
    # On a Mac, zeus finds no Apple silicon when its optional reader is missing: say so.
    if sys.platform == "darwin" and not getattr(module, "zeus_apple_available", True):
        raise MeterError("zeus-apple-silicon is not installed: pip install 'zeus[apple]'")
    raise MeterError(f"no {class_name} here ({module_name}.{check_name}() is False)")


class ZeusSocMeter(Meter):
    """Apple Silicon (``zeus[apple]``) or NVIDIA Jetson on-board sensors, via zeus.

    ``platform`` (``soc:jetson``, ``soc:apple``) takes that SoC's reading or fails saying why;
    without it, whichever SoC zeus finds.
    """

    #: Fields summed when the SoC reports no total; chosen not to double-count sub-rails
    #: (Apple: the CPU total, not its cores; Jetson: its CPU and GPU rails).
    PARTS = (
        "cpu_total_mj",
        "gpu_mj",
        "gpu_sram_mj",
        "dram_mj",
        "ane_mj",
        "cpu_energy_mj",
        "gpu_energy_mj",
    )

    def __init__(self, platform: str | None = None) -> None:
        expected = _require_soc(platform) if platform else None
        try:
            self.soc = _zeus("zeus.device").get_soc()
            self.soc.get_total_energy_consumption()
        except Exception as err:
            raise MeterError(f"no SoC meter ({type(err).__name__}: {err})") from None
        found = type(self.soc).__name__
        if expected and found != expected:
            raise MeterError(f"zeus's SoC reading here is {found}, not {expected}")
        self.name = f"zeus:soc:{found}"

    def read(self) -> Reading:
        """The SoC's energy counter now."""
        m = self.soc.get_total_energy_consumption()
        total = getattr(m, "total_energy_mj", None)
        if total is None:
            total = sum(getattr(m, part, None) or 0.0 for part in self.PARTS)
        return Reading(time.time(), energy_j=total / 1e3)


#: Set by ``edgetran worker --meter M`` in its process: the meter of that device node, used by
#: the jobs it runs whose settings leave the meter to ``auto`` (the client cannot know it).
WORKER_METER_ENV = "EDGETRAN_WORKER_METER"


def create_meter(
    spec: str = "auto",
    device: str = "cpu",
    *,
    per_core_w: float = DEFAULT_CORE_W,
    idle_w: float = DEFAULT_IDLE_W,
) -> Meter:
    """A meter from a CLI spec: ``auto``, ``zeus``, or a registered meter ``NAME[:ARG]``.

    ``auto`` takes the device's real sensor (:func:`auto_sensors`: the Jetson SoC then NVML for
    ``cuda:N``, the Apple SoC for ``mps``, RAPL then any SoC otherwise) and falls back to the
    CPU-time estimate; ``zeus`` is the same without the fallback. ``NAME:ARG`` calls the meter
    plug-in ``NAME`` with ``ARG`` (``command:CMD``, ``csv:PATH``, ``gpu:INDEX``,
    ``soc:jetson``); the ``estimate`` meter takes the given watts.
    """
    name, colon, arg = spec.partition(":")
    if name == "estimate":
        return CpuTimeEstimateMeter(per_core_w, idle_w)
    if name not in ("auto", "zeus"):
        if name not in list_meters():
            raise MeterError(
                f"meter {spec!r} is unknown; allowed: auto, zeus, {', '.join(list_meters())}"
                " (NAME:ARG passes ARG)"
            )
        return METERS.create(name, *([arg] if colon else []))
    meter, passed_over = _first_sensor(device)
    if meter is not None:
        return meter
    if name == "zeus":
        raise MeterError(f"no zeus meter for {device}: {'; '.join(passed_over)}")
    return CpuTimeEstimateMeter(per_core_w, idle_w)


def auto_sensors(device: str) -> list[tuple[str, ...]]:
    """The meters ``auto`` tries for ``device``, in order, as ``(NAME, *ARGS)``.

    A Jetson's GPU draws from the SoC's rails and has no NVML energy reading, so ``cuda``
    tries the Jetson reading first (it fails at once elsewhere); ``mps`` is Apple silicon's
    GPU, read through the SoC. Other devices (the CPU, ``xpu``, OpenVINO's) get the CPU's
    sensors: RAPL, else whichever SoC zeus finds.
    """
    kind, _, index = device.partition(":")
    if kind == "cuda":
        return [("soc", "jetson"), ("gpu", index or "0")]
    if kind == "mps":
        return [("soc", "apple")]
    return [("rapl",), ("soc",)]


def _first_sensor(device: str) -> tuple[Meter | None, list[str]]:
    """The first of :func:`auto_sensors` that works here, and why each before it did not."""
    passed_over = []
    for sensor in auto_sensors(device):
        try:
            return METERS.create(*sensor), passed_over
        except MeterError as err:
            passed_over.append(f"{':'.join(sensor)}: {err}")
    return None, passed_over


def explain_auto_meter(
    device: str, *, per_core_w: float = DEFAULT_CORE_W, idle_w: float = DEFAULT_IDLE_W
) -> dict[str, Any]:
    """Which meter ``auto`` gives ``device`` here and why (for ``edgetran env``): ``meter``,
    ``kind``, ``tried`` (the order) and ``why`` (each sensor passed over, with its reason)."""
    meter, passed_over = _first_sensor(device)
    tried = [":".join(sensor) for sensor in auto_sensors(device)] + ["estimate"]
    if meter is None:
        meter = CpuTimeEstimateMeter(per_core_w, idle_w)
        why = "no sensor: " + "; ".join(passed_over)
    elif passed_over:
        why = f"{tried[len(passed_over)]}, after " + "; ".join(passed_over)
    else:
        why = f"{tried[0]}, the first choice for {device}"
    return {"device": device, "meter": meter.name, "kind": meter.kind, "tried": tried, "why": why}
