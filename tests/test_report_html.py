"""Issue 19, `--format html`: one self-contained page per audit or message.

No browser here (engineer H's tests drive one): the page is parsed with the standard
library's html.parser, and the tests check its structure (verdict, summary, one section per
check, disclosures open where something failed, NDR tables linking to findings, the
pictures), that nothing is fetched (CSP with hashes that match the inline blocks), and that
hostile remote text never becomes markup.
"""

from __future__ import annotations

import base64
import hashlib
import re
from dataclasses import dataclass, field, replace
from html.parser import HTMLParser

import pytest

from deliverck.message.model import Claim, Envelope, Hop, MessageInfo, Session
from deliverck.model import (
    BaselineDiff,
    CheckResult,
    Direction,
    Finding,
    Likelihood,
    NdrPrediction,
    Owner,
    Report,
    Severity,
    Status,
    TargetInfo,
    Verdict,
)
from deliverck.report import FORMATS, RenderOptions

# --- a DOM good enough to assert on ------------------------------------------------------------------

VOID = {"area", "base", "br", "col", "embed", "hr", "img", "input", "link", "meta", "source", "track", "wbr"}


@dataclass
class Node:
    tag: str
    attrs: dict[str, str]
    parent: Node | None = None
    children: list = field(default_factory=list)      # Node or str

    def text(self) -> str:
        return "".join(c if isinstance(c, str) else c.text() for c in self.children)

    def iter(self):
        yield self
        for c in self.children:
            if isinstance(c, Node):
                yield from c.iter()

    def find_all(self, tag: str | None = None, **attrs: str) -> list[Node]:
        return [n for n in self.iter() if (tag is None or n.tag == tag)
                and all(n.attrs.get(k.rstrip("_")) == v for k, v in attrs.items())]

    def by_id(self, ident: str) -> Node:
        found = [n for n in self.iter() if n.attrs.get("id") == ident]
        assert len(found) == 1, (ident, len(found))
        return found[0]

    def classes(self) -> set[str]:
        return set(self.attrs.get("class", "").split())

    def ancestors(self):
        p = self.parent
        while p is not None:
            yield p
            p = p.parent


class _Builder(HTMLParser):
    def __init__(self) -> None:
        super().__init__(convert_charrefs=True)
        self.root = Node("#document", {})
        self.cur = self.root
        self.raw: dict[str, list[str]] = {"style": [], "script": []}

    def handle_starttag(self, tag, attrs):
        n = Node(tag, {k: (v or "") for k, v in attrs}, self.cur)
        self.cur.children.append(n)
        if tag not in VOID:
            self.cur = n

    def handle_startendtag(self, tag, attrs):
        self.cur.children.append(Node(tag, {k: (v or "") for k, v in attrs}, self.cur))

    def handle_endtag(self, tag):
        n = self.cur
        while n is not self.root and n.tag != tag:
            n = n.parent          # type: ignore[assignment]
        assert n is not self.root, f"stray </{tag}>"
        assert n is self.cur, f"</{tag}> closes <{self.cur.tag}>: the markup is not well nested"
        self.cur = n.parent       # type: ignore[assignment]

    def handle_data(self, data):
        if self.cur.tag in self.raw:
            self.raw[self.cur.tag].append(data)
        self.cur.children.append(data)


def parse(page: str) -> tuple[Node, _Builder]:
    b = _Builder()
    b.feed(page)
    b.close()
    assert b.cur is b.root, f"unclosed <{b.cur.tag}>"
    return b.root, b


# --- reports to render ---------------------------------------------------------------------------------

def _f(fid, subject, severity=Severity.ERROR, summary=None, fix="Fix it.", owner=Owner.MAIL_ADMIN,
       evidence=(), inconclusive=False, **args):
    return Finding(id=fid, severity=severity, subject=subject, summary=summary or f"{fid} about {subject}",
                   fix=fix, owner=owner, direction=Direction.OUTBOUND, evidence=tuple(evidence),
                   inconclusive=inconclusive, args=args)


