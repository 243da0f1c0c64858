"""Typer's value coercion without pydantic, for the plain values deliverck's flags take.

Typer 0.29 turns every flag value through a pydantic TypeAdapter, built when the value is first
coerced: importing pydantic and building the adapters cost 80-150 ms of every run (issue 16), for
flags that are plain text, whole numbers, decimals, switches and lists of text, and that
deliverck.options judges again anyway.  Here each such flag gets a coercer that answers the
common, unambiguous spellings itself ("12", "0.5", any text) and hands every other value to
typer's own coercion, built on demand, so the result and every error message stay typer's: an
unusual spelling ("1_000", " 3", "1e3") or a bad value ("abc") pays pydantic, a normal run does
not.  tests/test_startup.py checks both halves: no pydantic in a run, and the same values as
typer's coercion over a corpus of spellings.

Older typer releases (before the pydantic coercion) have no RuntimeParam: then nothing is done.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any

try:
    from typer._coercion import RuntimeParam, build_runtime_param
except ImportError:  # typer without pydantic coercion: nothing to avoid
    RuntimeParam = None  # type: ignore[assignment,misc]

_INT = re.compile(r"-?[0-9]{1,18}")
_DECIMAL = re.compile(r"-?[0-9]{1,15}(?:\.[0-9]{1,15})?")
_KINDS = {str: "str", int: "int", float: "float", bool: "bool", list[str]: "list"}
_MISS = object()


def quick(kind: str, value: Any) -> Any:
    """VALUE as typer would coerce it to KIND, or _MISS when that takes typer's own rules."""
    if kind == "str":
        return value if type(value) is str else _MISS
    if kind == "int":
        if type(value) is int:
            return value
        return int(value) if type(value) is str and _INT.fullmatch(value) else _MISS
    if kind == "float":
        if type(value) is float:
            return value
        # Plain decimals only: their nearest double is the same in Python and in pydantic-core.
        return float(value) if type(value) is str and _DECIMAL.fullmatch(value) else _MISS
    if kind == "bool":
        return value if type(value) is bool else _MISS
    if kind == "list" and isinstance(value, (list, tuple)) and all(type(v) is str for v in value):
        return list(value)
    return _MISS


if RuntimeParam is not None:

    @dataclass(frozen=True)
    class QuickParam(RuntimeParam):
        """Typer's RuntimeParam contract (its coerce() handles absent and repeated values);
        only the per-value step is answered here when it can be."""

        kind: str = "str"

        def _coerce_value(self, value: Any, param: Any, ctx: Any) -> Any:
            out = quick(self.kind, value)
            if out is not _MISS:
                return out
            slow = build_runtime_param(param.type_descriptor)
            param._runtime_param = slow
            return slow._coerce_value(value, param=param, ctx=ctx)


def _kind(param: Any) -> str | None:
    """The kind of PARAM's value when typer would coerce it by its type alone (no parser, file,
    path, choice or bounds of typer's), else None."""
    desc = getattr(param, "type_descriptor", None)
    if desc is None or getattr(param, "_runtime_param", _MISS) is not None:
        return None
    info = desc.parameter_info
    if (getattr(info, "parser", None) is not None or getattr(info, "click_type", None) is not None
            or desc.is_file or desc.is_path or desc.is_choice
            or getattr(info, "min", None) is not None or getattr(info, "max", None) is not None):
        return None
    try:
        return _KINDS.get(desc.annotation)
    except TypeError:  # an unhashable annotation: typer's own coercion
        return None


def _quicken(param: Any) -> None:
    kind = _kind(param)
    if kind is not None:
        param._runtime_param = QuickParam(parameter_info=param.type_descriptor.parameter_info,
                                          annotation=param.type_descriptor.annotation, kind=kind)


def install(command: Any) -> None:
    """Give every plain flag and argument of COMMAND and its subcommands the quick coercer."""
    if RuntimeParam is None:
        return
    for param in getattr(command, "params", ()):
        _quicken(param)
    help_option = getattr(command, "get_help_option", None)
    if help_option is not None:
        # --help is made per context on first use (it depends on the context's option names),
        # and is coerced on every run like any flag.
        def get_help_option(ctx: Any, _made: Any = help_option) -> Any:
            option = _made(ctx)
            if option is not None:
                _quicken(option)
            return option

        command.get_help_option = get_help_option
    for sub in getattr(command, "commands", {}).values():
        install(sub)
