"""DNSSEC: do the domain's MX RRset and its MX hosts' addresses validate?

A validating resolver (the ones large senders use: Exchange Online, Gmail,
most ISPs, Postfix behind unbound) answers SERVFAIL for records whose
signatures do not validate, so a zone with an expired RRSIG, a DS that no
longer matches its key, or a broken signature is a domain nobody can mail:
Exchange Online bounces with 4.7.324 / 5.7.324 dnssec-invalid (seed 002),
other senders queue and finally expire the message.

Two sources side by side, per RRset: the configured resolver's own verdict
(AD bit, SERVFAIL) and deliverck's own chain validation from the root trust
anchor (deliverck/net/dnssec.py), so a user behind a non-validating resolver
still gets an answer; a disagreement is reported by itself.

Who is blamed: only a break at or below the audited name's own delegation
(below its public suffix: its DS, its keys, its signatures, its denials) is
the domain's fault.  A chain that breaks at the root or a TLD (a private root
whose keys are not the IANA anchor, a root without DNSKEY, a forwarder that
strips RRSIGs or ignores DO, a resolver that cannot be asked with DO=1 at
all) says nothing about the domain: the resolver's AD bit answers instead
when it can (a notice names that fallback), and otherwise the check could
not be done here (`dnssec.cannot_validate`, status error, exit 3).
"""

from __future__ import annotations

import asyncio
import dataclasses

from deliverck.checkcontext import CheckContext
from deliverck.context import first_mx_hosts
from deliverck.model import (
    CheckSpec,
    Direction,
    Finding,
    FindingSpec,
    Owner,
    Severity,
    Skip,
)
from deliverck.net import dnssec
from deliverck.net.dns import public_suffix

IN, NONE = Direction.INBOUND, Direction.NONE
DNS = Owner.DNS_ADMIN
NDR = ("exchange-online.dnssec-invalid-deferred", "exchange-online.dnssec-invalid",
       "postfix.dnssec-bogus-try-again", "generic.dnssec-directory-failure")

