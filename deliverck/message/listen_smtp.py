"""The SMTP conversation of `deliverck listen`: aiosmtpd's protocol with every limit made ours.

aiosmtpd parses the commands; this module decides what is accepted (one recipient, no relay, no
AUTH, no VRFY/EXPN), reads DATA itself into one bounded buffer, and bounds every connection:
the line length (aiosmtpd's StreamReader limit: an overlong line is read and dropped, never
buffered), replies per connection, recipients per connection, idle time, the connection's whole
life, connections at once and per client address, and one DATA at a time for the whole server.
So the peak memory is about two copies of one message (the buffer and the bytes handed on) plus
a few kilobytes per connection, whatever the clients do.
"""

from __future__ import annotations

import asyncio
import datetime
import ipaddress
from collections import Counter
from dataclasses import dataclass, field
from typing import Any

from aiosmtpd.smtp import SMTP

from deliverck.message.model import Message, Session

IDENT = "ESMTP deliverck listen (a test receiver: mail sent here is judged, never delivered)"
MAX_REPLIES = 300            # per connection: a real delivery needs about ten
MAX_RCPT = 100               # per connection; RFC 5321 4.5.3.1.8 asks servers to accept at least 100 per message
LINE_LIMIT = 1001            # RFC 5321 4.5.3.1.6: 1000 octets with CRLF, plus a transparency dot


@dataclass(frozen=True)
class Recipient:
    """The one address accepted: `local` exactly, `domain` case-insensitively (any domain when None:
    the random token address, so that any test domain's MX can point here)."""

    local: str
    domain: str | None
    own_domains: frozenset[str] = frozenset()    # where a wrong local part is "unknown user", not relaying

    def matches(self, address: str) -> bool:
        local, at, domain = address.rpartition("@")
        if not at or not domain:
            return False
        if local != self.local:
            return False
        return self.domain is None or _domain(domain) == self.domain

    def ours(self, address: str) -> bool:
        return _domain(address.rpartition("@")[2]) in self.own_domains


def _domain(name: str) -> str:
    return name.strip().rstrip(".").lower()


@dataclass
class Limits:
    max_size: int
    idle: float
    life: float
    connections: int
    per_ip: int


@dataclass
class ServerState:
    """What all connections of one `receive` share."""

    recipient: Recipient
    limits: Limits
    reply: str                              # what to answer at end of DATA
    count: int                              # messages wanted
    local_address: str
    queue: asyncio.Queue[tuple[Message, Session]] = field(default_factory=asyncio.Queue)
    accepted: int = 0
    data_busy: bool = False
    closing: bool = False
    connections: set[ListenSMTP] = field(default_factory=set)
    per_ip: Counter[str] = field(default_factory=Counter)

    def abort_all(self) -> None:
        for conn in list(self.connections):
            conn.abort()


class Refuser(asyncio.Protocol):
    """What a connection over the cap meets: one 421 line, then the close (RFC 5321 3.8)."""

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        assert isinstance(transport, asyncio.WriteTransport)
        transport.write(b"421 4.7.0 Too many connections to deliverck listen, try again later\r\n")
        transport.close()


def peer_ip(peer: Any) -> tuple[str, int]:
    """(address, port) of a peername; an IPv4-mapped IPv6 address (a dual-stack bind) as plain IPv4."""
    if not isinstance(peer, tuple) or len(peer) < 2:
        return "", 0
    host = str(peer[0])
    try:
        addr = ipaddress.ip_address(host.split("%", 1)[0])
        if isinstance(addr, ipaddress.IPv6Address) and addr.ipv4_mapped is not None:
            host = str(addr.ipv4_mapped)
    except ValueError:
        pass
    return host, int(peer[1])


def client_key(ip: str) -> str:
    """What the per-client cap counts: the address, or for IPv6 its /64 (one host usually holds a whole /64)."""
    try:
        addr = ipaddress.ip_address(ip)
    except ValueError:
        return ip
    if isinstance(addr, ipaddress.IPv6Address):
        return str(ipaddress.ip_network(f"{addr}/64", strict=False))
    return ip


