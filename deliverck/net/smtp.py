"""The SMTP probe: one session per address, never a message.

connect -> greeting -> EHLO -> STARTTLS -> EHLO -> [relay test: MAIL, RCPT,
RSET] -> QUIT.  DATA is never sent.  Every phase has its own time limit and
the whole session a budget; aiosmtplib bounds every reply (line length and
total size).  What happened is recorded as facts (`SmtpSession`) that the
checks reason about; nothing here decides what is good or bad.
"""

from __future__ import annotations

import _ssl
import asyncio
import enum
import errno
import os
import re
import socket
import ssl
import time
import warnings
from dataclasses import dataclass

import aiosmtplib
from aiosmtplib import SMTPResponse

# RFC 2606 names: a relay test can never deliver to, or be mistaken for, a real party.
RELAY_SENDER = "deliverck-relay-test@example.org"
RELAY_RECIPIENT = "deliverck-relay-test@example.net"
MAX_TRANSCRIPT = 200


class Outcome(str, enum.Enum):
    OK = "ok"                        # greeted with 220
    REFUSED = "refused"              # TCP connection refused
    CONNECT_TIMEOUT = "connect_timeout"
    UNREACHABLE = "unreachable"      # no route (network or host unreachable)
    TARPIT = "tarpit"                # connected, greeting did not come in time
    CLOSED = "closed"                # closed before or instead of a greeting
    NOT_SMTP = "not_smtp"            # something answered, but not SMTP
    GREETING_REJECTED = "greeting_rejected"  # 5xx greeting (e.g. 554 no service)
    GREETING_DEFERRED = "greeting_deferred"  # 4xx greeting (e.g. 421 busy)
    ERROR = "error"


@dataclass(frozen=True)
class Reply:
    code: int
    text: str                        # as the server sent it, lines joined by "\n"
    elapsed_ms: int = 0
    at: float = 0.0                  # wall clock (time.time()) when the reply was complete

    @property
    def lines(self) -> tuple[str, ...]:
        return tuple(self.text.split("\n"))

    @property
    def first_word(self) -> str:
        words = self.lines[0].split()
        return words[0] if words else ""

    def line(self) -> str:
        return f"{self.code} {' / '.join(self.lines)}"

    def wire(self) -> str:
        """The reply as the server sent it, its lines joined by a space ("554-a 554 b"): what a
        receiving MTA such as Postfix quotes in its bounce."""
        lines = self.lines
        return " ".join(f"{self.code}{'-' if i < len(lines) - 1 else ' '}{ln}" for i, ln in enumerate(lines))


@dataclass(frozen=True)
class TlsFacts:
    version: str = ""                # "TLSv1.3"
    cipher: str = ""
    chain: tuple[bytes, ...] = ()    # DER, leaf first, as presented
    error: str = ""                  # handshake failure


@dataclass(frozen=True)
class RelayResult:
    mail: Reply | None
    rcpt: Reply | None

    @property
    def open(self) -> bool:
        return self.rcpt is not None and self.rcpt.code in (250, 251)


@dataclass(frozen=True)
class SmtpSession:
    ip: str
    port: int
    host: str                        # the MX host name we connected for (SNI)
    outcome: Outcome
    detail: str = ""
    connect_ms: int = 0
    greeting: Reply | None = None
    ehlo_name: str = ""              # the name we sent
    ehlo: Reply | None = None
    helo: Reply | None = None        # only when EHLO was refused
    extensions: tuple[str, ...] = () # EHLO keywords, upper case
    starttls: Reply | None = None
    tls: TlsFacts | None = None
    ehlo_tls: Reply | None = None
    relay: RelayResult | None = None
    first_line: str = ""             # NOT_SMTP: the first line the server sent, as received
    transcript: tuple[str, ...] = ()
    ehlo_error: str = ""             # greeted, but EHLO got no reply: "timeout" or "closed"
    ehlo_error_text: str = ""        # ... in plain words

    @property
    def usable(self) -> bool:
        """Greeted and answered EHLO (or HELO): a sender can go on to hand over mail."""
        return self.outcome is Outcome.OK and not self.ehlo_error

    @property
    def connected(self) -> bool:
        return self.outcome not in (Outcome.REFUSED, Outcome.CONNECT_TIMEOUT, Outcome.UNREACHABLE, Outcome.ERROR) \
            or self.greeting is not None

    @property
    def starttls_offered(self) -> bool:
        return "STARTTLS" in self.extensions


