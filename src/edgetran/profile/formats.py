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
"""

from __future__ import annotations

import json
import math
import re
from pathlib import Path
from typing import Any

from edgetran.errors import ArchitectureError, InvalidInputError, read_json_file
from edgetran.space import REFERENCE_SPACE, Architecture
from edgetran.store import Measurement

FILE_FORMATS = ("protran", "csv", "parquet")
PROTRAN_CAVEAT = (
    "reference ProTran: latency is whole-process wall time per sequence (start-up included); "
    "energy is total board/rail power, idle not subtracted"
)
_NESTED = ("model_dict", "latency_ci95_s", "environment", "extra")
_INTEGER = ("batch_size", "seq_len", "power_samples", "threads", "repeats", "warmup")


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


def _number(entry: str, field: str, value: Any) -> float:
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise InvalidInputError(f"entry {entry}: {field}={value!r} is not a number")
    if math.isnan(value) or math.isinf(value) or value < 0:
        raise InvalidInputError(f"entry {entry}: {field}={value!r}; expected a finite value ≥ 0")
    return float(value)


def read_protran(path: str | Path, device: str, seq_len: int = 128) -> list[Measurement]:
    path = Path(path)
    data = read_json_file(path)
    if not isinstance(data, dict):
        raise InvalidInputError(f"{path}: expected a JSON object keyed by model hash")
    batch, runs = _protran_shape(path)
    result = []
    for key, entry in data.items():
        if not isinstance(entry, dict) or "model_dict" not in entry or "performance" not in entry:
            raise InvalidInputError(f"{path}: entry {key}: needs 'model_dict' and 'performance'")
        try:
            arch = Architecture.from_dict(entry["model_dict"])
        except ArchitectureError as err:
            raise InvalidInputError(f"{path}: entry {key}: {err}") from None
        performance = entry["performance"]
        values = {}
        for field in ("latency", "energy", "peak_power"):
            if not isinstance(performance, dict) or field not in performance:
                raise InvalidInputError(f"{path}: entry {key}: performance.{field} is missing")
            values[field] = _number(key, f"performance.{field}", performance[field])
        extra = {
            "protran_key": key,
            "model_type": entry.get("model_type"),
            "embedding": entry.get("embedding"),
            "file": path.name,
            "runs": runs,
            "caveat": PROTRAN_CAVEAT,
        }
        result.append(
            Measurement(
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
    import pandas as pd

    frame = pd.DataFrame(_rows(measurements))
    if fmt == "csv":
        frame.to_csv(path, index=False)
    else:
        frame.to_parquet(path, index=False)


def read_table(path: str | Path, fmt: str, device: str | None = None) -> list[Measurement]:
    """Read CSV or Parquet; ``device`` (if given) replaces the file's device names."""
    import pandas as pd

    path = Path(path)
    try:
        frame = pd.read_csv(path) if fmt == "csv" else pd.read_parquet(path)
    except (OSError, ValueError, pd.errors.ParserError) as err:
        raise InvalidInputError(f"{path}: cannot read as {fmt} ({err})") from None
    if frame.empty:
        raise InvalidInputError(f"{path}: no measurements")
    result = []
    for number, record in enumerate(frame.to_dict("records"), start=1):
        try:
            result.append(_from_row(record, device))
        except (InvalidInputError, KeyError, TypeError, ValueError) as err:
            raise InvalidInputError(f"{path}: row {number}: {_reason(err)}") from None
    return result


def _reason(err: Exception) -> str:
    return f"missing column {err}" if isinstance(err, KeyError) else str(err)


def _from_row(record: dict[str, Any], device: str | None) -> Measurement:
    data = {k: (None if _is_missing(v) else v) for k, v in record.items()}
    for key in _NESTED:
        if isinstance(data.get(key), str):
            data[key] = json.loads(data[key])
    for key in _INTEGER:
        if data.get(key) is not None:
            data[key] = int(data[key])
    for key in ("hash", "model_dict", "device", "runtime", "latency_s", "meter", "meter_kind"):
        if data.get(key) is None:
            raise KeyError(key)
    data["environment"] = data.get("environment") or {}
    data["extra"] = data.get("extra") or {}
    if device is not None:
        data["device"] = device
    Architecture.from_dict(data["model_dict"])  # reject malformed architectures here
    return Measurement.from_dict(data)


def _is_missing(value: Any) -> bool:
    return value is None or (isinstance(value, float) and math.isnan(value))


def read_measurements(path: str | Path, fmt: str, device: str | None) -> list[Measurement]:
    """Read a measurement file; ProTran files need ``device`` (default: the file name)."""
    if fmt not in FILE_FORMATS:
        raise InvalidInputError(f"format {fmt!r} is invalid; allowed: {', '.join(FILE_FORMATS)}")
    if fmt == "protran":
        return read_protran(path, device or Path(path).stem)
    return read_table(path, fmt, device)


def write_measurements(measurements: list[Measurement], path: str | Path, fmt: str) -> None:
    if fmt not in FILE_FORMATS:
        raise InvalidInputError(f"format {fmt!r} is invalid; allowed: {', '.join(FILE_FORMATS)}")
    if fmt == "protran":
        write_protran(measurements, path)
    else:
        write_table(measurements, path, fmt)
