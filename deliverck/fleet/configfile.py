"""The cron audit's config file (deliverck.toml, docs/config.md).

`load(path)` reads the file with tomllib and returns one `TargetSpec` per
`[[target]]`: a deliverck.config.Config built with the same validators as the
`check` command's flags, plus the target's ignores.  Every mistake is one
UsageError line that names the file and line:

    deliverck.toml:12: target "example.com": unknown key "dkim_selector" (known: ...)

tomllib reports no positions for valid TOML, so `_Lines` scans the text for
table headers and `key =` lines to find where a table or key was written.
"""

from __future__ import annotations

import datetime as dt
import re
import tomllib
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from deliverck.config import Config
from deliverck.errors import UsageError
from deliverck.model import Severity
from deliverck.options import CONFIG_KEYS, OptionError, build_config, config_file
from deliverck.registry import finding_specs
from deliverck.runner import select_checks
from deliverck.target import parse_target, refuse_unprobeable

# The per-target keys, valid in [defaults] and [[target]]: every option of the table that has a
# config key (deliverck/options.py), plus the two that only a file has.
OPTIONS: dict[str, str] = {**{key: o.kind for key, o in CONFIG_KEYS.items()}, "severity": "table", "ignore": "ignores"}
TARGET_ONLY = ("name",)
TOP_LEVEL = ("defaults", "target")
IGNORE_KEYS = ("finding", "subject", "reason", "expires")

_KIND_TEXT = {
    "list": "a list of strings",
    "strlist": "a string or a list of strings",
    "str": "a string",
    "number": "a number",
    "int": "an integer",
    "intlist": "a list of port numbers",
    "bool": "true or false",
    "table": 'a table of finding id = "severity"',
    "ignores": "an array of tables ([[target.ignore]])",
}


@dataclass(frozen=True)
class Ignore:
    finding: str
    subject: str            # "" = every subject
    reason: str
    expires: dt.date        # the last day the ignore applies
    line: int

    def matches(self, finding_id: str, subject: str) -> bool:
        return finding_id == self.finding and (not self.subject or self.subject == subject)

    def expired(self, today: dt.date) -> bool:
        return today > self.expires


@dataclass(frozen=True)
class TargetSpec:
    name: str
    config: Config
    ignores: tuple[Ignore, ...]
    line: int


@dataclass(frozen=True)
class AuditConfig:
    path: Path
    targets: tuple[TargetSpec, ...]


class _Lines:
    """Where each table header and key of a TOML document was written."""

    _HEADER = re.compile(r"^\s*(\[\[|\[)\s*([^\]]+?)\s*\]\]?\s*(#.*)?$")
    _KEY = re.compile(r'^\s*("[^"]*"|\'[^\']*\'|[A-Za-z0-9_.\-" ]+?)\s*=')

    def __init__(self, text: str):
        self.where: dict[tuple, int] = {}
        counts: dict[tuple, int] = {}
        current: tuple = ()
        in_multiline = None
        for no, raw in enumerate(text.splitlines(), 1):
            if in_multiline:
                if raw.count(in_multiline) % 2 == 1:
                    in_multiline = None
                continue
            m = self._HEADER.match(raw)
            if m and not self._KEY.match(raw):
                names = self._names(m.group(2))
                path = self._resolve(names[:-1], counts)
                if m.group(1) == "[[":
                    key = tuple(path) + (names[-1],)
                    counts[key] = counts.get(key, 0) + 1
                    current = key + (counts[key] - 1,)
                else:
                    current = tuple(self._resolve(names, counts))
                self.where.setdefault(current, no)
                continue
            m = self._KEY.match(raw)
            if m:
                self.where.setdefault(current + tuple(self._names(m.group(1))), no)
                for q in ('"""', "'''"):
                    if raw.count(q) % 2 == 1:
                        in_multiline = q

    @staticmethod
    def _names(dotted: str) -> list[str]:
        return [p.strip().strip('"').strip("'") for p in re.findall(r'"[^"]*"|\'[^\']*\'|[^.]+', dotted)]

    @staticmethod
    def _resolve(names, counts) -> list:
        path: list = []
        for n in names:
            path.append(n)
            key = tuple(path)
            if key in counts:
                path.append(counts[key] - 1)
        return path

    def line(self, path: tuple) -> int:
        p = tuple(path)
        while p:
            if p in self.where:
                return self.where[p]
            p = p[:-1]
        return 1


