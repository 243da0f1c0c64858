"""`deliverck listen`: a temporary receiving SMTP server that the user's own mail server sends a test
message to, so the report can judge the real connection (address, HELO name, TLS) and the real
message instead of what DNS suggests.  The CLI (deliverck/cli/listen.py) prints and judges; this
module only receives.

Safety, by construction (issue 18, "deliverck listen"): it binds only the address it is given;
accepts one recipient and relays nothing; offers no AUTH, VRFY or EXPN; keeps nothing but the
accepted messages, in memory; and every client, however hostile, is bounded in line length,
message size, commands, idle time and connection life (listen_smtp.py), while the whole run ends
after `count` messages or `timeout` seconds of wall clock, whichever comes first.

The SMTP protocol is aiosmtpd's, served on our own asyncio server (no aiosmtpd Controller and its
thread), so the event loop, the deadlines and the cleanup are the caller's.
"""

from __future__ import annotations

import asyncio
import errno
import ipaddress
import logging
import re
import secrets
import socket
import ssl
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from deliverck.errors import DeliverckError, UsageError
from deliverck.message.listen_smtp import Limits, ListenSMTP, Recipient, Refuser, ServerState
from deliverck.message.listen_tls import server_context
from deliverck.message.model import MAX_MESSAGE_BYTES, Message, Session

GRACE = 2.0             # after the last message: time for the sender's QUIT before connections are dropped
_REPLY = re.compile(r"4[0-9][0-9]( [45]\.[0-9]{1,3}\.[0-9]{1,3}( [ -~]{1,200})?)?")
_HOSTNAME = re.compile(r"[A-Za-z0-9_.:\[\]-]{1,253}")
_ACCEPTED = "250 2.0.0 Ok: received by deliverck listen (judged, never delivered)"


class ListenError(DeliverckError, OSError):
    """The address could not be bound (in use, not allowed): one line saying what to do."""

    def __str__(self) -> str:
        return str(self.strerror or self.args[0])


@dataclass(frozen=True)
class ListenOptions:
    address: str = "0.0.0.0"
    port: int = 25
    rcpt: str | None = None             # None: a random token address, any domain
    timeout: float = 600.0              # wall clock for the whole run
    count: int = 1
    reply: str = ""                     # "": 250; "451" or "451 4.7.1 text": that at end of DATA
    tls_cert: Path | None = None
    tls_key: Path | None = None
    max_size: int = MAX_MESSAGE_BYTES
    hostname: str = ""                  # "": socket.getfqdn()
    idle_timeout: float = 60.0          # per connection, without a command or a DATA line
    connection_limit: float = 300.0     # the whole life of one connection
    max_connections: int = 20           # at once; more get 421
    max_per_ip: int = 5                 # at once from one client address, so one host cannot take every slot


@dataclass(frozen=True)
class Ready:
    """What the CLI prints while waiting."""

    address: str
    port: int
    rcpt: str                           # the address to send to
    tls: str                            # "given certificate ..." / "self-signed for NAME ..."
    any_domain: bool = False            # the token's local part is accepted at any domain
    hostname: str = ""
    timeout: float = 0.0
    count: int = 1
    hints: tuple[str, ...] = field(default=())

    def lines(self) -> list[str]:
        """The instructions, one per line (plain text: nothing here comes from the network)."""
        where = "every IPv4 address of this host" if self.address == "0.0.0.0" else \
            "every IPv6 address of this host" if self.address == "::" else self.address
        out = [f"Listening on {where}, port {self.port} (STARTTLS: {self.tls}).",
               f"Send {'one test message' if self.count == 1 else f'{self.count} test messages'} "
               f"from your mail server to: {self.rcpt}"]
        if self.any_domain:
            local = self.rcpt.rpartition("@")[0]
            out.append(f"Any domain works after {local}@ : give a test domain an MX record pointing at this "
                       f"host (e.g. `test.example.org. MX 10 {self.hostname}.`, and an A record for that name "
                       "if it has none), then send to "
                       f"{local}@test.example.org.")
        else:
            out.append("Point the recipient domain's MX at this host, or add a transport rule on your server "
                       f"(Postfix: `domain smtp:[{self.address}]:{self.port}` in transport_maps).")
        if self.port != 25:
            out.append(f"Port {self.port} is not 25: mail servers send to 25, so route the test domain here "
                       "with a transport rule (Postfix transport_maps, Exchange send connector with a smart host).")
        if self.tls.startswith("self-signed"):
            out.append("The certificate is self-signed: opportunistic TLS (the default of mail servers) accepts it; "
                       "a sender that verifies certificates (DANE, MTA-STS enforce) needs --tls-cert/--tls-key.")
        out.append(f"Waiting up to {self.timeout:g} s; nothing is relayed, the message is judged and dropped.")
        out.extend(self.hints)
        return out


