"""The fleet dashboard (issue 19, "Fleet dashboard"): `deliverck audit --format html` and
`deliverck report history DIR`.

The pages are read back with the standard library's html.parser, as a browser would tokenize
them: what is markup (tags, attributes) and what is text.  The documents the pages are made from
are built with the real model and JSON renderer (report_dict), so they have the schema's shape.
The CLI tests of `report history` need no network; the audit test runs in the lab.
"""

from __future__ import annotations

import base64
import hashlib
import json
import re
import textwrap
from html.parser import HTMLParser

from conftest import deliverck

from deliverck.model import CheckResult, Direction, Finding, Owner, Report, Severity, Status, TargetInfo, Verdict
from deliverck.report.dashboard import observations, render_audit, render_history
from deliverck.report.dashboard_history import read_history
from deliverck.report.json import report_dict

HOSTILE = '<script>alert(1)</script></style><img src=x onerror=alert(2)>"\x1b[31m\u202e'


# --- documents ------------------------------------------------------------------------------

def finding(fid: str, subject: str, sev: str = "error", summary: str = "", evidence=(), **args) -> Finding:
    return Finding(fid, Severity.from_text(sev), subject, summary or f"{fid} on {subject}", "fix it",
                   Owner.MAIL_ADMIN, Direction.OUTBOUND, tuple(evidence), args=args)


def report(name: str, when: str, verdict: str, checks: dict[str, tuple[str, list[Finding]]]) -> dict:
    results = tuple(CheckResult(cid, cid.upper(), Status(st), 5, tuple(fs)) for cid, (st, fs) in checks.items())
    r = Report(TargetInfo(name, name, "", ("domain",)), when, when, 100, Verdict(verdict),
               0 if verdict == "pass" else 1, Severity.ERROR, results, (), ("192.0.2.53",), ("default",), "0")
    return report_dict(r)


def audit_target(doc: dict, expired=(), ignored=0) -> dict:
    return {"name": doc["target"]["name"], "verdict": doc["verdict"], "exit_code": doc["exit_code"],
            "error": None, "last_success": None, "report": doc, "ignored": [{}] * ignored,
            "expired_ignores": list(expired)}


def audit(docs: list[dict], finished: str = "2026-12-05T10:00:00.000Z", **extra) -> dict:
    return {"schema": "deliverck.audit/1", "tool": {"name": "deliverck", "version": "0"},
            "started": finished, "finished": finished, "duration_ms": 1, "exit_code": 1,
            "summary": {}, "targets": [audit_target(d, **extra.get(d["target"]["name"], {})) for d in docs]}


GOOD = {"mx": ("pass", []), "ptr": ("pass", [finding("ptr.ok", "192.0.2.10", "info")]),
        "starttls": ("pass", [finding("starttls.ok", "192.0.2.10", "info", host="mx.a.test", ip="192.0.2.10",
                                      days_left=61)])}


def bad(when: str = "2026-12-05T10:00:00.000Z") -> dict:
    return report("b.test", when, "fail", {
        "mx": ("pass", []),
        "ptr": ("fail", [finding("ptr.missing", "198.51.100.7")]),
        "starttls": ("warn", [finding("starttls.cert_expiring", "198.51.100.7", "warning", host="mx.b.test",
                                      ip="198.51.100.7", days_left=5, days=5)]),
        "dnsbl": ("fail", [finding("dnsbl.listed", "198.51.100.7", ip="198.51.100.7", list="spamhaus-zen",
                                   list_name="Spamhaus ZEN", zone="zen.test")]),
        "kerberos": ("error", [finding("kerberos.timeout", "kdc.b.test", "error")]),
        "dane": ("skipped", []),
    })


# --- reading the page back ------------------------------------------------------------------

