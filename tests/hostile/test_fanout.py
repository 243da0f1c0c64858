"""Issue 14, item 11: fan-out caps.

A domain decides how many MX hosts, addresses, PTR names and report
destinations it publishes; deliverck decides how many it follows.  The lab's
hostile-* scenarios publish 1,000 MX hosts, 500 AAAA records on one host,
100 PTR names on one address and 200 DMARC report destinations; each is
audited here through the real CLI (every default check), measured for wall
time and peak memory, and read for what was left out.
"""

from __future__ import annotations

import json
import sys
import tempfile
import time

import pytest

from deliverck.lab.measure import run_measured

# The documented limits (deliverck/context.py, auth/dmarc.py; docs/checks.md findings).
MX_HOST_LIMIT, HOST_ADDRESS_LIMIT, ADDRESS_LIMIT, PTR_NAME_LIMIT, REPORT_URI_LIMIT = 10, 5, 20, 5, 5
DEADLINE = 10.0         # --deadline of the hostile audits: a sane domain takes about one second here
RSS_LIMIT_MB = 100      # the whole CLI process, interpreter included (about 60 MB for a sane domain)
HOSTILE = ("hostile-many-mx", "hostile-many-aaaa", "hostile-many-ptr", "hostile-many-rua")


def measured_cli(lab, *args: str) -> tuple[int, dict, float, float]:
    """(exit code, JSON report, wall seconds, peak RSS in MB) of one `deliverck` process: its own
    peak, not this grown pytest process's (deliverck.lab.measure says why that needs a launcher)."""
    with tempfile.TemporaryFile() as out, tempfile.TemporaryFile() as err:
        t0 = time.monotonic()
        proc, peak_mb = run_measured([sys.executable, "-m", "deliverck", "--ca-file", lab.ca_file,
                                      "--trust-anchor", lab.trust_anchor, "--smtp-timeout", "3",
                                      "--dns-timeout", "2", "--json", *args], stdout=out, stderr=err, timeout=120)
        wall = time.monotonic() - t0
        out.seek(0)
        err.seek(0)
        stderr = err.read().decode("utf-8", "replace")
        assert stderr == "", stderr
        doc = json.loads(out.read())
    return proc.returncode, doc, wall, peak_mb


def _findings(doc: dict, check: str | None = None) -> list[dict]:
    return [f for c in doc["checks"] if check in (None, c["id"]) for f in c["findings"]]


def _ids(doc: dict) -> list[str]:
    return [f["id"] for f in _findings(doc)]


@pytest.fixture(scope="module")
def audits(lab):
    """Each hostile domain audited once for the whole module (they cost seconds each)."""
    return {name: measured_cli(lab, f"{name}.test", "--deadline", f"{DEADLINE:g}") for name in HOSTILE}


@pytest.mark.parametrize("name", ["hostile-many-mx", "hostile-many-aaaa"])    # the costly ones before the limits
def test_a_hostile_domain_is_audited_within_the_deadline_and_100_mb(audits, name):
    code, doc, wall, rss = audits[name]
    assert not [i for i in _ids(doc) if i.endswith((".timeout", ".crashed"))], _ids(doc)
    assert wall < DEADLINE, f"{name}: {wall:.1f} s"
    assert rss < RSS_LIMIT_MB, f"{name}: peak RSS {rss:.0f} MB"
    assert code == doc["exit_code"] in (0, 1)


def test_one_thousand_mx_hosts(audits):
    _, doc, _, _ = audits["hostile-many-mx"]
    over = [f for f in _findings(doc, "mx") if f["id"] == "mx.too_many_hosts"]
    assert len(over) == 1 and over[0]["args"]["count"] == 1000 and over[0]["args"]["limit"] == MX_HOST_LIMIT
    assert over[0]["severity"] == "warning" and over[0]["owner"] == "dns_admin"
    # The most preferred host (the only one with a mail server) is among those audited.
    assert "smtp.greeting" in _ids(doc) and "ptr.confirmed" in _ids(doc)
    for check in ("smtp", "ptr", "dnsbl", "spf"):
        subjects = {f["subject"] for f in _findings(doc, check) if f["subject"][:1].isdigit()}
        assert 0 < len(subjects) <= ADDRESS_LIMIT, (check, len(subjects))
    dnssec = {(f["subject"], f["args"].get("rdtype")) for f in _findings(doc, "dnssec")}
    assert len(dnssec) <= 1 + 2 * MX_HOST_LIMIT, len(dnssec)
    assert len(json.dumps(doc)) < 500_000


