"""Asynchronous DNS lookups that never raise for DNS outcomes.

Checks reason about *what happened* (the name does not exist, exists with no
such record, the resolver failed, nobody answered) rather than catching
exceptions, so every lookup returns a `DnsAnswer` whose `outcome` says which.
Lookups are cached for the run and single-flight: two checks asking the same
question at the same moment share one query.

Built on dnspython's async resolver, which already does TCP fallback on
truncation and EDNS; we add the classification, the run cache, resolver
selection (`--resolver IP[:port]`) and per-query timeouts.  Its UDP exchange goes
through net/udp.py (directly written queries, a few shared sockets per resolver).
"""

from __future__ import annotations

import asyncio
import collections
import contextvars
import dataclasses
import ipaddress
import os
import time
from collections.abc import Sequence
from dataclasses import dataclass, field

import dns._features

# deliverck never speaks DNS over HTTPS (RFC 8484): say so before dnspython's query modules are
# imported, or `dns.query` imports its DoH stack (httpx, httpcore, h2, anyio), 130-220 ms of every
# audit's start-up (issue 16).  MTA-STS imports httpx itself when it fetches a policy.  force() is
# dnspython's own switch (2.6+); both modules that import dns.query first do this.
dns._features.force("doh", False)

import dns.asyncresolver  # noqa: E402
import dns.flags  # noqa: E402
import dns.name  # noqa: E402
import dns.nameserver  # noqa: E402
import dns.rdatatype  # noqa: E402
import dns.resolver  # noqa: E402
import dns.reversename  # noqa: E402

from deliverck import timing
from deliverck.errors import IncompleteError, UsageError
from deliverck.net import dnssanity
from deliverck.net.dnsanswer import DnsAnswer, Outcome, ResolverAddress
from deliverck.net.dnsanswer import norm as _norm
from deliverck.net.dnsresolve import EDNS_PAYLOAD, first_try
from deliverck.net.dnssanity import ResolverProblem, classify_errors, is_ip, is_referral, plain
from deliverck.net.udp import SharedSocketNameserver

__all__ = ["DnsAnswer", "Outcome", "ResolverAddress", "DnsClient", "DnsStats", "SharedCache", "shared_cache",
           "parse_resolver", "system_resolvers", "reverse_name", "public_suffix", "close"]



def parse_resolver(text: str) -> ResolverAddress:
    """`IP`, `IP:port`, `[IPv6]:port` or a bare IPv6 address."""
    s = text.strip()
    bad = UsageError(
        f"--resolver {text!r} is not an IP address with optional port "
        "(use e.g. 192.0.2.53, 192.0.2.53:5353 or [2001:db8::53]:53)"
    )
    port = 53
    host = s
    if s.startswith("["):
        end = s.find("]")
        if end < 0:
            raise bad
        host, rest = s[1:end], s[end + 1:]
        if rest:
            if not rest.startswith(":"):
                raise bad
            port = _port(rest[1:], bad)
    elif s.count(":") == 1:
        host, p = s.split(":")
        port = _port(p, bad)
    try:
        ip = ipaddress.ip_address(host)
    except ValueError:
        raise bad from None
    return ResolverAddress(str(ip), port)


def _port(text: str, bad: Exception) -> int:
    if not text.isdigit() or not 0 < int(text) < 65536:
        raise bad
    return int(text)


RESOLV_CONF = "/etc/resolv.conf"
_system_seen: tuple[tuple[int, int, int], tuple[ResolverAddress, ...]] | None = None


def system_resolvers() -> tuple[ResolverAddress, ...]:
    """The resolvers of /etc/resolv.conf (what `deliverck` uses by default).

    Every audit of a bulk run asks; the file is parsed again only when its inode, size or
    modification time changed (issue 16: per-audit setup that can be per process)."""
    global _system_seen
    try:
        st = os.stat(RESOLV_CONF)
        key: tuple[int, int, int] | None = (st.st_ino, st.st_size, st.st_mtime_ns)
    except OSError:
        key = None
    if key is not None and _system_seen is not None and _system_seen[0] == key:
        return _system_seen[1]
    found = _read_system_resolvers()
    if key is not None:
        _system_seen = (key, found)
    return found


