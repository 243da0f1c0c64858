"""The lab itself: scenario data and zone generation (anywhere), and the running
lab (marked `lab`: run under `deliverck lab run -- python -m pytest`)."""

from __future__ import annotations

import ipaddress
import os
import shutil
import smtplib
import socket
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import dns.message
import dns.name
import dns.query
import dns.rcode
import dns.rdatatype
import dns.resolver
import dns.reversename
import pytest

from deliverck.lab import LabUnavailable, badns, manifest, plan, preflight, run, scenarios, zones

REQUIRED = {
    "good": ("pass", ["mx.records", "ptr.confirmed"]),
    "many-mx": ("pass", []),
    "no-mx": ("pass", ["mx.implicit"]),
    "null-mx": ("pass", ["mx.null"]),
    "null-mx-mixed": ("fail", ["mx.null_mixed"]),
    "mx-cname": ("pass", ["mx.target_cname"]),
    "mx-ip-literal": ("fail", ["mx.target_ip_literal", "mx.no_usable_host"]),
    "mx-doubled-origin": ("fail", ["mx.target_doubled_origin", "mx.no_usable_host"]),
    "mx-nxdomain": ("fail", ["mx.target_nxdomain", "mx.no_usable_host"]),
    "mx-no-address": ("fail", ["mx.target_no_address", "mx.no_usable_host"]),
    "mx-private": ("fail", ["mx.target_private", "mx.no_usable_host"]),
    "ipv6-only": ("pass", ["mx.ipv6_only", "mx.single_host"]),
    "no-ptr": ("fail", ["ptr.missing"]),
    "ptr-mismatch": ("fail", ["ptr.forward_mismatch"]),
    "ptr-no-forward": ("fail", ["ptr.forward_missing"]),
    "generic-ptr": ("pass", ["ptr.generic"]),
    "multi-ptr": ("pass", ["ptr.multiple"]),
    "nxdomain": ("fail", ["mx.domain_nxdomain"]),
    "servfail": ("incomplete", ["mx.lookup_failed"]),
    "slow": ("incomplete", ["mx.lookup_failed"]),
    "slow-ptr": ("incomplete", ["ptr.lookup_failed"]),
}
FORBIDDEN = [ipaddress.ip_network(n) for n in ("10.0.0.0/8", "172.16.0.0/12", "192.168.0.0/16")]


@pytest.fixture(scope="module")
def all_scenarios():
    return scenarios.load_all()


@pytest.fixture(scope="module")
def tree(all_scenarios):
    return zones.build(all_scenarios)


# --- scenario data ---------------------------------------------------------

def test_scenario_names_are_unique_and_files_named_after_them(all_scenarios):
    names = [s.name for s in all_scenarios]
    assert len(names) == len(set(names))
    for s in all_scenarios:
        assert Path(s.source).stem == s.name


def test_required_scenarios_and_expectations(all_scenarios):
    by_name = {s.name: s for s in all_scenarios}
    for name, (verdict, findings) in REQUIRED.items():
        assert name in by_name, name
        assert by_name[name].expect.verdict == verdict, name
        assert set(findings) <= set(by_name[name].expect.findings), name


def test_scenario_addresses_stay_in_the_lab(all_scenarios):
    assert scenarios.problems(all_scenarios) == []
    for s in all_scenarios:
        for address in s.addresses():
            assert scenarios.is_documentation(address) or address in s.never_contacted, (s.name, address)
        for address in s.never_contacted:
            assert not scenarios.is_documentation(address)


def test_mx_private_is_published_only(all_scenarios, tree):
    s = {x.name: x for x in all_scenarios}["mx-private"]
    assert set(s.never_contacted) == {"10.0.0.25", "192.168.1.25"}
    assert set(s.addresses()) == set(s.never_contacted) and s.smtp == ()
    lo = tree.addresses()
    for address in lo:
        assert scenarios.is_documentation(address)
        assert not any(ipaddress.ip_address(address) in n for n in FORBIDDEN if n.version == 4)


def test_problems_catches_bad_data():
    bad = scenarios.parse(textwrap.dedent('''
        name = "bad"
        description = "x"
        records = """
        @   MX 10 mx
        mx  A 172.16.0.1
        mx  A 198.51.100.10
        """
        smtp = ["198.51.100.99"]
        [expect]
        verdict = "fail"
        '''), "bad.toml")
    found = scenarios.problems((bad,))
    assert any("172.16.0.1" in p for p in found)
    assert any("198.51.100.99" in p for p in found)
    good = scenarios.load_all()
    clash = scenarios.problems((bad, *good))
    assert any("also used by" in p for p in clash)


