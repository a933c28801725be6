"""Measurement files: the reference ProTran JSON, CSV and Parquet, read and written losslessly.

ProTran JSON (``../shared/data/protran/DEVICE_bB_rR.json``) is an object keyed by the
reference's model hash, each entry ``{model_dict, model_type, embedding, performance: {latency
(s per sequence), energy (J per sequence), peak_power (W)}}``. Its latency is the wall time of
a whole evaluation process (start-up and loading included) and its energy is total board power
with idle not subtracted: the importer records that caveat, sets ``dynamic_energy_j`` to
``None``, and keeps the reference's key, model type and embedding string so that exporting
gives the same file back.

CSV and Parquet hold one row per measurement, one column per :class:`Measurement` field; the
nested fields (``model_dict``, ``latency_ci95_s``, ``environment``, ``extra``) are JSON text.

Every format builds its measurements through one path (:func:`_build`, then
:meth:`Measurement.validate`), so a value is accepted or refused the same way whatever the
file, and an error names the file, the row (counted from 1 after the header) or entry, the
field, the value exactly as the file gives it and what is allowed. Each measurement read
carries its ``source_key`` (file name and entry), which makes importing a file twice a no-op.
"""

from __future__ import annotations

import csv
import io
import json
import re
from dataclasses import MISSING, fields
from pathlib import Path
from typing import Any

from edgetran.errors import (
    ArchitectureError,
    InvalidInputError,
    parse_json,
    read_json_file,
    read_text_file,
)
from edgetran.space import REFERENCE_SPACE, Architecture
from edgetran.store.records import Measurement, MeasurementError, number, source_key

FILE_FORMATS = ("protran", "csv", "parquet")
PROTRAN_CAVEAT = (
    "reference ProTran: latency is whole-process wall time per sequence (start-up included); "
    "energy is total board/rail power, idle not subtracted"
)
_NESTED = ("model_dict", "latency_ci95_s", "environment", "extra")


def model_type(arch: Architecture) -> str:
    """The reference's model type: shallow/deep by depth (8), narrow/wide by heads (8)."""
    depth = "deep" if arch.num_layers >= 8 else "shallow"
    width = "wide" if max(layer.num_heads for layer in arch.layers) >= 8 else "narrow"
    return f"{depth}_{width}"


def _protran_shape(path: Path) -> tuple[int, int | None]:
    """Batch size and runs from a reference file name such as ``gpu_a100_b128_r3.json``."""
    batch = re.search(r"_b(\d+)", path.stem)
    runs = re.search(r"_r(\d+)", path.stem)
    return (int(batch.group(1)) if batch else 1), (int(runs.group(1)) if runs else None)


def _architecture(where: str, model_dict: Any) -> Architecture:
    try:
        return Architecture.from_dict(model_dict)
    except ArchitectureError as err:
        raise InvalidInputError(f"{where}: model_dict: {err}") from None


def _build(where: str, values: dict[str, Any]) -> Measurement:
    """The one path from a file's values to a :class:`Measurement`; a bad field is a
    :class:`MeasurementError` located at ``where`` (the file and its row or entry)."""
    try:
        return Measurement.from_dict(values)
    except MeasurementError as err:
        raise MeasurementError(where, err.field, err.value, err.allowed) from None


def read_protran(path: str | Path, device: str, seq_len: int = 128) -> list[Measurement]:
    """The measurements in a ProTran JSON file (keyed by model hash) for ``device``."""
    path = Path(path)
    data = read_json_file(path)
    if not isinstance(data, dict):
        raise InvalidInputError(f"{path}: expected a JSON object keyed by model hash")
    batch, runs = _protran_shape(path)
    result = []
    for key, entry in data.items():
        where = f"{path}: entry {key if key.isprintable() else repr(key)}"
        if not isinstance(entry, dict) or "model_dict" not in entry or "performance" not in entry:
            raise InvalidInputError(f"{where}: needs 'model_dict' and 'performance'")
        arch = _architecture(where, entry["model_dict"])
        performance = entry["performance"]
        values = {}
        for field, positive in (("latency", True), ("energy", False), ("peak_power", False)):
            name = f"performance.{field}"
            if not isinstance(performance, dict) or field not in performance:
                raise InvalidInputError(f"{where}: {name} is missing")
            try:
                values[field] = number(performance[field], positive=positive)
            except ValueError as err:
                raise MeasurementError(where, name, performance[field], str(err)) from None
        extra = {
            "protran_key": key,
            "model_type": entry.get("model_type"),
            "embedding": entry.get("embedding"),
            "file": path.name,
            "runs": runs,
            "caveat": PROTRAN_CAVEAT,
        }
        result.append(
            _build(
                where,
                dict(
                    hash=arch.hash,
                    model_dict=entry["model_dict"],
                    device=device,
                    runtime="reference",
                    batch_size=batch,
                    seq_len=seq_len,
                    latency_s=values["latency"] * batch,
                    latency_s_per_seq=values["latency"],
                    energy_j=values["energy"] * batch,
                    energy_j_per_seq=values["energy"],
                    peak_power_w=values["peak_power"],
                    meter="protran-reference",
                    meter_kind="measured",
                    source="protran",
                    extra=extra,
                    source_key=source_key(path, key),
                ),
            )
        )
    return result


