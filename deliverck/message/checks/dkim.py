"""DKIM signatures of the message: does each verify, and why not?

Every DKIM-Signature field (the first 10) is verified with dkimpy against keys fetched through
deliverck's DNS (deliverck/message/auth_dkim.py).  A signature that does not verify is ignored by
receivers (RFC 6376 6.1); what that costs depends on DMARC (message_dmarc): a domain whose own
signature fails rests on SPF alone, which forwarding breaks.  Gmail refuses bulk mail without a
passing DKIM signature (550 5.7.30), and a broken aligned signature is the usual cause of DMARC
rejections (550 5.7.26, Exchange Online 550 5.7.509).

Severity: a failure of a signature whose d= aligns with the From domain is the sender's own
domain failing (error); a third-party signature's failure is a warning (it only costs the
third party).  Blame: a changed body or header is the signer's only when nothing on the way
could have changed it; a message that passed a mailing list or forwarder (ARC sets) names them.

Sources: RFC 6376 (3.5 x= and t=, 3.6.1 key records, 5.4 and 6.1.1 From must be signed, 6.1.2
key lookup, 8.2 l=); RFC 8301 (3.1 no rsa-sha1, 3.2 keys of 1024 bits or more, 2048 recommended);
Google, "Email sender guidelines" (support.google.com/a/answer/81126).
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from deliverck.message.auth_dkim import MAX_SIGNATURES
from deliverck.message.model import DkimSignature
from deliverck.model import CheckSpec, Direction, Finding, FindingSpec, Owner, Severity
from deliverck.records.dkim import RSA_GOOD_BITS

if TYPE_CHECKING:
    from deliverck.message.context import MessageContext

OUT, NONE = Direction.OUTBOUND, Direction.NONE
ADM, DNS = Owner.MAIL_ADMIN, Owner.DNS_ADMIN
GMAIL = "Google Email sender guidelines"
ROTATE = ("Generate a 2048-bit RSA key under a new selector, publish it at <selector>._domainkey.{domain}, "
          "switch the signer to it, then revoke the old selector (empty p=).")


def _spec(name: str, sev: Severity, summary: str, fix: str, owner: Owner = ADM, refs: tuple[str, ...] = (),
          inconclusive: bool = False) -> FindingSpec:
    return FindingSpec(f"message_dkim.{name}", sev, summary, fix, owner, OUT if owner is not Owner.NOBODY else NONE,
                       refs=refs, inconclusive=inconclusive)


CHECK = CheckSpec(
    id="message_dkim",
    title="DKIM signatures of the message",
    cause="A DKIM signature of the message does not verify (body or header changed, key missing, revoked, "
          "expired, too weak), so receivers ignore it and DMARC rests on SPF alone.",
    order=20,
    findings=(
        _spec("pass", Severity.INFO, "DKIM signature d={domain} s={selector} verifies ({algorithm}, {key}; "
              "{alignment})", "Nothing to fix.", Owner.NOBODY, ("RFC 6376 6.1",)),
        _spec("none", Severity.WARNING, "the message carries no DKIM signature: DMARC rests on SPF alone, and Gmail "
              "refuses bulk mail without a passing DKIM signature",
              "Sign outgoing mail with a key of {from_domain} (OpenDKIM or the mail server's own signer; RSA 2048 "
              "bits) and publish the key at <selector>._domainkey.{from_domain}.", ADM, ("RFC 6376", GMAIL)),
        _spec("body_hash", Severity.ERROR, "DKIM signature d={domain} s={selector} fails: the body was changed "
              "after signing (body hash mismatch){path}",
              "Sign after the last change to the body: disclaimers, footers, antivirus notes and MIME re-encoding "
              "must happen before the signer (Postfix: the milter order; Exchange: transport rules before the "
              "signing connector).{path_fix}", ADM, ("RFC 6376 3.7", "RFC 6376 6.1.3")),
        _spec("signature", Severity.ERROR, "DKIM signature d={domain} s={selector} fails: the body is intact but "
              "the signed header fields or the signature do not verify{path}",
              "Find what rewrites signed header fields after signing (Subject tags, From rewriting, header "
              "re-folding) and move the signer after it, or check that the signer's private key matches the "
              "key published at {selector}._domainkey.{domain}.", ADM, ("RFC 6376 6.1.3",)),
        _spec("no_key", Severity.ERROR, "DKIM signature d={domain} s={selector} fails: no key is published at "
              "{selector}._domainkey.{domain} ({outcome})",
              "Publish the signer's public key at {selector}._domainkey.{domain} (or correct the selector the "
              "signer uses).", DNS, ("RFC 6376 6.1.2",)),
        _spec("revoked", Severity.ERROR, "DKIM signature d={domain} s={selector} fails: the key is revoked "
              "(empty p=)", "Move the signer to a selector with a current key; the revoked selector must not be "
              "used any more.", ADM, ("RFC 6376 3.6.1",)),
        _spec("key_syntax", Severity.ERROR, "DKIM signature d={domain} s={selector} fails: {reason}",
              "Publish a valid key record at {selector}._domainkey.{domain}: `v=DKIM1; k=rsa; p=<base64 "
              "SubjectPublicKeyInfo>`, with h= and k= matching the signatures (or absent).", DNS,
              ("RFC 6376 3.6.1",)),
        _spec("expired", Severity.ERROR, "DKIM signature d={domain} s={selector} fails: {reason}",
              "Give signatures an expiry well past delivery (x= days, not minutes, after t=), or none.",
              ADM, ("RFC 6376 3.5",)),
        _spec("future", Severity.ERROR, "DKIM signature d={domain} s={selector} fails: {reason}",
              "Synchronise the signer's clock (NTP).", ADM, ("RFC 6376 3.5",)),
        _spec("sha1", Severity.ERROR, "DKIM signature d={domain} s={selector} uses rsa-sha1, which receivers must "
              "not accept ({reason})", "Sign with rsa-sha256.", ADM, ("RFC 8301 3.1",)),
        _spec("key_too_short", Severity.ERROR, "DKIM signature d={domain} s={selector} fails: {reason}",
              ROTATE, ADM, ("RFC 8301 3.2",)),
        _spec("weak_key", Severity.WARNING, "DKIM signature d={domain} s={selector} verifies with an RSA key of "
              "{bits} bits; {good} is the recommended minimum", ROTATE, ADM, ("RFC 8301 3.2",)),
        _spec("from_not_signed", Severity.ERROR, "DKIM signature d={domain} s={selector} does not sign From, so "
              "receivers must ignore it", "Make the signer include From in h= (every signer does by default; "
              "check the list of signed header fields).", ADM, ("RFC 6376 5.4", "RFC 6376 6.1.1")),
        _spec("syntax", Severity.ERROR, "DKIM signature #{index} (d={domain}) is invalid: {reason}",
              "Fix or replace the signer: the DKIM-Signature field does not follow RFC 6376 3.5.", ADM,
              ("RFC 6376 3.5",)),
        _spec("length_limit", Severity.WARNING, "DKIM signature d={domain} s={selector} signs only the first "
              "{length} bytes of the body (l=){tail}: anyone can append content that still verifies",
              "Remove the l= option from the signer (OpenDKIM: BodyLengths no).", ADM, ("RFC 6376 8.2",)),
        _spec("unsupported", Severity.NOTICE, "DKIM signature d={domain} s={selector} not verified: {reason}",
              "Install pynacl beside deliverck to verify ed25519 signatures.", Owner.NOBODY, ("RFC 8463",)),
        _spec("temperror", Severity.ERROR, "DKIM signature d={domain} s={selector} could not be verified: {reason}",
              "Check that the name servers of {domain} answer TXT queries for {selector}._domainkey.{domain}, "
              "then run again.", DNS, ("RFC 6376 6.1.2",), inconclusive=True),
        _spec("not_aligned", Severity.WARNING, "no passing DKIM signature is aligned with the From domain "
              "{from_domain} (passing: {passing}): DKIM cannot make DMARC pass",
              "Sign with d={from_domain} (or a subdomain of it): with a third-party sender, publish the key it "
              "gives you at <selector>._domainkey.{from_domain} and turn on its custom-domain signing.", ADM,
              ("RFC 7489 3.1.1",)),
        _spec("no_pass", Severity.WARNING, "none of the {count} DKIM signature(s) of the message passes: for "
              "receivers it is unsigned (Gmail refuses bulk mail without a passing DKIM signature)",
              "Repair the signing (see the findings of each signature): the From domain's own signature must "
              "verify at the receiver.", ADM, ("RFC 6376 6.1", GMAIL)),
        _spec("too_many", Severity.NOTICE, "the message carries {count} DKIM signatures; the first {limit} were "
              "verified", "Nothing to fix unless a later signature matters.", Owner.NOBODY, ()),
    ),
)

_SIMPLE = {"no_key", "revoked", "key_syntax", "expired", "future", "sha1", "key_too_short", "from_not_signed",
           "syntax", "temperror", "unsupported"}


def _args(s: DkimSignature) -> dict:
    key = f"RSA {s.key_bits} bits" if s.key_bits else "key"
    alignment = f"{s.aligned}ly aligned with the From domain" if s.aligned else "not aligned with the From domain"
    return dict(domain=s.domain or "?", selector=s.selector or "?", algorithm=s.algorithm, key=key,
                alignment=alignment, reason=s.reason, index=s.index + 1, bits=s.key_bits, good=RSA_GOOD_BITS)


def _evidence(s: DkimSignature) -> tuple[str, ...]:
    ev = [f"DKIM-Signature #{s.index + 1}: d={s.domain} s={s.selector} a={s.algorithm} h={':'.join(s.signed_headers)}"
          + (f" l={s.length_limit}" if s.length_limit is not None else "") + f" -> {s.result}"
          + (f" ({s.problem})" if s.problem else "")]
    if s.key_record:
        ev.append(f"{s.selector}._domainkey.{s.domain} TXT: {s.key_record}")
    return tuple(ev)


def one(s: DkimSignature, sealers: tuple[str, ...], chain_ok: bool = False) -> list[Finding]:
    args = _args(s)
    subject = f"{s.selector}._domainkey.{s.domain}" if s.domain else f"DKIM-Signature #{s.index + 1}"
    sev = None if s.aligned or s.result == "temperror" else Severity.WARNING
    ev = _evidence(s)
    if s.result == "pass":
        out = [CHECK.finding("pass", subject, ev, **args)]
        if s.key_bits and s.key_bits < RSA_GOOD_BITS:
            out.append(CHECK.finding("weak_key", subject, ev, **args))
        if s.length_limit is not None:
            tail = f", and {s.body_unsigned} bytes after them are not signed" if s.body_unsigned else ""
            out.append(CHECK.finding("length_limit", subject, ev, length=s.length_limit, tail=tail, **args))
        return out
    if s.problem in ("body_hash", "signature"):
        path = (f" (the message passed {', '.join(sealers)}, which may have changed it)" if sealers else "")
        path_fix = (f" If {sealers[-1]} (a list or forwarder) changed it, ARC carries the original result: "
                    "receivers that trust the sealer may still accept it." if sealers else "")
        # A validated ARC chain places the change on the way (a list footer), not at the signer.
        return [CHECK.finding(s.problem, subject, ev, path=path, path_fix=path_fix,
                              severity=Severity.WARNING if chain_ok else sev, **args)]
    if s.problem in _SIMPLE:
        outcome = s.reason.rsplit("(", 1)[-1].rstrip(")") if s.problem == "no_key" else ""
        return [CHECK.finding(s.problem, subject, ev, outcome=outcome,
                              severity=None if s.problem in ("temperror", "unsupported") else sev, **args)]
    return [CHECK.finding("syntax", subject, ev, severity=sev, **args)]


async def run(mctx: MessageContext) -> list[Finding]:
    auth = await mctx.auth()
    from_domain = mctx.from_domain or "the From domain"
    if not auth.dkim_count:
        return [CHECK.finding("none", from_domain, (), from_domain=from_domain)]
    out: list[Finding] = []
    for s in auth.dkim:
        out += one(s, auth.arc.sealers, auth.arc.result == "pass")
    if auth.dkim_count > MAX_SIGNATURES:
        out.append(CHECK.finding("too_many", from_domain, (), count=auth.dkim_count, limit=MAX_SIGNATURES))
    passing = [s for s in auth.dkim if s.result == "pass"]
    if not passing and not any(s.result == "temperror" for s in auth.dkim):
        out.append(CHECK.finding("no_pass", from_domain, (), count=auth.dkim_count))
    if passing and mctx.from_domain and not any(s.aligned for s in passing):
        out.append(CHECK.finding("not_aligned", mctx.from_domain, tuple(f"d={s.domain}" for s in passing),
                                 from_domain=mctx.from_domain, passing=", ".join(f"d={s.domain}" for s in passing)))
    return out
