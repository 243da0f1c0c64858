"""The lab itself: scenario data and zone generation (anywhere), and the running
lab (marked `lab`: run under `deliverck lab run -- python -m pytest`)."""

from __future__ import annotations

import ipaddress
import os
import re
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


@pytest.mark.slow
def test_mx_private_is_published_only(all_scenarios, tree):
    s = {x.name: x for x in all_scenarios}["mx-private"]
    assert set(s.never_contacted) == {"10.0.0.25", "192.168.1.25"}
    assert set(s.addresses()) == set(s.never_contacted) and s.smtp == ()
    lo = tree.addresses()
    for address in lo:
        assert scenarios.is_documentation(address)
        assert not any(ipaddress.ip_address(address) in n for n in FORBIDDEN if n.version == 4)


def test_peer_schema(all_scenarios):
    from deliverck.lab import https_peer

    silent_https = {h.address for h in https_peer.load_specs() if h.behaviour != "https"}
    by_name = {s.name: s for s in all_scenarios}
    assert by_name["good"].peer("198.51.100.10") == scenarios.PeerSpec()
    assert by_name["no-starttls"].peer("203.0.113.1").starttls is False
    assert by_name["helo-bare"].smtp_hostname("203.0.113.8") == "mail"
    assert by_name["helo-bare"].cert_names("203.0.113.8") == ("mx.helo-bare.test",)
    assert by_name["mx-cname"].cert_names("198.51.100.50")[0] == "mail.mx-cname.test"
    tarpit = by_name["many-mx-tarpit"]
    assert [a for a, spec in tarpit.peers if spec.greeting_delay >= 60] == ["203.0.113.25", "2001:db8:113::25"]
    assert by_name["smtp-refused"].smtp == () and by_name["ipv6-down"].smtp == ("203.0.113.22",)
    assert by_name["generic-ptr"].expect.requires == ("ptr",)   # derived from its finding ids
    assert set(by_name["no-starttls"].expect.requires) >= {"smtp", "starttls"}
    for s in all_scenarios:           # every MX address of a scenario has a peer unless refusal is the point
        if "smtp.refused" in s.expect.findings or "smtp.ipv6_unreachable" in s.expect.findings:
            continue
        if {"mx.too_many_hosts", "mx.too_many_addresses", "mx.addresses_not_audited"} & set(s.expect.findings):
            continue                  # hostile fan-out: addresses beyond what senders try need no server
        documented = [a for a in s.addresses() if scenarios.is_documentation(a)]
        missing = set(documented) - set(s.smtp) - ({"203.0.113.12"} if s.name == "helo-mismatch" else set())
        missing -= {k.address for k in s.kdcs}          # KDC hosts are not mail hosts
        missing -= silent_https                         # a policy host that drops or refuses on purpose
        if s.name == "ptr-mismatch":
            missing -= {"198.51.100.81"}
        assert not missing, (s.name, missing)


@pytest.mark.parametrize("table, words", [
    ('behaviour = "sendmail"', "behaviour must be one of"),
    ('cert = "stale"', "cert must be one of"),
    ('greeting = "hello"', "reply code"),
    ('ports = [2525]', "ports"),
    ('greeting_delay = -1', "greeting_delay"),
    ('colour = "red"', "unknown keys"),
    ('behaviour = "postfix"\nrelay = "open"', "postfix peer cannot set"),
])
def test_peer_schema_errors(table, words):
    text = f'name = "x"\ndescription = "d"\nrecords = "mx A 198.51.100.252"\nsmtp = "all"\n[peer]\n{table}\n[expect]\nverdict = "pass"\n'
    with pytest.raises(LabUnavailable) as e:
        scenarios.parse(text, "x.toml")
    assert words in str(e.value) and "\n" not in str(e.value)


def test_peers_must_be_smtp_addresses():
    text = ('name = "x"\ndescription = "d"\nrecords = "mx A 198.51.100.252"\nsmtp = []\n'
            '[peers."198.51.100.252"]\nrelay = "open"\n[expect]\nverdict = "pass"\n')
    with pytest.raises(LabUnavailable, match="not in smtp"):
        scenarios.parse(text, "x.toml")


