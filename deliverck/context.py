"""Facts about the target, shared by every check of one run.

Checks never open sockets: they ask the context.  Each fact is computed once
(memoized) even when several checks ask for it at the same moment
(single-flight), so checks stay independent without repeating lookups.
"""

from __future__ import annotations

import asyncio
import contextlib
import contextvars
import ipaddress
import weakref
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass
from typing import TypeVar

import dns.rdtypes.ANY.MX

from deliverck import timing
from deliverck.config import Config
from deliverck.net import dnssec, http, overlay, smtp, tls
from deliverck.net import kerberos as krb
from deliverck.net.addresses import Scope, scope
from deliverck.net.dns import DnsAnswer, DnsClient, Outcome, public_suffix
from deliverck.records import dkim_discovery as discovery
from deliverck.records.spf.blame import Blame, locate
from deliverck.records.spf.evaluator import SpfResult, check_host
from deliverck.records.spf.lint import SpfLint, lint_domain
from deliverck.records.spf.trace import LookupTrace
from deliverck.smtpfacts import split_followers
from deliverck.target import org_domain, sender_domain_of

T = TypeVar("T")

# Fan-out limits: how much one published name can make an audit do.  Senders bound it
# too: Postfix tries at most 5 MX addresses and 2 SMTP sessions per delivery
# (postconf(5) smtp_mx_address_limit = 5, smtp_mx_session_limit = 2), Exim at most 5
# addresses (smtp transport, hosts_max_try = 5), and RFC 5321 5.1 allows "a configurable
# limit on the number of alternate addresses" (a sender SHOULD try at least two).
# deliverck looks further than any sender goes, but not without end: past these limits
# a domain with 1,000 MX hosts or 500 AAAA records costs what a sane one costs, and the
# mx, ptr and dmarc checks say what was left out.
MX_HOST_LIMIT = 10          # MX hosts resolved, lowest preference first (then by name)
HOST_ADDRESS_LIMIT = 5      # addresses audited per host name and per address family
ADDRESS_LIMIT = 20          # addresses from DNS audited in all (PTR, block lists, SPF, HELO, and one
                            # SMTP connection per address and port: the SMTP connections of an audit)
PTR_NAME_LIMIT = 5          # PTR names of one address that are forward-confirmed

@dataclass(frozen=True)
class HostAddresses:
    name: str
    a: DnsAnswer
    aaaa: DnsAnswer

    @property
    def ipv4(self) -> tuple[str, ...]:
        return tuple(r.address for r in self.a.records) if self.a.ok else ()

    @property
    def ipv6(self) -> tuple[str, ...]:
        return tuple(r.address for r in self.aaaa.records) if self.aaaa.ok else ()

    @property
    def ips(self) -> tuple[str, ...]:
        return self.ipv4 + self.ipv6

    @property
    def audited(self) -> tuple[str, ...]:
        """The addresses an audit looks at: per family the first HOST_ADDRESS_LIMIT in address
        order (stable from run to run, whatever order the resolver hands out)."""
        return _first(self.ipv4, HOST_ADDRESS_LIMIT) + _first(self.ipv6, HOST_ADDRESS_LIMIT)

    @property
    def over_limit(self) -> tuple[tuple[str, int], ...]:
        """(family, published count) for each family with more addresses than are audited."""
        return tuple((fam, len(ips)) for fam, ips in (("IPv4", self.ipv4), ("IPv6", self.ipv6))
                     if len(ips) > HOST_ADDRESS_LIMIT)

    @property
    def nxdomain(self) -> bool:
        return self.a.outcome is Outcome.NXDOMAIN and self.aaaa.outcome is Outcome.NXDOMAIN

    @property
    def failed(self) -> tuple[DnsAnswer, ...]:
        """Lookups that gave no usable answer (timeout, SERVFAIL ...)."""
        return tuple(x for x in (self.a, self.aaaa) if not x.outcome.definite)

    @property
    def cname_target(self) -> str:
        for x in (self.a, self.aaaa):
            if x.via_cname:
                return x.canonical_name
        return ""

    def evidence(self) -> tuple[str, ...]:
        return (self.a.describe(), self.aaaa.describe())


def _first(ips: tuple[str, ...], limit: int) -> tuple[str, ...]:
    if len(ips) <= limit:
        return ips
    return tuple(sorted(ips, key=lambda ip: ipaddress.ip_address(ip))[:limit])


