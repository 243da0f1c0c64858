"""SMTP peers that behave well or badly on purpose; none ever accepts a message.

`smtp` peers are aiosmtpd (greeting, EHLO, STARTTLS, relay policy, 554 to
DATA); `http`, `close`, `ehlo-close`, `ehlo-hang` (a 220 greeting, then the
connection is closed, or nothing more is said, at the first command) and
non-2xx greetings are raw asyncio servers, because
aiosmtpd cannot misbehave that way.  Every connection ends as one JSON line in
the lab's SMTP log.  Every read is bounded: line length, command count, idle
time.
"""

from __future__ import annotations

import asyncio
import datetime
import email.utils
import functools
import json
import socket
import ssl
import time
import warnings
from dataclasses import dataclass, field
from pathlib import Path

from aiosmtpd.smtp import SMTP

IDENT = "ESMTP deliverck-lab"
MAX_COMMANDS = 50                 # then the peer hangs up: a probe needs a dozen at most
IDLE_TIMEOUT = 30.0
MAX_LINE = 1001
NO_SERVICE = "503 5.5.1 No SMTP service here"
DATE = "{date}"
# Exchange writes its local time with its zone; a fixed non-UTC zone makes a
# parser that ignores the offset wrong by eight hours.
GREETING_ZONE = datetime.timezone(datetime.timedelta(hours=-8))
HTTP_400 = (b"HTTP/1.1 400 Bad Request\r\nServer: deliverck-lab\r\nContent-Type: text/html\r\n"
            b"Content-Length: 50\r\nConnection: close\r\n\r\n"
            b"<html><body><h1>400 Bad Request</h1></body></html>")


@dataclass
class Peer:
    address: str
    hostname: str
    domain: str                              # the scenario's own domain: RCPT TO there is accepted
    behaviour: str = "smtp"
    ports: tuple[int, ...] = (25,)
    greeting: str = ""
    greeting_delay: float = 0.0
    starttls: bool = True
    tls_versions: str = "modern"
    cert_file: str | None = None
    key_file: str | None = None
    relay: str = "denied"
    weak: bool = False                       # the certificate needs OpenSSL security level 0
    clock_offset: float = 0.0                # seconds added to now for {date} in the greeting

    @classmethod
    def from_config(cls, d: dict) -> Peer:
        return cls(**{**d, "ports": tuple(d.get("ports", (25,)))})


def greeting_line(peer: Peer, now: float | None = None) -> str:
    """The greeting as sent on a connection made at `now`: {date} is the peer's (skewed) clock,
    RFC 5322 style, e.g. "Mon, 23 Nov 2026 14:22:11 -0800"."""
    if DATE not in peer.greeting:
        return peer.greeting
    moment = datetime.datetime.fromtimestamp((time.time() if now is None else now) + peer.clock_offset,
                                             GREETING_ZONE)
    return peer.greeting.replace(DATE, email.utils.format_datetime(moment))


class SessionLog:
    """Appends one JSON line per finished connection; one writer (this process), so lines never interleave."""

    def __init__(self, path: Path):
        self.path = path

    def write(self, record: dict) -> None:
        with open(self.path, "a", encoding="utf-8") as f:
            f.write(json.dumps(record, sort_keys=True) + "\n")


@dataclass
class Session:
    peer: Peer
    port: int
    client: str
    log: SessionLog
    started: float = field(default_factory=time.time)
    commands: list[str] = field(default_factory=list)
    tls: str | None = None
    written: bool = False

    def finish(self) -> None:
        if self.written:
            return
        self.written = True
        self.log.write({"address": self.peer.address, "port": self.port, "peer": self.client,
                        "time": self.started, "end": time.time(), "behaviour": self.peer.behaviour,
                        "tls": self.tls, "commands": self.commands})


def tls_context(peer: Peer) -> ssl.SSLContext | None:
    if not (peer.cert_file and peer.key_file):
        return None
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)
        if peer.tls_versions == "legacy":
            # OpenSSL 3 serves TLS 1.0/1.1 only at security level 0 (their handshakes use SHA-1/MD5).
            ctx.minimum_version = ssl.TLSVersion.TLSv1
            ctx.maximum_version = ssl.TLSVersion.TLSv1_1
        else:
            ctx.minimum_version = ssl.TLSVersion.TLSv1_2
    if peer.tls_versions == "legacy" or peer.weak:
        ctx.set_ciphers("DEFAULT:@SECLEVEL=0")
    ctx.load_cert_chain(peer.cert_file, peer.key_file)
    return ctx


class _Recording(dict):
    """aiosmtpd looks every command up here: note its verb, and hang up past MAX_COMMANDS."""

    def __init__(self, methods: dict, protocol: LabSMTP):
        super().__init__(methods)
        self.protocol = protocol

    def get(self, command, default=None):
        session = self.protocol.lab_session
        if session is not None:
            session.commands.append(command[:16])
            if len(session.commands) > MAX_COMMANDS and self.protocol.transport is not None:
                self.protocol.transport.close()
        return super().get(command, default)


class _Handler:
    def __init__(self, peer: Peer):
        self.peer = peer

    async def handle_RCPT(self, server, session, envelope, address, rcpt_options):
        domain = address.rpartition("@")[2].lower().rstrip(".")
        own = domain == self.peer.domain or domain.endswith("." + self.peer.domain)
        if self.peer.relay == "open" or own:
            envelope.rcpt_tos.append(address)
            return "250 OK"
        return "554 5.7.1 Relay access denied"