@pytest.mark.parametrize("text, words", [
    ('name = "x"\ndescription = "d"\nbogus = 1\n[expect]\nverdict = "pass"\n', "unknown keys"),
    ('name = "X Y"\ndescription = "d"\n[expect]\nverdict = "pass"\n', "one lower-case DNS label"),
    ('name = "x"\ndescription = "d"\n[expect]\nverdict = "maybe"\n', "verdict"),
    ('name = "x"\ndescription = "d"\nrecords = "@ MX ten mx"\n[expect]\nverdict = "pass"\n', "records line 1"),
    ('name = "x"\ndescription = "d"\nserved_by = "bind"\n[expect]\nverdict = "pass"\n', "served_by"),
])
def test_scenario_schema_errors_are_one_line(text, words):
    with pytest.raises(LabUnavailable) as e:
        scenarios.parse(text, "x.toml")
    assert words in str(e.value) and "\n" not in str(e.value)


# --- zone generation -------------------------------------------------------

def _rrset(tree, name, rdtype):
    name = dns.name.from_text(name)
    holder = tree.enclosing(name)
    rds = holder.zone.get_rdataset(name, rdtype)
    return {r.to_text() for r in rds} if rds else set()


def test_tree_delegates_every_zone_from_its_parent(tree, all_scenarios):
    assert _rrset(tree, "test.", "NS") == {"ns.test."}
    root = tree.zones[dns.name.root].zone
    assert {r.to_text() for r in root.get_rdataset("test.", "NS")} == {"ns.test."}
    assert {r.to_text() for r in root.get_rdataset("ns.test.", "A")} == {"192.0.2.53"}   # glue
    for origin in zones.REVERSE_ZONES:
        assert root.get_rdataset(origin, "NS") is not None
    test_zone = tree.zones[zones.TEST].zone
    for s in all_scenarios:
        delegation = test_zone.get_rdataset(s.origin, "NS")
        if s.served_by == "nobody":
            assert delegation is None and s.origin not in tree.zones
        else:
            assert {r.to_text() for r in delegation} == {zones.SERVERS[s.served_by][0].to_text()}
        if s.served_by == "nsd":
            z = tree.zones[s.origin].zone
            assert z.get_rdataset(s.origin, "SOA") and z.get_rdataset(s.origin, "NS")


def test_reverse_entries(tree):
    assert _rrset(tree, dns.reversename.from_address("198.51.100.10").to_text(), "PTR") == {"mx1.good.test."}
    assert _rrset(tree, dns.reversename.from_address("2001:db8:100::10").to_text(), "PTR") == {"mx1.good.test."}
    assert _rrset(tree, dns.reversename.from_address("198.51.100.100").to_text(), "PTR") == {
        "mx.multi-ptr.test.", "mail.multi-ptr.test."}
    assert _rrset(tree, dns.reversename.from_address("198.51.100.70").to_text(), "PTR") == set()
    slow = dns.reversename.from_address("203.0.113.77")
    assert tree.zones[slow].server == "blackhole"
    parent = tree.zones[dns.name.from_text("113.0.203.in-addr.arpa.")].zone
    assert {r.to_text() for r in parent.get_rdataset(slow, "NS")} == {"blackhole.ns.test."}


def test_tricky_scenario_records(tree):
    assert _rrset(tree, "mx-doubled-origin.test.", "MX") == {
        "10 mail.mx-doubled-origin.test.mx-doubled-origin.test."}
    assert _rrset(tree, "mx-ip-literal.test.", "MX") == {"10 192.0.2.99."}
    assert _rrset(tree, "null-mx.test.", "MX") == {"0 ."}


def _write_zone(d: Path, name: str, body: str) -> Path:
    d.mkdir(parents=True, exist_ok=True)
    p = d / name
    p.write_text(textwrap.dedent(body))
    return p


USER_ZONE = """\
    $TTL 60
    @    SOA ns1.example.net. admin.example.com. 1 3600 600 86400 60
    @    NS  ns1.example.net.
    @    MX  10 mail
    mail A   192.0.2.200
    mail AAAA 2001:db8:200::25
    far  A   10.1.2.3
    """


