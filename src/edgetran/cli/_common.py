"""Shared CLI plumbing: bad input becomes one line on stderr and exit code 2."""

from __future__ import annotations

import functools
import json
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any, NoReturn, TypeVar

import typer

from edgetran.errors import EdgeTranError
from edgetran.space import REFERENCE_SPACE, Architecture, DesignSpace, load_architecture

F = TypeVar("F", bound=Callable[..., Any])


def fail(message: str) -> NoReturn:
    """Print ``error: message`` on stderr and exit with code 2."""
    typer.echo(f"error: {message}", err=True)
    raise typer.Exit(code=2)


def user_errors(func: F) -> F:
    """Turn library errors caused by the user's input into :func:`fail`."""

    @functools.wraps(func)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        try:
            return func(*args, **kwargs)
        except (EdgeTranError, OSError) as err:
            fail(str(err))

    return wrapper  # type: ignore[return-value]


def resolve_space(path: Path | None) -> DesignSpace:
    return REFERENCE_SPACE if path is None else DesignSpace.from_file(path)


def resolve_arch(spec: str) -> Architecture:
    return load_architecture(spec)


def print_json(data: Any) -> None:
    sys.stdout.write(json.dumps(data, indent=2) + "\n")
