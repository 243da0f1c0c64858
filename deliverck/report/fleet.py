"""The fleet's combined documents: one audit run over every target of a config file.

`deliverck audit --format table|json|prometheus` and the change list of
--changes-only.  The run itself (deliverck.fleet.audit) sits above the report
layer, so these renderers read an Audit by its attributes (targets, started,
finished, duration_ms, exit_code, changes) and import nothing of the fleet.
"""

from __future__ import annotations

import datetime as dt
import json

from deliverck import __version__
from deliverck.report import FORMATS
from deliverck.report.json import finding_dict, report_dict
from deliverck.report.prometheus import render_many
from deliverck.text import safe

AUDIT_SCHEMA = "deliverck.audit/1"


def expired_line(target: str, ig) -> str:
    """Said on stderr on every run and kept in the JSON document, until the config file is fixed
    (ig: an Ignore of deliverck.fleet.configfile, read by its attributes)."""
    subject = f" ({ig.subject})" if ig.subject else ""
    return (f"ignore for {ig.finding}{subject} on {target} expired on {ig.expires.isoformat()}: {ig.reason} "
            "(it no longer hides anything: renew or remove it)")


def render_changes(changes: dict[str, dict[str, list]]) -> str:
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


def _counts(audit) -> dict[str, int]:
    out = {"targets": len(audit.targets), "pass": 0, "fail": 0, "incomplete": 0}
    for t in audit.targets:
        out[t.report.verdict.value] += 1
    out["ignored"] = sum(len(t.ignored) for t in audit.targets)
    out["expired_ignores"] = sum(len(t.expired) for t in audit.targets)
    return out


def render_table(audit, opts) -> str:
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


def audit_dict(audit, opts) -> dict:
    targets = []
    for t in audit.targets:
        targets.append({
            "name": t.name,
            "verdict": t.report.verdict.value,
            "exit_code": t.report.exit_code,
            "error": t.error or None,
            "last_success": (dt.datetime.fromtimestamp(t.last_success, dt.UTC)
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


def render_json(audit, opts) -> str:
    return json.dumps(audit_dict(audit, opts), indent=2, ensure_ascii=True) + "\n"


def render_prometheus(audit, opts) -> str:
    return render_many(
        [(t.report, t.ignored, t.expired, t.last_success) for t in audit.targets],
        audit_duration=audit.duration_ms / 1000,
    )


RENDERERS = {"table": render_table, "json": render_json, "prometheus": render_prometheus}
