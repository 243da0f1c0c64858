"""Kerberos probe: message encoding, reply parsing, the transports against
small real servers on loopback, and the clock judgement.  The end-to-end
runs against real MIT KDCs are lab scenarios (kerberos-*.toml) and the
lab tests at the end of this file."""

from __future__ import annotations

import asyncio
import datetime as dt
import json
import socket
import struct
import time

import pytest
from minikerberos.protocol import asn1_structs as asn1

from deliverck.checks import kerberos as check  # noqa: F401
from deliverck.net import kerberos as krb
from deliverck.net.smtp import greeting_clock
from tests.conftest import deliverck, validate_report


def krb_error(code: int, stime: dt.datetime, susec: int = 0, realm: str = "EXAMPLE.TEST") -> bytes:
    return asn1.KRB_ERROR({
        "pvno": 5, "msg-type": 30, "stime": stime, "susec": susec, "error-code": code, "realm": realm,
        "sname": asn1.PrincipalName({"name-type": 2, "name-string": ["krbtgt", realm]}),
    }).dump()


# ---------------------------------------------------------------- messages

def test_as_req_round_trips_through_the_asn1_definitions():
    data = krb.build_as_req("EXAMPLE.TEST", "deliverck-probe-1", nonce=12345)
    msg = asn1.AS_REQ.load(data).native
    body = msg["req-body"]
    assert (msg["pvno"], msg["msg-type"], msg.get("padata")) == (5, 10, None)   # no pre-authentication
    assert body["realm"] == "EXAMPLE.TEST"
    assert body["cname"]["name-string"] == ["deliverck-probe-1"]
    assert body["sname"]["name-string"] == ["krbtgt", "EXAMPLE.TEST"]
    assert body["nonce"] == 12345
    assert list(body["etype"]) == list(krb.ETYPES)


def test_service_style_principal_is_split_on_slash():
    body = asn1.AS_REQ.load(krb.build_as_req("R.TEST", "host/mx1.r.test")).native["req-body"]
    assert body["cname"] == {"name-type": krb.NT_SRV_INST, "name-string": ["host", "mx1.r.test"]}


def test_krb_error_gives_code_realm_and_clock_with_microseconds():
    when = dt.datetime(2026, 11, 23, 22, 0, 5, tzinfo=dt.UTC)
    reply = krb.parse_reply(krb_error(25, when, susec=250000, realm="AD.EXAMPLE.TEST"))
    assert (reply.kind, reply.error_code, reply.error, reply.realm) == (
        "KRB-ERROR", 25, "KDC_ERR_PREAUTH_REQUIRED", "AD.EXAMPLE.TEST")
    assert reply.stime == pytest.approx(when.timestamp() + 0.25)


@pytest.mark.parametrize("data", [b"", b"\x7e", b"\x7e\x03\x02\x01\x05", b"HTTP/1.1 400 Bad Request\r\n\r\n",
                                  b"\x30\x03\x02\x01\x05", b"\x6b\x02\x30\x00"])
def test_what_is_not_a_kerberos_reply_is_rejected(data):
    with pytest.raises(ValueError):
        krb.parse_reply(data)


def test_unknown_error_codes_are_named_by_number():
    assert krb.error_name(6) == "KDC_ERR_C_PRINCIPAL_UNKNOWN"
    assert krb.error_name(99) == "KRB-ERROR 99"


@pytest.mark.parametrize("text,expected", [
    ("mx.example Microsoft ESMTP MAIL Service ready at Mon, 23 Nov 2026 14:22:11 -0800",
     dt.datetime(2026, 11, 23, 22, 22, 11, tzinfo=dt.UTC)),
    ("mx ESMTP Sendmail 8.17.1/8.17.1; Mon, 23 Nov 2026 22:22:11 GMT",
     dt.datetime(2026, 11, 23, 22, 22, 11, tzinfo=dt.UTC)),
    ("mx ESMTP Exim 4.96 23 Nov 2026 23:22:11 +0100", dt.datetime(2026, 11, 23, 22, 22, 11, tzinfo=dt.UTC)),
    ("mx ESMTP Postfix", None),
    ("mx ready at Mon, 23 Nov 2026 22:22:11 -0000", None),      # RFC 5322 3.3: zone unknown
    ("mx ready at Mon, 31 Feb 2026 22:22:11 +0000", None),
    ("mx ready at 2026-11-23T22:22:11Z", None),
])
def test_greeting_clock(text, expected):
    got = greeting_clock(text)
    assert got == (expected.timestamp() if expected else None)