def test_certificates(tmp_path):
    import datetime

    from cryptography import x509
    from cryptography.hazmat.primitives.asymmetric import ec, rsa

    from deliverck.lab import certs

    now = datetime.datetime.now(datetime.UTC)
    ca = certs.make_ca(tmp_path)
    assert ca.cert.extensions.get_extension_for_class(x509.BasicConstraints).value.ca

    def leaf(name, **kw):
        return certs.issue(ca, ("mx.t.test",) if "names" not in kw else kw.pop("names"),
                           tmp_path / f"{name}.pem", tmp_path / f"{name}.key", **kw)

    def names(c):
        return c.extensions.get_extension_for_class(x509.SubjectAlternativeName).value.get_values_for_type(x509.DNSName)

    good = leaf("good")
    good.verify_directly_issued_by(ca.cert)
    assert good.not_valid_before_utc < now < good.not_valid_after_utc and names(good) == ["mx.t.test"]
    assert isinstance(good.public_key(), ec.EllipticCurvePublicKey)
    assert leaf("expired", profile="expired").not_valid_after_utc < now
    assert leaf("future", profile="not-yet-valid").not_valid_before_utc > now
    soon = leaf("soon", profile="expiring").not_valid_after_utc - now
    assert datetime.timedelta(days=1) < soon < datetime.timedelta(days=21)
    wrong = leaf("wrong", names=("www.t.test",))
    wrong.verify_directly_issued_by(ca.cert)
    assert names(wrong) == ["www.t.test"]
    selfsigned = leaf("self", profile="self-signed")
    assert selfsigned.issuer == selfsigned.subject and selfsigned.issuer != ca.cert.subject
    selfsigned.verify_directly_issued_by(selfsigned)
    weak = leaf("weak", key_kind="rsa1024")
    assert isinstance(weak.public_key(), rsa.RSAPublicKey) and weak.public_key().key_size == 1024
    if shutil.which("openssl"):
        sha1 = leaf("sha1", signature="sha1")
        assert sha1.signature_hash_algorithm.name == "sha1" and sha1.issuer == ca.cert.subject
        assert names(sha1) == ["mx.t.test"]


@pytest.mark.slow
def test_prepare_writes_certificates_and_smtp_manifest(tmp_path):
    from cryptography import x509

    m = plan.prepare(tmp_path, dnssec=False, postfix_unavailable="Postfix is not installed (test)")
    assert Path(m.ca_file).is_file() and m.smtp_log == str(tmp_path / "smtp.log")
    assert m.postfix is None and m.postfix_unavailable
    assert m.scenario("postfix-good").unavailable and m.scenario("good").unavailable is None
    good = m.scenario("good").smtp[0]
    cert = x509.load_pem_x509_certificate(Path(good.cert_file).read_bytes())
    assert cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value.get_values_for_type(
        x509.DNSName) == ["mx1.good.test"]
    assert m.scenario("not-smtp").smtp[0].cert_file is None
    config = __import__("json").loads((tmp_path / "services.json").read_text())
    assert config["postfix"] == [] and not any(p["behaviour"] == "postfix" for p in config["smtp"])


def test_postfix_log_parsing(tmp_path):
    from deliverck.lab import postfix

    d = postfix.instance_dir(tmp_path, "203.0.113.27")
    d.mkdir(parents=True)
    (d / "maillog").write_text(textwrap.dedent("""\
        Nov 23 20:30:01 mx postfix/smtpd[41]: connect from unknown[203.0.113.27]:40000
        Nov 23 20:30:01 mx postfix/smtpd[41]: < unknown[203.0.113.27]:40000: EHLO probe.test
        Nov 23 20:30:01 mx postfix/smtpd[41]: < unknown[203.0.113.27]:40000: STARTTLS
        Nov 23 20:30:01 mx postfix/smtpd[41]: Anonymous TLS connection established from unknown[203.0.113.27]:40000: TLSv1.3 with cipher X
        Nov 23 20:30:01 mx postfix/smtpd[41]: < unknown[203.0.113.27]:40000: ehlo probe.test
        Nov 23 20:30:01 mx postfix/smtpd[41]: < unknown[203.0.113.27]:40000: QUIT
        Nov 23 20:30:01 mx postfix/smtpd[41]: disconnect from unknown[203.0.113.27]:40000 ehlo=2 starttls=1 quit=1 commands=4
        Nov 23 20:30:02 mx postfix/smtpd[42]: connect from unknown[203.0.113.27]:40001
        """))
    [s] = postfix.sessions(tmp_path, "203.0.113.27")
    assert s["commands"] == ["EHLO", "STARTTLS", "EHLO", "QUIT"] and s["tls"] == "TLSv1.3"
    assert s["peer"] == "203.0.113.27 40000" and s["time"] > 0


@pytest.mark.slow
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


@pytest.mark.slow
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


@pytest.mark.slow
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


@pytest.mark.slow
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


@pytest.mark.slow
def test_user_zone_without_soa(tmp_path, all_scenarios):
    _write_zone(tmp_path, "nosoa.test.zone", "$TTL 60\n@ NS ns.test.\n")
    with pytest.raises(LabUnavailable, match="nosoa.test.zone"):
        zones.build(all_scenarios, [tmp_path])


@pytest.mark.slow
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


@pytest.mark.slow
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


@pytest.mark.slow
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