@dataclass
class ProbeOptions:
    ehlo_name: str
    timeout: float = 10.0            # per phase
    budget: float = 25.0             # whole session
    relay_test: bool = True
    tls_context: ssl.SSLContext | None = None
    implicit_tls: bool = False       # port 465 (RFC 8314): TLS before the greeting


# An RFC 5322 date-time (3.3) inside a greeting: Exchange ("... ready at Mon, 23 Nov
# 2026 14:22:11 -0800"), Sendmail ("...; Mon, 23 Nov 2026 14:22:11 -0800"), Exim.
_MONTHS = "Jan|Feb|Mar|Apr|May|Jun|Jul|Aug|Sep|Oct|Nov|Dec"
_DATE = re.compile(r"(?:(?:Mon|Tue|Wed|Thu|Fri|Sat|Sun),\s*)?\d{1,2}\s+(?:" + _MONTHS + r")\s+\d{4}\s+"
                   r"\d{1,2}:\d{2}:\d{2}\s+(?:[+-]\d{4}|UT|GMT|[ECMP][SD]T)\b", re.IGNORECASE)


def greeting_clock(text: str) -> float | None:
    """The server's clock from a date-time in its greeting, as seconds since the epoch.

    None when the greeting carries no date with a usable zone: a date in
    "-0000" (RFC 5322 3.3: zone unknown) says nothing about the clock.
    """
    from email.utils import parsedate_to_datetime

    m = _DATE.search(text)
    if not m:
        return None
    try:
        when = parsedate_to_datetime(m.group(0))
    except (TypeError, ValueError, OverflowError):
        return None
    if when.tzinfo is None:
        return None
    return when.timestamp()


def probe_tls_context() -> ssl.SSLContext:
    """Accept anything so we can *see* what the server offers; judging is tls.py's job."""
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    ctx.check_hostname = False
    ctx.verify_mode = ssl.CERT_NONE
    try:
        # Let OpenSSL talk to old servers so they can be reported, not just fail.
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", DeprecationWarning)
            ctx.minimum_version = ssl.TLSVersion.TLSv1
        ctx.set_ciphers("DEFAULT:@SECLEVEL=0")
    except (ValueError, ssl.SSLError):
        pass
    return ctx


def default_ehlo_name() -> str:
    """This machine's name if it is fully qualified, else one that cannot be mistaken for anyone's."""
    name = socket.gethostname().strip().rstrip(".").lower()
    if "." in name and not name.startswith("localhost") and not name.endswith((".local", ".localdomain")):
        return name
    return "deliverck-probe.invalid"


def _reply(r: SMTPResponse, start: float) -> Reply:
    return Reply(r.code, r.message, int((time.monotonic() - start) * 1000), time.time())


def _chain(ssl_object) -> tuple[bytes, ...]:
    try:
        # Public in Python 3.13; the private _sslobj method exists since 3.10.
        getter = getattr(ssl_object, "get_unverified_chain", None) or ssl_object._sslobj.get_unverified_chain
        certs = getter() or []
        return tuple(c.public_bytes(_ssl.ENCODING_DER) if not isinstance(c, bytes) else c for c in certs)
    except Exception:
        leaf = ssl_object.getpeercert(binary_form=True)
        return (leaf,) if leaf else ()


class _Recorder:
    def __init__(self) -> None:
        self.lines: list[str] = []
        self.last_error: BaseException | None = None    # of the last command that got no reply

    def sent(self, text: str) -> None:
        if len(self.lines) < MAX_TRANSCRIPT:
            self.lines.append(f"C: {text}")

    def got(self, reply: Reply | None, note: str = "") -> None:
        if len(self.lines) < MAX_TRANSCRIPT:
            if reply is not None:
                for i, ln in enumerate(reply.lines):
                    sep = "-" if i < len(reply.lines) - 1 else " "
                    self.lines.append(f"S: {reply.code}{sep}{ln}")
            if note:
                self.lines.append(f"-- {note}")


async def probe(ip: str, host: str, port: int, opts: ProbeOptions) -> SmtpSession:
    """Run one SMTP session against ip:port.  Never raises for network trouble."""
    rec = _Recorder()
    facts: dict = dict(ip=ip, port=port, host=host, ehlo_name=opts.ehlo_name)
    try:
        async with asyncio.timeout(opts.budget):
            return await _session(ip, host, port, opts, rec, facts)
    except TimeoutError:
        phase = facts.pop("phase", "session")
        outcome = facts.pop("outcome", None) or Outcome.ERROR
        rec.got(None, f"session budget of {opts.budget:g}s spent during {phase}")
        return SmtpSession(outcome=outcome, detail=f"the session took longer than {opts.budget:g}s ({phase})",
                           transcript=tuple(rec.lines), **_clean(facts))


