"""GitHub Actions workflow commands: one annotation per finding at warning or worse.

`::error title=T::MESSAGE` lines; GitHub reads any stdout line that starts
with `::` as a command, so every value is escaped as the Actions toolkit
does (data: % CR LF; properties also : and ,) and control characters are
made visible with `safe()` first: a banner cannot end the annotation or start
a command of its own.  With --baseline only new findings are annotated.
A plain summary follows.
"""

from __future__ import annotations

from deliverck.baseline import shown_findings
from deliverck.model import Report, Severity, Status
from deliverck.report.table import summary_line
from deliverck.text import safe


def escape_data(text: str) -> str:
    return text.replace("%", "%25").replace("\r", "%0D").replace("\n", "%0A")


def escape_property(text: str) -> str:
    return escape_data(text).replace(":", "%3A").replace(",", "%2C")


def _level(f, fail_on: Severity) -> str:
    if f.inconclusive:
        return "warning"
    return "error" if f.severity >= fail_on else "warning"


def render(report: Report, opts) -> str:
    t = report.target
    label = safe(t.name or t.ip)
    lines: list[str] = []
    for _c, f in shown_findings(report, Severity.WARNING):
        sev = "could not check" if f.inconclusive else f.severity.to_text()
        title = f"deliverck {label}: {f.id} ({sev})"
        message = f"{safe(f.subject)}: {safe(f.summary)}\nfix ({f.owner.value}): {safe(f.fix)}"
        message += "".join(f"\nseen: {safe(e)}" for e in f.evidence[:5])
        lines.append(f"::{_level(f, report.fail_on)} title={escape_property(title)}::{escape_data(message)}")
    lines.append(f"deliverck {label}: {report.verdict.value.upper()} (exit {report.exit_code}; "
                 f"fail on {report.fail_on.to_text()} or worse)")
    for path, origin in report.zone_files:
        lines.append(f"zone {origin} answered from {safe(path)}")
    if report.baseline is not None:
        b = report.baseline
        lines.append(f"baseline {safe(b.path)}: {len(b.new)} new, {len(b.fixed)} fixed, {len(b.unchanged)} unchanged")
        lines += [f"fixed: {i} {safe(s)}" for i, s, _sev in b.fixed]
    for c in report.checks:
        extra = f" ({safe(c.reason)})" if c.status in (Status.SKIPPED, Status.ERROR) and c.reason else ""
        lines.append(f"{c.id}: {c.status.value}{extra}")
    for p in report.predicted_ndrs:
        cond = f" ({safe(p.condition)})" if p.condition else ""
        lines.append(f"predicted NDR, {p.likelihood.value}{cond}: {p.direction.value} {safe(p.system_name)} "
                     f"{safe(p.reply)} [owner {p.owner.value}; caused by {', '.join(p.caused_by)}]")
    lines.append(summary_line(report))
    return "\n".join(lines) + "\n"     # every summary line starts with our own text, never "::"
