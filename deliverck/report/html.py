"""`--format html`: one audit or one message as a single self-contained page.

The page is meant to be attached to a ticket or published by cron and opened
from file:// by people who will not read a terminal table, so it fetches
nothing: the CSS and the small script are inline, and a Content-Security-Policy
meta tag allows exactly those two blocks by their sha256 hashes (CSP level 2,
https://www.w3.org/TR/CSP2/#source-list-valid-hashes) and nothing else (no
inline event handlers, no style attributes, no network).

Remote text (banners, TXT records, certificate fields, header values) reaches
the page only through Jinja2 with autoescape on; `finalize` additionally
passes every printed string through `text.safe()` so control characters and
bidi overrides show as visible escapes, as in the other human formats, instead
of reordering or hiding what a reader sees.  Only our own static files (CSS,
JS) are marked safe.  The view model built here is plain data; the pictures
(SPF tree, DNSSEC chain, MX diagram, timing waterfall) come from
html_pictures and each one is optional: no data, no picture.
"""

from __future__ import annotations

import base64
import functools
import hashlib
import json
from collections.abc import Iterable
from pathlib import Path
from typing import Any

from deliverck.model import CheckResult, Finding, NdrPrediction, Report, Severity, Status
from deliverck.text import safe

_TEMPLATES = Path(__file__).with_name("templates")
_STATUS_TEXT = {Status.PASS: "pass", Status.WARN: "warn", Status.FAIL: "FAIL", Status.ERROR: "error",
                Status.SKIPPED: "skipped"}
_OPEN = (Status.FAIL, Status.ERROR, Status.WARN)     # checks whose disclosure starts open


def _finalize(value: object) -> object:
    """Every `{{ }}` goes through here before autoescape: strings made visible, markup left alone."""
    from markupsafe import Markup

    if value is None:
        return ""
    if isinstance(value, Markup) or not isinstance(value, str):
        return value
    s = safe(value)
    if not s.isascii():         # noncharacters (U+FFFE, U+FDD0...) are HTML parse errors: show them as escapes
        s = "".join(f"\\u{ord(ch):04x}" if _nonchar(ch) else ch for ch in s)
    return s


def _nonchar(ch: str) -> bool:
    o = ord(ch)
    return 0xFDD0 <= o <= 0xFDEF or (o & 0xFFFE) == 0xFFFE


@functools.lru_cache(maxsize=1)
def environment() -> Any:
    """The one Jinja2 environment of the HTML pages (also usable by the fleet dashboard's templates)."""
    import jinja2
    from markupsafe import Markup

    env = jinja2.Environment(
        loader=jinja2.FileSystemLoader(str(_TEMPLATES)),
        autoescape=True,                    # every template, whatever its file name
        finalize=_finalize,
        undefined=jinja2.StrictUndefined,   # a typo in a template fails the tests, not silently blank
        trim_blocks=True,
        lstrip_blocks=True,
    )
    env.globals["nl"] = Markup("\n")     # a line break between evidence lines (finalize would show "\x0a")
    return env


def csp_hash(block: str) -> str:
    return "'sha256-" + base64.b64encode(hashlib.sha256(block.encode("utf-8")).digest()).decode("ascii") + "'"


@functools.lru_cache(maxsize=8)
def static_block(name: str) -> Any:
    """An inline CSS/JS file of ours, marked safe (it holds no remote text), with its CSP hash source."""
    from markupsafe import Markup

    text = (_TEMPLATES / name).read_text(encoding="utf-8")
    return Markup(text), csp_hash(text)


def content_security_policy(style_hashes: Iterable[str], script_hashes: Iterable[str]) -> str:
    return ("default-src 'none'; style-src " + " ".join(style_hashes) + "; script-src " + " ".join(script_hashes)
            + "; img-src data:; base-uri 'none'; form-action 'none'")


def _severity(f: Finding) -> str:
    return "could not check" if f.inconclusive else f.severity.to_text()


def _sev_class(f: Finding) -> str:
    return "inconclusive" if f.inconclusive else f.severity.to_text()


def _anchors(report: Report) -> dict[int, str]:
    """`f-<finding id>-<n>`, n counting findings of that id from 1 in report order: stable for a given report."""
    seen: dict[str, int] = {}
    out: dict[int, str] = {}
    for c in report.checks:
        for f in c.findings:
            seen[f.id] = seen.get(f.id, 0) + 1
            out[id(f)] = f"f-{f.id}-{seen[f.id]}"
    return out


def _finding_view(f: Finding, anchor: str, report: Report, opts: Any, traceback: str) -> dict:
    b = report.baseline
    return {
        "anchor": anchor, "id": f.id, "severity": _severity(f), "sev_class": _sev_class(f),
        "subject": f.subject, "summary": f.summary, "fix": f.fix, "owner": f.owner.value,
        "direction": f.direction.value, "evidence": list(f.evidence), "refs": list(f.refs), "ndr": list(f.ndr),
        "show_fix": not (f.severity == Severity.INFO and not f.inconclusive and f.fix.strip() == "Nothing to fix."),
        "new": b is not None and f.severity > Severity.INFO and b.is_new(f),
        "unchanged": b is not None and f.severity > Severity.INFO and not b.is_new(f),
        "traceback": traceback if opts.debug and f.id.endswith(".crashed") else "",
    }