# ---------------------------------------------------------------- transports (loopback)

class TcpKdc:
    """A TCP server that answers each framed request with `reply(request)` bytes, framed or raw."""

    def __init__(self, reply, frame: bool = True):
        self.reply, self.frame, self.requests = reply, frame, []

    async def __aenter__(self):
        async def handle(reader, writer):
            try:
                (n,) = struct.unpack(">I", await reader.readexactly(4))
                self.requests.append(await reader.readexactly(n))
                out = self.reply(self.requests[-1])
                if out is not None:
                    writer.write(struct.pack(">I", len(out)) + out if self.frame else out)
                    await writer.drain()
            except (ConnectionError, asyncio.IncompleteReadError):
                pass
            finally:
                writer.close()

        self.server = await asyncio.start_server(handle, "127.0.0.1", 0)
        self.port = self.server.sockets[0].getsockname()[1]
        return self

    async def __aexit__(self, *exc):
        self.server.close()
        await self.server.wait_closed()


async def test_tcp_probe_reads_a_framed_krb_error_and_the_skew():
    offset = 600.0
    now = lambda: dt.datetime.fromtimestamp(time.time() + offset, dt.UTC)  # noqa: E731
    async with TcpKdc(lambda req: krb_error(6, now().replace(microsecond=0), now().microsecond)) as kdc:
        p = await krb.probe_tcp("127.0.0.1", kdc.port, krb.build_as_req("EXAMPLE.TEST", "x"), 2)
    assert p.outcome is krb.PortOutcome.ANSWERED and p.reply.error_code == 6
    assert p.skew == pytest.approx(offset, abs=0.1)
    assert asn1.AS_REQ.load(kdc.requests[0]).native["req-body"]["realm"] == "EXAMPLE.TEST"


async def test_tcp_probe_refuses_an_oversized_or_unframed_reply():
    async with TcpKdc(lambda req: b"HTTP/1.0 400 Bad Request\r\n\r\n", frame=False) as kdc:
        p = await krb.probe_tcp("127.0.0.1", kdc.port, b"x", 2)
    assert p.outcome is krb.PortOutcome.NOT_KERBEROS and "not a Kerberos TCP frame" in p.detail


async def test_tcp_probe_closed_without_reply():
    async with TcpKdc(lambda req: None) as kdc:
        p = await krb.probe_tcp("127.0.0.1", kdc.port, b"x", 2)
    assert p.outcome is krb.PortOutcome.CLOSED


async def test_tcp_probe_refused_and_connect_only():
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    port = s.getsockname()[1]
    s.close()                      # nothing listens there now
    p = await krb.probe_tcp("127.0.0.1", port, b"x", 2)
    assert p.outcome is krb.PortOutcome.REFUSED and p.detail == "connection refused"
    async with TcpKdc(lambda req: None) as kdc:
        p = await krb.probe_tcp("127.0.0.1", kdc.port, None, 2)
    assert p.outcome is krb.PortOutcome.OPEN


async def test_tcp_probe_silent_server_costs_one_timeout():
    async def handle(reader, writer):
        await reader.read(65536)        # the request; then nothing, until the client gives up
        await reader.read(65536)
        writer.close()

    server = await asyncio.start_server(handle, "127.0.0.1", 0)
    try:
        p = await krb.probe_tcp("127.0.0.1", server.sockets[0].getsockname()[1], b"x", 0.3)
    finally:
        server.close()
    assert p.outcome is krb.PortOutcome.TIMEOUT and "reply" in p.detail


async def test_udp_probe_resends_within_one_timeout_then_gives_up():
    got: list[bytes] = []

    class Silent(asyncio.DatagramProtocol):
        def datagram_received(self, data, addr):
            got.append(data)

    loop = asyncio.get_running_loop()
    transport, _ = await loop.create_datagram_endpoint(Silent, local_addr=("127.0.0.1", 0))
    port = transport.get_extra_info("sockname")[1]
    try:
        p = await krb.probe_udp("127.0.0.1", port, b"request", 0.6, tries=3)
    finally:
        transport.close()
    assert p.outcome is krb.PortOutcome.TIMEOUT
    assert got == [b"request"] * 3


