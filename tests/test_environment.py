"""Never blame the target for the checker's environment (issue 13, section 1).

The real CLI, in the lab, behind resolvers that behave like a user's broken
environment (deliverck/lab/badns.py, the unsigned-root unbound of plan.py; their
addresses come from the manifest): one that NXDOMAINs everything, one that
REFUSES, one that SERVFAILs the root, an authoritative server used as a
resolver, a forwarder that strips DNSSEC, one that drops every DO=1 query, a
lab root that is unsigned while the IANA anchor is in force, and the lab root
signed with keys that do not match the IANA anchor.  Each run must either stop
with one line that names the resolver and the remedy (exit 3), or report
"could not check" / a notice naming the fallback, and never blame the audited
domain: no conclusive finding of warning or worse owned by its DNS admin, mail
admin or address holder, and no predicted bounce caused by one.
"""

from __future__ import annotations

import asyncio
import json
import os
import subprocess
import sys

import pytest
from conftest import validate_report

BLAMED = {"dns_admin", "mail_admin", "ip_owner"}
WORSE = {"warning", "error", "critical"}


def cli(lab, *args: str, anchor: bool = False) -> subprocess.CompletedProcess:
    """The CLI as a user runs it, with the lab's CA and, unless `anchor`, the IANA trust anchor
    (deliverck's default): whatever the lab hands its commands, the root's keys are then not the
    anchor's."""
    env = {k: v for k, v in os.environ.items() if k not in ("DELIVERCK_TRUST_ANCHOR",)}
    extra = ["--trust-anchor", lab.trust_anchor] if anchor else []
    return subprocess.run([sys.executable, "-m", "deliverck", *args, "--ca-file", lab.ca_file,
                           "--dns-timeout", "2", "--smtp-timeout", "3", "--deadline", "40", *extra],
                          capture_output=True, text=True, timeout=120, env={**env, "COLUMNS": "160"})


def resolver(lab, behaviour: str) -> str:
    return lab.server(behaviour).addresses[0]


def blame(doc: dict) -> list[str]:
    """Findings that blame the target (and predicted bounces caused by them), as readable lines."""
    bad = {f["id"]: f for c in doc["checks"] for f in c["findings"]
           if f["owner"] in BLAMED and f["severity"] in WORSE and not f["inconclusive"]}
    out = [f"{f['id']} ({f['owner']}): {f['summary']}" for f in bad.values()]
    out += [f"predicted {p['system']} {p['reply']} caused by {p['caused_by']}"
            for p in doc["predicted_ndrs"] if set(p["caused_by"]) & set(bad)]
    return out


def findings(doc: dict) -> dict[str, dict]:
    return {f["id"]: f for c in doc["checks"] for f in c["findings"]}


# -- resolvers that cannot be used at all: one line, exit 3 -------------------------------------------------


@pytest.mark.parametrize("behaviour,answered", [
    ("nxdomain-resolver", "answered NXDOMAIN for the root zone"),
    ("refused", "answered REFUSED for the root zone"),
    ("servfail-root", "answered SERVFAIL for the root zone"),
    ("servfail", "answered SERVFAIL for the root zone"),
])
@pytest.mark.parametrize("target", ["good.test", "example.com"])
def test_unusable_resolver_stops_with_one_line(lab, behaviour, answered, target):
    address = resolver(lab, behaviour)
    r = cli(lab, target, "--resolver", address)
    assert r.returncode == 3, r.stdout[-2000:] + r.stderr
    assert r.stdout == ""
    lines = r.stderr.strip().splitlines()
    assert len(lines) == 1, r.stderr
    line = lines[0]
    assert f"{address}:53" in line and answered in line, line
    assert "--resolver" in line and "/etc/resolv.conf" in line, line
    assert "Traceback" not in r.stderr and "Do53" not in line


def test_an_authoritative_server_as_resolver_answers_its_zones_and_never_blames_a_referral(lab):
    """A lab with its own root often points /etc/resolv.conf straight at the authoritative server
    (RA clear).  It speaks for the zones it holds; a name it can only refer elsewhere is "could not
    check" for that lookup, never a missing record."""
    nsd = resolver(lab, "nsd")
    r = cli(lab, "good.test", "--resolver", nsd, "--only", "mx,ptr,spf,dmarc", "--json")
    assert r.returncode == 0, r.stdout[-2000:] + r.stderr
    # servfail.test is delegated to another server: nsd answers with a referral
    r = cli(lab, "servfail.test", "--resolver", nsd, "--only", "mx", "--json")
    doc = json.loads(r.stdout)
    assert r.returncode == 3, doc
    f = findings(doc)
    assert "mx.lookup_failed" in f and "referral" in f["mx.lookup_failed"]["summary"] + str(f["mx.lookup_failed"]["evidence"])
    assert not set(f) & {"mx.none", "mx.no_mail_host", "mx.domain_nxdomain"}
    assert not blame(doc), blame(doc)


