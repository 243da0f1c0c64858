"""DKIM key discovery for a domain: which selectors to ask and what each answer means.

Context.dkim_keys asks the TXT records (memoized and single-flight, so the dkim
and dmarc checks share one set of lookups) and hands them to `interpret`.
Selectors given by the user come first, then a short list of common selectors; without a known selector discovery cannot be exhaustive
(selectors are arbitrary names and DNS cannot list them).

It sits beside records/dkim.py rather than inside it because it reads DNS
answers (net.dns.DnsAnswer: rcodes, NXDOMAIN, timeouts) where dkim.py reads
only record text; it still sends nothing, so it is a record interpreter, not
network code.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from deliverck.net.dns import DnsAnswer, Outcome
from deliverck.records.dkim import DkimKey, DkimSyntaxError, parse_key_record

# Selectors of widely used signers; modest on purpose (each one is a lookup).
COMMON_SELECTORS: tuple[str, ...] = (
    "selector1", "selector2",      # Microsoft 365 (CNAMEs into <tenant>.onmicrosoft.com or *.dkim.mail.microsoft)
    "google",                      # Google Workspace
    "default", "dkim", "mail", "smtp",
    "k1", "k2",                    # Mailchimp / Mandrill
    "s1", "s2",                    # SendGrid and many others
    "mandrill", "mxvault",
    "key1", "sig1",                # (sig1: iCloud custom domains)
)

# Microsoft 365 points selector1/selector2 at keys it publishes for the tenant: first under
# <tenant>.onmicrosoft.com, and for domains set up since 2025 under <tenant>.<partition>.dkim.mail.microsoft
# (e.g. contoso.n-v1.dkim.mail.microsoft; Microsoft Learn, "Set up DKIM to sign mail from your Microsoft 365
# domain", CNAME records section).  Either way the CNAME exists before DKIM is enabled in the tenant, and
# leads nowhere until it is.
M365_TARGET = re.compile(
    r"^selector[12]-.+\._domainkey\.[^.]+\.(?:onmicrosoft\.com|[a-z0-9-]+\.dkim\.mail\.microsoft)$", re.I)


@dataclass(frozen=True)
class SelectorResult:
    selector: str
    source: str                          # "given" (--dkim-selector) or "common"
    name: str                            # <selector>._domainkey.<domain>
    answer: DnsAnswer
    keys: tuple[DkimKey, ...] = ()
    errors: tuple[tuple[str, str], ...] = ()   # (record text, syntax error)
    other_texts: tuple[str, ...] = ()    # TXT strings that are not key records at all

    @property
    def present(self) -> bool:
        return self.answer.ok

    @property
    def failed(self) -> bool:
        return not self.answer.outcome.definite

    @property
    def dangling(self) -> bool:
        """A CNAME leads somewhere with no TXT record (or nowhere)."""
        return self.answer.via_cname and self.answer.outcome in (Outcome.NXDOMAIN, Outcome.NODATA)

    @property
    def m365(self) -> bool:
        return self.answer.via_cname and bool(M365_TARGET.match(self.answer.canonical_name))


@dataclass(frozen=True)
class DkimDiscovery:
    domain: str
    results: tuple[SelectorResult, ...]
    given: tuple[str, ...]

    @property
    def keys(self) -> tuple[tuple[str, DkimKey], ...]:
        return tuple((r.selector, k) for r in self.results for k in r.keys)

    @property
    def usable(self) -> tuple[tuple[str, DkimKey], ...]:
        return tuple((s, k) for s, k in self.keys if k.usable)

    @property
    def failed(self) -> tuple[SelectorResult, ...]:
        return tuple(r for r in self.results if r.failed)


def txt_text(rdata) -> str:
    """A TXT record's strings joined (RFC 6376 3.6.2.2), as text: UTF-8 (bytes that are not, as U+FFFD).

    The text is kept as published (JSON carries it exactly); terminal and markup renderers escape it."""
    return b"".join(rdata.strings).decode("utf-8", "replace")


def selector_name(selector: str, domain: str) -> str:
    return f"{selector}._domainkey.{domain.rstrip('.')}"


def looks_like_key(text: str) -> bool:
    """Worth parsing as a key record (and reporting a syntax error for)?"""
    t = text.lstrip()
    return t.startswith("v=DKIM") or bool(re.search(r"(^|;)\s*(p|k)\s*=", t))


def interpret(selector: str, source: str, domain: str, answer: DnsAnswer) -> SelectorResult:
    keys: list[DkimKey] = []
    errors: list[tuple[str, str]] = []     # (record text, why it is no key)
    other: list[tuple[str, str]] = []
    if answer.ok:
        for rdata in answer.records:
            text = txt_text(rdata)
            try:
                keys.append(parse_key_record(text))
            except DkimSyntaxError as e:
                (errors if looks_like_key(text) or source == "given" else other).append((text, str(e)))
    return SelectorResult(selector, source, selector_name(selector, domain), answer, tuple(keys), tuple(errors),
                          tuple(t for t, _ in other))


def selectors_for(given: tuple[str, ...]) -> list[tuple[str, str]]:
    out: list[tuple[str, str]] = []
    seen = set()
    for s in given:
        if s.lower() not in seen:
            seen.add(s.lower())
            out.append((s, "given"))
    for s in COMMON_SELECTORS:
        if s not in seen:
            seen.add(s)
            out.append((s, "common"))
    return out