class _Handler:
    """aiosmtpd's hooks: the HELO name as sent, EHLO without AUTH, the one recipient."""

    async def handle_HELO(self, server: ListenSMTP, session: Any, envelope: Any, hostname: str) -> str:
        session.host_name = hostname
        server.helo, server.esmtp = hostname, False
        return f"250 {server.hostname}"

    async def handle_EHLO(self, server: ListenSMTP, session: Any, envelope: Any, hostname: str,
                          responses: list[str]) -> list[str]:
        session.host_name = hostname
        server.helo, server.esmtp = hostname, True
        kept = [r for r in responses if not r[4:].upper().startswith("AUTH")]
        # The last line of a multi-line reply is "250 ", the others "250-" (RFC 5321 4.2.1).
        return [("250-" if i < len(kept) - 1 else "250 ") + r[4:] for i, r in enumerate(kept)]

    async def handle_RCPT(self, server: ListenSMTP, session: Any, envelope: Any, address: str,
                          options: list[str]) -> str:
        server.rcpt_seen += 1
        if server.rcpt_seen > MAX_RCPT:
            return "452 4.5.3 Too many recipients"
        recipient = server.state.recipient
        if recipient.matches(address):
            if address not in envelope.rcpt_tos:
                envelope.rcpt_tos.append(address)
            return "250 2.1.5 Ok"
        if recipient.ours(address):
            return "550 5.1.1 Recipient address rejected: no such user here"
        return "550 5.7.1 Relaying denied: this test receiver accepts mail for one address only"