class LabSMTP(SMTP):
    def __init__(self, peer: Peer, port: int, log: SessionLog, tls: ssl.SSLContext | None, implicit_tls: bool):
        super().__init__(_Handler(peer), hostname=peer.hostname, ident=IDENT,
                         tls_context=None if implicit_tls or not peer.starttls else tls,
                         timeout=max(IDLE_TIMEOUT, peer.greeting_delay + IDLE_TIMEOUT))
        self.peer = peer
        self.port = port
        self.log = log
        self.implicit_tls = implicit_tls
        self.lab_session: Session | None = None
        self._smtp_methods = _Recording(self._smtp_methods, self)

    def connection_made(self, transport) -> None:
        if self.lab_session is None:
            peername = transport.get_extra_info("peername") or ("?", 0)
            self.lab_session = Session(self.peer, self.port, f"{peername[0]} {peername[1]}", self.log)
            if self.implicit_tls:
                self.lab_session.tls = _version(transport)
        super().connection_made(transport)
        if self._tls_protocol is not None and self.lab_session is not None:
            self.lab_session.tls = _version(transport)

    def connection_lost(self, error) -> None:
        if self.lab_session is not None:
            self.lab_session.finish()
        super().connection_lost(error)

    async def _handle_client(self) -> None:
        if self.peer.greeting_delay:
            try:
                await asyncio.sleep(self.peer.greeting_delay)
            except asyncio.CancelledError:       # the client gave up (EOF): hang up too
                if self.transport is not None:
                    self.transport.close()
                raise
        await super()._handle_client()

    async def push(self, status) -> None:
        if isinstance(status, str) and status == f"220 {self.hostname} {IDENT}" and self.peer.greeting:
            status = greeting_line(self.peer)
        await super().push(status)

    async def smtp_DATA(self, arg: str) -> None:
        await self.push("554 5.7.1 deliverck lab: this peer never accepts a message")


def _version(transport) -> str | None:
    obj = transport.get_extra_info("ssl_object")
    return obj.version() if obj is not None else None


async def _raw(peer: Peer, port: int, log: SessionLog, reader: asyncio.StreamReader,
               writer: asyncio.StreamWriter) -> None:
    """http, close, ehlo-close, ehlo-hang, and non-2xx greetings (RFC 5321 3.1: after 554, 503 to all
    but QUIT)."""
    peername = writer.get_extra_info("peername") or ("?", 0)
    session = Session(peer, port, f"{peername[0]} {peername[1]}", log)
    try:
        if peer.behaviour == "close":
            return
        if peer.behaviour == "http":
            writer.write(HTTP_400)
            await writer.drain()
            try:
                await asyncio.wait_for(reader.read(4096), 2.0)      # let the client see it, then hang up
            except TimeoutError:
                pass
            return
        if peer.greeting_delay:
            try:
                if not await asyncio.wait_for(reader.read(1), peer.greeting_delay):
                    return                       # the client gave up
            except TimeoutError:
                pass
        greeting = greeting_line(peer) or f"220 {peer.hostname} {IDENT}"
        writer.write(greeting.encode() + b"\r\n")
        await writer.drain()
        if peer.greeting.startswith("421"):
            return
        while len(session.commands) < MAX_COMMANDS:
            try:
                line = await asyncio.wait_for(reader.readuntil(b"\n"), IDLE_TIMEOUT)
            except (TimeoutError, asyncio.IncompleteReadError, asyncio.LimitOverrunError):
                return
            verb = line.split(b" ", 1)[0].strip().upper().decode("ascii", "replace")[:16]
            session.commands.append(verb)
            if peer.behaviour == "ehlo-close":
                return                           # greets, then hangs up at the first command
            if peer.behaviour == "ehlo-hang":
                try:                             # greets, then never answers (until the client leaves)
                    await asyncio.wait_for(reader.read(1), IDLE_TIMEOUT)
                except TimeoutError:
                    pass
                return
            if verb == "QUIT":
                writer.write(b"221 2.0.0 Bye\r\n")
                await writer.drain()
                return
            writer.write(NO_SERVICE.encode() + b"\r\n")
            await writer.drain()
    except (ConnectionError, OSError):
        pass
    finally:
        session.finish()
        writer.close()


class Filtered:
    """A port that swallows connection attempts, as a dropping firewall does.

    It listens with a backlog of 0 and fills its own accept queue; Linux
    then drops further SYNs, so clients see a connect timeout, not a refusal.
    """

    def __init__(self, address: str, port: int) -> None:
        family = socket.AF_INET6 if ":" in address else socket.AF_INET
        self.listener = socket.socket(family, socket.SOCK_STREAM)
        self.listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self.listener.bind((address, port))
        self.listener.listen(0)
        self.fillers = []
        for _ in range(3):
            c = socket.socket(family, socket.SOCK_STREAM)
            c.setblocking(False)
            c.connect_ex((address, port))
            self.fillers.append(c)

    def close(self) -> None:
        for c in self.fillers:
            c.close()
        self.listener.close()


async def serve(peer: Peer, log: SessionLog) -> list:
    """Bind every port of `peer`; return the servers (kept open by the caller)."""
    loop = asyncio.get_running_loop()
    tls = tls_context(peer)
    servers: list[Filtered | asyncio.AbstractServer] = []
    for port in peer.ports:
        implicit = port == 465
        if peer.behaviour == "filtered":
            servers.append(Filtered(peer.address, port))
            continue
        if peer.behaviour == "smtp" and not (peer.greeting and not peer.greeting.startswith("2")):
            servers.append(await loop.create_server(
                lambda port=port, implicit=implicit: LabSMTP(peer, port, log, tls, implicit),
                host=peer.address, port=port, ssl=tls if implicit else None))
        else:
            servers.append(await asyncio.start_server(
                functools.partial(_raw, peer, port, log),
                host=peer.address, port=port, limit=MAX_LINE))
    return servers
