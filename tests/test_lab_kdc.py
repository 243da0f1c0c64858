"""The lab's Kerberos KDCs and dated SMTP greetings: scenario schema (anywhere), and the running
KDCs and peers (marked `lab`: run under `deliverck lab run -- python -m pytest`)."""

from __future__ import annotations

import dataclasses
import datetime
import email.utils
import json
import os
import socket
import struct
import time

import pytest
from minikerberos.protocol import asn1_structs as asn1

from deliverck.lab import LabUnavailable, kdc, manifest, plan, scenarios, smtp_peers

KDC_ERR_C_PRINCIPAL_UNKNOWN = 6
KDC_ERR_PREAUTH_REQUIRED = 25

BASE = """\
name = "x"
description = "d"
records = '''
@    MX 10 mx
mx   A    198.51.100.252
dc   A    198.51.100.253
dc6  AAAA 2001:db8:ffff::88
'''
smtp = ["198.51.100.252"]
{extra}
[expect]
verdict = "pass"
"""


def parse(extra: str) -> scenarios.Scenario:
    return scenarios.parse(BASE.format(extra=extra), "x.toml")


# --- scenario schema -------------------------------------------------------

def test_kdc_schema_defaults():
    s = parse('[kdc."198.51.100.253"]\n[kdc."2001:DB8:FFFF::88"]\nbehaviour = "filtered"\n')
    mit, filtered = s.kdcs
    assert mit == scenarios.KdcSpec("198.51.100.253", "mit", "X.TEST", 0, True, ())
    assert filtered.address == "2001:db8:ffff::88" and filtered.behaviour == "filtered"
    assert filtered.realm == "X.TEST" and filtered.kpasswd is False
    s = parse('[kdc."198.51.100.253"]\nrealm = "AD.EXAMPLE"\nclock_offset = -900\nkpasswd = false\n'
              'principals = ["alice", "host/mx.x.test", "alice"]\n')
    assert s.kdcs == (scenarios.KdcSpec("198.51.100.253", "mit", "AD.EXAMPLE", -900, False,
                                        ("alice", "host/mx.x.test")),)
    assert parse("").kdcs == ()


@pytest.mark.parametrize("extra, words", [
    ('[kdc."198.51.100.253"]\ncolour = "red"', "unknown keys ['colour']"),
    ('[kdc."198.51.100.253"]\nbehaviour = "heimdal"', "behaviour must be one of"),
    ('[kdc."198.51.100.254"]', "not an A/AAAA address of the scenario"),
    ('[kdc."192.0.2.253"]', "not an A/AAAA address of the scenario"),
    ('[kdc."10.0.0.88"]', "outside the documentation ranges"),
    ('[kdc."dc.x.test"]', "not an IP address"),
    ('[kdc."198.51.100.253"]\nclock_offset = 1.5', "clock_offset must be a whole number"),
    ('[kdc."198.51.100.253"]\nclock_offset = "600"', "clock_offset must be a whole number"),
    ('[kdc."198.51.100.253"]\nclock_offset = true', "clock_offset must be a whole number"),
    ('[kdc."198.51.100.253"]\nkpasswd = "yes"', "kpasswd must be true or false"),
    ('[kdc."198.51.100.253"]\nrealm = "BAD REALM"', "realm must be a realm name"),
    ('[kdc."198.51.100.253"]\nprincipals = ["alice@X.TEST"]', "principals must be a list"),
    ('[kdc."198.51.100.253"]\nprincipals = "alice"', "principals must be a list"),
    ('[kdc."198.51.100.253"]\nprincipals = ["krbtgt/X.TEST"]', "made by kdb5_util"),
    ('[kdc."198.51.100.253"]\nbehaviour = "filtered"\nclock_offset = 600', "a filtered KDC cannot set"),
    ('[kdc."198.51.100.253"]\nbehaviour = "refused"\nprincipals = ["alice"]', "a refused KDC cannot set"),
    ('[kdc."2001:db8:ffff::88"]\n[kdc."2001:DB8:FFFF::88"]', "more than once"),
    ('kdc = 5', "[kdc] must be a table"),
    ('[kdc]\n"198.51.100.253" = 1', "must be a table"),
])
def test_kdc_schema_errors(extra, words):
    with pytest.raises(LabUnavailable) as e:
        parse(extra)
    assert words in str(e.value) and "\n" not in str(e.value)


def test_kdc_addresses_take_part_in_clash_rules():
    a = parse('[kdc."198.51.100.253"]')
    b = dataclasses.replace(a, name="y")
    assert any("198.51.100.253 is also used by x" in p for p in scenarios.problems((a, b)))