def _counts(findings: Iterable[Finding]) -> list[tuple[str, int]]:
    by: dict[str, int] = {}
    for f in findings:
        if f.severity > Severity.INFO or f.inconclusive:
            by[_severity(f)] = by.get(_severity(f), 0) + 1
    order = ["could not check"] + [s.to_text() for s in sorted(Severity, reverse=True)]
    return [(k, by[k]) for k in order if k in by]


def _check_view(c: CheckResult, anchors: dict[int, str], report: Report, opts: Any) -> dict:
    # Problems first, worst first; the facts (info) after them, in the check's own order.
    ordered = sorted(c.findings, key=lambda f: (not f.inconclusive, -int(f.severity)))
    return {
        "id": c.id, "title": c.title, "status": c.status.value, "status_text": _STATUS_TEXT[c.status],
        "open": c.status in _OPEN, "duration_ms": c.duration_ms, "reason": c.reason,
        "counts": _counts(c.findings),
        "findings": [_finding_view(f, anchors[id(f)], report, opts, c.traceback) for f in ordered],
        "traceback": c.traceback if opts.debug and not any(f.id.endswith(".crashed") for f in c.findings) else "",
    }


def _caused_links(p: NdrPrediction, report: Report, anchors: dict[int, str]) -> list[dict]:
    """Each finding id a prediction names, linked to the finding of that id about one of its subjects."""
    links = []
    for fid in p.caused_by:
        found = [f for c in report.checks for f in c.findings if f.id == fid]
        best = [f for f in found if f.subject in p.subjects] or found
        links.append({"id": fid, "href": "#" + anchors[id(best[0])] if best else ""})
    return links


def _predictions(report: Report, anchors: dict[int, str]) -> list[dict]:
    """Predicted NDRs grouped by receiver, receivers in the order they first appear."""
    from deliverck.ndr.catalog import load
    from deliverck.verdict import certain_bounce

    fallback = load().fallback_receivers()
    groups: dict[str, dict] = {}
    for p in report.predicted_ndrs:
        g = groups.setdefault(p.system, {"system": p.system, "name": p.system_name, "rows": []})
        g["rows"].append({
            "reply": p.reply, "code": p.code, "status": p.status, "likelihood": p.likelihood.value,
            "condition": p.condition, "direction": p.direction.value, "owner": p.owner.value, "fix": p.fix,
            "text": p.text, "source": p.source, "bounce": certain_bounce(p, report.receivers, fallback),
            "permanent": p.permanent, "caused_by": _caused_links(p, report, anchors),
        })
    for g in groups.values():       # what will bounce first, then what will defer, then what may
        g["rows"].sort(key=lambda r: (not r["bounce"], r["likelihood"] != "will", not r["permanent"]))
    return list(groups.values())


def _claim(c: Any) -> dict | None:
    return None if c is None else {"value": c.value, "source": c.source, "proven": c.proven}


def _message(m: Any) -> dict | None:
    if m is None:
        return None
    e = m.envelope
    auth = json.dumps(m.authentication, indent=2, ensure_ascii=False, default=str, sort_keys=True) \
        if m.authentication is not None else ""
    return {
        "label": m.label, "size": m.size, "from": list(m.from_), "from_domain": m.from_domain,
        "subject": m.subject, "message_id": m.message_id, "date": m.date,
        "envelope": [(name, _claim(claim)) for name, claim in
                     (("IP address", e.ip), ("HELO/EHLO", e.helo), ("MAIL FROM", e.mail_from))],
        "rcpt": list(e.rcpt), "session": m.session, "hops": list(m.hops), "notes": list(m.notes),
        "authentication": auth,
    }


def view(report: Report, opts: Any) -> dict:
    """Everything the template shows, as plain data: the template decides nothing about the audit."""
    from deliverck.report.html_pictures import pictures
    from deliverck.report.table import summary_line

    anchors = _anchors(report)
    t = report.target
    is_message = report.message is not None
    label = f"message {t.input}" if is_message else (t.name or t.ip or t.input)
    all_findings = [f for c in report.checks for f in c.findings]
    return {
        "label": label, "roles": list(t.roles), "notes": list(t.notes), "is_message": is_message,
        "verdict": report.verdict.value, "verdict_text": report.verdict.value.upper(),
        "exit_code": report.exit_code, "fail_on": report.fail_on.to_text(), "duration_ms": report.duration_ms,
        "started": report.started, "finished": report.finished, "resolvers": list(report.resolvers),
        "receivers": list(report.receivers), "tool_version": report.tool_version, "schema": report.schema,
        "summary": summary_line(report).removeprefix("summary: "),
        "counts": _counts(all_findings),
        "checks": [_check_view(c, anchors, report, opts) for c in report.checks],
        "predictions": _predictions(report, anchors),
        "message": _message(report.message),
        "zone_files": list(report.zone_files),
        "baseline": report.baseline,
        "pictures": pictures(report, anchors),
    }


def render(report: Report, opts: Any) -> str:
    css, css_hash = static_block("report.css")
    js, js_hash = static_block("report.js")
    page = environment().get_template("report.html.j2").render(
        v=view(report, opts), css=css, js=js, csp=content_security_policy([css_hash], [js_hash]))
    # ASCII out (character references for the rest): the file reads the same whatever the locale that wrote it.
    return page.encode("ascii", "xmlcharrefreplace").decode("ascii")
