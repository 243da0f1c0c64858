"""Message format: is the message one that Gmail and Exchange Online accept as RFC 5322?

Gmail refuses messages that are "not RFC 5322 compliant" with 550 5.7.1, and names what it means:
a missing or repeated From, a missing Message-ID, a malformed Date (Google Workspace Admin Help,
"Gmail SMTP errors and codes", support.google.com/a/answer/3726730; Google "Email sender
guidelines", support.google.com/a/answer/81126: all senders must format messages per RFC 5322).
Exchange Online refuses a From without a valid address with 550 5.7.512 "message must be RFC 5322
section 3.6.2 compliant" (seed 002).  Those are errors here.  The rest of RFC 5322 and the MIME
rules are checked too, at the severity their effect deserves: lines over 998 octets (RFC 5322
2.1.1) are broken by relays, which breaks DKIM; 8-bit bytes need SMTPUTF8 in headers (RFC 6532) or
a Content-Transfer-Encoding of 8bit/binary in bodies (RFC 2045 6, RFC 6152); lines over 78
characters are style (info).  The application that writes the message must fix all of these.
"""

from __future__ import annotations

import email.utils
import re
from datetime import UTC, datetime, timedelta
from typing import TYPE_CHECKING

from deliverck.message import impersonation
from deliverck.message.headers import decoded, domain_of, values
from deliverck.model import CheckSpec, Direction, Finding, FindingSpec, Owner, Severity

if TYPE_CHECKING:
    from deliverck.message.context import MessageContext

OUT, NONE = Direction.OUTBOUND, Direction.NONE
ADM = Owner.MAIL_ADMIN
GMAIL = "Gmail SMTP errors and codes: 550 5.7.1 not RFC 5322 compliant"
GUIDE = "Google Email sender guidelines (RFC 5322 format)"
FUTURE = timedelta(hours=3)          # SpamAssassin's DATE_IN_FUTURE rules start at 3 hours
MAX_PARTS = 1000                     # MIME parts looked at for 8-bit content
SINGLE = ("Sender", "Reply-To", "To", "Cc", "Subject", "In-Reply-To", "References")   # RFC 5322 3.6: at most one
# Fields servers add on the way (RFC 5321 4.4, RFC 8601, RFC 8617, RFC 6376): not the application's to fold.
TRACE = ("received", "return-path", "authentication-results", "arc-seal", "arc-message-signature",
         "arc-authentication-results", "dkim-signature", "received-spf", "x-google-smtp-source")
_MSG_ID = re.compile(r"^<[^<>@\s]+@[^<>@\s]+>$")
_NON_ASCII = re.compile(r"[^\x00-\x7f]")
# RFC 5322 3.3 date-time, with the obsolete forms of 4.3 (two-digit years, named and military zones);
# Python's parser alone takes a missing or unknown zone for UTC.
_DATE = re.compile(r"^(?:(?:Mon|Tue|Wed|Thu|Fri|Sat|Sun)\s*,\s*)?\d{1,2}\s+(?:Jan|Feb|Mar|Apr|May|Jun|Jul|Aug|Sep|Oct|"
                   r"Nov|Dec)\s+\d{2,4}\s+\d\d\s*:\s*\d\d(?:\s*:\s*\d\d)?\s+(?:[+-]\d{4}|UT|GMT|[ECMP][SD]T|"
                   r"[A-IK-Za-ik-z])\s*(?:\(.*\))?\s*$", re.I)

