"""What one check_host() evaluation carries along: its DNS cache and prefetch, its counters, and
the macro expansion that needs them (RFC 7208 4.6.4, 7).

The evaluator (evaluator.py) builds on this state with the RFC's order of evaluation; the split
keeps the plumbing (single-flight lookups, lookahead, %{p} validation) apart from the rules.
"""

from __future__ import annotations

import asyncio
import ipaddress
import time
import urllib.parse
from typing import Protocol

import dns.reversename

from deliverck.net.dns import DnsAnswer, Outcome
from deliverck.records.spf.names import answer_texts as _answers
from deliverck.records.spf.names import norm as _norm
from deliverck.records.spf.names import query_name
from deliverck.records.spf.names import split_sender as _split_sender
from deliverck.records.spf.names import truncate as _truncate
from deliverck.records.spf.names import txt_string as _txt
from deliverck.records.spf.record import (
    MacroExpand,
    MacroString,
    Mechanism,
    Modifier,
    SpfRecord,
    is_spf_record,
    parse_record,
)
from deliverck.records.spf.trace import LookupTrace

LOOKUP_LIMIT = 10       # RFC 7208 4.6.4
VOID_LIMIT = 2          # RFC 7208 4.6.4
MX_LIMIT = 10
PTR_LIMIT = 10
PREFETCH_CAP = 60       # queries started ahead per evaluation, whatever the records say


class Lookup(Protocol):
    async def lookup(self, name: str, rdtype: str) -> DnsAnswer: ...


class _Stop(Exception):
    """Ends check_host() of the current domain with permerror or temperror."""

    def __init__(self, result: str, message: str) -> None:
        super().__init__(message)
        self.result = result
        self.message = message