class Page(HTMLParser):
    """Tags with their attributes, the text of each element, and the style block."""

    def __init__(self, html: str) -> None:
        super().__init__(convert_charrefs=True)
        self.tags: list[tuple[str, dict]] = []
        self.stack: list[tuple[str, dict, list[str]]] = []
        self.elements: list[tuple[str, dict, str]] = []     # (tag, attrs, text inside), closed elements
        self.style = ""
        self.feed(html)
        self.close()

    def handle_starttag(self, tag, attrs):
        a = {k: v or "" for k, v in attrs}
        self.tags.append((tag, a))
        if tag not in ("meta", "br", "img", "input", "link", "polyline"):
            self.stack.append((tag, a, []))

    def handle_startendtag(self, tag, attrs):
        self.tags.append((tag, {k: v or "" for k, v in attrs}))

    def handle_endtag(self, tag):
        while self.stack:
            t, a, text = self.stack.pop()
            joined = "".join(text)
            if self.stack:
                self.stack[-1][2].append(joined)
            self.elements.append((t, a, joined))
            if t == tag:
                break

    def handle_data(self, data):
        if self.stack:
            self.stack[-1][2].append(data)
            if self.stack[-1][0] == "style":
                self.style += data

    def find(self, tag: str, **attrs: str) -> list[tuple[dict, str]]:
        return [(a, text) for t, a, text in self.elements
                if t == tag and all(a.get(k.replace("_", "-")) == v for k, v in attrs.items())]

    def cells(self) -> dict[tuple[str, str], tuple[str, str, str]]:
        """(target, check) -> (class, data-status, text) of every status cell of the fleet table."""
        keys = []
        target = None
        for t, a in self.tags:
            if t == "tr" and "data-target" in a:
                target = a["data-target"]
            if t == "td" and "data-check" in a:
                keys.append((target, a["data-check"], a.get("class", ""), a.get("data-status", "")))
        texts = [text.strip() for t, a, text in self.elements if t == "td" and "data-check" in a]
        assert len(texts) == len(keys)
        return {(tg, c): (cls, st, text) for (tg, c, cls, st), text in zip(keys, texts)}


# --- the audit page --------------------------------------------------------------------------

def test_cells_are_coloured_by_status_and_say_it_in_words():
    good = report("a.test", "2026-12-05T10:00:00.000Z", "pass", GOOD)
    p = Page(render_audit(audit([good, bad()]), None))
    cells = p.cells()
    words = {"pass": "pass", "warn": "WARN", "fail": "FAIL", "error": "ERROR", "skipped": "skipped"}
    assert cells[("a.test", "mx")] == ("st st-pass", "pass", "pass")
    assert cells[("b.test", "ptr")] == ("st st-fail", "fail", "FAIL")
    assert cells[("b.test", "starttls")] == ("st st-warn", "warn", "WARN")
    assert cells[("b.test", "kerberos")] == ("st st-error", "error", "ERROR")
    assert cells[("b.test", "dane")] == ("st st-skipped", "skipped", "skipped")
    for cls, status, text in cells.values():
        if status:
            assert text == words[status] and cls == f"st st-{status}"
    # A check that a target did not run is said, never shown as a pass.
    assert cells[("a.test", "dnsbl")] == ("st st-none", "", "not run")
    # Columns: the checks in their run order, each once.
    heads = [text for a, text in p.find("th", scope="col")]
    assert heads[:7] == ["Target", "Verdict", "Verdict over time", "New", "Fixed", "Certificate days left",
                         "DNSBL listings"]
    assert heads[7:13] == ["mx", "ptr", "starttls", "dnsbl", "kerberos", "dane"]
    verdicts = {a["data-verdict"]: text for a, text in p.find("td") if "data-verdict" in a}
    assert verdicts == {"pass": "PASS", "fail": "FAIL"}


def test_certificate_days_and_dnsbl_listings_per_target():
    good = report("a.test", "2026-12-05T10:00:00.000Z", "pass", GOOD)
    p = Page(render_audit(audit([good, bad()]), None))
    certs = [text for a, text in p.find("td", **{"class": "certs"})]
    listings = [text for a, text in p.find("td", **{"class": "dnsbl"})]
    assert certs == ["61 days: mx.a.test 192.0.2.10", "5 days: mx.b.test 198.51.100.7"]
    assert listings == ["none", "198.51.100.7 on Spamhaus ZEN"]
    # Several certificates: the cell shows the one that expires first, the detail every one.
    two = report("c.test", "2026-12-05T10:00:00.000Z", "pass", {"starttls": ("pass", [
        finding("starttls.ok", "192.0.2.30", "info", host="mx1.c.test", ip="192.0.2.30", days_left=80),
        finding("starttls.ok", "192.0.2.31", "info", host="mx2.c.test", ip="192.0.2.31", days_left=20)])})
    p = Page(render_audit(audit([two]), None))
    assert [text for a, text in p.find("td", **{"class": "certs"})] == ["20 days: mx2.c.test 192.0.2.31 (least of 2)"]
    assert [text for a, text in p.find("li") if "192.0.2.3" in text] == ["mx1.c.test 192.0.2.30: 80",
                                                                         "mx2.c.test 192.0.2.31: 20"]


