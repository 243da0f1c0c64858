"""Kerberos probes: is a KDC there, and what time does it think it is?

One AS-REQ (RFC 4120 3.1.1) for a principal that needs no credentials is
enough to learn both.  A live KDC answers a request for an unknown client
with KRB-ERROR KDC_ERR_C_PRINCIPAL_UNKNOWN, or, for an account that exists,
KDC_ERR_PREAUTH_REQUIRED; every KRB-ERROR carries the KDC's clock in
stime/susec (RFC 4120 5.9.1).  No password, key or ticket is ever involved.

Messages are encoded and decoded with minikerberos' ASN.1 definitions of
RFC 4120 (built on asn1crypto), never by hand.  Transport (RFC 4120 7.2):
UDP datagrams, and TCP with a four-byte big-endian length before each message.

Every probe has one deadline: a silent (filtered) port costs exactly one
timeout.  UDP requests are re-sent inside that window, not after it.
Replies are bounded (MAX_REPLY bytes).
"""

from __future__ import annotations

import asyncio
import datetime as dt
import enum
import errno
import os
import secrets
import socket
import struct
import time
from dataclasses import dataclass

KERBEROS_PORT = 88
KPASSWD_PORT = 464
MAX_REPLY = 65536          # bytes; a KRB-ERROR is a few hundred

# RFC 4120 7.5.9 (and RFC 6113 for the FAST ones); the codes a probe meets.
ERROR_NAMES = {
    0: "KDC_ERR_NONE",
    1: "KDC_ERR_NAME_EXP",
    3: "KDC_ERR_BAD_PVNO",
    6: "KDC_ERR_C_PRINCIPAL_UNKNOWN",
    7: "KDC_ERR_S_PRINCIPAL_UNKNOWN",
    12: "KDC_ERR_POLICY",
    14: "KDC_ERR_ETYPE_NOSUPP",
    18: "KDC_ERR_CLIENT_REVOKED",
    24: "KDC_ERR_PREAUTH_FAILED",
    25: "KDC_ERR_PREAUTH_REQUIRED",
    37: "KRB_AP_ERR_SKEW",
    41: "KRB_AP_ERR_MODIFIED",
    52: "KRB_ERR_RESPONSE_TOO_BIG",
    60: "KRB_ERR_GENERIC",
    68: "KDC_ERR_WRONG_REALM",
}
PREAUTH_REQUIRED = 25
WRONG_REALM = 68

# Encryption types offered in the request (RFC 3962, RFC 8009, RFC 4757):
# modern ones first, RC4 last so that an AD domain that still needs it answers.
ETYPES = (18, 17, 20, 19, 23)
NT_PRINCIPAL = 1
NT_SRV_INST = 2


def error_name(code: int) -> str:
    return ERROR_NAMES.get(code, f"KRB-ERROR {code}")


class PortOutcome(str, enum.Enum):
    ANSWERED = "answered"        # a Kerberos message came back
    OPEN = "open"                # TCP connected (nothing was asked)
    REFUSED = "refused"          # TCP RST / ICMP port unreachable
    TIMEOUT = "timeout"          # silence: filtered, or a dead host
    UNREACHABLE = "unreachable"  # no route
    CLOSED = "closed"            # TCP closed without a reply
    NOT_KERBEROS = "not_kerberos"  # something answered, but not Kerberos
    ERROR = "error"              # any other local or network error


@dataclass(frozen=True)
class KdcReply:
    kind: str                    # "KRB-ERROR" or "AS-REP"
    error_code: int | None = None
    realm: str = ""
    stime: float | None = None   # KDC clock, seconds since the epoch (with susec)
    e_text: str = ""

    @property
    def error(self) -> str:
        return error_name(self.error_code) if self.error_code is not None else self.kind


@dataclass(frozen=True)
class PortProbe:
    ip: str
    port: int
    proto: str                   # "tcp" / "udp"
    outcome: PortOutcome
    detail: str = ""
    rtt_ms: int = 0              # request sent (last try) -> reply received
    reply: KdcReply | None = None
    skew: float | None = None    # KDC clock minus ours, at the midpoint of the exchange

    @property
    def label(self) -> str:
        return f"{self.proto.upper()} {self.port}"

    def describe(self) -> str:
        head = f"{self.ip} {self.label}: {self.outcome.value}"
        if self.reply is not None:
            head += f" ({self.reply.error}, {self.rtt_ms} ms"
            if self.skew is not None:
                head += f", KDC clock {round(self.skew, 3) + 0.0:+.3f} s from ours"
            head += ")"
        elif self.detail:
            head += f" ({self.detail})"
        return head


def probe_principal() -> str:
    """A client name no directory holds: the KDC answers C_PRINCIPAL_UNKNOWN,
    and no real account is touched (no lockout counter moves)."""
    return "deliverck-probe-" + secrets.token_hex(6)


