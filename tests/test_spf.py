"""SPF evaluator (RFC 7208 check_host), parser and trace, on an in-memory DNS."""

from __future__ import annotations

import json

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from deliverck.net.memdns import MemoryDns
from deliverck.records.spf import ParseError, SpfRecord, check_host, parse_macro_string, parse_record

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


# ---- what receivers meet: odd names, loops, causes (issue 13) ------------------------------
# The RFC 7208 suite itself runs through the CLI in tests/test_spf_suite.py.

@pytest.mark.parametrize("name,why", [
    ("OEMCOMPUTER", "single label"), ("[192.0.2.1]", "address literal"), ("192.0.2.1", "IP address"),
    ("a..example.com", "empty label"), ("x" * 64 + ".example.com", "64 octets"), ("example.123", "all digits"),
    ("a." * 127 + "com", "octets long"), ("", "empty"),
])
async def test_invalid_domains_are_none_with_the_reason(name, why):
    dns = MemoryDns({})
    r = await check_host(IP, name, sender=f"x@{name}", dns=dns)
    assert r.result == "none" and r.cause == "invalid_domain"
    assert why in r.problems[0] and "RFC 7208 4.3" in r.problems[0]
    assert dns.queries == []             # no DNS query for a name that cannot be one


async def test_include_loop_says_loop():
    zone = {"example.com": [("TXT", "v=spf1 include:loop.example.com -all")],
            "loop.example.com": [("TXT", "v=spf1 include:example.com -all")]}
    r = await run(zone)
    assert r.result == "permerror" and r.cause == "loop"
    assert r.loop == "include:example.com: loops back to example.com (example.com -> loop.example.com -> example.com)"
    assert r.lookups_used == 2           # stopped at the loop, not after 10 lookups
    r = await run({"example.com": [("TXT", "v=spf1 redirect=example.com")]})
    assert r.result == "permerror" and r.cause == "loop" and "redirect=example.com: loops back" in r.loop


async def test_a_loop_reached_after_a_match_does_not_matter():
    zone = {"example.com": [("TXT", f"v=spf1 ip4:{IP} include:example.com -all")]}
    assert (await run(zone)).result == "pass"


async def test_lint_and_evaluator_word_a_loop_alike():
    from deliverck.records.spf.lint import lint_domain

    zone = {"example.com": [("TXT", "v=spf1 include:loop.example.com -all")],
            "loop.example.com": [("TXT", "v=spf1 include:example.com -all")]}
    lint = await lint_domain("example.com", MemoryDns(zone))
    assert [i.message for i in lint.issues if i.code == "loop"] == [(await run(zone)).loop]


@pytest.mark.parametrize("record,cause,result", [
    ("v=spf1 a:n1.example.com a:n2.example.com a:n3.example.com -all", "void_lookups", "permerror"),
    ("v=spf1 " + " ".join(f"a:h{i}.example.com" for i in range(11)) + " -all", "too_many_lookups", "permerror"),
    ("v=spf1 include:nowhere.example.com -all", "include_none", "permerror"),
    ("v=spf1 redirect=nowhere.example.com", "redirect_none", "permerror"),
    ("v=spf1 mx bogus -all", "syntax", "permerror"),
    ("v=spf1 a:x.example.net -all", "dns_failure", "temperror"),
    ("v=spf1 ip4:198.51.100.1", "default", "neutral"),
])
async def test_causes(record, cause, result):
    extra = {f"h{i}.example.com": [("A", "198.51.100.1")] for i in range(11)}
    extra["x.example.net"] = [("A", "SERVFAIL")]
    r = await run({"example.com": [("TXT", record)], **extra})
    assert (r.result, r.cause) == (result, cause)
    if cause == "dns_failure":
        assert (r.failed_lookup.name, r.failed_lookup.rdtype, r.failed_lookup.outcome) == (
            "x.example.net", "A", "servfail")


async def test_none_causes():
    assert (await run({})).cause == "nxdomain"
    assert (await run({"example.com": [("TXT", "hello")]})).cause == "no_record"


async def test_names_no_query_can_be_made_for_are_no_match():
    # %{H} of this HELO URL-escapes to a 66-octet label: treated as non-existent (the suite allows
    # fail or permerror); the trace says why, and nothing is asked.
    dns = MemoryDns({"example.com": [("TXT", "v=spf1 a:%{H}.bar -all")]})
    r = await check_host(IP, "example.com", sender="x@example.com", helo="%" * 22, dns=dns)
    assert r.result == "fail"
    lk = r.trace.terms[0].lookups[0]
    assert lk.outcome == "invalid" and "label of 66 octets" in lk.detail
    assert not any(q[0].endswith(".bar") for q in dns.queries)


async def test_labels_with_any_octets_are_asked_exactly():
    # A HELO or local part with a space or quote expands into such a label (RFC 7208 7.3):
    # the query carries those octets, so a record published for them matches.
    zone = {"example.com": [("TXT", "v=spf1 exists:%{l}._spf.%{d} -all")],
            '"john smith"._spf.example.com': [("A", "127.0.0.2")]}
    r = await run(zone, sender='"john smith"@example.com')
    assert r.result == "pass"


def test_query_name_escapes_only_what_it_must():
    import dns.name

    from deliverck.records.spf.names import query_name

    assert query_name("mail.example.com") == ("mail.example.com", "")
    text, why = query_name('"a b".example.com')
    assert not why and dns.name.from_text(text).labels[0] == b'"a b"'
    assert dns.name.from_text(query_name("a\\b.example.com")[0]).labels[0] == b"a\\b"
    assert query_name("a..b")[1] == "empty label"
    assert "63" in query_name("x" * 64 + ".com")[1]
    assert "255" in query_name(".".join(["x" * 63] * 4) + ".com")[1]


async def test_explanation_source():
    r = await run({"example.com": [("TXT", "v=spf1 -all exp=why.example.com")],
                   "why.example.com": [("TXT", "go away")]})
    assert (r.explanation, r.explanation_source) == ("go away", "exp")
    r = await run({"example.com": [("TXT", "v=spf1 -all")]})
    assert r.explanation_source == "default" and "does not designate" in r.explanation
    assert (await run({"example.com": [("TXT", "v=spf1 ~all")]})).explanation_source == ""
