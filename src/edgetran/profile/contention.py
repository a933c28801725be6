"""Whether a measurement shared the CPUs with other processes.

A timing taken while another job keeps the cores busy measures the contention, not the model:
a package installation running beside ``edgetran profile`` made 2-thread forwards 10–15× slower,
and the confidence-interval stopping rule accepted them, because a steadily slow loop is still
a tight one. So the profiler samples, over the timed window, how much CPU time the *other*
processes used on the CPUs this process may run on:

    other_cpu_cores = (busy time of those CPUs − this process's CPU time) / window wall time

from ``/proc/stat`` (per CPU, Linux; ``None`` elsewhere) and ``time.process_time`` (every thread
of this process), as :class:`edgetran.cores.CpuWindow` reads them. A measurement is *contended*
when the others used more than the cores this run leaves free plus :data:`SLACK_CORES` (a
quarter core of daemons and the shell is normal).
CPU frequency and temperature are read where the kernel exposes them (often not in VMs).
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from pathlib import Path

from edgetran.cores import SLACK_CORES, CpuWindow, cpu_set, usable_cores
from edgetran.errors import EdgeTranError

#: Seconds over which the machine is checked before a run under ``require_quiet``.
QUIET_PROBE_S = 1.0


class ContentionError(EdgeTranError, RuntimeError):
    """The machine stayed busy with other processes: a quiet measurement was refused."""


@dataclass(frozen=True)
class Contention:
    """Other processes' CPU use over a window, and what the kernel said about the CPUs."""

    other_cpu_cores: float | None
    window_s: float
    cpu_mhz: float | None = None
    temperature_c: float | None = None

    def contended(self, threads: int, cores: int | None = None) -> bool:
        """Whether the others took more than the cores a ``threads``-thread run leaves free."""
        if self.other_cpu_cores is None:
            return False
        free = max(0, (cores or usable_cores()) - threads)
        return self.other_cpu_cores > free + SLACK_CORES


def cpu_mhz() -> float | None:
    """The mean current frequency of this process's CPUs, where cpufreq is exposed."""
    values = []
    for cpu in cpu_set():
        path = Path(f"/sys/devices/system/cpu/cpu{cpu}/cpufreq/scaling_cur_freq")
        try:
            values.append(int(path.read_text()) / 1000)
        except (OSError, ValueError):
            continue
    return sum(values) / len(values) if values else None


def temperature_c() -> float | None:
    """The hottest thermal zone, where the kernel exposes any."""
    values = []
    for zone in Path("/sys/class/thermal").glob("thermal_zone*/temp"):
        try:
            values.append(int(zone.read_text()) / 1000)
        except (OSError, ValueError):
            continue
    return max(values) if values else None


class ContentionMonitor:
    """Samples other processes' CPU use between :meth:`start` and :meth:`stop`."""

    def start(self) -> ContentionMonitor:
        """Start sampling; returns the monitor."""
        self._window = CpuWindow.open()
        return self

    def stop(self) -> Contention:
        """Stop sampling; the contention seen in the window."""
        other, window = self._window.close()
        return Contention(other, window, cpu_mhz(), temperature_c())


def wait_until_quiet(threads: int, max_wait_s: float, probe_s: float = QUIET_PROBE_S) -> float:
    """Wait until one ``probe_s`` window shows no contention for a ``threads``-thread run;
    the seconds waited.

    Raises:
        ContentionError: still contended after ``max_wait_s``.
    """
    begin = time.perf_counter()
    while True:
        monitor = ContentionMonitor().start()
        time.sleep(probe_s)
        sample = monitor.stop()
        waited = time.perf_counter() - begin
        if not sample.contended(threads):
            return waited
        if waited >= max_wait_s:
            raise ContentionError(
                f"other processes used {sample.other_cpu_cores:.2f} CPU cores for "
                f"{waited:.0f} s (allowed: {_allowed(threads):.2f} beside {threads} "
                "thread(s)); stop them or profile without --require-quiet"
            )


def _allowed(threads: int) -> float:
    return max(0, usable_cores() - threads) + SLACK_CORES
