"""DMARCbis policy discovery and organizational domains (DNS tree walk), beside RFC 7489's.

RFC 7489 takes the organizational domain from the public suffix list and looks for a policy at
the From domain, then at that organizational domain (RFC 7489 3.2, 6.6.3).  DMARCbis
(draft-ietf-dmarc-dmarcbis, which obsoletes RFC 7489 and RFC 9091) drops the list: a receiver
queries `_dmarc` at the name and at its parents (section "DNS Tree Walk", 4.10 in recent
revisions), and the records themselves say where an organization starts (`psd=y` marks a public
suffix operator, `psd=n` an organizational domain).  Receivers move slowly, so deliverck works out
both answers and reports where they differ; RECEIVER_RULES says which receiver follows which.

Everything here is pure: the walk asks an injected `lookup` (the check passes one that goes
through the audit's Context, so the DNS cache and timeouts are shared).
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from dataclasses import dataclass

from deliverck.records import dmarc as dm

# The tree walk's shortcut (draft-ietf-dmarc-dmarcbis, "DNS Tree Walk", steps 4-5): after the
# first query, a name of 8 or more labels is cut to its last 7 labels, then one label is removed
# at a time, down to the top-level label.  So a walk makes at most 8 queries, whatever the depth.
SHORTCUT_LABELS = 7
MAX_QUERIES = SHORTCUT_LABELS + 1

RFC7489, DMARCBIS = "rfc7489", "dmarcbis"

# Which rules each receiver applies: data in one place, to change as receivers move.  No large
# provider had announced DMARCbis processing in the sources deliverck cites (the reference file
# on receivers 2024-2026: "today most still apply RFC 7489"), so these are assumptions unless the
# note says otherwise.  Keys are catalog system ids.
RECEIVER_RULES: dict[str, tuple[str, str]] = {
    "gmail": (RFC7489, "assumed: Google's DMARC help cites RFC 7489 and announces no DMARCbis processing"),
    "yahoo": (RFC7489, "assumed: Yahoo's sender requirements cite RFC 7489"),
    "outlook-com": (RFC7489, "assumed: Microsoft's 2025 high-volume sender rules cite DMARC, not DMARCbis"),
    "exchange-online": (RFC7489, "assumed: Microsoft 365's DMARC documentation describes RFC 7489"),
    "postfix": (RFC7489, "OpenDMARC (the usual Postfix milter) reads a public suffix list "
                         "(its PublicSuffixList option): RFC 7489 discovery"),
}


def receivers_following(model: str) -> tuple[str, ...]:
    """Catalog systems that apply `model`'s rules, by RECEIVER_RULES."""
    return tuple(r for r, (m, _note) in RECEIVER_RULES.items() if m == model)


def labels(domain: str) -> list[str]:
    d = domain.strip().rstrip(".").lower()
    return d.split(".") if d else []


def walk_names(domain: str) -> tuple[str, ...]:
    """The domains whose `_dmarc` names a full tree walk from `domain` queries, in order.

    Never the root, never more than MAX_QUERIES names: the name itself, then (shortcut) at most
    SHORTCUT_LABELS labels, then each parent down to the top-level domain."""
    parts = labels(domain)
    if not parts:
        return ()
    out = [".".join(parts)]
    for k in range(min(len(parts) - 1, SHORTCUT_LABELS), 0, -1):
        out.append(".".join(parts[-k:]))
    return tuple(out)


@dataclass(frozen=True)
class Probe:
    """What one `_dmarc.<domain>` TXT lookup gave: the records starting with v=DMARC1."""

    domain: str
    records: tuple[str, ...] = ()
    failed: str = ""                  # the DNS outcome when the lookup did not complete

    @property
    def record(self) -> str | None:
        """The record a receiver uses: exactly one (several are all discarded, DMARCbis step 3)."""
        return self.records[0] if len(self.records) == 1 else None

    @property
    def parsed(self) -> dm.DmarcRecord | None:
        if self.record is None:
            return None
        try:
            return dm.parse_record(self.record)
        except dm.DmarcSyntaxError:
            return None

    @property
    def psd(self) -> str:
        rec = self.parsed
        return rec.psd if rec is not None else ""


Lookup = Callable[[str], Awaitable[Probe]]


@dataclass(frozen=True)
class Walk:
    start: str
    probes: tuple[Probe, ...]

    @property
    def failed(self) -> Probe | None:
        return next((p for p in self.probes if p.failed), None)

    @property
    def found(self) -> Probe | None:
        """The first probe with a usable record: DMARCbis policy discovery stops there."""
        return next((p for p in self.probes if p.record is not None), None)


async def _walk(domain: str, lookup: Lookup, stop: Callable[[int, Probe], bool]) -> Walk:
    probes: list[Probe] = []
    names = walk_names(domain)
    for i, name in enumerate(names):
        p = await lookup(name)
        probes.append(p)
        if p.failed or stop(i, p):
            break
    return Walk(names[0] if names else "", tuple(probes))