def _pred(system="gmail", name="Gmail", likelihood=Likelihood.WILL, code=550, status="5.7.25",
          caused_by=("ptr.missing",), subjects=("192.0.2.7",)):
    return NdrPrediction(key=f"{system}.x", system=system, system_name=name, code=code, status=status,
                         reply=f"{code} {status} The IP address sending this message does not have a PTR record",
                         text="no PTR", direction=Direction.OUTBOUND, owner=Owner.IP_OWNER, fix="Ask for a PTR.",
                         caused_by=caused_by, subjects=subjects, source="https://support.google.com/mail/answer/81126",
                         likelihood=likelihood, condition="" if likelihood is Likelihood.WILL else "depends on volume")


SPF_TREE = {"domain": "example.test", "lookups": 1, "children": [
    {"domain": "_spf.a.test", "term": "include:_spf.a.test", "lookups": 4, "children": []},
    {"domain": "_spf.b.test", "term": "include:_spf.b.test", "lookups": 4, "children": [
        {"domain": "_spf.c.test", "term": "include:_spf.c.test", "lookups": 3, "children": []}]},
    {"domain": "_spf.d.test", "term": "include:_spf.d.test", "lookups": 1, "children": []},
]}
# The shapes checks/dnssec.py and checks/mx.py record (engineer F, docs/report.schema.json).
CHAIN = [{"zone": ".", "kind": "zone", "rdtype": "DS/DNSKEY", "status": "secure", "why": ""},
         {"zone": "test", "kind": "zone", "rdtype": "DS/DNSKEY", "status": "secure", "why": "DS matches DNSKEY 12345"},
         {"zone": "example.test", "kind": "rrset", "rdtype": "MX", "status": "bogus", "why": "RRSIG expired 2026-11-01"}]
HOSTS = [{"name": "mx1.example.test", "preference": 10, "addresses": ["192.0.2.7", "2001:db8::7"],
          "audited": ["192.0.2.7"], "cname": "", "error": ""}]


@dataclass(frozen=True)
class Step:
    kind: str
    label: str
    check: str
    start_ms: float
    end_ms: float
    critical: bool


STEPS = (Step("dns", "MX example.test", "mx", 0, 12, True), Step("dns", "A mx1.example.test", "mx", 12, 20, True),
         Step("smtp", "connect 192.0.2.7:25", "smtp", 20, 140, True), Step("dns", "TXT example.test", "spf", 0, 9, False),
         Step("tls", "STARTTLS mx1.example.test", "starttls", 140, 210, True))


def report(**over) -> Report:
    checks = (
        CheckResult("mx", "MX records", Status.PASS, 12, (
            _f("mx.records", "example.test", Severity.INFO, fix="Nothing to fix.", owner=Owner.NOBODY,
               evidence=("example.test. MX 10 mx1.example.test.",), hosts=HOSTS),)),
        CheckResult("ptr", "Reverse DNS", Status.FAIL, 3, (
            _f("ptr.missing", "192.0.2.7", owner=Owner.IP_OWNER, evidence=("7.2.0.192.in-addr.arpa. NXDOMAIN", "asked 127.0.0.1:53"),
               ip="192.0.2.7"),
            _f("ptr.missing", "2001:db8::7", owner=Owner.IP_OWNER, ip="2001:db8::7"))),
        CheckResult("starttls", "STARTTLS", Status.PASS, 70, (
            _f("starttls.ok", "192.0.2.7", Severity.INFO, summary="TLSv1.3 with a valid certificate",
               fix="Nothing to fix.", ip="192.0.2.7"),)),
        CheckResult("spf", "SPF", Status.FAIL, 9, (
            _f("spf.too_many_lookups", "example.test", summary="13 lookups, the limit is 10",
               hosts=["mx1.example.test"]),
            _f("spf.record", "example.test", Severity.INFO, fix="Nothing to fix.", tree=SPF_TREE, total=13,
               limit=10))),
        CheckResult("dnssec", "DNSSEC", Status.ERROR, 5, (
            _f("dnssec.lookup_failed", "example.test", inconclusive=True, summary="the resolver timed out",
               chain=CHAIN),
            _f("dnssec.secure", "mx1.example.test", Severity.INFO, chain=CHAIN[:2] + [
                {"zone": "mx1.example.test", "kind": "rrset", "rdtype": "A", "status": "secure", "why": "ok"}])),
            reason="the resolver timed out"),
        CheckResult("kerberos", "Kerberos", Status.SKIPPED, 0, (), reason="no sign of Active Directory"),
    )
    base = dict(target=TargetInfo("example.test", "example.test", "", roles=("domain",)),
                started="2026-12-05T00:00:00Z", finished="2026-12-05T00:00:01Z", duration_ms=1000,
                verdict=Verdict.FAIL, exit_code=1, fail_on=Severity.ERROR, checks=checks,
                predicted_ndrs=(_pred(), _pred("postfix", "Postfix", Likelihood.MAY, 450, "4.7.25"),
                                _pred("exchange-online", "Exchange Online", caused_by=("spf.too_many_lookups",),
                                      subjects=("example.test",), status="5.7.23")),
                resolvers=("127.0.0.1:53",), receivers=("exchange-online", "gmail", "postfix"), tool_version="0")
    base.update(over)
    return Report(**base)  # type: ignore[arg-type]


