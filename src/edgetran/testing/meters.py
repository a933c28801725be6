"""The contract check of meters."""

from __future__ import annotations

import itertools
import math
import time

from edgetran.profile.meters import Meter, Reading
from edgetran.testing._contract import Clauses, is_number

#: How long one ``read()`` may take, beyond the meter's own period (generous: CI is loaded).
READ_SLACK_S = 1.0
#: Largest distance between a live reading's ``time_s`` and ``time.time()``.
CLOCK_SLACK_S = 60.0


def check_meter(
    meter: Meter, *, reads: int = 3, window: tuple[float, float] = (0.0, math.inf)
) -> None:
    """Assert that ``meter`` keeps the :class:`~edgetran.profile.meters.Meter` contract.

    A live meter is read ``reads`` times, ``min_period_s`` apart; an offline meter's readings
    in ``window`` (wall-clock seconds) are read through ``recorded``.

    Raises:
        ContractError: naming the clause that failed.
    """
    c = Clauses("Meter", f"{type(meter).__name__} {getattr(meter, 'name', '?')!r}")
    c.require(isinstance(meter, Meter), "a meter subclasses edgetran.profile.meters.Meter")
    c.require(isinstance(meter.name, str) and bool(meter.name), "name is a non-empty string")
    c.require(
        isinstance(meter.estimated, bool),
        "estimated is True (a model's values) or False (a sensor's)",
        repr(meter.estimated),
    )
    c.require(isinstance(meter.live, bool), "live is True or False", repr(meter.live))
    c.require(
        is_number(meter.min_period_s) and meter.min_period_s > 0,
        "min_period_s is a positive number of seconds",
        repr(meter.min_period_s),
    )
    described = meter.describe()
    c.require(
        described.get("kind") == ("estimated" if meter.estimated else "measured"),
        "describe()['kind'] is 'estimated' exactly when estimated is True",
        repr(described.get("kind")),
    )
    readings = _live_readings(meter, reads, c) if meter.live else _recorded(meter, window, c)
    for reading in readings:
        _check_reading(reading, c)
    times = [r.time_s for r in readings]
    c.require(times == sorted(times), "readings come in time order", repr(times))
    energies = [r.energy_j for r in readings if r.energy_j is not None]
    c.require(
        all(b >= a for a, b in itertools.pairwise(energies)),
        "energy_j is a cumulative counter: it never decreases",
        repr(energies),
    )


def _live_readings(meter: Meter, reads: int, c: Clauses) -> list[Reading]:
    readings = []
    for _ in range(reads):
        began = time.perf_counter()
        reading = meter.read()
        took = time.perf_counter() - began
        c.require(
            took <= meter.min_period_s + READ_SLACK_S,
            "read() is cheap enough to call every min_period_s",
            f"{took:.2f} s",
        )
        c.require(
            isinstance(reading, Reading) and is_number(reading.time_s),
            "read() returns a Reading",
            repr(reading),
        )
        c.require(
            abs(reading.time_s - time.time()) <= CLOCK_SLACK_S,
            "time_s is wall-clock time (time.time())",
            repr(reading.time_s),
        )
        readings.append(reading)
        time.sleep(meter.min_period_s)
    return readings


def _recorded(meter: Meter, window: tuple[float, float], c: Clauses) -> list[Reading]:
    readings = meter.recorded(*window)
    c.require(
        isinstance(readings, list) and bool(readings),
        "an offline meter's recorded(start_s, end_s) returns a non-empty list of readings",
        repr(readings)[:200],
    )
    for reading in readings:
        c.require(isinstance(reading, Reading), "recorded() returns Readings", repr(reading))
        c.require(
            is_number(reading.time_s) and window[0] <= reading.time_s <= window[1],
            "recorded(start_s, end_s) returns readings within the window",
            repr(reading.time_s),
        )
    return readings


def _check_reading(reading: Reading, c: Clauses) -> None:
    c.require(
        reading.power_w is not None or reading.energy_j is not None,
        "a reading carries power_w or energy_j (or both), never neither",
        repr(reading),
    )
    for field in ("power_w", "energy_j"):
        value = getattr(reading, field)
        c.require(
            value is None or (is_number(value) and value >= 0),
            f"{field} is a finite value ≥ 0 (or None)",
            repr(value),
        )
