"""Markdown for a pull-request comment: verdict, checks, failing findings with
their fix, predicted NDRs.

Remote text (banners, TXT records, host names) is escaped so it renders as
the literal text it is: control characters made visible with `safe()`, every
Markdown punctuation character backslash-escaped, `<` `>` `&` as entities,
and `@` as an entity so a record cannot mention (notify) anyone.  A banner
cannot inject a link, an image, HTML or a table cell.  With --baseline only
new findings are listed as failing, and the fixed ones are listed too.
"""

from __future__ import annotations

import re

from deliverck.baseline import shown_findings
from deliverck.model import Report, Severity, Status

from deliverck.report.escape import safe

_PUNCT = re.compile(r"([\\`*_{}\[\]()#+\-.!|~:$])")       # `$` starts math on GitHub, `:` autolinks
_ICON = {"pass": "✅", "fail": "❌", "incomplete": "⚠️"}
_STATUS = {Status.PASS: "pass", Status.WARN: "**warn**", Status.FAIL: "**FAIL**",
           Status.ERROR: "**error**", Status.SKIPPED: "skipped"}


def md(text: object) -> str:
    s = safe(text)
    s = s.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;").replace("@", "&#64;")
    return _PUNCT.sub(r"\\\1", s)


def render(report: Report, opts) -> str:
    t = report.target
    label = md(t.name or t.ip)
    v = report.verdict.value
    out = [f"### {_ICON.get(v, '')} deliverck {label}: {v.upper()}", ""]
    out.append(f"Exit {report.exit_code}; fail on {report.fail_on.to_text()} or worse; "
               f"deliverck {md(report.tool_version)}.")
    for p, o in report.zone_files:
        out.append(f"Zone {md(o)} answered from the file {md(p)} (the proposed change).")
    b = report.baseline
    if b is not None:
        out.append(f"Compared with the baseline {md(b.path)}: **{len(b.new)} new**, {len(b.fixed)} fixed, "
                   f"{len(b.unchanged)} unchanged findings.")
    out += ["", "| check | status | detail |", "|---|---|---|"]
    for c in report.checks:
        detail = md(c.reason) if c.status in (Status.SKIPPED, Status.ERROR) else ""
        out.append(f"| `{c.id}` | {_STATUS[c.status]} | {detail} |")

    shown = sorted(shown_findings(report, Severity.WARNING), key=lambda cf: (-int(cf[1].severity), cf[0].id))
    if shown:
        out += ["", "#### New findings" if b is not None else "#### Findings", ""]
        for _c, f in shown:
            sev = "could not check" if f.inconclusive else f.severity.to_text()
            out.append(f"- **{sev}** `{f.id}` {md(f.subject)}: {md(f.summary)}  ")
            out.append(f"  fix ({f.owner.value}): {md(f.fix)}")
    if b is not None and b.fixed:
        out += ["", "#### Fixed since the baseline", ""]
        out += [f"- {md(i)} {md(s)} ({md(sev)})" for i, s, sev in b.fixed]

    if report.predicted_ndrs:
        out += ["", "#### Predicted NDRs", "", "| mail | receiver | reply | caused by |", "|---|---|---|---|"]
        for p in report.predicted_ndrs:
            out.append(f"| {p.direction.value} | {md(p.system_name)} | {md(p.reply)} | "
                       f"{', '.join(f'`{x}`' for x in p.caused_by)} |")
    return "\n".join(out) + "\n"