def test_user_zone_is_served_delegated_and_stubbed(tmp_path, all_scenarios):
    _write_zone(tmp_path / "z", "example.com.zone", USER_ZONE)
    tree = zones.build(all_scenarios, [tmp_path / "z"])
    origin = dns.name.from_text("example.com.")
    assert tree.zones[origin].source.endswith("example.com.zone")
    root = tree.zones[dns.name.root].zone
    assert {r.to_text() for r in root.get_rdataset(origin, "NS")} == {"ns.test."}
    assert "192.0.2.200" in tree.addresses() and "2001:db8:200::25" in tree.addresses()
    assert "10.1.2.3" not in tree.addresses()
    conf = plan.unbound_conf(tmp_path, tree, 0, None)
    assert 'stub-zone:\n  name: "example.com."\n  stub-addr: 192.0.2.53' in conf


def test_user_zone_replaces_a_lab_zone(tmp_path, all_scenarios):
    _write_zone(tmp_path, "good.test.zone", """\
        $TTL 60
        @  SOA ns.test. h.test. 1 3600 600 86400 60
        @  NS  ns.test.
        @  MX  5 other
        other A 198.51.100.250
        """)
    tree = zones.build(all_scenarios, [tmp_path])
    assert _rrset(tree, "good.test.", "MX") == {"5 other.good.test."}
    assert _rrset(tree, "test.", "NS") == {"ns.test."}
    assert {r.to_text() for r in tree.zones[zones.TEST].zone.get_rdataset("good.test.", "NS")} == {"ns.test."}


def test_bad_user_zone_names_file_and_line(tmp_path, all_scenarios):
    p = _write_zone(tmp_path, "broken.test.zone", """\
        $TTL 60
        @  SOA ns.test. h.test. 1 3600 600 86400 60
        @  NS  ns.test.
        www A 999.1.1.1
        """)
    with pytest.raises(LabUnavailable) as e:
        zones.build(all_scenarios, [tmp_path])
    msg = str(e.value)
    assert str(p) in msg and "\n" not in msg
    assert any(f"zone:{n}:" in msg for n in (4, 5))        # dnspython counts the line's newline
    with pytest.raises(LabUnavailable, match="does not exist"):
        zones.build(all_scenarios, [tmp_path / "nope"])


def test_user_zone_without_soa(tmp_path, all_scenarios):
    _write_zone(tmp_path, "nosoa.test.zone", "$TTL 60\n@ NS ns.test.\n")
    with pytest.raises(LabUnavailable, match="nosoa.test.zone"):
        zones.build(all_scenarios, [tmp_path])


def test_prepare_writes_a_consistent_lab_dir(tmp_path):
    m = plan.prepare(tmp_path, dns_latency_ms=40)
    assert manifest.from_json((tmp_path / "manifest.json").read_text()) == m
    assert m.resolver == "127.0.0.1" and m.unbound == "127.0.0.2" and m.dns_latency_ms == 40
    assert {s.name for s in m.scenarios} == {s.name for s in scenarios.load_all()}
    assert m.scenario("good.test").smtp[0].hostname == "mx1.good.test"
    for zone in m.zones:
        assert (tmp_path / "zones" / zones.file_name(dns.name.from_text(zone))).is_file()
    for tool, args in (("nsd-checkconf", [str(tmp_path / "nsd.conf")]),
                       ("unbound-checkconf", [str(tmp_path / "unbound.conf")])):
        exe = shutil.which(tool) or shutil.which(tool, path="/usr/sbin:/sbin")
        if exe:
            r = subprocess.run([exe, *args], capture_output=True, text=True)
            assert r.returncode == 0, r.stdout + r.stderr


def test_signing_chain(tmp_path, all_scenarios):
    from deliverck.lab import signing

    unsigned = scenarios.parse('name = "plain"\ndescription = "d"\nsigned = false\n'
                               'records = "@ MX 10 mx\\nmx A 198.51.100.251"\n[expect]\nverdict = "pass"\n', "plain.toml")
    _write_zone(tmp_path, "example.com.zone", USER_ZONE)
    tree = zones.build((*all_scenarios, unsigned), [tmp_path])
    anchor = signing.sign(tree)
    assert len(anchor) == 1 and " DS " in anchor[0] and " 13 2 " in anchor[0]
    test_zone = tree.zones[zones.TEST].zone
    assert test_zone.get_rdataset("good.test.", "DS") is not None
    assert test_zone.get_rdataset("plain.test.", "DS") is None            # signed = false
    assert test_zone.get_rdataset("slow.test.", "DS") is None             # misbehaving server
    assert tree.zones[dns.name.root].zone.get_rdataset("example.com.", "DS") is None   # user zone
    assert tree.zones[dns.name.from_text("good.test.")].zone.get_rdataset("good.test.", "DNSKEY")
    assert tree.zones[dns.name.from_text("plain.test.")].zone.get_rdataset("plain.test.", "DNSKEY") is None
    assert tree.zones[dns.name.from_text("example.com.")].zone.get_rdataset("example.com.", "RRSIG") is None


