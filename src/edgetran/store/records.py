"""The measurement record shared by the profiler, the store and the importers.

Units are in the names. ``latency_s`` and ``energy_j`` are per batch (one inference call);
``*_per_seq`` divide them by the batch size. ``energy_j`` is the total energy the meter saw
during inference; ``dynamic_energy_j`` subtracts the idle power measured before the runs
(``None`` where idle power is unknown, as in the reference ProTran data). ``meter_kind`` is
``measured`` for a real sensor and ``estimated`` for a model: an estimate is never reported as
a measurement.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass, field, fields
from typing import Any

from edgetran.errors import InvalidInputError

METER_KINDS = ("measured", "estimated")

#: Fields that must be finite and non-negative when present.
NON_NEGATIVE = (
    "latency_s",
    "latency_s_per_seq",
    "energy_j",
    "energy_j_per_seq",
    "dynamic_energy_j",
    "idle_power_w",
    "peak_power_w",
    "power_period_s",
)


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

    def __post_init__(self) -> None:
        self.validate()

    def validate(self) -> None:
        """Raise :class:`InvalidInputError` naming the field if a value is impossible."""
        where = f"measurement of {self.hash[:12]} on {self.device}"
        for name in ("batch_size", "seq_len"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int) or value <= 0:
                raise InvalidInputError(f"{where}: {name}={value!r}; expected a positive integer")
        for name in NON_NEGATIVE:
            value = getattr(self, name)
            if value is None:
                continue
            if not isinstance(value, int | float) or isinstance(value, bool):
                raise InvalidInputError(f"{where}: {name}={value!r}; expected a number")
            if math.isnan(value) or math.isinf(value) or value < 0:
                raise InvalidInputError(f"{where}: {name}={value!r}; expected a finite value ≥ 0")
        if self.meter_kind not in METER_KINDS:
            raise InvalidInputError(
                f"{where}: meter_kind={self.meter_kind!r}; allowed: {', '.join(METER_KINDS)}"
            )

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> Measurement:
        known = {f.name for f in fields(cls)}
        return cls(**{k: v for k, v in data.items() if k in known})
