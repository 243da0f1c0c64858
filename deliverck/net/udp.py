"""DNS over UDP with one socket per resolver address, shared by the queries in flight (issue 16).

dnspython's resolver opens a new socket endpoint for every question and serialises every
query through its generic message writer; in a bulk run of domains that share nothing
(~32 questions a domain) that was a third of the CPU.  Here the resolution logic stays
dnspython's own (`dns.resolver._Resolution` through `Resolver.resolve`: retries, backoff,
lifetime, TCP on truncation, rcode handling are unchanged); only the UDP exchange of
`Do53Nameserver.async_query` is replaced:

- the query's wire form is written directly (`query_wire`) for the one shape deliverck asks
  (one question, EDNS0 without options, no TSIG), and by dnspython for anything else;
- a small pool of non-blocking sockets per (event loop, resolver address) carries the queries
  in flight, at most MAX_IN_FLIGHT each (so that a burst of answers fits a socket's receive
  buffer: one socket for 2,000 queries in flight dropped answers);
  answers are matched to their query by 16-bit ID and then checked as dnspython checks them:
  the datagram must come from the queried address and port, parse, and `is_response()` the
  query (same ID, QR set, same opcode and question); anything else is ignored, as dnspython's
  own `receive_udp(ignore_errors=True, ignore_unexpected=True)` ignores it (RFC 5452 9.1).
- the socket is unconnected like dnspython's, so an ICMP error does not fail a query: a
  resolver that does not listen is a timeout, as before.

The source port: a socket lives while it has queries in flight and for at most `MAX_USES`
queries, then the next query opens a new one (a new random ephemeral port from the kernel).
A port shared by concurrent queries weakens RFC 5452's port randomisation against off-path
spoofing; that is acceptable for what deliverck is, a stub talking to its own configured
resolver (loopback or the local network), where the ID and the question check remain.
"""

from __future__ import annotations

import asyncio
import os
import socket
import struct
import time
import weakref

import dns.exception
import dns.flags
import dns.message
import dns.name
import dns.nameserver
import dns.rdataclass

MAX_DATAGRAM = 65_535          # the largest UDP payload: the bound of every read
MAX_USES = 256                 # queries per socket before the next one gets a new source port
MAX_IN_FLIGHT = 32             # queries waiting on one socket: its receive buffer must hold their answers
READS_PER_WAKEUP = 256         # datagrams read per readiness callback (then back to the loop)
MAX_BACKLOG = 8                # datagrams kept for one query while its task judges another
_OPT_TYPE = 41


def encode_name(name: dns.name.Name | str) -> bytes:
    """The uncompressed wire form of a name, case kept (what `Name.to_wire()` writes).

    Plain ASCII text is encoded directly; text with escapes, non-ASCII (IDNA) or `@` goes
    through dns.name.from_text, which also raises its errors for bad lengths."""
    if isinstance(name, dns.name.Name):
        if not name.is_absolute():
            return _wire(name)              # dnspython's error for a relative name
        return b"".join(bytes((len(label),)) + label for label in name.labels)
    text = name[:-1] if name.endswith(".") else name
    if not text:
        return b"\x00"
    if "\\" in text or text == "@" or not text.isascii():
        return _wire(dns.name.from_text(name))
    labels = text.encode("ascii").split(b".")
    if len(text) > 253 or any(not 0 < len(label) < 64 for label in labels):
        return _wire(dns.name.from_text(name))      # raises EmptyLabel / LabelTooLong / NameTooLong
    return b"".join(bytes((len(label),)) + label for label in labels) + b"\x00"


def _wire(name: dns.name.Name) -> bytes:
    wire = name.to_wire()
    assert wire is not None          # None only when writing into a file
    return wire


def query_wire(request: dns.message.Message | PlainQuery) -> bytes:
    """The request as dnspython's `to_wire()` writes it, without its generic writer when the
    request is the plain shape (one question, nothing else, EDNS0 with no options)."""
    if isinstance(request, PlainQuery):
        return request.to_wire()
    if (len(request.question) != 1 or request.answer or request.authority or request.additional
            or request.keyring or request.edns != 0 or request.options or request.ednsflags & 0xFFFF0000 != 0):
        return request.to_wire()
    q = request.question[0]
    header = struct.pack("!HHHHHH", request.id, request.flags & 0xFFFF, 1, 0, 0, 1)
    opt = struct.pack("!BHHIH", 0, _OPT_TYPE, request.payload, request.ednsflags & 0xFFFF, 0)
    return b"".join((header, encode_name(q.name), struct.pack("!HH", q.rdtype, q.rdclass), opt))


