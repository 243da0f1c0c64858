"""ARC: the chain of custody that forwarders and mailing lists add (RFC 8617).

A list that adds a footer breaks the author's DKIM signature, and forwarding breaks SPF, so DMARC
fails at the final receiver.  An ARC set (ARC-Authentication-Results, ARC-Message-Signature,
ARC-Seal) records what the intermediary saw on arrival and seals it; a receiver that trusts the
sealer may then accept the message despite the DMARC failure (Gmail and Microsoft 365 evaluate
ARC; Microsoft 365 lets an admin list trusted ARC sealers).  This check validates the chain with
dkimpy and names the sealers and their cv= values; it never turns a DMARC failure into a pass,
because the trust is the receiver's decision.

Sources: RFC 8617 (5.2 validation, 4.1.3 cv=), Microsoft Learn "Configure trusted ARC sealers".
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from deliverck.message.auth_dkim import MAX_ARC_SETS
from deliverck.model import CheckSpec, Direction, Finding, FindingSpec, Owner, Severity, Skip

if TYPE_CHECKING:
    from deliverck.message.context import MessageContext

OUT, NONE = Direction.OUTBOUND, Direction.NONE
REFS = ("RFC 8617 5.2",)

CHECK = CheckSpec(
    id="message_arc",
    title="ARC chain of the message",
    cause="The ARC chain that forwarders and lists added does not validate, so receivers cannot use it to "
          "accept mail whose DKIM or SPF the forwarding broke.",
    order=22,
    findings=(
        FindingSpec("message_arc.pass", Severity.INFO,
                    "the ARC chain of {count} set(s) validates; sealed by {sealers} ({cvs}); the first sealer "
                    "recorded: {first}",
                    "Nothing to fix.", Owner.NOBODY, NONE, refs=REFS),
        FindingSpec("message_arc.fail", Severity.WARNING,
                    "the ARC chain of {count} set(s) does not validate: {reason} (sealers: {sealers})",
                    "The sealer of the failing set ({culprit}) must seal after its last change to the message, "
                    "with a key published at its selector; receivers ignore a broken chain.",
                    Owner.MAIL_ADMIN, OUT, refs=REFS),
        FindingSpec("message_arc.temperror", Severity.ERROR,
                    "the ARC chain could not be validated: {reason}",
                    "Check that the sealers' name servers answer for their _domainkey names, then run again.",
                    Owner.DNS_ADMIN, OUT, refs=REFS, inconclusive=True),
        FindingSpec("message_arc.too_long", Severity.NOTICE,
                    "the message carries {count} ARC sets; deliverck validates chains of at most {limit}",
                    "Nothing to fix in deliverck's view; a chain this long suggests a forwarding loop.",
                    Owner.NOBODY, NONE, refs=("RFC 8617 4.2.1",)),
    ),
)


async def run(mctx: MessageContext) -> list[Finding]:
    auth = await mctx.auth()
    arc = auth.arc
    if arc.result == "none" and not arc.count:
        raise Skip("the message carries no ARC sets (it was not forwarded by an ARC sealer)")
    sets = sorted(arc.sets, key=lambda s: s.instance)
    sealers = ", ".join(f"i={s.instance} d={s.seal_domain} s={s.seal_selector}" for s in sets) or "none read"
    cvs = ", ".join(f"i={s.instance} cv={s.cv}" for s in sets)
    ev = tuple(f"ARC set i={s.instance}: seal d={s.seal_domain} s={s.seal_selector} cv={s.cv} "
               f"({'valid' if s.seal_valid else 'invalid'}); message signature d={s.ams_domain} s={s.ams_selector} "
               f"({'valid' if s.ams_valid else 'invalid'})" + (f"; recorded: {s.aar}" if s.aar else "") for s in sets)
    if arc.result == "pass":
        first = sets[0].aar if sets and sets[0].aar else "nothing readable"
        return [CHECK.finding("pass", sets[-1].seal_domain if sets else "ARC", ev, count=len(sets), sealers=sealers,
                              cvs=cvs, first=first)]
    if arc.result == "temperror":
        return [CHECK.finding("temperror", "ARC", ev, reason=arc.reason)]
    if arc.result == "skipped":
        return [CHECK.finding("too_long", "ARC", ev, count=arc.count, limit=MAX_ARC_SETS)]
    bad = [s for s in sets if not (s.seal_valid and s.ams_valid)]
    culprit = bad[0].seal_domain if bad else (sets[-1].seal_domain if sets else "the last sealer")
    return [CHECK.finding("fail", culprit, ev, count=arc.count, reason=arc.reason, sealers=sealers, culprit=culprit)]
