"""`deliverck audit --config deliverck.toml`: every target, one combined report.

The engine is the check command's (runner.run_audit); this module adds what a
cron job needs around it: ignores with reasons and expiry dates, a state file
for --changes-only, the combined table/JSON documents and atomic output files.
"""

from __future__ import annotations

import asyncio
import dataclasses
import datetime as dt
import errno
import json
import os
import tempfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Sequence

from deliverck.configfile import Ignore, TargetSpec
from deliverck.errors import DeliverckError, UsageError
from deliverck.inputfile import sync_directory
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

AUDIT_SCHEMA = "deliverck.audit/1"
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
    return dt.datetime.now(dt.timezone.utc).isoformat(timespec="milliseconds").replace("+00:00", "Z")


def _ts(rfc3339: str) -> float:
    return dt.datetime.fromisoformat(rfc3339.replace("Z", "+00:00")).timestamp()


def expired_line(target: str, ig: Ignore) -> str:
    subject = f" ({ig.subject})" if ig.subject else ""
    return (f"ignore for {ig.finding}{subject} on {target} expired on {ig.expires.isoformat()}: {ig.reason} "
            "(it no longer hides anything: renew or remove it)")


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
              sender=spec.config.sender or None, overrides=spec.config.severity_overrides)
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

    today = today or dt.datetime.now(dt.timezone.utc).date()
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
    nothing up.  Both are replaced by rename (write_atomic) of the file a symbolic link points
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
    from deliverck.report.escape import safe

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
        if t.report.verdict is not Verdict.INCOMPLETE:
            ts = _ts(t.report.finished)
        else:
            prev = (old.get(t.name) or {}).get("last_success")
            ts = float(prev) if isinstance(prev, (int, float)) else None
        out.append(dataclasses.replace(t, last_success=ts))
    audit.targets = out


def render_changes(changes: dict[str, dict[str, list]]) -> str:
    from deliverck.report.escape import safe

    lines = ["Changes since the last run"]
    for name, ch in changes.items():
        was, now = ch["verdict"]
        head = f"{name}: " + (f"verdict {was} -> {now}" if was != now else f"verdict {now} (unchanged)")
        if was is None:
            head = f"{name}: new target, verdict {now}"
        if now is None:
            head = f"{name}: no longer in the config (was {was})"
        lines.append(safe(head))
        for fid, subject, sev in ch["new"]:
            lines.append(safe(f"  + {sev} {fid} {subject}"))
        for fid, subject, sev in ch["fixed"]:
            lines.append(safe(f"  - {sev} {fid} {subject} (gone)"))
    return "\n".join(lines) + "\n"


# --- renderers ------------------------------------------------------------------------

def _counts(audit: Audit) -> dict[str, int]:
    out = {"targets": len(audit.targets), "pass": 0, "fail": 0, "incomplete": 0}
    for t in audit.targets:
        out[t.report.verdict.value] += 1
    out["ignored"] = sum(len(t.ignored) for t in audit.targets)
    out["expired_ignores"] = sum(len(t.expired) for t in audit.targets)
    return out


def render_table(audit: Audit, opts) -> str:
    from deliverck.report import FORMATS
    from deliverck.report.escape import safe

    parts = []
    if audit.changes:
        parts.append(render_changes(audit.changes))
    for t in audit.targets:
        text = FORMATS["table"](t.report, opts)
        extra = []
        for i in t.expired:
            extra.append(f"EXPIRED IGNORE (config line {i.line}): " + safe(expired_line(t.name, i)))
        for g in t.ignored:
            extra.append(safe(f"ignored: {g.finding.id} {g.finding.subject} until {g.ignore.expires.isoformat()}: "
                              f"{g.ignore.reason}"))
        parts.append(text + ("\n" + "\n".join(extra) + "\n" if extra else ""))
    c = _counts(audit)
    summary = (f"AUDIT: {c['targets']} targets: {c['pass']} pass, {c['fail']} fail, {c['incomplete']} incomplete; "
               f"{c['ignored']} findings ignored, {c['expired_ignores']} expired ignores "
               f"(exit {audit.exit_code}; {audit.duration_ms} ms)")
    return ("\n" + "=" * 72 + "\n\n").join(parts) + "\n" + summary + "\n"


def audit_dict(audit: Audit, opts) -> dict:
    from deliverck import __version__
    from deliverck.report.json import finding_dict, report_dict

    targets = []
    for t in audit.targets:
        targets.append({
            "name": t.name,
            "verdict": t.report.verdict.value,
            "exit_code": t.report.exit_code,
            "error": t.error or None,
            "last_success": (dt.datetime.fromtimestamp(t.last_success, dt.timezone.utc)
                             .isoformat(timespec="milliseconds").replace("+00:00", "Z")
                             if t.last_success is not None else None),
            "report": report_dict(t.report, opts.debug),
            "ignored": [{"check": g.check, "finding": finding_dict(g.finding), "reason": g.ignore.reason,
                         "expires": g.ignore.expires.isoformat(), "line": g.ignore.line} for g in t.ignored],
            "expired_ignores": [{"finding": i.finding, "subject": i.subject or None, "reason": i.reason,
                                 "expires": i.expires.isoformat(), "line": i.line,
                                 "message": expired_line(t.name, i)} for i in t.expired],
        })
    doc = {
        "schema": AUDIT_SCHEMA,
        "tool": {"name": "deliverck", "version": __version__},
        "started": audit.started,
        "finished": audit.finished,
        "duration_ms": audit.duration_ms,
        "exit_code": audit.exit_code,
        "summary": _counts(audit),
        "targets": targets,
    }
    if audit.changes:
        doc["changes"] = {name: {"verdict": {"was": ch["verdict"][0], "now": ch["verdict"][1]},
                                 "new": [dict(zip(("id", "subject", "severity"), x)) for x in ch["new"]],
                                 "fixed": [dict(zip(("id", "subject", "severity"), x)) for x in ch["fixed"]]}
                          for name, ch in audit.changes.items()}
    return doc


