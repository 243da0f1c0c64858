"""`deliverck checks`: every check and every finding it can emit."""

from __future__ import annotations

import sys

import typer

from deliverck.errors import UsageError
from deliverck.target import _show


def checks_cmd(
    fmt: str = typer.Option("table", "--format", "-f", help="table, json or markdown."),
) -> None:
    """List every check and every finding it can emit, with severity and NDR keys."""
    from deliverck.report.checklist import render_checks  # when the command runs: --help stays fast

    if fmt not in ("table", "json", "markdown"):
        raise UsageError(f"unknown --format {_show(fmt)} (use one of: table, json, markdown)")
    sys.stdout.write(render_checks(fmt))