def test_new_and_fixed_since_the_state_file():
    previous = {"b.test": {"verdict": "pass", "findings": [["dkim.missing", "b.test", "error"],
                                                         ["ptr.missing", "198.51.100.7", "error"]]},
                "gone.test": {"verdict": "fail", "findings": []}}
    p = Page(render_audit(audit([bad()]), previous))
    changes = [(a["data-change"], text) for a, text in p.find("li") if "data-change" in a]
    assert ("new", "+ new: error dnsbl.listed 198.51.100.7") in changes
    assert ("new", "+ new: warning starttls.cert_expiring 198.51.100.7") in changes
    assert ("new", "+ new: error kerberos.timeout kdc.b.test") in changes
    assert ("fixed", "\u2212 fixed: error dkim.missing b.test") in changes
    assert not any("ptr.missing" in t for _, t in changes)          # in both runs: neither new nor fixed
    assert [text for a, text in p.find("td", **{"class": "n-new"})] == ["3"]
    assert [text for a, text in p.find("td", **{"class": "n-fixed"})] == ["1"]
    assert any("verdict pass \u2192 fail" in text for a, text in p.find("h3"))
    assert [text for a, text in p.find("span", **{"class": "removed"})] == ["gone.test"]
    # Without a state file there is nothing to compare with, and the page says so.
    q = Page(render_audit(audit([bad()]), None))
    assert [text for a, text in q.find("td", **{"class": "n-new"})] == ["first run"]
    assert not [a for a, text in q.find("li") if "data-change" in a]


def test_expired_ignores_are_called_out():
    expired = [{"finding": "ptr.generic", "subject": "198.51.100.7", "reason": "ticket 4711", "expires": "2026-10-01",
                "line": 20, "message": "..."}]
    p = Page(render_audit(audit([bad()], **{"b.test": {"expired": expired}}), None))
    items = [text for a, text in p.find("li", **{"class": "expired-ignore"})]
    assert items == ["b.test: ptr.generic (198.51.100.7) expired on 2026-10-01 (config line 20): ticket 4711"]
    assert [text for a, text in p.find("h2", id="expired-h")] == ["Expired ignores (1)"]
    assert not Page(render_audit(audit([bad()]), None)).find("h2", id="expired-h")


def test_hostile_remote_text_stays_text():
    hostile = report("a.test", "2026-12-05T10:00:00.000Z", "fail", {
        "smtp": ("fail", [finding("smtp.banner", HOSTILE, summary="banner " + HOSTILE, evidence=[HOSTILE])])})
    html = render_audit(audit([hostile], **{"a.test": {"expired": [
        {"finding": "x.y", "subject": HOSTILE, "reason": HOSTILE, "expires": "2026-01-01", "line": 3}]}}), None)
    p = Page(html)
    assert not [t for t, a in p.tags if t in ("script", "img")]
    assert [t for t, a in p.tags].count("style") == 1
    assert not any(k.startswith("on") for t, a in p.tags for k in a)
    assert "\x1b" not in html and "\u202e" not in html
    texts = [text for a, text in p.find("div", **{"class": "finding"})]
    assert "<script>alert(1)</script></style><img src=x onerror=alert(2)>\"\\x1b[31m\\u202e" in texts[0]
    assert [text for a, text in p.find("pre")] == ['<script>alert(1)</script></style><img src=x onerror=alert(2)>'
                                                   '"\\x1b[31m\\u202e\n']
    expired = [text for a, text in p.find("li", **{"class": "expired-ignore"})]
    assert expired[0].endswith("<script>alert(1)</script></style><img src=x onerror=alert(2)>\"\\x1b[31m\\u202e")
    # A target name from a file in DIR is remote text too: in the row, its attribute and its links.
    q = Page(render_history(observations(report(HOSTILE, "2026-12-05T10:00:00.000Z", "fail", GOOD), "f.json"), [], 1))
    assert not [t for t, a in q.tags if t in ("script", "img")]
    shown = '<script>alert(1)</script></style><img src=x onerror=alert(2)>"\\x1b[31m\\u202e'
    assert [a["data-target"] for t, a in q.tags if t == "tr" and "data-target" in a] == [shown]
    assert [text for a, text in q.find("th", scope="row")] == [shown]