def render(r: Report, **opts) -> str:
    return FORMATS["html"](r, RenderOptions(**opts))


def timed(r: Report) -> Report:
    """A report with step timings (engineer F's `Report.timings`), whether or not the field exists yet."""
    try:
        return replace(r, timings=STEPS)           # type: ignore[call-arg]
    except TypeError:
        object.__setattr__(r, "timings", STEPS)
        return r


# --- structure ------------------------------------------------------------------------------------------

def test_html_is_a_format_of_check_and_message():
    assert "html" in FORMATS
    page = render(report())
    assert page.startswith("<!DOCTYPE html>")
    parse(page)


def test_verdict_and_one_line_summary_come_first():
    dom, _ = parse(render(report()))
    h1 = dom.find_all("h1")
    assert len(h1) == 1 and "example.test" in h1[0].text()
    verdict = dom.by_id("verdict").text()
    assert "Verdict: FAIL" in verdict
    summary = dom.by_id("summary").text()
    # counts by severity and the receivers that will bounce, with their codes (table.summary_line's data)
    assert summary.startswith("FAIL; 1 could not check, 3 error"), summary
    assert "will bounce: Gmail 5.7.25" in summary and "may bounce: Postfix" in summary
    main = dom.by_id("main")
    first_check = dom.by_id("check-mx")
    order = [n for n in dom.iter()]
    assert order.index(dom.by_id("summary")) < order.index(main) < order.index(first_check)


def test_one_section_per_check_failing_open_passing_closed():
    dom, _ = parse(render(report()))
    for cid, status, is_open in [("mx", "pass", False), ("ptr", "fail", True), ("starttls", "pass", False),
                                 ("spf", "fail", True), ("dnssec", "error", True), ("kerberos", "skipped", False)]:
        sec = dom.by_id(f"check-{cid}")
        assert sec.tag == "section"
        body = sec.find_all("details")[0]
        assert ("open" in body.attrs) is is_open, cid
        # status as text, not only as colour
        assert status.upper() in sec.find_all("h3")[0].text().upper(), cid
    assert "no sign of Active Directory" in dom.by_id("check-kerberos").text()
    ptr = dom.by_id("f-ptr.missing-1")
    assert "Fix (ip_owner): Fix it." in re.sub(r"\s+", " ", ptr.text())
    assert ptr.find_all("pre")[0].text() == "7.2.0.192.in-addr.arpa. NXDOMAIN\nasked 127.0.0.1:53"   # one per line
    assert ptr.find_all("details")[0].tag == "details"
    assert dom.by_id("f-ptr.missing-2")