def _read_system_resolvers() -> tuple[ResolverAddress, ...]:
    try:
        r = dns.resolver.Resolver(configure=True)
    except dns.resolver.NoResolverConfiguration:
        return ()
    out = []
    for ns in r.nameservers:
        if isinstance(ns, str):
            out.append(ResolverAddress(ns, r.port))
        elif isinstance(ns, dns.nameserver.Do53Nameserver):
            out.append(ResolverAddress(ns.address, ns.port))
    return tuple(out)


def reverse_name(ip: str) -> str:
    return dns.reversename.from_address(ip).to_text(omit_final_dot=True)


def _wire_name(qname: str) -> dns.name.Name:
    """dns.name.from_text reads the text a character at a time (for escapes and IDNA), which
    showed as a tenth of a bulk audit's DNS CPU (issue 16).  The names the checks ask are
    almost always plain ASCII labels: those split in one call, and Name() validates label
    and name lengths with the same exceptions; anything else (escapes, non-ASCII, "@")
    takes from_text."""
    text = qname[:-1] if qname.endswith(".") else qname
    if not text:
        return dns.name.root
    if "\\" in text or text == "@" or not text.isascii():
        return dns.name.from_text(qname)
    return dns.name.Name([*(label.encode("ascii") for label in text.split(".")), b""])


def _nxdomain_canonical(e: dns.resolver.NXDOMAIN) -> str:
    """The name the NXDOMAIN was for, after any CNAME chain (normalised text), "" if unknown.

    NXDOMAIN.canonical_name re-walks every response's CNAME chain; an answer section without
    records has no chain, so the canonical name is then the first name asked, which is what
    that property returns too (dnspython resolver.py), for much less CPU (issue 16)."""
    try:
        qnames = e.kwargs.get("qnames") or []
        responses = e.kwargs.get("responses") or {}
        if qnames and all(not getattr(responses.get(q), "answer", True) for q in qnames):
            return _norm(qnames[0].to_text())
        return _norm(e.canonical_name.to_text())
    except Exception:
        return ""



@dataclass
class DnsStats:
    queries: int = 0
    cache_hits: int = 0
    shared: int = 0
    # (qname, rdtype, start, end, check): seconds since the client was made, and the check whose
    # question started the query (deliverck/timing.py); at most timing.MAX_STEPS, the rest counted.
    log: list = field(default_factory=list)
    log_dropped: int = 0


class SharedCache:
    """Answers shared by the audits of one bulk run (set with `shared_cache.set(...)`).

    Many audited domains share infrastructure: MX hosts of the same provider,
    the block lists' test entries, the root.  Definite answers (OK, NODATA,
    NXDOMAIN) are kept for their TTL (at most `max_ttl`), in-flight queries are
    shared, failures are not kept so that the next audit asks again.  Least
    recently used entries go beyond `max_entries`, so memory stays flat
    however many targets a run has.
    """

    def __init__(self, max_entries: int = 5_000, max_ttl: float = 600.0) -> None:
        self.max_entries = max_entries
        self.max_ttl = max_ttl
        self._entries: collections.OrderedDict[tuple[str, str], tuple[asyncio.Future, float]] = \
            collections.OrderedDict()

    def get(self, key: tuple[str, str]) -> asyncio.Future | None:
        entry = self._entries.get(key)
        if entry is None:
            return None
        task, expires = entry
        if task.done() and (expires < time.monotonic() or task.cancelled()):
            del self._entries[key]
            return None
        self._entries.move_to_end(key)
        return task

    def holds(self, key: tuple[str, str], task: asyncio.Future) -> bool:
        return self._entries.get(key, (None,))[0] is task

    def put(self, key: tuple[str, str], task: asyncio.Future) -> None:
        self._entries[key] = (task, float("inf"))
        self._entries.move_to_end(key)
        while len(self._entries) > self.max_entries:
            self._entries.popitem(last=False)

        def settle(t: asyncio.Future) -> None:
            if self._entries.get(key, (None,))[0] is not t:
                return
            if t.cancelled() or t.exception() is not None or not t.result().outcome.definite:
                del self._entries[key]
            else:
                self._entries[key] = (t, time.monotonic() + min(max(t.result().ttl, 0), self.max_ttl))

        task.add_done_callback(settle)