def test_namespace_has_only_lo(lab_manifest):
    assert [name for _i, name in socket.if_nameindex()] == ["lo"]
    links = subprocess.run(["ip", "-o", "link", "show"], capture_output=True, text=True, check=True).stdout
    assert [line.split(":")[1].strip() for line in links.splitlines()] == ["lo"]


def test_lo_holds_only_lab_addresses(lab_manifest):
    present = _lo_addresses()
    assert set(lab_manifest.lo_addresses) <= present
    for address in present - {"127.0.0.1", "::1"}:
        assert scenarios.is_documentation(address), address
    for s in lab_manifest.scenarios:     # loopback is the namespace's own, always there (tests listen on it)
        assert not (set(s.never_contacted) - {"127.0.0.1", "::1"}) & present


def test_system_resolver_is_the_lab(lab_manifest):
    assert Path("/etc/resolv.conf").read_text().split() == ["nameserver", lab_manifest.resolver]


def test_mx_of_good(lab_manifest):
    good = lab_manifest.scenario("good")
    res = dns.resolver.Resolver()        # /etc/resolv.conf: the lab's unbound
    mx = sorted((r.preference, r.exchange.to_text()) for r in res.resolve(good.domain, "MX"))
    assert mx == [(10, "mx1.good.test."), (20, "mx2.good.test.")]
    a = {r.address for r in res.resolve("mx1.good.test", "A")}
    aaaa = {r.address for r in res.resolve("mx1.good.test", "AAAA")}
    assert a | aaaa <= set(good.addresses) and a and aaaa
    assert (a | aaaa) <= _lo_addresses()


def test_ptr_of_good(lab_manifest):
    for entry in lab_manifest.scenario("good").reverse:
        answer = dns.resolver.resolve_address(entry.address)
        assert {r.target.to_text() for r in answer} == set(entry.names)


def test_resolver_validates(lab_manifest):
    import dns.flags

    assert lab_manifest.dnssec and Path(lab_manifest.trust_anchor).is_file()
    for name, rdtype in (("good.test.", "MX"), ("mx1.good.test.", "A"), ("nxdomain.test.", "MX"),
                         (dns.reversename.from_address("198.51.100.10").to_text(), "PTR")):
        q = dns.message.make_query(name, rdtype, want_dnssec=True)
        r = dns.query.udp(q, lab_manifest.resolver, timeout=5)
        assert r.flags & dns.flags.AD, (name, rdtype)


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


def test_latency_proxy_delays_answers(lab_manifest):
    assert run([sys.executable, "-c", LATENCY], dns_latency_ms=200) == 0


# --- the running lab: SMTP peers -------------------------------------------

def _greeting(address: str, port: int = 25, timeout: float = 5.0) -> bytes:
    with socket.create_connection((address, port), timeout=timeout) as sock:
        data = b""
        while not data.endswith(b"\n"):
            chunk = sock.recv(1024)
            if not chunk:
                break
            data += chunk
        return data


def _served_cert(lab_manifest, name: str, verify: bool = False):
    """(TLS version, certificate) the scenario's first peer serves after STARTTLS."""
    import ssl

    from cryptography import x509

    peer = lab_manifest.scenario(name).smtp[0]
    ctx = ssl.create_default_context(cafile=lab_manifest.ca_file)
    if not verify:
        ctx.check_hostname = False
        ctx.verify_mode = ssl.CERT_NONE
    with smtplib.SMTP(peer.address, 25, timeout=5) as s:
        s._host = peer.cert_names[0]            # server_hostname for SNI and name checks
        s.ehlo("probe.test")
        assert s.has_extn("starttls"), name
        s.starttls(context=ctx)
        der = s.sock.getpeercert(binary_form=True)
        return s.sock.version(), x509.load_der_x509_certificate(der)


def test_good_peers_serve_a_trusted_certificate(lab_manifest):
    assert Path(lab_manifest.ca_file).is_file()
    for name in ("good", "smtp-good", "ipv6-good"):
        version, cert = _served_cert(lab_manifest, name, verify=True)
        assert version in ("TLSv1.2", "TLSv1.3")


def test_broken_certificates_are_really_broken(lab_manifest):
    import datetime
    import ssl

    now = datetime.datetime.now(datetime.UTC)
    _v, expired = _served_cert(lab_manifest, "expired-cert")
    assert expired.not_valid_after_utc < now
    _v, future = _served_cert(lab_manifest, "not-yet-valid")
    assert future.not_valid_before_utc > now
    _v, selfsigned = _served_cert(lab_manifest, "self-signed")
    assert selfsigned.issuer == selfsigned.subject
    _v, weak = _served_cert(lab_manifest, "weak-key")
    assert weak.public_key().key_size == 1024
    with pytest.raises(ssl.SSLCertVerificationError):
        peer = lab_manifest.scenario("wrong-name").smtp[0]
        ctx = ssl.create_default_context(cafile=lab_manifest.ca_file)
        with smtplib.SMTP(peer.address, 25, timeout=5) as s:
            s._host = "mx.wrong-name.test"
            s.ehlo("probe.test")
            s.starttls(context=ctx)


