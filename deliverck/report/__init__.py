"""Renderers: one module per output format, each `render(report, options) -> str`."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

from deliverck.model import Report


@dataclass(frozen=True)
class RenderOptions:
    verbose: bool = False     # table: also show info-level findings and evidence
    debug: bool = False       # include tracebacks of crashed checks


def _table(report: Report, opts: RenderOptions) -> str:
    from deliverck.report.table import render

    return render(report, opts)


def _json(report: Report, opts: RenderOptions) -> str:
    from deliverck.report.json import render

    return render(report, opts)


def _prometheus(report: Report, opts: RenderOptions) -> str:
    from deliverck.report.prometheus import render

    return render(report, opts)


def _junit(report: Report, opts: RenderOptions) -> str:
    from deliverck.report.junit import render

    return render(report, opts)


def _markdown(report: Report, opts: RenderOptions) -> str:
    from deliverck.report.markdown import render

    return render(report, opts)


def _github(report: Report, opts: RenderOptions) -> str:
    from deliverck.report.github import render

    return render(report, opts)


def _html(report: Report, opts: RenderOptions) -> str:
    from deliverck.report.html import render

    return render(report, opts)


FORMATS: dict[str, Callable[[Report, RenderOptions], str]] = {
    "table": _table,
    "json": _json,
    "junit": _junit,
    "markdown": _markdown,
    "github": _github,
    "prometheus": _prometheus,
    "html": _html,
}
