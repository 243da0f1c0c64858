"""The SMTP probe against small, real TCP servers on loopback that misbehave
in one precise way each (no mocks: real sockets, real aiosmtplib)."""

from __future__ import annotations

import asyncio

import pytest

from deliverck.net.smtp import Outcome, ProbeOptions, probe
from deliverck.text import safe


class Peer:
    """A scripted server: `script(reader, writer, log)`; records every command line."""

    def __init__(self, script):
        self.script = script
        self.commands: list[str] = []
        self.connections = 0

    async def __aenter__(self):
        async def handle(reader, writer):
            self.connections += 1
            try:
                await self.script(reader, writer, self.commands)
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


async def smtp_like(reader, writer, log, greeting=b"220 mx.example.test ESMTP\r\n", ehlo=None, rcpt=b"554 5.7.1 Relay access denied\r\n"):
    writer.write(greeting)
    await writer.drain()
    while True:
        line = await asyncio.wait_for(reader.readline(), 5)
        if not line:
            return
        cmd = line.decode("ascii", "replace").strip()
        log.append(cmd.split()[0].upper() if cmd else "")
        verb = log[-1]
        if verb == "EHLO":
            writer.write(ehlo or b"250-mx.example.test\r\n250 8BITMIME\r\n")
        elif verb == "HELO":
            writer.write(b"250 mx.example.test\r\n")
        elif verb in ("MAIL", "RSET"):
            writer.write(b"250 OK\r\n")
        elif verb == "RCPT":
            writer.write(rcpt)
        elif verb == "DATA":
            writer.write(b"554 never\r\n")
        elif verb == "QUIT":
            writer.write(b"221 bye\r\n")
            await writer.drain()
            return
        else:
            writer.write(b"502 5.5.2 what\r\n")
        await writer.drain()


def opts(**kw):
    return ProbeOptions(ehlo_name="probe.deliverck.invalid", timeout=kw.pop("timeout", 2), **kw)


async def test_full_session_never_sends_data():
    async with Peer(smtp_like) as p:
        s = await probe("127.0.0.1", "mx.example.test", p.port, opts())
    assert s.outcome is Outcome.OK
    assert p.commands == ["EHLO", "MAIL", "RCPT", "RSET", "QUIT"]
    assert "DATA" not in p.commands and p.connections == 1
    assert s.relay is not None and not s.relay.open
    assert s.greeting.first_word == "mx.example.test"


async def test_open_relay_is_seen_and_reset():
    async def script(r, w, log):
        await smtp_like(r, w, log, rcpt=b"250 2.1.5 OK\r\n")

    async with Peer(script) as p:
        s = await probe("127.0.0.1", "", p.port, opts())
    assert s.relay.open and p.commands[-2:] == ["RSET", "QUIT"] and "DATA" not in p.commands


async def test_relay_test_can_be_left_out():
    async with Peer(smtp_like) as p:
        await probe("127.0.0.1", "", p.port, opts(relay_test=False))
    assert p.commands == ["EHLO", "QUIT"]


async def test_silence_is_a_tarpit_not_a_hang():
    async def silent(r, w, log):
        await asyncio.sleep(30)

    async with Peer(silent) as p:
        s = await probe("127.0.0.1", "", p.port, opts(timeout=0.3))
    assert s.outcome is Outcome.TARPIT


async def test_immediate_close():
    async def close(r, w, log):
        return

    async with Peer(close) as p:
        s = await probe("127.0.0.1", "", p.port, opts())
    assert s.outcome is Outcome.CLOSED


async def test_http_server_is_not_smtp():
    async def http(r, w, log):
        w.write(b"HTTP/1.1 400 Bad Request\r\nContent-Length: 0\r\n\r\n")
        await w.drain()
        await asyncio.sleep(1)

    async with Peer(http) as p:
        s = await probe("127.0.0.1", "", p.port, opts())
    assert s.outcome is Outcome.NOT_SMTP


@pytest.mark.parametrize("greeting,outcome", [
    (b"554 5.3.2 No SMTP service here\r\n", Outcome.GREETING_REJECTED),
    (b"421 4.3.2 Too busy, try later\r\n", Outcome.GREETING_DEFERRED),
])
async def test_rejecting_greetings(greeting, outcome):
    async def script(r, w, log):
        await smtp_like(r, w, log, greeting=greeting)

    async with Peer(script) as p:
        s = await probe("127.0.0.1", "", p.port, opts())
    assert s.outcome is outcome
    assert str(greeting[:3].decode()) in s.detail


async def test_refused_port():
    async with Peer(smtp_like) as p:
        port = p.port
    s = await probe("127.0.0.1", "", port, opts())
    assert s.outcome is Outcome.REFUSED


async def test_ehlo_refused_falls_back_to_helo():
    async def script(r, w, log):
        await smtp_like(r, w, log, ehlo=b"502 5.5.2 EHLO not implemented\r\n")

    async with Peer(script) as p:
        s = await probe("127.0.0.1", "", p.port, opts())
    assert s.ehlo.code == 502 and s.helo is not None and s.helo.code == 250
    assert "HELO" in p.commands and "MAIL" not in p.commands


async def test_multiline_and_hostile_greeting_is_kept_and_escaped():
    banner = b"220-mx.example.test \x1b[31mred\x07 \xff\xfe\r\n220 second line\r\n"

    async def script(r, w, log):
        await smtp_like(r, w, log, greeting=banner)

    async with Peer(script) as p:
        s = await probe("127.0.0.1", "", p.port, opts())
    assert s.outcome is Outcome.OK
    assert len(s.greeting.lines) == 2 and "\x1b" in s.greeting.text
    shown = safe(s.greeting.line())
    assert "\x1b" not in shown and "\x07" not in shown and "\\x1b" in shown


async def test_endless_reply_is_bounded():
    async def flood(r, w, log):
        w.write(b"220-" + b"x" * 70000 + b"\r\n")
        await w.drain()
        await asyncio.sleep(2)

    async with Peer(flood) as p:
        s = await probe("127.0.0.1", "", p.port, opts(timeout=1))
    assert s.outcome in (Outcome.NOT_SMTP, Outcome.ERROR, Outcome.CLOSED)


async def test_session_budget_ends_a_dribbling_server():
    async def dribble(r, w, log):
        w.write(b"220 slow\r\n")
        await w.drain()
        await r.readline()
        for _ in range(100):
            w.write(b"250-x\r\n")
            await w.drain()
            await asyncio.sleep(0.2)

    async with Peer(dribble) as p:
        s = await asyncio.wait_for(probe("127.0.0.1", "", p.port, opts(timeout=5, budget=1)), 5)
    assert "longer than" in s.detail


async def test_filtered_port_is_a_connect_timeout():
    """A listener whose accept queue is full drops further SYNs: what a filtering firewall looks like."""
    import socket

    srv = socket.socket()
    srv.bind(("127.0.0.1", 0))
    srv.listen(0)
    port = srv.getsockname()[1]
    fillers = []
    try:
        for _ in range(3):  # fill the accept queue; nothing ever accepts
            c = socket.socket()
            c.setblocking(False)
            c.connect_ex(("127.0.0.1", port))
            fillers.append(c)
        await asyncio.sleep(0.1)
        s = await probe("127.0.0.1", "", port, opts(timeout=0.5))
    finally:
        for c in fillers:
            c.close()
        srv.close()
    assert s.outcome is Outcome.CONNECT_TIMEOUT, s.outcome