def test_weak_tls_serves_only_old_protocols(lab_manifest):
    import ssl
    import warnings

    peer = lab_manifest.scenario("weak-tls").smtp[0]
    assert peer.tls_versions == "legacy"
    modern = ssl.create_default_context(cafile=lab_manifest.ca_file)
    with smtplib.SMTP(peer.address, 25, timeout=5) as s:
        s.ehlo("probe.test")
        with pytest.raises(ssl.SSLError):
            s.starttls(context=modern)
    legacy = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    legacy.check_hostname = False
    legacy.verify_mode = ssl.CERT_NONE
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)
        legacy.minimum_version = ssl.TLSVersion.TLSv1
    legacy.set_ciphers("DEFAULT:@SECLEVEL=0")
    with smtplib.SMTP(peer.address, 25, timeout=5) as s:
        s.ehlo("probe.test")
        s.starttls(context=legacy)
        assert s.sock.version() in ("TLSv1", "TLSv1.1")


def test_no_starttls_and_helo_names(lab_manifest):
    with smtplib.SMTP(lab_manifest.scenario("no-starttls").smtp[0].address, 25, timeout=5) as s:
        s.ehlo("probe.test")
        assert not s.has_extn("starttls")
    for name, announced in (("helo-bare", "mail"), ("helo-localhost", "localhost.localdomain"),
                            ("helo-unresolvable", "nohost.helo-unresolvable.test"),
                            ("helo-mismatch", "other.helo-mismatch.test"), ("helo-literal", "[203.0.113.13]")):
        peer = lab_manifest.scenario(name).smtp[0]
        assert peer.hostname == announced
        assert _greeting(peer.address).decode().startswith(f"220 {announced} ")
        with smtplib.SMTP(peer.address, 25, timeout=5) as s:
            s.ehlo("probe.test")
            assert s.ehlo_resp.decode().splitlines()[0] == announced
    res = dns.resolver.Resolver()
    with pytest.raises((dns.resolver.NoAnswer, dns.resolver.NXDOMAIN)):
        res.resolve("nohost.helo-unresolvable.test", "A")
    assert {r.address for r in res.resolve("other.helo-mismatch.test", "A")} == {"203.0.113.12"}


def test_odd_greetings_and_non_smtp(lab_manifest):
    def addr(name):
        return lab_manifest.scenario(name).smtp[0].address

    assert _greeting(addr("greeting-554")) == b"554 No SMTP service here\r\n"
    with smtplib.SMTP(timeout=5) as s:
        code, _ = s.connect(addr("greeting-554"), 25)
        assert code == 554
        assert s.docmd("EHLO probe.test")[0] == 503
        assert s.docmd("QUIT")[0] == 221
    assert _greeting(addr("greeting-421")).startswith(b"421 ")
    assert _greeting(addr("not-smtp")).startswith(b"HTTP/1.1 400 Bad Request")
    assert _greeting(addr("closed")) == b""
    with pytest.raises(ConnectionRefusedError):
        socket.create_connection((lab_manifest.scenario("smtp-refused").addresses[0], 25), timeout=5)
    v6 = [a for a in lab_manifest.scenario("ipv6-down").addresses if ":" in a][0]
    with pytest.raises(ConnectionRefusedError):
        socket.create_connection((v6, 25), timeout=5)
    v4 = [a for a in lab_manifest.scenario("ipv6-down").addresses if ":" not in a][0]
    assert _greeting(v4).startswith(b"220 ")


def test_tarpit_withholds_its_greeting(lab_manifest):
    for address in (lab_manifest.scenario("tarpit").smtp[0].address, "203.0.113.25"):
        start = time.monotonic()
        with socket.create_connection((address, 25), timeout=5) as sock:
            sock.settimeout(2)
            with pytest.raises(socket.timeout):
                sock.recv(100)
        assert time.monotonic() - start >= 1.9


def test_relay_policy_and_data_refused(lab_manifest):
    for name, foreign in (("smtp-good", 554), ("open-relay", 250)):
        sc = lab_manifest.scenario(name)
        with smtplib.SMTP(sc.smtp[0].address, 25, timeout=5) as s:
            s.ehlo("probe.test")
            assert s.docmd("MAIL FROM:<someone@example.org>")[0] == 250
            assert s.docmd("RCPT TO:<someone@example.net>")[0] == foreign
            assert s.docmd(f"RCPT TO:<postmaster@{sc.domain}>")[0] == 250
            assert s.docmd("DATA")[0] == 554