def test_five_hundred_aaaa_records_on_one_host(audits):
    _, doc, _, _ = audits["hostile-many-aaaa"]
    over = [f for f in _findings(doc, "mx") if f["id"] == "mx.too_many_addresses"]
    assert [(f["subject"], f["args"]["count"], f["args"]["family"]) for f in over] == \
        [("mx.hostile-many-aaaa.test", 500, "IPv6")]
    probed = {f["subject"] for f in _findings(doc, "smtp") if f["subject"][:1].isdigit()}
    assert len([ip for ip in probed if ":" in ip]) == HOST_ADDRESS_LIMIT, probed
    assert len(probed) == HOST_ADDRESS_LIMIT + 1          # and the one IPv4 address
    # The same addresses in every run (cron --changes-only compares runs): the lowest ones.
    assert sorted(ip for ip in probed if ":" in ip) == [f"2001:db8:e14:2::{i}" for i in range(1, 6)]


def test_one_hundred_ptr_names(audits):
    _, doc, _, _ = audits["hostile-many-ptr"]
    ptr = _findings(doc, "ptr")
    over = [f for f in ptr if f["id"] == "ptr.too_many_names"]
    assert len(over) == 1 and over[0]["args"]["count"] == 100 and over[0]["owner"] == "ip_owner"
    assert "ptr.multiple" not in [f["id"] for f in ptr]     # one cause, one finding
    assert len([f for f in ptr if f["id"] == "ptr.confirmed"]) == PTR_NAME_LIMIT


def test_two_hundred_report_destinations(audits):
    _, doc, _, _ = audits["hostile-many-rua"]
    dmarc = _findings(doc, "dmarc")
    over = [f for f in dmarc if f["id"] == "dmarc.too_many_report_uris"]
    assert len(over) == 1 and over[0]["args"]["count"] == 200 and over[0]["args"]["tag"] == "rua"
    checked = [f for f in dmarc if f["id"].startswith("dmarc.external_")]
    assert len(checked) == REPORT_URI_LIMIT
    assert doc["verdict"] == "pass"                       # lost reports bounce no mail


def test_one_thousand_mx_hosts_cost_a_bounded_number_of_dns_questions(lab, monkeypatch):
    """No resolver overload: count every question one audit asks (plain and DNSSEC)."""
    import asyncio
    from pathlib import Path

    from deliverck.config import Config
    from deliverck.net import dns as dnsnet
    from deliverck.net import dnssec_query
    from deliverck.runner import run_audit
    from deliverck.target import parse_target

    asked: list[str] = []
    plain, raw = dnsnet.DnsClient._query, dnssec_query._one_query

    async def counting_plain(self, qname, rdtype):
        asked.append(f"{qname} {rdtype}")
        return await plain(self, qname, rdtype)

    async def counting_raw(q, r, timeout):
        asked.append(str(q.question[0]))
        return await raw(q, r, timeout)

    monkeypatch.setattr(dnsnet.DnsClient, "_query", counting_plain)
    monkeypatch.setattr(dnssec_query, "_one_query", counting_raw)
    cfg = Config(target=parse_target("hostile-many-mx.test"), ca_file=Path(lab.ca_file),
                 trust_anchor=Path(lab.trust_anchor), smtp_timeout=3, dns_timeout=2, deadline=DEADLINE)
    report = asyncio.run(run_audit(cfg))
    assert report.verdict.value == "fail"
    assert len(asked) < 400, f"{len(asked)} DNS questions for one audit"
    mx_hosts = {q.split()[0].rstrip(".") for q in asked if q.startswith("mx")}
    assert len(mx_hosts) <= MX_HOST_LIMIT + 1, sorted(mx_hosts)[:20]


# ---------------------------------------------------------------- the limits themselves (no lab)

def test_the_limits_are_the_documented_ones():
    from deliverck import context
    from deliverck.records import dmarc

    assert (context.MX_HOST_LIMIT, context.HOST_ADDRESS_LIMIT, context.ADDRESS_LIMIT, context.PTR_NAME_LIMIT,
            dmarc.REPORT_URI_LIMIT, dmarc.RECEIVER_URI_MINIMUM) == \
        (MX_HOST_LIMIT, HOST_ADDRESS_LIMIT, ADDRESS_LIMIT, PTR_NAME_LIMIT, REPORT_URI_LIMIT, 2)