def render_json(audit: Audit, opts) -> str:
    return json.dumps(audit_dict(audit, opts), indent=2, ensure_ascii=True) + "\n"


def render_prometheus(audit: Audit, opts) -> str:
    from deliverck.report.prometheus import render_many

    return render_many(
        [(t.report, t.ignored, t.expired, t.last_success) for t in audit.targets],
        audit_duration=audit.duration_ms / 1000,
    )


RENDERERS = {"table": render_table, "json": render_json, "prometheus": render_prometheus}


# --- writing: outputs first, the state last ---------------------------------------------
#
# With --changes-only the state file is the memory of what was already reported: it may
# only move on once the report has reached its reader.  So every output is written and
# flushed first (--output, then standard output); any failure there (a full disk, `mail`
# gone from the other end of the pipe) leaves the state as it was, and the next run reports
# the same changes again.  The state is written last; if that fails, the changes were
# delivered and will be reported once more: a duplicate mail, never a lost one.


class OutputError(DeliverckError):
    """An output could not be written: the run could not complete (exit 3)."""


def write_stdout(text: str, state: str | None = None) -> None:
    """TEXT on standard output, flushed (and on disk when standard output is a file); an
    OutputError naming the failure otherwise."""
    import stat
    import sys

    kept = f"; --state {state} was left as it was, so the next run reports the same changes" if state else ""
    stream = sys.stdout
    try:
        if stream is None:
            raise OSError(9, "standard output is closed")
        stream.write(text)
        stream.flush()
        fd = stream.fileno()
        if stat.S_ISREG(os.fstat(fd).st_mode):
            try:
                os.fsync(fd)                # `> report.txt` on a full disk fails here at the latest
            except OSError as e:
                if e.errno not in (errno.EINVAL, errno.ENOTSUP, errno.EOPNOTSUPP):
                    raise                   # (a file system without fsync is not a failure)
    except (OSError, ValueError) as e:
        if stream is not None:
            _silence_stdout()
        why = "broken pipe: the reader stopped reading" if isinstance(e, BrokenPipeError) else \
            (getattr(e, "strerror", None) or str(e))
        raise OutputError(f"cannot write the report to standard output ({why}){kept}") from None


def _silence_stdout() -> None:
    """After a failed write, what is left in sys.stdout's buffer would fail again when Python
    flushes it at exit (a second error, with a traceback-like "Exception ignored" text): point
    file descriptor 1 at the null device so that flush succeeds and goes nowhere."""
    try:
        null = os.open(os.devnull, os.O_WRONLY)
    except OSError:
        return
    try:
        os.dup2(null, 1)
    except OSError:
        pass
    finally:
        os.close(null)


def write_atomic(path: str | Path, text: str, what: str = "--output", state: str | None = None) -> None:
    """Write to a temporary file next to PATH, fsync, rename over PATH: readers see the old or the new file.

    A symbolic link is written through: the file it points to is replaced and the link stays
    (a link in /etc pointing into /var keeps working).  An existing file keeps its permission
    bits, and its owner and group where the caller may set them; a new one gets what the
    umask allows (never mkstemp's 0600, which would hide it from node_exporter).  Failures
    while writing (a full disk, an I/O error) are OutputError (exit 3): PATH is left as it was."""
    target = Path(os.path.realpath(path))
    directory = target.parent
    kept = f"; --state {state} was left as it was, so the next run reports the same changes" if state else ""
    if not directory.is_dir():
        raise UsageError(f"{what} {path}: the directory {directory} does not exist")
    try:
        old = os.stat(target)
    except FileNotFoundError:
        old = None
    except OSError as e:
        raise OutputError(f"cannot write {what} {path} ({e.strerror or e}){kept}") from None
    try:
        fd, tmp = tempfile.mkstemp(prefix=f".{target.name}.", suffix=".tmp", dir=directory)
    except OSError as e:
        raise OutputError(f"cannot write {what} {path}: cannot create a file in {directory} "
                          f"({e.strerror or e}){kept}") from None
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as f:
            f.write(text)
            f.flush()
            os.fsync(f.fileno())
            _keep_mode(f.fileno(), old)
        os.replace(tmp, target)
    except BaseException as e:
        try:
            os.unlink(tmp)
        except OSError:
            pass
        if isinstance(e, OSError):
            raise OutputError(f"cannot write {what} {path} ({e.strerror or e}){kept}") from None
        raise
    sync_directory(directory)


def _keep_mode(fd: int, old: os.stat_result | None) -> None:
    import stat

    if old is None:
        umask = os.umask(0)
        os.umask(umask)
        os.fchmod(fd, 0o666 & ~umask)
        return
    try:
        os.fchown(fd, old.st_uid, old.st_gid)
    except OSError:
        try:
            os.fchown(fd, -1, old.st_gid)     # not root: keep the group at least, when ours
        except OSError:
            pass
    os.fchmod(fd, stat.S_IMODE(old.st_mode))