CLOSED_BEFORE_GREETING = "the server closed the connection before sending a greeting"
_MALFORMED = "Malformed SMTP response line:"

# OpenSSL's reason codes (ssl.SSLError.reason) in a mail administrator's words.
_TLS_REASONS = {
    "WRONG_VERSION_NUMBER": "the server's answer to the handshake was not TLS",
    "UNSUPPORTED_PROTOCOL": "the server and deliverck have no TLS version in common",
    "NO_PROTOCOLS_AVAILABLE": "the server and deliverck have no TLS version in common",
    "TLSV1_ALERT_PROTOCOL_VERSION": "the server refused every TLS version offered",
    "SSLV3_ALERT_HANDSHAKE_FAILURE": "the server aborted the handshake (no cipher or TLS version in common)",
    "NO_SHARED_CIPHER": "the server and deliverck have no cipher in common",
    "NO_CIPHERS_AVAILABLE": "the server and deliverck have no cipher in common",
    "UNEXPECTED_EOF_WHILE_READING": "the server closed the connection during the TLS handshake",
    "TLSV1_ALERT_INTERNAL_ERROR": "the server reported an internal error during the TLS handshake",
    "TLSV1_UNRECOGNIZED_NAME": "the server has no certificate for the name asked for (SNI)",
    "RECORD_LAYER_FAILURE": "the server broke off the TLS handshake",
}


def _offending_line(message: str) -> str:
    """The line aiosmtplib could not parse as a reply, without its own prefix."""
    if not message.startswith(_MALFORMED):
        return ""
    return message[len(_MALFORMED):].strip(" \t\r\n")[:300]


def in_words(e: BaseException) -> str:
    """What went wrong, in plain words rather than a library's exception text (which the
    transcript keeps)."""
    seen = 0
    cur: BaseException | None = e
    while cur is not None and seen < 6:
        if isinstance(cur, ssl.SSLEOFError):
            return _TLS_REASONS["UNEXPECTED_EOF_WHILE_READING"]
        if isinstance(cur, ssl.SSLError):
            reason = getattr(cur, "reason", None) or ""
            if reason in _TLS_REASONS:
                return _TLS_REASONS[reason]
            return f"the TLS handshake failed ({reason.lower().replace('_', ' ')})" if reason \
                else "the TLS handshake failed"
        if isinstance(cur, (aiosmtplib.SMTPServerDisconnected, ConnectionResetError, ConnectionAbortedError,
                            BrokenPipeError)):
            return "the server closed the connection"
        if isinstance(cur, (aiosmtplib.SMTPTimeoutError, TimeoutError)):
            return "the server did not answer in time"
        if isinstance(cur, OSError) and cur.errno:
            return os.strerror(cur.errno).lower()
        cur = cur.__cause__ or cur.__context__
        seen += 1
    return f"the session failed unexpectedly ({type(e).__name__}; the transcript shows the details)"


def _clean(facts: dict) -> dict:
    return {k: v for k, v in facts.items() if k not in ("phase", "outcome")}


async def _connect(ip: str, port: int, opts: ProbeOptions, rec: _Recorder, facts: dict) -> socket.socket | tuple[Outcome, str]:
    """The TCP connection, or why there is none (refused, unreachable, silent)."""
    loop = asyncio.get_running_loop()
    family = socket.AF_INET6 if ":" in ip else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_STREAM)
    sock.setblocking(False)
    start = time.monotonic()
    facts["phase"] = "connect"
    try:
        await asyncio.wait_for(loop.sock_connect(sock, (ip, port)), opts.timeout)
    except TimeoutError:
        sock.close()
        rec.got(None, f"connect to {ip}:{port} timed out after {opts.timeout:g}s")
        return Outcome.CONNECT_TIMEOUT, f"no answer to the TCP connection within {opts.timeout:g}s"
    except OSError as e:
        sock.close()
        connect_errors: dict[int | None, Outcome] = {
            errno.ECONNREFUSED: Outcome.REFUSED, errno.ENETUNREACH: Outcome.UNREACHABLE,
            errno.EHOSTUNREACH: Outcome.UNREACHABLE}
        outcome = connect_errors.get(e.errno, Outcome.ERROR)
        rec.got(None, f"connect to {ip}:{port}: {e.strerror or e}")
        return outcome, e.strerror or str(e)
    facts["connect_ms"] = int((time.monotonic() - start) * 1000)
    return sock


