"""The fleet dashboard: one self-contained HTML page for many targets over time.

`deliverck audit --config FILE --format html -o report.html` shows one audit run;
`deliverck report history DIR -o dashboard.html` shows the runs cron kept.  Both read
the JSON documents (deliverck.audit/1, deliverck.report/1, deliverck.state/1), never
the engine's objects, so a page made from last month's files and one made from the run
that just finished show the same thing the same way: the JSON report is the data model.

Every target becomes a list of *observations* (its verdict, check statuses and problem
findings at one time); the page shows each target's latest one as a row, compares it with
the one before (new and fixed findings: the state file's rule, warning or worse or
inconclusive), and draws the verdicts over time as an inline SVG sparkline.

Remote text (target names, finding summaries, evidence, ignore reasons) reaches the page
only through the HTML report's Jinja2 environment (report/html.py: autoescape, and every
value made visible by deliverck.text.safe() first), so both pages follow one rule.  The page
fetches nothing: one inline style block allowed by its sha256 hash in a Content-Security-
Policy meta tag, and no script at all (script-src 'none').
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass, field
from typing import Any

from deliverck import __version__
from deliverck.text import safe

# The labels a cell shows besides its colour (colour alone says nothing to a colour-blind reader
# or on a black-and-white print).
STATUS_LABEL = {"pass": "pass", "warn": "WARN", "fail": "FAIL", "error": "ERROR", "skipped": "skipped"}
VERDICT_LABEL = {"pass": "PASS", "fail": "FAIL", "incomplete": "INCOMPLETE"}
PROBLEM_SEVERITIES = ("warning", "error", "critical")     # with inconclusive ones: the state file's set
DNSBL_LISTED = ("dnsbl.listed", "dnsbl.listed_policy", "dnsbl.listed_minor", "dnsbl.domain_listed")
MAX_SPARK = 30                                            # points of a sparkline: the latest runs

Key = tuple[str, str, str]                                # (finding id, subject, severity)


class BadDocument(ValueError):
    """A JSON document that is none of the three kinds, or one whose fields are not what its schema says."""


@dataclass
class Observation:
    """One target at one time, from whichever document said it."""

    name: str
    when: str                                   # RFC 3339 UTC: the run's end ("" when unknown)
    verdict: str                                # pass, fail, incomplete
    checks: dict[str, str] | None               # check id -> status; None: a state file (no statuses)
    problems: frozenset[Key]
    source: str                                 # the file (or "this run", "--state")
    certs: list[tuple[str, str, int]] = field(default_factory=list)        # (host, ip, days left)
    listings: list[tuple[str, str]] = field(default_factory=list)          # (address or domain, list)
    expired: list[dict] = field(default_factory=list)                      # expired ignores (audit JSON)
    ignored: int = 0
    error: str = ""
    detail: list[dict] | None = None            # the report's checks, every field a string (see _detail)


def _str(d: dict, key: str, where: str) -> str:
    v = d.get(key)
    if not isinstance(v, str):
        raise BadDocument(f'{where}"{key}" must be a string')
    return v


def _verdict(d: dict, where: str) -> str:
    v = d.get("verdict")
    if v not in VERDICT_LABEL:
        raise BadDocument(f'{where}"verdict" must be pass, fail or incomplete')
    return str(v)


def _findings(report: dict) -> list[tuple[str, dict]]:
    out = []
    for c in report["checks"]:
        for f in c["findings"]:
            out.append((c["id"], f))
    return out


def _text(value: Any) -> str:
    return value if isinstance(value, str) else ""


def _detail(checks: list[dict]) -> list[dict]:
    """The report's checks and findings with every printed field a string: a document from DIR may
    lack any optional field, and the template must not fail on one that does."""
    out = []
    for c in checks:
        found = [{"id": f["id"], "subject": f["subject"], "severity": f["severity"], "summary": _text(f.get("summary")),
                  "fix": _text(f.get("fix")), "owner": _text(f.get("owner")),
                  "evidence": [e for e in f.get("evidence") or [] if isinstance(e, str)]
                  if isinstance(f.get("evidence"), list) else []} for f in c["findings"]]
        out.append({"id": c["id"], "title": _text(c.get("title")), "status": c["status"],
                    "reason": _text(c.get("reason")), "findings": found,
                    "problems": sum(1 for f in found if f["severity"] != "info")})
    return out


def _facts(check: str, fid: str, subject: str, args: Any, certs: dict, listings: set) -> None:
    """What the table shows besides statuses, from the findings' machine-readable args (the same
    ones the Prometheus format reads): days until a STARTTLS certificate expires, DNSBL listings."""
    if not isinstance(args, dict):
        return
    days = args.get("days_left")
    if check == "starttls" and isinstance(days, int) and not isinstance(days, bool):
        certs[(str(args.get("host", "")), str(args.get("ip", subject)))] = days
    if fid in DNSBL_LISTED:
        listed_on = args.get("list_name") or args.get("list") or args.get("zone") or "a block list"
        listings.add((str(args.get("ip") or subject), str(listed_on)))


def from_report(doc: dict, source: str, name: str = "") -> Observation:
    """A deliverck.report/1 document (what `deliverck check --json` prints, or an audit target's report)."""
    where = "report: "
    target = doc.get("target")
    checks = doc.get("checks")
    if not isinstance(target, dict) or not isinstance(checks, list):
        raise BadDocument(f'{where}needs "target" and "checks"')
    statuses: dict[str, str] = {}
    problems: set[Key] = set()
    certs: dict[tuple[str, str], int] = {}
    listings: set[tuple[str, str]] = set()
    for c in checks:
        if not isinstance(c, dict) or not isinstance(c.get("findings"), list) or c.get("status") not in STATUS_LABEL:
            raise BadDocument(f'{where}every check needs an "id", a "status" and "findings"')
        statuses[_str(c, "id", where)] = c["status"]
        for f in c["findings"]:
            if not isinstance(f, dict):
                raise BadDocument(f"{where}a finding is not an object")
            fid, subject, sev = (_str(f, k, where) for k in ("id", "subject", "severity"))
            if sev in PROBLEM_SEVERITIES or f.get("inconclusive") is True:
                problems.add((fid, subject, sev))
            _facts(c["id"], fid, subject, f.get("args"), certs, listings)
    label = name or target.get("name") or target.get("ip") or target.get("input")
    if not isinstance(label, str) or not label:
        raise BadDocument(f'{where}"target" has no name')
    when = doc.get("finished") if isinstance(doc.get("finished"), str) else ""
    return Observation(label, str(when), _verdict(doc, where), statuses, frozenset(problems), source,
                       [(h, i, d) for (h, i), d in sorted(certs.items())], sorted(listings), detail=_detail(checks))


def from_audit(doc: dict, source: str) -> list[Observation]:
    """A deliverck.audit/1 document: one observation per target, at the run's end."""
    targets = doc.get("targets")
    if not isinstance(targets, list):
        raise BadDocument('audit: "targets" must be a list')
    out = []
    for t in targets:
        if not isinstance(t, dict) or not isinstance(t.get("report"), dict):
            raise BadDocument('audit: every target needs a "name" and a "report"')
        name = _str(t, "name", "audit: target ")
        o = from_report(t["report"], source, name)
        o.verdict = _verdict(t, "audit: target ")
        o.when = o.when or str(doc.get("finished") or "")
        expired = t.get("expired_ignores")
        o.expired = [e for e in expired if isinstance(e, dict)] if isinstance(expired, list) else []
        o.ignored = len(t["ignored"]) if isinstance(t.get("ignored"), list) else 0
        o.error = t["error"] if isinstance(t.get("error"), str) else ""
        out.append(o)
    return out


def from_state_entry(name: str, entry: dict, when: str, source: str) -> Observation:
    """One target of a deliverck.state/1 file: a verdict and its problem findings, no statuses."""
    where = f"state: target {name!r} "
    found = entry.get("findings")
    if not isinstance(found, list) or not all(isinstance(x, list) and len(x) == 3
                                              and all(isinstance(y, str) for y in x) for x in found):
        raise BadDocument(f'{where}"findings" must be a list of [finding id, subject, severity]')
    return Observation(name, when, _verdict(entry, where), None,
                       frozenset((a, b, c) for a, b, c in found), source)


def from_state(doc: dict, source: str) -> list[Observation]:
    targets = doc.get("targets")
    if not isinstance(targets, dict):
        raise BadDocument('state: "targets" must be an object')
    when = doc.get("written") if isinstance(doc.get("written"), str) else ""
    return [from_state_entry(str(n), e if isinstance(e, dict) else {}, str(when), source)
            for n, e in targets.items()]


def from_bulk_line(doc: dict, source: str) -> Observation:
    """One line of `deliverck bulk` output (deliverck.bulk/1, docs/bulk.md): the target's report, or,
    for a target that could not be audited, its error as an incomplete run (never a pass)."""
    name = _str(doc, "input", "bulk line: ")
    report = doc.get("report")
    if isinstance(report, dict):
        return from_report(report, source, name)
    error = doc.get("error") if isinstance(doc.get("error"), str) else "not audited"
    return Observation(name, "", "incomplete", None, frozenset(), source, error=str(error))


def observations(doc: Any, source: str) -> list[Observation]:
    """Whatever deliverck document DOC is; BadDocument when it is none."""
    schema = doc.get("schema") if isinstance(doc, dict) else None
    if not isinstance(doc, dict) or not isinstance(schema, str):
        raise BadDocument('not a deliverck document (no "schema")')
    kind = schema.split("/", 1)[0]
    if kind == "deliverck.report":
        return [from_report(doc, source)]
    if kind == "deliverck.audit":
        return from_audit(doc, source)
    if kind == "deliverck.state":
        return from_state(doc, source)
    if kind == "deliverck.bulk":
        return [from_bulk_line(doc, source)]
    raise BadDocument(f"schema {safe(schema)[:60]!r} is not deliverck.report, deliverck.audit, deliverck.state "
                      "or deliverck.bulk")


# --- the page's model -----------------------------------------------------------------------

@dataclass
class Row:
    anchor: str                     # the id of the target's detail section ("t1", ...): never the name
    latest: Observation
    previous: Observation | None
    history: list[Observation]
    new: list[Key]
    fixed: list[Key]

    @property
    def spark(self) -> dict:
        return sparkline([o.verdict for o in self.history[-MAX_SPARK:]],
                         [o.when for o in self.history[-MAX_SPARK:]])


def _order(o: Observation) -> dt.datetime:
    """Runs in time order; a time that cannot be read sorts first (it is shown as it is)."""
    try:
        t = dt.datetime.fromisoformat(o.when.replace("Z", "+00:00"))
    except ValueError:
        return dt.datetime.min.replace(tzinfo=dt.UTC)
    return t if t.tzinfo else t.replace(tzinfo=dt.UTC)


def _dedupe(hist: list[Observation]) -> list[Observation]:
    """One observation per run: cron often keeps a run's audit JSON and its state file, which
    say the same run twice (the state's "written" is the audit's "finished"); the fuller wins."""
    out: list[Observation] = []
    for o in hist:
        if out and o.when and out[-1].when == o.when:
            if out[-1].checks is None and o.checks is not None:
                out[-1] = o
            continue
        out.append(o)
    return out


def sparkline(verdicts: list[str], times: list[str]) -> dict:
    """Points of an inline SVG: x by run, y by verdict (pass high, incomplete middle, fail low)."""
    level = {"pass": 4, "incomplete": 11, "fail": 18}
    step = 10 if len(verdicts) > 1 else 0
    points = [{"x": 5 + i * step, "y": level[v], "verdict": v, "when": w}
              for i, (v, w) in enumerate(zip(verdicts, times))]
    return {"width": 10 + step * max(0, len(verdicts) - 1), "points": points,
            "path": " ".join(f"{p['x']},{p['y']}" for p in points)}


def build_rows(obs: list[Observation], previous: dict[str, Observation] | None = None) -> list[Row]:
    """One row per target: its observations in time order; new and fixed against the one before
    (or against PREVIOUS, the state file's entry, for a single audit run)."""
    by_name: dict[str, list[Observation]] = {}
    for o in obs:                           # rows in the order targets first appear (the config's)
        by_name.setdefault(o.name, []).append(o)
    rows = []
    for n, (name, hist) in enumerate(by_name.items(), 1):
        hist = _dedupe(sorted(hist, key=_order))     # stable: runs of equal time keep their given order
        if previous is not None and name in previous:
            hist = [previous[name], *hist]
        latest = hist[-1]
        prev = hist[-2] if len(hist) > 1 else None
        new = sorted(latest.problems - prev.problems) if prev else []
        fixed = sorted(prev.problems - latest.problems) if prev else []
        rows.append(Row(f"t{n}", latest, prev, hist, new, fixed))
    return rows


def columns(rows: list[Row]) -> list[str]:
    """Check ids in the order the reports list them (their run order), each once; from every run
    kept, so that a target whose latest run is known only from a state file still has its columns."""
    seen: dict[str, None] = {}
    for r in rows:
        for o in (r.latest, *reversed(r.history)):
            for c in o.checks or {}:
                seen.setdefault(c, None)
    return list(seen)


# --- the page ---------------------------------------------------------------------------

def _counts(rows: list[Row]) -> dict[str, int]:
    out = {"targets": len(rows), "pass": 0, "fail": 0, "incomplete": 0}
    for r in rows:
        out[r.latest.verdict] += 1
    out["expired"] = sum(len(r.latest.expired) for r in rows)
    out["new"] = sum(len(r.new) for r in rows)
    out["fixed"] = sum(len(r.fixed) for r in rows)
    return out


def render_page(rows: list[Row], title: str, context: dict[str, Any]) -> str:
    """The HTML page.  CONTEXT: `generated` (time), `runs` (how many documents), `notes` (one line
    per file that could not be used), `removed` (targets gone since the state file), `mode`
    ("audit" or "history"), `has_previous` (whether new/fixed could be computed at all)."""
    from deliverck.report.html import environment, static_block

    css, css_source = static_block("dashboard.css")
    return environment().get_template("dashboard.html.j2").render(
        title=title, rows=rows, checks=columns(rows), counts=_counts(rows), css=css,
        csp=f"default-src 'none'; style-src {css_source}; script-src 'none'; img-src data:; base-uri 'none'; "
            "form-action 'none'",
        version=__version__, STATUS_LABEL=STATUS_LABEL, VERDICT_LABEL=VERDICT_LABEL, **context)


def now_text() -> str:
    return dt.datetime.now(dt.UTC).isoformat(timespec="seconds").replace("+00:00", "Z")


def _unix_text(ts: Any) -> str:
    """A state entry's last_success (Unix time, checked by the state reader) as RFC 3339; "" without one."""
    if isinstance(ts, bool) or not isinstance(ts, (int, float)):
        return ""
    return dt.datetime.fromtimestamp(ts, dt.UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")


def render_audit(audit_doc: dict, previous: dict[str, dict] | None, state_label: str = "--state") -> str:
    """One audit run (deliverck.audit/1, ignores applied).  PREVIOUS: the targets of the state file
    as read before this run (new and fixed are counted against it), or None without --state."""
    obs = from_audit(audit_doc, "this run")
    before = None
    if previous is not None:
        before = {n: from_state_entry(n, e, _unix_text(e.get("last_success")), state_label)
                  for n, e in previous.items()}
    rows = build_rows(obs, before)
    names = {o.name for o in obs}
    removed = sorted(n for n in (previous or {}) if n not in names)
    return render_page(rows, "deliverck audit", {
        "generated": str(audit_doc.get("finished") or now_text()), "runs": 1, "notes": [], "removed": removed,
        "mode": "audit", "has_previous": previous is not None})


def render_history(obs: list[Observation], notes: list[str], used: int) -> str:
    """`deliverck report history DIR`: every target's latest run, compared with its run before."""
    rows = build_rows(obs)
    latest = max((r.latest for r in rows), key=_order)
    return render_page(rows, "deliverck fleet history", {
        "generated": latest.when or now_text(), "runs": used, "notes": notes, "removed": [],
        "mode": "history", "has_previous": any(r.previous for r in rows)})