def test_submission_ports(lab_manifest):
    import ssl

    peer = lab_manifest.scenario("smtp-good").smtp[0]
    assert set(peer.ports) == {25, 465, 587}
    assert _greeting(peer.address, 587).startswith(b"220 ")
    ctx = ssl.create_default_context(cafile=lab_manifest.ca_file)
    with socket.create_connection((peer.address, 465), timeout=5) as raw:
        with ctx.wrap_socket(raw, server_hostname=peer.cert_names[0]) as tls:
            assert tls.recv(512).startswith(b"220 ")


def test_session_log_records_each_connection(lab_manifest):
    peer = lab_manifest.scenario("ipv6-good").smtp[1]
    since = time.time() - 1
    with smtplib.SMTP(peer.address, 25, timeout=5) as s:
        s.ehlo("probe.test")
        s.docmd("MAIL FROM:<a@example.org>")
        s.docmd("RCPT TO:<b@example.net>")
        s.docmd("RSET")
    deadline = time.monotonic() + 5
    while not (sessions := lab_manifest.smtp_sessions(peer.address, since)) and time.monotonic() < deadline:
        time.sleep(0.05)
    [session] = sessions
    assert session["commands"] == ["EHLO", "MAIL", "RCPT", "RSET", "QUIT"]
    assert session["port"] == 25 and session["address"] == peer.address and session["tls"] is None


def test_postfix_peers(lab_manifest):
    import ssl

    sc = lab_manifest.scenario("postfix-good")
    if lab_manifest.postfix is None:
        assert sc.unavailable and lab_manifest.postfix_unavailable
        pytest.skip(f"Postfix peers unavailable: {lab_manifest.postfix_unavailable}")
    peer = sc.smtp[0]
    assert _greeting(peer.address) == f"220 {peer.hostname} ESMTP Postfix\r\n".encode()
    since = time.time() - 1
    ctx = ssl.create_default_context(cafile=lab_manifest.ca_file)
    with smtplib.SMTP(peer.address, 25, timeout=10) as s:
        s._host = peer.hostname
        s.ehlo("probe.test")
        s.starttls(context=ctx)
        s.ehlo("probe.test")
        assert s.sock.version() in ("TLSv1.2", "TLSv1.3")
        assert s.docmd("MAIL FROM:<a@example.org>")[0] == 250
        code, text = s.docmd("RCPT TO:<b@example.net>")
        assert code == 554 and b"Relay access denied" in text
        assert s.docmd(f"RCPT TO:<postmaster@{sc.domain}>")[0] == 250
        assert s.docmd("DATA")[0] == 554
    with smtplib.SMTP(lab_manifest.scenario("postfix-no-starttls").smtp[0].address, 25, timeout=10) as s:
        s.ehlo("probe.test")
        assert not s.has_extn("starttls")
    deadline = time.monotonic() + 5
    while time.monotonic() < deadline:
        sessions = lab_manifest.smtp_sessions(peer.address, since - 1)
        if sessions:
            break
        time.sleep(0.1)
    assert sessions and sessions[-1]["commands"][:3] == ["EHLO", "STARTTLS", "EHLO"]
    assert sessions[-1]["tls"] in ("TLSv1.2", "TLSv1.3")


def test_one_audit_opens_one_session_per_address_and_never_data(lab_manifest):
    sc = lab_manifest.scenario("ipv6-good")
    since = time.time() - 0.001
    subprocess.run([sys.executable, "-m", "deliverck", sc.domain, "--json", "--ca-file", lab_manifest.ca_file,
                    "--dns-timeout", "2", "--smtp-timeout", "5"], capture_output=True, timeout=120)
    time.sleep(0.3)
    sessions = [s for s in lab_manifest.smtp_sessions(since=since) if s["address"] in sc.addresses]
    assert sorted(s["address"] for s in sessions) == sorted(sc.addresses)
    assert all("DATA" not in s["commands"] for s in sessions)


# --- issue 13: the lab hands its CA and trust anchor to the commands it runs ----------------

def _cli(*args: str, env: dict | None = None, timeout: float = 120) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "deliverck", *args], capture_output=True, text=True,
                          timeout=timeout, env={**os.environ, **(env or {})})


def _throwaway_ca(path: Path) -> Path:
    import datetime as dt

    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import NameOID

    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "not the lab CA")])
    now = dt.datetime.now(dt.UTC)
    cert = (x509.CertificateBuilder().subject_name(name).issuer_name(name).public_key(key.public_key())
            .serial_number(1).not_valid_before(now).not_valid_after(now + dt.timedelta(days=1))
            .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
            .sign(key, hashes.SHA256()))
    path.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    return path


# Scenarios whose verdict depends on the lab's CA (PKIX, MTA-STS, DANE-TA) or its root key (DNSSEC).
SAME_WITHOUT_OPTIONS = ("good", "good-dane", "mta-sts-good", "dane-ta", "dnssec-good", "dnssec-bogus",
                        "expired-cert", "dane-bogus")