async def receive(opts: ListenOptions, on_ready: Callable[[Ready], None],
                  on_message: Callable[[Message, Session], Awaitable[None]]) -> int:
    """Serve until `count` messages arrived or `timeout` seconds passed; return how many arrived.

    `on_message` is awaited after the sender got its reply, one message at a time."""
    _validate(opts)
    loop = asyncio.get_running_loop()
    deadline = loop.time() + opts.timeout
    hostname = opts.hostname or _default_hostname()
    if not _HOSTNAME.fullmatch(hostname):
        raise UsageError(f"--hostname {hostname!r}: give the host's name as letters, digits, dots and hyphens")
    recipient, rcpt_text = _recipient(opts, hostname)
    tls_context, tls_text = server_context(opts.tls_cert, opts.tls_key, hostname)
    state = ServerState(recipient=recipient, reply=_reply_line(opts.reply), count=opts.count,
                        local_address="",
                        limits=Limits(max_size=opts.max_size, idle=min(opts.idle_timeout, opts.timeout),
                                      life=min(opts.connection_limit, opts.timeout),
                                      connections=opts.max_connections, per_ip=opts.max_per_ip))

    def factory() -> asyncio.Protocol:
        if state.closing or len(state.connections) >= state.limits.connections:
            return Refuser()
        return ListenSMTP(state, hostname, tls_context, loop)

    server = await _bind(loop, factory, opts)
    quiet = _Quiet(loop)
    received = 0
    try:
        port = server.sockets[0].getsockname()[1]
        state.local_address = f"[{opts.address}]:{port}" if ":" in opts.address else f"{opts.address}:{port}"
        on_ready(Ready(address=opts.address, port=port, rcpt=rcpt_text, tls=tls_text,
                       any_domain=recipient.domain is None, hostname=hostname, timeout=opts.timeout,
                       count=opts.count))
        while received < opts.count:
            left = deadline - loop.time()
            if left <= 0:
                break
            try:
                message, session = await asyncio.wait_for(state.queue.get(), left)
            except TimeoutError:
                break
            received += 1
            if received >= opts.count:
                server.close()              # stop accepting before the (possibly long) judgement
            await on_message(message, session)
        return received
    finally:
        await _shutdown(server, state, loop, deadline)
        quiet.restore()


def _validate(opts: ListenOptions) -> None:
    try:
        ipaddress.ip_address(opts.address)
    except ValueError:
        raise UsageError(f"--address {opts.address!r}: give an IP address of this host to listen on "
                         "(e.g. 0.0.0.0 for every IPv4 address, or 192.0.2.25)") from None
    if not 0 <= opts.port <= 65535:
        raise UsageError(f"--port {opts.port}: give a port from 1 to 65535 (25 is where mail servers send)")
    if not opts.timeout > 0:
        raise UsageError(f"--timeout {opts.timeout}: give a number of seconds above 0")
    if opts.count < 1:
        raise UsageError(f"--count {opts.count}: give at least 1")
    if opts.max_size < 1024:
        raise UsageError(f"maximum message size {opts.max_size}: give at least 1024 bytes")
    if min(opts.idle_timeout, opts.connection_limit) <= 0 or min(opts.max_connections, opts.max_per_ip) < 1:
        raise UsageError("connection limits must be above 0")
    _reply_line(opts.reply)


def _reply_line(reply: str) -> str:
    reply = reply.strip()
    if not reply:
        return _ACCEPTED
    if not _REPLY.fullmatch(reply):
        raise UsageError(f"--reply {reply!r}: give a 4xx code such as 451, or a whole line such as "
                         "'451 4.7.1 Try again later' (the default is 250, accepted)")
    if " " in reply:
        return reply
    return f"{reply} 4.0.0 Temporary failure asked for with deliverck listen --reply {reply}"


