"""The raw DNSSEC questions of one audit: asked with DO=1 and CD=1, cached and single-flight per client.

A validating resolver answers SERVFAIL for bogus data; with CD=1 it hands the data over so that
deliverck can judge it (RFC 4035 3.2.2).  `resolver_view` asks the other way (CD=0, AD=1, RFC 6840
5.7) to learn what the resolver itself concludes.  The session lives on the DnsClient and holds it
weakly, so it goes with the client at the end of the audit; `close(client)` cancels what is in flight.
"""

from __future__ import annotations

import asyncio
import weakref
from dataclasses import dataclass

import dns._features

# No DNS over HTTPS, before dns.query is imported (why: deliverck/net/dns.py).
dns._features.force("doh", False)

import dns.asyncquery  # noqa: E402
import dns.exception  # noqa: E402
import dns.flags  # noqa: E402
import dns.message  # noqa: E402
import dns.name  # noqa: E402
import dns.rcode  # noqa: E402
import dns.rdatatype  # noqa: E402

QUERY_TIMEOUT = 3.0       # per resolver, per query
UDP_TRIES = 2             # sends of one query within QUERY_TIMEOUT (a lost datagram is sent again)
PAYLOAD = 1232


# ---------------------------------------------------------------- raw queries

@dataclass(frozen=True)
class Raw:
    """One answer asked with DO=1, CD=1; `error` set when no usable answer came."""
    msg: dns.message.Message | None
    error: str = ""           # plain words: `192.0.2.53:53 answered SERVFAIL`
    failure: str = ""         # servfail | refused | timeout | error, when `error` is set

    @property
    def rcode(self) -> int:
        return self.msg.rcode() if self.msg is not None else -1

    def rrset(self, section: str, name: dns.name.Name, rdtype: int, covers: int = 0):
        if self.msg is None:
            return None
        for rr in getattr(self.msg, section):
            if rr.name == name and rr.rdtype == rdtype and rr.covers == covers:
                return rr
        return None

    def sigs(self, section: str, name: dns.name.Name, covers: int):
        return self.rrset(section, name, dns.rdatatype.RRSIG, covers)


class _Session:
    """Per-run cache of raw answers and of zone-chain results.

    It keeps what a query needs (the resolvers, the timeout) and reaches the
    client only through a weak reference: a strong one would make the client
    and its session keep each other alive, and every audit of a bulk run
    would stay in memory (about 85 KB each) until the process ends.
    """

    def __init__(self, client) -> None:
        self._client = weakref.ref(client)
        self.resolvers = tuple(getattr(client, "resolvers", ()))
        self.timeout = max(min(QUERY_TIMEOUT, float(getattr(client, "timeout", QUERY_TIMEOUT))), 0.5)
        self.raw: dict[tuple[dns.name.Name, int], asyncio.Future] = {}
        self.chains: dict[tuple, asyncio.Future] = {}

    def hook(self, name: str):
        """A test's in-process answer function on the client (`dnssec_query`, ...), or None."""
        client = self._client()
        return getattr(client, name, None) if client is not None else None

    def ask(self, name: dns.name.Name, rdtype: dns.rdatatype.RdataType) -> asyncio.Future:
        key = (name, rdtype)
        fut = self.raw.get(key)
        if fut is None:
            fut = asyncio.ensure_future(self._ask(name, rdtype))
            self.raw[key] = fut
        return fut

    async def _ask(self, name: dns.name.Name, rdtype: dns.rdatatype.RdataType) -> Raw:
        custom = self.hook("dnssec_query")   # tests: an in-process answer function
        if custom is not None:
            msg = await custom(name, rdtype)
            return Raw(msg) if msg is not None else Raw(None, "no answer", "error")
        errors: list[tuple[str, str, dns.message.Message | None]] = []
        for r in self.resolvers:
            q = dns.message.make_query(name, rdtype, want_dnssec=True, payload=PAYLOAD)
            q.flags = dns.flags.RD | dns.flags.CD
            errors.append(await _one_query(q, r, self.timeout))
            if errors[-1][0] == "":
                return Raw(errors[-1][2])
        return _failed(errors)

    def pending(self) -> list[asyncio.Future]:
        return [f for f in (*self.raw.values(), *self.chains.values()) if not f.done()]


# The attribute that holds a client's session (one per DnsClient, i.e. per audit).
_SESSION_ATTR = "_deliverck_dnssec_session"


