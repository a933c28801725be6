"""Loading one device's measurements (and prior devices') from files or the store."""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Sequence
from pathlib import Path

from edgetran.profile.formats import read_measurements
from edgetran.store import Measurement, Store
from edgetran.store.database import mask_url
from edgetran.surrogate.base import SurrogateError

SOURCE_FORMATS = ("protran", "csv", "parquet", "db")
_SUFFIX = {"protran": "*.json", "csv": "*.csv", "parquet": "*.parquet"}


def _by_device(items: Sequence[Measurement]) -> dict[str, list[Measurement]]:
    groups: dict[str, list[Measurement]] = defaultdict(list)
    for m in items:
        groups[m.device].append(m)
    return dict(groups)


def load_all(source: str | Path, fmt: str) -> dict[str, list[Measurement]]:
    """Every device's measurements in a file, a folder of files, or a database URL."""
    if fmt not in SOURCE_FORMATS:
        raise SurrogateError(f"format {fmt!r} is invalid; allowed: {', '.join(SOURCE_FORMATS)}")
    if fmt == "db":
        with Store(source, create=False) as store:
            return _by_device(store.measurements())
    path = Path(source)
    if path.is_dir():
        groups: dict[str, list[Measurement]] = {}
        for file in sorted(path.glob(_SUFFIX[fmt])):
            groups.update(load_all(file, fmt))
        return groups
    if not path.is_file():
        raise SurrogateError(f"{path}: no such file or folder")
    return _by_device(read_measurements(path, fmt, None))


def load_device(source: str | Path, fmt: str, device: str) -> list[Measurement]:
    """One device's measurements; a clear error if the device is absent."""
    groups = load_all(source, fmt)
    if device not in groups:
        found = ", ".join(sorted(groups)) or "none"
        raise SurrogateError(
            f"device {device!r} is not in {mask_url(str(source))} (devices there: {found})"
        )
    return groups[device]


def load_priors(
    sources: Sequence[str | Path], fmt: str, exclude: str
) -> dict[str, list[Measurement]]:
    """Measurements of other devices; the target device itself is always left out."""
    priors: dict[str, list[Measurement]] = {}
    for source in sources:
        priors.update(load_all(source, fmt))
    priors.pop(exclude, None)
    return priors
