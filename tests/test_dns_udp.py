"""The light UDP path of net/udp.py (issue 16, CPU per bulk audit): the question's wire form is
dnspython's, queries share a socket per resolver address, and the anti-spoofing checks, the TCP
fallback on truncation and timeouts are what they were.

The servers here are real DNS servers on loopback (asyncio, answers built by dnspython),
each misbehaving in one way."""

from __future__ import annotations

import asyncio
import struct

import dns.flags
import dns.message
import dns.name
import dns.rrset
import pytest

from deliverck.net import udp
from deliverck.net.dns import DnsClient, Outcome, ResolverAddress

NAMES = [".", "", "a", "A.Example.COM", "A.Example.COM.", "_dmarc.D1.solo.example", "x" * 63 + ".com",
         ".".join(["x" * 63] * 3) + "." + "w" * 61,          # 255 octets on the wire: the longest name
         "a\\.b.com", "a\\065.com", "a\\ b.Com", "bücher.de", "xn--bcher-kva.de", "*.example", "1.0.0.127.zen.x",
         # the errors must be dnspython's
         "a..b", "..", "x" * 64 + ".com", ".".join(["x" * 63] * 3) + "." + "w" * 62]


def _encoded(fn, text):
    try:
        return "ok", fn(text)
    except Exception as e:
        return "error", type(e)


@pytest.mark.parametrize("text", NAMES)
def test_name_wire_is_dnspythons(text):
    assert _encoded(udp.encode_name, text) == _encoded(lambda t: dns.name.from_text(t).to_wire(), text)


def test_name_wire_keeps_case():
    assert udp.encode_name("MiXeD.Test") == b"\x05MiXeD\x04Test\x00"
    assert udp.encode_name(dns.name.from_text("MiXeD.Test")) == b"\x05MiXeD\x04Test\x00"


@pytest.mark.parametrize("text", [n for n in NAMES if _encoded(dns.name.from_text, n)[0] == "ok"])
@pytest.mark.parametrize("rdtype", ["A", "MX", "TXT", "PTR", "TLSA"])
@pytest.mark.parametrize("ednsflags,payload", [(0, 1232), (dns.flags.DO, 4096)])
def test_query_wire_is_dnspythons(text, rdtype, ednsflags, payload):
    q = dns.message.make_query(text, rdtype, flags=dns.flags.RD | dns.flags.AD)
    q.use_edns(0, ednsflags, payload)
    assert udp.query_wire(q) == q.to_wire()


def test_query_wire_of_other_shapes_is_dnspythons():
    plain = dns.message.make_query("a.test", "A", use_edns=False)
    assert udp.query_wire(plain) == plain.to_wire()


# -- real servers on loopback ----------------------------------------------------------------------------------------

ANSWER = "192.0.2.1"


def _response(wire: bytes, address: str = ANSWER) -> dns.message.Message:
    query = dns.message.from_wire(wire)
    r = dns.message.make_response(query)
    r.flags |= dns.flags.RA
    r.answer.append(dns.rrset.from_text(query.question[0].name, 60, "IN", "A", address))
    return r


class Server(asyncio.DatagramProtocol):
    """mode: "good"; "spoof" (first a wrong ID, a wrong question, an answer from another
    port, then the answer); "tc" (truncated over UDP, the answer over TCP); "silent"."""

    def __init__(self, mode: str) -> None:
        self.mode = mode
        self.ports: set[int] = set()
        self.udp_queries = 0
        self.tcp_queries = 0

    def connection_made(self, transport):
        self.transport = transport

    def datagram_received(self, data, addr):
        self.udp_queries += 1
        self.ports.add(addr[1])
        if self.mode == "silent":
            return
        good = _response(data)
        if self.mode == "tc":
            good.answer.clear()
            good.flags |= dns.flags.TC
        if self.mode == "spoof":
            wrong_id = _response(data, "192.0.2.66")
            wrong_id.id = (wrong_id.id + 1) % 65536
            self.transport.sendto(wrong_id.to_wire(), addr)
            other = dns.message.make_query("other.test", "A")
            other.id = good.id
            self.transport.sendto(_response(other.to_wire(), "192.0.2.67").to_wire(), addr)
            self.transport.sendto(b"\x00" * 5, addr)                       # malformed, too short
            self.transport.sendto(struct.pack("!H", good.id) + b"\xff" * 20, addr)   # right ID, garbage
            self.spoofer.sendto(_response(data, "192.0.2.68").to_wire(), addr)   # right answer, wrong source port
            asyncio.get_running_loop().call_later(0.05, self.transport.sendto, good.to_wire(), addr)
            return
        self.transport.sendto(good.to_wire(), addr)

    async def tcp(self, reader, writer):
        self.tcp_queries += 1
        size = struct.unpack("!H", await reader.readexactly(2))[0]
        wire = _response(await reader.readexactly(size)).to_wire()
        writer.write(struct.pack("!H", len(wire)) + wire)
        await writer.drain()
        writer.close()


async def _serve(mode: str):
    loop = asyncio.get_running_loop()
    server = Server(mode)
    transport, _ = await loop.create_datagram_endpoint(lambda: server, local_addr=("127.0.0.1", 0))
    port = transport.get_extra_info("sockname")[1]
    spoof_t, _ = await loop.create_datagram_endpoint(asyncio.DatagramProtocol, local_addr=("127.0.0.1", 0))
    server.spoofer = spoof_t
    tcp = await asyncio.start_server(server.tcp, "127.0.0.1", port)
    return server, port, (transport, spoof_t, tcp)


async def _ask(mode: str, names: list[str], timeout: float = 2.0):
    server, port, closers = await _serve(mode)
    try:
        client = DnsClient([ResolverAddress("127.0.0.1", port)], timeout=timeout)
        answers = await asyncio.gather(*(client.lookup(n, "A") for n in names))
        return server, answers
    finally:
        closers[0].close()
        closers[1].close()
        closers[2].close()


def test_spoofed_and_mismatched_answers_are_ignored():
    server, [ans] = asyncio.run(_ask("spoof", ["victim.test"]))
    assert ans.outcome is Outcome.OK, ans
    assert [r.to_text() for r in ans.records] == [ANSWER]


def test_truncated_answers_are_asked_again_over_tcp():
    server, [ans] = asyncio.run(_ask("tc", ["big.test"]))
    assert ans.outcome is Outcome.OK and [r.to_text() for r in ans.records] == [ANSWER]
    assert server.udp_queries == 1 and server.tcp_queries == 1


def test_a_resolver_that_never_answers_is_a_timeout():
    server, [ans] = asyncio.run(_ask("silent", ["quiet.test"], timeout=0.6))
    assert ans.outcome is Outcome.TIMEOUT and ans.detail.endswith("did not answer within 0.6s")
    assert server.udp_queries >= 1


def test_concurrent_queries_share_a_few_sockets():
    """One socket per query (dnspython's own path) costs a socket endpoint each; a burst of 40
    questions goes out from a couple of source ports, each answer still reaching its query."""
    names = [f"n{i}.test" for i in range(40)]
    server, answers = asyncio.run(_ask("good", names))
    assert all(a.outcome is Outcome.OK for a in answers)
    assert [a.qname for a in answers] == names
    assert len(server.ports) <= 40 // udp.MAX_IN_FLIGHT + 1, server.ports


def test_sockets_close_when_idle():
    async def go():
        await _ask("good", ["a.test", "b.test"])
        return sum(len(pool) for pool in udp._endpoints.get(asyncio.get_running_loop(), {}).values())

    assert asyncio.run(go()) == 0