def test_prepare_refuses_inconsistent_scenarios(tmp_path, all_scenarios):
    clash = scenarios.parse('name = "clash"\ndescription = "d"\nrecords = "mx A 198.51.100.10"\n'
                            '[expect]\nverdict = "pass"\n', "clash.toml")
    with pytest.raises(LabUnavailable, match="198.51.100.10 is also used by"):
        plan.prepare(tmp_path, scenarios=(*all_scenarios, clash), dnssec=False)


def test_misbehaving_answers():
    q = dns.message.make_query("slow.test.", "MX")
    assert badns.answer("blackhole", q.to_wire()) is None
    for behaviour, rcode in (("servfail", dns.rcode.SERVFAIL), ("refused", dns.rcode.REFUSED)):
        r = dns.message.from_wire(badns.answer(behaviour, q.to_wire()))
        assert r.rcode() == rcode and r.id == q.id
    assert badns.answer("servfail", b"\x00garbage") is None


def test_current_outside_a_lab(monkeypatch):
    monkeypatch.delenv(manifest.ENV, raising=False)
    with pytest.raises(LabUnavailable, match="not inside a lab"):
        manifest.current()


def test_preflight_is_one_line_or_none():
    reason = preflight()
    assert reason is None or (isinstance(reason, str) and "\n" not in reason)


def test_run_rejects_bad_zone_before_starting(tmp_path):
    _write_zone(tmp_path, "x.test.zone", "garbage\n")
    with pytest.raises(LabUnavailable, match="x.test.zone"):
        run(["true"], zone_dirs=[tmp_path])


# --- the running lab -------------------------------------------------------

@pytest.fixture(scope="module")
def lab_manifest():
    try:
        return manifest.current()
    except LabUnavailable as e:
        pytest.fail(f"{e}", pytrace=False)


def _query(server, name, rdtype, timeout=5.0):
    return dns.query.udp(dns.message.make_query(name, rdtype), server, timeout=timeout)


def _lo_addresses() -> set[str]:
    out = subprocess.run(["ip", "-o", "addr", "show"], capture_output=True, text=True, check=True).stdout
    return {line.split()[3].split("/")[0] for line in out.splitlines()}


@pytest.mark.lab
def test_namespace_has_only_lo(lab_manifest):
    assert [name for _i, name in socket.if_nameindex()] == ["lo"]
    links = subprocess.run(["ip", "-o", "link", "show"], capture_output=True, text=True, check=True).stdout
    assert [line.split(":")[1].strip() for line in links.splitlines()] == ["lo"]


@pytest.mark.lab
def test_lo_holds_only_lab_addresses(lab_manifest):
    present = _lo_addresses()
    assert set(lab_manifest.lo_addresses) <= present
    for address in present - {"127.0.0.1", "::1"}:
        assert scenarios.is_documentation(address), address
    for s in lab_manifest.scenarios:
        assert not set(s.never_contacted) & present


@pytest.mark.lab
def test_system_resolver_is_the_lab(lab_manifest):
    assert Path("/etc/resolv.conf").read_text().split() == ["nameserver", lab_manifest.resolver]


@pytest.mark.lab
def test_mx_of_good(lab_manifest):
    good = lab_manifest.scenario("good")
    res = dns.resolver.Resolver()        # /etc/resolv.conf: the lab's unbound
    mx = sorted((r.preference, r.exchange.to_text()) for r in res.resolve(good.domain, "MX"))
    assert mx == [(10, "mx1.good.test."), (20, "mx2.good.test.")]
    a = {r.address for r in res.resolve("mx1.good.test", "A")}
    aaaa = {r.address for r in res.resolve("mx1.good.test", "AAAA")}
    assert a | aaaa <= set(good.addresses) and a and aaaa
    assert (a | aaaa) <= _lo_addresses()


@pytest.mark.lab
def test_ptr_of_good(lab_manifest):
    for entry in lab_manifest.scenario("good").reverse:
        answer = dns.resolver.resolve_address(entry.address)
        assert {r.target.to_text() for r in answer} == set(entry.names)