def _principal_name(asn1, principal: str):
    parts = principal.split("/")
    return asn1.PrincipalName({"name-type": NT_PRINCIPAL if len(parts) == 1 else NT_SRV_INST,
                               "name-string": parts})


def build_as_req(realm: str, principal: str, nonce: int | None = None) -> bytes:
    """An AS-REQ without pre-authentication for principal@realm (RFC 4120 5.4.1)."""
    from minikerberos.protocol import asn1_structs as asn1

    till = dt.datetime(2037, 9, 13, 2, 48, 5, tzinfo=dt.UTC)
    body = {
        "kdc-options": asn1.KDCOptions(set(["forwardable", "renewable", "proxiable"])),
        "cname": _principal_name(asn1, principal),
        "realm": realm,
        "sname": asn1.PrincipalName({"name-type": NT_SRV_INST, "name-string": ["krbtgt", realm]}),
        "till": till,
        "rtime": till,
        "nonce": secrets.randbits(31) if nonce is None else nonce,
        "etype": list(ETYPES),
    }
    return asn1.AS_REQ({"pvno": 5, "msg-type": 10, "req-body": asn1.KDC_REQ_BODY(body)}).dump()


def parse_reply(data: bytes) -> KdcReply:
    """Decode what a KDC sent; ValueError when it is not a Kerberos reply."""
    from asn1crypto.core import load
    from minikerberos.protocol import asn1_structs as asn1

    if len(data) < 2:
        raise ValueError("reply too short")
    # [APPLICATION 30] KRB-ERROR starts 0x7e, [APPLICATION 11] AS-REP 0x6b.
    try:
        if data[0] == 0x7E:
            msg = asn1.KRB_ERROR.load(data, strict=True).native
            stime = msg["stime"]
            when = None
            if isinstance(stime, dt.datetime):
                if stime.tzinfo is None:
                    stime = stime.replace(tzinfo=dt.UTC)
                when = stime.timestamp() + (msg.get("susec") or 0) / 1e6
            e_text = msg.get("e-text") or ""
            return KdcReply("KRB-ERROR", int(msg["error-code"]), str(msg.get("realm") or ""), when,
                            e_text if isinstance(e_text, str) else repr(e_text))
        if data[0] == 0x6B:
            msg = asn1.AS_REP.load(data, strict=True).native
            return KdcReply("AS-REP", None, str(msg.get("crealm") or ""))
        load(data)          # some other DER: still not a Kerberos reply
    except (ValueError, TypeError, KeyError, OverflowError) as e:
        raise ValueError(f"undecodable Kerberos message ({e})") from None
    raise ValueError(f"not a Kerberos reply (first byte {data[0]:#04x})")


def _timed(ip: str, port: int, proto: str, data: bytes, sent: float, received: float) -> PortProbe:
    rtt = int((received - sent) * 1000)
    try:
        reply = parse_reply(data)
    except ValueError as e:
        return PortProbe(ip, port, proto, PortOutcome.NOT_KERBEROS, str(e), rtt)
    skew = None if reply.stime is None else reply.stime - (sent + received) / 2
    return PortProbe(ip, port, proto, PortOutcome.ANSWERED, rtt_ms=rtt, reply=reply, skew=skew)


# Keyed by OSError.errno, which may be None (that is an ERROR like any unlisted errno).
_CONNECT_ERRORS: dict[int | None, PortOutcome] = {
    errno.ECONNREFUSED: PortOutcome.REFUSED, errno.ENETUNREACH: PortOutcome.UNREACHABLE,
    errno.EHOSTUNREACH: PortOutcome.UNREACHABLE}


def _os_error(ip: str, port: int, proto: str, e: OSError) -> PortProbe:
    return PortProbe(ip, port, proto, _CONNECT_ERRORS.get(e.errno, PortOutcome.ERROR),
                     os.strerror(e.errno).lower() if e.errno else str(e))


async def probe_tcp(ip: str, port: int, request: bytes | None, timeout: float) -> PortProbe:
    """Connect; with a request, send it framed and read one framed reply."""
    loop = asyncio.get_running_loop()
    family = socket.AF_INET6 if ":" in ip else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_STREAM)
    sock.setblocking(False)
    start = time.monotonic()
    phase = "connect"
    try:
        async with asyncio.timeout(timeout):
            try:
                await loop.sock_connect(sock, (ip, port))
            except OSError as e:
                return _os_error(ip, port, "tcp", e)
            if request is None:
                return PortProbe(ip, port, "tcp", PortOutcome.OPEN, rtt_ms=int((time.monotonic() - start) * 1000))
            phase = "reply"
            sent = time.time()
            await loop.sock_sendall(sock, struct.pack(">I", len(request)) + request)
            head = await _recv_exactly(loop, sock, 4)
            if head is None:
                return PortProbe(ip, port, "tcp", PortOutcome.CLOSED, "closed without a reply")
            (length,) = struct.unpack(">I", head)
            if length & 0x80000000 or length > MAX_REPLY:
                return PortProbe(ip, port, "tcp", PortOutcome.NOT_KERBEROS,
                                 f"reply length {length} is not a Kerberos TCP frame (first bytes {head.hex()})")
            data = await _recv_exactly(loop, sock, length)
            received = time.time()
            if data is None:
                return PortProbe(ip, port, "tcp", PortOutcome.CLOSED, "closed in the middle of a reply")
            return _timed(ip, port, "tcp", data, sent, received)
    except TimeoutError:
        return PortProbe(ip, port, "tcp", PortOutcome.TIMEOUT, f"no answer within {timeout:g} s ({phase})")
    except OSError as e:
        return _os_error(ip, port, "tcp", e)
    finally:
        sock.close()


