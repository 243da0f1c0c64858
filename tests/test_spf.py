"""SPF evaluator (RFC 7208 check_host), parser and trace, on an in-memory DNS."""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from deliverck.net.dns import DnsAnswer, Outcome
from deliverck.spf import ParseError, SpfRecord, check_host, parse_macro_string, parse_record
from deliverck.spf.memdns import MemoryDns, _rdata

IP = "192.0.2.10"


async def run(zone, ip=IP, domain="example.com", sender="strong-bad@email.example.com", **kw):
    dns = MemoryDns(zone)
    kw.setdefault("helo", "mx.example.org")
    return await check_host(ip, domain, sender=sender, dns=dns, **kw)


async def result(record, ip=IP, extra=None, **kw):
    zone = {"example.com": [("TXT", record)]}
    for name, recs in (extra or {}).items():
        zone[name] = zone.get(name, []) + recs if recs != "TIMEOUT" else recs
    return (await run(zone, ip=ip, **kw)).result


# ---- record selection ------------------------------------------------------

async def test_no_record_is_none():
    assert (await run({"example.com": [("TXT", "hello")]})).result == "none"
    assert (await run({})).result == "none"            # NXDOMAIN is not an error


async def test_version_must_be_exact_and_case_insensitive():
    assert await result("v=spf10 -all") == "none"
    assert await result("V=SPF1 -all") == "fail"
    assert await result("v=spf1") == "neutral"


async def test_multiple_records_permerror():
    r = await run({"example.com": [("TXT", "v=spf1 -all"), ("TXT", "v=spf1 +all")]})
    assert r.result == "permerror"
    assert any("2 SPF records" in p for p in r.problems)


async def test_txt_strings_joined_without_spaces():
    assert await result(["v=spf1 ip4:192.0.2.", "10 -all"]) == "pass"


async def test_temperror_on_txt_timeout_and_servfail():
    assert (await run({"example.com": "TIMEOUT"})).result == "temperror"
    assert (await run({"example.com": [("TXT", "SERVFAIL")]})).result == "temperror"


async def test_invalid_domain_is_none():
    assert (await run({}, domain="[192.0.2.1]")).result == "none"
    assert (await run({}, domain="localhost")).result == "none"
    assert (await run({}, domain="a..example.com")).result == "none"


# ---- mechanisms ----------------------------------------------------------------

@pytest.mark.parametrize("q,res", [("+", "pass"), ("", "pass"), ("-", "fail"), ("~", "softfail"), ("?", "neutral")])
async def test_qualifiers(q, res):
    assert await result(f"v=spf1 {q}all") == res


async def test_ip4_ip6_and_cidr():
    assert await result("v=spf1 ip4:192.0.2.0/24 -all") == "pass"
    assert await result("v=spf1 ip4:192.0.3.0/24 -all") == "fail"
    assert await result("v=spf1 ip6:2001:db8::/32 -all", ip="2001:db8::1") == "pass"
    assert await result("v=spf1 ip4:192.0.2.10 -all", ip="2001:db8::1") == "fail"
    # IPv4-mapped IPv6 is evaluated as IPv4
    assert await result("v=spf1 ip4:192.0.2.10 -all", ip="::ffff:192.0.2.10") == "pass"


async def test_a_with_dual_cidr():
    extra = {"example.com": [("A", "192.0.2.200"), ("AAAA", "2001:db8::99")]}
    assert await result("v=spf1 a -all", extra=extra) == "fail"
    assert await result("v=spf1 a/24 -all", extra=extra) == "pass"
    assert await result("v=spf1 a:example.com/24//64 -all", ip="2001:db8::1", extra=extra) == "pass"
    assert await result("v=spf1 a:example.com/24//128 -all", ip="2001:db8::1", extra=extra) == "fail"


async def test_mx():
    extra = {"example.com": [("MX", "10 mx1.example.com."), ("MX", "20 mx2.example.com.")],
             "mx1.example.com": [("A", "198.51.100.1")], "mx2.example.com": [("A", IP)]}
    assert await result("v=spf1 mx -all", extra=extra) == "pass"


async def test_mx_over_ten_records_permerror():
    extra = {"example.com": [("MX", f"{i} mx{i}.example.com.") for i in range(11)]}
    assert await result("v=spf1 mx -all", extra=extra) == "permerror"