def test_predicted_ndrs_are_tables_per_receiver_linking_to_their_findings():
    dom, _ = parse(render(report()))
    tables = dom.by_id("ndrs").parent.find_all("table")        # type: ignore[union-attr]
    captions = [t.find_all("caption")[0].text() for t in tables]
    assert captions == ["Gmail", "Postfix", "Exchange Online"]
    for t in tables:
        assert [th.attrs.get("scope") for th in t.find_all("th")] == ["col"] * 5
    links = [a for t in tables for a in t.find_all("a")]
    hrefs = {a.text(): a.attrs["href"] for a in links}
    assert hrefs == {"ptr.missing": "#f-ptr.missing-1", "spf.too_many_lookups": "#f-spf.too_many_lookups-1"}
    for a in links:
        dom.by_id(a.attrs["href"][1:])                          # every link lands on exactly one finding
    gmail = tables[0].text()
    assert "will" in gmail and "550 5.7.25" in gmail and "ip_owner" in gmail
    assert "depends on volume" in tables[1].text()


def test_a_prediction_links_to_the_finding_about_its_subject():
    r = report(predicted_ndrs=(_pred(subjects=("2001:db8::7",)),))
    dom, _ = parse(render(r))
    a = dom.by_id("ndrs").parent.find_all("a")[0]              # type: ignore[union-attr]
    assert a.attrs["href"] == "#f-ptr.missing-2"


def test_headings_landmarks_and_accessibility_basics():
    dom, _ = parse(render(timed(report())))
    levels = [int(n.tag[1]) for n in dom.iter() if re.fullmatch(r"h[1-6]", n.tag)]
    assert levels[0] == 1 and levels.count(1) == 1
    assert all(b <= a + 1 for a, b in zip(levels, levels[1:])), levels      # never skip a level down
    assert dom.find_all("main") and dom.find_all("nav") and dom.find_all("header") and dom.find_all("footer")
    skip = dom.find_all("a", class_="skip")[0]
    assert skip.attrs["href"] == "#main" and dom.by_id("main").tag == "main"
    assert dom.find_all("html")[0].attrs["lang"] == "en"
    for t in dom.find_all("table"):
        assert t.find_all("caption"), "every table has a caption"
    # interactive elements: links, details/summary, and the script's buttons (hidden until it runs)
    assert not dom.find_all("input") and not dom.find_all("select")
    assert all("hidden" in b.parent.attrs for b in dom.find_all("button"))  # type: ignore[union-attr]
    assert not [n for n in dom.iter() if n.attrs.get("tabindex") not in (None, "0")]


# --- self-contained, CSP --------------------------------------------------------------------------------

def _sha(block: str) -> str:
    return "'sha256-" + base64.b64encode(hashlib.sha256(block.encode()).digest()).decode() + "'"


def test_self_contained_with_a_strict_csp_that_allows_exactly_the_inline_blocks():
    page = render(timed(report()))
    dom, b = parse(page)
    meta = [m for m in dom.find_all("meta") if m.attrs.get("http-equiv", "").lower() == "content-security-policy"]
    assert len(meta) == 1
    csp = dict(d.strip().split(" ", 1) for d in meta[0].attrs["content"].split(";"))
    assert csp["default-src"] == "'none'" and csp["img-src"] == "data:"
    assert csp["style-src"].split() == [_sha("".join(b.raw["style"]))]
    assert csp["script-src"].split() == [_sha("".join(b.raw["script"]))]
    assert len(dom.find_all("style")) == 1 and len(dom.find_all("script")) == 1
    # the CSP meta comes before the blocks it governs
    order = list(dom.iter())
    assert order.index(meta[0]) < order.index(dom.find_all("style")[0])
    for n in dom.iter():
        assert "style" not in n.attrs, n.tag                            # CSP would block style attributes
        assert not [a for a in n.attrs if a.startswith("on")], n.tag    # and inline handlers
        for a in ("src", "href", "action", "xlink:href"):
            v = n.attrs.get(a)
            assert v is None or v.startswith("#"), (n.tag, a, v)        # nothing fetched, only in-page links
    assert "url(" not in "".join(b.raw["style"]) and "@import" not in "".join(b.raw["style"])
    for word in ("fetch(", "XMLHttpRequest", "import(", "eval(", "innerHTML"):
        assert word not in "".join(b.raw["script"])


