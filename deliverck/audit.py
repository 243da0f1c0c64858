"""`deliverck audit --config deliverck.toml`: every target, one combined report.

The engine is the check command's (runner.run_audit); this module adds what a
cron job needs around it: ignores with reasons and expiry dates, a state file
for --changes-only, the combined table/JSON documents and atomic output files.
"""

from __future__ import annotations

import asyncio
import dataclasses
import datetime as dt
import json
import os
import tempfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Sequence

from deliverck.configfile import Ignore, TargetSpec
from deliverck.errors import DeliverckError, UsageError
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


def read_state(path: Path) -> dict:
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        return {}
    except OSError as e:
        raise UsageError(f"--state {path}: cannot read it ({e.strerror or e})") from None
    try:
        doc = json.loads(text)
        if doc.get("schema") != STATE_SCHEMA or not isinstance(doc.get("targets"), dict):
            raise ValueError(f"not a {STATE_SCHEMA} document")
        return doc["targets"]
    except (ValueError, AttributeError) as e:
        raise UsageError(f"--state {path}: {e}; delete it to start afresh") from None


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


# --- atomic files -------------------------------------------------------------------

def write_atomic(path: str | Path, text: str, what: str = "--output") -> None:
    """Write to a temporary file next to PATH, fsync, rename over PATH: readers see the old or the new file."""
    p = Path(path)
    directory = p.parent if str(p.parent) else Path(".")
    if not directory.is_dir():
        raise UsageError(f"{what} {path}: the directory {directory} does not exist")
    try:
        fd, tmp = tempfile.mkstemp(prefix=f".{p.name}.", suffix=".tmp", dir=directory)
    except OSError as e:
        raise UsageError(f"{what} {path}: cannot write in {directory} ({e.strerror or e})") from None
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as f:
            f.write(text)
            f.flush()
            os.fsync(f.fileno())
        umask = os.umask(0)
        os.umask(umask)
        os.chmod(tmp, 0o666 & ~umask)   # mkstemp's 0600 would hide it from node_exporter
        os.replace(tmp, p)
    except BaseException as e:
        try:
            os.unlink(tmp)
        except OSError:
            pass
        if isinstance(e, OSError):
            raise UsageError(f"{what} {path}: cannot write it ({e.strerror or e})") from None
        raise
    try:
        dfd = os.open(directory, os.O_RDONLY)
        try:
            os.fsync(dfd)
        finally:
            os.close(dfd)
    except OSError:
        pass