@pytest.mark.parametrize("peer, words", [
    ('greeting = "220 {hostname} ready"', "no placeholder but {date}"),
    ('greeting = "220 ready at {date} {"', "no placeholder but {date}"),
    ('greeting = "220 ready at {date}"\nclock_offset = "soon"', "clock_offset must be a number"),
    ('clock_offset = 60', "needs a greeting with {date}"),
    ('behaviour = "postfix"\nclock_offset = 60', "postfix peer cannot set ['clock_offset']"),
    ('behaviour = "postfix"\ngreeting = "220 mx {date}"', "postfix peer cannot set ['greeting']"),
])
def test_dated_greeting_schema_errors(peer, words):
    with pytest.raises(LabUnavailable) as e:
        parse(f"[peer]\n{peer}\n")
    assert words in str(e.value) and "\n" not in str(e.value)


def test_dated_greeting_schema():
    s = parse('[peer]\ngreeting = "220 mx.x.test Microsoft ESMTP MAIL Service ready at {date}"\n'
              'clock_offset = -30.5\n')
    spec = s.peer("198.51.100.252")
    assert spec.clock_offset == -30.5 and spec.greeting.endswith("ready at {date}")


def test_greeting_line_fills_the_date():
    peer = smtp_peers.Peer(address="198.51.100.252", hostname="mx", domain="x.test",
                           greeting="220 mx ready at {date}", clock_offset=3600)
    # 1970-01-01 01:00 UTC is the evening before in -08:00
    assert smtp_peers.greeting_line(peer, now=0.0) == "220 mx ready at Wed, 31 Dec 1969 17:00:00 -0800"
    now = time.time()
    sent = email.utils.parsedate_to_datetime(smtp_peers.greeting_line(peer, now).split(" at ", 1)[1])
    assert abs(sent.timestamp() - (now + 3600)) < 1
    plain = smtp_peers.Peer(address="198.51.100.252", hostname="mx", domain="x.test", greeting="220 mx {x}")
    assert smtp_peers.greeting_line(plain) == "220 mx {x}"


@pytest.mark.slow
def test_kerberos_scenarios(tmp_path):
    """The scenario files say what their names promise, and the lab dir holds each KDC's own config."""
    by_name = {s.name: s for s in scenarios.load_all()}
    kinds = {name: [(k.behaviour, k.clock_offset) for k in by_name[name].kdcs]
             for name in by_name if name.startswith("kerberos-")}
    assert kinds == {
        "kerberos-good": [("mit", 0), ("mit", 0)],
        "kerberos-skew": [("mit", 600), ("mit", 0)],
        "kerberos-filtered": [("mit", 0), ("filtered", 0)],
        "kerberos-refused": [("refused", 0)],
        "kerberos-mail-skew": [("mit", 0)],
        "kerberos-none": [],
        "kerberos-one-filtered": [("mit", 0), ("mit", 0), ("filtered", 0)],
        "kerberos-silent": [("filtered", 0)],
    }
    assert by_name["kerberos-good"].kdcs[0].realm == "KERBEROS-GOOD.TEST"
    mail_skew = by_name["kerberos-mail-skew"]
    assert mail_skew.peer(mail_skew.smtp[0]).clock_offset == 900
    for name, s in by_name.items():
        if name.startswith("kerberos-"):
            assert not {k.address for k in s.kdcs} & set(s.smtp), name    # KDCs get no SMTP peer
    chosen = [by_name[n] for n in ("kerberos-skew", "kerberos-refused", "kerberos-filtered")]
    m = plan.prepare(tmp_path, scenarios=chosen, dnssec=False, postfix_unavailable="not needed here")
    assert manifest.from_json((tmp_path / "manifest.json").read_text()) == m
    assert m.scenario("kerberos-skew").kdcs[0] == manifest.KdcSpec(
        "192.0.2.185", "mit", "KERBEROS-SKEW.TEST", 600, True, ("alice",))
    config = json.loads((tmp_path / "services.json").read_text())
    assert {k["address"]: k["behaviour"] for k in config["kdc"]} == {
        "192.0.2.185": "mit", "192.0.2.186": "mit", "192.0.2.188": "mit", "192.0.2.189": "filtered"}
    d = kdc.instance_dir(tmp_path, "192.0.2.185")
    conf = (d / "kdc.conf").read_text()
    for line in ("kdc_listen = 192.0.2.185:88", "kdc_tcp_listen = 192.0.2.185:88",
                 "kpasswd_listen = 192.0.2.185:464", "kadmind_listen = 192.0.2.185:749"):
        assert line in conf
    assert "/etc/" not in conf and "/etc/" not in (d / "krb5.conf").read_text()
    assert str(d / "principal") in conf and str(d / "kdc.log") in conf
    env = kdc.env(d, 600)
    assert env["KRB5_CONFIG"] == str(d / "krb5.conf") and env["KRB5_KDC_PROFILE"] == str(d / "kdc.conf")
    assert env["FAKETIME"] == "+600" and "libfaketime" in env["LD_PRELOAD"]
    assert "FAKETIME" not in kdc.env(d, 0)
    assert not kdc.instance_dir(tmp_path, "192.0.2.189").exists()      # filtered: no krb5kdc
    assert "[2001:db8::88]:88" in kdc.kdc_conf(d, "R.TEST", "2001:db8::88")