def test_responsive_printable_light_and_dark():
    _, b = parse(render(report()))
    css = "".join(b.raw["style"])
    assert "@media print" in css and "prefers-color-scheme:dark" in css
    assert "overflow-x:auto" in css                     # wide tables scroll inside their own box
    dom, _ = parse(render(report()))
    vp = [m for m in dom.find_all("meta") if m.attrs.get("name") == "viewport"][0]
    assert "width=device-width" in vp.attrs["content"]
    for t in dom.find_all("table"):
        assert "scroll" in t.parent.classes()            # type: ignore[union-attr]


# --- hostile remote text --------------------------------------------------------------------------------

HOSTILE = ["\ufffe\U0010ffff\ud800", "<script>alert(1)</script>", "</style><b>x</b>", '"><img src=x onerror=alert(1)>', "]]>",
           "'><svg onload=alert(1)>", "</textarea></title>", "\x1b[31mred\x07\x00", "\u202eevil\u2066",
           "&lt;already&gt;", "{{ 7*7 }}"]


def _hostile_report() -> Report:
    h = " ".join(HOSTILE)
    bad = _f("smtp.greeting_rejected", f"mx.{h}", summary=f"554 {h}", fix=f"fix {h}", evidence=(f"S: {h}",),
             greeting=h, ip=h)
    info = _f("mx.records", h, Severity.INFO, fix="Nothing to fix.", tree={"domain": h, "lookups": 11, "error": h,
                                                                          "children": [{"domain": h, "term": h}]},
              chain=[{"zone": h, "status": h, "why": h}], hosts=[{"host": h, "preference": h, "addresses": [h]}])
    pred = replace(_pred(caused_by=("smtp.greeting_rejected", h), subjects=(h,)), reply=f"554 {h}",
                   system_name=h, condition=h, likelihood=Likelihood.MAY)
    msg = MessageInfo(label=h, size=1, from_=(h,), from_domain=h, subject=h, message_id=h, date=h,
                      envelope=Envelope(Claim(h, h), Claim(h, "option --helo", True), None, (h,)),
                      session=Session(h, 25, h, True, h, h, h, (h,), h, h),
                      hops=(Hop(1, h, h, h, h, h, h, True, h, h),), notes=(h,), authentication={"dkim": h})
    r = report(target=TargetInfo(h, h, "", roles=(h,), notes=(h,)),
               checks=(CheckResult("smtp", h, Status.FAIL, 1, (bad, info), reason=h, traceback=h),),
               predicted_ndrs=(pred,), resolvers=(h,), receivers=(h,), zone_files=((h, h),), message=msg,
               baseline=BaselineDiff(h, (bad,), ((h, h, h),), ()))
    return timed(replace(r, tool_version=h))


def test_hostile_remote_text_renders_as_text_never_as_markup():
    page = render(_hostile_report(), debug=True, verbose=True)
    clean = render(timed(report()))
    dom, b = parse(page)
    tags = {n.tag for n in dom.iter()}
    assert tags <= {n.tag for n in parse(clean)[0].iter()} | {"#document"}, tags - {n.tag for n in parse(clean)[0].iter()}
    assert not {"img", "textarea", "b"} & tags
    assert len(dom.find_all("script")) == 1 and len(dom.find_all("style")) == 1
    for n in dom.iter():
        assert not [a for a in n.attrs if a.startswith("on") or a in ("src", "style")], (n.tag, n.attrs)
    # the inline blocks are exactly ours: the CSP hashes still match, no text escaped into them
    css, js = "".join(b.raw["style"]), "".join(b.raw["script"])
    assert "alert" not in css + js
    text = dom.text()
    assert "<script>alert(1)</script>" in text and '"><img src=x onerror=alert(1)>' in text
    assert "</style><b>x</b>" in text and "]]>" in text and "&lt;already&gt;" in text and "{{ 7*7 }}" in text
    # control characters and bidi overrides are shown as escapes, as in the other human formats
    assert "\x1b" not in page and "\x07" not in page and "\x00" not in page and "\u202e" not in page
    assert "\\x1b[31mred\\x07\\x00" in text and "\\u202eevil\\u2066" in text
    assert "\\ufffe\\u10ffff\\ud800" in text and "&#65534;" not in page
    assert page.isascii()