def _default_hostname() -> str:
    name = socket.getfqdn()
    return name if _HOSTNAME.fullmatch(name) else "localhost"


def _recipient(opts: ListenOptions, hostname: str) -> tuple[Recipient, str]:
    literal = f"[IPv6:{opts.address}]" if ":" in opts.address else f"[{opts.address}]"
    own = {hostname.lower().rstrip(".")}
    if opts.address not in ("0.0.0.0", "::"):
        own.add(literal.lower())
    if opts.rcpt is None:
        local = f"deliverck-{secrets.token_hex(5)}"
        shown = hostname if "." in hostname and not _is_ip(hostname) else literal
        return Recipient(local, None, frozenset(own)), f"{local}@{shown}"
    rcpt = opts.rcpt.strip().removeprefix("<").removesuffix(">")
    local, at, domain = rcpt.rpartition("@")
    if not at or not local or not domain or len(rcpt) > 254 or any(c.isspace() or ord(c) < 32 for c in rcpt):
        raise UsageError(f"--rcpt {opts.rcpt!r}: give one address such as test@mail.example.org")
    domain = domain.lower().rstrip(".")
    return Recipient(local, domain, frozenset(own | {domain})), f"{local}@{domain}"


def _is_ip(name: str) -> bool:
    try:
        ipaddress.ip_address(name)
        return True
    except ValueError:
        return False


async def _bind(loop: asyncio.AbstractEventLoop, factory: Callable[[], asyncio.Protocol],
                opts: ListenOptions) -> asyncio.Server:
    try:
        return await loop.create_server(factory, host=opts.address, port=opts.port, reuse_address=True,
                                        backlog=64)
    except OSError as e:
        where = f"{opts.address} port {opts.port}"
        if e.errno == errno.EADDRINUSE:
            raise ListenError(e.errno, f"{where} is already in use: stop the server listening there "
                                       "(often the local MTA), or choose another --port with a transport rule") \
                from None
        if e.errno == errno.EACCES:
            raise ListenError(e.errno, f"permission denied on {where}: ports below 1024 need root or "
                                       "CAP_NET_BIND_SERVICE; or use --port 2525 and a transport rule") from None
        if e.errno == errno.EADDRNOTAVAIL:
            raise UsageError(f"--address {opts.address} is not an address of this host: give one it has "
                             "(`ip addr`), or 0.0.0.0") from None
        raise ListenError(e.errno, f"cannot listen on {where}: {e.strerror or e}") from None


async def _shutdown(server: asyncio.Server, state: ServerState, loop: asyncio.AbstractEventLoop,
                    deadline: float) -> None:
    """Stop accepting, give open sessions a moment to say QUIT, then drop what is left."""
    state.closing = True
    server.close()
    grace_end = min(loop.time() + GRACE, max(deadline, loop.time()))
    while state.connections and loop.time() < grace_end:
        await asyncio.sleep(0.05)
    state.abort_all()
    await asyncio.sleep(0)
    try:
        await asyncio.wait_for(server.wait_closed(), GRACE)
    except TimeoutError:
        pass


class _Quiet:
    """Keep the clients' noise off the user's terminal while serving: aiosmtpd logs client commands
    (remote text) at WARNING, and asyncio reports every failed TLS handshake through the loop's
    exception handler.  Both are restored when `receive` returns."""

    def __init__(self, loop: asyncio.AbstractEventLoop):
        self.loop = loop
        self.logger = logging.getLogger("mail.log")
        self.level = self.logger.level
        self.logger.setLevel(logging.CRITICAL)
        self.previous = loop.get_exception_handler()
        loop.set_exception_handler(self._handle)

    def _handle(self, loop: asyncio.AbstractEventLoop, context: dict[str, Any]) -> None:
        if isinstance(context.get("exception"), (ssl.SSLError, ConnectionError, TimeoutError)):
            return
        if isinstance(context.get("protocol"), (ListenSMTP, Refuser)) or "SSL" in str(context.get("message", "")):
            return
        if self.previous is not None:
            self.previous(loop, context)
        else:
            loop.default_exception_handler(context)

    def restore(self) -> None:
        self.logger.setLevel(self.level)
        self.loop.set_exception_handler(self.previous)
