"""`deliverck lab ...`: the hermetic lab's commands (deliverck/lab/cli.py), when the lab is installed."""

from __future__ import annotations

import typer


def register(app: typer.Typer) -> None:
    try:
        from deliverck.lab.cli import lab_app
    except ImportError:  # the lab is optional in a slim install
        return
    app.add_typer(lab_app, name="lab", help="The built-in hermetic lab (tests, demo, benchmark).")
