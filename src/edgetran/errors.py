"""Typed errors raised by the library. The CLI turns them into one line and exit code 2."""

from __future__ import annotations

import json
from collections.abc import Iterator
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


class MissingDependencyError(EdgeTranError, ImportError):
    """An optional dependency needed by one feature is not installed."""


class ExportError(EdgeTranError):
    """An export could not be produced or written."""


class VerificationError(EdgeTranError):
    """An exported artifact's outputs differ from PyTorch's beyond the tolerance."""


def read_json_file(path: Path) -> Any:
    """Parse a JSON file; an unreadable or malformed file is one :class:`InvalidInputError`."""
    try:
        return json.loads(path.read_text())
    except OSError as err:
        raise InvalidInputError(f"{path}: cannot read ({err.strerror})") from None
    except json.JSONDecodeError as err:
        raise InvalidInputError(
            f"{path}: not valid JSON ({err.msg} at line {err.lineno}, column {err.colno})"
        ) from None


def read_json_lines(
    path: Path, error: type[EdgeTranError] = InvalidInputError
) -> Iterator[tuple[int, dict[str, Any]]]:
    """``(line number, object)`` for each non-blank line of a JSON Lines file; a line that is
    not a JSON object raises ``error`` naming it."""
    try:
        with path.open(encoding="utf-8") as handle:
            for number, line in enumerate(handle, start=1):
                if not line.strip():
                    continue
                try:
                    row = json.loads(line)
                except json.JSONDecodeError as err:
                    raise error(f"{path}: line {number} is not valid JSON ({err.msg})") from None
                if not isinstance(row, dict):
                    raise error(f"{path}: line {number} is not a JSON object")
                yield number, row
    except UnicodeDecodeError:
        raise error(f"{path}: not UTF-8 text") from None
