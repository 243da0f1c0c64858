"""`deliverck report history DIR -o dashboard.html`: the fleet dashboard from the files cron keeps.

Reading DIR is deliverck.report.dashboard_history's, drawing deliverck.report.dashboard's;
the page is written like audit's --output (deliverck.fleet.output.write_atomic).  This is only
the command line.  Register it in cli/__init__.py with `report.register(app)`.
"""

from __future__ import annotations

import sys

import typer

from deliverck.errors import UsageError

report_app = typer.Typer(add_completion=False, no_args_is_help=True,
                         help="Pages made from reports deliverck wrote earlier.")


@report_app.command("history")
def history_cmd(
    directory: str = typer.Argument(..., metavar="DIR",
                                    help="Where cron keeps `deliverck ... --json` reports, audit JSON documents, "
                                         "audit --state files or `bulk -o` output (every *.json and *.jsonl file "
                                         "in it is read); or one bulk output file (the bulk summary)."),
    output: str | None = typer.Option(None, "--output", "-o", metavar="FILE",
                                         help="Write the HTML page to FILE atomically instead of standard output."),
    fmt: str = typer.Option("html", "--format", "-f", help="Output format: html (the only one)."),
    debug: bool = typer.Option(False, "--debug", help="Show tracebacks of internal errors."),
) -> None:
    """The fleet dashboard of the runs kept in DIR: every target's latest run (checks as columns),
    new and fixed findings since its run before, and a sparkline of its verdicts over time.

    A file that cannot be used is said on standard error and left out; exit 2 when no file can be."""
    if fmt != "html":
        raise UsageError(f"unknown --format {fmt!r} (use: html)")
    from deliverck.fleet.audit import check_paths
    from deliverck.fleet.output import write_atomic, write_stdout
    from deliverck.report.dashboard import render_history
    from deliverck.report.dashboard_history import read_history

    if output is None and sys.stdout is None:
        raise UsageError("standard output is closed: give --output FILE")
    check_paths(output, None)                 # before anything is read: bad usage writes nothing
    hist = read_history(directory)
    for note in hist.notes:
        sys.stderr.write(f"deliverck: warning: {note}\n")
    page = render_history(hist.observations, hist.notes, hist.used)
    if output:
        write_atomic(output, page)
    else:
        write_stdout(page)


def register(app: typer.Typer) -> None:
    app.add_typer(report_app, name="report", help="Pages made from reports deliverck wrote earlier (history).")
