"""The metrics of a (model, device) pair, named with their units, from the evaluators to the
report: ``accuracy`` (a fraction), ``latency_s`` (s per sequence), ``energy_j`` (J per
sequence) and ``peak_power_w`` (W).

Shared infrastructure, like ``errors.py`` and ``devices.py``, rather than a stage: search/
scores pairs with these keys, growprune/ and codesign/ above it read them, and ``result.json``
shows them, so the type lives below all of them. Standard library only.

Files written before the keys had units (replay tables, stored studies, ``result.json``) use
``latency``, ``energy`` and ``peak_power``; :data:`LEGACY_KEYS` is how their readers rename
them, and nothing writes those names any more.
"""

from __future__ import annotations

import math
from collections.abc import Iterator, Mapping
from dataclasses import astuple, dataclass, fields
from typing import Any

from edgetran.errors import EdgeTranError, InvalidInputError

#: Every metric, in the order of Pareto fronts and arrays of metrics.
METRIC_KEYS = ("accuracy", "latency_s", "energy_j", "peak_power_w")
#: The costs (minimised), in :data:`METRIC_KEYS` order.
COST_KEYS = METRIC_KEYS[1:]
#: Older names (files written before the units) → the names with units. Read, never written.
LEGACY_KEYS = {"latency": "latency_s", "energy": "energy_j", "peak_power": "peak_power_w"}


@dataclass(frozen=True)
class Metrics(Mapping[str, float]):
    """The four metrics of a pair, finite numbers; also a read-only mapping by
    :data:`METRIC_KEYS`, so code that reads ``metrics["latency_s"]`` takes either form."""

    accuracy: float
    latency_s: float
    energy_j: float
    peak_power_w: float

    def __post_init__(self) -> None:
        for f in fields(self):
            value = getattr(self, f.name)
            if not _is_finite_number(value):
                raise InvalidInputError(f"{f.name}={value!r} is invalid; allowed: a finite number")
            object.__setattr__(self, f.name, float(value))

    @classmethod
    def from_mapping(
        cls,
        mapping: Mapping[str, Any],
        *,
        legacy: bool = False,
        error: type[EdgeTranError] = InvalidInputError,
    ) -> Metrics:
        """The metrics of ``mapping`` (other keys are ignored); with ``legacy``, the older
        names (:data:`LEGACY_KEYS`) are read too.

        Raises:
            error: a metric is missing, is not a finite number, or is named both ways.
        """
        values = with_unit_keys(mapping, error=error) if legacy else mapping
        missing = [k for k in METRIC_KEYS if k not in values]
        if missing:
            raise error(f"metrics have no {', '.join(missing)}; expected {', '.join(METRIC_KEYS)}")
        try:
            return cls(*(values[k] for k in METRIC_KEYS))
        except InvalidInputError as err:
            raise error(str(err)) from None

    def to_dict(self) -> dict[str, float]:
        """``{key: value}`` in :data:`METRIC_KEYS` order (as ``result.json`` shows them)."""
        return dict(zip(METRIC_KEYS, astuple(self), strict=True))

    def __getitem__(self, key: str) -> float:
        """The metric named ``key`` (one of :data:`METRIC_KEYS`)."""
        if key not in METRIC_KEYS:
            raise KeyError(key)
        return getattr(self, key)

    def __iter__(self) -> Iterator[str]:
        """The keys, in :data:`METRIC_KEYS` order."""
        return iter(METRIC_KEYS)

    def __len__(self) -> int:
        """Four."""
        return len(METRIC_KEYS)


def has_legacy_keys(mapping: Mapping[str, Any]) -> bool:
    """Whether ``mapping`` names a metric the older way (``latency`` …)."""
    return any(k in mapping for k in LEGACY_KEYS)


def with_unit_keys(
    mapping: Mapping[str, Any], *, error: type[EdgeTranError] = InvalidInputError
) -> dict[str, Any]:
    """``mapping`` with the older metric names renamed to the names with units; other keys
    pass through.

    Raises:
        error: one metric is named both ways.
    """
    both = [old for old, new in LEGACY_KEYS.items() if old in mapping and new in mapping]
    if both:
        named = ", ".join(f"{old!r} and {LEGACY_KEYS[old]!r}" for old in both)
        raise error(f"metrics name {named}; expected one name per metric, with its unit")
    return {LEGACY_KEYS.get(k, k): v for k, v in mapping.items()}


def unit_key(name: str) -> str:
    """A metric's name with its unit (``latency_s``), also for an older name (``latency``)."""
    return LEGACY_KEYS.get(name, name)


def _is_finite_number(value: Any) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool) and math.isfinite(value)
