"""deliverck's own DNSSEC validation: the chain from a trust anchor down to one RRset.

The configured resolver's AD bit says what *it* concluded (and nothing when
it does not validate); this module reaches its own conclusion from the raw
records, asked with DO=1 and CD=1 so that a validating resolver hands over
bogus data for us to judge instead of answering SERVFAIL.

`validate(client, name, rdtype, anchors)` returns a `Validation` whose
`state` is one of secure / insecure / bogus / indeterminate with a one-line
`reason`.  Performance: the DS and DNSKEY RRsets of every ancestor of the
name (the possible zone cuts, root down) and the RRset itself are asked all
at once, so a validation costs about one round trip of wall time, not two
per level.  Raw answers are cached per DnsClient (one per run) and
single-flight, so the MX, A and AAAA validations of one audit share the
root, TLD and zone lookups.  The cache lives on the client itself and holds
it only weakly, so it goes with the client at the end of the audit (a bulk
run audits thousands of domains in one process); `close(client)` cancels
what is still in flight.

The work is split by kind: dnssec_anchors.py (root trust anchors), dnssec_query.py (the raw DO/CD
questions, their per-run session, and the resolver's own view), dnssec_proof.py (signature and
denial proofs over fetched answers); this module walks the chain and validates one RRset.  The
names users import (`validate`, `Validation`, the states, the anchors, `resolver_view`, `close`)
are all reachable here.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Sequence
from dataclasses import dataclass

import dns.name
import dns.rcode
import dns.rdatatype

from deliverck.net.dns import public_suffix
from deliverck.net.dnssec_anchors import DEFAULT_ANCHORS, ROOT_ANCHORS, load_anchor_file, parse_anchors
from deliverck.net.dnssec_proof import (
    BOGUS,
    INDETERMINATE,
    INSECURE,
    SECURE,
    _denial_signed,
    _txt,
    _types_at,
    _validate_dnskeys,
    _when,
    check_rrset,
)
from deliverck.net.dnssec_query import EDE_EXPIRED, Raw, ResolverView, _Session, _session, close, resolver_view

__all__ = ["SECURE", "INSECURE", "BOGUS", "INDETERMINATE", "ROOT_ANCHORS", "DEFAULT_ANCHORS",
           "parse_anchors", "load_anchor_file", "Validation", "ZoneState", "ANCHOR_MISMATCH", "chain", "validate",
           "ResolverView", "resolver_view", "EDE_EXPIRED", "close", "check_rrset"]


@dataclass(frozen=True)
class Validation:
    name: str                 # as asked, no trailing dot
    rdtype: str
    state: str                # secure | insecure | bogus | indeterminate
    reason: str               # one line
    zone: str = ""            # the zone that holds the name (the last zone cut found), "." for the root
    records: tuple = ()       # rdata of the answer RRset (as seen with CD=1)
    outcome: str = ""         # ok | nodata | nxdomain | servfail | timeout | ... of the raw answer
    broken_at: str = ""       # bogus / indeterminate: the zone whose data broke the chain ("." the root)
    broken_for: str = ""      # the name whose chain broke there (the asked name, or a CNAME target)
    stale_signatures: str = ""  # chain not secure: why every RRSIG over the answer is out of its dates, if so

    @property
    def secure(self) -> bool:
        return self.state == SECURE

    @property
    def broken_above(self) -> bool:
        """Did the chain break at or above the public suffix of the name it was walked for (the
        root, a TLD, or the resolver in between)?  Then it says nothing about the name's own zone."""
        if self.state not in (BOGUS, INDETERMINATE) or not self.broken_at:
            return False
        suffix = public_suffix(self.broken_for or self.name)
        if not suffix:
            return True
        return dns.name.from_text(suffix).is_subdomain(dns.name.from_text(self.broken_at))




@dataclass(frozen=True)
class ZoneState:
    state: str
    zone: dns.name.Name
    reason: str
    keys: object = None
    nxdomain_at: dns.name.Name | None = None
    denial_at: dns.name.Name | None = None   # bogus because the no-DS proof for this name is broken
    at: dns.name.Name | None = None          # not secure: the zone whose data broke the chain


def _ancestors(name: dns.name.Name) -> list[dns.name.Name]:
    """Root first, `name` last."""
    out = []
    n = name
    while True:
        out.append(n)
        if n == dns.name.root:
            break
        n = n.parent()
    return out[::-1]


