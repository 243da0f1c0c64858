"""The human-readable report: verdict first, then checks, findings, predicted NDRs, one summary line.

It fits the terminal (COLUMNS, else the terminal's width, at least 60
columns) and says each thing once: findings that differ only in their
subject share one entry listing the subjects, the row of a check shows what
was seen (or its worst problem) in at most two lines, and `-v` shows every
finding, every subject and the evidence instead of "+N more" notes.
"""

from __future__ import annotations

import shutil
import textwrap
from collections.abc import Sequence

from tabulate import tabulate

from deliverck.model import Finding, Likelihood, Report, Severity, Status
from deliverck.text import safe
from deliverck.verdict import certain_bounce

_MARK = {
    Status.PASS: "pass",
    Status.WARN: "WARN",
    Status.FAIL: "FAIL",
    Status.ERROR: "ERROR",
    Status.SKIPPED: "skipped",
}
_DETAIL_LINES = 2            # lines of a check's detail cell without -v
_INDENT = 2


def _width() -> int:
    return max(60, min(shutil.get_terminal_size((100, 24)).columns, 200))


def _wrap(text: str, width: int, indent: str = "", first: str | None = None) -> list[str]:
    first = indent if first is None else first
    return textwrap.wrap(safe(text), width=max(width, 20), initial_indent=first, subsequent_indent=indent,
                         break_long_words=True, break_on_hyphens=False) or [first.rstrip()]


def _clip(lines: list[str], limit: int) -> list[str]:
    if len(lines) <= limit:
        return lines
    out = lines[:limit]
    out[-1] = out[-1][: max(len(out[-1]) - 4, 0)].rstrip() + " ..."
    return out


def _severity(f: Finding) -> str:
    return "could not check" if f.inconclusive else f.severity.to_text()


def _counts(findings) -> str:
    by: dict[str, int] = {}
    for f in findings:
        by[_severity(f)] = by.get(_severity(f), 0) + 1
    order = ["could not check"] + [s.to_text() for s in sorted(Severity, reverse=True)]
    return ", ".join(f"{by[k]} {k}" for k in order if k in by)


def _problems(findings) -> list[Finding]:
    return [f for f in findings if f.severity > Severity.INFO or f.inconclusive]


def _detail(c, verbose: bool, width: int) -> str:
    """What the row of a check says: why it was skipped or could not finish, its
    worst problem, else what it saw."""
    problems = sorted(_problems(c.findings), key=lambda f: (not f.inconclusive, -int(f.severity)))
    info = [f for f in c.findings if f.severity == Severity.INFO and not f.inconclusive]
    if c.status in (Status.SKIPPED, Status.ERROR) and c.reason:
        text, rest = c.reason, 0
    elif c.status in (Status.FAIL, Status.WARN) and problems:
        text, rest = problems[0].summary, len(problems) - 1
    elif info and verbose:
        # -v lists every finding with its evidence below: the row points there instead of repeating one.
        text, rest = f"{len(info)} {'fact' if len(info) == 1 else 'facts'} below, with what was seen", 0
    elif info:
        text, rest = info[0].summary, len(info) - 1
    elif problems:
        text, rest = problems[0].summary, len(problems) - 1
    else:
        text, rest = "", 0
    lines = _wrap(text, width)
    if not verbose:
        lines = _clip(lines, _DETAIL_LINES)
        if rest:
            more = f"(+{rest} more below)" if c.status in (Status.FAIL, Status.WARN) else f"(+{rest} more, -v)"
            if len(lines[-1]) + len(more) + 1 > width:
                if len(lines) < _DETAIL_LINES:
                    lines.append(more)
                    return "\n".join(lines)
                keep = max(width - len(more) - 5, 0)
                lines[-1] = lines[-1][:keep].rstrip() + " ..."
            lines[-1] += " " + more
    return "\n".join(lines)


def _grouped(shown: Sequence[tuple[object, Finding]], verbose: bool) -> list[tuple[Finding, list[Finding]]]:
    """Findings that say the same thing (same id and fix) about several subjects: one entry."""
    if verbose:
        return [(f, [f]) for _c, f in shown]
    groups: dict[tuple, list[Finding]] = {}
    for _c, f in shown:
        groups.setdefault((f.id, f.severity, f.inconclusive, f.fix), []).append(f)
    return [(fs[0], fs) for fs in groups.values()]


def _findings(report: Report, opts, width: int) -> list[str]:
    b = report.baseline
    shown = [(c, f) for c in report.checks for f in c.findings
             if opts.verbose or f.severity > Severity.INFO or f.inconclusive]
    shown.sort(key=lambda cf: (not cf[1].inconclusive, -int(cf[1].severity), cf[0].id, cf[1].id))
    if not shown:
        return []
    tb = {id(f): c.traceback for c, f in shown if c.traceback}
    lines = ["", "Findings"]
    pad = " " * (_INDENT + 2)
    fixes: dict[str, str] = {}
    for f, members in _grouped(shown, opts.verbose):
        head = f"{_severity(f).upper()}  {f.id}"
        if b is not None and f.severity > Severity.INFO and not any(b.is_new(m) for m in members):
            head += "  (unchanged)"
        lines.append(" " * _INDENT + head)
        lines += _wrap(f.summary, width, pad)
        if len(members) > 1:
            others = ", ".join(safe(m.subject) for m in members[1:])
            lines += _wrap(f"the same for {len(members) - 1} more: {others}", width, pad)
        if f.severity == Severity.INFO and not f.inconclusive and f.fix.strip() == "Nothing to fix.":
            pass
        elif f.fix in fixes and not opts.verbose:
            lines += _wrap(f"fix ({f.owner.value}): as for {fixes[f.fix]} above", width, pad)
        else:
            lines += _wrap(f"fix ({f.owner.value}): {f.fix}", width, pad)
            fixes.setdefault(f.fix, f.id)
        if opts.verbose:
            for e in f.evidence:
                lines += _wrap(e, width, pad + "  ", first=pad + "seen: ")
        if opts.debug and f.id.endswith(".crashed") and tb.get(id(f)):
            lines += [pad + safe(x) for x in tb[id(f)].splitlines()]
    return lines


