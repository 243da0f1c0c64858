"""The spf check and the SPF lint, on an in-memory DNS (no lab)."""

from __future__ import annotations

import dataclasses

import pytest

from deliverck.config import Config
from deliverck.context import Context
from deliverck.model import Severity
from deliverck.net.memdns import MemoryDns
from deliverck.records.spf.lint import lint_domain
from deliverck.target import parse_target

IP = "192.0.2.10"


def zone(record=None, **more):
    z = {"example.com": [("MX", "10 mx.example.com.")], "mx.example.com": [("A", IP)]}
    if record is not None:
        z["example.com"].append(("TXT", record))
    for k, v in more.items():
        z[k.replace("_", ".")] = v
    return z


async def run_check(z, **cfg):
    from deliverck.checks import spf

    config = dataclasses.replace(Config(target=parse_target("example.com")), **cfg)
    ctx = Context(config, MemoryDns(z))  # type: ignore[arg-type]
    try:
        findings = await spf.run(ctx)
    finally:
        await ctx.close()
    return {f.id: f for f in findings}


async def test_pass_and_record():
    f = await run_check(zone("v=spf1 mx -all"))
    assert "spf.record" in f and "spf.pass" in f
    assert f["spf.pass"].args["mechanism"] == "mx"


async def test_fail_carries_the_trace():
    f = await run_check(zone("v=spf1 ip4:198.51.100.1 -all"))
    fail = f["spf.fail"]
    assert fail.severity == Severity.ERROR
    assert any("-all: match" in line for line in fail.evidence)


async def test_missing_record():
    f = await run_check(zone())
    # spf.missing says it once; no per-address spf.none repeats it
    assert "spf.missing" in f and "spf.none" not in f and "spf.record" not in f


@pytest.mark.parametrize("record,fid", [
    ("v=spf1 mx +all", "spf.plus_all"), ("v=spf1 mx ?all", "spf.neutral_all"), ("v=spf1 mx", "spf.no_all"),
    ("v=spf1 ptr mx -all", "spf.ptr"), ("v=spf1 include:nowhere.example.net mx -all", "spf.include_missing"),
    ("v=spf1 mx bogus -all", "spf.syntax"),
])
async def test_record_problems(record, fid):
    assert fid in await run_check(zone(record))


async def test_multiple_records():
    z = zone("v=spf1 mx -all")
    z["example.com"].append(("TXT", "v=spf1 -all"))
    f = await run_check(z)
    assert "spf.multiple" in f and "spf.permerror" in f


async def test_helo_identity():
    z = zone("v=spf1 mx -all")
    z["mx.example.com"].append(("TXT", "v=spf1 a -all"))
    f = await run_check(z, helo_name="mx.example.com")
    assert "spf.helo_pass" in f
    z["mx.example.com"] = [("A", IP), ("TXT", "v=spf1 ip4:198.51.100.1 -all")]
    f = await run_check(z, helo_name="mx.example.com")
    assert f["spf.helo_fail"].severity == Severity.ERROR
    z["mx.example.com"] = [("A", IP)]
    assert "spf.helo_none" in await run_check(z, helo_name="mx.example.com")


# The resolver answers for the root and for the TLD: control questions of deliverck.records.spf.blame.
ROOT = {".": [("NS", "a.root-servers.example.")], "com": [("SOA", "a.nic.com. hostmaster.nic.com. 1 2 3 4 5")],
        "net": [("SOA", "a.nic.net. hostmaster.nic.net. 1 2 3 4 5")]}


async def test_timeout_of_the_domains_own_zone_is_its_fault_once():
    # The resolver works (root and com answer), the domain's own TXT lookup times out:
    # receivers get temperror too.  One cause, one finding: no spf.temperror per address.
    f = await run_check({"example.com": [("MX", "10 mx.example.com."), ("TXT", "TIMEOUT")],
                         "mx.example.com": [("A", IP)], **ROOT})
    lf = f["spf.lookup_failed"]
    assert lf.owner.value == "dns_admin" and lf.severity == Severity.ERROR
    assert "receivers get temperror" in lf.summary and "the resolver answers for the root and for com" in lf.summary
    assert any(". NS" in e for e in lf.evidence) and any("com SOA" in e for e in lf.evidence)
    assert "spf.temperror" not in f and "spf.resolver_failed" not in f


async def test_resolver_failure_is_could_not_check():
    # The same timeout, but the resolver cannot answer for the root either: deliverck's
    # environment, not the domain.  Inconclusive, owned by the checking network, blames no record.
    f = await run_check({"example.com": [("MX", "10 mx.example.com."), ("TXT", "TIMEOUT")],
                         "mx.example.com": [("A", IP)]})
    rf = f["spf.resolver_failed"]
    assert rf.inconclusive and rf.owner.value == "network"
    assert "could not be checked" in rf.summary and "--resolver" in rf.summary + rf.fix
    assert not {"spf.lookup_failed", "spf.temperror", "spf.missing", "spf.fail"} & set(f)


