"""Typed errors raised by the library. The CLI turns them into one line and exit code 2.

Also the shared file readers and the output helpers, which turn every way a file can be
wrong into one of these errors. The output helpers hold the one rule of every command that
writes: a non-empty output folder or an existing output file is refused unless ``--force``.
"""

from __future__ import annotations

import json
import math
import shutil
import tempfile
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any


class EdgeTranError(Exception):
    """Base class of every error the library raises on purpose."""


class ArchitectureError(EdgeTranError, ValueError):
    """An architecture (or one of its layers) is malformed.

    Attributes:
        field: the offending field (``hidden``, ``heads``, ``ff``, ``head_dim``, ``layers`` …).
        value: the bad value.
        allowed: a human-readable description of what is allowed.
        layer: 0-based index of the layer, or ``None`` for architecture-level fields.
    """

    def __init__(self, field: str, value: Any, allowed: str, layer: int | None = None) -> None:
        self.field, self.value, self.allowed, self.layer = field, value, allowed, layer
        where = f"layer {layer}: " if layer is not None else ""
        super().__init__(f"{where}{field}={value!r} is invalid; allowed: {allowed}")

    def in_layer(self, layer: int) -> ArchitectureError:
        """The same error, located in ``layer``."""
        return ArchitectureError(self.field, self.value, self.allowed, layer)


class DesignSpaceError(EdgeTranError, ValueError):
    """A design-space description is malformed, or a value lies outside the space."""


class ArchitectureNotFoundError(EdgeTranError, LookupError):
    """An architecture name or file could not be resolved."""


class InvalidInputError(EdgeTranError, ValueError):
    """A file or value given by the user cannot be read (bad JSON, wrong type …)."""


class ModelNotFoundError(EdgeTranError, LookupError):
    """A saved-model directory is missing or holds no FlexiBERT model."""


class ModelTooLargeError(EdgeTranError, ValueError):
    """A model's parameters would not fit in this machine's memory."""


class MissingDependencyError(EdgeTranError, ImportError):
    """An optional dependency needed by one feature is not installed."""


class ExportError(EdgeTranError):
    """An export could not be produced or written."""


class SearchError(EdgeTranError, ValueError):
    """Search settings or inputs are unusable."""


class VerificationError(EdgeTranError):
    """An exported artifact's outputs differ from PyTorch's beyond the tolerance."""


def read_text_file(path: Path, error: type[EdgeTranError] = InvalidInputError) -> str:
    """The text of a UTF-8 file (a byte-order mark is allowed); an unreadable file or one in
    another encoding (UTF-16, binary) is one ``error``."""
    try:
        data = path.read_bytes()
    except OSError as err:
        raise error(f"{path}: cannot read ({err.strerror or err})") from None
    try:
        return data.decode("utf-8-sig")
    except UnicodeDecodeError:
        raise error(f"{path}: not UTF-8 text") from None


def parse_json(
    text: str, source: str | None = None, error: type[EdgeTranError] = InvalidInputError
) -> Any:
    """Parse JSON text read from ``source``; malformed or absurdly nested text is one ``error``."""
    where = f"{source}: " if source else ""
    try:
        return json.loads(text)
    except json.JSONDecodeError as err:
        raise error(
            f"{where}not valid JSON ({err.msg} at line {err.lineno}, column {err.colno})"
        ) from None
    except RecursionError:
        raise error(f"{where}not valid JSON (nested too deeply)") from None
    except ValueError as err:  # e.g. an integer beyond Python's digit limit
        raise error(f"{where}not valid JSON ({err})") from None


def read_json_file(path: Path, error: type[EdgeTranError] = InvalidInputError) -> Any:
    """Parse a UTF-8 JSON file; an unreadable, non-UTF-8 or malformed file is one ``error``."""
    return parse_json(read_text_file(path, error), str(path), error)


def read_json_lines(
    path: Path, error: type[EdgeTranError] = InvalidInputError
) -> Iterator[tuple[int, dict[str, Any]]]:
    """``(line number, object)`` for each non-blank line of a JSON Lines file (UTF-8, a
    byte-order mark allowed); a line that is not a JSON object raises ``error`` naming it."""
    try:
        with path.open(encoding="utf-8-sig") as handle:
            for number, line in enumerate(handle, start=1):
                if not line.strip():
                    continue
                try:
                    row = json.loads(line)
                except RecursionError:
                    raise error(f"{path}: line {number} is nested too deeply") from None
                except ValueError as err:
                    problem = getattr(err, "msg", err)
                    raise error(f"{path}: line {number} is not valid JSON ({problem})") from None
                if not isinstance(row, dict):
                    raise error(f"{path}: line {number} is not a JSON object")
                yield number, row
    except UnicodeDecodeError:
        raise error(f"{path}: not UTF-8 text") from None