CHECK = CheckSpec(
    id="message_format",
    title="Message format (RFC 5322, MIME)",
    cause="The message breaks the format rules that Gmail and Exchange Online enforce (From, Date, Message-ID), "
          "or rules whose breach makes relays alter it.",
    order=10,
    findings=(
        FindingSpec("message_format.fields", Severity.INFO, "From {from_}, Date {date}, Message-ID {message_id}",
                    "Nothing to fix.", Owner.NOBODY, NONE, refs=("RFC 5322 3.6",)),
        FindingSpec("message_format.from_missing", Severity.ERROR,
                    "the message has no From field: Gmail and Exchange Online refuse it",
                    "Make the sending application write one From field with the sender's address, e.g. "
                    "From: Example <news@example.com>.", ADM, OUT, refs=("RFC 5322 3.6", GMAIL, "seed 002")),
        FindingSpec("message_format.from_several", Severity.ERROR,
                    "the message has {count} From fields: Gmail refuses it",
                    "Write exactly one From field (RFC 5322 3.6 allows one); put other addresses in Reply-To.",
                    ADM, OUT, refs=("RFC 5322 3.6", GMAIL)),
        FindingSpec("message_format.from_invalid", Severity.ERROR,
                    "the From field holds no valid address ({value}): Exchange Online refuses it (5.7.512)",
                    "Write a From field with one address in angle brackets, e.g. From: Example <news@example.com>.",
                    ADM, OUT, refs=("RFC 5322 3.6.2", "seed 002", GMAIL)),
        FindingSpec("message_format.from_several_addresses", Severity.WARNING,
                    "the From field names {count} addresses ({addresses}){sender}",
                    "Name one author in From; RFC 5322 3.6.2 needs a Sender field when From has several, and "
                    "DMARC receivers may refuse such mail (RFC 7489 6.6.1).",
                    ADM, OUT, refs=("RFC 5322 3.6.2", "RFC 7489 6.6.1")),
        FindingSpec("message_format.from_impersonation", Severity.WARNING,
                    "the From field borrows {provider}'s name: {how}",
                    "Show your own organisation's name and domain in From; receivers treat a From that "
                    "borrows a provider's name as phishing (Gmail: do not impersonate Gmail From headers).",
                    ADM, OUT, refs=(GUIDE,)),
        FindingSpec("message_format.date_missing", Severity.ERROR,
                    "the message has no Date field: Gmail refuses it", "Make the application write a Date field "
                    "(RFC 5322 3.3), e.g. Date: Tue, 3 Dec 2024 10:00:00 +0000.", ADM, OUT,
                    refs=("RFC 5322 3.6", GMAIL)),
        FindingSpec("message_format.date_several", Severity.ERROR, "the message has {count} Date fields",
                    "Write exactly one Date field.", ADM, OUT, refs=("RFC 5322 3.6", GMAIL)),
        FindingSpec("message_format.date_malformed", Severity.ERROR,
                    "the Date field {value!r} is not an RFC 5322 date: Gmail refuses it",
                    "Write the date as RFC 5322 3.3 says, e.g. Date: Tue, 3 Dec 2024 10:00:00 +0000 (day of week, "
                    "day, English month abbreviation, year, time, numeric zone).", ADM, OUT,
                    refs=("RFC 5322 3.3", GMAIL)),
        FindingSpec("message_format.date_future", Severity.WARNING,
                    "the Date field is {ahead} ahead of {reference}: spam filters score future dates",
                    "Fix the clock (NTP) or the time zone of the machine or application that writes the message.",
                    ADM, OUT, refs=("RFC 5322 3.6.1",)),
        FindingSpec("message_format.message_id_missing", Severity.ERROR,
                    "the message has no Message-ID field: Gmail refuses it",
                    "Make the application write a Message-ID, e.g. Message-ID: <unique-part@example.com>.",
                    ADM, OUT, refs=("RFC 5322 3.6.4", GMAIL)),
        FindingSpec("message_format.message_id_several", Severity.ERROR,
                    "the message has {count} Message-ID fields", "Write exactly one Message-ID field.",
                    ADM, OUT, refs=("RFC 5322 3.6", GMAIL)),
        FindingSpec("message_format.message_id_malformed", Severity.WARNING,
                    "the Message-ID {value!r} is not of the form <left@right>",
                    "Write a Message-ID such as <unique-part@example.com> (RFC 5322 3.6.4: angle brackets, "
                    "one @, no spaces).", ADM, OUT, refs=("RFC 5322 3.6.4", GMAIL)),
        FindingSpec("message_format.field_several", Severity.WARNING,
                    "the message has {count} {field} fields (RFC 5322 allows one)",
                    "Write each of Sender, Reply-To, To, Cc, Subject, In-Reply-To and References at most once.",
                    ADM, OUT, refs=("RFC 5322 3.6",)),
        FindingSpec("message_format.header_malformed", Severity.WARNING,
                    "header line {line} is neither a field nor a continuation: receivers read the rest as body",
                    "Make the application write every header line as 'Name: value' (continuations start with a "
                    "space or tab) and end the header with one empty line.", ADM, OUT, refs=("RFC 5322 2.2",)),
        FindingSpec("message_format.header_line_too_long", Severity.WARNING,
                    "header line {line} is {length} octets long, over the 998 allowed: relays break it, which "
                    "breaks DKIM signatures", "Fold long header fields (RFC 5322 2.2.3) or encode them (RFC 2047).",
                    ADM, OUT, refs=("RFC 5322 2.1.1",)),
        FindingSpec("message_format.body_line_too_long", Severity.WARNING,
                    "{count} body line(s) are over 998 octets (the longest {length}, line {line}): relays break "
                    "them, which breaks DKIM signatures",
                    "Send such content quoted-printable or base64 (RFC 2045 6.7, 6.8).", ADM, OUT,
                    refs=("RFC 5322 2.1.1", "RFC 5321 4.5.3.1.6")),
        FindingSpec("message_format.header_line_long", Severity.INFO,
                    "{count} header line(s) are over 78 characters (the longest {length})",
                    "Nothing needs to change; RFC 5322 2.1.1 recommends folding at 78.", Owner.NOBODY, NONE,
                    refs=("RFC 5322 2.1.1",)),
        FindingSpec("message_format.header_8bit", Severity.WARNING,
                    "the {fields} field(s) hold 8-bit bytes: only receivers offered SMTPUTF8 accept them",
                    "Encode non-ASCII header text as RFC 2047 encoded words (=?UTF-8?B?...?=), or send only with "
                    "SMTPUTF8 (RFC 6531, RFC 6532).", ADM, OUT, refs=("RFC 6532 3", "RFC 5322 2.2")),
        FindingSpec("message_format.body_8bit_undeclared", Severity.WARNING,
                    "{where} holds 8-bit bytes but declares Content-Transfer-Encoding {cte}",
                    "Declare Content-Transfer-Encoding: 8bit (with MIME-Version: 1.0) or encode the part as "
                    "quoted-printable or base64.", ADM, OUT, refs=("RFC 2045 6", "RFC 6152")),
    ),
)