async def _greet(smtp: aiosmtplib.SMTP, opts: ProbeOptions, rec: _Recorder, facts: dict) -> tuple[Outcome, str] | None:
    """Wait for the 220 greeting; None when it came, else the outcome that ends the session
    (each way a server can refuse, stall or not speak SMTP has its own)."""
    facts["phase"], facts["outcome"] = "greeting", Outcome.TARPIT
    t = time.monotonic()
    try:
        greeting = await smtp.connect()
    except aiosmtplib.SMTPConnectResponseError as e:
        reply = Reply(e.code, e.message, int((time.monotonic() - t) * 1000), time.time())
        facts["greeting"] = reply
        rec.got(reply)
        if 400 <= e.code < 500:
            return Outcome.GREETING_DEFERRED, reply.line()
        if 500 <= e.code < 600:
            return Outcome.GREETING_REJECTED, reply.line()
        return Outcome.NOT_SMTP, f"it greeted with reply code {e.code}, not 220: {reply.wire()}"
    except (aiosmtplib.SMTPTimeoutError, TimeoutError):
        rec.got(None, f"no greeting within {opts.timeout:g}s")
        return Outcome.TARPIT, f"connected, but no greeting within {opts.timeout:g}s"
    except aiosmtplib.SMTPServerDisconnected as e:
        rec.got(None, f"closed before the greeting: {e}")
        return Outcome.CLOSED, CLOSED_BEFORE_GREETING
    except aiosmtplib.SMTPResponseException as e:
        # aiosmtplib's own words stay in the transcript; the finding gets plain ones.
        rec.got(None, f"not SMTP: {e.message}")
        facts["first_line"] = first = _offending_line(e.message)
        if first:
            return Outcome.NOT_SMTP, f"the server sent a line that is not an SMTP reply: {first!r}"
        return Outcome.NOT_SMTP, "the server sent a line too long for any SMTP reply"
    except aiosmtplib.SMTPConnectError as e:
        if isinstance(e.__cause__, aiosmtplib.SMTPServerDisconnected) or "EOF" in str(e):
            rec.got(None, f"closed before the greeting: {e}")
            return Outcome.CLOSED, CLOSED_BEFORE_GREETING
        rec.got(None, f"error: {e}")
        return Outcome.ERROR, in_words(e)
    except (aiosmtplib.SMTPException, OSError) as e:
        rec.got(None, f"error: {e}")
        return Outcome.ERROR, in_words(e)
    facts["greeting"] = g = _reply(greeting, t)
    facts.pop("outcome", None)
    rec.got(g)
    return None


async def _session(ip: str, host: str, port: int, opts: ProbeOptions, rec: _Recorder, facts: dict) -> SmtpSession:
    def done(outcome: Outcome, detail: str = "") -> SmtpSession:
        return SmtpSession(outcome=outcome, detail=detail, transcript=tuple(rec.lines), **_clean(facts))

    sock = await _connect(ip, port, opts, rec, facts)
    if not isinstance(sock, socket.socket):
        return done(*sock)
    smtp = aiosmtplib.SMTP(sock=sock, hostname=host or ip, timeout=opts.timeout, start_tls=False,
                           use_tls=opts.implicit_tls, tls_context=(opts.tls_context or probe_tls_context())
                           if opts.implicit_tls else None,
                           validate_certs=False, local_hostname=opts.ehlo_name)
    try:
        ended = await _greet(smtp, opts, rec, facts)
        if ended is not None:
            return done(*ended)
        if opts.implicit_tls:
            obj = smtp.get_transport_info("ssl_object")
            if obj is not None:
                facts["tls"] = _tls_facts(obj)

        facts["phase"] = "EHLO"
        if not await _ehlo(smtp, opts, rec, facts, "ehlo"):
            return done(Outcome.OK)
        if smtp.supports_extension("starttls") and not opts.implicit_tls:
            facts["phase"] = "STARTTLS"
            await _starttls(smtp, host, opts, rec, facts)
        if opts.relay_test and smtp.is_connected:
            facts["phase"] = "relay test"
            await _relay(smtp, rec, facts)
        facts["phase"] = "QUIT"
        if smtp.is_connected:
            await _command(rec, "QUIT", smtp.quit)
        return done(Outcome.OK)
    finally:
        smtp.close()