@pytest.mark.lab
def test_resolver_validates(lab_manifest):
    import dns.flags

    assert lab_manifest.dnssec and Path(lab_manifest.trust_anchor).is_file()
    for name, rdtype in (("good.test.", "MX"), ("mx1.good.test.", "A"), ("nxdomain.test.", "MX"),
                         (dns.reversename.from_address("198.51.100.10").to_text(), "PTR")):
        q = dns.message.make_query(name, rdtype, want_dnssec=True)
        r = dns.query.udp(q, lab_manifest.resolver, timeout=5)
        assert r.flags & dns.flags.AD, (name, rdtype)


@pytest.mark.lab
def test_broken_scenarios(lab_manifest):
    assert _query(lab_manifest.resolver, "servfail.test.", "MX").rcode() == dns.rcode.SERVFAIL
    assert _query(lab_manifest.resolver, "refused.test.", "MX").rcode() == dns.rcode.SERVFAIL
    assert _query(lab_manifest.resolver, "nxdomain.test.", "MX").rcode() == dns.rcode.NXDOMAIN
    servfail = lab_manifest.server("servfail").addresses[0]
    assert _query(servfail, "servfail.test.", "MX").rcode() == dns.rcode.SERVFAIL
    refused = lab_manifest.server("refused").addresses[0]
    assert _query(refused, "refused.test.", "MX").rcode() == dns.rcode.REFUSED
    with pytest.raises(dns.exception.Timeout):
        _query(lab_manifest.server("blackhole").addresses[0], "slow.test.", "MX", timeout=0.5)


@pytest.mark.lab
def test_smtp_peer_greets_and_refuses_data(lab_manifest):
    peer = lab_manifest.scenario("good").smtp[0]
    with smtplib.SMTP(peer.address, 25, timeout=5) as s:
        code, _ = s.ehlo("probe.test")
        assert code == 250
        assert s.helo_resp is None and s.ehlo_resp.decode().startswith(peer.hostname)
        assert s.docmd("MAIL FROM:<probe@good.test>")[0] == 250
        assert s.docmd("RCPT TO:<postmaster@good.test>")[0] == 250
        assert s.docmd("DATA")[0] == 554
    sock = socket.create_connection((peer.address, 25), timeout=5)
    try:
        assert sock.recv(512).decode().startswith(f"220 {peer.hostname} ESMTP deliverck-lab")
    finally:
        sock.close()


NESTED = """\
import os, sys, time
import dns.resolver
from deliverck.lab.manifest import current
m = current()
assert os.getcwd() == sys.argv[1], (os.getcwd(), sys.argv[1])
res = dns.resolver.Resolver()
assert {r.address for r in res.resolve("mail.example.com", "A")} == {"192.0.2.200"}
assert [r.exchange.to_text() for r in res.resolve("example.com", "MX")] == ["mail.example.com."]
assert {r.exchange.to_text() for r in res.resolve("good.test", "MX")} == {"mx1.good.test.", "mx2.good.test."}
assert "192.0.2.200" in m.lo_addresses and m.user_zones == ("example.com.",)
import dns.flags, dns.message, dns.query
r = dns.query.udp(dns.message.make_query("mail.example.com.", "A", want_dnssec=True), m.resolver, timeout=5)
assert r.rcode() == 0 and not r.flags & dns.flags.AD          # user zones are served unsigned
sys.exit(7)
"""


@pytest.mark.lab
def test_nested_run_with_a_user_zone(lab_manifest, tmp_path):
    _write_zone(tmp_path / "zones", "example.com.zone", USER_ZONE)
    status = run([sys.executable, "-c", NESTED, os.getcwd()], zone_dirs=[tmp_path / "zones"])
    assert status == 7
    assert os.environ[manifest.ENV] == str(Path(lab_manifest.lab_dir) / "manifest.json")


LATENCY = """\
import sys, time
import dns.message, dns.query
from deliverck.lab.manifest import current
m = current()
q = dns.message.make_query("mx1.good.test.", "A")
dns.query.udp(q, m.resolver, timeout=10)                  # warm unbound's cache
t0 = time.monotonic()
r = dns.query.udp(q, m.resolver, timeout=10)
udp = time.monotonic() - t0
t0 = time.monotonic()
dns.query.tcp(q, m.resolver, timeout=10)
tcp = time.monotonic() - t0
direct = time.monotonic()
dns.query.udp(q, m.unbound, timeout=10)
print(udp, tcp)
sys.exit(0 if udp >= 0.8 * m.dns_latency_ms / 1000 and tcp >= 0.8 * m.dns_latency_ms / 1000 else 1)
"""


@pytest.mark.lab
def test_latency_proxy_delays_answers(lab_manifest):
    assert run([sys.executable, "-c", LATENCY], dns_latency_ms=200) == 0
