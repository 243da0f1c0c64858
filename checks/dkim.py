"""DKIM: can receivers find and use the domain's DKIM public keys?

Receivers verify a DKIM signature with the key at <selector>._domainkey.<d>.
A revoked, unparsable, too short or SHA-1-only key makes every signature made
with it fail; DMARC then depends on SPF alone.  Selectors are arbitrary
names, so keys can only be found at selectors that are known (--dkim-selector)
or guessed (a short list of common ones): discovery is never exhaustive.
"""

from __future__ import annotations

from deliverck.checkcontext import CheckContext
from deliverck.model import CheckSpec, Direction, Finding, FindingSpec, Owner, Severity, Skip
from deliverck.records.dkim_discovery import COMMON_SELECTORS, SelectorResult

OUT, NONE = Direction.OUTBOUND, Direction.NONE
ADM, DNS = Owner.MAIL_ADMIN, Owner.DNS_ADMIN
REFS = ("RFC 6376 3.6.1",)

CHECK = CheckSpec(
    id="dkim",
    title="DKIM public keys",
    cause="The domain's DKIM keys are missing, revoked, too weak or malformed, so receivers cannot verify its signatures.",
    order=80,
    findings=(
        FindingSpec("dkim.key_found", Severity.INFO,
                    "{subject}: DKIM key at selector {selector} ({key})",
                    "Nothing to fix.", Owner.NOBODY, NONE, refs=REFS),
        FindingSpec("dkim.discovery_incomplete", Severity.INFO,
                    "DKIM keys of {domain} were looked for at {count} selectors ({selectors}); keys at other "
                    "selectors cannot be found without their name",
                    "Pass the selectors your signers use with --dkim-selector to audit those keys.",
                    Owner.NOBODY, NONE, refs=("RFC 6376 3.6.2.1",)),
        FindingSpec("dkim.no_key_found", Severity.NOTICE,
                    "no DKIM key found for {domain} at {count} common selectors; this is not proof that "
                    "{domain} has none",
                    "If {domain} signs its mail, pass its selector with --dkim-selector; if it does not, publish "
                    "a key (RSA 2048 bits or ed25519) and sign outbound mail, or DMARC rests on SPF alone.",
                    ADM, OUT, refs=("RFC 6376 3.6.2.1",)),
        FindingSpec("dkim.selector_missing", Severity.WARNING,
                    "selector {selector} (given) has no DKIM key: {name} {outcome}",
                    "Publish the selector's key record at {name}, or correct the selector name; mail signed "
                    "with this selector fails DKIM.",
                    DNS, OUT, refs=REFS),
        FindingSpec("dkim.revoked", Severity.WARNING,
                    "{subject}: the DKIM key at selector {selector} is revoked (empty p=); signatures made "
                    "with it fail",
                    "If a signer still uses selector {selector}, move it to a selector with a current key; "
                    "otherwise nothing to fix.",
                    ADM, OUT, refs=("RFC 6376 3.6.1",)),
        FindingSpec("dkim.testing", Severity.NOTICE,
                    "{subject}: the DKIM key at selector {selector} is in testing mode (t=y): receivers "
                    "treat the mail as unsigned",
                    "Remove t=y from the key record once signing works.",
                    DNS, OUT, refs=("RFC 6376 3.6.1",)),
        FindingSpec("dkim.weak_key", Severity.WARNING,
                    "{subject}: the DKIM key at selector {selector} is RSA {bits} bits; 2048 is the "
                    "recommended minimum",
                    "Generate a 2048-bit RSA (or an ed25519 plus an RSA) key under a new selector, publish "
                    "it, switch the signer, then revoke the old selector (empty p=).",
                    ADM, OUT, refs=("RFC 8301 3.2",)),
        FindingSpec("dkim.key_too_short", Severity.ERROR,
                    "{subject}: the DKIM key at selector {selector} is RSA {bits} bits; receivers must not "
                    "accept keys under 1024 bits, so every signature with it fails",
                    "Generate a 2048-bit RSA key under a new selector, publish it and switch the signer to it.",
                    ADM, OUT, refs=("RFC 8301 3.2",)),
        FindingSpec("dkim.sha1_only", Severity.ERROR,
                    "{subject}: the DKIM key at selector {selector} allows only SHA-1 (h=sha1); receivers "
                    "must not accept rsa-sha1 signatures",
                    "Remove h= from the key record (or set h=sha256) and sign with rsa-sha256.",
                    ADM, OUT, refs=("RFC 8301 3.1",)),
        FindingSpec("dkim.key_unusable", Severity.ERROR,
                    "{subject}: the DKIM key at selector {selector} is unusable: {problem}",
                    "Publish the key record the signer's documentation gives, e.g. "
                    "`v=DKIM1; k=rsa; p=<base64 SubjectPublicKeyInfo>`.",
                    DNS, OUT, refs=("RFC 6376 3.6.1", "RFC 8463 4.2")),
        FindingSpec("dkim.syntax", Severity.ERROR,
                    "{subject}: the DKIM key record at selector {selector} is invalid: {error}",
                    "Fix the record's tag=value syntax (tags separated by ';', v=DKIM1 first if present, "
                    "p= required).",
                    DNS, OUT, refs=("RFC 6376 3.2", "RFC 6376 3.6.1")),
        FindingSpec("dkim.cname_dangling", Severity.WARNING,
                    "selector {selector} of {domain} is a CNAME to {target}, which has no DKIM key "
                    "({outcome}){m365}",
                    "Publish the key at {target} (for Microsoft 365: enable DKIM signing for the domain in "
                    "the Defender portal), or delete the CNAME if nothing signs with selector {selector}.",
                    DNS, OUT, refs=("RFC 6376 3.6.2.2",)),
        FindingSpec("dkim.lookup_failed", Severity.ERROR,
                    "the DKIM key lookup for selector(s) {selector} ({name}) failed: {outcome}",
                    "Check the name servers of {domain}: they must answer TXT queries below _domainkey.",
                    DNS, OUT, inconclusive=True),
    ),
)