class _Ctx:
    def __init__(self, path: Path, lines: _Lines):
        self.path, self.lines = path, lines

    def fail(self, where: tuple, what: str, message: str) -> UsageError:
        prefix = f"{self.path}:{self.lines.line(where)}: "
        return UsageError(prefix + (f"{what}: " if what else "") + " ".join(message.split()))


# A config file of 10,000 targets is well under 4 MiB; more is not a config file (/dev/zero).
MAX_CONFIG_BYTES = 4 * 1024 * 1024


def load(path: str | Path, today: dt.date | None = None) -> AuditConfig:
    from deliverck.inputfile import ReadError, read_limited

    if not str(path):
        raise UsageError("--config is empty: give the config file (e.g. --config deliverck.toml)")
    p = Path(path)
    try:
        raw, more = read_limited(path, MAX_CONFIG_BYTES)   # bounded; a FIFO without writer reads as empty
    except ReadError as e:
        raise UsageError(f"--config {path}: {e}") from None
    if more:
        raise UsageError(f"--config {path}: larger than {MAX_CONFIG_BYTES // (1024 * 1024)} MiB: "
                         "not a deliverck config file (see docs/config.md)")
    if b"\0" in raw:
        raise UsageError(f"--config {path}: binary data (NUL bytes), not a TOML config file (see docs/config.md)")
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError as e:
        line = raw[:e.start].count(b"\n") + 1
        raise UsageError(f"{p}:{line}: not UTF-8 text") from None
    try:
        data = tomllib.loads(text)
    except tomllib.TOMLDecodeError as e:
        msg = str(e)
        m = re.search(r"\(at line (\d+), column \d+\)", msg)
        line = int(m.group(1)) if m else 1
        msg = re.sub(r"\s*\(at line \d+, column \d+\)", "", msg) or "not valid TOML"
        lines = text.splitlines()
        src = lines[line - 1] if 0 < line <= len(lines) else ""
        d = re.match(r"\s*([A-Za-z0-9_\-\"']+)\s*=\s*(\d{4}-\d{1,2}-\d{1,2}\S*)", src)
        if d:
            try:
                dt.date.fromisoformat(d.group(2))
                why = "not a TOML date"
            except ValueError as de:
                why = str(de)
            msg = f"{d.group(1).strip(chr(34))}: {d.group(2)} is not a valid date ({why})"
        if d or re.search(r"date|time", msg, re.I) or "Invalid value" in msg:
            msg += " (dates are written as TOML dates: expires = 2026-10-01)"
        raise UsageError(f"{p}:{line}: {msg}") from None
    ctx = _Ctx(p, _Lines(text))
    for key in data:
        if key not in TOP_LEVEL:
            raise ctx.fail((key,), "", f"unknown top-level key {_q(key)} (known: [defaults], [[target]])")
    defaults = data.get("defaults", {})
    if not isinstance(defaults, dict):
        raise ctx.fail(("defaults",), "", "defaults must be a table ([defaults])")
    _check_keys(ctx, ("defaults",), "[defaults]", defaults, allow_name=False)
    targets = data.get("target", [])
    if not isinstance(targets, list) or not all(isinstance(t, dict) for t in targets):
        raise ctx.fail(("target",), "", "target must be an array of tables ([[target]])")
    if not targets:
        raise UsageError(f"{p}:1: no [[target]] table: name at least one target (see docs/config.md)")
    base = p.parent
    source = config_file(base)          # reads $DELIVERCK_CA_FILE/_TRUST_ANCHOR once per file
    out: list[TargetSpec] = []
    seen: dict[str, int] = {}
    for i, t in enumerate(targets):
        where = ("target", i)
        name = t.get("name")
        label = f'target #{i + 1}' if not isinstance(name, str) else f"target {name!r}".replace("'", '"')
        _check_keys(ctx, where, label, t, allow_name=True)
        if name is None:
            raise ctx.fail(where, label, 'missing required key "name" (the domain, host or IP to audit)')
        if not isinstance(name, str):
            raise ctx.fail(where + ("name",), label, f"name must be a string, not {_tname(name)}")
        merged = {k: v for k, v in defaults.items() if k not in ("severity", "ignore")}
        merged.update({k: v for k, v in t.items() if k not in ("severity", "ignore", "name")})
        origin = {k: (("defaults", k) if k not in t else where + (k,)) for k in merged}
        spec = _build(ctx, label, name, merged, origin, base, defaults, t, where, source)
        key = spec.config.target.label
        if key in seen:
            raise ctx.fail(where + ("name",), label, f"the same target as line {seen[key]}")
        seen[key] = ctx.lines.line(where + ("name",))
        out.append(spec)
    return AuditConfig(p, tuple(out))


