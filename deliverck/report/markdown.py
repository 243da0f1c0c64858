"""Markdown for a pull-request comment: verdict, checks, failing findings with
their fix, predicted NDRs with their likelihood, one summary line.

What a reader sees must be what the text says, and remote text (banners, TXT
records, host names) must never become markup.  Our own texts put record
examples in `code spans`; they stay code spans (nothing is interpreted inside
one on GitHub: no link, no HTML, no mention).  Everything outside them is
escaped: control characters made visible with `safe()`, Markdown punctuation
backslash-escaped, `<` `>` `&` as entities, and an `@` that could start a
mention (at the start of a word) as an entity; the `@` inside a mail address
cannot mention anyone and is left as it is.  A backtick without its pair is
escaped.  In table cells `|` is escaped inside code spans too (GFM splits
cells first).  With --baseline only new findings are listed as failing, and
the fixed ones are listed too.
"""

from __future__ import annotations

import re

from deliverck.baseline import shown_findings
from deliverck.model import Report, Severity, Status
from deliverck.text import safe

_PUNCT = re.compile(r"([\\`*_{}\[\]()#+\-.!|~:$])")       # `$` starts math on GitHub, `:` autolinks
_MENTION = re.compile(r"(?<![\w.+-])@")                 # an @ not inside a mail address
_ICON = {"pass": "✅", "fail": "❌", "incomplete": "⚠️"}
_STATUS = {Status.PASS: "pass", Status.WARN: "**warn**", Status.FAIL: "**FAIL**",
           Status.ERROR: "**error**", Status.SKIPPED: "skipped"}


def _plain(s: str) -> str:
    s = _PUNCT.sub(r"\\\1", s)
    s = s.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")
    return _MENTION.sub("&#64;", s)


def md(text: object, cell: bool = False) -> str:
    """`text` as Markdown that displays exactly it; paired backticks stay code spans."""
    s = safe(text)
    tail = ""
    if s.count("`") % 2:                    # a backtick without its pair is literal text
        cut = s.rindex("`")
        s, tail = s[:cut], s[cut:]
    out = []
    for i, part in enumerate(s.split("`")):
        if i % 2 == 0:
            out.append(_plain(part))
        elif part.strip():
            out.append("`" + (part.replace("|", "\\|") if cell else part) + "`")
        else:
            out.append(_plain("`" + part + "`"))
    return "".join(out) + _plain(tail)


def render(report: Report, opts) -> str:
    t = report.target
    label = md(t.name or t.ip)
    v = report.verdict.value
    out = [f"### {_ICON.get(v, '')} deliverck {label}: {v.upper()}", ""]
    out.append(f"Exit {report.exit_code}; fail on {report.fail_on.to_text()} or worse; "
               f"deliverck {md(report.tool_version)}.")
    for path, origin in report.zone_files:
        out.append(f"Zone {md(origin)} answered from the file {md(path)} (the proposed change).")
    b = report.baseline
    if b is not None:
        out.append(f"Compared with the baseline {md(b.path)}: **{len(b.new)} new**, {len(b.fixed)} fixed, "
                   f"{len(b.unchanged)} unchanged findings.")
    out += ["", "| check | status | detail |", "|---|---|---|"]
    for c in report.checks:
        detail = md(c.reason, cell=True) if c.status in (Status.SKIPPED, Status.ERROR) else ""
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
        out += ["", "#### Predicted NDRs", "",
                "*will*: the receiver's rule always fires on this evidence; *may*: it depends on what is said.", "",
                "| likely | mail | receiver | reply | owner | caused by |", "|---|---|---|---|---|---|"]
        for p in report.predicted_ndrs:
            likely = f"**{p.likelihood.value}**" if p.likelihood.value == "will" else \
                f"may: {md(p.condition, cell=True)}"
            out.append(f"| {likely} | {p.direction.value} | {md(p.system_name, cell=True)} | "
                       f"{md(p.reply, cell=True)} | {p.owner.value} | "
                       f"{', '.join(f'`{x}`' for x in p.caused_by)} |")
    from deliverck.report.table import summary_line

    out += ["", summary_line(report)]          # deliverck's own words and catalog names: nothing remote
    return "\n".join(out) + "\n"