async def test_udp_probe_answer_and_refusal():
    class Kdc(asyncio.DatagramProtocol):
        def connection_made(self, transport):
            self.transport = transport

        def datagram_received(self, data, addr):
            self.transport.sendto(krb_error(68, dt.datetime.now(dt.UTC).replace(microsecond=0),
                                            realm="OTHER.TEST"), addr)

    loop = asyncio.get_running_loop()
    transport, _ = await loop.create_datagram_endpoint(Kdc, local_addr=("127.0.0.1", 0))
    port = transport.get_extra_info("sockname")[1]
    try:
        p = await krb.probe_udp("127.0.0.1", port, b"request", 2)
    finally:
        transport.close()
    assert p.outcome is krb.PortOutcome.ANSWERED and p.reply.error_code == krb.WRONG_REALM
    assert abs(p.skew) < 1.1
    p = await krb.probe_udp("127.0.0.1", port, b"request", 2)     # closed now: ICMP port unreachable
    assert p.outcome is krb.PortOutcome.REFUSED


# ---------------------------------------------------------------- clock judgement

def kdc(ip: str, skew: float | None, rtt_ms: int = 2) -> krb.KdcProbe:
    reply = krb.KdcReply("KRB-ERROR", 6, "R.TEST", 0.0 if skew is not None else None)
    answered = krb.PortProbe(ip, 88, "udp", krb.PortOutcome.ANSWERED, rtt_ms=rtt_ms, reply=reply, skew=skew)
    tcp = krb.PortProbe(ip, 88, "tcp", krb.PortOutcome.TIMEOUT)
    return krb.KdcProbe(ip, f"dc-{ip}", 88, answered, tcp, None)


def ids(findings) -> list[str]:
    return sorted(f.id for f in findings)


def test_one_skewed_kdc_among_good_ones():
    out = check.judge_clocks("R.TEST", [kdc("192.0.2.1", 600.2), kdc("192.0.2.2", 0.1)], [], 300)
    # One cause (dc .1 is fast), one finding: the KDCs' disagreement is its evidence.
    assert ids(out) == ["kerberos.clock_ok", "kerberos.kdc_clock_skew"]
    skewed = next(f for f in out if f.id == "kerberos.kdc_clock_skew")
    assert skewed.subject == "192.0.2.1" and skewed.args["seconds"] == 600.2
    assert any("192.0.2.2" in e and "+0.1 s" in e for e in skewed.evidence)


def test_one_fast_dc_is_not_the_mail_servers_fault():
    """Issue 13: a DC 600 s fast, the other DC and the Exchange greeting in step with this machine."""
    out = check.judge_clocks("R.TEST", [kdc("192.0.2.1", 600.0), kdc("192.0.2.2", 0.2)],
                             [("198.51.100.7", "mx", 0.4, 0.6)], 300)
    serious = [f for f in out if f.severity.to_text() in ("error", "critical")]
    assert [(f.id, f.subject) for f in serious] == [("kerberos.kdc_clock_skew", "192.0.2.1")]
    mail = next(f for f in out if f.subject == "198.51.100.7")
    assert mail.id == "kerberos.clock_ok" and mail.args["role"] == "mail server mx"
    assert any("198.51.100.7" in e for e in serious[0].evidence)


@pytest.mark.parametrize("kdcs, mail, expected", [
    # the mail server's own clock is off: it is blamed, against a KDC nobody blames
    ([("192.0.2.1", 0.0)], [900.0], ["kerberos.clock_ok", "kerberos.mail_clock_skew"]),
    # neither is 300 s off this machine, but they are 350 s apart: the pair fails, one finding
    ([("192.0.2.1", -100.0)], [250.0], ["kerberos.clock_ok", "kerberos.mail_clock_skew"]),
    # two causes: the KDC is off one way, the mail server the other
    ([("192.0.2.1", -500.0), ("192.0.2.2", 0.0)], [900.0],
     ["kerberos.clock_ok", "kerberos.kdc_clock_skew", "kerberos.mail_clock_skew"]),
    # two KDCs within the limit of this machine but not of each other: only they disagree
    ([("192.0.2.1", 200.0), ("192.0.2.2", -200.0)], [0.0],
     ["kerberos.clock_ok", "kerberos.clock_ok", "kerberos.clock_ok", "kerberos.kdcs_disagree"]),
    # two KDCs fast together, the mail server with this machine: the KDCs are blamed, not the server
    ([("192.0.2.1", 600.0), ("192.0.2.2", 601.0)], [0.0],
     ["kerberos.clock_ok", "kerberos.kdc_clock_skew", "kerberos.kdc_clock_skew"]),
])
def test_each_skew_is_blamed_once_on_the_clock_that_is_off(kdcs, mail, expected):
    out = check.judge_clocks("R.TEST", [kdc(ip, skew) for ip, skew in kdcs],
                             [(f"198.51.100.{i + 1}", "mx", m, 0.5) for i, m in enumerate(mail)], 300)
    assert ids(out) == expected


