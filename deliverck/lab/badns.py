"""DNS servers that misbehave on purpose.

Authoritative ones (a scenario zone, or a reverse name, delegated to them shows how
the engine copes with a broken name server):
    blackhole   never answers
    servfail    SERVFAIL to everything
    refused     REFUSED to everything (also: a resolver that refuses recursion)

Resolvers that behave like a user's broken environment (give them to deliverck with
--resolver; tests/test_environment.py):
    nxdomain-resolver   NXDOMAIN to everything, recursion offered (an offline machine's
                        resolver, a filtering forwarder)
    servfail-root       forwards to the lab resolver, but SERVFAIL for the root zone itself
    strip-dnssec        forwards to the lab resolver with DO cleared, drops every DNSSEC
                        record (RRSIG, DNSKEY, DS, NSEC, NSEC3) and the AD bit from the answer
    drop-dnssec         forwards queries without DO; a query with DO=1 gets no answer at all
                        (a middlebox that drops DNSSEC-sized traffic)
"""

from __future__ import annotations

import asyncio
import struct

import dns.asyncquery
import dns.exception
import dns.flags
import dns.message
import dns.name
import dns.rcode
import dns.rdatatype

RCODES = {"servfail": dns.rcode.SERVFAIL, "refused": dns.rcode.REFUSED}
ANSWERING = ("nxdomain-resolver",)
FORWARDING = ("servfail-root", "strip-dnssec", "drop-dnssec")
BEHAVIOURS = ("blackhole", *RCODES, *ANSWERING, *FORWARDING)

# The lab's own resolver (plan.RESOLVER; the latency proxy when there is one): what forwarders ask.
UPSTREAM = ("127.0.0.1", 53)
UPSTREAM_TIMEOUT = 5.0
_STRIPPED = frozenset(dns.rdatatype.from_text(t) for t in (
    "RRSIG", "DNSKEY", "DS", "NSEC", "NSEC3", "NSEC3PARAM", "CDS", "CDNSKEY"))


def answer(behaviour: str, wire: bytes) -> bytes | None:
    """The reply of a non-forwarding server to one query, or None to stay silent."""
    if behaviour == "blackhole":
        return None
    try:
        query = dns.message.from_wire(wire)
    except dns.exception.DNSException:
        return None
    response = dns.message.make_response(query)
    if behaviour == "nxdomain-resolver":
        response.flags |= dns.flags.RA
        response.set_rcode(dns.rcode.NXDOMAIN)
    else:
        response.set_rcode(RCODES[behaviour])
    return response.to_wire()


def _reply(query: dns.message.Message, response: dns.message.Message, max_size: int) -> bytes:
    response.id = query.id
    try:
        return response.to_wire(max_size=max_size)
    except dns.exception.TooBig:
        short = dns.message.make_response(query)
        short.flags |= dns.flags.TC | dns.flags.RA
        return short.to_wire()


def strip(response: dns.message.Message) -> dns.message.Message:
    """What a DNSSEC-unaware forwarder hands on: no DNSSEC records, no AD bit."""
    for section in (response.answer, response.authority, response.additional):
        section[:] = [rr for rr in section if rr.rdtype not in _STRIPPED]
    response.flags &= ~dns.flags.AD
    return response


async def forward(behaviour: str, wire: bytes, tcp: bool) -> bytes | None:
    """The reply of a forwarding resolver to one query, or None to stay silent."""
    try:
        query = dns.message.from_wire(wire)
    except dns.exception.DNSException:
        return None
    max_size = 65535 if tcp else max(query.payload if query.edns >= 0 else 512, 512)
    dnssec_ok = bool(query.ednsflags & dns.flags.DO)
    if behaviour == "drop-dnssec" and dnssec_ok:
        return None
    if behaviour == "servfail-root" and query.question and query.question[0].name == dns.name.root:
        response = dns.message.make_response(query)
        response.flags |= dns.flags.RA
        response.set_rcode(dns.rcode.SERVFAIL)
        return response.to_wire()
    upstream = dns.message.from_wire(wire)
    if behaviour == "strip-dnssec":
        upstream.want_dnssec(False)                 # ignores DO ...
        upstream.flags &= ~dns.flags.CD
    try:
        response, _ = await dns.asyncquery.udp_with_fallback(upstream, UPSTREAM[0], timeout=UPSTREAM_TIMEOUT,
                                                             port=UPSTREAM[1])
    except (dns.exception.DNSException, OSError):
        response = dns.message.make_response(query)
        response.set_rcode(dns.rcode.SERVFAIL)
    if behaviour == "strip-dnssec":
        response = strip(response)                  # ... and drops what DO would have brought
    return _reply(query, response, max_size)


class _Udp(asyncio.DatagramProtocol):
    def __init__(self, behaviour: str):
        self.behaviour = behaviour
        self.tasks: set[asyncio.Task] = set()

    def connection_made(self, transport):
        self.transport = transport

    def datagram_received(self, data, addr):
        if self.behaviour in FORWARDING:
            task = asyncio.ensure_future(self._forward(data, addr))
            self.tasks.add(task)
            task.add_done_callback(self.tasks.discard)
            return
        reply = answer(self.behaviour, data)
        if reply is not None:
            self.transport.sendto(reply, addr)

    async def _forward(self, data, addr):
        reply = await forward(self.behaviour, data, tcp=False)
        if reply is not None and not self.transport.is_closing():
            self.transport.sendto(reply, addr)


async def _tcp(behaviour: str, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    try:
        while True:
            (length,) = struct.unpack("!H", await asyncio.wait_for(reader.readexactly(2), 30))
            wire = await asyncio.wait_for(reader.readexactly(length), 30)
            if behaviour in FORWARDING:
                reply = await forward(behaviour, wire, tcp=True)
            else:
                reply = answer(behaviour, wire)
            if reply is not None:
                writer.write(struct.pack("!H", len(reply)) + reply)
                await writer.drain()
    except (TimeoutError, asyncio.IncompleteReadError, ConnectionError):
        pass
    finally:
        writer.close()


async def serve(address: str, behaviour: str, port: int = 53) -> list:
    if behaviour not in BEHAVIOURS:
        raise ValueError(f"unknown DNS server behaviour {behaviour!r}")
    loop = asyncio.get_running_loop()
    transport, _ = await loop.create_datagram_endpoint(lambda: _Udp(behaviour), local_addr=(address, port))
    server = await asyncio.start_server(lambda r, w: _tcp(behaviour, r, w), address, port)
    return [transport, server]