def test_page_is_self_contained_with_a_hash_only_policy():
    html = render_audit(audit([bad()]), None)
    p = Page(html)
    csp = [a["content"] for t, a in p.tags if t == "meta" and a.get("http-equiv") == "Content-Security-Policy"]
    digest = base64.b64encode(hashlib.sha256(p.style.encode()).digest()).decode()
    assert csp == [f"default-src 'none'; style-src 'sha256-{digest}'; script-src 'none'; img-src data:; "
                   "base-uri 'none'; form-action 'none'"]
    assert not [t for t, a in p.tags if t in ("script", "link", "iframe", "object")]
    for t, a in p.tags:
        assert "style" not in a                      # inline style attributes would need 'unsafe-hashes'
        for k in ("src", "href"):
            assert not a.get(k) or a[k].startswith("#"), (t, a)
    assert not re.search(r"url\(|@import", p.style)
    assert "prefers-color-scheme:dark" in p.style and "@media print" in p.style
    # Each target links to its detail section, whose id is not made from remote text.
    links = [a["href"] for t, a in p.tags if t == "a" and a.get("href", "").startswith("#t")]
    assert links and all(p.find("section", id=h[1:]) for h in links)
    failing = [a for t, a in p.tags if t == "details" and a.get("class") == "check"]
    assert sum("open" in a for a in failing) == 3          # ptr, dnsbl (fail) and kerberos (error) open


# --- history --------------------------------------------------------------------------------

def test_history_orders_runs_by_time_and_draws_the_sparkline(tmp_path):
    a = lambda when, verdict: report("a.test", when, verdict, GOOD)  # noqa: E731
    # File names in another order than the runs: the documents' times decide.
    (tmp_path / "x1.json").write_text(json.dumps(a("2026-12-03T00:00:00.000Z", "pass")))
    (tmp_path / "a9.json").write_text(json.dumps(a("2026-12-01T00:00:00.000Z", "fail")))
    (tmp_path / "m5.json").write_text(json.dumps(audit([bad("2026-12-04T00:00:00.000Z"),
                                                       a("2026-12-04T00:00:00.000Z", "incomplete")],
                                                      finished="2026-12-04T00:00:00.000Z")))
    (tmp_path / "state.json").write_text(json.dumps({
        "schema": "deliverck.state/1", "written": "2026-12-02T00:00:00.000Z",
        "targets": {"b.test": {"verdict": "pass", "findings": [["dkim.missing", "b.test", "error"]]},
                    "a.test": {"verdict": "pass", "findings": []}}}))
    (tmp_path / "broken.json").write_text("{not json")
    (tmp_path / "notes.txt").write_text("not read: not *.json")
    hist = read_history(str(tmp_path))
    assert hist.used == 4
    assert len(hist.notes) == 1 and "broken.json: not JSON (line 1" in hist.notes[0]
    p = Page(render_history(hist.observations, hist.notes, hist.used))
    sparks = {}
    target = None
    for t, attrs in p.tags:
        if t == "tr" and "data-target" in attrs:
            target = attrs["data-target"]
        if t == "circle":
            sparks.setdefault(target, []).append((attrs["data-verdict"], int(attrs["cx"]), int(attrs["cy"])))
    assert [v for v, x, y in sparks["a.test"]] == ["fail", "pass", "pass", "incomplete"]
    assert [y for v, x, y in sparks["a.test"]] == [18, 4, 4, 11]
    xs = [x for v, x, y in sparks["a.test"]]
    assert xs == sorted(xs) and len(set(xs)) == 4
    assert [v for v, x, y in sparks["b.test"]] == ["pass", "fail"]
    cells = p.cells()
    assert cells[("a.test", "starttls")][1:] == ("pass", "pass")
    changes = [(a["data-change"], text) for a, text in p.find("li") if "data-change" in a]
    assert ("fixed", "\u2212 fixed: error dkim.missing b.test") in changes
    assert ("new", "+ new: error ptr.missing 198.51.100.7") in changes
    assert [text for a, text in p.find("h2", id="notes-h")] == ["Files not used (1)"]