_QUERY_OPCODE = 0
_BLANK_QUESTION_RCODES = frozenset((1, 2, 4, 5))   # FORMERR, SERVFAIL, NOTIMP, REFUSED


class PlainQuery:
    """The one question shape deliverck asks (RD and AD set, EDNS0 at EDNS_PAYLOAD, no options,
    no TSIG), as just the fields the exchange needs: a `dns.message.make_query` Message with
    its OPT record cost ~0.2 ms of CPU per question, a sixth of a bulk audit (issue 16).
    `is_response` is dnspython's rule (message.py `Message.is_response`) for this shape."""
    __slots__ = ("id", "flags", "name", "rdtype", "rdclass", "payload", "_tail")
    keyring = None
    mac = b""

    def __init__(self, name: dns.name.Name, rdtype: int, flags: int, payload: int) -> None:
        self.name, self.rdtype, self.rdclass = name, rdtype, dns.rdataclass.IN
        self.flags, self.payload = flags, payload
        self._tail = b"".join((encode_name(name), struct.pack("!HH", rdtype, self.rdclass),
                               struct.pack("!BHHIH", 0, _OPT_TYPE, payload, 0, 0)))
        self.set_random_id()

    def set_random_id(self) -> None:
        self.id = int.from_bytes(os.urandom(2), "big")

    def to_wire(self) -> bytes:
        return struct.pack("!HHHHHH", self.id, self.flags & 0xFFFF, 1, 0, 0, 1) + self._tail

    def is_response(self, other: dns.message.Message) -> bool:
        if other.flags & dns.flags.QR == 0 or other.id != self.id or (other.flags >> 11) & 0xF != _QUERY_OPCODE:
            return False
        if other.rcode() in _BLANK_QUESTION_RCODES and not other.question:
            return True
        if len(other.question) != 1:
            return False
        q = other.question[0]
        return q.rdtype == self.rdtype and q.rdclass == self.rdclass and q.name == self.name


class _Endpoint:
    """One unconnected UDP socket towards one resolver address, and its queries in flight."""

    def __init__(self, loop: asyncio.AbstractEventLoop, ip: str, port: int, pool: list) -> None:
        family = socket.AF_INET6 if ":" in ip else socket.AF_INET
        self.sock = socket.socket(family, socket.SOCK_DGRAM)
        self.sock.setblocking(False)
        self.loop, self.dest, self.pool = loop, (ip, port), pool
        self.pending: dict[int, _Query] = {}
        self.uses = 0
        self.closed = False
        loop.add_reader(self.sock.fileno(), self._readable)

    def _readable(self) -> None:
        for _ in range(READS_PER_WAKEUP):
            try:
                data, source = self.sock.recvfrom(MAX_DATAGRAM)
            except (BlockingIOError, InterruptedError):
                return
            except OSError:
                continue                     # a queued ICMP error: ignored, as dnspython's socket does
            if source[0] != self.dest[0] or source[1] != self.dest[1] or len(data) < 12:
                continue                     # not from the address and port we asked
            query = self.pending.get(int.from_bytes(data[:2], "big"))
            if query is not None:
                query.offer(data)

    def release(self, qid: int, query: _Query) -> None:
        """Idle sockets close: nothing outlives the queries (or the event loop) that used it."""
        if self.pending.get(qid) is query:
            del self.pending[qid]
        if not self.pending:
            self.close()

    def close(self) -> None:
        if self.closed:
            return
        self.closed = True
        if self in self.pool:
            self.pool.remove(self)
        self.loop.remove_reader(self.sock.fileno())
        self.sock.close()