@pytest.mark.parametrize("broken", [
    {"tree": "not a tree"}, {"tree": {"children": 5, "lookups": "x"}}, {"chain": [1, None, "x"]},
    {"hosts": [{"addresses": None}]}, {"chain": []}, {"hosts": "x"}, {"hosts": ["mx1.example.test"]}])
def test_pictures_are_optional_and_odd_data_is_no_error(broken):
    r = report(checks=(CheckResult("x", "X", Status.PASS, 1, (_f("x.y", "s", Severity.INFO, **broken),)),),
               predicted_ndrs=(), verdict=Verdict.PASS, exit_code=0)
    dom, _ = parse(render(r))
    assert not [n for n in dom.iter() if n.attrs.get("id", "").startswith("pic")]
    assert "Verdict: PASS" in dom.by_id("verdict").text()


def test_no_pictures_without_their_data():
    r = report(checks=tuple(replace(c, findings=tuple(replace(f, args={}) for f in c.findings))
                            for c in report().checks))
    dom, _ = parse(render(r))
    assert not [n for n in dom.iter() if n.attrs.get("id", "").startswith("pic")]


# --- pictures -------------------------------------------------------------------------------------------

def test_spf_tree_marks_the_include_that_went_over_the_limit():
    dom, _ = parse(render(report()))
    pic = dom.by_id("pic-spf")
    assert "13 of 10 DNS lookups" in pic.text() and "over the limit by 3" in pic.text()
    over = [li for li in pic.find_all("li") if "over" in li.classes()]
    # running count: 1, +4 = 5, +4 = 9, +3 = 12 > 10: _spf.c.test pushed it over
    assert len(over) == 1 and "_spf.c.test" in over[0].find_all("code")[0].text()
    assert "went over the limit" in over[0].text()
    assert "_spf.c.test" in [c.text() for li in pic.find_all("li") for c in li.find_all("code")
                             if li.parent and "_spf.b.test" in li.parent.parent.find_all("code")[0].text()]  # type: ignore[union-attr]
    cells = [s for s in pic.find_all("span") if "cell" in s.classes()]
    assert [c.classes() - {"cell"} for c in cells].count({"over"}) == 3 and len(cells) == 13


def test_spf_tree_follows_the_engines_mark_of_the_include_that_went_over():
    """checks/spf.py marks the term that spends lookup 11 in evaluation order (`over`, `over_term`);
    the picture shows that mark rather than its own depth-first count."""
    import copy

    tree = copy.deepcopy(SPF_TREE)
    for n in tree["children"]:
        n.update(over=n["domain"] == "_spf.d.test", over_term="include:_spf.d.test" if n["domain"] == "_spf.d.test" else "")
        n["total"] = n["lookups"] + sum(c["lookups"] for c in n["children"])
    tree["over"], tree["total"] = False, 13
    r = report()
    spf = replace(r.checks[3], findings=(r.checks[3].findings[0], _f("spf.record", "example.test", Severity.INFO,
                                                                      tree=tree, lookups=13, limit=10)))
    dom, _ = parse(render(replace(r, checks=r.checks[:3] + (spf,) + r.checks[4:])))
    pic = dom.by_id("pic-spf")
    over = [li for li in pic.find_all("li") if "over" in li.classes()]
    assert [li.find_all("code")[0].text() for li in over] == ["_spf.d.test"]
    b = next(li for li in pic.find_all("li") if li.find_all("code")[0].text() == "_spf.b.test")
    assert "4 lookups, 7 with its includes" in b.text()