def _key_findings(domain: str, r: SelectorResult) -> list[Finding]:
    out: list[Finding] = []
    ev = (r.answer.describe(),)
    subj = r.name
    for text, err in r.errors:
        out.append(CHECK.finding("syntax", subj, (text,), selector=r.selector, error=err, domain=domain))
    for k in r.keys:
        args = dict(selector=r.selector, domain=domain, key=k.describe(), key_type=k.key_type, bits=k.bits,
                    source=r.source)
        if r.answer.via_cname:
            args["cname_target"] = r.answer.canonical_name
        if k.revoked:
            out.append(CHECK.finding("revoked", subj, ev, **args))
            continue
        problem = k.problem
        if k.strength == "too_short":
            out.append(CHECK.finding("key_too_short", subj, ev, **args))
        elif k.sha1_only and k.known_type and not k.key_error:
            out.append(CHECK.finding("sha1_only", subj, ev, **args))
        elif problem:
            out.append(CHECK.finding("key_unusable", subj, ev, problem=problem, **args))
        else:
            notes = list(k.syntax_notes) + [f"unknown tag {t} ignored" for t in k.unknown_tags]
            out.append(CHECK.finding("key_found", subj, ev + tuple(notes), **args))
            if k.strength == "weak":
                out.append(CHECK.finding("weak_key", subj, ev, **args))
        if k.testing and not problem:
            out.append(CHECK.finding("testing", subj, ev, **args))
    return out


async def run(ctx: CheckContext) -> list[Finding]:
    domain = await ctx.mail_domain()
    if not domain:
        raise Skip("no mail domain to look up DKIM keys for (an address, or a name that does not exist)")
    disc = await ctx.dkim_keys(domain)
    out: list[Finding] = []
    failed = [r for r in disc.results if r.failed]
    if failed:
        # One finding for all failed lookups: a broken zone fails every selector alike.
        first = failed[0]
        selectors = ", ".join(r.selector for r in failed)
        out.append(CHECK.finding("lookup_failed", first.name if len(failed) == 1 else domain,
                                 tuple(r.answer.describe() for r in failed), selector=selectors,
                                 name=first.name if len(failed) == 1 else f"<selector>._domainkey.{domain}",
                                 domain=domain, outcome=first.answer.outcome.value, count=len(failed)))
    for r in disc.results:
        if r.failed:
            continue
        elif r.dangling:
            m365 = " (the Microsoft 365 selector pattern: DKIM is not enabled for the domain in the tenant)" \
                if r.m365 else ""
            out.append(CHECK.finding("cname_dangling", r.name, (r.answer.describe(),), selector=r.selector,
                                     domain=domain, target=r.answer.canonical_name,
                                     outcome=r.answer.outcome.value.upper(), m365=m365))
        elif r.present:
            out += _key_findings(domain, r)
        elif r.source == "given":
            out.append(CHECK.finding("selector_missing", r.name, (r.answer.describe(),), selector=r.selector,
                                     name=r.name, domain=domain, outcome=r.answer.outcome.value.upper()))
    probed = [r.selector for r in disc.results]
    if not disc.keys and not disc.given and not disc.failed and not any(r.errors or r.dangling
                                                                          for r in disc.results):
        # One cause, one finding: the selectors looked at are its evidence, not a finding of their own.
        out.append(CHECK.finding("no_key_found", domain, (f"selectors looked up: {', '.join(probed)}",),
                                 domain=domain, count=len(COMMON_SELECTORS)))
    else:
        out.append(CHECK.finding("discovery_incomplete", domain, domain=domain, count=len(probed),
                                 selectors=", ".join(probed)))
    return out