CHECK = CheckSpec(
    id="dnssec",
    title="DNSSEC (MX and mail host records)",
    cause="The domain's MX records or its mail hosts' addresses fail DNSSEC validation, so validating senders cannot look them up.",
    order=65,
    findings=(
        FindingSpec("dnssec.secure", Severity.INFO,
                    "{subject} {rdtype}: secure ({reason}); resolver: {resolver}",
                    "Nothing to fix.", Owner.NOBODY, NONE, refs=("RFC 4035 5",)),
        FindingSpec("dnssec.insecure", Severity.NOTICE,
                    "{subject} {rdtype}: insecure, not DNSSEC-signed ({reason}); no effect on delivery",
                    "Nothing to fix for delivery.  To protect the records (and to use DANE), sign the zone "
                    "{zone} and publish its DS in the parent zone.",
                    Owner.NOBODY, NONE, refs=("RFC 4035 4.3",)),
        FindingSpec("dnssec.anchor_mismatch", Severity.NOTICE,
                    "the root's DNSSEC keys do not match deliverck's trust anchor ({reason}); own validation "
                    "is not possible, only the resolver's verdict (AD bit) counts",
                    "For a private or test root, give its trust anchor with --trust-anchor FILE; on the "
                    "internet, check that the resolver is not rewriting answers.",
                    Owner.NOBODY, Direction.NONE),
        FindingSpec("dnssec.bogus", Severity.ERROR,
                    "{subject} {rdtype}: DNSSEC bogus ({reason}); validating resolvers answer SERVFAIL, so mail "
                    "from DNSSEC-validating senders to this domain fails",
                    "Fix the signatures of the zone {zone}: re-sign it (check the signer is running and its keys "
                    "match the DS in the parent), or, if the keys were replaced, update the DS at the registrar; "
                    "as a last resort remove the DS to make the zone insecure instead of bogus.",
                    DNS, IN, ndr=NDR, refs=("RFC 4035 5.5", "seed 002")),
        FindingSpec("dnssec.rrsig_expired", Severity.ERROR,
                    "{subject} {rdtype}: DNSSEC signature expired ({reason}); validating resolvers answer "
                    "SERVFAIL, so mail from DNSSEC-validating senders to this domain fails",
                    "Re-sign the zone {zone} now and make sure re-signing runs automatically well before "
                    "signatures expire (the signer or the DNS host's DNSSEC service has stopped).",
                    DNS, IN, ndr=NDR, refs=("RFC 4035 5.3.1", "seed 002")),
        FindingSpec("dnssec.indeterminate", Severity.WARNING,
                    "{subject} {rdtype}: DNSSEC state could not be determined ({reason})",
                    "Check that the resolver answers DNSSEC queries (DO bit, TCP fallback) and run again.",
                    Owner.NETWORK, NONE, inconclusive=True),
        FindingSpec("dnssec.resolver_disagrees", Severity.WARNING,
                    "{subject} {rdtype}: the resolver says {resolver}, deliverck's own validation says {own} "
                    "({reason})",
                    "Find out which is right: check the resolver's trust anchor and clock, and the zone's "
                    "signatures (e.g. with delv or dnsviz).",
                    Owner.NETWORK, NONE, refs=("RFC 6840 5.7",)),
        FindingSpec("dnssec.resolver_not_validating", Severity.NOTICE,
                    "the resolver {subject} never set the AD bit although deliverck validated {count} RRset(s) "
                    "as secure: it does not validate DNSSEC (the own validation is used)",
                    "Nothing to fix for the audited domain; to see what validating senders see, use a validating "
                    "resolver (--resolver).",
                    Owner.NOBODY, NONE, refs=("RFC 6840 5.7",)),
        FindingSpec("dnssec.own_validation_unavailable", Severity.NOTICE,
                    "deliverck cannot validate DNSSEC from here ({reason}); the verdict of the validating "
                    "resolver {resolver} (AD bit) is used instead",
                    "Nothing to fix in the audited zone. To validate independently of the resolver, give the "
                    "root's trust anchor with --trust-anchor FILE (a private root), or use a resolver that "
                    "passes DNSSEC records through (--resolver IP).",
                    Owner.NOBODY, NONE, refs=("RFC 4035 4.3", "RFC 6840 5.7")),
        FindingSpec("dnssec.cannot_validate", Severity.ERROR,
                    "DNSSEC of {subject} cannot be validated from here: {reason}; the resolver {resolver} gives "
                    "no verdict either (no AD bit) for {rrsets}",
                    "Nothing found wrong in the audited zone: the break is above it (the root, a TLD) or in the "
                    "path to it (the resolver). For a private DNS root give its trust anchor with "
                    "--trust-anchor FILE; otherwise use a resolver that passes DNSSEC records through (DO bit, "
                    "TCP) and validates (--resolver IP), then run again.",
                    Owner.NETWORK, NONE, refs=("RFC 4035 4.3", "RFC 6840 5.7"), inconclusive=True),
    ),
)


def _resolver_text(view: dnssec.ResolverView) -> str:
    if view.outcome in ("ok", "nodata", "nxdomain"):
        return f"{view.outcome.upper()}, AD={'1' if view.authenticated else '0'}"
    ede = view.ede_text()
    return f"{view.outcome.upper()} ({ede})" if ede else view.outcome.upper()


_ANSWERED = ("ok", "nodata", "nxdomain")


def fallback(v: dnssec.Validation, view: dnssec.ResolverView, suffix: dnssec.ResolverView | None,
             validating: bool, resolver: str) -> list[Finding] | None:
    """Findings for an RRset whose own validation broke above its zone, from the resolver's verdict
    alone; None when the resolver cannot answer for it either.

    `suffix`: the resolver's view of the name's public suffix; `validating`: the resolver set AD on
    something in this run; `resolver`: the configured resolvers, for the text."""
    subject = v.name
    args = dict(rdtype=v.rdtype, zone=v.zone, resolver=_resolver_text(view), own=v.state)
    ev = (f"own validation: {v.state}: {v.reason}", f"resolver ({view.detail}): {_resolver_text(view)}")
    if view.authenticated:
        return [CHECK.finding("secure", subject, ev, reason=f"validated by the resolver {resolver} (AD bit)",
                              **args)]
    if view.outcome in _ANSWERED and validating:
        return [CHECK.finding("insecure", subject, ev, reason=f"the validating resolver {resolver} answers "
                              "without the AD bit", **args)]
    if view.outcome == "servfail" and suffix is not None and suffix.authenticated:
        tld = public_suffix(v.broken_for or v.name)
        if v.outcome not in _ANSWERED:
            return [CHECK.finding("indeterminate", subject, ev, reason=f"the resolver answers SERVFAIL, also with "
                                  f"checking disabled ({view.detail})", **args)]
        ede = view.ede_text()
        # RFC 8914 4.8 (EDE 7), or the signatures' own dates, which need no key to read.
        expired = any(code == dnssec.EDE_EXPIRED for code, _ in view.ede) or " expired " in v.stale_signatures
        why = v.stale_signatures or ede or "no reason given"
        reason = (f"the validating resolver {resolver} answers SERVFAIL ({why}) but hands the records over "
                  f"with checking disabled, and it validates {tld}. (AD bit): the break is below {tld}.")
        return [CHECK.finding("rrsig_expired" if expired else "bogus", subject, ev, reason=reason, **args)]
    return None