def _tname(v: Any) -> str:
    if isinstance(v, bool):
        return "a boolean"
    if isinstance(v, dt.datetime):
        return "a date-time"
    if isinstance(v, dt.date):
        return "a date"
    if isinstance(v, dt.time):
        return "a time"
    return {int: "an integer", float: "a number", str: "a string", list: "a list", dict: "a table"}.get(
        type(v), type(v).__name__)


def _check_keys(ctx: _Ctx, where: tuple, label: str, table: dict, allow_name: bool) -> None:
    known = list(OPTIONS) + (list(TARGET_ONLY) if allow_name else [])
    for key, value in table.items():
        if key not in known:
            raise ctx.fail(where + (key,), label,
                           f"unknown key {_q(key)} (known: {', '.join(sorted(known))})")
        kind = OPTIONS.get(key, "str")
        if not _type_ok(kind, value):
            raise ctx.fail(where + (key,), label,
                           f"{key} must be {_KIND_TEXT[kind]}, not {_tname(value)}")


_KEY_SHAPE = re.compile(r"[A-Za-z0-9_.-]{1,32}")


def _q(s: str) -> str:
    """A key of the user's file for an error line: whole when it looks like a key, else only a
    short escaped prefix (a file reached by mistake, a .env through a symlink, holds secrets)."""
    if not _KEY_SHAPE.fullmatch(s):
        from deliverck.net.overlay import token_hint

        return token_hint(s)
    return '"' + s + '"'


def _type_ok(kind: str, v: Any) -> bool:
    if kind == "list":
        return isinstance(v, list) and all(isinstance(x, str) for x in v)
    if kind == "strlist":
        return isinstance(v, str) or (isinstance(v, list) and all(isinstance(x, str) for x in v))
    if kind == "str":
        return isinstance(v, str)
    if kind == "number":
        return isinstance(v, (int, float)) and not isinstance(v, bool)
    if kind == "int":
        return isinstance(v, int) and not isinstance(v, bool)
    if kind == "intlist":
        return isinstance(v, list) and all(isinstance(x, int) and not isinstance(x, bool) for x in v)
    if kind == "bool":
        return isinstance(v, bool)
    if kind == "table":
        return isinstance(v, dict)
    if kind == "ignores":
        return isinstance(v, list) and all(isinstance(x, dict) for x in v)
    return False


