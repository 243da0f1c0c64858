"""The flags of a command from the option table (deliverck/options.py), so that a flag's name,
type, default, metavar, help and environment variable are written once, in its Option row."""

from __future__ import annotations

import inspect
import os
from collections.abc import Callable
from typing import Any, get_type_hints

import typer

from deliverck.errors import UsageError
from deliverck.options import BY_NAME

_KW = inspect.Parameter.KEYWORD_ONLY
MAX_WORKERS = 256        # worker processes on one machine (bulk, explain); more is a typo


def default_workers() -> int:
    """The cores this process may run on (its CPU affinity, as a container or taskset sets it)."""
    count = getattr(os, "process_cpu_count", None)          # Python 3.13+
    n: int | None = count() if count else None
    if n is None:
        try:
            n = len(os.sched_getaffinity(0))
        except (AttributeError, OSError):
            n = os.cpu_count()
    return max(1, min(n or 1, MAX_WORKERS))


def workers(value: int | None) -> int:
    """--workers of `bulk` and `explain`: the cores by default, else 1 (one process) to MAX_WORKERS."""
    if value is None:
        return default_workers()
    if not 1 <= value <= MAX_WORKERS:
        raise UsageError(f"--workers must be 1 (one process) to {MAX_WORKERS}")
    return value


def table_flags(*order: str, **helps: str) -> Callable[[Callable[..., Any]], Callable[..., Any]]:
    """Give FN the flags of the table rows named in ORDER, placed among its own parameters as
    ORDER says (the order of `--help`); HELPS: this command's own wording of a row's help.  FN
    receives the table's values in **values, by Config field name, ready for build_config."""

    def decorate(fn: Callable[..., Any]) -> Callable[..., Any]:
        hints = get_type_hints(fn)
        own = {p.name: p for p in inspect.signature(fn).parameters.values() if p.kind is not p.VAR_KEYWORD}
        missing = set(own) - set(order)
        if missing:
            raise TypeError(f"{fn.__name__}: place {sorted(missing)} in the flag order")
        params = []
        for name in order:
            if name in own:
                params.append(own[name].replace(kind=_KW, annotation=hints.get(name, own[name].annotation)))
                continue
            row = BY_NAME[name]
            assert row.flag is not None, f"{name} is not a flag of the command line"
            option = typer.Option(row.flag_default, row.flag, metavar=row.metavar, envvar=row.env,
                                  help=helps.get(name, row.help))
            params.append(inspect.Parameter(name, _KW, default=option, annotation=row.flag_type))
        fn.__signature__ = inspect.Signature(params)  # type: ignore[attr-defined]
        return fn

    return decorate
