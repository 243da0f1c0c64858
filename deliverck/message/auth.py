"""The authentication of one message, computed once and shared by the message checks.

    auth_dkim.py    DKIM signatures and the ARC chain (dkimpy over keys prefetched through deliverck's DNS)
    auth_dmarc.py   DMARC (RFC 7489 and DMARCbis), from the SPF and DKIM results
    auth_ar.py      the Authentication-Results fields receivers wrote (authres)
    auth.py         this: SPF for the envelope, and the comparison of what receivers recorded with what
                    deliverck computes

SPF is evaluated with deliverck's own evaluator (Context.spf) for the envelope the message context
holds: the sending address, HELO and MAIL FROM are each a claim with a source; only `listen` and
the command-line options prove them.  A result for an address read from a Received field is a
result "for the address the header claims", and the checks word it so.
"""

from __future__ import annotations

import asyncio
import calendar
import email.message
import ipaddress
import time
from dataclasses import dataclass
from typing import Protocol

from deliverck.context import Context
from deliverck.message import auth_ar, auth_dkim, auth_dmarc
from deliverck.message.auth_ar import ArField, AuthResFields
from deliverck.message.auth_dkim import ArcResult, Clock
from deliverck.message.auth_dmarc import DmarcResult, SpfInput
from deliverck.message.model import Claim, DkimSignature, Envelope, Message, MessageInfo, Session
from deliverck.target import is_hostname, sender_domain_of


class MessageContext(Protocol):
    """What authentication reads of deliverck.message.context.MessageContext (which imports this
    module: naming the class here would make an import cycle)."""

    ctx: Context
    message: Message
    info: MessageInfo

    @property
    def envelope(self) -> Envelope: ...
    @property
    def session(self) -> Session | None: ...
    @property
    def from_domain(self) -> str: ...
    @property
    def parsed(self) -> email.message.Message: ...


@dataclass(frozen=True)
class SpfCheck:
    """One SPF evaluation (RFC 7208): the MAIL FROM identity, or the HELO identity (RFC 7208 2.3)."""

    identity: str               # "mailfrom" or "helo"
    domain: str                 # the domain evaluated ("" when there is none)
    ip: str
    result: str                 # RFC 7208 word; "" when not evaluated
    reason: str = ""            # why not evaluated, or the deciding term / problem
    claimed: bool = True        # the address or the identity is a claim from a header
    source: str = ""            # where the address and identity came from, in words
    evidence: tuple[str, ...] = ()


@dataclass(frozen=True)
class Disagreement:
    """A result the receiver recorded that differs from deliverck's."""

    method: str                 # "dkim", "spf", "dmarc", "arc"
    subject: str                # "d=example.com s=sel", "smtp.mailfrom=example.com", "header.from=..."
    recorded: str
    computed: str
    hint: str


@dataclass(frozen=True)
class AuthResults:
    dkim: tuple[DkimSignature, ...]
    dkim_count: int                             # DKIM-Signature fields (only the first 10 are verified)
    arc: ArcResult
    spf_mailfrom: SpfCheck
    spf_helo: SpfCheck
    dmarc: DmarcResult | None                   # None: no From domain to judge
    authres: AuthResFields
    disagreements: tuple[Disagreement, ...] = ()
    clock: Clock = Clock(0, "now")


def _clock(mctx: MessageContext) -> Clock:
    """Signatures are judged at the time the message arrived when someone says when, else now."""
    for when, source in ((mctx.session.received_at if mctx.session else "", "SMTP session"),
                         (mctx.info.hops[0].date if mctx.info.hops else "", "header Received #1")):
        if when:
            try:
                return Clock(calendar.timegm(time.strptime(when[:19], "%Y-%m-%dT%H:%M:%S")), source)
            except ValueError:
                continue
    return Clock(int(time.time()), "now")


def _claim_words(*claims: Claim | None) -> tuple[bool, str]:
    known = [c for c in claims if c is not None]
    claimed = any(not c.proven for c in known)
    return claimed, "; ".join(dict.fromkeys(c.source for c in known))


