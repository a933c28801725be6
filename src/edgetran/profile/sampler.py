"""Background power sampling and the arithmetic of a measurement window.

:func:`power_samples` turns readings into a power timeline (counter meters are differenced),
:func:`window_energy_j` integrates a window (counter difference, else trapezoid), and
:func:`peak_power_w` is the largest sample, and :func:`run_costs` is what one run of the reported
latency costs. They are pure functions so tests can check them exactly against a known trace.
"""

from __future__ import annotations

import itertools
import threading
import time

from edgetran.profile.meters import Meter, MeterError, Reading

DEFAULT_PERIOD_S = 0.05


def power_samples(readings: list[Reading]) -> list[tuple[float, float]]:
    """``(time_s, watts)`` samples: instantaneous power where the meter gives it, else the
    average power between consecutive counter readings, stamped at the interval's midpoint."""
    if all(r.power_w is not None for r in readings):
        return [(r.time_s, float(r.power_w)) for r in readings]
    samples = []
    for before, after in itertools.pairwise(readings):
        span = after.time_s - before.time_s
        if span > 0 and before.energy_j is not None and after.energy_j is not None:
            watts = (after.energy_j - before.energy_j) / span
            samples.append(((before.time_s + after.time_s) / 2, watts))
    return samples


def window_energy_j(readings: list[Reading]) -> float:
    """Energy over the readings' span: the counter difference, else the trapezoid of power."""
    if len(readings) < 2:
        raise MeterError("a window needs at least two readings")
    first, last = readings[0], readings[-1]
    if first.energy_j is not None and last.energy_j is not None:
        return last.energy_j - first.energy_j
    samples = power_samples(readings)
    return sum((t1 - t0) * (p0 + p1) / 2 for (t0, p0), (t1, p1) in itertools.pairwise(samples))


def peak_power_w(readings: list[Reading]) -> float:
    """The largest power sampled in the window."""
    samples = power_samples(readings)
    if not samples:
        raise MeterError("no power samples in the window")
    return max(watts for _, watts in samples)


def mean_power_w(readings: list[Reading]) -> float:
    """The window's mean power: its energy over its span."""
    span = readings[-1].time_s - readings[0].time_s
    if span <= 0:
        raise MeterError("a window needs readings at two different times")
    return window_energy_j(readings) / span


def run_costs(
    readings: list[Reading], latency_s: float, idle_power_w: float = 0.0
) -> tuple[float, float, float]:
    """``(energy_j, dynamic_energy_j, peak_power_w)`` of one run lasting ``latency_s`` in the
    window of ``readings``: the window's mean power × ``latency_s`` (dynamic: the mean power
    above ``idle_power_w``; noise can push a tiny one below zero, reported as 0), and the
    peak, at least the mean (sampled instants can miss the highest power, never lower the
    mean). So ``energy_j / latency_s`` never exceeds ``peak_power_w``."""
    power = mean_power_w(readings)
    peak = max(peak_power_w(readings), power)
    return power * latency_s, max(0.0, power - idle_power_w) * latency_s, peak


class PowerSampler:
    """Polls a live meter every ``period_s`` in a daemon thread, between :meth:`start` and
    :meth:`stop`. Readings are taken synchronously at both ends, so the window is exact."""

    def __init__(self, meter: Meter, period_s: float = DEFAULT_PERIOD_S) -> None:
        self.meter = meter
        self.period_s = max(period_s, meter.min_period_s)
        self.readings: list[Reading] = []
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self.start_s = self.end_s = 0.0

    def start(self) -> None:
        """Take the first reading and start polling (a live meter)."""
        self.readings = []
        self._stop.clear()
        self.start_s = time.time()
        if self.meter.live:
            self.readings.append(self.meter.read())
            self.start_s = self.readings[0].time_s  # the window is exactly the readings' span
            self._thread = threading.Thread(target=self._poll, daemon=True)
            self._thread.start()

    def _poll(self) -> None:
        while not self._stop.wait(self.period_s):
            self.readings.append(self.meter.read())

    def stop(self) -> list[Reading]:
        """Stop sampling; the readings of the window, in time order."""
        self._stop.set()
        if self._thread is not None:
            self._thread.join()
            self._thread = None
        self.end_s = time.time()
        if self.meter.live:
            self.readings.append(self.meter.read())
            self.end_s = self.readings[-1].time_s
        else:
            self.readings = self.meter.recorded(self.start_s, self.end_s)
        return sorted(self.readings, key=lambda r: r.time_s)