async def _command(rec: _Recorder, line: str, call) -> Reply | None:
    """Send one command (via `call()`), record it, and return the reply, whatever its code."""
    rec.sent(line)
    t = time.monotonic()
    try:
        reply = _reply(await call(), t)
    except aiosmtplib.SMTPResponseException as e:
        reply = Reply(e.code, e.message, int((time.monotonic() - t) * 1000))
    except (aiosmtplib.SMTPException, OSError) as e:
        rec.got(None, f"{line.split()[0]} failed: {e}")
        rec.last_error = e
        return None
    rec.got(reply)
    return reply


def _tls_facts(obj) -> TlsFacts:
    cipher = obj.cipher()
    return TlsFacts(version=obj.version() or "", cipher=cipher[0] if cipher else "", chain=_chain(obj))


async def _ehlo(smtp: aiosmtplib.SMTP, opts: ProbeOptions, rec: _Recorder, facts: dict, key: str) -> bool:
    """EHLO (falling back to HELO on the first one); True when ESMTP works."""
    name = opts.ehlo_name
    reply = await _command(rec, f"EHLO {name}", lambda: smtp.ehlo(hostname=name))
    if reply is None:
        if key == "ehlo" and rec.last_error is not None:
            # Greeted, then no answer to EHLO at all: no sender gets further than this.
            timed_out = isinstance(rec.last_error, (aiosmtplib.SMTPTimeoutError, TimeoutError))
            facts["ehlo_error"] = "timeout" if timed_out else "closed"
            facts["ehlo_error_text"] = in_words(rec.last_error)
        return False
    facts[key] = reply
    if reply.code == 250:
        # What the server offers in the clear decides STARTTLS; the EHLO after
        # TLS is recorded as its own reply.
        facts.setdefault("extensions", tuple(sorted(k.upper() for k in smtp.esmtp_extensions)))
        return True
    if key == "ehlo" and smtp.is_connected:
        helo = await _command(rec, f"HELO {name}", lambda: smtp.helo(hostname=name))
        if helo is not None:
            facts["helo"] = helo
    return False


async def _starttls(smtp: aiosmtplib.SMTP, host: str, opts: ProbeOptions, rec: _Recorder, facts: dict) -> None:
    rec.sent("STARTTLS")
    t = time.monotonic()
    ctx = opts.tls_context or probe_tls_context()
    try:
        r = await smtp.starttls(server_hostname=host or None, validate_certs=False, tls_context=ctx,
                                timeout=opts.timeout)
        facts["starttls"] = reply = _reply(r, t)
        rec.got(reply)
    except aiosmtplib.SMTPResponseException as e:
        facts["starttls"] = reply = Reply(e.code, e.message, int((time.monotonic() - t) * 1000))
        rec.got(reply)
        facts["tls"] = TlsFacts(error=f"STARTTLS refused: {reply.line()}")
        return
    except (aiosmtplib.SMTPException, OSError, ssl.SSLError) as e:
        rec.got(None, f"TLS handshake failed: {e or type(e).__name__}")
        facts["tls"] = TlsFacts(error=in_words(e))
        return
    obj = smtp.get_transport_info("ssl_object")
    if obj is None:
        facts["tls"] = TlsFacts(error="no TLS session after STARTTLS")
        return
    facts["tls"] = tls = _tls_facts(obj)
    rec.got(None, f"TLS established: {tls.version} {tls.cipher}, {len(tls.chain)} certificate(s)")
    await _ehlo(smtp, opts, rec, facts, "ehlo_tls")


async def _relay(smtp: aiosmtplib.SMTP, rec: _Recorder, facts: dict) -> None:
    rcpt = None
    mail = await _command(rec, f"MAIL FROM:<{RELAY_SENDER}>", lambda: smtp.mail(RELAY_SENDER))
    if mail is not None and mail.code == 250:
        rcpt = await _command(rec, f"RCPT TO:<{RELAY_RECIPIENT}>", lambda: smtp.rcpt(RELAY_RECIPIENT))
        if smtp.is_connected:
            await _command(rec, "RSET", smtp.rset)
    facts["relay"] = RelayResult(mail, rcpt)