def test_mail_server_against_kdc_and_against_us():
    mail = [("198.51.100.7", "mx", 900.0, 0.5)]
    out = check.judge_clocks("R.TEST", [kdc("192.0.2.1", 0.0)], mail, 300)
    assert ids(out) == ["kerberos.clock_ok", "kerberos.mail_clock_skew"]
    out = check.judge_clocks("R.TEST", [], mail, 300)          # no KDC clock: judged against ours only
    assert ids(out) == ["kerberos.mail_clock_off"]


def test_mail_server_in_step_with_a_skewed_kdc_is_not_blamed():
    out = check.judge_clocks("R.TEST", [kdc("192.0.2.1", 400.0), kdc("192.0.2.2", 10.0)],
                             [("198.51.100.7", "mx", 5.0, 0.5)], 300)
    assert "kerberos.kdc_clock_skew" in ids(out)
    assert "kerberos.mail_clock_skew" not in ids(out)  # 395 s off dc .1, which is the one to blame


def test_when_every_remote_clock_agrees_this_machine_is_suspect():
    out = check.judge_clocks("R.TEST", [kdc("192.0.2.1", -3600.0), kdc("192.0.2.2", -3599.0)],
                             [("198.51.100.7", "mx", -3600.5, 0.5)], 300)
    assert ids(out) == ["kerberos.local_clock_suspect"]


def test_limit_is_judged_with_the_measurement_uncertainty():
    # 300.4 s with a 2 s round trip (+/- 1 s) is not proof of more than 300 s.
    assert ids(check.judge_clocks("R.TEST", [kdc("192.0.2.1", 300.4, rtt_ms=2000)], [], 300)) == ["kerberos.clock_ok"]
    assert ids(check.judge_clocks("R.TEST", [kdc("192.0.2.1", 302.0, rtt_ms=2)], [], 300)) == ["kerberos.kdc_clock_skew"]
    assert ids(check.judge_clocks("R.TEST", [kdc("192.0.2.1", 100.0)], [], 60)) == ["kerberos.kdc_clock_skew"]


# ---------------------------------------------------------------- end to end, in the lab (real MIT KDCs)

def audit(*args: str) -> tuple[int, dict]:
    r = deliverck(*args, "--only", "kerberos", "--json", "--kdc-timeout", "2", "--smtp-timeout", "3")
    assert r.returncode in (0, 1, 3), r.stderr
    doc = json.loads(r.stdout)
    validate_report(doc)
    return r.returncode, doc


def findings(doc: dict, fid: str) -> list[dict]:
    return [f for c in doc["checks"] for f in c["findings"] if f["id"] == fid]


def test_skew_against_the_faketime_kdc_is_the_configured_offset(lab):
    s = lab.scenario("kerberos-skew")
    offsets = {k.address: k.clock_offset for k in s.kdcs}
    skewed = next(a for a, o in offsets.items() if o)
    code, doc = audit(s.domain)
    assert code == 1
    measured = {f["subject"]: f["args"]["seconds"] for f in findings(doc, "kerberos.kdc_clock_skew")
                + findings(doc, "kerberos.clock_ok") if f["subject"] in offsets}
    assert set(measured) == set(offsets)
    for address, offset in offsets.items():
        assert abs(measured[address] - offset) < 1.0, (address, measured[address], offset)
    assert [f["subject"] for f in findings(doc, "kerberos.kdc_clock_skew")] == [skewed]
    # One cause, one finding: the Exchange server agrees with this machine and the other DC.
    check_doc = next(c for c in doc["checks"] if c["id"] == "kerberos")
    serious = [(f["id"], f["subject"]) for f in check_doc["findings"] if f["severity"] in ("error", "critical")]
    assert serious == [("kerberos.kdc_clock_skew", skewed)]
    (mail,) = [f for f in findings(doc, "kerberos.clock_ok") if f["subject"] == s.smtp[0].address]
    assert abs(mail["args"]["seconds"]) < 2
    keys = {p["key"] for p in doc["predicted_ndrs"]}
    assert {"exchange.kerberos-auth-failure-queued", "exchange.kerberos-auth-failure-reply"} <= keys
    queued = next(p for p in doc["predicted_ndrs"] if p["key"] == "exchange.kerberos-auth-failure-queued")
    assert (queued["code"], queued["status"], queued["direction"]) == (451, "4.4.0", "internal")
    assert '"454 4.7.0 Temporary authentication failure."' in queued["reply"]


