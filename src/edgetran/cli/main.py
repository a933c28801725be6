"""The ``edgetran`` command line.

Start-up is kept light: command modules import only Typer and the standard library at module
level, and each command imports the heavy libraries it needs (torch, transformers, optuna …)
in its body, so ``edgetran --help`` and the ``space`` commands answer at once.

Errors are turned into output in one place, :func:`main`: library errors and OS errors become
one ``error: …`` line and exit code 2; an unexpected exception becomes one line naming the log
file that holds its full traceback, and exit code 1; Ctrl-C becomes one ``interrupted: …`` line
(what was kept, how to continue) and exit code 130.
"""

from __future__ import annotations

import os
import sys

import typer

from edgetran import __version__
from edgetran.cli import (
    cluster_cmds,
    codesign_cmd,
    demo,
    export_cmd,
    growprune_cmd,
    model_cmds,
    profile_cmds,
    report_cmd,
    search_cmd,
    space_cmds,
    surrogate_cmds,
    train_cmds,
)
from edgetran.cli._common import one_line, write_crash_log
from edgetran.errors import EdgeTranError, Interrupted

#: The exit code of a command stopped by Ctrl-C (128 + SIGINT).
INTERRUPTED = 130

app = typer.Typer(
    help="EdgeTran: co-design heterogeneous transformer encoders and edge devices.",
    no_args_is_help=True,
    pretty_exceptions_enable=False,
    add_completion=False,
)
#: The commands, in the order ``edgetran --help`` lists them (in the data flow's order).
COMMANDS = (
    demo.demo,
    export_cmd.export,
    profile_cmds.env,
    profile_cmds.profile,
    train_cmds.evaluate,
    search_cmd.search,
    growprune_cmd.growprune,
    codesign_cmd.codesign,
    report_cmd.report,
    cluster_cmds.worker,
    cluster_cmds.scheduler,
)
#: The command groups by name, listed after the commands in this order.
GROUPS = {
    "space": space_cmds.app,
    "model": model_cmds.app,
    "measurements": profile_cmds.measurements_app,
    "surrogate": surrogate_cmds.app,
    "train": train_cmds.app,
}
for _command in COMMANDS:
    app.command()(_command)
for _name, _group in GROUPS.items():
    app.add_typer(_group, name=_name)


@app.callback()
def _root(
    version: bool = typer.Option(False, "--version", help="Print the version and exit."),
) -> None:
    """EdgeTran: co-design heterogeneous transformer encoders and edge devices."""
    if version:
        typer.echo(__version__)
        raise typer.Exit()


def _quiet_hugging_face() -> None:
    """Silence transformers' INFO logs and progress bars without importing it (the CLI
    reports results itself); a user's own setting of these variables wins."""
    os.environ.setdefault("TRANSFORMERS_VERBOSITY", "error")
    os.environ.setdefault("HF_HUB_DISABLE_PROGRESS_BARS", "1")


def _usage_error(err: typer.TyperException) -> int:
    """Print click's usage error (or the help of a bare group); the exit code."""
    context = getattr(err, "ctx", None)
    if type(err).__name__ == "NoArgsIsHelpError" and context is not None:
        typer.echo(context.get_help())
        return 0
    message = err.format_message() if hasattr(err, "format_message") else str(err)
    typer.echo(f"error: {one_line(message)}", err=True)
    return 2


def _silence_stdout() -> None:
    """Point stdout at /dev/null, so that Python's flush at exit finds no broken pipe."""
    devnull = os.open(os.devnull, os.O_WRONLY)
    os.dup2(devnull, sys.stdout.fileno())


def main() -> None:
    """Console entry point: every error is one line on stderr, never a traceback."""
    _quiet_hugging_face()
    try:
        code = app(standalone_mode=False)
    except typer.Abort:
        sys.exit(INTERRUPTED)
    except Interrupted as err:  # Ctrl-C, with what was kept and how to continue
        typer.echo(f"interrupted: {one_line(str(err))}", err=True)
        sys.exit(INTERRUPTED)
    except typer.TyperException as err:  # click's usage errors, as vendored by Typer
        sys.exit(_usage_error(err))
    except BrokenPipeError:  # the reader went away (`edgetran … --json | head`): not an error
        _silence_stdout()
        sys.exit(0)
    except (EdgeTranError, OSError) as err:
        from edgetran.store.masking import mask_credentials

        typer.echo(f"error: {mask_credentials(one_line(str(err)))}", err=True)
        sys.exit(2)
    except Exception as err:  # a bug, not bad input: keep the traceback, show one line
        from edgetran.store.masking import mask_credentials

        log = write_crash_log(err)
        typer.echo(
            f"error: unexpected {type(err).__name__}: {mask_credentials(one_line(str(err)))} "
            f"(this is a bug; the traceback is in {log})",
            err=True,
        )
        sys.exit(1)
    if code == INTERRUPTED:  # Ctrl-C where the command has nothing to say (Typer's code)
        typer.echo("interrupted", err=True)
    sys.exit(code if isinstance(code, int) else 0)


if __name__ == "__main__":
    main()
