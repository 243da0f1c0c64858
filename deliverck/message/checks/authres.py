"""Authentication-Results: what the receiver recorded, against what deliverck computes.

A receiver writes its SPF, DKIM, DMARC and ARC results into an Authentication-Results field
(RFC 8601).  When deliverck computes something else, one of three things happened: the message
was forwarded (the receiver judged the copy a forwarder delivered), the message or the keys
changed since (a client re-encoded the saved copy, the signer's key was rotated or removed), or
the field is not the receiver's at all: a sender can write any Authentication-Results field, and
receivers must delete the ones that claim their own authserv-id (RFC 8601 5).  Which field is the
receiver's is decided as deliverck/message/auth_ar.py explains (the topmost field above a Received
field, confirmed by the topmost Received `by` host when it can be); deliverck cannot know the
receiver's authserv-id for certain, and says which one it took.

Sources: RFC 8601 (2 the field, 5 removal of forged fields, 7 security: forged results); Google,
Microsoft 365 and Yahoo examples of the field as written (tests/messages/auth/generate.py).
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from deliverck.model import CheckSpec, Direction, Finding, FindingSpec, Owner, Severity, Skip

if TYPE_CHECKING:
    from deliverck.message.context import MessageContext

NONE, INB = Direction.NONE, Direction.INBOUND
REFS = ("RFC 8601 2.2",)

CHECK = CheckSpec(
    id="message_authres",
    title="Authentication-Results recorded by receivers",
    cause="What a receiver recorded about the message's authentication differs from what the message shows "
          "now, or an Authentication-Results field was forged.",
    order=28,
    findings=(
        FindingSpec("message_authres.receiver", Severity.INFO,
                    "Authentication-Results of {authserv_id} taken as the receiver's ({why}): {results}",
                    "Nothing to fix.", Owner.NOBODY, NONE, refs=REFS),
        FindingSpec("message_authres.agrees", Severity.INFO,
                    "the receiver's recorded results ({methods}) do not contradict deliverck's",
                    "Nothing to fix.", Owner.NOBODY, NONE, refs=REFS),
        FindingSpec("message_authres.disagrees", Severity.WARNING,
                    "{method}: the receiver recorded {recorded} for {what}, deliverck computes {computed}: {hint}",
                    "Compare the copy you judged with the one the receiver got (a saved copy must be the original "
                    "bytes: export it as .eml, not re-encoded); if a key changed since, that explains it.",
                    Owner.NOBODY, NONE, refs=REFS),
        FindingSpec("message_authres.forged", Severity.WARNING,
                    "an Authentication-Results field of {authserv_id} ({results}) is not a receiver's: {why}",
                    "Trust only the receiver's own field.  Receiver admins: delete incoming Authentication-Results "
                    "fields that carry your authserv-id (RFC 8601 5).",
                    Owner.RECEIVER, INB, refs=("RFC 8601 5", "RFC 8601 7.2")),
        FindingSpec("message_authres.earlier_hop", Severity.INFO,
                    "Authentication-Results of an earlier hop, {authserv_id}: {results}",
                    "Nothing to fix.", Owner.NOBODY, NONE, refs=REFS),
        FindingSpec("message_authres.unparseable", Severity.NOTICE,
                    "an Authentication-Results field could not be parsed ({error}); it was ignored",
                    "Nothing to fix in the message; the receiver that wrote it does not follow RFC 8601 2.2.",
                    Owner.NOBODY, NONE, refs=REFS),
        FindingSpec("message_authres.no_receiver", Severity.INFO,
                    "no Authentication-Results field could be taken as the receiver's: {why}",
                    "Nothing to fix.", Owner.NOBODY, NONE, refs=REFS),
    ),
)


def _results(f) -> str:
    return "; ".join(f"{m.method}={m.result}" for m in f.methods if m.method in ("spf", "dkim", "dmarc", "arc")) \
        or "no SPF, DKIM, DMARC or ARC result"


async def run(mctx: MessageContext) -> list[Finding]:
    auth = await mctx.auth()
    ar = auth.authres
    if not ar.fields:
        raise Skip("the message carries no Authentication-Results field (it was not saved at a receiver)")
    out: list[Finding] = []
    forged = {f.index for f, _why in ar.forged}
    for f in ar.fields:
        if f.error:
            out.append(CHECK.finding("unparseable", f"Authentication-Results #{f.index + 1}", (f.raw,), error=f.error))
    for f, why in ar.forged:
        out.append(CHECK.finding("forged", f.authserv_id or f"Authentication-Results #{f.index + 1}", (f.raw,),
                                 authserv_id=f.authserv_id or "(no authserv-id)", results=_results(f), why=why))
    top = ar.receiver
    if top is None:
        out.append(CHECK.finding("no_receiver", "Authentication-Results", (), why=ar.why))
        return out
    name = top.authserv_id or "(no authserv-id)"
    ev = (top.raw,) + ((f"parsed after a repair: {top.repaired}",) if top.repaired else ())
    out.append(CHECK.finding("receiver", name, ev, authserv_id=name, why=ar.why, results=_results(top)))
    for d in auth.disagreements:
        out.append(CHECK.finding("disagrees", name, (top.raw,), method=d.method, recorded=d.recorded,
                                 computed=d.computed, what=d.subject, hint=d.hint))
    if not auth.disagreements:
        methods = sorted({m.method for m in top.methods if m.method in ("spf", "dkim", "dmarc", "arc")})
        if methods:
            out.append(CHECK.finding("agrees", name, (top.raw,), methods=", ".join(methods)))
    for f in ar.fields:
        if f is not top and f.index not in forged and not f.error:
            out.append(CHECK.finding("earlier_hop", f.authserv_id or f"Authentication-Results #{f.index + 1}",
                                     (f.raw,), authserv_id=f.authserv_id or "(no authserv-id)", results=_results(f)))
    return out