def _fields(mctx: MessageContext, name: str) -> list[str]:
    return values(mctx.parsed, name)


def _from(mctx: MessageContext) -> list[Finding]:
    values = _fields(mctx, "From")
    if not values:
        return [CHECK.finding("from_missing", "From")]
    out: list[Finding] = []
    if len(values) > 1:
        out.append(CHECK.finding("from_several", "From", [f"From: {v}" for v in values], count=len(values)))
    pairs = [(decoded(n), a) for n, a in email.utils.getaddresses([values[0]])]
    addresses = [a for _, a in pairs if a]
    if not addresses or any(not domain_of(a) or a.count("@") != 1 for a in addresses):
        return out + [CHECK.finding("from_invalid", "From", [f"From: {values[0]}"], value=values[0])]
    if len(addresses) > 1:
        has_sender = bool(mctx.parsed.get("Sender"))
        out.append(CHECK.finding("from_several_addresses", "From", [f"From: {values[0]}"], count=len(addresses),
                                 addresses=", ".join(addresses),
                                 sender="" if has_sender else " and there is no Sender field",
                                 severity=Severity.NOTICE if has_sender else None))
    name, address = pairs[0]
    fake = impersonation.judge(name, domain_of(address))
    if fake is not None:
        out.append(CHECK.finding("from_impersonation", "From", [f"From: {values[0]}"], provider=fake.provider,
                                 how=fake.how, shown=fake.shown))
    return out


def _reference(mctx: MessageContext) -> tuple[datetime, str]:
    """The moment the message is judged against: when it arrived (listen, or the topmost Received
    date), else now."""
    session = mctx.session
    for text, what in ((session.received_at if session else "", "its arrival"),
                       (mctx.info.hops[0].date if mctx.info.hops else "", "the topmost Received date")):
        if text:
            try:
                return datetime.fromisoformat(text.replace("Z", "+00:00")), what
            except ValueError:
                pass
    return datetime.now(UTC), "now"


def _date(mctx: MessageContext) -> list[Finding]:
    values = _fields(mctx, "Date")
    if not values:
        return [CHECK.finding("date_missing", "Date")]
    out: list[Finding] = []
    if len(values) > 1:
        out.append(CHECK.finding("date_several", "Date", [f"Date: {v}" for v in values], count=len(values)))
    try:
        when = email.utils.parsedate_to_datetime(values[0])
    except (TypeError, ValueError, IndexError, OverflowError):
        when = None
    if when is None or not _DATE.match(values[0]):
        return out + [CHECK.finding("date_malformed", "Date", [f"Date: {values[0]}"], value=values[0])]
    if when.tzinfo is None:
        when = when.replace(tzinfo=UTC)
    reference, what = _reference(mctx)
    if when - reference > FUTURE:
        ahead = when - reference
        hours = ahead.total_seconds() / 3600
        shown = f"{hours:.1f} hours" if hours < 48 else f"{hours / 24:.0f} days"
        out.append(CHECK.finding("date_future", "Date", [f"Date: {values[0]}", f"{what}: {reference.isoformat()}"],
                                 ahead=shown, reference=what))
    return out


