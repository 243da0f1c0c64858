"""Hostile clients against `deliverck listen` (issue 18: "a hostile client (endless lines, huge message,
slow drip, many connections) cannot exhaust memory or keep it alive past --timeout").

Each case runs against a real listener on loopback with small limits (max_size 1 MiB, idle 1 s,
connection life 3 s, run timeout 8 s) and measures two things: the wall time until the server
ended the hostile connection, and the peak of Python's traced memory (tracemalloc, the client's
allocations included) over the case.  The bounds stated here:

    every hostile connection ends within LIFE + 2.5 s (inside the run's timeout), and
    peak traced memory < 2 x max_size + 20 MiB

Each client offers far more than that bound (up to 64 MiB, or for longer than the run's timeout),
so a server that buffered, or waited, would fail the case.
"""

from __future__ import annotations

import asyncio
import os
import time
import tracemalloc

import aiosmtplib
import pytest

from deliverck.message.listen import ListenOptions, receive

pytestmark = pytest.mark.slow

MAX_SIZE = 1 << 20
IDLE = 1.0
LIFE = 3.0
RUN_TIMEOUT = 8.0
OFFER = 64 << 20                    # what a flooding client is ready to send
MEMORY_BOUND = 2 * MAX_SIZE + (20 << 20)
ENDS_WITHIN = LIFE + 2.5         # slack for a loaded machine; still well inside RUN_TIMEOUT
RCPT = "t@rcpt.example"


def options(**over) -> ListenOptions:
    base = dict(address="127.0.0.1", port=0, rcpt=RCPT, timeout=RUN_TIMEOUT, hostname="mx.listen.example",
                max_size=MAX_SIZE, idle_timeout=IDLE, connection_limit=LIFE, max_connections=20, max_per_ip=5)
    return ListenOptions(**{**base, **over})


class Conn:
    """A raw TCP client whose replies are read (and dropped) in the background until the server hangs up."""

    def __init__(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter):
        self.reader, self.writer = reader, writer
        self.first = b""
        self.closed = asyncio.Event()
        self.task = asyncio.create_task(self._read())

    @classmethod
    async def open(cls, port: int, source: str = "127.0.0.1") -> Conn:
        reader, writer = await asyncio.open_connection("127.0.0.1", port, local_addr=(source, 0))
        return cls(reader, writer)

    async def _read(self) -> None:
        try:
            while chunk := await self.reader.read(65536):
                if not self.first:
                    self.first = chunk
        except (ConnectionError, OSError):
            pass
        self.closed.set()

    async def write(self, data: bytes) -> bool:
        """False once the server has hung up."""
        if self.closed.is_set():
            return False
        try:
            self.writer.write(data)
            await self.writer.drain()
        except (ConnectionError, OSError):
            return False
        return not self.closed.is_set()

    async def flood(self, chunk: bytes, total: int = OFFER, pause: float = 0.0) -> None:
        sent = 0
        while sent < total and await self.write(chunk):
            sent += len(chunk)
            if pause:
                await asyncio.sleep(pause)

    async def greeted(self) -> bytes:
        """The first reply: 220, or 421 from a listener that is full."""
        for _ in range(100):
            if self.first or self.closed.is_set():
                break
            await asyncio.sleep(0.05)
        return self.first

    def close(self) -> None:
        self.writer.close()


async def endless_line(port: int) -> Conn:
    c = await Conn.open(port)
    await c.flood(b"A" * 65536)                                # no newline, ever
    return c


async def huge_data(port: int) -> Conn:
    c = await Conn.open(port)
    await c.write(f"EHLO client.example\r\nMAIL FROM:<a@sender.example>\r\nRCPT TO:<{RCPT}>\r\n".encode())
    await asyncio.sleep(0.2)
    await c.write(b"DATA\r\n")
    await asyncio.sleep(0.1)
    await c.flood((b"x" * 998 + b"\r\n") * 64)                 # lines within limits, no end
    return c


async def slow_drip_command(port: int) -> Conn:
    c = await Conn.open(port)
    for byte in b"EHLO " + b"a" * 60:                          # one byte per second, no end of line
        if not await c.write(bytes([byte])):
            break
        await asyncio.sleep(1.0)
    return c


async def slow_drip_data(port: int) -> Conn:
    """Bytes often enough to beat the idle timer (a line every 0.6 s): only the connection's life ends it."""
    c = await Conn.open(port)
    await c.write(f"EHLO client.example\r\nMAIL FROM:<a@sender.example>\r\nRCPT TO:<{RCPT}>\r\n".encode())
    await asyncio.sleep(0.2)
    await c.write(b"DATA\r\n")
    await c.flood(b"a\r\n", total=int(RUN_TIMEOUT * 10), pause=0.3)
    return c


async def garbage_before_helo(port: int) -> Conn:
    c = await Conn.open(port)
    rng = os.urandom(1 << 16).replace(b"\n", b"")
    lines = b"".join(rng[i:i + 60] + b"\r\n" for i in range(0, len(rng), 60))
    await c.flood(lines)
    return c


async def pipelined_rcpts(port: int) -> Conn:
    c = await Conn.open(port)
    rcpts = b"".join(b"RCPT TO:<r%d@rcpt.example>\r\n" % i for i in range(5000))
    await c.write(b"EHLO client.example\r\nMAIL FROM:<a@sender.example>\r\n" + rcpts + b"DATA\r\n"
                  + (b"y" * 500 + b"\r\n") * 2000 + b".\r\n")
    await c.flood(b"NOOP\r\n" * 1000)
    return c