class _Query:
    """A query in flight: the datagrams that carry its ID wait here, unparsed, for the query's own
    task.  Parsing in the socket's readiness callback held the loop 25-50 ms when a burst of
    answers arrived together (tests/test_fixed_cost.py); each task now parses its own."""
    __slots__ = ("request", "future", "begin", "backlog")

    def __init__(self, request: dns.message.Message | PlainQuery, future: asyncio.Future) -> None:
        self.request, self.future, self.begin = request, future, time.time()
        self.backlog: list[bytes] = []

    def offer(self, data: bytes) -> None:
        """A datagram with this query's ID (judged by `answer`, in the query's task)."""
        if not self.future.done():
            self.future.set_result(data)
        elif len(self.backlog) < MAX_BACKLOG:
            self.backlog.append(data)            # more are spoofed or duplicated: dropped

    def expire(self) -> None:
        if not self.future.done():
            self.future.set_exception(dns.exception.Timeout())

    async def answer(self) -> dns.message.Message:
        """The first datagram dnspython would take as the answer: it parses, and
        `is_response()` the query (same ID, QR set, same opcode and question); a truncated one
        raises Truncated (the resolver retries over TCP); anything else is ignored."""
        while True:
            if self.backlog:
                data = self.backlog.pop(0)
            else:
                data = await self.future             # the datagram, or Timeout from expire()
                self.future = self.future.get_loop().create_future()
            try:
                response = dns.message.from_wire(data, keyring=self.request.keyring, request_mac=self.request.mac,
                                                 raise_on_truncation=True)
            except dns.message.Truncated as e:
                if self.request.is_response(e.message()):
                    raise
                continue
            except Exception:
                continue                             # malformed: ignored, the real answer may follow
            if self.request.is_response(response):
                response.time = time.time() - self.begin
                return response

    def done(self) -> None:
        """A Timeout set after the answer came from the backlog is nobody's error."""
        if self.future.done() and not self.future.cancelled():
            self.future.exception()


_endpoints: weakref.WeakKeyDictionary[asyncio.AbstractEventLoop, dict[tuple[str, int], list[_Endpoint]]] = \
    weakref.WeakKeyDictionary()


def _endpoint(ip: str, port: int) -> _Endpoint:
    """A socket of the pool towards ip:port with room for one more query, else a new one."""
    loop = asyncio.get_running_loop()
    home = _endpoints.get(loop)
    if home is None:
        home = _endpoints[loop] = {}
    pool = home.get((ip, port))
    if pool is None:
        pool = home[(ip, port)] = []
    for ep in pool:
        if len(ep.pending) < MAX_IN_FLIGHT and ep.uses < MAX_USES:
            return ep
    ep = _Endpoint(loop, ip, port, pool)
    pool.append(ep)
    return ep


async def exchange(request: dns.message.Message | PlainQuery, ip: str, port: int, timeout: float | None) -> dns.message.Message:
    """Send `request` to ip:port over the shared socket and wait for its answer (or raise
    dns.exception.Timeout, dns.message.Truncated, OSError as dnspython's `udp()` does)."""
    ep = _endpoint(ip, port)
    while request.id in ep.pending:
        request.set_random_id()
    loop = ep.loop
    query = _Query(request, loop.create_future())
    qid = request.id
    ep.pending[qid] = query
    ep.uses += 1
    timer = loop.call_later(timeout, query.expire) if timeout is not None else None
    try:
        wire = query_wire(request)
        try:
            ep.sock.sendto(wire, ep.dest)
        except BlockingIOError:
            await loop.sock_sendto(ep.sock, wire, ep.dest)
        return await query.answer()
    finally:
        if timer is not None:
            timer.cancel()
        query.done()
        ep.release(qid, query)


class SharedSocketNameserver(dns.nameserver.Do53Nameserver):
    """A Do53 name server whose UDP queries go through `exchange`; TCP is dnspython's."""

    async def async_query(self, request, timeout, source, source_port, max_size, backend,
                          one_rr_per_rrset=False, ignore_trailing=False):
        if max_size or source or source_port or one_rr_per_rrset or ignore_trailing:
            return await super().async_query(request, timeout, source, source_port, max_size, backend,
                                             one_rr_per_rrset, ignore_trailing)
        return await exchange(request, self.address, self.port, timeout)
