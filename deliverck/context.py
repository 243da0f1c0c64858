"""Facts about the target, shared by every check of one run.

Checks never open sockets: they ask the context.  Each fact is computed once
(memoized) even when several checks ask for it at the same moment
(single-flight), so checks stay independent without repeating lookups.
"""

from __future__ import annotations

import asyncio
import contextlib
import ipaddress
import weakref
from dataclasses import dataclass
from typing import Awaitable, Callable, TypeVar

import dns.rdtypes.ANY.MX
from publicsuffixlist import PublicSuffixList

from deliverck.config import Config
from deliverck.net import smtp
from deliverck.net.addresses import Scope, scope
from deliverck.net.dns import DnsAnswer, DnsClient, Outcome

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

_psl: PublicSuffixList | None = None


def org_domain(name: str) -> str:
    """The registrable (organizational) domain, from the bundled public suffix list."""
    global _psl
    if _psl is None:
        _psl = PublicSuffixList()
    return _psl.privatesuffix(name) or name


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
_SHARED_SLOTS: "weakref.WeakKeyDictionary[asyncio.AbstractEventLoop, dict[str, list]]" = \
    weakref.WeakKeyDictionary()


@contextlib.asynccontextmanager
async def _shared_slot(ip: str, limit: int):
    if limit <= 0:
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
    def __init__(self, config: Config, dns_client: DnsClient) -> None:
        self.config = config
        self.target = config.target
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
        from deliverck.net import dnssec

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
                return await smtp.probe(ma.ip, ma.host, port, opts)

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

    async def spf(self, ip: str, domain: str, sender: str = "", helo: str = ""):
        """SPF check_host() result for (ip, domain), evaluated once per run."""
        from deliverck.spf import check_host

        key = ("spf", ip, domain.lower(), sender.lower(), helo.lower())
        return await self.fact(key, lambda: check_host(ip, domain, sender=sender or f"postmaster@{domain}",
                                                       helo=helo, dns=self.dns_client))