def test_missing_real_tld_stops_but_a_private_tld_is_not_required(lab):
    # The lab's root knows no `de.`: its resolver cannot speak for names under a real TLD it lacks.
    r = cli(lab, "example.de", "--only", "mx")
    assert r.returncode == 3 and r.stdout == ""
    assert "answered NXDOMAIN for the top-level domain de." in r.stderr and len(r.stderr.splitlines()) == 1
    # `com.` exists in the lab root only as the parent of a delegation (psbl.surriel.com): NODATA is an
    # answer, so the run goes on and the name's own NXDOMAIN counts.
    r = cli(lab, "no-such-domain.surriel.com", "--only", "mx", "--json")
    assert r.returncode == 1, r.stderr
    assert "mx.domain_nxdomain" in findings(json.loads(r.stdout))
    # `test.` is not a real TLD: never looked up for the sanity, nothing required of it.
    r = cli(lab, "nxdomain.test", "--only", "mx", "--json")
    assert r.returncode == 1 and "mx.domain_nxdomain" in findings(json.loads(r.stdout))


def test_zone_file_target_is_audited_but_the_resolver_answers_nothing(lab, tmp_path):
    """--zone-file: the names in the file need no resolver; what leaves the file is 'could not check'
    naming the resolver, never the target's fault."""
    served = (lab.lab_dir + "/zones/good.test.zone")
    keep = [ln for ln in open(served).read().splitlines()
            if ln.split()[3:4] not in (["RRSIG"], ["NSEC"], ["NSEC3"], ["DNSKEY"], ["NSEC3PARAM"])]
    zone = tmp_path / "good.test.zone"
    zone.write_text("\n".join(keep) + "\n")
    address = resolver(lab, "nxdomain-resolver")
    r = cli(lab, "good.test", "--zone-file", str(zone), "--resolver", address, "--only", "mx,ptr,dnsbl",
            "--json")
    assert r.returncode == 3, r.stderr
    doc = json.loads(r.stdout)
    validate_report(doc)
    got = findings(doc)
    assert "mx.records" in got                                   # from the file
    ptr = [f for c in doc["checks"] if c["id"] == "ptr" for f in c["findings"]]
    assert ptr and all(f["inconclusive"] for f in ptr), ptr
    assert any(f"{address}:53" in " ".join(f["evidence"]) for f in ptr), ptr
    assert not blame(doc), blame(doc)


# -- DNSSEC above the domain -----------------------------------------------------------------------------------


@pytest.mark.parametrize("behaviour", ["strip-dnssec", "unsigned-root"])
@pytest.mark.parametrize("target", ["good-dane.test", "good.test"])
def test_no_dnssec_from_here_is_could_not_check(lab, behaviour, target):
    """A forwarder that strips DNSSEC, and an unsigned root (both: the root has no DNSKEY here): no
    validation is possible and the resolver sets no AD bit, so the dnssec check (and DANE, where
    TLSA is published) could not check: exit 3 with the remedy, nothing blamed."""
    r = cli(lab, target, "--resolver", resolver(lab, behaviour), "--json")
    assert r.returncode == 3, r.stdout[-3000:] + r.stderr
    doc = json.loads(r.stdout)
    validate_report(doc)
    assert not blame(doc), blame(doc)
    got = findings(doc)
    cv = got["dnssec.cannot_validate"]
    assert cv["inconclusive"] and cv["owner"] == "network"
    assert "no DNSKEY" in cv["summary"] and "--trust-anchor" in cv["fix"] and "--resolver" in cv["fix"]
    status = {c["id"]: c["status"] for c in doc["checks"]}
    assert status["dnssec"] == "error"
    if target == "good-dane.test":
        assert status["dane"] == "error" and got["dane.cannot_validate"]["inconclusive"]
        assert "dane.insecure" not in got
    assert not {i for i in got if i.startswith("dnssec.") and i not in (
        "dnssec.cannot_validate", "dnssec.insecure", "dnssec.secure")}, sorted(got)
    assert ". has a DS in its parent" not in r.stdout


def test_root_keys_not_the_anchor_fall_back_to_the_resolver(lab):
    """The lab root is signed with its own keys: under the IANA anchor deliverck cannot validate, the
    lab's validating resolver answers instead, and a notice says so."""
    r = cli(lab, "good-dane.test", "--json")
    doc = json.loads(r.stdout)
    validate_report(doc)
    assert r.returncode == 0, [(f["id"], f["summary"]) for f in findings(doc).values()]
    assert not blame(doc), blame(doc)
    got = findings(doc)
    assert got["dnssec.anchor_mismatch"]["severity"] == "notice"
    assert "dane.matched" in got and "dnssec.secure" in got
    assert "resolver" in got["dnssec.secure"]["summary"]


