"""Transport: was the message encrypted on its way, and where did it wait?

Gmail's sender guidelines ask every sender to use TLS (support.google.com/a/answer/81126), and Gmail
defers or refuses mail that did not arrive over TLS (421 4.7.29 / 550 5.7.29, whose text says it
requires TLS of bulk senders; as reported, Google Workspace Admin Help "Gmail SMTP errors and codes").
What deliverck can know about it depends on where the message comes from:

- `deliverck listen` saw the connection: whether the user's server used the STARTTLS that listen
  offered, and the TLS version and cipher negotiated.  That is a fact about the sending server.
- a saved message only carries what each receiving server wrote in its Received field: `with
  ESMTPS` (RFC 3848), "(using TLSv1.3 ...)", "(version=TLS1_3 ...)".  Those are claims; the hop where
  TLS stopped is reported with the field that says so, and blamed on the side that wrote it: hops
  below the hand-off to the receiver (see headers.received_hop) are the sender's, hops above it
  are the receiver's own.

Delays between consecutive Received dates show where the message waited (a queue, greylisting);
a negative delay means the clocks of two servers disagree, and the hop is named.
"""

from __future__ import annotations

import dataclasses
from datetime import datetime
from typing import TYPE_CHECKING

from deliverck.message.headers import received_hop
from deliverck.message.model import Hop
from deliverck.model import CheckSpec, Direction, Finding, FindingSpec, Owner, Severity, Skip

if TYPE_CHECKING:
    from deliverck.message.context import MessageContext

OUT, NONE = Direction.OUTBOUND, Direction.NONE
ADM = Owner.MAIL_ADMIN
GMAIL_TLS = "Google Email sender guidelines (all senders: TLS)"
GMAIL_CODES = "Gmail SMTP errors and codes: 421 4.7.29 / 550 5.7.29 (as reported)"
SLOW = 3600                         # seconds a message may wait at one hop before it is reported
SKEW = 60                           # seconds a later hop may seem earlier before clocks are blamed
MAX_REPORTED = 5                    # delays and skews reported per message
OLD_TLS = ("TLSv1", "TLSv1.0", "TLSv1.1", "SSLv3", "TLS1_0", "TLS1_1", "TLS1.0", "TLS1.1")

CHECK = CheckSpec(
    id="message_transport",
    title="Transport (TLS on each hop, delays)",
    cause="The message travelled without TLS, which Gmail defers or refuses, or waited long at a hop.",
    order=40,
    findings=(
        FindingSpec("message_transport.session_tls", Severity.INFO,
                    "{ip} sent over {version} ({cipher})", "Nothing to fix.", Owner.NOBODY, NONE,
                    refs=("RFC 3207",)),
        FindingSpec("message_transport.session_no_tls", Severity.ERROR,
                    "{ip} sent the message without TLS ({why}): Gmail defers or refuses mail that does not "
                    "arrive over TLS",
                    "Turn on opportunistic TLS for outgoing mail (Postfix: smtp_tls_security_level = may; Exchange: "
                    "TLS on the send connector; Exim: it is on unless hosts_avoid_tls) and check that the TLS "
                    "library can talk TLS 1.2 or later.", ADM, OUT, refs=("RFC 3207", GMAIL_TLS, GMAIL_CODES)),
        FindingSpec("message_transport.session_old_tls", Severity.WARNING,
                    "{ip} negotiated {version}, which current receivers refuse or will refuse",
                    "Update the TLS library or settings of the sending server so that it offers TLS 1.2 and 1.3 "
                    "(Postfix: smtp_tls_protocols = >=TLSv1.2).", ADM, OUT, refs=("RFC 8996",)),
        FindingSpec("message_transport.hops", Severity.INFO,
                    "{count} Received hop(s); TLS stated on {tls} of {judged} SMTP hop(s)",
                    "Nothing to fix.", Owner.NOBODY, NONE, refs=("RFC 5321 4.4", "RFC 3848")),
        FindingSpec("message_transport.handoff_plain", Severity.WARNING,
                    "the receiving server recorded no TLS for the connection from {sender} (Received #{index}, by "
                    "{by}, with {with_}): Gmail defers or refuses mail that does not arrive over TLS",
                    "Turn on opportunistic TLS for outgoing mail on {sender} (Postfix: smtp_tls_security_level = "
                    "may).  To see the connection itself, send a message to `deliverck listen`.",
                    ADM, OUT, refs=("RFC 3848", GMAIL_TLS, GMAIL_CODES)),
        FindingSpec("message_transport.tls_lost", Severity.WARNING,
                    "TLS stopped at Received #{index}: {sender} passed the message on to {by} with {with_}, after "
                    "the hop before used TLS",
                    "Turn on TLS for mail from {sender} to {by} (or find why its TLS handshake fails).",
                    ADM, OUT, refs=("RFC 3848", "RFC 3207")),
        FindingSpec("message_transport.delay", Severity.WARNING,
                    "the message waited {delay} before Received #{index} (at {where})",
                    "Look at the queue and logs of {where} for that time (deferrals, greylisting, a down "
                    "next hop).", ADM, OUT, refs=("RFC 5321 4.4",)),
        FindingSpec("message_transport.clock_skew", Severity.NOTICE,
                    "Received #{index} (by {by}) is dated {skew} before the hop under it: the clocks of {by} and "
                    "{before} disagree", "Synchronize the clocks of the mail servers (NTP).", ADM, NONE,
                    refs=("RFC 5321 4.4",)),
    ),
)