def test_dnssec_chains_from_the_root_with_each_status_in_words():
    dom, _ = parse(render(report()))
    pic = dom.by_id("pic-dnssec")
    assert [p.text() for p in pic.find_all("p", class_="chain-title")] == [
        "example.test MX (dnssec.lookup_failed)", "mx1.example.test A (dnssec.secure)"]
    links = pic.find_all("ol")[0].find_all("li")
    assert [li.find_all("code")[0].text() for li in links] == [". (root)", "test", "example.test"]
    assert [li.find_all("span", class_="badge ds-" + s)[0].text() for li, s in
            zip(links, ["secure", "secure", "bogus"])] == ["secure", "secure", "bogus"]
    assert "RRSIG expired" in links[2].text() and "MX" in links[2].text()


def test_mx_diagram_joins_ptr_and_tls_by_address():
    dom, _ = parse(render(report()))
    addrs = dom.by_id("pic-mx").find_all("li", class_="addr")
    assert [a.find_all("code")[0].text() for a in addrs] == ["192.0.2.7", "2001:db8::7"]
    v4 = addrs[0].find_all("a")
    assert [(a.attrs["href"], "bad" in a.classes()) for a in v4] == [("#f-ptr.missing-1", True),
                                                                      ("#f-starttls.ok-1", False)]
    assert "not checked" in addrs[1].text()                   # no TLS finding for the IPv6 address
    assert "(not probed)" in addrs[1].text() and "(not probed)" not in addrs[0].text()


def test_waterfall_puts_steps_on_one_axis_and_marks_the_critical_path():
    dom, _ = parse(render(timed(report())))
    pic = dom.by_id("pic-waterfall")
    rows = pic.find_all("li")
    assert len(rows) == 5
    crit = [r for r in rows if "crit" in r.classes()]
    assert len(crit) == 4 and all("critical path" in r.text() for r in crit)
    assert "critical path" not in [r for r in rows if "crit" not in r.classes()][0].text()
    smtp = next(r for r in rows if "connect 192.0.2.7:25" in r.text())
    rect = smtp.find_all("rect")[0]
    assert (float(rect.attrs["x"]), float(rect.attrs["width"])) == (round(20 / 210 * 1000, 1), round(120 / 210 * 1000, 1))
    assert smtp.find_all("svg")[0].attrs["role"] == "img" and "20.0 to 140.0 ms" in smtp.find_all("svg")[0].attrs["aria-label"]
    try:
        dropped = replace(timed(report()), timings_dropped=7)      # type: ignore[call-arg]
    except TypeError:
        return                                                      # engineer F's field is not there yet
    assert "7 later steps were not recorded" in parse(render(dropped))[0].by_id("pic-waterfall").text()


def test_waterfall_keeps_the_critical_path_when_steps_are_cut():
    from deliverck.report import html_pictures

    many = tuple(Step("dns", f"q{i}", "mx", i, i + 1, False) for i in range(500)) + \
        (Step("smtp", "late", "smtp", 600, 900, True),)
    w = html_pictures.waterfall(timed(report()) if False else replace_timings(report(), many))
    assert w is not None and len(w["steps"]) == html_pictures.MAX_STEPS and w["cut"] == 501 - html_pictures.MAX_STEPS
    assert any(s["label"] == "late" and s["critical"] for s in w["steps"])


def replace_timings(r: Report, steps) -> Report:
    try:
        return replace(r, timings=steps)           # type: ignore[call-arg]
    except TypeError:
        object.__setattr__(r, "timings", steps)
        return r


# --- message, baseline, notes --------------------------------------------------------------------------

