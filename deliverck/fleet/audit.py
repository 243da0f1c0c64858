"""`deliverck audit --config deliverck.toml`: every target, one combined report.

The engine is the check command's (runner.run_audit); this module adds what a
cron job needs around it: ignores with reasons and expiry dates and a state file
for --changes-only.  The combined documents are rendered by report/fleet.py, the
files are written by fleet/output.py.
"""

from __future__ import annotations

import asyncio
import dataclasses
import datetime as dt
import json
import os
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

from deliverck.errors import DeliverckError, UsageError
from deliverck.fleet.configfile import Ignore, TargetSpec
from deliverck.model import (
    EXIT_FAIL,
    EXIT_INCOMPLETE,
    EXIT_PASS,
    CheckResult,
    Finding,
    Report,
    Severity,
    TargetInfo,
    Verdict,
)
from deliverck.report.prometheus import completed_at

STATE_SCHEMA = "deliverck.state/1"


@dataclass(frozen=True)
class IgnoredFinding:
    check: str
    finding: Finding
    ignore: Ignore


@dataclass(frozen=True)
class TargetResult:
    spec: TargetSpec
    report: Report
    ignored: tuple[IgnoredFinding, ...] = ()
    expired: tuple[Ignore, ...] = ()               # ignores past their date (they no longer hide anything)
    error: str = ""                                # the run could not start (e.g. no resolver answered)
    last_success: float | None = None              # unix time of the last run that was not incomplete

    @property
    def name(self) -> str:
        return self.spec.name


@dataclass
class Audit:
    targets: list[TargetResult]
    started: str
    finished: str
    duration_ms: int
    changes: dict[str, dict[str, list]] = field(default_factory=dict)   # --changes-only

    @property
    def exit_code(self) -> int:
        codes = [t.report.exit_code for t in self.targets]
        if EXIT_FAIL in codes:
            return EXIT_FAIL
        if EXIT_INCOMPLETE in codes:
            return EXIT_INCOMPLETE
        return EXIT_PASS


