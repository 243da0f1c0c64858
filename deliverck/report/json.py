"""JSON output, schema `deliverck.report/1` (docs/report.schema.json)."""

from __future__ import annotations

import json
from typing import Any

from deliverck.model import CheckResult, Finding, NdrPrediction, Report, Step


def _plain(v: Any) -> Any:
    if isinstance(v, (str, int, float, bool)) or v is None:
        return v
    if isinstance(v, (list, tuple)):
        return [_plain(x) for x in v]
    if isinstance(v, dict):
        return {str(k): _plain(x) for k, x in v.items()}
    return str(v)


def finding_dict(f: Finding) -> dict:
    return {
        "id": f.id,
        "severity": f.severity.to_text(),
        "subject": f.subject,
        "summary": f.summary,
        "evidence": list(f.evidence),
        "fix": f.fix,
        "owner": f.owner.value,
        "direction": f.direction.value,
        "ndr": list(f.ndr),
        "refs": list(f.refs),
        "inconclusive": f.inconclusive,
        "args": _plain(dict(f.args)),
    }


def check_dict(r: CheckResult, debug: bool) -> dict:
    d = {
        "id": r.id,
        "title": r.title,
        "status": r.status.value,
        "duration_ms": r.duration_ms,
        "reason": r.reason,
        "findings": [finding_dict(f) for f in r.findings],
    }
    if debug and r.traceback:
        d["traceback"] = r.traceback
    return d


def prediction_dict(p: NdrPrediction) -> dict:
    return {
        "key": p.key,
        "system": p.system,
        "system_name": p.system_name,
        "code": p.code or None,
        "status": p.status or None,
        "reply": p.reply,
        "text": p.text,
        "direction": p.direction.value,
        "owner": p.owner.value,
        "fix": p.fix,
        "caused_by": list(p.caused_by),
        "subjects": list(p.subjects),
        "source": p.source,
        "likelihood": p.likelihood.value,
        "condition": p.condition,
    }


def step_dict(s: Step) -> dict:
    return {"kind": s.kind, "label": s.label, "check": s.check, "start_ms": s.start_ms, "end_ms": s.end_ms,
            "critical": s.critical}


def report_dict(report: Report, debug: bool = False, timings: bool = False) -> dict:
    """The report as plain JSON.  `timings` adds the audit's network steps: the JSON of one report
    carries them; a bulk line or a fleet document would grow by ~100 steps per target for data
    no dashboard of theirs reads, so they leave them out."""
    t = report.target
    d = {
        "schema": report.schema,
        "tool": {"name": "deliverck", "version": report.tool_version},
        "target": {
            "input": t.input,
            "name": t.name,
            "ip": t.ip,
            "roles": list(t.roles),
            "notes": list(t.notes),
        },
        "started": report.started,
        "finished": report.finished,
        "duration_ms": report.duration_ms,
        "verdict": report.verdict.value,
        "exit_code": report.exit_code,
        "fail_on": report.fail_on.to_text(),
        "resolvers": list(report.resolvers),
        "receivers": list(report.receivers),
        "checks": [check_dict(c, debug) for c in report.checks],
        "predicted_ndrs": [prediction_dict(p) for p in report.predicted_ndrs],
    }
    if report.zone_files:
        d["zone_files"] = [{"path": p, "origin": o} for p, o in report.zone_files]
    if report.baseline is not None:
        d["baseline"] = baseline_dict(report)
    if report.message is not None:
        d["message"] = message_dict(report.message)
    if timings and (report.timings or report.timings_dropped):
        d["timings"] = [step_dict(s) for s in report.timings]
        d["timings_dropped"] = report.timings_dropped
    return d


def _claim(c) -> dict | None:
    return None if c is None else {"value": c.value, "source": c.source, "proven": c.proven}


def message_dict(m) -> dict:
    """`message` of a report of `deliverck message` / `listen` (docs/report.schema.json)."""
    e, s = m.envelope, m.session
    return {
        "label": m.label,
        "size": m.size,
        "from": list(m.from_),
        "from_domain": m.from_domain,
        "subject": m.subject,
        "message_id": m.message_id,
        "date": m.date,
        "envelope": {"ip": _claim(e.ip), "helo": _claim(e.helo), "mail_from": _claim(e.mail_from),
                     "rcpt": list(e.rcpt)},
        "session": None if s is None else {
            "peer_ip": s.peer_ip, "peer_port": s.peer_port, "helo": s.helo, "esmtp": s.esmtp,
            "tls_version": s.tls_version, "tls_cipher": s.tls_cipher, "mail_from": s.mail_from,
            "rcpt": list(s.rcpt), "received_at": s.received_at, "local_address": s.local_address,
            "smtputf8": s.smtputf8},
        "hops": [{"index": h.index, "from_name": h.from_name, "from_rdns": h.from_rdns, "from_ip": h.from_ip,
                  "by": h.by, "with": h.with_, "tls": h.tls, "encrypted": h.encrypted, "date": h.date}
                 for h in m.hops],
        "notes": list(m.notes),
        "authentication": _plain(dict(m.authentication)) if m.authentication is not None else None,
    }


def baseline_dict(report: Report) -> dict:
    b = report.baseline
    assert b is not None, "callers check report.baseline first"
    brief = lambda f: {"id": f.id, "subject": f.subject, "severity": f.severity.to_text()}  # noqa: E731
    return {
        "path": b.path,
        "new": len(b.new),
        "fixed": len(b.fixed),
        "unchanged": len(b.unchanged),
        "new_findings": [brief(f) for f in b.new],
        "fixed_findings": [{"id": i, "subject": s, "severity": sev} for i, s, sev in b.fixed],
        "unchanged_findings": [brief(f) for f in b.unchanged],
    }


def render(report: Report, opts) -> str:
    return json.dumps(report_dict(report, opts.debug, timings=True), indent=2, ensure_ascii=True) + "\n"