def test_history_keeps_one_run_when_audit_and_state_say_the_same(tmp_path):
    when = "2026-12-04T00:00:00.000Z"
    (tmp_path / "run.json").write_text(json.dumps(audit([bad(when)], finished=when)))
    (tmp_path / "state.json").write_text(json.dumps({"schema": "deliverck.state/1", "written": when, "targets": {
        "b.test": {"verdict": "fail", "findings": [["ptr.missing", "198.51.100.7", "error"]]}}}))
    hist = read_history(str(tmp_path))
    p = Page(render_history(hist.observations, hist.notes, hist.used))
    assert len([t for t, a in p.tags if t == "circle"]) == 1
    assert p.cells()[("b.test", "ptr")][1] == "fail"          # the audit's statuses, not "no data"


def test_history_reads_are_bounded(tmp_path):
    (tmp_path / "good.json").write_text(json.dumps(bad()))
    with open(tmp_path / "huge.json", "wb") as f:
        f.truncate(65 * 1024 * 1024)                 # sparse: no disk, and never read whole
    (tmp_path / "deep.json").write_text("[" * 100000 + "]" * 100000)
    hist = read_history(str(tmp_path))
    assert hist.used == 1
    assert sorted(n.rsplit("/", 1)[1] for n in hist.notes) == [
        "deep.json: JSON nested too deeply; left out", "huge.json: larger than 64 MiB; left out"]


def test_history_latest_run_known_only_from_a_state_file(tmp_path):
    (tmp_path / "r1.json").write_text(json.dumps(bad("2026-12-01T00:00:00.000Z")))
    (tmp_path / "s.json").write_text(json.dumps({"schema": "deliverck.state/1", "written": "2026-12-02T00:00:00.000Z",
                                                 "targets": {"b.test": {"verdict": "pass", "findings": []}}}))
    hist = read_history(str(tmp_path))
    p = Page(render_history(hist.observations, hist.notes, hist.used))
    cells = p.cells()
    assert set(cells) == {("b.test", c) for c in ("mx", "ptr", "starttls", "dnsbl", "kerberos", "dane")}
    assert set(cells.values()) == {("st st-none", "", "no data")}     # never a pass it did not see
    fixed = [text for a, text in p.find("li") if a.get("data-change") == "fixed"]
    assert "\u2212 fixed: error ptr.missing 198.51.100.7" in fixed


def _one_error_line(r, fragment: str) -> None:
    assert r.returncode == 2, (r.returncode, r.stderr)
    lines = r.stderr.splitlines()
    assert len(lines) == 1 and lines[0].startswith("deliverck: error: ") and fragment in lines[0], r.stderr
    assert r.stdout == "" and "Traceback" not in r.stderr


def test_history_cli_bad_input(tmp_path):
    _one_error_line(deliverck("report", "history", str(tmp_path / "nope")), "no such directory")
    f = tmp_path / "file.json"
    f.write_text("{}")
    _one_error_line(deliverck("report", "history", str(f)), "not a directory")
    empty = tmp_path / "empty"
    empty.mkdir()
    _one_error_line(deliverck("report", "history", str(empty)), "no *.json file in it")
    bad_only = tmp_path / "bad"
    bad_only.mkdir()
    (bad_only / "a.json").write_bytes(b"\xff\xfe binary")
    (bad_only / "b.json").write_text('{"schema": "something/1"}')
    _one_error_line(deliverck("report", "history", str(bad_only)), "none of its JSON files is a deliverck")
    _one_error_line(deliverck("report", "history", str(bad_only), "--format", "pdf"), "unknown --format")
    _one_error_line(deliverck("report", "history", str(bad_only), "-o", str(empty)), "--output")
    assert list(empty.iterdir()) == []