async def test_ptr():
    extra = {"10.2.0.192.in-addr.arpa": [("PTR", "mail.example.com.")],
             "mail.example.com": [("A", IP)]}
    assert await result("v=spf1 ptr -all", extra=extra) == "pass"
    assert await result("v=spf1 ptr:other.example -all", extra=extra) == "fail"
    # DNS error in the PTR lookup: no match, not temperror
    assert await result("v=spf1 ptr ?all", extra={"10.2.0.192.in-addr.arpa": "TIMEOUT"}) == "neutral"


async def test_exists_uses_a_only():
    assert await result("v=spf1 exists:x.example.com -all", extra={"x.example.com": [("A", "127.0.0.2")]}) == "pass"
    assert await result("v=spf1 exists:x.example.com -all", ip="2001:db8::1",
                        extra={"x.example.com": [("A", "127.0.0.2")]}) == "pass"
    assert await result("v=spf1 exists:x.example.com -all",
                        extra={"x.example.com": [("AAAA", "2001:db8::1")]}) == "fail"


@pytest.mark.parametrize("inner,res", [
    ("v=spf1 +all", "pass"), ("v=spf1 -all", "fail"), ("v=spf1 ~all", "fail"), ("v=spf1 ?all", "fail"),
    ("v=spf1 foo:bar", "permerror"), (None, "permerror"), ("TIMEOUT", "temperror"),
])
async def test_include_result_mapping(inner, res):
    extra = {}
    if inner == "TIMEOUT":
        extra = {"inc.example.net": "TIMEOUT"}
    elif inner is not None:
        extra = {"inc.example.net": [("TXT", inner)]}
    assert await result("v=spf1 include:inc.example.net -all", extra=extra) == res


async def test_redirect():
    extra = {"other.example.net": [("TXT", "v=spf1 ip4:192.0.2.10 -all")]}
    assert await result("v=spf1 redirect=other.example.net", extra=extra) == "pass"
    assert await result("v=spf1 redirect=missing.example.net") == "permerror"
    # ignored when there is an all mechanism
    assert await result("v=spf1 ?all redirect=other.example.net", extra=extra) == "neutral"


async def test_unknown_modifier_ignored_duplicate_redirect_permerror():
    assert await result("v=spf1 foo=bar -all") == "fail"
    assert await result("v=spf1 redirect=a.example.net redirect=b.example.net") == "permerror"
    assert await result("v=spf1 exp=a.example.net exp=b.example.net -all") == "permerror"


async def test_syntax_error_anywhere_is_permerror():
    assert await result("v=spf1 +all a:foo..1") == "permerror"
    assert await result("v=spf1 ip4:192.0.2.10 bogus:x") == "permerror"
    assert await result("v=spf1 a:museum -all") == "permerror"        # top label needs a dot before it
    assert await result("v=spf1 a:example.123 -all") == "permerror"   # numeric TLD
    assert await result("v=spf1 ip4:192.0.2.1/33") == "permerror"


async def test_temperror_on_mechanism_servfail():
    assert await result("v=spf1 a:x.example.net -all", extra={"x.example.net": [("A", "SERVFAIL")]}) == "temperror"


# ---- limits -------------------------------------------------------------------

async def test_lookup_limit():
    ten = " ".join(f"a:h{i}.example.com" for i in range(9))
    extra = {f"h{i}.example.com": [("A", "198.51.100.1")] for i in range(11)}
    extra["h10.example.com"] = [("A", IP)]
    r = await run({"example.com": [("TXT", f"v=spf1 {ten} a:h10.example.com -all")], **extra})
    assert r.result == "pass" and r.lookups_used == 10
    eleven = " ".join(f"a:h{i}.example.com" for i in range(10))
    r = await run({"example.com": [("TXT", f"v=spf1 {eleven} a:h10.example.com -all")], **extra})
    assert r.result == "permerror" and any("more than 10" in p for p in r.problems)


async def test_include_loop_ends_in_permerror():
    zone = {"example.com": [("TXT", "v=spf1 include:loop.example.com -all")],
            "loop.example.com": [("TXT", "v=spf1 include:example.com -all")]}
    r = await run(zone)
    assert r.result == "permerror"


