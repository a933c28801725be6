"""What this process may use of the CPUs, and how many intra-op threads a run takes of them.

Beside one busy process on two cores, a quick training at torch's default thread count (every
core) took 253 s, and 25 s at one thread; a 2-thread profile of BERT-Tiny read 156 ms against
1 ms alone. An OpenMP parallel region ends when its slowest thread does, and a thread that
shares its core with another process waits for a time slice at every region. So a training or
a measurement given no thread count takes the cores that other processes leave free when it
starts (:func:`free_cores`: their CPU use over :data:`FREE_CORES_PROBE_S`, from ``/proc/stat``),
within its cluster worker's share of the machine (:data:`WORKER_THREADS_ENV`). A count the user
gives (``--threads``, or ``OMP_NUM_THREADS`` in the environment) always wins.

OpenMP's passive wait policy (``OMP_WAIT_POLICY=PASSIVE``) is no remedy here: the OpenMP
runtime reads it once, when torch loads it, so a library imported after torch cannot set it,
and setting it on import would change it for every other torch user of the process.
"""

from __future__ import annotations

import math
import os
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

#: Other processes' CPU use (in cores) that is noise, not load: daemons, the shell.
SLACK_CORES = 0.25
#: Seconds over which other processes' CPU use is sampled before a run picks its threads.
FREE_CORES_PROBE_S = 0.25
#: The shortest window judged: ``/proc/stat`` counts in clock ticks (10 ms), so over a few ticks
#: its rounding alone reads as most of a core.
MIN_WINDOW_S = 0.25
#: Set in a cluster worker's process: the most threads one of its jobs takes (the machine's
#: cores shared among the jobs its workers run at once).
WORKER_THREADS_ENV = "EDGETRAN_WORKER_THREADS"
_BUSY_FIELDS = (0, 1, 2, 5, 6, 7)  # user, nice, system, irq, softirq, steal


def usable_cores() -> int:
    """The CPUs this process may run on."""
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # macOS, Windows
        return os.cpu_count() or 1


def cpu_set() -> set[int]:
    """The numbers of the CPUs this process may run on (empty where the OS does not say)."""
    try:
        return set(os.sched_getaffinity(0))
    except AttributeError:  # macOS, Windows: no /proc/stat either
        return set()


def busy_cpu_s(cpus: set[int]) -> float | None:
    """Seconds the given CPUs have spent busy since boot (``None`` without ``/proc/stat``)."""
    try:
        lines = Path("/proc/stat").read_text().splitlines()
    except OSError:
        return None
    ticks = 0
    for line in lines:
        name, _, rest = line.partition(" ")
        if name.startswith("cpu") and name[3:].isdigit() and int(name[3:]) in cpus:
            values = rest.split()
            ticks += sum(int(values[i]) for i in _BUSY_FIELDS if i < len(values))
    return ticks / os.sysconf("SC_CLK_TCK") if ticks else None


@dataclass
class CpuWindow:
    """Other processes' CPU use on this process's CPUs, from :meth:`open` to :meth:`close`:
    ``(busy time of those CPUs − this process's CPU time) / wall time``, in cores."""

    cpus: set[int]
    busy_s: float | None
    own_s: float
    wall_s: float

    @classmethod
    def open(cls) -> CpuWindow:
        """Start a window on the CPUs this process may use, now."""
        cpus = cpu_set()
        return cls(cpus, busy_cpu_s(cpus), time.process_time(), time.perf_counter())

    def close(self) -> tuple[float | None, float]:
        """``(other processes' cores or None, window seconds)``; ``None`` where unknown or the
        window is too short to judge."""
        busy, own = busy_cpu_s(self.cpus), time.process_time()
        window = time.perf_counter() - self.wall_s
        if busy is None or self.busy_s is None or window < MIN_WINDOW_S:
            return None, window
        other = max(0.0, (busy - self.busy_s) - (own - self.own_s)) / window
        # /proc/stat counts in clock ticks (10 ms) and its clock is not perf_counter's: on a
        # short window under full load the ratio can read a little above the CPUs there are
        return min(other, float(len(self.cpus))), window


def free_cores(probe_s: float = FREE_CORES_PROBE_S) -> int:
    """The cores other processes leave free, sampled over ``probe_s`` (at least 1; every usable
    core where their use cannot be read)."""
    cores = usable_cores()
    if cores == 1:
        return 1
    window = CpuWindow.open()
    time.sleep(probe_s)
    other, _ = window.close()
    if other is None:
        return cores
    return max(1, cores - math.ceil(other - SLACK_CORES))


def requested_threads() -> int | None:
    """``OMP_NUM_THREADS`` when the user set it to a count (its first level), else ``None``."""
    value = os.environ.get("OMP_NUM_THREADS", "").split(",")[0].strip()
    return int(value) if value.isdigit() and int(value) > 0 else None


def worker_threads() -> int | None:
    """The most threads a job of this cluster worker may take (``None``: not a worker)."""
    value = os.environ.get(WORKER_THREADS_ENV, "")
    return int(value) if value.isdigit() and int(value) > 0 else None


def choose_threads(threads: int | None = None, *, share: bool = True) -> tuple[int, str]:
    """``(count, where it came from)``: ``threads`` when given (``"requested"``), else
    ``OMP_NUM_THREADS`` (``"OMP_NUM_THREADS"``), else the cores free now (``"free cores"``),
    within the cluster worker's share when ``share`` (a job that holds its host alone, a
    profile, takes no share)."""
    if threads is not None:
        return threads, "requested"
    if (given := requested_threads()) is not None:
        return given, "OMP_NUM_THREADS"
    count = free_cores()
    limit = worker_threads() if share else None
    return (count if limit is None else min(count, limit)), "free cores"


@contextmanager
def torch_threads(threads: int) -> Iterator[int]:
    """torch's intra-op threads set to ``threads`` for the block, then restored (a process-wide
    setting that later work in the process must not inherit)."""
    import torch

    before = torch.get_num_threads()
    torch.set_num_threads(threads)
    try:
        yield threads
    finally:
        torch.set_num_threads(before)
