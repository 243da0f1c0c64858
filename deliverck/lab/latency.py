"""A DNS forwarder that delays every answer: the benchmark's slow network.

Each query is delayed on its own task, so concurrent queries overlap exactly
as they would on a slow link; nothing is serialized.
"""

from __future__ import annotations

import asyncio
import struct

UPSTREAM_TIMEOUT = 15.0


class _Upstream(asyncio.DatagramProtocol):
    def __init__(self, done: asyncio.Future):
        self.done = done

    def datagram_received(self, data, addr):
        if not self.done.done():
            self.done.set_result(data)

    def error_received(self, exc):
        if not self.done.done():
            self.done.set_exception(exc)


async def _udp_forward(wire: bytes, upstream: tuple[str, int]) -> bytes | None:
    loop = asyncio.get_running_loop()
    done = loop.create_future()
    transport, _ = await loop.create_datagram_endpoint(lambda: _Upstream(done), remote_addr=upstream)
    try:
        transport.sendto(wire)
        return await asyncio.wait_for(done, UPSTREAM_TIMEOUT)
    except (TimeoutError, OSError):
        return None
    finally:
        transport.close()


async def _tcp_forward(wire: bytes, upstream: tuple[str, int]) -> bytes | None:
    try:
        reader, writer = await asyncio.wait_for(asyncio.open_connection(*upstream), UPSTREAM_TIMEOUT)
    except (TimeoutError, OSError):
        return None
    try:
        writer.write(struct.pack("!H", len(wire)) + wire)
        (length,) = struct.unpack("!H", await asyncio.wait_for(reader.readexactly(2), UPSTREAM_TIMEOUT))
        return await asyncio.wait_for(reader.readexactly(length), UPSTREAM_TIMEOUT)
    except (TimeoutError, asyncio.IncompleteReadError, OSError):
        return None
    finally:
        writer.close()


class _Listener(asyncio.DatagramProtocol):
    def __init__(self, upstream, delay: float, tasks: set):
        self.upstream, self.delay, self.tasks = upstream, delay, tasks

    def connection_made(self, transport):
        self.transport = transport

    def datagram_received(self, data, addr):
        task = asyncio.ensure_future(self._answer(data, addr))
        self.tasks.add(task)
        task.add_done_callback(self.tasks.discard)

    async def _answer(self, data, addr):
        await asyncio.sleep(self.delay)
        reply = await _udp_forward(data, self.upstream)
        if reply is not None and not self.transport.is_closing():
            self.transport.sendto(reply, addr)


async def _tcp_client(reader, writer, upstream, delay: float, tasks: set) -> None:
    lock = asyncio.Lock()

    async def one(wire: bytes) -> None:
        await asyncio.sleep(delay)
        reply = await _tcp_forward(wire, upstream)
        if reply is not None:
            async with lock:
                writer.write(struct.pack("!H", len(reply)) + reply)
                await writer.drain()

    try:
        while True:
            (length,) = struct.unpack("!H", await reader.readexactly(2))
            task = asyncio.ensure_future(one(await reader.readexactly(length)))
            tasks.add(task)
            task.add_done_callback(tasks.discard)
    except (asyncio.IncompleteReadError, ConnectionError):
        pass


async def serve(listen: str, upstream: str, delay_ms: int, port: int = 53) -> list:
    loop = asyncio.get_running_loop()
    delay, up = delay_ms / 1000.0, (upstream, port)
    tasks: set[asyncio.Task] = set()
    transport, _ = await loop.create_datagram_endpoint(lambda: _Listener(up, delay, tasks),
                                                      local_addr=(listen, port))
    server = await asyncio.start_server(lambda r, w: _tcp_client(r, w, up, delay, tasks), listen, port)
    return [transport, server]
