"""Shared CLI plumbing: one-line errors, crash logs, JSON output, common resolvers.

Imports only the standard library and Typer: every command module imports this one, and the
CLI must start at once.
"""

from __future__ import annotations

import datetime as dt
import functools
import inspect
import json
import os
import sys
import tempfile
import traceback
from collections.abc import Callable, Collection, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any, NoReturn

import typer

if TYPE_CHECKING:
    from edgetran.space import Architecture, DesignSpace

#: Where unexpected errors leave their traceback: ``$EDGETRAN_LOG_DIR``, else
#: ``.edgetran/logs`` in the workspace (the current directory, beside ``edgetran.db``).
LOG_DIR_ENV = "EDGETRAN_LOG_DIR"


#: The help of ``--force`` on every command that writes a folder (export, codesign, growprune,
#: train); without it a non-empty ``--out`` is refused in one line (``errors.OVERWRITE_ADVICE``).
FORCE_HELP = "Overwrite a non-empty --out."


def force_option(rich_help_panel: str | None = None) -> Any:
    """The ``--force`` option of a command that writes a folder (one flag, one help text)."""
    return typer.Option("--force", help=FORCE_HELP, rich_help_panel=rich_help_panel)


#: ``--force`` as a parameter's annotation.
Force = Annotated[bool, force_option()]
#: ``--db``: the workspace database.
DbOption = Annotated[
    str | None, typer.Option("--db", help="SQLAlchemy URL or SQLite file (default: edgetran.db).")
]
#: ``--json``: the result as JSON on stdout.
JsonOption = Annotated[bool, typer.Option("--json", help="Print JSON.")]
#: ``--seed``.
SeedOption = Annotated[int, typer.Option("--seed", help="Random seed.")]
#: ``--force`` of a command that writes one file (``--out FILE``).
ForceFile = Annotated[bool, typer.Option("--force", help="Overwrite --out if it exists.")]
#: ``ARCH``: an architecture argument, resolved by :func:`resolve_arch`.
ArchArgument = Annotated[
    str, typer.Argument(help="A JSON file (model_dict or own form) or a name.")
]
#: ``--vocab-size``: the vocabulary of a built model (the reference's by default).
VocabSize = Annotated[int, typer.Option("--vocab-size", min=1, help="Vocabulary size.")]


def option_groups(**groups: Callable[..., Any]) -> Callable[[Callable[..., Any]], Any]:
    """Decorator: each keyword-only parameter ``NAME`` of ``NAME=build`` becomes ``build``'s
    options, in its place, and the command receives ``build(...)``'s result as ``NAME``.

    Typer builds a command's options from its signature, so several commands that take one
    group of options declare it once, as the parameters of ``build`` (annotated as any Typer
    parameter). A parameter of ``build`` that the command declares too (``seed``) stays the
    command's option and goes to both.
    """

    def decorate(command: Callable[..., Any]) -> Any:
        taken = {name: _parameters(build) for name, build in groups.items()}
        own = _parameters(command, skip=groups)
        parameters = []
        for param in inspect.signature(command).parameters.values():
            if param.name in groups:
                parameters += [p for p in taken[param.name].values() if p.name not in own]
            else:
                parameters.append(own[param.name])

        @functools.wraps(command)
        def run(**options: Any) -> Any:
            built = {
                name: build(**{n: options[n] for n in taken[name]})
                for name, build in groups.items()
            }
            return command(**{n: v for n, v in options.items() if n in own}, **built)

        run.__signature__ = inspect.Signature(parameters)  # type: ignore[attr-defined]
        run.__annotations__ = {p.name: p.annotation for p in parameters}
        return run

    return decorate


def _parameters(
    function: Callable[..., Any], skip: Collection[str] = ()
) -> dict[str, inspect.Parameter]:
    """``function``'s parameters but ``skip``, keyword-only, with their annotations as objects:
    Typer reads a signature that is given as it stands, and under ``from __future__ import
    annotations`` an annotation is a string (evaluated as ``inspect.signature(eval_str=True)``
    does; ``skip`` may name types imported only for type checkers)."""
    parameters = {}
    for param in inspect.signature(function).parameters.values():
        if param.name in skip:
            continue
        annotation = param.annotation
        if isinstance(annotation, str):
            annotation = eval(annotation, function.__globals__)
        kind = inspect.Parameter.KEYWORD_ONLY
        parameters[param.name] = param.replace(annotation=annotation, kind=kind)
    return parameters


def fail(message: str) -> NoReturn:
    """Print ``error: message`` on stderr and exit with code 2."""
    typer.echo(f"error: {one_line(message)}", err=True)
    raise typer.Exit(code=2)


def one_line(message: str) -> str:
    """``message`` with its line breaks and runs of blanks folded into single spaces."""
    return " ".join(message.split())


def write_crash_log(err: BaseException) -> Path:
    """Write ``err``'s traceback to a new log file in the workspace; its path.

    Passwords in database URLs are masked, as everywhere else. Falls back to the temporary
    folder when the workspace is not writable, so that the report of one failure never raises
    another.
    """
    from edgetran.store.masking import mask_credentials

    stamp = dt.datetime.now().strftime("%Y%m%d-%H%M%S")
    command = f"edgetran {' '.join(sys.argv[1:])}\n\n"
    text = mask_credentials(command + "".join(traceback.format_exception(err)))
    folders = [
        Path(os.environ.get(LOG_DIR_ENV, Path(".edgetran") / "logs")),
        tempfile.gettempdir(),
    ]
    for folder in map(Path, folders):
        try:
            folder.mkdir(parents=True, exist_ok=True)
            handle, name = tempfile.mkstemp(prefix=f"crash-{stamp}-", suffix=".log", dir=folder)
            with os.fdopen(handle, "w", encoding="utf-8") as stream:
                stream.write(text)
            return Path(name)
        except OSError:
            continue
    return Path(os.devnull)


def resolve_space(path: Path | None) -> DesignSpace:
    from edgetran.space import REFERENCE_SPACE, DesignSpace

    return REFERENCE_SPACE if path is None else DesignSpace.from_file(path)


def resolve_arch(spec: str) -> Architecture:
    from edgetran.space import load_architecture

    return load_architecture(spec)


def print_json(data: Any) -> None:
    """Write ``data`` as strict JSON: a number that is not finite (an R² of constant targets)
    becomes ``null``, as JSON has no NaN or Infinity and strict parsers refuse them; database
    passwords in it are masked."""
    from edgetran.errors import finite_for_json
    from edgetran.store.masking import mask_secrets

    sys.stdout.write(json.dumps(finite_for_json(mask_secrets(data)), indent=2) + "\n")


def quiet_optuna() -> None:
    """Optuna logs every trial at INFO; the commands that use it report results themselves."""
    import optuna

    optuna.logging.set_verbosity(optuna.logging.WARNING)


@contextmanager
def on_interrupt(kept: str) -> Iterator[None]:
    """Ctrl-C in the block ends the command with one line, ``interrupted: {kept}``: what the
    work stored so far and how to continue it (``main`` prints it and exits with 130)."""
    try:
        yield
    except KeyboardInterrupt:
        from edgetran.errors import Interrupted

        raise Interrupted(kept) from None


def database_name(db: str | None) -> str:
    """The workspace database as a message may name it (``edgetran.db``; a URL's password
    masked)."""
    from edgetran.store.database import DEFAULT_DB, mask_credentials

    return mask_credentials(str(db or DEFAULT_DB))