@dataclass(frozen=True)
class MxHost:
    preference: int
    name: str
    addresses: HostAddresses


@dataclass(frozen=True)
class MxFacts:
    domain: str
    answer: DnsAnswer                 # the MX lookup itself
    apex: HostAddresses               # A/AAAA of the domain (implicit MX, host role)
    records: tuple[tuple[int, str], ...]
    hosts: tuple[MxHost, ...]         # non-null MX targets, by preference, resolved (MX_HOST_LIMIT names)
    unresolved: tuple[str, ...] = ()  # MX targets past MX_HOST_LIMIT: not looked up, not audited

    @property
    def null(self) -> bool:
        return any(ex == "" for _, ex in self.records)

    @property
    def implicit(self) -> bool:
        return self.answer.outcome is Outcome.NODATA and bool(self.apex.ips)


@dataclass(frozen=True)
class MailAddress:
    """An address that sends or receives the audited mail, and why we audit it."""

    ip: str
    hosts: tuple[str, ...]            # names it belongs to ("" for --ip / literal)
    sources: tuple[str, ...]          # "mx", "host", "ip-literal", "--ip"

    @property
    def scope(self) -> Scope:
        return scope(self.ip)

    @property
    def receives(self) -> bool:
        """Does mail *to* the target arrive here (so an SMTP probe makes sense)?"""
        return any(s in ("mx", "host", "ip-literal") for s in self.sources)

    @property
    def host(self) -> str:
        return self.hosts[0] if self.hosts else ""


@dataclass(frozen=True)
class AddressPlan:
    audited: tuple[MailAddress, ...]
    left_out: tuple[str, ...] = ()    # addresses of audited hosts past ADDRESS_LIMIT, in host order


def first_mx_hosts(records) -> tuple[str, ...]:
    """The MX targets an audit resolves: the first MX_HOST_LIMIT distinct non-null names of
    (preference, name) `records`, lowest preference first, as senders try them (RFC 5321 5.1)."""
    names: dict[str, None] = {}
    for _, ex in sorted(records):
        if ex not in ("", ".") and ex not in names:
            if len(names) >= MX_HOST_LIMIT:
                break
            names[ex] = None
    return tuple(names)


def split_public(check, addresses) -> tuple[list[MailAddress], list]:
    """(public addresses, `<check>.not_public` findings for the rest).

    Checks that judge an address from the outside (reverse DNS, SPF, block
    lists) have nothing to say about private ones, and say so once each.
    """
    public, notes = [], []
    for ma in addresses:
        if ma.scope.routable:
            public.append(ma)
        else:
            notes.append(check.finding("not_public", ma.ip, scope=ma.scope.value, ip=ma.ip))
    return public, notes


# Politeness across the audits of one process (deliverck bulk): at most
# `per_address` SMTP connections to one remote address at a time, per event loop.
_SHARED_SLOTS: weakref.WeakKeyDictionary[asyncio.AbstractEventLoop, dict[str, list]] = \
    weakref.WeakKeyDictionary()
# Where the limit is kept elsewhere (`bulk --workers`: the parent process holds one count per
# address for every worker), the run sets a factory of slots: (address, limit) -> an async
# context manager held for the connection.
slot_factory: contextvars.ContextVar[Callable[[str, int], contextlib.AbstractAsyncContextManager] | None] = \
    contextvars.ContextVar("slot_factory", default=None)


@contextlib.asynccontextmanager
async def _shared_slot(ip: str, limit: int):
    if limit <= 0:
        yield
        return
    factory = slot_factory.get()
    if factory is not None:
        async with factory(ip, limit):
            yield
        return
    slots = _SHARED_SLOTS.setdefault(asyncio.get_running_loop(), {})
    entry = slots.setdefault(ip, [asyncio.Semaphore(limit), 0])
    entry[1] += 1                     # users (holding or waiting): the entry goes when none is left
    try:
        async with entry[0]:
            yield
    finally:
        entry[1] -= 1
        if entry[1] == 0:
            slots.pop(ip, None)