class _Refusing(MemoryDns):
    """A resolver that refuses one name: a recursive resolver never passes REFUSED on from a
    domain's name servers, so this is the resolver's own policy."""

    async def lookup(self, name, rdtype):
        if name.rstrip(".").lower() == "_spf.example.net":
            from deliverck.net.dns import DnsAnswer, Outcome
            return DnsAnswer(name, rdtype, Outcome.REFUSED)
        return await super().lookup(name, rdtype)


async def test_refused_by_the_resolver_is_could_not_check():
    z = zone("v=spf1 include:_spf.example.net -all", **ROOT)
    config = dataclasses.replace(Config(target=parse_target("example.com")))
    from deliverck.checks import spf

    ctx = Context(config, _Refusing(z))  # type: ignore[arg-type]
    try:
        f = {x.id: x for x in await spf.run(ctx)}
    finally:
        await ctx.close()
    assert f["spf.resolver_failed"].inconclusive and "REFUSED" in f["spf.resolver_failed"].summary
    assert "spf.lookup_failed" not in f and "spf.temperror" not in f


async def test_included_zone_failing_is_a_real_temperror():
    # The include's name servers answer SERVFAIL while the resolver works: every receiver
    # gets temperror, so the domain (whose record depends on that zone) is told, once.
    z = zone("v=spf1 include:_spf.example.net -all", **ROOT)
    z["_spf.example.net"] = [("TXT", "SERVFAIL")]
    f = await run_check(z)
    lf = f["spf.lookup_failed"]
    assert lf.owner.value == "dns_admin" and "_spf.example.net" in lf.summary and "servfail" in lf.summary
    assert "the name servers of the zone holding _spf.example.net do not answer" in lf.summary
    assert "spf.temperror" not in f and "spf.resolver_failed" not in f


async def test_temperror_of_an_address_lookup_is_reported_per_address():
    # a:h.example.net fails only in evaluation (the lint does not look it up as TXT)
    f = await run_check(zone("v=spf1 a:h.example.net -all", h_example_net=[("A", "SERVFAIL")], **ROOT))
    t = f["spf.temperror"]
    assert t.owner.value == "dns_admin" and "h.example.net" in t.summary and "receivers defer" in t.summary


@pytest.mark.parametrize("ip,family,other", [("192.0.2.10", "ip4:192.0.2.10", "ip6:"),
                                             ("2001:db8::7", "ip6:2001:db8::7", "ip4:")])
async def test_fix_names_the_mechanism_of_the_address_family(ip, family, other):
    z = {"example.com": [("MX", "10 mx.example.com."), ("TXT", "v=spf1 ip4:198.51.100.1 -all")],
         "mx.example.com": [("AAAA" if ":" in ip else "A", ip)]}
    f = await run_check(z)
    fix = f["spf.fail"].fix
    assert f"`{family}`" in fix and other not in fix, fix
    assert ("ip6:2001:db8::/64" if ":" in ip else "ip4:192.0.2.0/24") in fix
    z["example.com"] = [("MX", "10 mx.example.com.")]
    assert "spf.missing" in await run_check(z)


async def test_none_fix_names_the_family_too():
    from deliverck.checks.spf import CHECK, auth_terms

    fix = CHECK.finding("none", "2001:db8::7", domain="example.com", ip="2001:db8::7", **auth_terms("2001:db8::7")).fix
    assert "v=spf1 ip6:2001:db8::7 -all" in fix and "ip4:" not in fix


async def test_lint_counts_the_whole_tree():
    z = {"example.com": [("TXT", "v=spf1 include:a.example.com include:b.example.com a:n1.example.com -all")],
         "a.example.com": [("TXT", "v=spf1 " + " ".join(f"a:h{i}.example.com" for i in range(5)) + " -all")],
         "b.example.com": [("TXT", "v=spf1 " + " ".join(f"a:h{i}.example.com" for i in range(5)) + " -all")],
         **{f"h{i}.example.com": [("A", IP)] for i in range(5)}}
    lint = await lint_domain("example.com", MemoryDns(z))
    assert lint.total_lookups == 13 and lint.over_limit
    assert lint.void_lookups == 1


async def test_lint_finds_loops():
    z = {"example.com": [("TXT", "v=spf1 include:x.example.com -all")],
         "x.example.com": [("TXT", "v=spf1 include:example.com -all")]}
    lint = await lint_domain("example.com", MemoryDns(z))
    assert [i.code for i in lint.issues] == ["loop"]