def test_lab_run_hands_its_ca_and_anchor_to_the_command(lab_manifest):
    # This test process is the command of `deliverck lab run` (make test).
    assert os.environ.get("DELIVERCK_CA_FILE") == lab_manifest.ca_file
    assert os.environ.get("DELIVERCK_TRUST_ANCHOR") == lab_manifest.trust_anchor
    from deliverck.lab import command_env

    env = command_env(Path(lab_manifest.lab_dir) / "manifest.json",
                      {"DELIVERCK_CA_FILE": "/outer/ca.pem", "DELIVERCK_TRUST_ANCHOR": "/outer/root.ds", "X": "1"})
    assert (env["DELIVERCK_CA_FILE"], env["DELIVERCK_TRUST_ANCHOR"], env["X"]) == (
        lab_manifest.ca_file, lab_manifest.trust_anchor, "1")
    assert env[manifest.ENV] == str(Path(lab_manifest.lab_dir) / "manifest.json")


@pytest.mark.parametrize("name", SAME_WITHOUT_OPTIONS)
def test_scenarios_judge_the_same_without_ca_file_and_trust_anchor(lab_manifest, name):
    """`lab run -- deliverck X` as a user types it (no --ca-file, no --trust-anchor, default limits)
    gives the scenario's expected verdict and findings, as test_scenarios (which passes both) does."""
    import json

    sc = lab_manifest.scenario(name)
    r = _cli(sc.domain, "--json")
    assert r.stderr == "", r.stderr
    doc = json.loads(r.stdout)
    ids = [f["id"] for c in doc["checks"] for f in c["findings"]]
    assert doc["verdict"] == sc.expect.verdict, ids
    assert set(sc.expect.findings) <= set(ids)
    assert not set(sc.expect.absent) & set(ids)
    assert "starttls.cert_untrusted" not in ids and "dnssec.anchor_mismatch" not in ids


def test_an_explicit_ca_file_wins_over_the_lab(lab_manifest, tmp_path):
    import json

    r = _cli("good.test", "--json", "--only", "starttls", "--ca-file", str(_throwaway_ca(tmp_path / "ca.pem")))
    ids = [f["id"] for c in json.loads(r.stdout)["checks"] for f in c["findings"]]
    assert r.returncode == 1 and "starttls.cert_untrusted" in ids


NESTED_ENV = """\
import json, os, subprocess, sys
from deliverck.lab.manifest import current
m = current()
r = subprocess.run([sys.executable, "-m", "deliverck", "good.test", "--json", "--only", "starttls,dnssec"],
                   capture_output=True, text=True)
print(json.dumps({"ca": os.environ.get("DELIVERCK_CA_FILE"), "anchor": os.environ.get("DELIVERCK_TRUST_ANCHOR"),
                  "lab_ca": m.ca_file, "lab_anchor": m.trust_anchor, "rc": r.returncode,
                  "ids": [f["id"] for c in json.loads(r.stdout)["checks"] for f in c["findings"]]}))
"""


def test_lab_run_command_line_progress_and_environment(lab_manifest):
    """`deliverck lab run -- CMD`, nested in this lab: progress lines on stderr, then CMD with the
    nested lab's own CA and anchor (not this lab's)."""
    import json

    r = _cli("lab", "run", "--", sys.executable, "-c", NESTED_ENV, timeout=180)
    assert r.returncode == 0, r.stderr
    progress = r.stderr.splitlines()
    assert progress[0].startswith("lab: preparing") and progress[1].startswith("lab: starting DNS (")
    assert len(progress) == 3 and re.fullmatch(r"lab: ready in \d+\.\d s", progress[2]), progress
    got = json.loads(r.stdout)
    assert (got["ca"], got["anchor"]) == (got["lab_ca"], got["lab_anchor"])
    assert got["ca"] != lab_manifest.ca_file
    assert got["rc"] == 0 and "starttls.cert_untrusted" not in got["ids"], got
    quiet = _cli("lab", "run", "-q", "--", "true", timeout=180)
    assert (quiet.returncode, quiet.stderr) == (0, "")


def test_lab_up_exec_down_hands_the_same_environment(lab_manifest, tmp_path):
    """`lab exec` as `lab run`; the lab's state file goes to a private XDG_RUNTIME_DIR, so no
    other lab on this machine is touched."""
    import json

    env = {"XDG_RUNTIME_DIR": str(tmp_path)}
    up = _cli("lab", "up", env=env, timeout=180)
    try:
        assert up.returncode == 0, up.stderr
        assert "lab: ready in" in up.stderr and "the lab is up" in up.stdout
        r = _cli("lab", "exec", "--", sys.executable, "-c", NESTED_ENV, env=env)
        assert r.returncode == 0, r.stderr
        got = json.loads(r.stdout)
        assert (got["ca"], got["anchor"]) == (got["lab_ca"], got["lab_anchor"]) and got["ca"] != lab_manifest.ca_file
        assert got["rc"] == 0 and "starttls.cert_untrusted" not in got["ids"], got
    finally:
        down = _cli("lab", "down", env=env)
    assert down.returncode == 0 and "the lab is down" in down.stdout