async def _chain(sess: _Session, name: dns.name.Name, anchors, now: float) -> ZoneState:
    """Walk from the root to the zone holding `name`; all lookups start at once."""
    levels = _ancestors(name)
    for lv in levels:
        sess.ask(lv, dns.rdatatype.DNSKEY)
        if lv != dns.name.root:
            sess.ask(lv, dns.rdatatype.DS)
    root = dns.name.root
    anchor_ds = [rd for rrs in anchors if rrs.name == root and rrs.rdtype == dns.rdatatype.DS for rd in rrs]
    anchor_keys = [rd for rrs in anchors if rrs.name == root and rrs.rdtype == dns.rdatatype.DNSKEY for rd in rrs]
    raw = await sess.ask(root, dns.rdatatype.DNSKEY)
    if anchor_keys and not anchor_ds:
        anchor_ds = [dns.dnssec.make_ds(root, k, "SHA256") for k in anchor_keys]
    if not anchor_ds:
        return ZoneState(INSECURE, root, "no trust anchor for the root")
    state, why, keys = _validate_dnskeys(root, raw, anchor_ds, now)
    if state != SECURE:
        return ZoneState(state, root, f"root: {_root_reason(raw, why)}", at=root)
    zone = root
    for lv in levels[1:]:
        ds_raw = await sess.ask(lv, dns.rdatatype.DS)
        if ds_raw.error:
            return ZoneState(INDETERMINATE, zone, f"DS lookup of {_txt(lv)} failed: {ds_raw.error}", at=zone)
        dsset = ds_raw.rrset("answer", lv, dns.rdatatype.DS)
        if dsset is not None:
            why = check_rrset(dsset, ds_raw.sigs("answer", lv, dns.rdatatype.DS), keys, zone, now)
            if why:
                return ZoneState(BOGUS, zone, why, at=zone)
            state, why, child_keys = _validate_dnskeys(lv, await sess.ask(lv, dns.rdatatype.DNSKEY), dsset, now)
            if state != SECURE:
                return ZoneState(state, lv, why, at=lv)
            zone, keys = lv, child_keys
            continue
        # No DS: the zone we are in must prove it, and the proof says whether lv is a cut.
        why = _denial_signed(ds_raw, zone, keys, now)
        if why:
            return ZoneState(BOGUS, zone, f"no DS for {_txt(lv)}: {why}", keys, denial_at=lv, at=zone)
        types = _types_at(ds_raw, lv, zone)
        if ds_raw.rcode == dns.rcode.NXDOMAIN:
            return ZoneState(SECURE, zone, "", keys, nxdomain_at=lv)
        if types is None:
            # The proof speaks of another name (e.g. a wildcard or closest encloser); accept as no cut.
            continue
        if isinstance(types, tuple):
            if types[1]:
                return ZoneState(INSECURE, lv, f"{_txt(lv)} is an unsigned delegation from {_txt(zone)} "
                                               "(NSEC3 opt-out, no DS)")
            continue                      # an empty non-terminal
        if dns.rdatatype.DS in types:
            return ZoneState(BOGUS, zone, f"the NSEC of {_txt(lv)} lists DS but no DS was returned", at=zone)
        if dns.rdatatype.NS in types and dns.rdatatype.SOA not in types:
            return ZoneState(INSECURE, lv, f"no DS for {_txt(lv)} in {_txt(zone)}: unsigned delegation "
                                           f"(zone cut at {_txt(lv)})")
        if dns.rdatatype.SOA in types and lv != zone:
            # Answered from the child's apex (a resolver asked the wrong side): no DS above it.
            return ZoneState(INSECURE, lv, f"no DS for {_txt(lv)}: unsigned zone (zone cut at {_txt(lv)})")
    return ZoneState(SECURE, zone, "", keys)


ANCHOR_MISMATCH = "does not match the trust anchor"


def _root_reason(raw: Raw, why: str) -> str:
    """Why the root's keys cannot be used, in words about the root (it has no parent)."""
    if raw.error:
        return why
    if raw.rrset("answer", dns.name.root, dns.rdatatype.DNSKEY) is None:
        return ("the root zone has no DNSKEY here (an unsigned private root, or a resolver that strips "
                "DNSSEC records)")
    if why.startswith("DS digest mismatch"):
        return f"the root DNSKEY {ANCHOR_MISMATCH} (" + why.split(": ", 1)[1] + ")"
    return why


async def chain(client, name: str, anchors=None, *, now: float | None = None) -> ZoneState:
    """The state of the zone holding `name` (cached per run)."""
    sess = _session(client)
    anchors = DEFAULT_ANCHORS if anchors is None else tuple(anchors)
    n = dns.name.from_text(name)
    t = time.time() if now is None else now
    key = (n, tuple(sorted(r.to_text() for r in anchors)), now)
    fut = sess.chains.get(key)
    if fut is None:
        fut = asyncio.ensure_future(_chain(sess, n, anchors, t))
        sess.chains[key] = fut
    return await asyncio.shield(fut)


def _stale_signatures(raw: Raw, qname, qtype, now: float) -> str:
    """When the chain above cannot be used, the RRSIG dates still speak: "" unless every RRSIG over
    the answer RRset has expired (or is not valid yet); no key is needed to read them."""
    if raw.msg is None:
        return ""
    rrset = raw.rrset("answer", qname, qtype) or raw.rrset("answer", qname, dns.rdatatype.CNAME)
    sigs = raw.sigs("answer", qname, rrset.rdtype) if rrset is not None else None
    if not sigs:
        return ""
    what = f"{_txt(qname)} {dns.rdatatype.to_text(rrset.rdtype)}"
    if all(sig.expiration < now for sig in sigs):
        sig = max(sigs, key=lambda x: x.expiration)
        return (f"RRSIG over {what} (key {sig.key_tag}) expired {_when(sig.expiration)} "
                f"(valid from {_when(sig.inception)})")
    if all(sig.inception > now for sig in sigs):
        sig = min(sigs, key=lambda x: x.inception)
        return f"RRSIG over {what} (key {sig.key_tag}) not valid before {_when(sig.inception)}"
    return ""


