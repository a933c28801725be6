"""The measurement record shared by the profiler, the store and the importers.

Units are in the names. ``latency_s`` and ``energy_j`` are per batch (one inference call);
``*_per_seq`` divide them by the batch size. ``energy_j`` is the total energy the meter saw
during inference; ``dynamic_energy_j`` subtracts the idle power measured before the runs
(``None`` where idle power is unknown, as in the reference ProTran data). ``meter_kind`` is
``measured`` for a real sensor and ``estimated`` for a model: an estimate is never reported as
a measurement.
"""

from __future__ import annotations

import hashlib
import math
import numbers
from dataclasses import MISSING, asdict, dataclass, field, fields
from pathlib import PurePath
from typing import Any

from edgetran.errors import InvalidInputError

METER_KINDS = ("measured", "estimated")

#: Fields that must be finite and positive: a measured time is never zero.
POSITIVE = ("latency_s", "latency_s_per_seq")
#: Fields that must be finite and non-negative when present.
NON_NEGATIVE = (
    "energy_j",
    "energy_j_per_seq",
    "dynamic_energy_j",
    "idle_power_w",
    "peak_power_w",
    "power_period_s",
    "created_at",
    "other_cpu_cores",
)
#: Integer fields: the input shape (positive) and counts (non-negative, optional).
SHAPE = ("batch_size", "seq_len")
COUNTS = ("power_samples", "threads", "repeats", "warmup")
#: Text fields that must be non-empty.
TEXT = ("hash", "device", "runtime", "meter", "source")
#: Fields holding a JSON object.
OBJECTS = ("model_dict", "environment", "extra")
SOURCE_KEY_LENGTH = 512
#: The largest integer every database stores (a 32-bit column).
MAX_INTEGER = 2**31 - 1


class MeasurementError(InvalidInputError):
    """A measurement field holds an impossible value.

    Attributes:
        field, value, allowed: the field, the value as given and what is allowed.
        detail: the message without its location, for readers that name the row or entry.
    """

    def __init__(self, where: str, field: str, value: Any, allowed: str) -> None:
        self.field, self.value, self.allowed = field, value, allowed
        self.detail = f"{field}={value!r}; expected {allowed}"
        super().__init__(f"{where}: {self.detail}")


def source_key(file: str | PurePath, entry: object) -> str:
    """The key of an imported measurement: the file's name and the entry within it (a key
    too long for the database column becomes its SHA-256)."""
    key = f"{PurePath(file).name}#{entry}"
    return key if len(key) <= SOURCE_KEY_LENGTH else hashlib.sha256(key.encode()).hexdigest()


def number(value: Any, *, positive: bool = False) -> float:
    """``value`` (a number or its text) as a finite float ≥ 0 (> 0 if ``positive``).

    Raises:
        ValueError: naming what is allowed (callers add the field and the value as given).
    """
    allowed = "a finite value > 0" if positive else "a finite value ≥ 0"
    if isinstance(value, bool) or not isinstance(value, numbers.Real | str):
        raise ValueError(allowed)
    try:
        result = float(value)
    except (ValueError, OverflowError):
        raise ValueError(allowed) from None
    if not math.isfinite(result) or result < 0 or (positive and result == 0):
        raise ValueError(allowed)
    return result


def flag(value: Any) -> bool:
    """``value`` (a bool, 0/1, or the text ``true``/``false``/``1``/``0``) as a bool; a
    :class:`ValueError` naming what is allowed otherwise."""
    if isinstance(value, bool):
        return value
    text = str(value).strip().lower() if isinstance(value, str | int) else None
    if text in ("true", "1"):
        return True
    if text in ("false", "0"):
        return False
    raise ValueError("true or false")


def integer(value: Any, *, positive: bool = False) -> int:
    """``value`` (an integer, an integral float, or their text) as an int ≥ 0 (> 0 if
    ``positive``); a :class:`ValueError` naming what is allowed otherwise."""
    allowed = f"an integer in {int(positive)}…{MAX_INTEGER}"
    try:
        result = number(value)
    except ValueError:
        raise ValueError(allowed) from None
    if result != int(result) or result > MAX_INTEGER or (positive and result == 0):
        raise ValueError(allowed)
    return int(result)


