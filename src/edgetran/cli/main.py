"""The ``edgetran`` command line."""

from __future__ import annotations

import sys

import typer
from transformers.utils import logging as hf_logging

from edgetran import __version__
from edgetran.cli import model_cmds, space_cmds, surrogate_cmds, train_cmds
from edgetran.cli.demo import demo
from edgetran.cli.export_cmd import export
from edgetran.cli.profile_cmds import env, measurements_app, profile
from edgetran.cli.search_cmd import search

app = typer.Typer(
    help="EdgeTran: co-design heterogeneous transformer encoders and edge devices.",
    no_args_is_help=True,
    pretty_exceptions_enable=False,
    add_completion=False,
)
app.add_typer(space_cmds.app, name="space")
app.add_typer(model_cmds.app, name="model")
app.command()(demo)
app.command()(export)
app.command()(env)
app.command()(profile)
app.add_typer(measurements_app, name="measurements")
app.add_typer(surrogate_cmds.app, name="surrogate")
app.add_typer(train_cmds.app, name="train")
app.command()(train_cmds.evaluate)
app.command()(search)


@app.callback()
def _root(
    version: bool = typer.Option(False, "--version", help="Print the version and exit."),
) -> None:
    """EdgeTran: co-design heterogeneous transformer encoders and edge devices."""
    if version:
        typer.echo(__version__)
        raise typer.Exit()


def _quiet_optuna() -> None:
    # Optuna logs every trial at INFO; the CLI reports results itself.
    try:
        import optuna
    except ImportError:
        return
    optuna.logging.set_verbosity(optuna.logging.WARNING)


def main() -> None:
    """Console entry point: usage errors are one line on stderr and exit code 2."""
    hf_logging.disable_progress_bar()
    hf_logging.set_verbosity_error()
    _quiet_optuna()
    try:
        code = app(standalone_mode=False)
    except typer.Abort:
        sys.exit(130)
    except typer.TyperException as err:  # click's usage errors, as vendored by Typer
        context = getattr(err, "ctx", None)
        if type(err).__name__ == "NoArgsIsHelpError" and context is not None:
            typer.echo(context.get_help())
            sys.exit(0)
        message = err.format_message() if hasattr(err, "format_message") else str(err)
        typer.echo(f"error: {message}", err=True)
        sys.exit(2)
    sys.exit(code if isinstance(code, int) else 0)


if __name__ == "__main__":
    main()
