"""``edgetran report``: a co-design run's report, rebuilt from its ``result.json`` alone."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer


def report(
    run_dir: Annotated[
        Path, typer.Argument(help="The output folder of edgetran codesign (holds result.json).")
    ],
    out: Annotated[
        Path | None, typer.Option("--out", help="Report file (default RUN_DIR/report.html).")
    ] = None,
) -> None:
    """Rebuild a co-design run's report.html from its result.json; print the report's path."""
    from edgetran.codesign.report import report_run

    typer.echo(report_run(run_dir, out))