@dataclass
class Measurement:
    """One profile of one architecture on one device with one runtime and input shape."""

    hash: str
    model_dict: dict[str, Any]
    device: str
    runtime: str
    batch_size: int
    seq_len: int
    latency_s: float
    latency_s_per_seq: float
    meter: str
    meter_kind: str
    latency_ci95_s: list[float] | None = None
    energy_j: float | None = None
    energy_j_per_seq: float | None = None
    dynamic_energy_j: float | None = None
    idle_power_w: float | None = None
    peak_power_w: float | None = None
    power_samples: int | None = None
    power_period_s: float | None = None
    threads: int | None = None
    repeats: int | None = None
    warmup: int | None = None
    source: str = "profiler"
    environment: dict[str, Any] = field(default_factory=dict)
    extra: dict[str, Any] = field(default_factory=dict)
    id: int | None = None
    created_at: float | None = None
    #: Where an imported measurement came from (:func:`source_key`); ``None`` for the profiler.
    source_key: str | None = None
    #: Other processes' mean CPU use, in cores, during the timed window (profile/contention.py).
    other_cpu_cores: float | None = None
    #: Whether they crowded the cores this run needed; surrogates leave such measurements out.
    contended: bool | None = None

    def __post_init__(self) -> None:
        self.validate()

    def validate(self) -> None:
        """Check every field and normalise its type (numbers given as text, integral floats,
        NumPy scalars): the one validation of every measurement, whatever its source.

        Raises:
            MeasurementError: naming the field, the value as given and what is allowed.
        """
        where = f"measurement of {str(self.hash)[:12]} on {self.device}"
        for name in TEXT:
            if not isinstance(getattr(self, name), str) or not getattr(self, name):
                raise MeasurementError(where, name, getattr(self, name), "a non-empty text")
        if self.meter_kind not in METER_KINDS:
            raise MeasurementError(where, "meter_kind", self.meter_kind, " or ".join(METER_KINDS))
        if self.source_key is not None and not (
            isinstance(self.source_key, str) and 0 < len(self.source_key) <= SOURCE_KEY_LENGTH
        ):
            raise MeasurementError(
                where, "source_key", self.source_key, f"a text of 1–{SOURCE_KEY_LENGTH} characters"
            )
        for name in OBJECTS:
            if not isinstance(getattr(self, name), dict):
                raise MeasurementError(where, name, getattr(self, name), "a JSON object")
        checks = [(n, integer, True, True) for n in SHAPE]
        checks += [(n, integer, False, False) for n in COUNTS]
        checks += [(n, number, True, True) for n in POSITIVE]
        checks += [(n, number, False, False) for n in NON_NEGATIVE]
        for name, convert, positive, required in checks:
            value = getattr(self, name)
            if value is None and not required:
                continue
            try:
                setattr(self, name, convert(value, positive=positive))
            except ValueError as err:
                raise MeasurementError(where, name, value, str(err)) from None
        self._validate_interval(where)
        if self.contended is not None:
            try:
                self.contended = flag(self.contended)
            except ValueError as err:
                raise MeasurementError(where, "contended", self.contended, str(err)) from None

    def _validate_interval(self, where: str) -> None:
        ci = self.latency_ci95_s
        if ci is None:
            return
        try:
            if not isinstance(ci, list | tuple) or len(ci) != 2:
                raise ValueError
            self.latency_ci95_s = [number(v) for v in ci]
        except ValueError:
            raise MeasurementError(
                where, "latency_ci95_s", ci, "two finite numbers ≥ 0 (seconds) or nothing"
            ) from None

    def to_dict(self) -> dict[str, Any]:
        """The measurement as a JSON-ready dict."""
        return asdict(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> Measurement:
        """From a mapping of fields (others ignored); a missing required field is ``None``, so
        that validation names it."""
        values = {f.name: data[f.name] for f in fields(cls) if f.name in data}
        required = (
            f.name for f in fields(cls) if f.default is MISSING and f.default_factory is MISSING
        )
        return cls(**{name: None for name in required} | values)