@pytest.mark.parametrize("args,fragment", [
    (["--zone-dir", "/nonexistent/zones"], "--zone-dir /nonexistent/zones: no such directory"),
    (["--zone-dir", "/dev/null"], "no such directory"),
    (["--dns-latency", "100000"], "--dns-latency must be 0 to 10000"),
    (["--dns-latency", "-1"], "--dns-latency"),
])
@pytest.mark.slow
def test_lab_arguments_are_checked_before_the_lab_is_built(args, fragment):
    t0 = time.monotonic()
    r = _cli("lab", "run", *args, "--", "true", timeout=120)
    assert r.returncode == 2, r.stderr
    assert r.stderr.strip().splitlines() == [r.stderr.strip()] and fragment in r.stderr
    assert "lab: preparing" not in r.stderr and time.monotonic() - t0 < 10


@pytest.mark.slow
def test_lab_zone_dir_contents_are_checked_first(tmp_path):
    empty = tmp_path / "empty"
    empty.mkdir()
    r = _cli("lab", "run", "--zone-dir", str(empty), "--", "true")
    assert r.returncode == 2 and "holds no <origin>.zone file" in r.stderr
    _write_zone(tmp_path / "bad", "x.test.zone", "garbage\n")
    r = _cli("lab", "run", "--zone-dir", str(tmp_path / "bad"), "--", "true")
    assert r.returncode == 2 and "x.test.zone" in r.stderr and r.stderr.count("\n") == 1, r.stderr
    assert "lab: preparing" not in r.stderr


# --- block lists: the shipped file holds real lists; the lab hands its fixtures to commands (issue 15)

REPO = Path(__file__).resolve().parents[1]
LISTS_ENV = "DELIVERCK_DNSBL_LISTS"


def _shipped_lists():
    from deliverck.records import dnsbl

    # The file itself, not dnsbl.load(): inside the lab, load() adds the lab's lists.
    return dnsbl.from_toml((REPO / "deliverck" / "records" / "dnsbl-lists.toml").read_text(encoding="utf-8"))


def test_shipped_lists_hold_real_lists_only():
    from deliverck.records import dnsbl

    shipped = _shipped_lists()
    assert shipped.problems() == []
    assert not [x.id for x in shipped.lists if x.lab or x.zone.endswith(".test")]
    lab = dnsbl.from_toml((REPO / "deliverck" / "lab" / "dnsbl-lists.toml").read_text(encoding="utf-8"))
    assert lab.load_problems == () and lab.lists and all(x.lab and x.zone.endswith(".test") for x in lab.lists)
    served = {p.name[: -len(".zone")] for p in (REPO / "deliverck" / "lab" / "zones").glob("*.zone")}
    assert {x.zone for x in lab.lists} - served == {"dead.dnsbl.test"}    # absent on purpose: a dead list
    assert not [z for z in served if "bench" in z]                          # bench zones live in bench/zones


@pytest.mark.slow
def test_bench_lives_outside_the_package():
    import ast

    assert not [str(p) for p in (REPO / "deliverck").rglob("*bench*") if "__pycache__" not in p.parts]
    for path in [*(REPO / "deliverck").rglob("*.py"), *(REPO / "checks").rglob("*.py")]:
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            names = ([a.name for a in node.names] if isinstance(node, ast.Import)
                     else [node.module or ""] if isinstance(node, ast.ImportFrom) else [])
            assert not [n for n in names if n.split(".")[0] == "bench"], path
    from deliverck.records import dnsbl

    bench = dnsbl.from_toml((REPO / "bench" / "dnsbl-lists.toml").read_text(encoding="utf-8"))
    zones = {p.name[: -len(".zone")] for p in (REPO / "bench" / "zones").glob("*.zone")}
    assert len(bench.lists) == 13 and {x.zone for x in bench.lists} == zones


_EXTRA = """\
schema = 1
[[list]]
id = "{id}"
name = "A private list"
zone = "{zone}"
kind = "ip"
class = "spam"
delist = "https://bl.example/"
source = "our own list"
codes = [{{ code = "127.0.0.2", meaning = "listed" }}]
"""


