"""Prometheus text exposition format, for node_exporter's textfile collector.

`deliverck check ... --format prometheus` renders one target,
`deliverck audit --config ... --format prometheus` every target of the config;
write it with `--output /var/lib/node_exporter/textfile/deliverck.prom`
(atomic: node_exporter never reads half a file).  Metrics (docs/config.md):

    deliverck_verdict{target,verdict}                    1 for the run's verdict, 0 for the others
    deliverck_exit_code{target}                          0 pass, 1 fail, 3 incomplete
    deliverck_check_status{target,check,status}          1 for the check's status, 0 for the others
    deliverck_findings{target,check,severity}            findings per check and severity (ignored ones excluded)
    deliverck_findings_inconclusive{target,check}        findings meaning "could not check"
    deliverck_ignored_findings{target}                   findings hidden by an active ignore
    deliverck_expired_ignores{target}                    ignores past their expiry date
    deliverck_certificate_days_left{target,host,ip}      days until the STARTTLS certificate expires (negative: expired)
    deliverck_dnsbl_listed{target,ip,list}               1 listed, 0 checked and not listed
    deliverck_predicted_ndr{target,receiver,direction,key,status,owner,likelihood}
                                                         1 per predicted NDR (likelihood will or may)
    deliverck_last_success_timestamp_seconds{target}     end of the last run that completed (verdict not incomplete)
    deliverck_audit_duration_seconds{target}             how long the target's audit took
    deliverck_audit_run_duration_seconds                 (audit only) the whole run
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterable, Sequence

from deliverck.model import Report, Severity, Status, Verdict
from deliverck.text import safe

_HELP = {
    "deliverck_verdict": ("gauge", "1 for the verdict of the target's audit (pass, fail, incomplete), 0 otherwise."),
    "deliverck_exit_code": ("gauge", "Exit code of the target's audit: 0 pass, 1 fail, 3 incomplete."),
    "deliverck_check_status": ("gauge", "1 for the status of each check (pass, warn, fail, error, skipped), 0 otherwise."),
    "deliverck_findings": ("gauge", "Findings per check and severity, ignored findings excluded."),
    "deliverck_findings_inconclusive": ("gauge", "Findings per check that mean the check could not find out."),
    "deliverck_ignored_findings": ("gauge", "Findings hidden by an active ignore of the config file."),
    "deliverck_expired_ignores": ("gauge", "Ignores of the config file past their expiry date (they hide nothing)."),
    "deliverck_certificate_days_left": ("gauge", "Days until the STARTTLS certificate of an MX address expires; negative once expired."),
    "deliverck_dnsbl_listed": ("gauge", "1 when the address is listed on the DNS block list, 0 when checked and not listed."),
    "deliverck_predicted_ndr": ("gauge", "1 per NDR the audit predicts; likelihood will: the receiver's rule always fires, may: it depends."),
    "deliverck_last_success_timestamp_seconds": ("gauge", "Unix time at which the last audit of the target that completed (verdict pass or fail) finished."),
    "deliverck_audit_duration_seconds": ("gauge", "Duration of the target's audit in seconds."),
    "deliverck_audit_run_duration_seconds": ("gauge", "Duration of the whole audit run (all targets) in seconds."),
}


def escape_label(value: object) -> str:
    # Remote text (a host name from DNS) is made printable first: no control character reaches a
    # file that people and tools read; then the exposition format's own escapes.
    text = "\n".join(safe(part) for part in str(value).split("\n"))
    return text.replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n")


def _labels(**labels: object) -> str:
    if not labels:
        return ""
    return "{" + ",".join(f'{k}="{escape_label(v)}"' for k, v in labels.items()) + "}"


def _num(v: float) -> str:
    if isinstance(v, bool):
        return "1" if v else "0"
    if isinstance(v, int) or float(v).is_integer() and abs(v) < 1e15:
        return str(int(v))
    return repr(float(v))


def _target_label(report: Report) -> str:
    return report.target.name or report.target.ip or report.target.input


def _samples(report: Report, ignored: Sequence = (), expired: Sequence = (),
             last_success: float | None = None) -> dict[str, list[tuple[str, float]]]:
    out: dict[str, list[tuple[str, float]]] = {k: [] for k in _HELP}
    target = _target_label(report)
    for v in Verdict:
        out["deliverck_verdict"].append((_labels(target=target, verdict=v.value), int(report.verdict is v)))
    out["deliverck_exit_code"].append((_labels(target=target), report.exit_code))
    days: dict[tuple[str, str], int] = {}
    listed: dict[tuple[str, str], int] = {}
    for c in report.checks:
        for s in Status:
            out["deliverck_check_status"].append((_labels(target=target, check=c.id, status=s.value),
                                                  int(c.status is s)))
        for sev in Severity:
            n = sum(1 for f in c.findings if f.severity is sev and not f.inconclusive)
            out["deliverck_findings"].append((_labels(target=target, check=c.id, severity=sev.to_text()), n))
        out["deliverck_findings_inconclusive"].append(
            (_labels(target=target, check=c.id), sum(1 for f in c.findings if f.inconclusive)))
        for f in c.findings:
            a = f.args
            if c.id == "starttls" and isinstance(a.get("days_left"), int):
                days[(str(a.get("host", "")), str(a.get("ip", f.subject)))] = a["days_left"]
            if f.id in ("dnsbl.listed", "dnsbl.listed_policy", "dnsbl.listed_minor") and a.get("ip") and a.get("list"):
                listed[(str(a["ip"]), str(a["list"]))] = 1
            if f.id == "dnsbl.clean" and a.get("ip"):
                for lst in str(a.get("lists", "")).split(","):
                    if lst.strip():
                        listed.setdefault((str(a["ip"]), lst.strip()), 0)
    for (host, ip), d in sorted(days.items()):
        out["deliverck_certificate_days_left"].append((_labels(target=target, host=host, ip=ip), d))
    for (ip, lst), hit in sorted(listed.items()):
        out["deliverck_dnsbl_listed"].append((_labels(target=target, ip=ip, list=lst), hit))
    for p in report.predicted_ndrs:
        out["deliverck_predicted_ndr"].append((_labels(
            target=target, receiver=p.system, direction=p.direction.value, key=p.key,
            status=p.status or (str(p.code) if p.code else ""), owner=p.owner.value,
            likelihood=p.likelihood.value), 1))
    out["deliverck_ignored_findings"].append((_labels(target=target), len(ignored)))
    out["deliverck_expired_ignores"].append((_labels(target=target), len(expired)))
    if last_success is not None:
        out["deliverck_last_success_timestamp_seconds"].append((_labels(target=target), last_success))
    out["deliverck_audit_duration_seconds"].append((_labels(target=target), report.duration_ms / 1000))
    return out


def render_many(items: Iterable[tuple], audit_duration: float | None = None) -> str:
    """items: (report, ignored, expired, last_success) per target."""
    merged: dict[str, list[tuple[str, float]]] = {k: [] for k in _HELP}
    for item in items:
        for k, v in _samples(*item).items():
            merged[k] += v
    if audit_duration is not None:
        merged["deliverck_audit_run_duration_seconds"].append(("", audit_duration))
    lines: list[str] = []
    for name, samples in merged.items():
        if not samples:
            continue
        kind, text = _HELP[name]
        lines.append(f"# HELP {name} {text}")
        lines.append(f"# TYPE {name} {kind}")
        lines += [f"{name}{labels} {_num(v)}" for labels, v in samples]
    return "\n".join(lines) + "\n"


def completed_at(report: Report) -> float | None:
    """When a run that completed finished, as Unix time (the last-success metric and the audit's
    state file); None for an incomplete run, which is no success.  Parsed here, in the report
    layer, so that rendering one target needs nothing of the fleet above it."""
    if report.verdict is Verdict.INCOMPLETE:
        return None
    return dt.datetime.fromisoformat(report.finished.replace("Z", "+00:00")).timestamp()


def render(report: Report, opts) -> str:
    """One target (`deliverck check --format prometheus`): its run's end is its last success when it completed."""
    return render_many([(report, (), (), completed_at(report))])