# --- the running lab -------------------------------------------------------

def as_req(client: str, realm: str) -> bytes:
    now = datetime.datetime.now(datetime.UTC)
    body = asn1.KDC_REQ_BODY({
        "kdc-options": {"forwardable", "renewable"},
        "cname": asn1.PrincipalName({"name-type": 1, "name-string": client.split("/")}),
        "realm": realm,
        "sname": asn1.PrincipalName({"name-type": 2, "name-string": ["krbtgt", realm]}),
        "till": (now + datetime.timedelta(hours=10)).replace(microsecond=0),
        "nonce": int.from_bytes(os.urandom(4), "big") & 0x7FFFFFFF,
        "etype": [18, 17],
    })
    return asn1.AS_REQ({"pvno": 5, "msg-type": 10, "req-body": body}).dump()


def ask(address: str, request: bytes, tcp: bool, port: int = kdc.KDC_PORT) -> dict:
    """Send one KDC request over UDP or TCP (4-byte length prefix); return the KRB-ERROR, decoded."""
    family = socket.AF_INET6 if ":" in address else socket.AF_INET
    if tcp:
        with socket.create_connection((address, port), timeout=3) as s:
            s.sendall(struct.pack(">I", len(request)) + request)
            reply = b""
            while len(reply) < 4 or len(reply) < 4 + struct.unpack(">I", reply[:4])[0]:
                chunk = s.recv(65536)
                assert chunk, "the KDC closed the connection"
                reply += chunk
            reply = reply[4:]
    else:
        with socket.socket(family, socket.SOCK_DGRAM) as s:
            s.settimeout(3)
            s.connect((address, port))
            s.send(request)
            reply = s.recv(65536)
    return asn1.KRB_ERROR.load(reply).native


def kdc_time(error: dict) -> float:
    return error["stime"].timestamp() + error["susec"] / 1e6


def kdcs(lab, scenario: str, behaviour: str) -> list[manifest.KdcSpec]:
    found = [k for k in lab.scenario(scenario).kdcs if k.behaviour == behaviour]
    assert found, (scenario, behaviour)
    return found


@pytest.mark.parametrize("tcp", [False, True], ids=["udp", "tcp"])
def test_mit_kdc_answers_as_req(lab, tcp):
    for k in kdcs(lab, "kerberos-good", "mit"):
        assert k.principals == ("alice",)
        unknown = ask(k.address, as_req(f"nobody-{os.urandom(4).hex()}", k.realm), tcp)
        assert unknown["msg-type"] == 30 and unknown["error-code"] == KDC_ERR_C_PRINCIPAL_UNKNOWN
        assert unknown["realm"] == k.realm
        known = ask(k.address, as_req("alice", k.realm), tcp)
        assert known["error-code"] == KDC_ERR_PREAUTH_REQUIRED, known
        assert known["sname"]["name-string"] == ["krbtgt", k.realm]
        other = ask(k.address, as_req("alice", "OTHER.TEST"), tcp)     # MIT: no WRONG_REALM, the
        assert other["error-code"] == KDC_ERR_C_PRINCIPAL_UNKNOWN      # client is looked up in its
        assert other["realm"] == "OTHER.TEST"                          # only database


def test_every_mit_kdc_of_the_lab_is_up(lab):
    every = [k for s in lab.scenarios for k in s.kdcs if k.behaviour == "mit"]
    assert len(every) >= 8
    for k in every:
        error = ask(k.address, as_req("alice", k.realm), tcp=True)
        assert error["error-code"] == (KDC_ERR_PREAUTH_REQUIRED if "alice" in k.principals
                                       else KDC_ERR_C_PRINCIPAL_UNKNOWN), k


def test_kdc_clock_offset(lab):
    skewed, right = kdcs(lab, "kerberos-skew", "mit")
    assert skewed.clock_offset == 600 and right.clock_offset == 0
    for k in (skewed, right):
        for tcp in (False, True):
            before = time.time()
            error = ask(k.address, as_req("alice", k.realm), tcp)
            after = time.time()
            assert before + k.clock_offset - 1 <= kdc_time(error) <= after + k.clock_offset + 1, (k, error)


def test_kpasswd_is_served(lab):
    for k in kdcs(lab, "kerberos-good", "mit"):
        assert k.kpasswd
        socket.create_connection((k.address, kdc.KPASSWD_PORT), timeout=1).close()
        with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:   # bound: no ICMP refusal
            s.settimeout(0.3)
            s.connect((k.address, kdc.KPASSWD_PORT))
            s.send(b"\x00\x06\x00\x01\x00\x00")
            with pytest.raises(TimeoutError):       # kadmind drops a malformed request silently
                s.recv(4096)