def finite_for_json(value: Any) -> Any:
    """``value`` (nested dicts, lists and tuples) with every float that is not finite as
    ``None``: JSON has no NaN or Infinity, and strict parsers refuse them."""
    if isinstance(value, float) and not math.isfinite(value):
        return None
    if isinstance(value, dict):
        return {key: finite_for_json(item) for key, item in value.items()}
    if isinstance(value, list | tuple):
        return [finite_for_json(item) for item in value]
    return value


#: What a command that writes says of an output it will not overwrite on its own.
OVERWRITE_ADVICE = "use --force to overwrite"


def prepare_output_dir(
    out_dir: str | Path,
    error: type[EdgeTranError] = InvalidInputError,
    *,
    empty: bool = False,
    keep: Iterable[str | Path] = (),
    advice: str = OVERWRITE_ADVICE,
) -> Path:
    """Create ``out_dir`` and check that it is writable, before any slow work.

    Raises ``error`` if ``out_dir`` is a file, cannot be written, or (with ``empty``) already
    holds files other than those of ``keep`` (a database or workspace the command was told
    to keep there), saying ``advice``.
    """
    out = Path(out_dir)
    if out.exists() and not out.is_dir():
        raise error(f"{out}: is a file, not a directory")
    if empty and out.is_dir() and _replaceable(out, keep):
        raise error(f"{out}: directory is not empty ({advice})")
    try:
        out.mkdir(parents=True, exist_ok=True)
        with tempfile.NamedTemporaryFile(dir=out):
            pass
    except OSError as err:
        raise error(f"{out}: cannot write there ({err.strerror or err})") from None
    return out


def prepare_output_file(
    path: str | Path, error: type[EdgeTranError] = InvalidInputError, *, force: bool = False
) -> Path:
    """Check, before any slow work, that the file ``path`` may be written: refused when it is
    a folder, when its folder cannot be written, or when it exists and ``force`` is not set."""
    out = Path(path)
    if out.is_dir():
        raise error(f"{out}: is a directory, not a file")
    if out.exists() and not force:
        raise error(f"{out}: file exists ({OVERWRITE_ADVICE})")
    try:
        with tempfile.NamedTemporaryFile(dir=out.parent):
            pass
    except OSError as err:
        raise error(f"{out}: cannot write there ({err.strerror or err})") from None
    return out


def clear_output_dir(
    out_dir: str | Path,
    error: type[EdgeTranError] = InvalidInputError,
    *,
    keep: Iterable[str | Path] = (),
) -> Path:
    """Remove what ``out_dir`` holds, but ``keep``, so that a fresh run mixes nothing of an
    earlier one (what ``--force`` asks of a command that owns its whole folder).

    Raises ``error`` for the current folder or one above it: clearing those would take the
    user's own files.
    """
    out = Path(out_dir)
    here = Path.cwd().resolve()
    if out.is_dir() and (out.resolve() == here or out.resolve() in here.parents):
        raise error(f"{out}: refusing to clear the current folder or one above it for --force")
    for entry in _replaceable(out, keep) if out.is_dir() else ():
        if entry.is_dir() and not entry.is_symlink():
            shutil.rmtree(entry)
        else:
            entry.unlink()
    return prepare_output_dir(out, error)


def _replaceable(out: Path, keep: Iterable[str | Path]) -> list[Path]:
    """The entries of the folder ``out`` but those holding a path of ``keep`` (or, beside a
    kept file, its companions: a SQLite database's ``-wal`` and ``-journal`` files)."""
    kept = [Path(path).absolute() for path in keep]

    def held(entry: Path) -> bool:
        entry = entry.absolute()
        return any(
            path == entry or entry in path.parents
            or (path.parent == entry.parent and entry.name.startswith(path.name + "-"))
            for path in kept
        )  # fmt: skip

    return [entry for entry in out.iterdir() if not held(entry)]


@contextmanager
def output_dir(
    out_dir: str | Path, error: type[EdgeTranError] = InvalidInputError, *, empty: bool = False
) -> Iterator[Path]:
    """:func:`prepare_output_dir` for the duration of the block; if the block fails, the
    folders this call created are removed again (folders that existed are left alone)."""
    out = Path(out_dir)
    created = None
    for folder in (out, *out.parents):
        if folder.exists():
            break
        created = folder
    prepare_output_dir(out, error, empty=empty)
    try:
        yield out
    except BaseException:
        if created is not None:
            shutil.rmtree(created, ignore_errors=True)
        raise


class Interrupted(BaseException):
    """Ctrl-C, with what the interrupted work kept and how to continue it: the command line
    prints ``interrupted: <message>`` and exits with code 130. Like KeyboardInterrupt, it is
    no Exception, so that no ``except Exception`` takes it for a failure."""


class ClusterError(EdgeTranError):
    """A Dask scheduler or worker cannot be reached or used (an address, a device no worker
    offers, a TLS file), or a job failed on a worker."""


class JobTimeoutError(ClusterError, TimeoutError):
    """A job routed to the cluster did not finish within its time limit (e.g. the only worker
    of its device disappeared)."""