def write_protran(measurements: list[Measurement], path: str | Path) -> None:
    """Write the reference format (per-sequence latency and energy, peak power)."""
    out: dict[str, Any] = {}
    for m in measurements:
        arch = Architecture.from_dict(m.model_dict)
        key = m.extra.get("protran_key") or m.hash
        embedding = m.extra.get("embedding") or str(REFERENCE_SPACE.encode(arch))
        out[key] = {
            "model_dict": m.model_dict,
            "model_type": m.extra.get("model_type") or model_type(arch),
            "embedding": embedding,
            "performance": {
                "latency": m.latency_s_per_seq,
                "energy": m.energy_j_per_seq,
                "peak_power": m.peak_power_w,
            },
        }
    Path(path).write_text(json.dumps(out, indent=1))


# -- CSV and Parquet ---------------------------------------------------------------------------
def _rows(measurements: list[Measurement]) -> list[dict[str, Any]]:
    rows = []
    for m in measurements:
        row = m.to_dict()
        row.pop("id")
        for key in _NESTED:
            row[key] = json.dumps(row[key])
        rows.append(row)
    return rows


def write_table(measurements: list[Measurement], path: str | Path, fmt: str) -> None:
    """Write the measurements as a CSV or Parquet table (one row each)."""
    import pandas as pd

    frame = pd.DataFrame(_rows(measurements))
    if fmt == "csv":
        frame.to_csv(path, index=False)
    else:
        frame.to_parquet(path, index=False)


#: Columns every table needs: the fields of :class:`Measurement` without a default.
_REQUIRED = tuple(
    f.name for f in fields(Measurement) if f.default is MISSING and f.default_factory is MISSING
)


def read_table(path: str | Path, fmt: str, device: str | None = None) -> list[Measurement]:
    """Read CSV or Parquet; ``device`` (if given) replaces the file's device names."""
    path = Path(path)
    columns, rows = _read_csv(path) if fmt == "csv" else _read_parquet(path)
    missing = [c for c in _REQUIRED if c not in columns and not (c == "device" and device)]
    if missing:
        raise InvalidInputError(
            f"{path}: missing column {', '.join(map(repr, missing))}; a measurement table has "
            "one column per measurement field"
        )
    if not rows:
        raise InvalidInputError(f"{path}: no measurements")
    return [_from_row(path, number, row, device) for number, row in enumerate(rows, start=1)]


def _read_csv(path: Path) -> tuple[list[str], list[dict[str, Any]]]:
    """Header and rows of a CSV file, every cell as its text (an empty cell is ``None``), so
    a bad cell is reported as written and does not change how other rows are read."""
    reader = csv.DictReader(io.StringIO(read_text_file(path), newline=""))
    try:
        rows = [{k: v or None for k, v in row.items() if isinstance(k, str)} for row in reader]
    except csv.Error as err:
        raise InvalidInputError(f"{path}: cannot read as csv ({err})") from None
    return list(reader.fieldnames or []), rows


def _read_parquet(path: Path) -> tuple[list[str], list[dict[str, Any]]]:
    import pyarrow as pa
    import pyarrow.parquet as pq

    try:
        table = pq.read_table(path)
        return table.column_names, table.to_pylist()
    except (OSError, ValueError, pa.ArrowException) as err:
        message = str(err).splitlines()[0] if str(err) else err.__class__.__name__
        raise InvalidInputError(f"{path}: cannot read as parquet ({message})") from None


def _from_row(path: Path, number: int, row: dict[str, Any], device: str | None) -> Measurement:
    where = f"{path}: row {number}"
    values = dict(row)
    for key in _NESTED:
        if isinstance(values.get(key), str):
            values[key] = parse_json(values[key], f"{where}: {key}")
    for key in ("environment", "extra"):
        if values.get(key) is None:
            values[key] = {}
    if device is not None:
        values["device"] = device
    if not values.get("source_key"):
        values["source_key"] = source_key(path, f"row {number}")
    arch = _architecture(where, values.get("model_dict"))
    if values.get("hash") != arch.hash:  # else the row's metrics would land on another model
        raise MeasurementError(where, "hash", values.get("hash"), f"{arch.hash} (of model_dict)")
    return _build(where, values)


def read_measurements(path: str | Path, fmt: str, device: str | None) -> list[Measurement]:
    """Read a measurement file; ProTran files need ``device`` (default: the file name)."""
    if fmt not in FILE_FORMATS:
        raise InvalidInputError(f"format {fmt!r} is invalid; allowed: {', '.join(FILE_FORMATS)}")
    if fmt == "protran":
        return read_protran(path, device or Path(path).stem)
    return read_table(path, fmt, device)


def write_measurements(measurements: list[Measurement], path: str | Path, fmt: str) -> None:
    """Write the measurements in ``fmt`` (one of :data:`FILE_FORMATS`)."""
    if fmt not in FILE_FORMATS:
        raise InvalidInputError(f"format {fmt!r} is invalid; allowed: {', '.join(FILE_FORMATS)}")
    if fmt == "protran":
        write_protran(measurements, path)
    else:
        write_table(measurements, path, fmt)