def _session(mctx: MessageContext) -> list[Finding]:
    s = mctx.session
    if s is None:
        return []
    seen = [f"SMTP session from {s.peer_ip}:{s.peer_port} ({'EHLO' if s.esmtp else 'HELO'} {s.helo})"]
    if not s.tls_version:
        why = ("STARTTLS was offered and not used" if s.esmtp else
               "it greeted with HELO, not EHLO, so it could not see the STARTTLS offer")
        return [CHECK.finding("session_no_tls", s.peer_ip, [*seen, why], ip=s.peer_ip, why=why)]
    out = [CHECK.finding("session_tls", s.peer_ip, seen, ip=s.peer_ip, version=s.tls_version,
                         cipher=s.tls_cipher or "cipher unknown")]
    if s.tls_version in OLD_TLS:
        out.append(CHECK.finding("session_old_tls", s.peer_ip, seen, ip=s.peer_ip, version=s.tls_version))
    return out


def _smtp(hop: Hop) -> bool:
    """A hop between mail servers that states its protocol: not a mailbox delivery (LMTP, local), not a
    field without a from clause (Gmail's internal hand-offs), not a loopback connection."""
    if hop.encrypted is None or not (hop.from_ip or hop.from_name):
        return False
    if hop.with_.upper().startswith(("LMTP", "UTF8LMTP")):
        return False
    return not hop.from_ip.startswith(("127.", "::1"))


def _sender(hop: Hop) -> str:
    return hop.from_rdns or hop.from_name or hop.from_ip or "an unnamed client"


def _evidence(*hops: Hop) -> list[str]:
    return [f"Received #{h.index}: {h.raw}" for h in hops]


def _receivers(hop: Hop, handoff: Hop | None) -> bool:
    return handoff is not None and hop.index < handoff.index


def _blame(finding: Finding, hop: Hop, handoff: Hop | None) -> Finding:
    """Hops above the hand-off happened inside the receiving system: its administrator's, a notice."""
    if not _receivers(hop, handoff):
        return finding
    return dataclasses.replace(finding, owner=Owner.RECEIVER, severity=min(finding.severity, Severity.NOTICE),
                               args={**finding.args, "side": "receiver"})


def _tls(hops: tuple[Hop, ...], handoff: Hop | None) -> list[Finding]:
    judged = [h for h in hops if _smtp(h)]
    out = [CHECK.finding("hops", "Received", count=len(hops), judged=len(judged),
                         tls=sum(1 for h in judged if h.encrypted))]
    if handoff is not None and _smtp(handoff) and handoff.encrypted is False:
        out.append(CHECK.finding("handoff_plain", f"Received #{handoff.index}", _evidence(handoff),
                                 index=handoff.index, sender=_sender(handoff), by=handoff.by or "an unnamed host",
                                 with_=handoff.with_ or "no protocol named"))
    had_tls = False
    for hop in reversed(judged):                    # from the sender's side up
        if hop.encrypted:
            had_tls = True
        elif had_tls and hop is not handoff:
            out.append(_blame(CHECK.finding("tls_lost", f"Received #{hop.index}", _evidence(hop), index=hop.index,
                                            sender=_sender(hop), by=hop.by or "an unnamed host",
                                            with_=hop.with_ or "no protocol named"), hop, handoff))
            break
    return out


def _when(text: str) -> datetime | None:
    try:
        return datetime.fromisoformat(text.replace("Z", "+00:00")) if text else None
    except ValueError:
        return None


def _span(seconds: float) -> str:
    s = abs(seconds)
    if s >= 86400:
        return f"{s / 86400:.1f} days"
    if s >= 3600:
        return f"{s / 3600:.1f} hours"
    if s >= 60:
        return f"{s / 60:.0f} minutes"
    return f"{s:.0f} seconds"


def _delays(hops: tuple[Hop, ...], handoff: Hop | None) -> list[Finding]:
    out: list[Finding] = []
    for upper, lower in zip(hops, hops[1:], strict=False):     # upper: later hop (nearer the top)
        a, b = _when(upper.date), _when(lower.date)
        if a is None or b is None:
            continue
        gap = (a - b).total_seconds()
        if gap > SLOW:
            where = upper.from_rdns or upper.from_name or lower.by or "the server between them"
            out.append(_blame(CHECK.finding("delay", f"Received #{upper.index}", _evidence(upper, lower),
                                            index=upper.index, delay=_span(gap), where=where, seconds=int(gap)),
                              upper, handoff))
        elif gap < -SKEW:
            out.append(CHECK.finding("clock_skew", f"Received #{upper.index}", _evidence(upper, lower),
                                     index=upper.index, by=upper.by or "an unnamed host",
                                     before=lower.by or "the host under it", skew=_span(gap), seconds=int(gap)))
        if len(out) >= MAX_REPORTED:
            break
    return out


async def run(mctx: MessageContext) -> list[Finding]:
    hops = mctx.info.hops
    out = _session(mctx)
    if not hops and not out:
        raise Skip("the message has no Received field and came from no SMTP session: nothing shows its way")
    if hops:
        handoff, _ = received_hop(hops)
        if mctx.session is not None:
            handoff = None          # listen's own hop is not in the header; every hop there is the sender's
        out += _tls(hops, handoff) + _delays(hops, handoff)
    return out
