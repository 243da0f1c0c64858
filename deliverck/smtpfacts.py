"""Reading the shared SMTP sessions: the part several checks need.

One SMTP session per address serves every check (smtp, helo, starttls,
relay, dane, mta_sts, kerberos).  The smtp check judges the session itself;
the others read it and need the same answers: which sessions got far enough
to be judged, why the rest could not be, and which transcript lines back a
finding.  Those answers live here, below the checks, so that no check has to
import another (docs/architecture.md: checks ask only the Context).

Nothing here touches the network: the sessions come from Context.smtp_session.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from typing import TypeVar

from deliverck.model import Skip
from deliverck.net.smtp import Outcome, SmtpSession

A = TypeVar("A")            # the address a session belongs to (context.MailAddress in a run)

# Outcomes that say nothing about the server: the session could not tell.
UNDECIDED = frozenset({Outcome.CONNECT_TIMEOUT, Outcome.UNREACHABLE, Outcome.TARPIT, Outcome.ERROR})

TRANSCRIPT_LINES = 60       # bound on the transcript the smtp check attaches once per address
EXCHANGE_LINES = 16         # bound on the lines one follower finding quotes


def transcript(s: SmtpSession) -> tuple[str, ...]:
    """The session's transcript, bounded: the smtp check attaches it once per address."""
    return tuple(s.transcript[:TRANSCRIPT_LINES])


def evidence(s: SmtpSession, *verbs: str) -> tuple[str, ...]:
    """The lines of the shared session that bear on a follower check's finding.

    The whole transcript belongs to the smtp check's finding for the address
    (`transcript`); repeating it on every finding of every check that reads
    the session buries the line that matters.  This gives the commands named
    (default STARTTLS, else the first EHLO) with their replies and notes, or,
    for a session that ended early, how it ended.
    """
    lines = s.transcript
    if s.outcome is not Outcome.OK:
        return tuple(lines[-2:])
    if verbs:
        return _exchanges(lines, {v.upper() for v in verbs}, first_only=False) or tuple(lines[-2:])
    return (_exchanges(lines, {"STARTTLS"}, first_only=True) or _exchanges(lines, {"EHLO"}, first_only=True)
            or tuple(lines[:1]))


def _exchanges(lines: Iterable[str], verbs: set[str], first_only: bool) -> tuple[str, ...]:
    """Client lines whose verb is in `verbs`, each with the reply lines and notes after it."""
    picked: list[str] = []
    taking = False
    for ln in lines:
        if ln.startswith("C: "):
            if taking and first_only:
                break
            taking = ln[3:].split(" ", 1)[0].upper() in verbs
        if taking:
            picked.append(ln)
    return tuple(picked[:EXCHANGE_LINES])


def undecided_reason(s: SmtpSession) -> str:
    """Why a follower check could not judge a session, in words."""
    if s.outcome is Outcome.OK and s.ehlo_error:
        return "no answer to EHLO" if s.ehlo_error == "timeout" else "the connection was closed after EHLO"
    return s.outcome.value.replace("_", " ")


def split_followers(pairs: Sequence[tuple[A, SmtpSession]]) -> tuple[list[tuple[A, SmtpSession]],
                                                                     list[tuple[A, SmtpSession]]]:
    """For checks that read a session (helo, starttls, relay, dane, mta_sts): (greeted, undecided).

    Addresses where SMTP definitely failed (refused, rejected, not SMTP) are
    the smtp check's to report; there is nothing more to judge there.  When
    no address is left at all, the reading check does not apply: Skip.
    """
    greeted = [(ma, s) for ma, s in pairs if s.usable]
    # A session that stopped after the greeting (no answer to EHLO) leaves STARTTLS, the relay
    # test and DANE undecided: the EHLO failure is the smtp check's finding.
    undecided = [(ma, s) for ma, s in pairs if s.outcome in UNDECIDED or (s.outcome is Outcome.OK and not s.usable)]
    if not greeted and not undecided:
        raise Skip("no MX address accepts SMTP (see the smtp check)" if pairs
                   else "no receiving address to probe (see the mx check)")
    return greeted, undecided