class ListenSMTP(SMTP):
    """One connection."""

    def __init__(self, state: ServerState, hostname: str, tls_context: Any, loop: asyncio.AbstractEventLoop):
        super().__init__(_Handler(), hostname=hostname, ident=IDENT, tls_context=tls_context,
                         data_size_limit=state.limits.max_size, enable_SMTPUTF8=True, timeout=state.limits.idle,
                         loop=loop)
        self.state = state
        self.helo = ""
        self.esmtp = False
        self.rcpt_seen = 0
        self.replies = 0
        self.peer: tuple[str, int] = ("", 0)
        self.client = ""
        self.refused = False
        self._lost = False
        self._registered = False
        self._life: asyncio.TimerHandle | None = None

    # -- the connection's bounds ------------------------------------------------------------------

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        if self._registered:                       # the TLS layer after STARTTLS: same connection
            super().connection_made(transport)
            return
        self.peer = peer_ip(transport.get_extra_info("peername"))
        self.client = client_key(self.peer[0])
        state = self.state
        if state.closing or state.per_ip[self.client] >= state.limits.per_ip:
            self.refused = True
            Refuser().connection_made(transport)
            return
        self._registered = True
        state.connections.add(self)
        state.per_ip[self.client] += 1
        self._life = self.loop.call_later(state.limits.life, self._expire)
        super().connection_made(transport)

    def connection_lost(self, error: Exception | None) -> None:
        # aiosmtpd calls this itself after a failed TLS handshake, and the transport calls it again.
        if self.refused or self._lost:
            return
        self._lost = True
        if self._registered:
            self._registered = False
            self.state.connections.discard(self)
            self.state.per_ip[self.client] -= 1
            if self.state.per_ip[self.client] <= 0:
                del self.state.per_ip[self.client]
            if self._life is not None:
                self._life.cancel()
        super().connection_lost(error)

    def abort(self) -> None:
        """Drop the connection now, the TCP socket itself (a TLS layer could wait for close_notify)."""
        raw = self._original_transport or self.transport
        if raw is not None:
            raw.abort()             # type: ignore[attr-defined]

    def _timeout_cb(self) -> None:
        self.abort()

    def _expire(self) -> None:
        if self.transport is not None:
            self.transport.write(b"421 4.4.2 Connection time limit reached, closing\r\n")   # type: ignore[attr-defined]
        self.abort()

    async def push(self, status: Any) -> None:      # aiosmtpd sends str (bytes allowed)
        self.replies += 1
        if self.replies > MAX_REPLIES:
            if self.replies == MAX_REPLIES + 1 and self.transport is not None:
                self.transport.write(b"421 4.7.0 Too many commands, closing\r\n")  # type: ignore[attr-defined]
            self.abort()
            return
        await super().push(status)

    # -- refused commands ----------------------------------------------------------------------

    async def smtp_STARTTLS(self, arg: str) -> None:
        if self._tls_protocol is not None:       # aiosmtpd would wrap TLS in TLS again
            await self.push("503 5.5.1 TLS already active")
            return
        await super().smtp_STARTTLS(arg)

    async def smtp_AUTH(self, arg: str) -> None:
        await self.push("502 5.5.1 AUTH is not offered by this test receiver")

    async def smtp_VRFY(self, arg: str) -> None:
        await self.push("502 5.5.1 VRFY is not offered by this test receiver")

    async def smtp_EXPN(self, arg: str) -> None:
        await self.push("502 5.5.1 EXPN is not offered by this test receiver")

    # -- DATA -----------------------------------------------------------------------------------

    async def smtp_DATA(self, arg: str) -> None:
        if await self.check_helo_needed():
            return
        assert self.envelope is not None
        if not self.envelope.rcpt_tos:
            await self.push("503 5.5.1 Error: need RCPT command")
            return
        if arg:
            await self.push("501 5.5.4 Syntax: DATA")
            return
        state = self.state
        if state.data_busy or state.closing or state.accepted >= state.count:
            # One message in memory at a time; the sender keeps it and retries (RFC 5321 4.5.4.1).
            await self.push("451 4.3.2 Busy or done receiving, try again later")
            return
        mail_from = self.envelope.mail_from or ""
        rcpt = tuple(self.envelope.rcpt_tos)
        state.data_busy = True
        try:
            raw = await self._read_data()
        finally:
            state.data_busy = False
        if raw is None:
            return
        await self._accept(raw, self._session(mail_from, rcpt))

    async def _read_data(self) -> bytes | None:
        """The message with dot-stuffing undone, or None after a refusal (already answered).

        Over max_size the rest is read and dropped so the sender gets a clean 552 at the end
        (RFC 5321 4.2.5); past twice that the connection is closed instead, so an endless DATA
        costs no more time than a large one."""
        await self.push("354 End data with <CR><LF>.<CR><LF>")
        limit = self.state.limits.max_size
        buf = bytearray()
        size = 0
        too_long = too_big = False
        partial = False                 # the current line was overlong and is being dropped
        while self.transport is not None:
            try:
                line = await self._reader.readuntil(b"\r\n")
            except asyncio.LimitOverrunError as e:
                line = await self._reader.read(e.consumed)
                too_long, partial = True, True
                buf = bytearray()
                size += len(line)
            else:
                if line == b".\r\n" and not partial:
                    break
                size += len(line)
                if not (too_long or too_big):
                    if size > limit:
                        too_big, buf = True, bytearray()
                    else:
                        buf += line[1:] if line.startswith(b".") else line
                partial = False
            if size > 2 * limit + LINE_LIMIT:
                await self.push(f"552 5.3.4 Message size exceeds fixed maximum message size ({limit} bytes)")
                self.abort()
                return None
            self._reset_timeout()          # progress: the idle clock restarts, the life clock does not
        self._set_post_data_state()
        if too_long:
            await self.push("500 5.5.2 Line too long (RFC 5321 4.5.3.1.6: at most 1000 octets with CRLF)")
            return None
        if too_big:
            await self.push(f"552 5.3.4 Message size exceeds fixed maximum message size ({limit} bytes)")
            return None
        raw = bytes(buf)
        del buf
        return raw

    async def _accept(self, raw: bytes, session: Session) -> None:
        state = self.state
        if state.accepted >= state.count or state.closing:
            await self.push("451 4.3.2 Done receiving, try again later")
            return
        state.accepted += 1
        try:
            await self.push(state.reply)
        finally:        # judged even if the sender hung up before reading the reply
            state.queue.put_nowait((Message(raw=raw, label="listen"), session))
        if state.reply.startswith("421"):
            self.abort()

    def _session(self, mail_from: str, rcpt: tuple[str, ...]) -> Session:
        version = cipher = ""
        ssl_object = self.transport.get_extra_info("ssl_object") if self.transport is not None else None
        if ssl_object is not None:
            version = ssl_object.version() or ""
            c = ssl_object.cipher()
            cipher = c[0] if c else ""
        now = datetime.datetime.now(datetime.UTC).replace(microsecond=0)
        return Session(peer_ip=self.peer[0], peer_port=self.peer[1], helo=self.helo, esmtp=self.esmtp,
                       tls_version=version, tls_cipher=cipher, mail_from="" if mail_from == "<>" else mail_from,
                       rcpt=rcpt, received_at=now.isoformat().replace("+00:00", "Z"),
                       local_address=self.state.local_address)