def test_history_cli_writes_the_page_and_notes_a_bad_file(tmp_path):
    runs = tmp_path / "runs"
    runs.mkdir()
    (runs / "r1.json").write_text(json.dumps(bad()))
    (runs / "r2.json").write_text("[1, 2")
    out = tmp_path / "dash.html"
    r = deliverck("report", "history", str(runs), "-o", str(out))
    assert r.returncode == 0, r.stderr
    assert r.stdout == ""
    assert r.stderr.splitlines() == [f"deliverck: warning: {runs / 'r2.json'}: not JSON (line 1: Expecting ',' "
                                     "delimiter); left out"]
    p = Page(out.read_text())
    assert p.cells()[("b.test", "ptr")][1:] == ("fail", "FAIL")


# --- the audit command, in the lab ----------------------------------------------------------

def test_audit_format_html_with_state(lab, tmp_path):
    cfg = tmp_path / "deliverck.toml"
    cfg.write_text(textwrap.dedent(f"""\
        [defaults]
        ca_file = "{lab.ca_file}"
        trust_anchor = "{lab.trust_anchor}"
        smtp_timeout = 3
        dns_timeout = 2
        deadline = 30

        [[target]]
        name = "good.test"

        [[target]]
        name = "no-ptr.test"
        [[target.ignore]]
        finding = "ptr.generic"
        reason = "<b>old</b> ticket"
        expires = 2026-01-01
        """))
    state = tmp_path / "state.json"
    state.write_text(json.dumps({"schema": "deliverck.state/1", "written": "2026-12-01T00:00:00.000Z",
                                 "targets": {"no-ptr.test": {"verdict": "pass", "findings": []}}}))
    out = tmp_path / "report.html"
    r = deliverck("audit", "--config", str(cfg), "--format", "html", "-o", str(out), "--state", str(state))
    assert r.returncode == 1, r.stderr
    p = Page(out.read_text())
    verdicts = {}
    target = None
    for t, a in p.tags:
        if t == "tr" and "data-target" in a:
            target = a["data-target"]
        if t == "td" and "data-verdict" in a:
            verdicts[target] = a["data-verdict"]
    assert verdicts == {"good.test": "pass", "no-ptr.test": "fail"}
    assert p.cells()[("no-ptr.test", "ptr")][1:] == ("fail", "FAIL")
    changes = [text for a, text in p.find("li") if a.get("data-change") == "new"]
    assert any("ptr.missing" in c for c in changes)
    assert [text for a, text in p.find("li", **{"class": "expired-ignore"})][0].endswith("<b>old</b> ticket")
    assert json.loads(state.read_text())["targets"]["no-ptr.test"]["verdict"] == "fail"


def test_a_bulk_output_file_is_one_run_of_many_targets(tmp_path):
    """The bulk summary (issue 19): `deliverck report history OUT.jsonl` draws bulk's lines; a target that
    could not be audited is incomplete with its error, never a pass; a line that is not bulk's is noted."""
    lines = [{"schema": "deliverck.bulk/1", "line": 1, "input": "b.test", "status": "ok", "report": bad(),
              "error": ""},
             {"schema": "deliverck.bulk/1", "line": 2, "input": "down.test", "status": "error", "report": None,
              "error": "the resolver did not answer"}]
    out = tmp_path / "out.jsonl"
    out.write_text("\n".join(json.dumps(x) for x in lines) + "\n{not json\n")
    hist = read_history(str(out))
    assert {o.name: o.verdict for o in hist.observations} == {"b.test": "fail", "down.test": "incomplete"}
    assert [o.error for o in hist.observations if o.name == "down.test"] == ["the resolver did not answer"]
    assert len(hist.notes) == 1 and "line 3" in hist.notes[0]
    page = tmp_path / "summary.html"
    r = deliverck("report", "history", str(out), "-o", str(page))
    assert r.returncode == 0, r.stderr
    p = Page(page.read_text())
    assert p.cells()[("b.test", "ptr")][1:] == ("fail", "FAIL")