async def test_void_lookup_limit():
    rec = "v=spf1 a:n1.example.com a:n2.example.com a:n3.example.com -all"
    r = await run({"example.com": [("TXT", rec)]})
    assert r.result == "permerror" and r.void_lookups == 3
    rec2 = "v=spf1 a:n1.example.com a:n2.example.com -all"
    assert (await run({"example.com": [("TXT", rec2)]})).result == "fail"


# ---- macros (RFC 7208 7.4) ------------------------------------------------------

async def expand(macro, ip="192.0.2.3", sender="strong-bad@email.example.com", domain="email.example.com"):
    """Expand a macro via exists: and read back the queried name from the trace."""
    dns = MemoryDns({domain: [("TXT", f"v=spf1 exists:{macro} -all")]})
    r = await check_host(ip, domain, sender=sender, helo="mx.example.org", dns=dns)
    term = r.trace.terms[0]
    return [lk for lk in term.lookups if lk.rdtype == "A"][-1].name


@pytest.mark.parametrize("macro,want", [
    ("%{s}.x", "strong-bad@email.example.com.x"),
    ("%{o}", "email.example.com"),
    ("%{d}", "email.example.com"),
    ("%{d4}", "email.example.com"),
    ("%{d3}", "email.example.com"),
    ("%{d2}", "example.com"),
    ("%{d1}", "com"),
    ("%{dr}", "com.example.email"),
    ("%{d2r}", "example.email"),
    ("%{l}.x", "strong-bad.x"),
    ("%{l-}.x", "strong.bad.x"),
    ("%{lr}.x", "strong-bad.x"),
    ("%{lr-}.x", "bad.strong.x"),
    ("%{l1r-}.x", "strong.x"),
    ("%{ir}.%{v}._spf.%{d2}", "3.2.0.192.in-addr._spf.example.com"),
    ("%{lr-}.lp._spf.%{d2}", "bad.strong.lp._spf.example.com"),
    ("%{lr-}.lp.%{ir}.%{v}._spf.%{d2}", "bad.strong.lp.3.2.0.192.in-addr._spf.example.com"),
    ("%{ir}.%{v}.%{l1r-}.lp._spf.%{d2}", "3.2.0.192.in-addr.strong.lp._spf.example.com"),
    ("%{d2}.trusted-domains.example.net", "example.com.trusted-domains.example.net"),
])
async def test_rfc7208_7_4_examples(macro, want):
    assert await expand(macro) == want


async def test_ipv6_macro_example():
    got = await expand("%{ir}.%{v}._spf.%{d2}", ip="2001:db8::cb01")
    assert got == "1.0.b.c.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.8.b.d.0.1.0.0.2.ip6._spf.example.com"


async def test_escapes_and_url_encoding():
    assert await expand("a%%b%-c.%{d2}") == "a%b%20c.example.com"
    assert await expand("%{S}.x", sender="a/b@email.example.com") == "a%2fb%40email.example.com.x"  # DNS names compare case-insensitively


def test_invalid_macros_are_parse_errors():
    for bad in ("v=spf1 exists:%{x}.example.com", "v=spf1 exists:%{c}.example.com",
                "v=spf1 exists:%{d0}.example.com", "v=spf1 exists:%.example.com", "v=spf1 a:%{d"):
        assert isinstance(parse_record(bad), ParseError), bad
    assert parse_macro_string("%{c} %{r} %{t}", exp=True, allow_space=True).letters == "crt"


async def test_p_macro_validated_name():
    zone = {"10.2.0.192.in-addr.arpa": [("PTR", "mail.example.com."), ("PTR", "bogus.example.net.")],
            "mail.example.com": [("A", IP)], "bogus.example.net": [("A", "198.51.100.9")]}
    assert await _exists_name("%{p}", zone) == "mail.example.com"
    assert await _exists_name("%{p}", {}) == "unknown"


async def _exists_name(macro, zone):
    zone = {**zone, "example.com": [("TXT", f"v=spf1 exists:{macro} -all")]}
    r = await run(zone)
    return [lk for lk in r.trace.terms[0].lookups if lk.rdtype == "A"][-1].name


# ---- explanation -------------------------------------------------------------------

async def test_exp_on_fail_only_with_macros():
    zone = {"example.com": [("TXT", "v=spf1 -all exp=why.example.com")],
            "why.example.com": [("TXT", "%{i} is not one of %{d}'s designated mail servers.")]}
    r = await run(zone)
    assert r.result == "fail"
    assert r.explanation == "192.0.2.10 is not one of example.com's designated mail servers."
    zone["example.com"] = [("TXT", "v=spf1 ~all exp=why.example.com")]
    assert (await run(zone)).explanation == ""