def is_expired(v: dnssec.Validation) -> bool:
    return v.state == dnssec.BOGUS and " expired " in v.reason


async def rrset_state(ctx: CheckContext, name: str, rdtype: str):
    """(own Validation, ResolverView) for one RRset: the two sources side by side."""
    return await asyncio.gather(ctx.dnssec_validation(name, rdtype), ctx.resolver_view(name, rdtype))


def judge(v: dnssec.Validation, view: dnssec.ResolverView) -> list[Finding]:
    """The findings for one RRset from both sources (no resolver_not_validating: that is per run)."""
    subject = v.name
    args = dict(rdtype=v.rdtype, reason=v.reason, zone=v.zone, resolver=_resolver_text(view), own=v.state)
    ev = (f"own validation: {v.state}: {v.reason}", f"resolver ({view.detail}): {_resolver_text(view)}")
    out: list[Finding] = []
    if v.state == dnssec.SECURE:
        out.append(CHECK.finding("secure", subject, ev, **args))
    elif v.state == dnssec.INSECURE:
        out.append(CHECK.finding("insecure", subject, ev, **args))
    elif v.state == dnssec.BOGUS and view.authenticated:
        # A validating resolver vouches for the data: report the disagreement, not a failure.
        return [CHECK.finding("resolver_disagrees", subject, ev, **args)]
    elif v.state == dnssec.BOGUS:
        out.append(CHECK.finding("rrsig_expired" if is_expired(v) else "bogus", subject, ev, **args))
    else:
        out.append(CHECK.finding("indeterminate", subject, ev, **args))
        return out
    answered = view.outcome in ("ok", "nodata", "nxdomain")
    if not answered and view.outcome != "servfail":
        return out                      # the resolver did not answer: nothing to compare
    if not answered and v.outcome not in ("ok", "nodata", "nxdomain"):
        return out                      # no answer even with CD=1: the SERVFAIL is not about DNSSEC
    disagree = (
        (v.state == dnssec.SECURE and not answered)
        or (v.state == dnssec.INSECURE and (view.authenticated or not answered))
        or (v.state == dnssec.BOGUS and answered and view.authenticated)
    )
    if disagree:
        out.append(CHECK.finding("resolver_disagrees", subject, ev, **args))
    return out


async def _questions(ctx: CheckContext) -> tuple[list[tuple[str, str]], dnssec.Validation]:
    domain = ctx.target.name
    mx_v = await ctx.dnssec_validation(domain, "MX")
    qs = [(domain, "MX")]
    # Hosts from the own (CD=1) answer: a bogus zone's MX still names them (the first
    # MX_HOST_LIMIT by preference, as the context resolves them).
    hosts: list[str] = list(first_mx_hosts(
        (r.preference, r.exchange.to_text(omit_final_dot=True).lower()) for r in mx_v.records))
    mx = await ctx.mx()
    if mx is not None:
        for h in mx.hosts:
            if h.name not in hosts:
                hosts.append(h.name)
    if not hosts and mx_v.outcome in ("nodata", "nxdomain") and not (mx and mx.records):
        hosts = [domain]                # implicit MX: the domain's own addresses
    for name in hosts:
        qs += [(name, "A"), (name, "AAAA")]
    return qs, mx_v


