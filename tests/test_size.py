"""Issue 15: no module over 500 lines and no function over 80 lines, or a one-line reason.

A module or function past its limit passes only with a comment line starting `# size:` at its
top (for a module: before its first statement after the docstring; for a function: before the
first statement of its body after the docstring), saying why a split would hurt (a data table, a
state machine best read whole).  The measure is the physical line count: blank lines, comments
and docstrings count, because they are what a reader scrolls through.
"""

from __future__ import annotations

import ast
import pathlib

ROOT = pathlib.Path(__file__).resolve().parent.parent
PACKAGES = ("deliverck", "checks")
MAX_MODULE = 500
MAX_FUNCTION = 80
REASON = "# size:"

# Files other helpers of issue 15 are still moving or rewriting while this test lands.  The lead
# empties this list once their work is merged; an entry here silences every offence of that file.
ALLOWED_FOR_NOW: set[str] = set()


def _has_reason(lines: list[str], first: int, last: int) -> bool:
    """A `# size:` comment line among lines first..last (1-based, inclusive)."""
    return any(ln.lstrip().startswith(REASON) for ln in lines[first - 1:last])


def _code_start(body: list[ast.stmt]) -> int:
    """The line of the first statement that is not a docstring (where a reason must come before)."""
    rest = body[1:] if body and isinstance(body[0], ast.Expr) and isinstance(getattr(body[0], "value", None), ast.Constant) \
        and isinstance(body[0].value.value, str) else body
    return rest[0].lineno if rest else body[-1].end_lineno if body else 1


def offences(source: str, name: str) -> list[str]:
    """'name: module N lines' and 'name:L func: N lines' for each part over its limit without a reason."""
    lines = source.splitlines()
    tree = ast.parse(source)
    out = []
    if len(lines) > MAX_MODULE and not _has_reason(lines, 1, _code_start(tree.body)):
        out.append(f"{name}: module {len(lines)} lines (limit {MAX_MODULE})")
    for node in ast.walk(tree):
        if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)):
            size = node.end_lineno - node.lineno + 1
            if size > MAX_FUNCTION and not _has_reason(lines, node.lineno, _code_start(node.body)):
                out.append(f"{name}:{node.lineno} {node.name}: {size} lines (limit {MAX_FUNCTION})")
    return out


def test_no_module_or_function_over_the_limits():
    found, allowed = [], []
    for package in PACKAGES:
        for path in sorted((ROOT / package).rglob("*.py")):
            rel = path.relative_to(ROOT).as_posix()
            for o in offences(path.read_text(encoding="utf-8"), rel):
                (allowed if rel in ALLOWED_FOR_NOW else found).append(o)
    if allowed:
        print("\nover the limits, allowed for now (ALLOWED_FOR_NOW):\n  " + "\n  ".join(allowed))
    assert not found, "over the limits without a '# size:' reason line:\n  " + "\n  ".join(found)


def _function(lines: int, reason: bool = False, docstring: bool = False) -> str:
    head = ["def f():"] + (['    """Why."""'] if docstring else []) + (["    # size: a table read whole"] if reason else [])
    return "\n".join(head + ["    x = 1"] * (lines - len(head))) + "\n"


def test_the_measure_sees_long_functions_and_modules_and_reasons():
    assert offences(_function(80), "m") == []
    assert offences(_function(81), "m") == ["m:1 f: 81 lines (limit 80)"]
    assert offences(_function(81, reason=True), "m") == []
    assert offences(_function(81, reason=True, docstring=True), "m") == []
    late = _function(81).replace("    x = 1\n", "    x = 1\n    # size: too late\n", 1)
    assert offences(late, "m") == ["m:1 f: 82 lines (limit 80)"]
    module = '"""Doc."""\n' + "x = 1\n" * 500
    assert offences(module, "m") == ["m: module 501 lines (limit 500)"]
    assert offences('"""Doc."""\n# size: a data table\n' + "x = 1\n" * 500, "m") == []
    nested = "class C:\n    async def g(self):\n" + "        y = 2\n" * 80
    assert offences(nested, "m") == ["m:2 g: 81 lines (limit 80)"]