def test_root_keys_not_the_anchor_still_blame_a_bogus_zone(lab):
    """The fallback does not excuse the domain: the validating resolver authenticates test. and
    fails dnssec-bogus.test below it, while handing its records over with checking disabled."""
    r = cli(lab, "dnssec-bogus.test", "--only", "dnssec", "--json")
    got = findings(json.loads(r.stdout))
    assert r.returncode == 1 and "dnssec.bogus" in got and "dnssec.anchor_mismatch" in got, sorted(got)
    assert "below test." in got["dnssec.bogus"]["summary"]


def test_resolver_that_drops_dnssec_queries_is_not_bogus(lab):
    """DO=1 queries never come back (a middlebox dropping DNSSEC-sized traffic): deliverck cannot
    walk the chain, the resolver's own AD bit answers, nothing is bogus."""
    r = cli(lab, "good-dane.test", "--resolver", resolver(lab, "drop-dnssec"), "--json", anchor=True)
    doc = json.loads(r.stdout)
    validate_report(doc)
    assert not blame(doc), blame(doc)
    got = findings(doc)
    assert "dnssec.own_validation_unavailable" in got and "dnssec.bogus" not in got, sorted(got)
    assert r.returncode == 0


# -- the sanity costs no serial round trip, and failures read as plain text -----------------------------------


def test_sanity_queries_go_out_together(lab):
    from deliverck.net.dns import DnsClient

    async def go():
        client = DnsClient(timeout=2)
        ok, why = await client.reachable("example.com")
        return ok, why, list(client.stats.log)

    ok, why, log = asyncio.run(go())
    # the lab root has com. only as the parent of a delegation: NODATA, which is fine
    assert ok, why
    asked = [(q, t) for q, t, *_ in log]       # (qname, rdtype, start, end, check)
    assert ("", "NS") in asked and ("com", "SOA") in asked and any(q.endswith(".invalid") for q, _ in asked)
    starts = [entry[2] for entry in log]
    ends = [entry[3] for entry in log]
    assert max(starts) < min(ends), log            # all three were out before the first answer came


def test_failure_details_are_plain_text(lab):
    from deliverck.net.dns import DnsClient, Outcome, parse_resolver

    refused = resolver(lab, "refused")

    async def go():
        a = await DnsClient([parse_resolver(refused)], timeout=2).lookup("good.test", "MX")
        b = await DnsClient([parse_resolver("127.0.0.9")], timeout=1).lookup("good.test", "MX")
        return a, b

    a, b = asyncio.run(go())
    assert a.outcome is Outcome.REFUSED and a.detail == f"{refused}:53 answered REFUSED"
    assert b.outcome is Outcome.TIMEOUT and b.detail == "127.0.0.9:53 did not answer within 1s"
    assert "Do53" not in a.describe() + b.describe()


# -- the lab's environment resolvers themselves ------------------------------------------------------------------


def test_environment_resolvers_behave_as_documented():
    import dns.flags
    import dns.message
    import dns.rcode
    import dns.rrset

    from deliverck.lab import badns, zones

    q = dns.message.make_query("good.test.", "MX", want_dnssec=True)
    r = dns.message.from_wire(badns.answer("nxdomain-resolver", q.to_wire()))
    assert r.rcode() == dns.rcode.NXDOMAIN and r.flags & dns.flags.RA and r.id == q.id
    resp = dns.message.make_response(q)
    resp.flags |= dns.flags.AD
    resp.answer.append(dns.rrset.from_text("good.test.", 300, "IN", "MX", "10 mx1.good.test."))
    resp.answer.append(dns.rrset.from_text("good.test.", 300, "IN", "RRSIG",
                                           "MX 13 2 300 20300101000000 20200101000000 1 good.test. AAAA"))
    stripped = badns.strip(resp)
    assert [rr.rdtype for rr in stripped.answer] == [dns.rdatatype.MX] and not stripped.flags & dns.flags.AD
    assert set(zones.RESOLVERS) <= set(badns.BEHAVIOURS) | {"unsigned-root"}
    for _name, addresses in zones.RESOLVERS.values():
        assert all(a.startswith("192.0.2.") for a in addresses)


def test_unsigned_root_copy_and_its_resolver(tmp_path):
    import dns.rdatatype
    import dns.zone

    from deliverck.lab import plan, signing, zones

    tree = zones.build(())                 # the root, test. and the reverse zones
    signing.sign(tree)
    root = tree.zones[zones.ROOT].zone
    assert root.get_rdataset(".", "DNSKEY") is not None
    copy = zones.unsigned_copy(root)
    types = {rds.rdtype for _n, node in copy.items() for rds in node.rdatasets}
    assert types.isdisjoint(zones.DNSSEC_TYPES) and dns.rdatatype.NS in types and dns.rdatatype.SOA in types
    conf = plan.unbound_conf(tmp_path, tree, 0, None, interfaces=zones.RESOLVERS["unsigned-root"][1],
                             name="unbound-unsigned-root", root_zone=tmp_path / "unsigned-root.zone")
    assert 'auth-zone:\n  name: "."' in conf and "for-upstream: yes" in conf and "validator" not in conf
    assert "interface: 192.0.2.60" in conf and "unbound-unsigned-root.pid" in conf
