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
"""

from __future__ import annotations

import asyncio
import os

from deliverck.context import Context
from deliverck.model import CheckSpec, Direction, Finding, FindingSpec, Owner, Severity, Skip
from deliverck.net import dnssec

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
    ),
)


def anchors_for(ctx: Context):
    """The trust anchor: config `trust_anchor` (a file), else $DELIVERCK_TRUST_ANCHOR, else the IANA root."""
    path = getattr(ctx.config, "trust_anchor", None) or os.environ.get("DELIVERCK_TRUST_ANCHOR")
    if path:
        return dnssec.load_anchor_file(str(path))
    return dnssec.DEFAULT_ANCHORS


def _resolver_text(view: dnssec.ResolverView) -> str:
    if view.outcome in ("ok", "nodata", "nxdomain"):
        return f"{view.outcome.upper()}, AD={'1' if view.authenticated else '0'}"
    return view.outcome.upper()


def is_expired(v: dnssec.Validation) -> bool:
    return v.state == dnssec.BOGUS and " expired " in v.reason


async def rrset_state(ctx: Context, name: str, rdtype: str, anchors=None):
    """(own Validation, ResolverView) for one RRset; the helper DANE calls for TLSA."""
    anchors = anchors_for(ctx) if anchors is None else anchors
    client = ctx.dns_client
    return await asyncio.gather(dnssec.validate(client, name, rdtype, anchors),
                                dnssec.resolver_view(client, name, rdtype))


async def tlsa_state(ctx: Context, mx_host: str, port: int = 25):
    return await rrset_state(ctx, f"_{port}._tcp.{mx_host.rstrip('.')}", "TLSA")


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


async def _questions(ctx: Context, anchors) -> list[tuple[str, str]]:
    domain = ctx.target.name
    client = ctx.dns_client
    mx_v = await dnssec.validate(client, domain, "MX", anchors)
    qs = [(domain, "MX")]
    hosts: list[str] = []
    # Hosts from the own (CD=1) answer: a bogus zone's MX still names them.
    for r in mx_v.records:
        ex = r.exchange.to_text(omit_final_dot=True).lower()
        if ex and ex != "." and ex not in hosts:
            hosts.append(ex)
    mx = await ctx.mx()
    if mx is not None:
        for h in mx.hosts:
            if h.name not in hosts:
                hosts.append(h.name)
    if not hosts and mx_v.outcome in ("nodata", "nxdomain") and not (mx and mx.records):
        hosts = [domain]                # implicit MX: the domain's own addresses
    for h in hosts:
        qs += [(h, "A"), (h, "AAAA")]
    return qs


async def run(ctx: Context) -> list[Finding]:
    if ctx.target.is_ip:
        raise Skip("an IP address has no DNSSEC-signed mail records to validate")
    from deliverck.net.overlay import skip_reason

    if why := skip_reason(ctx.dns_client, [ctx.target.name], "DNSSEC"):
        raise Skip(why)
    anchors = anchors_for(ctx)
    questions = await _questions(ctx, anchors)
    states = await asyncio.gather(*(rrset_state(ctx, n, t, anchors) for n, t in questions))
    mismatch = next((v for v, _ in states if "does not match the trust anchor" in v.reason), None)
    if mismatch is not None:
        return [CHECK.finding("anchor_mismatch", ".", (mismatch.reason,), reason=mismatch.reason)]
    out: list[Finding] = []
    secure_seen = 0
    ad_seen = False
    for (name, rdtype), (v, view) in zip(questions, states):
        if (name, rdtype) != questions[0] and v.outcome == "nodata" and v.state in (dnssec.SECURE, dnssec.INSECURE):
            continue                    # a host without AAAA (or A): nothing to report per RRset
        out += judge(v, view)
        if view.authenticated:
            ad_seen = True
        if v.state == dnssec.SECURE and view.outcome in ("ok", "nodata", "nxdomain"):
            secure_seen += 1
    if ad_seen:
        # The resolver validates: answering secure or bogus data without AD is a disagreement too.
        for (name, rdtype), (v, view) in zip(questions, states):
            if (v.state in (dnssec.SECURE, dnssec.BOGUS) and view.outcome in ("ok", "nodata", "nxdomain")
                    and not view.authenticated and any(f.subject == v.name and f.args.get("rdtype") == v.rdtype
                                                       for f in out)):
                out.append(CHECK.finding("resolver_disagrees", v.name, (v.reason,), rdtype=v.rdtype,
                                         reason=v.reason, zone=v.zone, resolver=_resolver_text(view), own=v.state))
    elif secure_seen:
        # Not a disagreement per RRset: the resolver simply does not validate.
        resolver = ", ".join(str(r) for r in ctx.dns_client.resolvers)
        out.append(CHECK.finding("resolver_not_validating", resolver, count=secure_seen))
    return out