async def _spf_one(mctx: MessageContext, identity: str, domain: str, sender: str) -> SpfCheck:
    env = mctx.envelope
    ip = env.ip.value if env.ip else ""
    claimed, source = _claim_words(env.ip, env.mail_from if identity == "mailfrom" else env.helo)
    helo = env.helo.value if env.helo else ""
    if not ip:
        return SpfCheck(identity, domain, "", "", "no sending address is known (no --ip, no Received field "
                        "naming the client)", claimed, source)
    try:
        ipaddress.ip_address(ip)
    except ValueError:
        return SpfCheck(identity, domain, ip, "", f"the sending address {ip!r} ({source}) is not an IP address",
                        claimed, source)
    if not domain or not is_hostname(domain):
        return SpfCheck(identity, domain, ip, "", f"no {identity} domain to evaluate"
                        + (f" ({domain!r} is not a domain name)" if domain else ""), claimed, source)
    try:
        res = await mctx.ctx.spf(ip, domain, sender=sender, helo=helo)
    except Exception as e:      # the evaluator must not take DKIM and DMARC down with it
        return SpfCheck(identity, domain, ip, "temperror", f"SPF evaluation failed ({type(e).__name__}: {e})",
                        claimed, source)
    why = res.mechanism or res.cause or ""
    if res.problems:
        why = (why + "; " if why else "") + "; ".join(res.problems[:3])
    ev = (f"SPF {identity} {domain} for {ip}: {res.result}" + (f" ({why})" if why else ""),)
    return SpfCheck(identity, domain, ip, res.result, why, claimed, source, ev)


async def spf(mctx: MessageContext) -> tuple[SpfCheck, SpfCheck]:
    env = mctx.envelope
    helo = (env.helo.value if env.helo else "").strip().rstrip(".").lower()
    mf = env.mail_from.value if env.mail_from else None
    if mf is None:
        mail_from = SpfCheck("mailfrom", "", env.ip.value if env.ip else "", "", "the envelope sender is not "
                             "known (no --mail-from, no Return-Path)")
    elif mf == "" or "@" not in mf:
        # RFC 7208 2.4: for the null sender, the MAIL FROM check uses postmaster@<HELO name>.
        mail_from = await _spf_one(mctx, "mailfrom", helo, f"postmaster@{helo}")
    else:
        mail_from = await _spf_one(mctx, "mailfrom", sender_domain_of(mf), mf)
    helo_check = await _spf_one(mctx, "helo", helo, f"postmaster@{helo}") if helo else \
        SpfCheck("helo", "", env.ip.value if env.ip else "", "", "no HELO name is known")
    return mail_from, helo_check


async def authenticate(mctx: MessageContext) -> AuthResults:
    raw = mctx.message.raw
    headers, _body, _err = auth_dkim.message_headers(raw)
    names = auth_dkim.wanted_keys(headers)
    table, (spf_mf, spf_helo) = await asyncio.gather(auth_dkim.prefetch(names, mctx.ctx.dns), spf(mctx))
    clock = _clock(mctx)
    # The hashing is CPU work over up to 25 MB: in a thread, so that a listen session or other
    # messages' DNS are not held up.  Both read only the prefetched table, never the network.
    sigs, count = await asyncio.to_thread(auth_dkim.verify_all, raw, table, mctx.from_domain, clock)
    arc = await asyncio.to_thread(auth_dkim.verify_arc, raw, table)
    dmarc = None
    if mctx.from_domain:
        dmarc = await auth_dmarc.evaluate(mctx.from_domain, SpfInput(spf_mf.result, spf_mf.domain, spf_mf.claimed),
                                          sigs, mctx.ctx.dns)
    fields = auth_ar.read([(str(k), str(v)) for k, v in mctx.parsed.items()])
    partial = AuthResults(sigs, count, arc, spf_mf, spf_helo, dmarc, fields, clock=clock)
    return AuthResults(sigs, count, arc, spf_mf, spf_helo, dmarc, fields, compare(partial), clock)


# ---- what the receiver recorded, against what deliverck computes ------------------------------

def _passes(word: str) -> bool:
    return word == "pass"


def _comparable(a: str, b: str) -> bool:
    """Both sides reached an answer (no temporary error, something computed) and only one passes."""
    return bool(a and b) and "temperror" not in (a, b) and b != "unknown" and _passes(a) != _passes(b)