def test_mx_hosts_are_taken_by_preference_then_name():
    from deliverck.context import first_mx_hosts

    records = [(20, f"b{i}.example") for i in range(50)] + [(10, "z.example"), (10, "a.example"), (0, ""),
                                                           (10, "a.example")]
    first = first_mx_hosts(records)
    assert first[:2] == ("a.example", "z.example") and len(first) == MX_HOST_LIMIT
    assert "" not in first and first[2:] == tuple(sorted(f"b{i}.example" for i in range(50)))[:MX_HOST_LIMIT - 2]
    assert first_mx_hosts([(10, "one.example")]) == ("one.example",)


def _answer(rdtype, addresses, name="mx.example"):
    import dns.rdata
    import dns.rdataclass
    import dns.rdatatype

    from deliverck.net.dns import DnsAnswer, Outcome

    if not addresses:
        return DnsAnswer(name, rdtype, Outcome.NODATA)
    recs = tuple(dns.rdata.from_text(dns.rdataclass.IN, dns.rdatatype.from_text(rdtype), a) for a in addresses)
    return DnsAnswer(name, rdtype, Outcome.OK, recs)


def test_addresses_per_host_are_capped_per_family_in_address_order():
    from deliverck.context import HostAddresses

    answer = _answer
    v6 = [f"2001:db8::{i:x}" for i in range(300, 0, -1)]
    host = HostAddresses("mx.example", answer("A", ["192.0.2.9", "192.0.2.10"]), answer("AAAA", v6))
    assert host.audited == ("192.0.2.9", "192.0.2.10") + tuple(f"2001:db8::{i:x}" for i in range(1, 6))
    assert host.over_limit == (("IPv6", 300),)
    assert len(host.ips) == 302                            # what DNS said stays whole


async def test_report_destinations_cost_a_bounded_number_of_lookups():
    from checkctx import FakeCtx, txt

    from deliverck.checks import dmarc as check

    uris = ",".join(f"mailto:r@d{i}.example.net" for i in range(200))
    ctx = FakeCtx("example.test", {"_dmarc.example.test": txt("_dmarc.example.test", f"v=DMARC1; p=none; rua={uris}")})
    found = await check.run(ctx)
    lookups = [n for n, _ in ctx.asked if "._report._dmarc." in n]
    assert lookups == [f"example.test._report._dmarc.d{i}.example.net" for i in range(REPORT_URI_LIMIT)]
    over = [f for f in found if f.id == "dmarc.too_many_report_uris"]
    assert len(over) == 1 and over[0].args["count"] == 200 and "d2.example.net" in over[0].summary
    # Two URIs is what every receiver supports (RFC 7489 6.2): nothing to say.
    two = txt("_dmarc.example.test", "v=DMARC1; p=none; rua=mailto:a@x.example.net,mailto:b@y.example.net")
    assert "dmarc.too_many_report_uris" not in [f.id for f in await check.run(FakeCtx("example.test",
                                                                                     {"_dmarc.example.test": two}))]


async def test_addresses_past_the_audit_limit_are_named():
    """Ten MX hosts with three addresses each: twenty are audited (and probed), ten are named."""
    import asyncio

    from deliverck.checks import mx as check
    from deliverck.config import Config
    from deliverck.context import Context, HostAddresses, MxFacts, MxHost
    from deliverck.target import parse_target

    hosts = tuple(MxHost(10 + i, f"mx{i}.example.com", HostAddresses(
        f"mx{i}.example.com", _answer("A", [f"192.0.2.{3 * i + k + 1}" for k in range(3)]), _answer("AAAA", [])))
        for i in range(10))
    facts = MxFacts("example.com", _answer("MX", [f"{h.preference} {h.name}." for h in hosts], "example.com"),
                    HostAddresses("example.com", _answer("A", []), _answer("AAAA", [])),
                    tuple((h.preference, h.name) for h in hosts), hosts)
    ctx = Context(Config(target=parse_target("example.com")), dns_client=None)
    seeded = asyncio.get_running_loop().create_future()
    seeded.set_result(facts)
    ctx._facts["mx"] = seeded
    audited = await ctx.mail_addresses()
    assert [a.ip for a in audited] == [f"192.0.2.{n}" for n in range(1, 21)]
    assert len(await ctx.smtp_targets()) == ADDRESS_LIMIT
    found = [f for f in await check.run(ctx) if f.id == "mx.addresses_not_audited"]
    assert len(found) == 1 and found[0].args["count"] == 10 and "192.0.2.21" in found[0].summary