def test_filtered_kdc_drops_everything(lab):
    for k in (kdcs(lab, "kerberos-filtered", "filtered") + kdcs(lab, "kerberos-one-filtered", "filtered")
              + kdcs(lab, "kerberos-silent", "filtered")):
        for port in (kdc.KDC_PORT, kdc.KPASSWD_PORT):
            started = time.monotonic()
            with pytest.raises(TimeoutError):
                socket.create_connection((k.address, port), timeout=1).close()
            assert time.monotonic() - started >= 0.9
            with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
                s.settimeout(1)
                s.connect((k.address, port))
                s.send(as_req("alice", k.realm))
                with pytest.raises(TimeoutError):          # neither an answer nor ICMP unreachable
                    s.recv(4096)
                s.send(as_req("alice", k.realm))           # an ICMP error would surface on this send
                with pytest.raises(TimeoutError):
                    s.recv(4096)


def test_refused_kdc_refuses(lab):
    (k,) = kdcs(lab, "kerberos-refused", "refused")
    assert k.address in lab.lo_addresses
    for port in (kdc.KDC_PORT, kdc.KPASSWD_PORT):
        with pytest.raises(ConnectionRefusedError):
            socket.create_connection((k.address, port), timeout=1).close()
        with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
            s.settimeout(1)
            s.connect((k.address, port))
            s.send(as_req("alice", k.realm))
            with pytest.raises(ConnectionRefusedError):
                s.recv(4096)


def _greeting(address: str) -> tuple[str, float, float]:
    before = time.time()
    with socket.create_connection((address, 25), timeout=5) as s:
        s.settimeout(5)
        line = s.recv(1024).decode()
    return line.rstrip("\r\n"), before, time.time()


@pytest.mark.parametrize("scenario, offset", [("kerberos-mail-skew", 900), ("kerberos-good", 0)])
def test_dated_greeting(lab, scenario, offset):
    (peer,) = lab.scenario(scenario).smtp
    assert peer.clock_offset == offset and peer.greeting.endswith("ready at {date}")
    line, before, after = _greeting(peer.address)
    prefix = peer.greeting[: -len("{date}")]
    assert line.startswith(prefix), line
    stamp = line[len(prefix):]
    assert stamp.endswith(" -0800"), stamp
    sent = email.utils.parsedate_to_datetime(stamp).timestamp()
    assert before + offset - 2 <= sent <= after + offset + 2, (line, before)


def test_kdc_start_kpasswd_off_negative_clock_and_failure(lab, tmp_path):
    """start_kdcs itself, on IPv6 loopback: kpasswd off (464 refused), a clock behind, its own
    principals; and a krb5kdc that cannot bind is reported with its log."""
    from deliverck.lab import inside

    address, realm = "::1", "LOOPBACK.TEST"
    d = kdc.write_instance(tmp_path, address, realm)
    instance = {"address": address, "behaviour": "mit", "realm": realm, "clock_offset": -300,
                "kpasswd": False, "principals": ["bob", "host/mx.loopback.test"], "dir": str(d)}
    started = inside.start_kdcs([instance])
    try:
        assert [what for what, *_ in started] == [f"krb5kdc for {realm} on {address} (clock -300 s)"]
        what, proc, log, _a, port = started[0]
        inside._wait(what, proc, log, lambda: inside._accepts(address, port), time.monotonic() + 5)
        before = time.time()
        error = ask(address, as_req("host/mx.loopback.test", realm), tcp=False)
        assert error["error-code"] == KDC_ERR_PREAUTH_REQUIRED
        assert before - 300 - 1 <= kdc_time(error) <= time.time() - 300 + 1
        assert ask(address, as_req("alice", realm), tcp=True)["error-code"] == KDC_ERR_C_PRINCIPAL_UNKNOWN
        with pytest.raises(ConnectionRefusedError):
            socket.create_connection((address, kdc.KPASSWD_PORT), timeout=1).close()
    finally:
        inside.stop([p for _w, p, *_ in started])
    bad = "2001:db8:ffff::88"                    # not on lo: krb5kdc cannot bind it
    d = kdc.write_instance(tmp_path, bad, realm)
    started = inside.start_kdcs([{**instance, "address": bad, "dir": str(d), "clock_offset": 0}])
    try:
        what, proc, log, _a, port = started[0]
        with pytest.raises(inside.StartFailed) as e:
            inside._wait(what, proc, log, lambda: inside._accepts(bad, port), time.monotonic() + 5)
        assert str(log) in str(e.value) and bad in str(e.value)
    finally:
        inside.stop([p for _w, p, *_ in started])