async def run(ctx: CheckContext) -> list[Finding]:
    if ctx.target.is_ip:
        raise Skip("an IP address has no DNSSEC-signed mail records to validate")
    if why := ctx.zone_file_reason([ctx.target.name], "DNSSEC"):
        raise Skip(why)
    questions, mx_v = await _questions(ctx)
    suffixes: dict[str, asyncio.Future] = {}
    if mx_v.broken_above:
        # Own validation cannot speak for the domain: ask the resolver about the suffix meanwhile.
        suffixes[public_suffix(ctx.target.name)] = asyncio.ensure_future(ctx.suffix_view(ctx.target.name))
    try:
        states = await asyncio.gather(*(rrset_state(ctx, n, t) for n, t in questions))
        out = await _judge_all(ctx, questions, states, suffixes)
        return await _with_chains(ctx, [v for v, _ in states], out)
    finally:
        for f in suffixes.values():
            f.cancel()


async def _judge_all(ctx: CheckContext, questions, states, suffixes: dict[str, asyncio.Future]) -> list[Finding]:
    validating = any(view.authenticated for _, view in states)
    above = [(q, v, view) for q, (v, view) in zip(questions, states) if v.broken_above]
    for _, v, _ in above:
        key = public_suffix(v.broken_for or v.name)
        if key not in suffixes:
            suffixes[key] = asyncio.ensure_future(ctx.suffix_view(v.broken_for or v.name))
    if suffixes:
        await asyncio.gather(*suffixes.values(), return_exceptions=True)

    def suffix_of(v):
        f = suffixes.get(public_suffix(v.broken_for or v.name))
        return f.result() if f is not None and f.done() and not f.cancelled() and f.exception() is None else None

    validating = validating or any((s := suffix_of(v)) is not None and s.authenticated for _, v, _ in above)
    out: list[Finding] = []
    unanswered: list[tuple[str, str, dnssec.Validation, dnssec.ResolverView]] = []
    fell_back: list[dnssec.Validation] = []
    judged: list[tuple[tuple[str, str], dnssec.Validation, dnssec.ResolverView]] = []
    resolver = ", ".join(ctx.resolvers)
    for (name, rdtype), (v, view) in zip(questions, states):
        first = (name, rdtype) == questions[0]
        if v.broken_above:
            got = fallback(v, view, suffix_of(v), validating, resolver)
            empty = not first and view.outcome == "nodata"      # a host without AAAA (or A)
            if got is None:
                if not empty:
                    unanswered.append((name, rdtype, v, view))
                continue
            fell_back.append(v)
            if not (empty and got[0].id in ("dnssec.secure", "dnssec.insecure")):
                out += got
            continue
        if not first and v.outcome == "nodata" and v.state in (dnssec.SECURE, dnssec.INSECURE):
            continue                    # a host without AAAA (or A): nothing to report per RRset
        out += judge(v, view)
        judged.append(((name, rdtype), v, view))
    if unanswered:
        head = unanswered[0][2]
        shown = ", ".join(f"{n} {t}" for n, t, _, _ in unanswered)
        ev = tuple(f"{n} {t}: own validation {v.state}: {v.reason}; resolver ({view.detail}): "
                   f"{_resolver_text(view)}" for n, t, v, view in unanswered)
        out.append(CHECK.finding("cannot_validate", ctx.target.name, ev, reason=head.reason, resolver=resolver,
                                 rrsets=shown))
    if fell_back:
        head = fell_back[0]
        if dnssec.ANCHOR_MISMATCH in head.reason:
            detail = head.reason.split(dnssec.ANCHOR_MISMATCH, 1)[1].strip()
            detail = detail[1:-1] if detail.startswith("(") and detail.endswith(")") else head.reason
            out.insert(0, CHECK.finding("anchor_mismatch", ".", (head.reason,), reason=detail))
        else:
            out.insert(0, CHECK.finding("own_validation_unavailable", ".", (head.reason,), reason=head.reason,
                                        resolver=resolver))
    secure_seen = 0
    ad_seen = False
    for _, v, view in judged:
        if view.authenticated:
            ad_seen = True
        if v.state == dnssec.SECURE and view.outcome in _ANSWERED:
            secure_seen += 1
    if ad_seen:
        # The resolver validates: answering secure or bogus data without AD is a disagreement too.
        for _, v, view in judged:
            if (v.state in (dnssec.SECURE, dnssec.BOGUS) and view.outcome in _ANSWERED
                    and not view.authenticated and any(f.subject == v.name and f.args.get("rdtype") == v.rdtype
                                                       for f in out)):
                out.append(CHECK.finding("resolver_disagrees", v.name, (v.reason,), rdtype=v.rdtype,
                                         reason=v.reason, zone=v.zone, resolver=_resolver_text(view), own=v.state))
    elif secure_seen:
        # Not a disagreement per RRset: the resolver simply does not validate.
        out.append(CHECK.finding("resolver_not_validating", resolver, count=secure_seen))
    return out