def test_extra_lists_file_joins_the_shipped_lists(tmp_path, monkeypatch):
    from deliverck.records import dnsbl

    mine = tmp_path / "mine.toml"
    mine.write_text(_EXTRA.format(id="ours", zone="bl.example"))
    monkeypatch.setenv(LISTS_ENV, f"{mine}{os.pathsep}{mine}")       # named twice: read once
    lists = dnsbl.load()
    assert lists.by_id("ours").zone == "bl.example" and lists.by_id("spamhaus-zen") is not None
    assert [x.id for x in dnsbl.select(["ours"]).lists] == ["ours"]
    mine.write_text(_EXTRA.format(id="spamcop", zone="bl2.example"))
    monkeypatch.setenv(LISTS_ENV, str(tmp_path / "other.toml"))
    with pytest.raises(dnsbl.ListsFileError, match="no such file"):
        dnsbl.load()
    (tmp_path / "other.toml").write_text(_EXTRA.format(id="spamcop", zone="bl2.example"))
    with pytest.raises(dnsbl.ListsFileError, match="duplicate list id 'spamcop'"):
        dnsbl.load()


@pytest.mark.slow
def test_an_unusable_lists_file_is_bad_input(tmp_path):
    r = _cli("good.test", "--only", "mx", env={LISTS_ENV: str(tmp_path / "missing.toml")}, timeout=60)
    assert r.returncode == 2 and r.stdout == ""
    assert r.stderr.count("\n") == 1 and LISTS_ENV in r.stderr and "no such file" in r.stderr, r.stderr


def test_lab_hands_its_fixture_lists_to_commands(lab_manifest, tmp_path):
    from deliverck.lab import DNSBL_LISTS, command_env

    # This test process is the command of `deliverck lab run` (make test).
    assert os.environ.get(LISTS_ENV, "").split(os.pathsep)[0] == str(DNSBL_LISTS)
    env = command_env(Path(lab_manifest.lab_dir) / "manifest.json",
                      {LISTS_ENV: f"/outer/mine.toml{os.pathsep}{DNSBL_LISTS}"})
    assert env[LISTS_ENV].split(os.pathsep) == [str(DNSBL_LISTS), "/outer/mine.toml"]   # kept, each once
    # Without the lab's variable the fixtures do not exist: they are not shipped.
    r = _cli("dnsbl-clean.test", "--only", "dnsbl", "--dnsbl", "lab-everything", env={LISTS_ENV: ""})
    assert r.returncode == 2 and "unknown DNSBL 'lab-everything'" in r.stderr, r.stderr
    assert "lab-everything" not in r.stderr.split("give a list id")[1]


MANY_LISTS = """\
import json, subprocess, sys
ids = sys.argv[2:]
args = [a for i in ids for a in ("--dnsbl", i)]
r = subprocess.run([sys.executable, "-m", "deliverck", "dnsbl-clean.test", "--only", "dnsbl", "--json",
                    "--dns-timeout", "2", *args], capture_output=True, text=True, timeout=120)
open(sys.argv[1], "w").write(json.dumps({"status": r.returncode, "stdout": r.stdout, "stderr": r.stderr}))
"""


def test_twenty_lists_from_a_users_lists_file_in_one_round(lab_manifest, tmp_path, monkeypatch):
    """A user's lists file and zones reach a lab (nested here) like the bench's: the lab keeps the
    caller's $DELIVERCK_DNSBL_LISTS and adds its own; 20 lists are queried in one round."""
    import json

    from deliverck.records import dnsbl

    zones, entries = tmp_path / "zones", []
    for i in range(1, 14):
        zone = f"l{i:02d}.many.dnsbl.test"
        _write_zone(zones, f"{zone}.zone", f"""\
            $ORIGIN {zone}.
            $TTL 60
            @          SOA ns.test. hostmaster.test. 1 3600 600 86400 60
            @          NS  ns.test.
            2.0.0.127  A   127.0.0.2
            """)
        entries.append(_EXTRA.format(id=f"many-{i:02d}", zone=zone).replace("schema = 1\n", ""))
    (tmp_path / "many.toml").write_text("schema = 1\n" + "".join(entries))
    monkeypatch.setenv(LISTS_ENV, str(tmp_path / "many.toml"))
    ids = [x.id for x in dnsbl.load().defaults()] + [f"many-{i:02d}" for i in range(1, 14)]
    out = tmp_path / "out.json"
    assert run([sys.executable, "-c", MANY_LISTS, str(out), *ids[:20]], zone_dirs=[zones]) == 0
    res = json.loads(out.read_text())
    assert res["status"] == 0 and res["stderr"] == "", res["stderr"]
    fs = [f for c in json.loads(res["stdout"])["checks"] for f in c["findings"]]
    v4 = next(f for f in fs if f["subject"] == "192.0.2.210")
    ip_lists = len([x for x in dnsbl.load().defaults() if x.kind == "ip"]) + 13
    assert v4["id"] == "dnsbl.clean" and v4["args"]["count"] == min(ip_lists, 19)