def test_mail_server_clock_from_its_greeting(lab):
    s = lab.scenario("kerberos-mail-skew")
    peer = s.smtp[0]
    code, doc = audit(s.domain)
    assert code == 1
    (f,) = findings(doc, "kerberos.mail_clock_skew")
    assert f["subject"] == peer.address
    assert abs(f["args"]["seconds"] - 900) <= 2
    # the greeting exactly as the server sent it, the clock it carries, and the KDC it disagrees with
    prefix = peer.greeting.removesuffix("{date}")
    assert f["args"]["greeting"].startswith(prefix) and f["args"]["greeting"].endswith(" -0800")
    assert f["evidence"][0] == "greeting: " + f["args"]["greeting"]


def test_existing_principal_gets_preauth_required_through_an_explicit_kdc(lab):
    s = lab.scenario("kerberos-good")
    k = next(k for k in s.kdcs if k.principals)
    code, doc = audit(s.domain, "--kdc", k.address, "--principal", k.principals[0], "--realm", k.realm)
    assert code == 0
    (alive,) = findings(doc, "kerberos.alive")
    assert alive["args"]["error"] == "KDC_ERR_PREAUTH_REQUIRED"
    assert alive["args"]["transports"] == "UDP 88 and TCP 88"
    assert findings(doc, "kerberos.kdcs")[0]["args"]["source"] == "--kdc"


def test_asked_for_kerberos_where_there_is_none(lab):
    s = lab.scenario("kerberos-none")
    code, doc = audit(s.domain)
    check = next(c for c in doc["checks"] if c["id"] == "kerberos")
    assert (code, check["status"]) == (0, "skipped") and "--kerberos" in check["reason"]
    code, doc = audit(s.domain, "--kerberos")
    assert code == 1
    (f,) = findings(doc, "kerberos.no_kdc")
    assert "_kerberos._tcp." + s.domain in f["summary"]


def test_filtered_kdc_is_named_port_by_port(lab):
    s = lab.scenario("kerberos-filtered")
    filtered = next(k.address for k in s.kdcs if k.behaviour == "filtered")
    code, doc = audit(s.domain)
    assert code == 0
    ports = sorted(f["args"]["port"] for f in findings(doc, "kerberos.port_filtered") if f["subject"] == filtered)
    assert ports == ["TCP 88", "UDP 88"]
    assert [f["subject"] for f in findings(doc, "kerberos.kpasswd_unreachable")] == [filtered]


def test_a_kdc_silent_from_here_is_not_blamed(lab):
    """Every probe of the only KDC times out: a filtering network here and a dead DC look the
    same, so it is "could not check" (exit 3), never a critical finding against the domain."""
    s = lab.scenario("kerberos-silent")
    code, doc = audit(s.domain)
    assert code == 3 and doc["verdict"] == "incomplete"
    check_doc = next(c for c in doc["checks"] if c["id"] == "kerberos")
    assert check_doc["status"] == "error"
    (f,) = findings(doc, "kerberos.port88_blocked")
    assert f["inconclusive"] and f["owner"] == "network"
    assert any("UDP 88: timeout" in e for e in f["evidence"]) and any("TCP 88: timeout" in e for e in f["evidence"])
    blamed = [x["id"] for x in check_doc["findings"]
              if x["severity"] in ("error", "critical") and not x["inconclusive"]]
    assert blamed == []
    assert not findings(doc, "kerberos.port_filtered") and not findings(doc, "kerberos.kpasswd_unreachable")
    assert not [p for p in doc["predicted_ndrs"] if "kerberos.port88_blocked" in p["caused_by"]]


def test_no_route_to_a_kdc_is_not_a_refusal(lab):
    """An address this machine has no route to (inside the lab namespace: any non-lab address of the
    documentation ranges) is "could not check", not "connection refused"."""
    s = lab.scenario("kerberos-good")
    k = s.kdcs[0]
    code, doc = audit(s.domain, "--kdc", "198.51.100.254", "--realm", k.realm)
    assert findings(doc, "kerberos.no_route") and not findings(doc, "kerberos.port_refused")
    assert not findings(doc, "kerberos.no_kdc_reachable")
    assert code == 3