class EvalState:
    """The state of one evaluation; `Evaluator` adds the rules of check_host()."""

    def __init__(self, ip: str, sender: str, helo: str, dns: Lookup, receiver: str,
                 now: int | None, default_explanation: str | None) -> None:
        addr = ipaddress.ip_address(ip)
        if isinstance(addr, ipaddress.IPv6Address) and addr.ipv4_mapped is not None:
            addr = addr.ipv4_mapped
        self.addr = addr
        # %{i} of an IPv6 address: nibbles in the case the address was given in.
        self._upper_hex = any(c in "ABCDEF" for c in ip)
        self.ip = str(addr)
        self.sender = sender
        self.local, self.sender_domain = _split_sender(sender)
        self.helo = helo
        self.dns = dns
        self.receiver = receiver
        self.now = int(time.time()) if now is None else now
        self.default_explanation = default_explanation
        self.lookups = 0
        self.voids = 0
        self.problems: list[str] = []
        self.cause = ""                        # the first cause of a permerror/temperror
        self.failed: LookupTrace | None = None  # the first failed lookup that stopped an evaluation
        self.loop = ""
        self.exp_source = ""
        self._path: list[str] = []             # domains being evaluated, outermost first
        self._invalid: dict[str, str] = {}      # names no query can be made for -> why
        self._cache: dict[tuple[str, str], asyncio.Future] = {}
        self._bg: list[asyncio.Future] = []
        self._prefetched = 0
        self._validated: str | None = None

    # ---- DNS ---------------------------------------------------------------

    @property
    def addr_type(self) -> str:
        return "A" if self.addr.version == 4 else "AAAA"

    def _start(self, name: str, rdtype: str) -> asyncio.Future:
        key = (_norm(name), rdtype)
        fut = self._cache.get(key)
        if fut is None:
            fut = asyncio.ensure_future(self._safe_lookup(key[0], rdtype))  # key[0]: the _norm() form
            self._cache[key] = fut
        return fut

    async def _safe_lookup(self, name: str, rdtype: str) -> DnsAnswer:
        qname, why = query_name(name)
        if why:
            # No DNS query can be composed (an empty or long label, perhaps
            # from a macro): the name is treated as non-existent, a no-match
            # (RFC 7208 4.3 by analogy, 4.8; the RFC 7208 test suite accepts
            # fail or permerror for these, "invalid-domain-*").
            self._invalid[name] = why
            return DnsAnswer(name, rdtype, Outcome.NXDOMAIN, detail=f"not a valid DNS name: {why}")
        try:
            return await self.dns.lookup(qname, rdtype)
        except asyncio.CancelledError:
            raise
        except Exception as e:  # a resolver must not crash the evaluation
            return DnsAnswer(name, rdtype, Outcome.ERROR, detail=f"{type(e).__name__}: {e}")

    async def q(self, name: str, rdtype: str, rec: list[LookupTrace]) -> DnsAnswer:
        ans = await asyncio.shield(self._start(name, rdtype))
        key = _norm(name)
        if key in self._invalid:
            rec.append(LookupTrace(key, rdtype, "invalid", (), self._invalid[key]))
        else:
            rec.append(LookupTrace(key, rdtype, ans.outcome.value, _answers(ans), ans.detail if not ans.ok else ""))
        return ans

    def stop(self, result: str, message: str, cause: str, failed: LookupTrace | None = None) -> _Stop:
        """A _Stop, remembering the first cause (the one the final result comes from)."""
        self._note_cause(cause, failed)
        return _Stop(result, message)

    def _note_cause(self, cause: str, failed: LookupTrace | None = None) -> None:
        if not self.cause:
            self.cause = cause
            self.failed = failed

    # ---- prefetch ----------------------------------------------------------

    def _prefetch(self, record: SpfRecord, domain: str) -> None:
        budget = LOOKUP_LIMIT - self.lookups + 1
        for t in record.terms:
            if budget <= 0 or self._prefetched >= PREFETCH_CAP:
                return
            if not t.counts:
                continue
            budget -= 1
            if isinstance(t, Modifier):
                if t.name == "redirect" and not record.has_all and not t.value.has_macros:
                    self._spawn(self._prefetch_record(_truncate(t.value.literal)))
                continue
            spec = t.domain_spec
            if spec is not None and spec.has_macros:
                continue
            target = _truncate(spec.literal) if spec is not None else domain
            if t.name == "include":
                self._spawn(self._prefetch_record(target))
            elif t.name == "a":
                self._prefetch_one(target, self.addr_type)
            elif t.name == "exists":
                self._prefetch_one(target, "A")
            elif t.name == "mx":
                self._spawn(self._prefetch_mx(target))

    def _prefetch_one(self, name: str, rdtype: str) -> asyncio.Future | None:
        if (_norm(name), rdtype) in self._cache:
            return self._cache[(_norm(name), rdtype)]
        if self._prefetched >= PREFETCH_CAP:
            return None
        self._prefetched += 1
        return self._start(name, rdtype)

    def _spawn(self, coro) -> None:
        self._bg.append(asyncio.ensure_future(coro))

    async def _prefetch_record(self, domain: str) -> None:
        fut = self._prefetch_one(domain, "TXT")
        if fut is None:
            return
        ans = await asyncio.shield(fut)
        if not ans.ok:
            return
        texts = [s for s in (_txt(r) for r in ans.records) if is_spf_record(s)]
        if len(texts) == 1:
            rec = parse_record(texts[0])
            if isinstance(rec, SpfRecord):
                self._prefetch(rec, domain)

    async def _prefetch_mx(self, domain: str) -> None:
        fut = self._prefetch_one(domain, "MX")
        if fut is None:
            return
        ans = await asyncio.shield(fut)
        if ans.ok and len(ans.records) <= MX_LIMIT:
            for r in ans.records:
                ex = r.exchange.to_text(omit_final_dot=True)
                if ex and ex != ".":
                    self._prefetch_one(ex, self.addr_type)

    async def close(self) -> None:
        pending = [t for t in self._bg if not t.done()] + [t for t in self._cache.values() if not t.done()]
        for t in pending:
            t.cancel()
        if pending:
            await asyncio.gather(*pending, return_exceptions=True)

    # ---- macros ------------------------------------------------------------

    async def expand(self, ms: MacroString, domain: str, rec: list[LookupTrace], *, exp: bool = False) -> str:
        out: list[str] = []
        for p in ms.parts:
            if isinstance(p, str):
                out.append(p)
                continue
            out.append(await self._expand_one(p, domain, rec, exp))
        return "".join(out)

    async def _expand_one(self, m: MacroExpand, domain: str, rec: list[LookupTrace], exp: bool) -> str:
        letter = m.letter
        if letter == "s":
            value = f"{self.local}@{self.sender_domain}"
        elif letter == "l":
            value = self.local
        elif letter == "o":
            value = self.sender_domain
        elif letter == "d":
            value = domain
        elif letter == "i":
            if self.addr.version == 4:
                value = self.ip
            else:
                value = ".".join(self.addr.exploded.replace(":", ""))
                if self._upper_hex:
                    value = value.upper()
        elif letter == "p":
            value = await self.validated_name(domain, rec)
        elif letter == "v":
            value = "in-addr" if self.addr.version == 4 else "ip6"
        elif letter == "h":
            value = self.helo
        elif letter == "c":
            value = self.ip
        elif letter == "r":
            value = self.receiver
        elif letter == "t":
            value = str(self.now)
        else:  # pragma: no cover - the parser refuses other letters
            raise _Stop("permerror", f"unknown macro letter {letter!r}")
        if m.digits is not None or m.reverse or m.delimiters:
            delims = m.delimiters or "."
            parts = [value]
            for d in delims:
                parts = [x for piece in parts for x in piece.split(d)]
            if m.reverse:
                parts.reverse()
            if m.digits is not None and m.digits < len(parts):
                parts = parts[-m.digits:]
            value = ".".join(parts)
        if m.upper:
            value = urllib.parse.quote(value, safe="")
        return value

    async def validated_name(self, domain: str, rec: list[LookupTrace]) -> str:
        """%{p}: a PTR name of the address that resolves back to it (RFC 7208 7.3), or "unknown"."""
        names = await self._validated_names(rec)
        if not names:
            return "unknown"
        d = _norm(domain)
        for n in names:
            if _norm(n) == d:
                return n
        for n in names:
            if _norm(n).endswith("." + d):
                return n
        return names[0]

    async def _validated_names(self, rec: list[LookupTrace]) -> list[str]:
        ans = await self.q(dns.reversename.from_address(self.ip).to_text(omit_final_dot=True), "PTR", rec)
        if not ans.ok:
            return []
        names = [r.target.to_text(omit_final_dot=True) for r in ans.records][:PTR_LIMIT]
        answers = await asyncio.gather(*(self.q(n, self.addr_type, rec) for n in names))
        out = []
        for n, a in zip(names, answers):
            if a.ok and any(ipaddress.ip_address(r.address) == self.addr for r in a.records):
                out.append(n)
        return out

    async def target(self, m: Mechanism | Modifier, domain: str, rec: list[LookupTrace]) -> str:
        spec = m.value if isinstance(m, Modifier) else m.domain_spec
        if spec is None:
            return domain
        return _truncate(await self.expand(spec, domain, rec))
