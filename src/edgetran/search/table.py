"""Replay benchmark tables: recorded (architecture, device) pairs with their metrics.

A table is JSON Lines, one object per line::

    {"arch": <reference model_dict>, "device": "<name>",
     "metrics": {"accuracy": a, "latency_s": s, "energy_j": J, "peak_power_w": W}}

(per sequence). A row may also carry ``"curve": [a₀, a₁, a₂, a₃]``, its learning curve: the dev
accuracy at each of :data:`~edgetran.search.fidelity.RUNG_FRACTIONS` of the training, the last
one the row's accuracy (:func:`edgetran.search.suite.with_curves` makes them); a table has
curves on every row or on none. Tables written before the names had units (``latency``, ``energy``,
``peak_power``) are still read: :func:`read_table` warns once per file with
:class:`LegacyMetricNamesWarning`. A search over a table may only query recorded pairs, and each
query counts as one evaluation.
"""

from __future__ import annotations

import warnings
from dataclasses import dataclass
from pathlib import Path

from edgetran.errors import EdgeTranError, read_json_lines
from edgetran.metrics import LEGACY_KEYS, Metrics, has_legacy_keys
from edgetran.search.objectives import SearchError
from edgetran.space import Architecture


class LegacyMetricNamesWarning(UserWarning):
    """A replay table names its metrics without units (``latency`` …); it was read anyway."""


@dataclass(frozen=True)
class Pair:
    """One candidate: an architecture on a device (``key`` = ``hash@device``)."""

    arch: Architecture
    device: str

    @property
    def key(self) -> str:
        """``hash@device``."""
        return f"{self.arch.hash}@{self.device}"


def read_table(path: str | Path) -> dict[str, tuple[Pair, Metrics]]:
    """``key → (pair, metrics)``; errors name the line. A table with the older metric names
    is read too, with one :class:`LegacyMetricNamesWarning` saying so."""
    return read_table_curves(path)[0]


def read_table_curves(
    path: str | Path,
) -> tuple[dict[str, tuple[Pair, Metrics]], dict[str, tuple[float, ...]]]:
    """:func:`read_table`'s table and ``key → learning curve`` (empty for a table without
    curves); a curve of the wrong length, outside [0, 1] or not ending at the row's accuracy,
    or a table with curves on some rows only, is an error naming the line."""
    path = Path(path)
    if not path.is_file():
        raise SearchError(f"{path}: no such file")
    table: dict[str, tuple[Pair, Metrics]] = {}
    curves: dict[str, tuple[float, ...]] = {}
    legacy = False
    for number, row in read_json_lines(path, SearchError):
        pair, metrics, old = _parse_row(path, number, row)
        table[pair.key] = (pair, metrics)
        legacy |= old
        if "curve" in row:
            curves[pair.key] = _parse_curve(f"{path}: line {number}", row["curve"], metrics)
        if bool(curves) != (len(curves) == len(table)):
            raise SearchError(f"{path}: line {number}: a table has curves on every row or none")
    if not table:
        raise SearchError(f"{path}: no pairs")
    if legacy:
        old, new = ", ".join(LEGACY_KEYS), ", ".join(LEGACY_KEYS.values())
        warnings.warn(
            LegacyMetricNamesWarning(f"{path}: metrics named {old} (no units); read as {new}"),
            stacklevel=2,
        )
    return table, curves


def _parse_curve(where: str, curve, metrics: Metrics) -> tuple[float, ...]:
    from edgetran.search.fidelity import RUNG_FRACTIONS  # it imports the evaluators, which us

    n = len(RUNG_FRACTIONS)
    if (
        not isinstance(curve, list)
        or len(curve) != n
        or not all(isinstance(a, int | float) and not isinstance(a, bool) for a in curve)
        or not all(0.0 <= a <= 1.0 for a in curve)
    ):
        raise SearchError(f"{where}: 'curve' must be {n} accuracies in [0, 1], one per rung")
    if abs(curve[-1] - metrics.accuracy) > 1e-6:
        raise SearchError(
            f"{where}: the curve ends at {curve[-1]:g}; expected the row's accuracy "
            f"({metrics.accuracy:g})"
        )
    return tuple(float(a) for a in curve)


def _parse_row(path: Path, number: int, row: dict) -> tuple[Pair, Metrics, bool]:
    """The row's pair, its metrics, and whether they had the older names."""
    where = f"{path}: line {number}"
    for field in ("arch", "device", "metrics"):
        if field not in row:
            raise SearchError(f"{where} has no {field!r} field")
    if not isinstance(row["metrics"], dict):
        raise SearchError(f"{where}: 'metrics' is not an object")
    legacy = has_legacy_keys(row["metrics"])
    try:
        metrics = Metrics.from_mapping(row["metrics"], legacy=True, error=SearchError)
    except SearchError as err:
        raise SearchError(f"{where}: {err}") from None
    if not isinstance(row["device"], str) or not row["device"]:
        raise SearchError(f"{where}: 'device' is not a non-empty string")
    try:
        arch = Architecture.from_dict(row["arch"])
    except (EdgeTranError, TypeError, ValueError, KeyError) as err:
        raise SearchError(f"{where}: invalid arch ({err})") from None
    return Pair(arch, row["device"]), metrics, legacy
