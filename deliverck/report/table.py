"""The human-readable report: verdict first, then checks, findings, predicted NDRs."""

from __future__ import annotations

import shutil
import textwrap

from tabulate import tabulate

from deliverck.model import Report, Severity, Status
from deliverck.report.escape import safe

_MARK = {
    Status.PASS: "pass",
    Status.WARN: "WARN",
    Status.FAIL: "FAIL",
    Status.ERROR: "ERROR",
    Status.SKIPPED: "skipped",
}


def _width() -> int:
    return max(80, min(shutil.get_terminal_size((120, 24)).columns, 160))


def _wrap(text: str, width: int) -> str:
    return "\n".join(textwrap.wrap(safe(text), width=width, break_long_words=True, break_on_hyphens=False)) or ""


def _counts(findings) -> str:
    by: dict[str, int] = {}
    for f in findings:
        key = "could not check" if f.inconclusive else f.severity.to_text()
        by[key] = by.get(key, 0) + 1
    order = ["could not check"] + [s.to_text() for s in sorted(Severity, reverse=True)]
    return ", ".join(f"{by[k]} {k}" for k in order if k in by)


def render(report: Report, opts) -> str:
    width = _width()
    t = report.target
    lines: list[str] = []
    label = t.name or t.ip
    roles = f" ({', '.join(t.roles)})" if t.roles else ""
    lines.append(f"deliverck {report.tool_version}: {safe(label)}{roles}")
    lines.append(
        f"VERDICT: {report.verdict.value.upper()} (exit {report.exit_code}; fail on {report.fail_on.to_text()}"
        f" or worse; {report.duration_ms} ms; resolver {', '.join(report.resolvers)})"
    )
    for note in t.notes:
        lines.append(f"note: {safe(note)}")
    for path, origin in report.zone_files:
        lines.append(f"zone {safe(origin)}: answered from the file {safe(path)} (--zone-file), not from DNS")
    b = report.baseline
    if b is not None:
        lines.append(f"baseline {safe(b.path)}: {len(b.new)} new, {len(b.fixed)} fixed, {len(b.unchanged)} unchanged"
                     " (only new findings count)")
    lines.append("")

    rows = []
    for c in report.checks:
        detail = c.reason if c.status in (Status.SKIPPED, Status.ERROR) else ""
        if not detail:
            info = [f for f in c.findings if f.severity == Severity.INFO]
            detail = info[0].summary if info else ""
            if len(info) > 1:
                detail += f" (+{len(info) - 1} more, -v shows all)"
        rows.append([c.id, _MARK[c.status], _counts([f for f in c.findings if f.severity > Severity.INFO
                                                    or f.inconclusive]), _wrap(detail, 60)])
    lines.append(tabulate(rows, headers=["check", "status", "findings", "detail"], tablefmt="simple"))

    shown = [
        (c, f) for c in report.checks for f in c.findings
        if opts.verbose or f.severity > Severity.INFO or f.inconclusive
    ]
    shown.sort(key=lambda cf: (-int(cf[1].severity), cf[0].id))
    if shown:
        lines += ["", "Findings"]
        text_w = max(40, width - 40)
        rows = []
        for c, f in shown:
            sev = "could-not-check" if f.inconclusive else f.severity.to_text()
            if b is not None and f.severity > Severity.INFO and not b.is_new(f):
                sev += "\n(unchanged)"
            body = _wrap(f.summary, text_w)
            body += "\n" + _wrap(f"fix ({f.owner.value}): {f.fix}", text_w)
            if opts.verbose and f.evidence:
                body += "\n" + "\n".join(_wrap(f"seen: {e}", text_w) for e in f.evidence)
            if opts.debug and f.id.endswith(".crashed") and c.traceback:
                body += "\n" + safe(c.traceback)
            rows.append([sev, f.id, body])
        lines.append(tabulate(rows, headers=["severity", "finding", "what and fix"], tablefmt="simple"))

    if b is not None and b.fixed:
        lines += ["", "Fixed since the baseline"]
        lines.append(tabulate([[sev, i, safe(subj)] for i, subj, sev in b.fixed],
                              headers=["severity", "finding", "subject"], tablefmt="simple"))

    if report.predicted_ndrs:
        lines += ["", "Predicted NDRs (what receivers would answer)"]
        rows = []
        reply_w = max(30, width - 55)
        for p in report.predicted_ndrs:
            rows.append([
                p.direction.value,
                p.system_name,
                _wrap(p.reply, reply_w),
                p.owner.value,
                "\n".join(p.caused_by),
            ])
        lines.append(tabulate(rows, headers=["mail", "receiver", "reply", "owner", "caused by"], tablefmt="simple"))
    elif report.verdict.value == "pass":
        lines += ["", "No bounces predicted for the checked causes."]
    return "\n".join(lines) + "\n"