def _now() -> str:
    return dt.datetime.now(dt.UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")


def apply_ignores(spec: TargetSpec, report: Report, today: dt.date) -> TargetResult:
    """Move findings matched by an active ignore out of the report; judge what is left again
    (statuses, verdict, NDRs and their links) the way every audit is judged (verdict.judge)."""
    from deliverck.runner import _ptr_name
    from deliverck.verdict import judge

    active = [i for i in spec.ignores if not i.expired(today)]
    expired = tuple(i for i in spec.ignores if i.expired(today))
    if not active:
        return TargetResult(spec, report, (), expired)
    ignored: list[IgnoredFinding] = []
    checks: list[CheckResult] = []
    for c in report.checks:
        keep: list[Finding] = []
        for f in c.findings:
            ig = next((i for i in active if i.matches(f.id, f.subject)), None)
            if ig is None:
                keep.append(f)
            else:
                ignored.append(IgnoredFinding(c.id, f, ig))
        checks.append(c if len(keep) == len(c.findings) else dataclasses.replace(c, findings=tuple(keep)))
    if not ignored:
        return TargetResult(spec, report, (), expired)
    domain = spec.config.target.name or _ptr_name(checks) or spec.config.target.ip
    j = judge(checks, fail_on=report.fail_on, receivers=report.receivers, domain=domain,
              sender=spec.config.sender or None, overrides=spec.config.severity_overrides,
              sender_profile=spec.config.sender_profile)
    report = dataclasses.replace(report, checks=j.checks, verdict=j.verdict, exit_code=j.exit_code,
                                 predicted_ndrs=j.predicted_ndrs)
    return TargetResult(spec, report, tuple(ignored), expired)


def _failed_report(spec: TargetSpec, started: str, message: str) -> Report:
    from deliverck import __version__

    t = spec.config.target
    return Report(
        target=TargetInfo(input=t.input, name=t.name, ip=t.ip, roles=(), notes=(f"could not audit: {message}",)),
        started=started, finished=_now(), duration_ms=0, verdict=Verdict.INCOMPLETE, exit_code=EXIT_INCOMPLETE,
        fail_on=spec.config.fail_on, checks=(), predicted_ndrs=(),
        resolvers=tuple(str(r) for r in spec.config.resolvers), receivers=spec.config.receivers,
        tool_version=__version__,
    )


async def run_targets(specs: Sequence[TargetSpec], concurrency: int, today: dt.date | None = None) -> Audit:
    from deliverck.runner import run_audit

    today = today or dt.datetime.now(dt.UTC).date()
    sem = asyncio.Semaphore(max(1, concurrency))
    started, t0 = _now(), asyncio.get_running_loop().time()

    async def one(spec: TargetSpec) -> TargetResult:
        async with sem:
            begun = _now()
            try:
                report = await run_audit(spec.config)
            except DeliverckError as e:
                if isinstance(e, UsageError):
                    raise
                r = TargetResult(spec, _failed_report(spec, begun, str(e)), (),
                                 tuple(i for i in spec.ignores if i.expired(today)), error=str(e))
                return r
            return apply_ignores(spec, report, today)

    results = await asyncio.gather(*(one(s) for s in specs))
    return Audit(list(results), started, _now(), int((asyncio.get_running_loop().time() - t0) * 1000))


# --- state (--changes-only) -------------------------------------------------------------

def state_of(t: TargetResult) -> dict:
    found = sorted({(f.id, f.subject, f.severity.to_text())
                    for c in t.report.checks for f in c.findings
                    if f.severity >= Severity.WARNING or f.inconclusive})
    return {"verdict": t.report.verdict.value, "findings": [list(x) for x in found]}


# Per target a verdict and its findings: a state file of 10,000 targets stays far below this.
MAX_STATE_BYTES = 256 * 1024 * 1024


def check_paths(output: str | None, state: str | None) -> None:
    """--output and --state, before any target is audited: bad usage writes nothing and looks
    nothing up.  Both are replaced by rename (output.write_atomic) of the file a symbolic link points
    to, so each must resolve to a regular file or a new name, in a writable directory, and
    they must be two different files."""
    from deliverck.inputfile import ReadError, output_path

    for what, path in (("--output", output), ("--state", state)):
        if path is None:
            continue
        try:
            output_path(os.path.realpath(path) if path else path)
        except ReadError as e:
            raise UsageError(f"{what} {path}: {e}" if path else f"{what} {e}") from None
    if output and state:
        same = os.path.realpath(output) == os.path.realpath(state)
        try:
            same = same or os.path.samefile(output, state)      # hard links, bind mounts
        except OSError:
            pass
        if same:
            raise UsageError(f"--output and --state are the same file ({output}): give two files")


# The verdicts a state entry may record (Verdict values) and the range of last_success that
# every renderer can show as a date (datetime's years 1970 to 9999).
_VERDICTS = tuple(v.value for v in Verdict)
_MAX_TIMESTAMP = 253402300799.0


def _state_entry_error(entry: object) -> str:
    """Why ENTRY (one target of a state file) is not what state_of wrote; "" when it is.  A
    hand-edited file must be refused on load: a bad value found after the audit would cost
    the whole run (and, with --changes-only, the alert)."""
    if not isinstance(entry, dict):
        return f"is {_json_type(entry)}, not an object with a verdict and findings"
    for key in ("verdict", "findings"):
        if key not in entry:
            return f'has no "{key}"'
    if entry["verdict"] not in _VERDICTS:
        return f'"verdict" must be one of {", ".join(_VERDICTS)}, not {_shown(entry["verdict"])}'
    found = entry["findings"]
    if not isinstance(found, list):
        return f'"findings" must be a list, not {_json_type(found)}'
    for n, f in enumerate(found, 1):
        if not (isinstance(f, list) and len(f) == 3 and all(isinstance(x, str) for x in f)):
            return f'"findings" item {n} must be [finding id, subject, severity] (three strings), not {_shown(f)}'
    if "last_success" in entry:
        ts = entry["last_success"]
        if isinstance(ts, bool) or not isinstance(ts, (int, float)) or not 0 <= ts <= _MAX_TIMESTAMP:
            return f'"last_success" must be a Unix time (seconds, 0 to {int(_MAX_TIMESTAMP)}), not {_shown(ts)}'
    return ""


def _json_type(value: object) -> str:
    names = {dict: "an object", list: "a list", str: "a string", bool: "true or false", type(None): "null"}
    return names.get(type(value), "a number")


def _shown(value: object) -> str:
    """A short, escaped rendering of a value from the file (it may hold anything)."""
    from deliverck.text import safe

    text = json.dumps(value, ensure_ascii=True) if not isinstance(value, float) else repr(value)
    return safe(text if len(text) <= 40 else text[:37] + "...")


def read_state(path: Path) -> dict:
    """The targets of a deliverck.state/1 file, every entry checked (a UsageError naming the
    file and the problem otherwise), so that nothing read later can fail on it."""
    from deliverck.inputfile import ReadError, read_limited

    if not path.exists():
        return {}
    try:
        data, more = read_limited(os.path.realpath(path), MAX_STATE_BYTES)
    except ReadError as e:
        raise UsageError(f"--state {path}: {e}") from None
    if more:
        raise UsageError(f"--state {path}: larger than {MAX_STATE_BYTES // (1024 * 1024)} MiB: not a "
                         f"{STATE_SCHEMA} document; delete it to start afresh")
    try:
        doc = json.loads(data.decode("utf-8"))
        if not isinstance(doc, dict) or doc.get("schema") != STATE_SCHEMA or not isinstance(doc.get("targets"), dict):
            raise ValueError(f"not a {STATE_SCHEMA} document")
        for name, entry in doc["targets"].items():
            why = _state_entry_error(entry)
            if why:
                raise ValueError(f"not a {STATE_SCHEMA} document: the entry of {_shown(name)} {why}")
        return doc["targets"]
    except UnicodeDecodeError:
        raise UsageError(f"--state {path}: not UTF-8 text, not a {STATE_SCHEMA} document; "
                         "delete it to start afresh") from None
    except (ValueError, RecursionError) as e:
        why = str(e) if not isinstance(e, RecursionError) else "JSON nested too deeply"
        if isinstance(e, json.JSONDecodeError):
            why = f"not JSON (line {e.lineno}: {e.msg})"
        raise UsageError(f"--state {path}: {why}; delete it to start afresh") from None


def compare(audit: Audit, old: dict) -> dict[str, dict[str, list]]:
    """Per changed target: verdict change, new and fixed findings.  Empty when nothing changed."""
    changes: dict[str, dict[str, list]] = {}
    for t in audit.targets:
        now = state_of(t)
        before = old.get(t.name)
        if before is not None and before.get("verdict") == now["verdict"] and \
                sorted(map(tuple, before.get("findings", []))) == sorted(map(tuple, now["findings"])):
            continue
        was = {tuple(x) for x in (before or {}).get("findings", [])}
        is_ = {tuple(x) for x in now["findings"]}
        changes[t.name] = {
            "verdict": [(before or {}).get("verdict"), now["verdict"]],
            "new": [list(x) for x in sorted(is_ - was)],
            "fixed": [list(x) for x in sorted(was - is_)],
        }
    for name in old:
        if name not in {t.name for t in audit.targets}:
            changes[name] = {"verdict": [old[name].get("verdict"), None], "new": [],
                             "fixed": [list(x) for x in old[name].get("findings", [])]}
    return changes


def new_state(audit: Audit, old: dict) -> dict:
    targets = {}
    for t in audit.targets:
        s = state_of(t)
        if t.last_success is not None:
            s["last_success"] = t.last_success
        targets[t.name] = s
    return {"schema": STATE_SCHEMA, "written": audit.finished, "targets": targets}


def with_last_success(audit: Audit, old: dict) -> None:
    """This run's finish time for targets that completed; the stored one for the others."""
    out = []
    for t in audit.targets:
        ts = completed_at(t.report)
        if ts is None:
            prev = (old.get(t.name) or {}).get("last_success")
            ts = float(prev) if isinstance(prev, (int, float)) else None
        out.append(dataclasses.replace(t, last_success=ts))
    audit.targets = out