async def _one_query(q, r, timeout: float) -> tuple[str, str, dns.message.Message | None]:
    """("", "", response) for NOERROR/NXDOMAIN, else (failure, plain text, None); UDP, then TCP on TC.

    The query goes out again once, half-way through `timeout`, as stub resolvers do: a validation
    asks every zone cut at once, and a burst of hundreds of datagrams (a bulk run, or a domain with
    many MX hosts) can overflow a resolver's socket buffer, which drops queries without a word."""
    per_try = timeout / UDP_TRIES
    for attempt in range(UDP_TRIES):
        try:
            resp, _tcp = await dns.asyncquery.udp_with_fallback(q, r.ip, timeout=per_try, port=r.port)
            break
        except dns.exception.Timeout:
            if attempt < UDP_TRIES - 1:
                continue
            return "timeout", f"{r} did not answer within {timeout:g}s", None
        except OSError as e:
            return "error", f"{r} unreachable ({e.strerror or type(e).__name__})", None
        except dns.exception.DNSException as e:
            return "error", f"{r} sent an unusable answer ({' '.join(str(e).split()).rstrip('.')[:120]})", None
    rc = resp.rcode()
    if rc in (dns.rcode.NOERROR, dns.rcode.NXDOMAIN):
        return "", "", resp
    text = dns.rcode.to_text(rc)
    return text.lower() if rc in (dns.rcode.SERVFAIL, dns.rcode.REFUSED) else "error", f"{r} answered {text}", resp


def _failed(errors: list) -> Raw:
    if not errors:
        return Raw(None, "no resolver configured", "error")
    return Raw(None, "; ".join(dict.fromkeys(e[1] for e in errors)), errors[0][0])


def _session(client) -> _Session:
    """The client's session, made on first use and stored on the client, so that it lives
    exactly as long as the client does (no registry outside it)."""
    s = getattr(client, _SESSION_ATTR, None)
    if s is None:
        s = _Session(client)
        setattr(client, _SESSION_ATTR, s)
    return s


async def close(client) -> None:
    """Cancel the validation lookups still in flight for `client` (the audit is over)."""
    s = getattr(client, _SESSION_ATTR, None)
    if s is None:
        return
    pending = s.pending()
    for f in pending:
        f.cancel()
    if pending:
        await asyncio.gather(*pending, return_exceptions=True)


@dataclass(frozen=True)
class ResolverView:
    """What the configured resolver itself concludes: its rcode and AD bit (CD=0)."""
    outcome: str              # ok | nodata | nxdomain | servfail | refused | timeout | error
    authenticated: bool
    detail: str = ""          # the resolver that answered, or what each one did, in plain words
    ede: tuple[tuple[int, str], ...] = ()   # Extended DNS Errors it gave (RFC 8914): (code, text)

    def ede_text(self) -> str:
        return "; ".join(f"EDE {c} {_EDE_NAMES.get(c, '')}{': ' + t if t else ''}".replace("  ", " ")
                         for c, t in self.ede)


# RFC 8914 4: the DNSSEC-related Extended DNS Error codes.
_EDE_NAMES = {1: "Unsupported DNSKEY Algorithm", 2: "Unsupported DS Digest Type", 5: "DNSSEC Indeterminate",
              6: "DNSSEC Bogus", 7: "Signature Expired", 8: "Signature Not Yet Valid", 9: "DNSKEY Missing",
              10: "RRSIGs Missing", 11: "No Zone Key Bit Set", 12: "NSEC Missing"}
EDE_EXPIRED = 7


async def resolver_view(client, name: str, rdtype: str) -> ResolverView:
    """Ask the configured resolvers with AD=1 (RFC 6840 5.7) and CD=0: a validating
    resolver sets AD on secure data and answers SERVFAIL for bogus data.
    (A plain DnsClient lookup sends neither DO nor AD, so its AD bit stays clear.)"""
    sess = _session(client)
    key = ("view", name.rstrip(".").lower(), rdtype.upper())
    fut = sess.chains.get(key)
    if fut is None:
        fut = asyncio.ensure_future(_resolver_view(client, dns.name.from_text(name),
                                                   dns.rdatatype.from_text(rdtype)))
        sess.chains[key] = fut
    return await asyncio.shield(fut)


async def _resolver_view(client, qname, qtype) -> ResolverView:
    sess = _session(client)
    custom = sess.hook("dnssec_resolver_view")
    if custom is not None:
        return await custom(qname, qtype)
    errors = []
    ede: tuple = ()
    timeout = sess.timeout
    for r in sess.resolvers:
        q = dns.message.make_query(qname, qtype, use_edns=0, payload=PAYLOAD)
        q.flags = dns.flags.RD | dns.flags.AD
        failure, text, resp = await _one_query(q, r, timeout)
        if resp is not None:
            ede = ede or _edes(resp)
        if failure:
            errors.append((failure, text))
            continue
        assert resp is not None             # no failure: _one_query hands over the response
        ad = bool(resp.flags & dns.flags.AD)
        if resp.rcode() == dns.rcode.NXDOMAIN:
            return ResolverView("nxdomain", ad, str(r), ede)
        ok = any(rr.rdtype == qtype for rr in resp.answer)
        return ResolverView("ok" if ok else "nodata", ad, str(r), ede)
    if not errors:
        return ResolverView("error", False, "no resolver configured")
    return ResolverView(errors[0][0], False, "; ".join(dict.fromkeys(e[1] for e in errors)), ede)


def _edes(resp) -> tuple[tuple[int, str], ...]:
    try:
        return tuple((int(o.code), " ".join((o.text or "").split())[:160]) for o in resp.extended_errors())
    except Exception:  # noqa: BLE001 - a malformed option only loses the detail
        return ()