def _zone_path(zone: str) -> list[str]:
    """The root, then each name down to `zone` ("." for the root, no trailing dot below it)."""
    labels = [] if zone in ("", ".") else zone.rstrip(".").split(".")
    return ["."] + [".".join(labels[i:]) for i in range(len(labels) - 1, -1, -1)]


def chain_links(v: dnssec.Validation, zone_keys_secure: bool) -> list[dict]:
    """The chain of trust from the root to one RRset, link by link, for the report's picture.

    A link is {zone, kind ("zone": its DS in the parent and its DNSKEY; "rrset": the record's own
    signatures), rdtype, status (secure, insecure, bogus, indeterminate), why}.  Built from
    deliverck's own validation: the links above the zone where it broke validated, the break is
    the zone it names (net/dnssec.py `broken_at`), and the links below it were not reached
    (indeterminate).  A break reported at the zone holding the record whose own DNSKEY validates
    (`zone_keys_secure`) is in the record's signatures, so that zone's link is secure.
    The names between the root and the zone are the possible zone cuts; one that is not a cut
    (an empty non-terminal) shows as secure when the chain passes it."""
    path = _zone_path(v.zone)
    state, broken = v.state, (v.broken_at or "").rstrip(".") or ("." if v.broken_at else "")
    if broken and broken == path[-1] and zone_keys_secure:
        broken = ""                      # the zone is sound: the record's signatures broke
    links: list[dict] = []
    reached = True
    for zone in path:
        status, why = dnssec.SECURE, ""
        if state == dnssec.INSECURE and zone == path[-1]:
            status, why = dnssec.INSECURE, v.reason
        elif state in (dnssec.BOGUS, dnssec.INDETERMINATE) and broken == zone:
            status, why, reached = state, v.reason, False
        elif not reached:
            status, why = dnssec.INDETERMINATE, f"not reached: the chain broke at {broken}"
        links.append({"zone": zone, "kind": "zone", "rdtype": "DS/DNSKEY", "status": status, "why": why})
    if not reached:
        last = {"status": dnssec.INDETERMINATE, "why": f"not reached: the chain broke at {broken}"}
    else:
        last = {"status": state, "why": v.reason}
    links.append({"zone": v.name, "kind": "rrset", "rdtype": v.rdtype, **last})
    return links


async def _with_chains(ctx: CheckContext, validations: list[dnssec.Validation], out: list[Finding]) -> list[Finding]:
    """Add `chain` (chain_links) to each finding about one RRset judged by deliverck's own validation
    (not to those the resolver's AD bit answered for: their own chain broke above the domain)."""
    chains: dict[tuple[str, str], list[dict]] = {}
    for v in validations:
        if v.broken_above or (v.name, v.rdtype) in chains:
            continue
        keys_secure = False
        if v.state in (dnssec.BOGUS, dnssec.INDETERMINATE) and v.zone and v.broken_at.rstrip(".") == v.zone.rstrip("."):
            # The zone's own DNSKEY RRset: the same cached chain questions, no new lookup.
            keys_secure = (await ctx.dnssec_validation(v.zone, "DNSKEY")).state == dnssec.SECURE
        chains[(v.name, v.rdtype)] = chain_links(v, keys_secure)
    return [dataclasses.replace(f, args={**f.args, "chain": chains[key]})
            if (key := (f.subject, str(f.args.get("rdtype", "")))) in chains and "own" in f.args else f
            for f in out]