def test_message_member_envelope_sources_and_session():
    m = MessageInfo(label="msg.eml", size=1234, from_=("a@example.test",), from_domain="example.test",
                    subject="Hello", envelope=Envelope(ip=Claim("192.0.2.7", "header Received #1 (by mx.test)"),
                                                       mail_from=Claim("", "option --mail-from", True)),
                    session=Session("192.0.2.7", 40000, "mx.example.test", True, "TLSv1.3", "TLS_AES_256_GCM_SHA384",
                                    "a@example.test", ("b@example.test",), "2026-12-05T00:00:00Z"))
    dom, _ = parse(render(report(message=m, target=TargetInfo("msg.eml", "", ""))))
    assert "message msg.eml" in dom.find_all("h1")[0].text()
    sec = dom.by_id("message").parent
    rows = {tr.find_all("th")[0].text(): [td.text() for td in tr.find_all("td")]
            for tr in sec.find_all("tr") if tr.find_all("td")}          # type: ignore[union-attr]
    assert rows["IP address"] == ["192.0.2.7", "header Received #1 (by mx.test)", "no: a claim"]
    assert rows["MAIL FROM"] == ["<>", "option --mail-from", "yes"]
    assert rows["HELO/EHLO"] == ["nobody says"]
    assert "TLSv1.3 TLS_AES_256_GCM_SHA384" in sec.text()                 # type: ignore[union-attr]


def test_baseline_marks_new_findings_and_lists_fixed_ones():
    r = report()
    ptr = r.checks[1].findings[0]
    b = BaselineDiff("old.json", (ptr,), (("dkim.missing", "example.test", "error"),), (r.checks[1].findings[1],))
    dom, _ = parse(render(replace(r, baseline=b, zone_files=(("zone.txt", "example.test"),))))
    assert "new" in dom.by_id("f-ptr.missing-1-h").text() and "unchanged" in dom.by_id("f-ptr.missing-2-h").text()
    assert "dkim.missing" in dom.by_id("fixed").parent.text()            # type: ignore[union-attr]
    notes = dom.by_id("notes-h").parent.text()                           # type: ignore[union-attr]
    assert "old.json: 1 new, 1 fixed, 1 unchanged" in notes and "zone.txt" in notes


# --- through the CLI, in the lab ------------------------------------------------------------------------

from conftest import deliverck  # noqa: E402


def test_check_html_escapes_a_hostile_banner_and_opens_the_failing_check(lab):
    r = deliverck("hostile-banner.test", "--format", "html", "--only", "mx,smtp", "--smtp-timeout", "3")
    assert r.returncode == 1, r.stderr
    dom, b = parse(r.stdout)
    assert "\x1b" not in r.stdout and "\x07" not in r.stdout
    text = dom.text()
    assert "554 mx.hostile-banner.test \\x1b[31mred\\x1b[0m\\x07 \\ufffe no service" in text
    smtp = dom.by_id("check-smtp")
    assert "open" in smtp.find_all("details")[0].attrs and "FAIL" in smtp.find_all("h3")[0].text()
    assert "Verdict: FAIL" in dom.by_id("verdict").text()
    assert len(dom.find_all("script")) == 1


def test_message_html_shows_the_envelope_and_escapes_the_subject(lab, tmp_path):
    hostile = "hi <script>alert(1)</script> \x1b[2J \u202etxt.exe"
    (tmp_path / "m.eml").write_bytes(
        ("Return-Path: <alice@good.test>\nFrom: Alice <alice@good.test>\nTo: bob@example.net\n"
         f"Subject: {hostile}\nDate: Sat, 05 Dec 2026 10:00:00 +0000\nMessage-ID: <1@good.test>\n\nHi.\n")
        .encode())
    r = deliverck("message", str(tmp_path / "m.eml"), "--ip", "198.51.100.10", "--format", "html")
    assert r.returncode in (0, 1), r.stderr
    dom, _ = parse(r.stdout)
    sec = dom.by_id("message").parent
    assert "hi <script>alert(1)</script> \\x1b[2J \\u202etxt.exe" in sec.text()      # type: ignore[union-attr]
    assert len(dom.find_all("script")) == 1
    rows = {tr.find_all("th")[0].text(): [td.text() for td in tr.find_all("td")]
            for tr in sec.find_all("tr") if tr.find_all("td")}                  # type: ignore[union-attr]
    assert rows["IP address"][:2] == ["198.51.100.10", "option --ip"]
    assert rows["MAIL FROM"][1] == "header Return-Path"
