"""Replay benchmark tables: recorded (architecture, device) pairs with their metrics.

A table is JSON Lines, one object per line::

    {"arch": <reference model_dict>, "device": "<name>",
     "metrics": {"accuracy": a, "latency": s, "energy": J, "peak_power": W}}

A search over a table may only query recorded pairs, and each query counts as one evaluation.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from pathlib import Path

from edgetran.errors import EdgeTranError, read_json_lines
from edgetran.search.objectives import METRIC_KEYS, SearchError
from edgetran.space import Architecture


@dataclass(frozen=True)
class Pair:
    """One candidate: an architecture on a device (``key`` = ``hash@device``)."""

    arch: Architecture
    device: str

    @property
    def key(self) -> str:
        """``hash@device``."""
        return f"{self.arch.hash}@{self.device}"


def read_table(path: str | Path) -> dict[str, tuple[Pair, dict[str, float]]]:
    """``key → (pair, metrics)``; errors name the line."""
    path = Path(path)
    if not path.is_file():
        raise SearchError(f"{path}: no such file")
    table: dict[str, tuple[Pair, dict[str, float]]] = {}
    for number, row in read_json_lines(path, SearchError):
        pair, metrics = _parse_row(path, number, row)
        table[pair.key] = (pair, metrics)
    if not table:
        raise SearchError(f"{path}: no pairs")
    return table


def _parse_row(path: Path, number: int, row: dict) -> tuple[Pair, dict[str, float]]:
    where = f"{path}: line {number}"
    for field in ("arch", "device", "metrics"):
        if field not in row:
            raise SearchError(f"{where} has no {field!r} field")
    metrics = row["metrics"]
    if not isinstance(metrics, dict):
        raise SearchError(f"{where}: 'metrics' is not an object")
    values = {}
    for key in METRIC_KEYS:
        value = metrics.get(key)
        if (
            isinstance(value, bool)
            or not isinstance(value, int | float)
            or not math.isfinite(value)
        ):
            raise SearchError(f"{where}: metrics.{key} is missing or not a finite number")
        values[key] = float(value)
    if not isinstance(row["device"], str) or not row["device"]:
        raise SearchError(f"{where}: 'device' is not a non-empty string")
    try:
        arch = Architecture.from_dict(row["arch"])
    except (EdgeTranError, TypeError, ValueError, KeyError) as err:
        raise SearchError(f"{where}: invalid arch ({err})") from None
    return Pair(arch, row["device"]), values