def _outcome(raw: Raw, name, rdtype) -> str:
    if raw.error:
        return raw.failure or "error"
    if raw.rcode == dns.rcode.NXDOMAIN:
        return "nxdomain"
    assert raw.msg is not None              # a Raw without error has a message
    return "ok" if any(rr.rdtype == rdtype for rr in raw.msg.answer) else "nodata"


async def validate(client, name: str, rdtype: str, anchors: Sequence | None = None,
                   *, now: float | None = None) -> Validation:
    """Validate the `rdtype` RRset of `name` from `anchors` (default: the IANA root anchors).

    `anchors`: RRsets as returned by `parse_anchors`/`load_anchor_file`.
    Never raises for DNS outcomes.
    """
    t = time.time() if now is None else now
    anchors = DEFAULT_ANCHORS if anchors is None else tuple(anchors)
    sess = _session(client)
    qname = dns.name.from_text(name)
    qtype = dns.rdatatype.from_text(rdtype)
    label = name.rstrip(".").lower() or "."
    answer_f = sess.ask(qname, qtype)
    chain_f = asyncio.ensure_future(chain(client, qname.to_text(), anchors, now=now))
    raw = await answer_f
    zs = await chain_f
    outcome = _outcome(raw, qname, qtype)
    records = ()
    if raw.msg is not None:
        rr = next((r for r in raw.msg.answer if r.rdtype == qtype), None)
        records = tuple(rr) if rr is not None else ()

    def out(state, reason, zone=zs.zone, at=None, walked=qname):
        broken = "" if state in (SECURE, INSECURE) else _txt(at if at is not None else zone)
        stale = _stale_signatures(raw, qname, qtype, t) if broken and zs.state != SECURE else ""
        return Validation(label, rdtype.upper(), state, reason, _txt(zone) if zone != dns.name.root else ".",
                          records, outcome, broken, _txt(walked) if broken else "", stale)

    if zs.state == BOGUS and zs.denial_at == qname and zs.keys is not None and raw.msg is not None:
        # The name's own RRset, signed by the same zone, usually says more directly what is broken.
        own = raw.rrset("answer", qname, qtype)
        if own is not None:
            why = check_rrset(own, raw.sigs("answer", qname, qtype), zs.keys, zs.zone, t)
            if why:
                return out(BOGUS, why)
    if zs.state != SECURE:
        return out(zs.state, zs.reason, at=zs.at)
    if raw.error:
        return out(INDETERMINATE, f"{label} {rdtype.upper()} lookup failed: {raw.error}")
    if zs.nxdomain_at is not None:
        return out(SECURE, f"{_txt(zs.nxdomain_at)} does not exist (NXDOMAIN, signed denial in {_txt(zs.zone)})")
    # Walk the answer: the RRset itself, or a CNAME chain that may leave the zone.
    owner = qname
    zone, keys = zs.zone, zs.keys
    seen = 0
    while True:
        seen += 1
        target = raw.rrset("answer", owner, qtype)
        cname = raw.rrset("answer", owner, dns.rdatatype.CNAME) if target is None else None
        rrset = target if target is not None else cname
        if owner != qname:
            z2 = await chain(client, owner.to_text(), anchors, now=now)
            if z2.state != SECURE:
                return out(z2.state, f"via CNAME: {z2.reason}", z2.zone, at=z2.at, walked=owner)
            zone, keys = z2.zone, z2.keys
        if rrset is None:
            break
        why = check_rrset(rrset, raw.sigs("answer", owner, rrset.rdtype), keys, zone, t)
        if why:
            return out(BOGUS, why, zone, walked=owner)
        if target is not None or seen > 8:
            return out(SECURE, f"{label} {rdtype.upper()} validated from the root trust anchor "
                               f"(signed by {_txt(zone)})", zone)
        assert cname is not None            # rrset is the CNAME when there is no target
        owner = cname[0].target
    # A negative answer at `owner` (or a CNAME chain ending in one): the denial must verify.
    why = _denial_signed(raw, zone, keys, t)
    if why:
        return out(BOGUS, why, zone, walked=owner)
    if raw.rcode == dns.rcode.NOERROR:
        types = _types_at(raw, owner, zone)
        if isinstance(types, set) and (qtype in types or dns.rdatatype.CNAME in types):
            return out(BOGUS, f"broken denial of existence: the NSEC of {_txt(owner)} lists "
                              f"{rdtype.upper()} but none was returned", zone, walked=owner)
        return out(SECURE, f"{label} has no {rdtype.upper()} records (signed denial in {_txt(zone)})", zone)
    return out(SECURE, f"{_txt(owner)} does not exist (signed denial in {_txt(zone)})", zone)