def _predictions(report: Report, width: int) -> list[str]:
    if not report.predicted_ndrs:
        return []
    lines = ["", *_wrap("Predicted NDRs (will: the receiver's rule always fires; may: it depends)", width,
                        "  ", first="")]
    pad = " " * (_INDENT + 6)
    for p in report.predicted_ndrs:
        first = " " * _INDENT + f"{p.likelihood.value:<4}  "
        lines += _wrap(f"{p.direction.value}, {p.system_name}: {p.reply}", width, pad, first=first)
        if p.condition:
            lines += _wrap(p.condition, width, pad)
        lines += _wrap(f"owner {p.owner.value}; caused by {', '.join(p.caused_by)}", width, pad)
    return lines


def summary_line(report: Report) -> str:
    """One line: the verdict, the findings by severity, the receivers that will bounce the mail."""
    from deliverck.ndr.catalog import load

    problems = _problems(f for c in report.checks for f in c.findings)
    counts = _counts(problems) or "no problems"
    fallback = load().fallback_receivers()
    will = [p for p in report.predicted_ndrs if certain_bounce(p, report.receivers, fallback)]
    may = [p for p in report.predicted_ndrs if p not in will]
    parts = [f"summary: {report.verdict.value.upper()}", counts]
    if will:
        names = dict.fromkeys(f"{p.system_name} {p.status or p.code}".strip() for p in will)
        parts.append("will bounce: " + ", ".join(names))
    elif report.predicted_ndrs:
        parts.append("no certain bounce")
    if may:
        soft = dict.fromkeys(p.system_name for p in may if p.likelihood is Likelihood.MAY)
        deferred = dict.fromkeys(p.system_name for p in may if p.likelihood is Likelihood.WILL)
        if deferred:
            parts.append("will defer or bounce after retries: " + ", ".join(deferred))
        if soft:
            parts.append("may bounce: " + ", ".join(soft))
    return "; ".join(parts)


def _checks_table(report: Report, opts, width: int) -> list[str]:
    counts = [_counts(_problems(c.findings)) for c in report.checks]
    count_w = min(max([8] + [len(x) for x in counts]), 16)
    detail_w = width
    while True:
        rows = [[c.id, _MARK[c.status], "\n".join(textwrap.wrap(n, count_w)), _detail(c, opts.verbose, detail_w)]
                for c, n in zip(report.checks, counts)]
        text = tabulate(rows, headers=["check", "status", "findings", "detail"], tablefmt="simple")
        over = max((len(x) for x in text.splitlines()), default=0) - width
        if over <= 0 or detail_w <= 24:
            return text.splitlines()
        detail_w = max(detail_w - over, 24)


def _message_lines(m, width: int) -> list[str]:
    """Who the message says it is from and how it came: the facts the checks below judge."""
    out: list[str] = []
    head = f"From {', '.join(m.from_) or '(none)'}"
    if m.subject:
        head += f"; Subject {m.subject}"
    out += _wrap(head, width, "  ")
    s = m.session
    if s is not None:
        tls = f"{s.tls_version} {s.tls_cipher}".strip() if s.tls_version else "no TLS (STARTTLS not used)"
        out += _wrap(f"received from {s.peer_ip} ({'EHLO' if s.esmtp else 'HELO'} {s.helo}), MAIL FROM "
                     f"<{s.mail_from}>, {tls}", width, "  ")
    return out


def render(report: Report, opts) -> str:
    width = _width()
    t = report.target
    lines: list[str] = []
    label = t.name or t.ip
    roles = f" ({', '.join(t.roles)})" if t.roles else ""
    if report.message is not None:
        label, roles = f"message {t.input}", ""
    lines.append(f"deliverck {report.tool_version}: {safe(label)}{roles}")
    lines += _wrap(
        f"VERDICT: {report.verdict.value.upper()} (exit {report.exit_code}; fail on {report.fail_on.to_text()}"
        f" or worse; {report.duration_ms} ms; resolver {', '.join(report.resolvers)})", width, "  ", first="")
    if report.message is not None:
        lines += _message_lines(report.message, width)
    for note in t.notes:
        lines += _wrap(f"note: {note}", width, "  ")
    for path, origin in report.zone_files:
        lines += _wrap(f"zone {origin}: answered from the file {path} (--zone-file), not from DNS", width, "  ")
    b = report.baseline
    if b is not None:
        lines += _wrap(f"baseline {b.path}: {len(b.new)} new, {len(b.fixed)} fixed, {len(b.unchanged)} unchanged"
                       " (only new findings count)", width, "  ")
    lines.append("")

    lines += _checks_table(report, opts, width)

    lines += _findings(report, opts, width)

    if b is not None and b.fixed:
        lines += ["", "Fixed since the baseline"]
        for i, subj, sev in b.fixed:
            lines += _wrap(f"{sev}  {i}  {subj}", width, " " * (_INDENT + 2), first=" " * _INDENT)

    lines += _predictions(report, width)
    if not report.predicted_ndrs and report.verdict.value == "pass":
        lines += ["", "No bounces predicted for the checked causes."]
    lines += ["", *_wrap(summary_line(report), width, "  ")]
    return "\n".join(lines) + "\n"