def compare(auth: AuthResults) -> tuple[Disagreement, ...]:
    top = auth.authres.receiver
    if top is None:
        return ()
    forwarded = auth.arc.result != "none"
    out: list[Disagreement] = []
    out += _compare_dkim(top, auth.dkim, forwarded)
    mf = auth.spf_mailfrom
    for m in top.results("spf"):
        rec_dom = sender_domain_of(m.prop("smtp.mailfrom")) or m.prop("smtp.mailfrom").lower()
        if mf.result and (not rec_dom or rec_dom == mf.domain) and _comparable(m.result, mf.result):
            out.append(Disagreement("spf", f"smtp.mailfrom={m.prop('smtp.mailfrom') or mf.domain}", m.result,
                                    mf.result, f"deliverck evaluated {mf.ip} ({mf.source or 'no source'}); the "
                                    "receiver saw another address, or the SPF record changed since"))
    if auth.dmarc is not None:
        for m in top.results("dmarc"):
            if _comparable(m.result, auth.dmarc.rfc7489.result):
                hint = ("the message was forwarded (it carries ARC sets): the receiver judged it on arrival from "
                        "the forwarder" if forwarded else "the SPF or DKIM results differ (see above), or the "
                        "Authentication-Results field is not the receiver's")
                out.append(Disagreement("dmarc", f"header.from={m.prop('header.from') or auth.dmarc.from_domain}",
                                        m.result, auth.dmarc.rfc7489.result, hint))
    for m in top.results("arc"):
        if m.result == "pass" and auth.arc.result == "fail":
            out.append(Disagreement("arc", "chain", m.result, auth.arc.result,
                                    "the ARC sets were changed after the receiver validated them"))
    return tuple(out)


def _compare_dkim(top: ArField, sigs: tuple[DkimSignature, ...], forwarded: bool) -> list[Disagreement]:
    out = []
    for m in top.results("dkim"):
        d = (m.prop("header.d") or m.prop("header.i").rsplit("@", 1)[-1]).lower().rstrip(".")
        s = m.prop("header.s")
        # header.b (RFC 6008) would tell two signatures of one d=/s= apart; such pairs are skipped instead.
        match = [x for x in sigs if x.domain == d and (not s or x.selector == s)]
        if not d or len(match) != 1:
            continue
        sig = match[0]
        if not _comparable(m.result, sig.result):
            continue
        if _passes(m.result):
            hint = ("the key was removed or revoked since the receiver verified it" if sig.problem in
                    ("no_key", "revoked") else "the message was changed after the receiver verified it (a mail "
                    "client that saved or re-encoded it, or a later hop)")
        else:
            hint = ("the receiver verified the message as a forwarder delivered it" if forwarded else
                    "the receiver saw a different message or could not use the key, or the "
                    "Authentication-Results field is not the receiver's")
        out.append(Disagreement("dkim", f"d={sig.domain} s={sig.selector}", m.result, sig.result, hint))
    return out



def summary(a: AuthResults) -> dict:
    """The results as plain data, for the report's `message.authentication` (docs/report.schema.json):
    what each signature, the ARC chain, SPF and DMARC under both rule sets came to.  Remote text
    (reasons quoting records) is kept exact; renderers escape it."""

    def spf(s: SpfCheck) -> dict:
        return {"domain": s.domain, "ip": s.ip, "result": s.result, "reason": s.reason, "claimed": s.claimed}

    def view(v) -> dict:
        return {"result": v.result, "reason": v.reason, "policy_domain": v.policy_domain, "record": v.record,
                "org_domain": v.org_domain, "spf_aligned": v.spf_aligned, "dkim_aligned": list(v.dkim_aligned)}

    d = a.dmarc
    return {
        "dkim": [{"domain": s.domain, "selector": s.selector, "algorithm": s.algorithm, "result": s.result,
                  "problem": s.problem, "reason": s.reason, "signed_headers": list(s.signed_headers),
                  "length_limit": s.length_limit, "key_bits": s.key_bits, "aligned": s.aligned} for s in a.dkim],
        "arc": {"result": a.arc.result, "reason": a.arc.reason,
                "sets": [{"instance": x.instance, "domain": x.seal_domain, "selector": x.seal_selector, "cv": x.cv,
                          "seal_valid": x.seal_valid, "ams_valid": x.ams_valid} for x in a.arc.sets]},
        "spf": {"mailfrom": spf(a.spf_mailfrom), "helo": spf(a.spf_helo)},
        "dmarc": None if d is None else {"from_domain": d.from_domain, "adkim": d.adkim, "aspf": d.aspf,
                                         "rfc7489": view(d.rfc7489), "dmarcbis": view(d.dmarcbis)},
    }