async def _recv_exactly(loop, sock: socket.socket, n: int) -> bytes | None:
    buf = bytearray()
    while len(buf) < n:
        chunk = await loop.sock_recv(sock, min(n - len(buf), MAX_REPLY))
        if not chunk:
            return None
        buf += chunk
    return bytes(buf)


class _Datagram(asyncio.DatagramProtocol):
    def __init__(self) -> None:
        self.reply: asyncio.Future = asyncio.get_running_loop().create_future()

    def datagram_received(self, data: bytes, addr) -> None:
        if not self.reply.done():
            self.reply.set_result((data, time.time()))

    def error_received(self, exc: Exception) -> None:
        if not self.reply.done():
            self.reply.set_exception(exc)

    def connection_lost(self, exc) -> None:
        if not self.reply.done():
            if exc is None:
                self.reply.cancel()       # closed by us: nobody waits any more
            else:
                self.reply.set_exception(exc)


async def probe_udp(ip: str, port: int, request: bytes, timeout: float, tries: int = 3) -> PortProbe:
    """Send the request (again, `tries` times in all, spread over the one timeout)."""
    loop = asyncio.get_running_loop()
    try:
        transport, proto = await loop.create_datagram_endpoint(_Datagram, remote_addr=(ip, port))
    except OSError as e:
        return _os_error(ip, port, "udp", e)
    sent = time.time()
    try:
        async with asyncio.timeout(timeout):
            interval = timeout / max(tries, 1)
            for attempt in range(max(tries, 1)):
                sent = time.time()
                transport.sendto(request)
                done, _ = await asyncio.wait({proto.reply}, timeout=None if attempt == tries - 1 else interval)
                if done:
                    break
            data, received = await proto.reply
    except TimeoutError:
        return PortProbe(ip, port, "udp", PortOutcome.TIMEOUT,
                         f"no answer within {timeout:g} s ({tries} datagrams sent)")
    except OSError as e:
        return _os_error(ip, port, "udp", e)
    finally:
        transport.close()
    if len(data) > MAX_REPLY:
        return PortProbe(ip, port, "udp", PortOutcome.NOT_KERBEROS, f"{len(data)}-byte datagram")
    return _timed(ip, port, "udp", data, sent, received)


@dataclass(frozen=True)
class KdcProbe:
    """Everything learnt about one KDC address."""

    ip: str
    host: str
    port: int
    udp: PortProbe
    tcp: PortProbe
    kpasswd: PortProbe | None

    @property
    def probes(self) -> tuple[PortProbe, ...]:
        return tuple(p for p in (self.udp, self.tcp, self.kpasswd) if p is not None)

    @property
    def answered(self) -> tuple[PortProbe, ...]:
        return tuple(p for p in (self.udp, self.tcp) if p.outcome is PortOutcome.ANSWERED)

    @property
    def alive(self) -> bool:
        return bool(self.answered)

    @property
    def reply(self) -> KdcReply | None:
        best = self.best
        return best.reply if best else None

    @property
    def best(self) -> PortProbe | None:
        """The answered probe with the shortest round trip: its clock reading is the tightest."""
        timed = [p for p in self.answered if p.skew is not None] or list(self.answered)
        return min(timed, key=lambda p: p.rtt_ms) if timed else None

    @property
    def skew(self) -> float | None:
        best = self.best
        return best.skew if best else None

    @property
    def uncertainty(self) -> float:
        """Half the round trip of the reading used, in seconds."""
        best = self.best
        return best.rtt_ms / 2000 if best else 0.0


async def probe_kdc(ip: str, host: str, realm: str, principal: str, timeout: float,
                    port: int = KERBEROS_PORT, kpasswd: bool = True) -> KdcProbe:
    """UDP and TCP AS-REQ to ip:port, and a TCP connect to kpasswd, all at once."""
    request = build_as_req(realm, principal)
    jobs = [probe_udp(ip, port, request, timeout), probe_tcp(ip, port, request, timeout)]
    if kpasswd:
        jobs.append(probe_tcp(ip, KPASSWD_PORT, None, timeout))
    results = await asyncio.gather(*jobs)
    return KdcProbe(ip, host, port, results[0], results[1], results[2] if kpasswd else None)