async def test_default_explanation_and_broken_exp():
    r = await run({"example.com": [("TXT", "v=spf1 -all exp=missing.example.com")]})
    assert r.result == "fail" and "does not designate" in r.explanation
    r = await run({"example.com": [("TXT", "v=spf1 -all")]}, default_explanation="DEFAULT")
    assert r.explanation == "DEFAULT"


async def test_exp_letters_c_r_t():
    zone = {"example.com": [("TXT", "v=spf1 -all exp=why.example.com")],
            "why.example.com": [("TXT", "%{c} via %{r} at %{t}")]}
    r = await run(zone, ip="2001:db8::1", receiver="mx.receiver.example", now=1234)
    assert r.explanation == "2001:db8::1 via mx.receiver.example at 1234"


# ---- trace ---------------------------------------------------------------------------

async def test_trace_shape():
    zone = {"example.com": [("TXT", "v=spf1 include:_spf.example.net -all")],
            "_spf.example.net": [("TXT", "v=spf1 a:mail.example.net ip4:198.51.100.0/24 ~all")],
            "mail.example.net": [("A", "198.51.100.7")]}
    r = await run(zone)
    assert r.result == "fail" and r.mechanism == "-all"
    t = r.trace
    assert t.domain == "example.com" and t.record.startswith("v=spf1 include")
    inc = t.terms[0]
    assert inc.term == "include:_spf.example.net" and inc.matched is False
    child = inc.child
    assert child.via == "include" and child.result == "softfail"
    assert child.terms[0].lookups[0].name == "mail.example.net" and child.terms[0].lookups[0].outcome == "ok"
    assert [d.domain for d in t.walk()] == ["example.com", "_spf.example.net"]
    lines = t.render()
    assert lines[0] == "example.com => fail"
    assert any("include _spf.example.net => softfail" in x for x in lines)
    json.dumps(r.as_dict())  # JSON-able


# ---- prefetch ------------------------------------------------------------------------

async def test_prefetch_overlaps_lookups():
    zone = {"example.com": [("TXT", "v=spf1 include:a.example.com include:b.example.com "
                                    "include:c.example.com a:h.example.com -all")],
            "a.example.com": [("TXT", "v=spf1 include:a2.example.com -all")],
            "a2.example.com": [("TXT", "v=spf1 -all")],
            "b.example.com": [("TXT", "v=spf1 -all")],
            "c.example.com": [("TXT", "v=spf1 -all")],
            "h.example.com": [("A", IP)]}
    dns = MemoryDns(zone, delay=0.01)
    r = await check_host(IP, "example.com", sender="x@example.com", dns=dns)
    assert r.result == "pass"
    assert dns.max_active > 1
    assert r.lookups_used == 5          # counts terms evaluated, not prefetches
    assert len(dns.queries) == len(set(dns.queries))   # each question asked once


async def test_prefetch_does_not_exceed_budget_on_bombs():
    many = " ".join(f"include:i{i}.example.com" for i in range(200))
    dns = MemoryDns({"example.com": [("TXT", f"v=spf1 {many} -all")]})
    r = await check_host(IP, "example.com", sender="x@example.com", dns=dns)
    assert r.result == "permerror"
    assert len(dns.queries) < 30


class _Raising:
    async def lookup(self, name, rdtype):
        raise RuntimeError("boom")


async def test_resolver_crash_is_temperror():
    r = await check_host(IP, "example.com", sender="x@example.com", dns=_Raising())
    assert r.result == "temperror"


# ---- parser properties ------------------------------------------------------------------

_terms = st.sampled_from([
    "all", "-all", "~all", "?all", "a", "a/24", "a:example.com//64", "mx:mail.example.org/24//48", "ptr",
    "ptr:example.net", "ip4:192.0.2.0/24", "ip6:2001:db8::/32", "include:_spf.example.com",
    "exists:%{ir}.%{l1r+-}._spf.%{d}", "redirect=_spf.example.com", "exp=explain.%{d2}", "foo=bar",
    "-include:x.example", "?exists:%{i}.bl.example",
])