def _build(ctx, label, name, o, origin, base: Path, defaults: dict, t: dict, where: tuple,
           source=None) -> TargetSpec:
    """One target's Config, through the options table: one rule for flags, files and bulk lines."""
    try:
        target = parse_target(name)
    except UsageError as e:
        raise ctx.fail(where + ("name",), label, str(e)) from None
    source = source or config_file(base)
    try:
        config = build_config(target, {CONFIG_KEYS[k].name: v for k, v in o.items()}, source,
                              severity_overrides=_severities(ctx, label, defaults, t, where, finding_specs()))
    except OptionError as e:
        key, msg = e.option.config_key or e.option.name, str(e)   # file options all have a config_key
        raise ctx.fail(origin.get(key, where), label, msg if msg.startswith(key) else f"{key}: {msg}") from None
    try:
        refuse_unprobeable(target, config.probe_private, option="probe_private = true")
    except UsageError as e:
        raise ctx.fail(where + ("name",), label, str(e)) from None
    try:
        select_checks(config, ("only", "skip"))
    except UsageError as e:
        unknown = re.findall(r"^unknown check '([^']*)'", str(e))
        key = "only" if (unknown[0] in o.get("only", []) if unknown else "skip" not in o) else "skip"
        raise ctx.fail(origin.get(key, where), label, str(e)) from None
    ignores = _ignores(ctx, label, ("defaults",), defaults.get("ignore", []), finding_specs()) + \
        _ignores(ctx, label, where, t.get("ignore", []), finding_specs())
    return TargetSpec(name=target.label, config=config, ignores=ignores, line=ctx.lines.line(where))


def _severities(ctx, label, defaults: dict, t: dict, where: tuple, specs: dict) -> dict[str, Severity]:
    out: dict[str, Severity] = {}
    for table, w in ((defaults.get("severity", {}), ("defaults", "severity")),
                     (t.get("severity", {}), where + ("severity",))):
        who = "[defaults]" if w[0] == "defaults" else label
        for fid, sev in table.items():
            if fid not in specs:
                raise ctx.fail(w + (fid,), who, f"severity: unknown finding id {_q(fid)} "
                                                 "(see `deliverck checks` for every finding id)")
            if not isinstance(sev, str):
                raise ctx.fail(w + (fid,), who, f"severity.{fid} must be a severity name, not {_tname(sev)}")
            try:
                out[fid] = Severity.from_text(sev)
            except ValueError as e:
                raise ctx.fail(w + (fid,), who, f"severity.{fid}: {e}") from None
    return out


def _ignores(ctx, label, where: tuple, items: list, specs: dict) -> tuple[Ignore, ...]:
    out = []
    if where[0] == "defaults":
        label = "[defaults]"
    for j, ig in enumerate(items):
        w = where + ("ignore", j)
        for key, _value in ig.items():
            if key not in IGNORE_KEYS:
                raise ctx.fail(w + (key,), label,
                               f"ignore: unknown key {_q(key)} (known: {', '.join(IGNORE_KEYS)})")
        for key in ("finding", "reason", "expires"):
            if key not in ig:
                why = {"finding": "the finding id to ignore",
                       "reason": "why it is acceptable, shown whenever it hides a finding",
                       "expires": "the last day it applies, a TOML date such as 2026-10-01"}[key]
                raise ctx.fail(w, label, f'ignore: missing required key "{key}" ({why})')
        for key in ("finding", "reason", "subject"):
            if key in ig and not isinstance(ig[key], str):
                raise ctx.fail(w + (key,), label, f"ignore: {key} must be a string, not {_tname(ig[key])}")
        fid = ig["finding"].strip()
        if fid not in specs:
            raise ctx.fail(w + ("finding",), label, f"ignore: unknown finding id {_q(fid)} "
                                                   "(see `deliverck checks` for every finding id)")
        if not ig["reason"].strip():
            raise ctx.fail(w + ("reason",), label, "ignore: reason is empty: say why the finding is acceptable")
        exp = ig["expires"]
        if isinstance(exp, dt.datetime) or not isinstance(exp, dt.date):
            raise ctx.fail(w + ("expires",), label,
                           f"ignore: expires must be a TOML date such as 2026-10-01 (no quotes, no time), "
                           f"not {_tname(exp)}")
        out.append(Ignore(fid, ig.get("subject", "").strip(), " ".join(ig["reason"].split()), exp,
                          ctx.lines.line(w)))
    return tuple(out)