async def noop_flood(port: int) -> Conn:
    """Valid commands restart the idle timer each time: the reply cap or the connection's life ends it."""
    c = await Conn.open(port)
    await c.write(b"EHLO client.example\r\n")
    await c.flood(b"NOOP\r\n" * 50, pause=0.01)
    return c


async def tls_stall_and_garbage(port: int) -> Conn:
    """STARTTLS, then a handshake that never comes; then one that is garbage."""
    c = await Conn.open(port)
    await c.write(b"EHLO client.example\r\nSTARTTLS\r\n")
    await asyncio.sleep(IDLE + 1.0)                          # the idle timer must end the silent handshake
    stalled = c
    c = await Conn.open(port)
    await c.write(b"EHLO client.example\r\nSTARTTLS\r\n")
    await asyncio.sleep(0.2)
    await c.flood(b"\x16\x03\x01" + os.urandom(4096))
    await asyncio.wait_for(stalled.closed.wait(), 0.1)
    return c


CASES = [endless_line, huge_data, slow_drip_command, slow_drip_data, garbage_before_helo, pipelined_rcpts,
         noop_flood, tls_stall_and_garbage]


async def start(opts: ListenOptions, received: list) -> tuple[asyncio.Task, int]:
    ready: asyncio.Future = asyncio.get_running_loop().create_future()

    async def on_message(message, session):
        received.append((message, session))

    task = asyncio.create_task(receive(opts, ready.set_result, on_message))
    return task, (await asyncio.wait_for(ready, 10)).port


@pytest.fixture
def traced():
    tracemalloc.start()
    yield
    tracemalloc.stop()


@pytest.mark.parametrize("case", CASES, ids=[c.__name__ for c in CASES])
async def test_hostile_client_ends_in_time_with_bounded_memory(case, traced):
    received: list = []
    task, port = await start(options(), received)
    tracemalloc.reset_peak()
    began = time.monotonic()
    conn = await asyncio.wait_for(case(port), RUN_TIMEOUT + 5)
    await asyncio.wait_for(conn.closed.wait(), RUN_TIMEOUT)
    ended = time.monotonic() - began
    peak = tracemalloc.get_traced_memory()[1]
    conn.close()
    task.cancel()
    assert ended < ENDS_WITHIN, f"{case.__name__}: the server kept the connection {ended:.1f} s"
    assert peak < MEMORY_BOUND, f"{case.__name__}: peak {peak / 2**20:.1f} MiB"
    assert not received


async def test_connection_caps_and_a_real_sender_still_gets_through(traced):
    """10 connections at once, 5 per client address: a flood from 127.0.0.2 takes its five slots and
    gets 421 for the rest; 127.0.0.3 fills the remaining slots; a client from 127.0.0.1 meets 421
    while all is full, and a real sender is served once the idle timer has freed the slots."""
    received: list = []
    task, port = await start(options(max_per_ip=5, max_connections=10), received)
    tracemalloc.reset_peak()
    began = time.monotonic()
    flood = [await Conn.open(port, "127.0.0.2") for _ in range(12)]
    firsts = [await c.greeted() for c in flood]
    refused = [c for c, first in zip(flood, firsts) if first.startswith(b"421")]
    assert len(refused) == 7
    await asyncio.wait_for(asyncio.gather(*(c.closed.wait() for c in refused)), 2)
    more = [await Conn.open(port, "127.0.0.3") for _ in range(5)]
    firsts += [await c.greeted() for c in more]
    assert sum(first.startswith(b"220") for first in firsts) == 10       # the total cap
    late = await Conn.open(port, "127.0.0.1")
    assert (await late.greeted()).startswith(b"421 4.7.0")
    await asyncio.wait_for(late.closed.wait(), 2)
    # The held connections say nothing: the idle timer frees every slot within IDLE.
    await asyncio.wait_for(asyncio.gather(*(c.closed.wait() for c in flood + more)), IDLE + 1.5)
    smtp = aiosmtplib.SMTP(hostname="127.0.0.1", port=port, start_tls=False, timeout=5)
    await smtp.connect()
    await smtp.sendmail("a@sender.example", [RCPT], b"Subject: x\r\n\r\nhello\r\n")
    await smtp.quit()
    assert await asyncio.wait_for(task, RUN_TIMEOUT) == 1 and len(received) == 1
    assert time.monotonic() - began < RUN_TIMEOUT
    assert tracemalloc.get_traced_memory()[1] < MEMORY_BOUND


async def test_all_at_once_then_the_run_ends_at_its_timeout(traced):
    """Every hostile case at the same time, no message: `receive` returns 0 at its timeout, not later."""
    received: list = []
    task, port = await start(options(timeout=4.0, max_per_ip=20), received)
    tracemalloc.reset_peak()
    began = time.monotonic()
    clients = [asyncio.create_task(case(port)) for case in CASES]
    assert await asyncio.wait_for(task, 4.0 + 3.0) == 0
    took = time.monotonic() - began
    for t in clients:
        t.cancel()
    await asyncio.gather(*clients, return_exceptions=True)
    assert took < 4.0 + 2.5
    assert tracemalloc.get_traced_memory()[1] < MEMORY_BOUND