@settings(max_examples=300, deadline=None)
@given(st.text(max_size=80))
def test_parser_never_raises(text):
    out = parse_record(text)
    assert isinstance(out, (SpfRecord, ParseError))
    out2 = parse_record("v=spf1 " + text)
    assert isinstance(out2, (SpfRecord, ParseError))


@settings(max_examples=200, deadline=None)
@given(st.lists(_terms, max_size=8), st.integers(1, 3))
def test_parser_round_trips(terms, spaces):
    record = "v=spf1" + "".join(" " * spaces + t for t in terms)
    parsed = parse_record(record)
    if isinstance(parsed, ParseError):
        # only duplicate redirect/exp are errors among these terms
        assert "more than one" in parsed.message
        return
    again = parse_record(parsed.to_text())
    assert isinstance(again, SpfRecord)
    assert again.to_text() == parsed.to_text()
    assert again.terms == parsed.terms or [t.text for t in again.terms] == [t.text for t in parsed.terms]


# ---- the RFC 7208 conformance suite (optional, not shipped) -------------------------------

_SUITE = os.environ.get("SPF_TEST_SUITE")


@pytest.mark.skipif(not _SUITE, reason="set SPF_TEST_SUITE to rfc7208-tests.yml (pyspf sdist) or its JSON conversion")
async def test_rfc7208_conformance_suite():
    if _SUITE.endswith(".json"):      # the YAML documents converted to a JSON list (no PyYAML needed)
        docs = json.loads(Path(_SUITE).read_text())
    else:
        yaml = pytest.importorskip("yaml")
        docs = list(yaml.safe_load_all(Path(_SUITE).read_bytes()))
    failures = []
    for doc in docs:
        zone = _suite_zone(doc["zonedata"])
        for tid, t in doc["tests"].items():
            mf = t["mailfrom"] or "postmaster@" + t["helo"]
            domain = mf.rpartition("@")[2]
            r = await check_host(t["host"], domain, sender=mf, helo=t["helo"], dns=_SuiteDns(zone),
                                 default_explanation="DEFAULT")
            want = t["result"] if isinstance(t["result"], list) else [t["result"]]
            if r.result not in want or ("explanation" in t and t["explanation"] != r.explanation):
                failures.append(f"{tid}: {r.result} {r.explanation!r}, want {want}")
    assert not failures, failures


def _suite_zone(zd):
    zone = {}
    for name, items in zd.items():
        out, txt_given, spf = [], False, []
        for it in items:
            if it == "TIMEOUT":
                out.append(("TIMEOUT", None))
                continue
            for t, v in it.items():
                if t in ("TXT", "SPF") and isinstance(v, str):
                    v = [v]
                if t == "TXT":
                    txt_given = True
                if t == "SPF":
                    spf.append(v)
                    continue
                if v == ["NONE"]:
                    continue
                if t == "MX" and isinstance(v, list):
                    v = f"{v[0]} {v[1] or '.'}" + ("" if not v[1] or v[1].endswith(".") else ".")
                out.append((t, v))
        if not txt_given:
            out += [("TXT", v) for v in spf]
        zone[name.lower()] = out
    return zone


class _SuiteDns:
    """The suite's DNS semantics (as its reference driver defines them)."""

    def __init__(self, zone):
        self.zone = zone

    async def lookup(self, name, rdtype):
        labels = [x for x in name.split(".") if x]
        if any(len(x) > 63 for x in labels):
            return DnsAnswer(name, rdtype, Outcome.TIMEOUT)
        n = ".".join(labels).lower()
        recs = self.zone.get(n)
        if recs is None:
            return DnsAnswer(n, rdtype, Outcome.TIMEOUT if n.startswith("error.") else Outcome.NXDOMAIN)
        out = []
        for t, v in recs:
            if t == "CNAME" and rdtype != "CNAME":
                inner = await self.lookup(v, rdtype)
                return DnsAnswer(n, rdtype, inner.outcome, inner.records, canonical_name=v)
            if t == rdtype:
                if v == "TIMEOUT":
                    return DnsAnswer(n, rdtype, Outcome.TIMEOUT)
                try:
                    out.append(_rdata(t, v))
                except Exception:
                    pass
        if not out:
            timeout = any(t == "TIMEOUT" for t, _ in recs)
            return DnsAnswer(n, rdtype, Outcome.TIMEOUT if timeout else Outcome.NODATA)
        return DnsAnswer(n, rdtype, Outcome.OK, tuple(out))