def _message_id(mctx: MessageContext) -> list[Finding]:
    values = _fields(mctx, "Message-ID")
    if not values:
        return [CHECK.finding("message_id_missing", "Message-ID")]
    out: list[Finding] = []
    if len(values) > 1:
        out.append(CHECK.finding("message_id_several", "Message-ID", [f"Message-ID: {v}" for v in values],
                                 count=len(values)))
    if not _MSG_ID.match(values[0].strip()):
        out.append(CHECK.finding("message_id_malformed", "Message-ID", [f"Message-ID: {values[0]}"],
                                 value=values[0]))
    return out


def _repeated(mctx: MessageContext) -> list[Finding]:
    out = []
    for name in SINGLE:
        values = _fields(mctx, name)
        if len(values) > 1:
            out.append(CHECK.finding("field_several", name, [f"{name}: {v}" for v in values][:5],
                                     count=len(values), field=name))
    return out


def _split(raw: bytes) -> tuple[list[bytes], list[bytes]]:
    """(header lines, body lines) without their line ends."""
    m = re.search(rb"\r?\n\r?\n", raw)
    head, body = (raw[:m.start()], raw[m.end():]) if m else (raw, b"")
    return [ln.rstrip(b"\r") for ln in head.split(b"\n")], [ln.rstrip(b"\r") for ln in body.split(b"\n")]


def _named(head: list[bytes]) -> list[tuple[str, bytes]]:
    """Each header line with the name of the field it belongs to."""
    out, current = [], ""
    for ln in head:
        if ln[:1] not in (b" ", b"\t"):
            current = ln.split(b":", 1)[0].decode("latin-1").strip()
        out.append((current, ln))
    return out


def _lines(mctx: MessageContext) -> list[Finding]:
    head, body = _split(mctx.message.raw)
    out: list[Finding] = []
    field_line = re.compile(rb"^[!-9;-~]+[ \t]*:")
    for i, ln in enumerate(head, 1):
        if ln[:1] not in (b" ", b"\t") and not field_line.match(ln) and not (i == 1 and ln.startswith(b"From ")):
            out.append(CHECK.finding("header_malformed", f"header line {i}", [ln[:300].decode("latin-1")], line=i))
            break
    for i, ln in enumerate(head, 1):
        if len(ln) > 998:
            out.append(CHECK.finding("header_line_too_long", f"header line {i}",
                                     [ln[:120].decode("latin-1") + " ..."], line=i, length=len(ln)))
            break
    long78 = [len(ln) for name, ln in _named(head) if 78 < len(ln) <= 998 and name.lower() not in TRACE]
    if long78:
        out.append(CHECK.finding("header_line_long", "header", count=len(long78), length=max(long78)))
    over = [(i, len(ln)) for i, ln in enumerate(body, 1) if len(ln) > 998]
    if over:
        line, length = max(over, key=lambda x: x[1])
        out.append(CHECK.finding("body_line_too_long", "body", count=len(over), length=length, line=line))
    return out


def _eight_bit(mctx: MessageContext) -> list[Finding]:
    head, _ = _split(mctx.message.raw)
    names: list[str] = []
    for current, ln in _named(head):
        if current and current not in names and any(b > 0x7F for b in ln):
            names.append(current)
    out: list[Finding] = []
    # A session that used SMTPUTF8 (RFC 6531) may carry UTF-8 headers; listen's Session says so when
    # it records the MAIL FROM parameter (a field the lead may add: read defensively).
    if names and not getattr(mctx.session, "smtputf8", False):
        out.append(CHECK.finding("header_8bit", ", ".join(names[:5]), fields=", ".join(names[:5])))
    has_mime = mctx.parsed.get("MIME-Version") is not None
    for n, part in enumerate(mctx.parsed.walk()):
        if n >= MAX_PARTS:
            break
        if part.is_multipart():
            continue
        payload = part.get_payload()
        if not isinstance(payload, str) or not _NON_ASCII.search(payload):
            continue
        cte = str(part.get("Content-Transfer-Encoding", "")).strip().lower()
        if cte in ("8bit", "binary") and has_mime:
            continue
        where = "the body" if part is mctx.parsed else f"the {part.get_content_type()} part"
        shown = cte or ("7bit (the default)" if has_mime else "none (no MIME-Version either)")
        out.append(CHECK.finding("body_8bit_undeclared", where, where=where, cte=shown))
        break
    return out


async def run(mctx: MessageContext) -> list[Finding]:
    out = _from(mctx) + _date(mctx) + _message_id(mctx) + _repeated(mctx) + _lines(mctx) + _eight_bit(mctx)
    info = mctx.info
    summary = CHECK.finding("fields", info.label, from_=", ".join(info.from_) or "(none)",
                            date=info.date or "(none)", message_id=info.message_id or "(none)")
    return [summary, *out]
