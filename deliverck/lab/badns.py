"""DNS servers that misbehave on purpose: blackhole, servfail, refused.

A scenario zone (or a reverse name) delegated to one of these shows how the
engine copes with a broken authoritative server.
"""

from __future__ import annotations

import asyncio
import struct

import dns.exception
import dns.message
import dns.rcode

RCODES = {"servfail": dns.rcode.SERVFAIL, "refused": dns.rcode.REFUSED}


def answer(behaviour: str, wire: bytes) -> bytes | None:
    """The reply to one query, or None to stay silent."""
    if behaviour == "blackhole":
        return None
    try:
        query = dns.message.from_wire(wire)
    except dns.exception.DNSException:
        return None
    response = dns.message.make_response(query)
    response.set_rcode(RCODES[behaviour])
    return response.to_wire()


class _Udp(asyncio.DatagramProtocol):
    def __init__(self, behaviour: str):
        self.behaviour = behaviour

    def connection_made(self, transport):
        self.transport = transport

    def datagram_received(self, data, addr):
        reply = answer(self.behaviour, data)
        if reply is not None:
            self.transport.sendto(reply, addr)


async def _tcp(behaviour: str, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    try:
        while True:
            (length,) = struct.unpack("!H", await reader.readexactly(2))
            reply = answer(behaviour, await reader.readexactly(length))
            if reply is not None:
                writer.write(struct.pack("!H", len(reply)) + reply)
                await writer.drain()
    except (asyncio.IncompleteReadError, ConnectionError):
        pass
    finally:
        writer.close()


async def serve(address: str, behaviour: str, port: int = 53) -> list:
    if behaviour != "blackhole" and behaviour not in RCODES:
        raise ValueError(f"unknown DNS server behaviour {behaviour!r}")
    loop = asyncio.get_running_loop()
    transport, _ = await loop.create_datagram_endpoint(lambda: _Udp(behaviour), local_addr=(address, port))
    server = await asyncio.start_server(lambda r, w: _tcp(behaviour, r, w), address, port)
    return [transport, server]