async def policy_walk(domain: str, lookup: Lookup) -> Walk:
    """DMARCbis policy discovery ("DMARC Policy Discovery"): the first single record on the walk."""
    return await _walk(domain, lookup, lambda _i, p: p.record is not None)


async def org_walk(domain: str, lookup: Lookup) -> Walk:
    """The walk for the organizational domain ("DNS Tree Walk" steps 2 and 7): it goes on past
    records without psd=, and stops at psd=n anywhere or psd=y above the starting name."""
    return await _walk(domain, lookup, lambda i, p: p.psd == "n" or (p.psd == "y" and i > 0))


def organizational_domain(walk: Walk) -> str | None:
    """The DMARCbis organizational domain ("Identifying the Organizational Domain"); None when a
    lookup on the way failed, so the answer is not known.

    psd=n: that domain.  psd=y above the start: the name one label below it.  Otherwise the
    domain with the fewest labels that holds a valid record; with none at all, the name itself."""
    if walk.failed is not None:
        return None
    start = labels(walk.start)
    for i, p in enumerate(walk.probes):
        if p.psd == "n":
            return p.domain
        if p.psd == "y" and i > 0:
            return ".".join(start[-(len(labels(p.domain)) + 1):])
    valid = [p for p in walk.probes if p.parsed is not None]
    return valid[-1].domain if valid else walk.start


WEAKER = {"reject": "quarantine", "quarantine": "none", "none": "none"}


@dataclass(frozen=True)
class Applied:
    """The policy one set of rules applies to failing mail from a domain."""

    model: str                # RFC7489 or DMARCBIS
    policy_domain: str        # where the record was found
    policy: str               # what most failing mail gets: none, quarantine or reject
    tag: str                  # the tag it came from: p, sp or np
    note: str = ""            # pct= or t= when they change the outcome
    partial: bool = False     # pct= between 1 and 99: the stronger policy for some mail only

    def describe(self) -> str:
        return f"{self.tag}={self.policy} from _dmarc.{self.policy_domain}" + (f" ({self.note})" if self.note else "")

    def same_outcome(self, other: Applied) -> bool:
        return (self.policy, self.partial) == (other.policy, other.partial)


def _same(a: str, b: str) -> bool:
    return a.rstrip(".").lower() == b.rstrip(".").lower()


def rfc7489_policy(rec: dm.DmarcRecord, domain: str, policy_domain: str) -> Applied:
    """RFC 7489 6.6.3-6.6.4: p or sp; np= and t= are unknown; failing mail not sampled by pct=
    gets the next weaker policy (so pct=0 applies the weaker policy to all of it)."""
    tag = "p" if _same(domain, policy_domain) else ("sp" if "sp" in rec.tags else "p")
    policy = rec.policy_for(domain, policy_domain)
    if policy == "none" or rec.pct == 100:
        return Applied(RFC7489, policy_domain, policy, tag)
    if rec.pct == 0:
        return Applied(RFC7489, policy_domain, WEAKER[policy], tag,
                       f"pct=0: {policy} applies to no mail, {WEAKER[policy]} to all")
    return Applied(RFC7489, policy_domain, policy, tag,
                   f"pct={rec.pct}: {policy} for {rec.pct}% of failing mail, {WEAKER[policy]} for the rest",
                   partial=True)


def dmarcbis_policy(rec: dm.DmarcRecord, domain: str, policy_domain: str, exists: bool = True,
                    test_mode: bool = True) -> Applied:
    """DMARCbis: p for the domain itself, np= for a subdomain that does not exist (else sp, else p),
    sp= for other subdomains; pct= is gone; t=y applies the policy one level weaker (unless
    `test_mode` is False: the policy as written)."""
    if _same(domain, policy_domain):
        tag = "p"
    elif not exists and "np" in rec.tags and rec.nonexistent_policy:
        tag = "np"
    else:
        tag = "sp" if "sp" in rec.tags else "p"
    policy = {"p": rec.policy, "sp": rec.subdomain_policy, "np": rec.nonexistent_policy}[tag]
    if test_mode and rec.test_mode and policy != "none":
        return Applied(DMARCBIS, policy_domain, WEAKER[policy], tag,
                       f"t=y: test mode, {policy} is applied as {WEAKER[policy]}")
    return Applied(DMARCBIS, policy_domain, policy, tag)


def removed_tags_note(rec: dm.DmarcRecord) -> str:
    """What DMARCbis receivers do with the removed tags pct=, rf= and ri= of this record."""
    parts = []
    if "pct" in rec.tags:
        if rec.pct == 0:
            parts.append(f"pct=0 (the old test mode) is ignored, so p={rec.policy} applies in full: "
                         f"write t=y instead")
        else:
            parts.append(f"pct={rec.tags['pct']} is ignored (the policy applies to all failing mail; "
                         f"t=y is the new test mode)")
    for tag in ("rf", "ri"):
        if tag in rec.tags:
            parts.append(f"{tag}={rec.tags[tag]} is ignored")
    return "; ".join(parts)