class Context:
    """The facts of one run; checks see it as deliverck.checkcontext.CheckContext."""

    def __init__(self, config: Config, dns_client: DnsClient, timeline: timing.Timeline | None = None) -> None:
        self.config, self.target = config, config.target
        self.timeline = timeline or timing.Timeline()   # the SMTP/TLS/HTTP/Kerberos steps (deliverck/timing.py)
        self.dns_client = dns_client
        self._facts: dict[object, asyncio.Future] = {}
        self._address_locks: dict[str, asyncio.Lock] = {}

    async def fact(self, key: object, compute: Callable[[], Awaitable[T]]) -> T:
        """Compute `compute()` once per run; concurrent askers share the result."""
        task = self._facts.get(key)
        if task is None:
            task = asyncio.ensure_future(compute())
            self._facts[key] = task
        return await asyncio.shield(task)

    async def close(self) -> None:
        pending = [t for t in self._facts.values() if not t.done()]
        for t in pending:
            t.cancel()
        if pending:
            await asyncio.gather(*pending, return_exceptions=True)
        await dnssec.close(self.dns_client)

    # ---- DNS facts -------------------------------------------------------

    async def dns(self, name: str, rdtype: str) -> DnsAnswer:
        return await self.dns_client.lookup(name, rdtype)

    async def ptr(self, ip: str) -> DnsAnswer:
        return await self.dns_client.ptr(ip)

    async def addresses(self, name: str) -> HostAddresses:
        async def compute() -> HostAddresses:
            a, aaaa = await self.dns_client.addresses(name)
            return HostAddresses(name.rstrip(".").lower(), a, aaaa)

        return await self.fact(("addresses", name.rstrip(".").lower()), compute)

    async def mx(self) -> MxFacts | None:
        """MX facts for the target name; None when the target is an IP literal."""
        if self.target.is_ip:
            return None
        return await self.fact("mx", self._mx)

    async def _mx(self) -> MxFacts:
        domain = self.target.name
        answer, apex = await asyncio.gather(self.dns(domain, "MX"), self.addresses(domain))
        records: list[tuple[int, str]] = []
        if answer.ok:
            for r in answer.records:
                assert isinstance(r, dns.rdtypes.ANY.MX.MX)
                ex = r.exchange.to_text(omit_final_dot=True).lower()
                records.append((r.preference, "" if ex in ("", ".") else ex))
        records.sort()
        names = first_mx_hosts(records)
        unresolved = tuple(dict.fromkeys(ex for _, ex in records if ex and ex not in names))
        resolved = await asyncio.gather(*(self.addresses(n) for n in names))
        by_name = dict(zip(names, resolved))
        hosts = tuple(MxHost(p, ex, by_name[ex]) for p, ex in records if ex in by_name)
        return MxFacts(domain, answer, apex, tuple(records), hosts, unresolved)

    async def mail_addresses(self) -> tuple[MailAddress, ...]:
        """Every address whose reputation and DNS the audit examines."""
        return await self.fact("mail_addresses", self._mail_addresses)

    async def _mail_addresses(self) -> tuple[MailAddress, ...]:
        return (await self.address_plan()).audited

    async def address_plan(self) -> AddressPlan:
        """The addresses the audit examines, and those the fan-out limits left out."""
        return await self.fact("address_plan", self._address_plan)

    async def _address_plan(self) -> AddressPlan:
        found: dict[str, tuple[list[str], list[str]]] = {}
        left_out: dict[str, None] = {}

        def add(ip: str, host: str, source: str) -> None:
            if ip not in found and source != "--ip" and len(found) >= ADDRESS_LIMIT:
                left_out[ip] = None
                return
            hosts, sources = found.setdefault(ip, ([], []))
            if host and host not in hosts:
                hosts.append(host)
            if source not in sources:
                sources.append(source)

        if self.target.is_ip:
            add(self.target.ip, "", "ip-literal")
        else:
            mx = await self.mx()
            assert mx is not None
            for h in mx.hosts:
                for ip in h.addresses.audited:
                    add(ip, h.name, "mx")
            if self.target_is_host(mx):
                for ip in mx.apex.audited:
                    add(ip, mx.domain, "host")
        for ip in self.config.outbound_ips:         # the user's own list: never cut
            add(ip, "", "--ip")
        audited = tuple(MailAddress(ip, tuple(h), tuple(s)) for ip, (h, s) in found.items())
        return AddressPlan(audited, tuple(ip for ip in left_out if ip not in found))

    def target_is_host(self, mx: MxFacts) -> bool:
        """Is the target name itself a mail host (not only a mail domain)?

        A name with addresses and no MX is a host (and its own implicit MX).
        A name with both is audited as a host too, unless it is the apex of
        a registered domain: `example.com`'s A record is usually the web site,
        `mail.example.com`'s is usually the mail server.
        """
        if not mx.apex.ips or mx.null:
            return False
        if not mx.records:
            return True
        return org_domain(mx.domain) != mx.domain

    async def roles(self) -> tuple[str, ...]:
        if self.target.is_ip:
            return ("address",)
        mx = await self.mx()
        assert mx is not None
        roles = []
        if mx.records:
            roles.append("domain")
        if self.target_is_host(mx):
            roles.append("host")
        return tuple(roles)

    # ---- SMTP facts ------------------------------------------------------

    def probe_allowed(self, ma: MailAddress) -> bool:
        return ma.scope.routable or (self.config.probe_private and ma.scope is not Scope.UNSPECIFIED)

    async def smtp_targets(self) -> tuple[MailAddress, ...]:
        """Addresses that receive the target's mail and may be probed."""
        return tuple(a for a in await self.mail_addresses() if a.receives and self.probe_allowed(a))

    async def smtp_session(self, ma: MailAddress, port: int = 25) -> smtp.SmtpSession:
        """The one SMTP session of this run with ma.ip:port, shared by every check."""

        async def compute() -> smtp.SmtpSession:
            # One connection per address at a time, whatever the port.
            lock = self._address_locks.setdefault(ma.ip, asyncio.Lock())
            async with lock, _shared_slot(ma.ip, self.config.per_address):
                opts = self.probe_options()
                if port != 25:
                    # Submission ports: is the service there?  No relay test.
                    opts.relay_test = False
                    opts.implicit_tls = port == 465
                return await self.timeline.smtp(ma.ip, port, ma.host, smtp.probe(ma.ip, ma.host, port, opts))

        return await self.fact(("smtp", ma.ip, port), compute)

    def probe_options(self) -> smtp.ProbeOptions:
        cfg = self.config
        selected = {c for c in (cfg.only or ("relay",)) if c not in cfg.skip}
        return smtp.ProbeOptions(
            ehlo_name=cfg.ehlo_name or smtp.default_ehlo_name(),
            timeout=cfg.smtp_timeout,
            # Leave the checks time to report on the session they waited for.
            budget=max(cfg.check_timeout * 0.8, cfg.smtp_timeout),
            relay_test="relay" in selected,
        )

    # ---- sender authentication facts --------------------------------------

    async def spf(self, ip: str, domain: str, sender: str = "", helo: str = "") -> SpfResult:
        """SPF check_host() result for (ip, domain), evaluated once per run."""
        key = ("spf", ip, domain.lower(), sender.lower(), helo.lower())
        return await self.fact(key, lambda: check_host(ip, domain, sender=sender or f"postmaster@{domain}",
                                                       helo=helo, dns=self.dns_client))

    async def spf_blame(self, lookup: LookupTrace) -> Blame:
        """Where the delegation of a lookup SPF evaluation could not finish breaks."""
        key = ("spf_blame", lookup.name, lookup.rdtype, lookup.outcome)
        return await self.fact(key, lambda: locate(self.dns_client, lookup, ", ".join(self.resolvers)))

    async def spf_lint(self, domain: str) -> SpfLint:
        """Problems of the SPF record tree of `domain` that no single evaluation shows."""
        return await self.fact(("spf_lint", domain.lower()), lambda: lint_domain(domain, self.dns_client))

    async def mail_domain(self) -> str:
        """The domain in the From address of the audited mail: --sender's domain, else the target name.

        "" when there is none (an IP literal without --sender) or when the target
        name does not exist (the mx check reports that)."""
        sender = sender_domain_of(self.config.sender)
        if sender:
            return sender
        if self.target.is_ip:
            return ""
        mx = await self.mx()
        if mx is not None and mx.answer.outcome is Outcome.NXDOMAIN and mx.apex.nxdomain:
            return ""
        return self.target.name.rstrip(".").lower()

    async def dkim_keys(self, domain: str) -> discovery.DkimDiscovery:
        """The DKIM keys of `domain` under the given and the common selectors (dkim and dmarc share them)."""
        domain = domain.rstrip(".").lower()
        given = tuple(self.config.dkim_selectors)

        async def compute() -> discovery.DkimDiscovery:
            sels = discovery.selectors_for(given)
            answers = await asyncio.gather(*(self.dns(discovery.selector_name(s, domain), "TXT") for s, _ in sels))
            return discovery.DkimDiscovery(
                domain, tuple(discovery.interpret(s, src, domain, a) for (s, src), a in zip(sels, answers)), given)

        return await self.fact(("dkim_keys", domain), compute)

    # ---- shared SMTP sessions ----------------------------------------------

    async def smtp_sessions(self) -> list[tuple[MailAddress, smtp.SmtpSession]]:
        """Every probe-able receiving address with its (shared) port 25 session."""
        targets = await self.smtp_targets()
        found = await asyncio.gather(*(self.smtp_session(ma) for ma in targets))
        return list(zip(targets, found))

    async def greeted_sessions(self) -> tuple[list[tuple[MailAddress, smtp.SmtpSession]],
                                              list[tuple[MailAddress, smtp.SmtpSession]]]:
        """(greeted, undecided) sessions for the checks that read them; raises Skip when neither is left."""
        return split_followers(await self.smtp_sessions())

    # ---- TLS, HTTPS, DNSSEC and Kerberos facts ------------------------------

    async def trust_store(self) -> tls.Store:
        """The system's trust anchors plus --ca-file: what senders verify MX certificates against."""
        async def compute() -> tls.Store:
            return tls.load_trust_store(self.config.ca_file)

        return await self.fact("trust_store", compute)

    async def https(self, url: str, addresses: Sequence[str], timeout: float) -> http.HttpResult:
        """One bounded GET of `url` per run, from `addresses` (this run's own resolution of the host)."""
        return await self.fact(("https", url), lambda: self.timeline.timed("http", f"GET {url}", http.fetch(
            url, ca_file=self.config.ca_file, addresses=tuple(addresses),
            connect_timeout=timeout, read_timeout=timeout)))

    @property
    def resolvers(self) -> tuple[str, ...]:
        """The configured resolvers as "ip:port" text, for findings that name who answered."""
        return tuple(str(r) for r in getattr(self.dns_client, "resolvers", ()))

    def zone_file_reason(self, names: Sequence[str], check: str) -> str:
        """Why `check` (DNSSEC, DANE) cannot judge names answered from a --zone-file, or ""."""
        return overlay.skip_reason(self.dns_client, names, check)

    async def dnssec_anchors(self) -> tuple:
        """The root trust anchor: --trust-anchor (whose default the CLI takes from
        $DELIVERCK_TRUST_ANCHOR), else the IANA root's."""
        async def compute() -> tuple:
            path = self.config.trust_anchor
            return dnssec.load_anchor_file(str(path)) if path else dnssec.DEFAULT_ANCHORS

        return await self.fact("dnssec_anchors", compute)

    async def dnssec_validation(self, name: str, rdtype: str) -> dnssec.Validation:
        """deliverck's own chain validation of one RRset from the trust anchor (CD=1 queries)."""
        anchors = await self.dnssec_anchors()
        return await self.fact(("dnssec_validation", name.rstrip(".").lower(), rdtype), lambda: self.timeline.timed(
            "dns", f"DNSSEC {rdtype} {name}", dnssec.validate(self.dns_client, name, rdtype, anchors)))

    async def resolver_view(self, name: str, rdtype: str) -> dnssec.ResolverView:
        """The configured resolver's own verdict on one RRset (AD bit, SERVFAIL, EDE)."""
        return await self.fact(("resolver_view", name.rstrip(".").lower(), rdtype), lambda: self.timeline.timed(
            "dns", f"AD {rdtype} {name}", dnssec.resolver_view(self.dns_client, name, rdtype)))

    async def suffix_view(self, name: str) -> dnssec.ResolverView:
        """The resolver's verdict (AD bit) on the public suffix above `name`: AD there shows that the
        resolver validates the chain down to the suffix, so its SERVFAIL below is about the name."""
        suffix = public_suffix(name) or "."
        return await self.resolver_view(suffix.rstrip(".") + ".", "SOA")

    async def kdc_probe(self, ip: str, host: str, realm: str, principal: str, port: int) -> krb.KdcProbe:
        """AS-REQ over UDP and TCP to ip:port, and a kpasswd connect, once per run (--kdc-timeout each)."""
        label, timeout = f"AS-REQ {realm} {timing.where(ip, port)}", self.config.kdc_timeout
        return await self.fact(("kdc", ip, port, realm, principal), lambda: self.timeline.timed(
            "kerberos", label, krb.probe_kdc(ip, host, realm, principal, timeout, port)))