# The bulk runner sets this for the audits it starts (contextvars follow tasks).
shared_cache: contextvars.ContextVar[SharedCache | None] = contextvars.ContextVar("deliverck_shared_dns",
                                                                                 default=None)


class DnsClient:
    """One per audit: resolver choice, run cache, single-flight, classification."""

    def __init__(
        self,
        resolvers: Sequence[ResolverAddress] = (),
        *,
        timeout: float = 5.0,
        attempts: int = 2,
        overlay=None,
    ) -> None:
        self.overlay = overlay          # net.overlay.Overlay: --zone-file answers, consulted first
        self.resolvers = tuple(resolvers) or system_resolvers()
        if not self.resolvers:
            raise IncompleteError(
                "no DNS resolver configured: /etc/resolv.conf names none; pass --resolver IP"
            )
        self.timeout = timeout
        r = dns.asyncresolver.Resolver(configure=False)
        # One shared UDP socket per resolver address instead of one per query (net/udp.py, issue 16).
        self._servers = [SharedSocketNameserver(a.ip, a.port) for a in self.resolvers]
        r.nameservers = list(self._servers)
        r.use_edns(0, 0, EDNS_PAYLOAD)
        r.flags = dns.flags.RD | dns.flags.AD   # AD=1: a validating resolver tells us if it validated (RFC 6840 5.7)
        # Per-server wait: several tries fit in the lifetime, each server gets a chance.
        r.timeout = max(timeout / max(attempts, 1), 0.2)
        r.lifetime = timeout
        r.retry_servfail = False
        r.cache = None          # we cache ourselves, per run
        r.search = []
        r.ndots = 1
        self._resolver = r
        self._cache: dict[tuple[str, str], asyncio.Future[DnsAnswer]] = {}
        self._shared = shared_cache.get()
        self.stats = DnsStats()
        self._t0 = time.monotonic()
        self.t0 = self._t0              # the origin of stats.log's times
        self._health: asyncio.Future | None = None      # ResolverProblem | None, once reachable() asked

    async def lookup(self, name: str, rdtype: str) -> DnsAnswer:
        key = (_norm(name), rdtype.upper())
        task = self._cache.get(key)
        if task is None and self._shared is not None:
            task = self._shared.get(key)
            if task is not None:
                self._cache[key] = task
                self.stats.shared += 1
        if task is None:
            # The query runs as its own task so that one caller giving up
            # (its check hit a deadline) does not cancel it for the others.
            task = asyncio.ensure_future(self._query(*key))
            self._cache[key] = task
            if self._shared is not None and self.overlay is None:
                self._shared.put(key, task)
        elif task.done():
            self.stats.cache_hits += 1
            # A settled answer needs no shield (nothing left to cancel): the shield's future and
            # callbacks were a tenth of the event loop's work in a bulk run (issue 16).
            return task.result()
        else:
            self.stats.shared += 1
        return await asyncio.shield(task)

    async def addresses(self, name: str) -> tuple[DnsAnswer, DnsAnswer]:
        a, aaaa = await asyncio.gather(self.lookup(name, "A"), self.lookup(name, "AAAA"))
        return a, aaaa

    async def ptr(self, ip: str) -> DnsAnswer:
        return await self.lookup(reverse_name(ip), "PTR")

    async def _query(self, qname: str, rdtype: str) -> DnsAnswer:
        if self.overlay:
            return await self._overlay_query(qname, rdtype)
        return await self._network_query(qname, rdtype)

    async def _overlay_query(self, qname: str, rdtype: str) -> DnsAnswer:
        """Answer from --zone-file data where it covers the name, following CNAMEs
        in and out of it; never authenticated (a proposed change is unsigned)."""
        start = time.monotonic()
        name, ttl = qname, None
        sources: list[str] = []
        for _ in range(16):
            step = self.overlay.answer(name, rdtype)
            if step is None:
                if name == qname:
                    return await self._gated(await self._network_query(qname, rdtype))
                ans = await self.lookup(name, rdtype)       # out of the file: real DNS (or another file)
                return DnsAnswer(qname=qname, rdtype=rdtype, outcome=ans.outcome, records=ans.records,
                                 canonical_name=ans.canonical_name or name,
                                 ttl=min(ans.ttl, ttl) if ttl is not None and ans.ttl else ans.ttl,
                                 authenticated=False, detail=ans.detail,
                                 server=", ".join(dict.fromkeys(sources + [ans.server])),
                                 elapsed_ms=int((time.monotonic() - start) * 1000))
            sources.append(step.source)
            ttl = step.ttl if ttl is None else min(ttl, step.ttl)
            if step.kind == "cname":
                name = _norm(step.target)
                continue
            outcome = {"ok": Outcome.OK, "nodata": Outcome.NODATA, "nxdomain": Outcome.NXDOMAIN}[step.kind]
            return self._done(qname, rdtype, start, outcome, records=step.records,
                              canonical_name=name,
                              ttl=step.ttl if outcome is Outcome.OK else 0,
                              server=", ".join(dict.fromkeys(sources)))
        return self._done(qname, rdtype, start, Outcome.ERROR, detail="CNAME chain too long in the zone file",
                          server=", ".join(dict.fromkeys(sources)))

    async def _network_query(self, qname: str, rdtype: str) -> DnsAnswer:
        self.stats.queries += 1
        start = time.monotonic()
        try:
            res = await first_try(self._resolver, self._servers, _wire_name(qname), rdtype, start)
        except dns.resolver.NXDOMAIN as e:
            canon = _nxdomain_canonical(e)
            responses = list((e.kwargs.get("responses") or {}).values())
            ra = all(bool(r.flags & dns.flags.RA) for r in responses) if responses else True
            return self._done(qname, rdtype, start, Outcome.NXDOMAIN, canonical_name=canon,
                              recursion_available=ra)
        except dns.resolver.LifetimeTimeout:
            return self._done(qname, rdtype, start, Outcome.TIMEOUT,
                              detail=f"{self._names()} did not answer within {self.timeout:g}s")
        except dns.resolver.NoNameservers as e:
            outcome, detail = classify_errors(e.kwargs.get("errors") or [])
            return self._done(qname, rdtype, start, outcome, detail=detail)
        except dns.resolver.YXDOMAIN:
            return self._done(qname, rdtype, start, Outcome.ERROR,
                              detail=f"{self._names()} answered YXDOMAIN (a DNAME substitution overflowed)")
        except dns.exception.DNSException as e:
            return self._done(qname, rdtype, start, Outcome.ERROR,
                              detail=f"{self._names()}: {plain(e)}")
        except OSError as e:
            return self._done(qname, rdtype, start, Outcome.UNREACHABLE,
                              detail=f"{self._names()} unreachable ({e.strerror or plain(e)})")
        resp = res.response
        ad = bool(resp.flags & dns.flags.AD)
        ra = bool(resp.flags & dns.flags.RA)
        canon = _norm(res.canonical_name.to_text())
        server = f"{res.nameserver}:{res.port}" if res.nameserver else ""
        if res.rrset is None and is_referral(resp):
            # An authoritative-only server used as resolver answers names it does not hold with a
            # referral; taken as NODATA it would blame the target for a record it may well have.
            cut = next(rr.name for rr in resp.authority if rr.rdtype == dns.rdatatype.NS)
            return self._done(qname, rdtype, start, Outcome.ERROR, canonical_name=canon, server=server,
                              recursion_available=ra,
                              detail=f"{server or self._names()} does not recurse: it answered with a referral to "
                                     f"the name servers of {_norm(cut.to_text()) or '.'} instead of an answer")
        if res.rrset is None:
            return self._done(qname, rdtype, start, Outcome.NODATA, canonical_name=canon,
                              authenticated=ad, server=server, recursion_available=ra)
        return self._done(
            qname, rdtype, start, Outcome.OK,
            records=tuple(res.rrset), canonical_name=canon, ttl=res.rrset.ttl,
            authenticated=ad, server=server, recursion_available=ra,
        )

    def _names(self) -> str:
        return ", ".join(str(r) for r in self.resolvers)

    def _done(self, qname, rdtype, start, outcome, errors=None, **kw) -> DnsAnswer:
        end = time.monotonic()
        log = self.stats.log
        if len(log) < timing.MAX_STEPS:
            log.append((qname, rdtype, start - self._t0, end - self._t0, timing.current_check.get()))
        else:
            self.stats.log_dropped += 1
        if "server" not in kw:
            kw["server"] = ", ".join(str(r) for r in self.resolvers)
        return DnsAnswer(qname=qname, rdtype=rdtype, outcome=outcome,
                         elapsed_ms=int((end - start) * 1000), **kw)

    async def reachable(self, target: str = "") -> tuple[bool, str]:
        """Can this resolver be trusted to speak for the audited names?  Asked once per run,
        concurrently with the checks; (False, one line naming the resolver, what it answered
        and the remedy) when not.

        A resolver that cannot answer for the root (or for the target's real TLD), or that
        invents answers, would make every check blame the target for the checker's own
        environment, so the run stops instead (see `_sanity`).  With --zone-file, a target
        answered from the file is still audited: only the lookups that leave the file depend
        on the resolver, and those become failures naming it (`_gated`).
        """
        if self._health is None:
            self._health = asyncio.ensure_future(self._sanity(target))
        problem = await asyncio.shield(self._health)
        if problem is None:
            return True, ""
        if self.overlay is not None and target and self.overlay.zone_for(_overlay_name(target)) is not None:
            return True, ""
        return False, problem.line

    async def _sanity_lookup(self, name: str, rdtype: str) -> DnsAnswer:
        # Straight to the resolver: the sanity is about it, never about a zone file.
        if self.overlay is None:
            return await self.lookup(name, rdtype)
        return await self._network_query(_norm(name), rdtype)

    async def _sanity(self, target: str) -> ResolverProblem | None:
        """The checks run while this does: the root (RFC 8109: every recursive resolver knows
        it), the target's TLD when it is one of the real (ICANN) ones, and a name below
        `invalid.` that must not exist (RFC 6761 6.4).  Private roots and lab TLDs such as
        `test.` are never required to exist; only the root is."""
        root_t = asyncio.ensure_future(self._sanity_lookup(".", "NS"))
        probe_t = asyncio.ensure_future(self._sanity_lookup(dnssanity.INVENTED_PROBE, "A"))
        await asyncio.sleep(0)              # those two are on the wire while the TLD is looked up
        tld = dnssanity.real_tld(target)
        tld_t = asyncio.ensure_future(self._sanity_lookup(tld + ".", "SOA")) if tld else None
        pending = [t for t in (root_t, tld_t, probe_t) if t is not None]
        try:
            problem = dnssanity.root_problem(await root_t, self.resolvers, self.timeout)
            if problem is None and tld_t is not None:
                problem = dnssanity.tld_problem(await tld_t, tld, target, self.resolvers, self.timeout)
            if problem is None:
                problem = dnssanity.invented_problem(await probe_t, self.resolvers)
            return problem
        finally:
            for t in pending:
                t.cancel()

    async def _gated(self, ans: DnsAnswer) -> DnsAnswer:
        """A network answer during a --zone-file run whose resolver failed the sanity: not used."""
        if self._health is None:
            return ans
        problem = await asyncio.shield(self._health)
        if problem is None:
            return ans
        return dataclasses.replace(ans, outcome=Outcome.ERROR, records=(), authenticated=False,
                                   detail=f"not used, the resolver is unusable: {problem.short}")


def public_suffix(name: str) -> str:
    """The public suffix of `name` (no trailing dot), from the bundled list; a TLD the list does
    not know (a lab's `test`, a private root's TLD) is its own suffix.  The list is the one
    object of deliverck/datacache.py, shared with target.org_domain and loaded once."""
    from deliverck.datacache import public_suffix_list

    n = _norm(name)
    return (public_suffix_list().publicsuffix(n) or n.rsplit(".", 1)[-1]) if n else ""


def _overlay_name(target: str) -> str:
    n = _norm(target)
    return reverse_name(n) if is_ip(n) else n


async def close(client: DnsClient) -> None:
    """Cancel lookups nobody waits for any more (after a deadline)."""
    # A lookup shared with other audits of a bulk run stays: they may still
    # wait for it (it ends by itself within the DNS timeout).
    pending = [t for k, t in client._cache.items()
               if not t.done() and not (client._shared is not None and client._shared.holds(k, t))]
    if client._health is not None and not client._health.done():
        pending.append(client._health)
    for t in pending:
        t.cancel()
    if pending:
        await asyncio.gather(*pending, return_exceptions=True)
