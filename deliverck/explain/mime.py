"""A bounce message (RFC 5322, MIME) -> Bounce: the DSN fields, the human text, the returned headers.

Parsed with the stdlib `email` package in compat32 mode (it never raises on
access to a malformed header), every part decoded with errors replaced.  A
bounce forwarded as an attachment (message/rfc822) is looked for up to
MAX_NESTING levels deep; the walk visits at most MAX_PARTS parts.
"""

from __future__ import annotations

import email
import email.header
import email.parser
import html
import re
from email import policy
from email.message import Message

from deliverck.explain import dsn, evidence, formats, replies
from deliverck.explain.message import BounceMessage
from deliverck.explain.model import Attempt, Bounce
from deliverck.explain.reader import decode

MAX_NESTING = 5          # message/rfc822 levels searched for a forwarded bounce
MAX_PARTS = 300          # MIME parts visited in one message
MAX_MULTIPART_DEPTH = 30
MAX_TEXT = 256 * 1024    # characters of human text kept per message
_DSN_TYPES = ("message/delivery-status", "message/global-delivery-status", "text/delivery-status",
              "message/delivery-status+xml")
_HEADER_TYPES = ("text/rfc822-headers", "text/rfc822-header", "message/global-headers", "message/rfc822-headers")


def header(msg: Message, name: str) -> str:
    try:
        raw = msg.get(name)
    except Exception:  # noqa: BLE001 - malformed header: treat as absent
        return ""
    return _decode_header(raw)


def _decode_header(raw) -> str:
    if raw is None:
        return ""
    s = str(raw)
    if "=?" not in s:
        # No RFC 2047 encoded word: email.header.decode_header would hand s back whole, and the
        # round trip below changes nothing in ASCII text.  Most fields of a bounce take this path.
        if not s.isascii():
            s = s.encode("utf-8", "surrogateescape").decode("utf-8", "replace")
        return replies.unwrap(s)[:2000]
    try:
        parts = email.header.decode_header(s)
    except Exception:  # noqa: BLE001
        parts = [(s, None)]
    out = []
    for value, cs in parts:
        if isinstance(value, bytes):
            out.append(decode(value, cs or ""))
        else:
            out.append(value.encode("utf-8", "surrogateescape").decode("utf-8", "replace"))
    return replies.unwrap(" ".join(out) if len(out) > 1 and all(isinstance(v, str) for v, _ in parts) else "".join(out))[:2000]


def part_text(part: Message, limit: int = MAX_TEXT) -> str:
    try:
        payload = part.get_payload(decode=True)
    except Exception:  # noqa: BLE001
        payload = None
    # decode=True gives bytes for a leaf part and None for a multipart (email.message.Message.get_payload)
    if not isinstance(payload, bytes):
        raw = part.get_payload()
        if isinstance(raw, list):
            return ""
        payload = str(raw).encode("utf-8", "surrogateescape")
    try:
        cs = part.get_content_charset() or ""
    except Exception:  # noqa: BLE001
        cs = ""
    return decode(payload[: limit * 4], cs)[:limit]


# HTML to text, each pattern linear (formats.py says how): an element whose text is not shown, a tag
# that breaks a line, any other tag, a run of blanks, and three or more line breaks.
_HIDDEN_OPEN_RE = re.compile(r"<(script|style|head)\b", re.I)
_HIDDEN_CLOSE_RE = {name: re.compile(rf"</{name}\s*+>", re.I) for name in ("script", "style", "head")}
_BREAK_RE = re.compile(r"(?i)<br\s*+/?>|</(?:p|div|tr|li|h\d|table)\s*+>")
_BLANKS_RE = re.compile(r"[ \t\r\f\v\u00a0]+")
# a run of white space with three or more line breaks, from its first one to its end
_BLANK_LINES_RE = re.compile(r"\n(?:[^\S\n]*+\n){2,}[^\S\n]*+")
MAX_TAG = 2000           # characters inside <...> read as a tag


def _drop_hidden(s: str) -> str:
    """s without <script>, <style> and <head> elements (re.sub of r"(?is)<(script|style|head)\\b.*?</\\1\\s*>"),
    in one pass: an element that is never closed ends the search for that name."""
    out: list[str] = []
    pos, dead = 0, set()
    for m in _HIDDEN_OPEN_RE.finditer(s):
        name = m.group(1).lower()
        if m.start() < pos or name in dead:
            continue
        end = _HIDDEN_CLOSE_RE[name].search(s, m.end())
        if end is None:
            dead.add(name)
            continue
        out += (s[pos:m.start()], " ")
        pos = end.end()
    return "".join(out) + s[pos:] if out else s


def _drop_tags(s: str) -> str:
    """s with every tag, "<" to the next ">" with at most MAX_TAG characters between, replaced by a
    space (re.sub of r"<[^>]{0,2000}>"), in one pass: the '<' too far from the next '>' are skipped
    together instead of each scanning MAX_TAG characters."""
    out: list[str] = []
    pos = 0
    i = s.find("<")
    while i >= 0:
        j = s.find(">", i + 1)
        if j < 0:
            break
        if j - i - 1 > MAX_TAG:          # no tag starts before j - MAX_TAG - 1: the next '>' is j for all of them
            i = s.find("<", j - MAX_TAG - 1)
            continue
        out += (s[pos:i], " ")
        pos = j + 1
        i = s.find("<", pos)
    return "".join(out) + s[pos:] if out else s


def html_to_text(s: str) -> str:
    s = _drop_hidden(s[:MAX_TEXT * 2])
    s = _BREAK_RE.sub("\n", s)
    s = _drop_tags(s)
    s = html.unescape(s)
    s = _BLANKS_RE.sub(" ", s)
    return _BLANK_LINES_RE.sub("\n\n", s)


class _Parts:
    def __init__(self) -> None:
        self.dsn: list[Message] = []
        self.plain: list[str] = []
        self.html: list[str] = []
        self.rfc822: list[Message] = []
        self.headers: list[str] = []
        self.types: set[str] = set()
        self.count = 0


def _collect(msg: Message) -> _Parts:
    """The parts of msg itself, not descending into attached messages."""
    out = _Parts()

    def walk(part: Message, depth: int) -> None:
        if out.count >= MAX_PARTS or depth > MAX_MULTIPART_DEPTH:
            return
        out.count += 1
        try:
            ctype = part.get_content_type()
        except Exception:  # noqa: BLE001
            ctype = "text/plain"
        out.types.add(ctype)
        payload = part.get_payload()
        if ctype in _DSN_TYPES:
            out.dsn.append(part)
        elif ctype in _HEADER_TYPES:
            out.headers.append(part_text(part, 64 * 1024))
        elif ctype.startswith("message/") and isinstance(payload, list):
            out.rfc822.extend(p for p in payload[:1] if isinstance(p, Message))
        elif part.is_multipart() and isinstance(payload, list):
            for p in payload:
                if isinstance(p, Message):
                    walk(p, depth + 1)
        elif ctype == "text/html":
            out.html.append(part_text(part))
        elif ctype.startswith("text/") or ctype in ("message/partial",):
            if _is_attachment(part) and not ctype.startswith("text/plain"):
                return
            out.plain.append(part_text(part))

    walk(msg, 0)
    return out


def _is_attachment(part: Message) -> bool:
    try:
        return (part.get("Content-Disposition") or "").lower().startswith("attachment")
    except Exception:  # noqa: BLE001
        return False


# email.feedparser's rules: a header line, and the line ends it splits lines at.
_HEADER_LINE_RE = re.compile(r"\A(?:From |[\041-\071\073-\176]*+:|[\t ])")
_LINE_END_RE = re.compile(r"\r\n|\r|\n")
MAX_DSN = 1024 * 1024    # characters of a message/delivery-status part read


def _dsn_block(lines: list[str]) -> list[str]:
    """One block of a message/delivery-status part as the stdlib parser reads a message's header
    (email.feedparser: header lines up to the first other line, the rest its body), its field values
    decoded as _decode_header does: the field text, and the body if it has any."""
    n = 0
    while n < len(lines) and _HEADER_LINE_RE.match(lines[n]):
        n += 1
    body = lines[n:]
    fields: list[tuple[str, list[str]]] = []
    open_field = False
    for i, line in enumerate(lines[:n]):
        if line[0] in " \t":
            if open_field:
                fields[-1][1].append(line)
            continue
        open_field = False
        if line.startswith("From "):
            if 0 < i == n - 1:
                body.insert(0, line)     # a "From " line last in the header starts the body
            continue
        colon = line.find(":")
        if colon > 0:
            fields.append((line[:colon], [line[colon + 1:].lstrip(" \t")]))
            open_field = True
    out = ["\n".join(f"{name}: {_decode_header(chr(10).join(value))}" for name, value in fields)]
    if "".join(body).strip():
        out.append("\n".join(body) + "\n")
    return out


def _dsn_blocks(raw: str) -> str:
    """The field text of a message/delivery-status part (RFC 3464 section 2.1: blocks of fields
    separated by blank lines), read in one pass."""
    chunks: list[str] = []
    block: list[str] = []
    for line in _LINE_END_RE.split(raw):
        if line:
            block.append(line)
        elif block:
            chunks += _dsn_block(block)
            block = []
    if block:
        chunks += _dsn_block(block)
    return "\n\n".join(chunks)


def _dsn_text(part: Message) -> str:
    """The raw field text of a delivery-status part, however the parser stored it."""
    payload = part.get_payload()
    if isinstance(payload, str) and Message.get_content_type(part) == "message/delivery-status":
        return _dsn_blocks(payload[:MAX_DSN])
    if isinstance(payload, list):
        chunks = []
        for block in payload:
            if isinstance(block, Message):
                chunks.append("\n".join(f"{k}: {_decode_header(v)}" for k, v in block.items()))
                rest = block.get_payload()
                if isinstance(rest, str) and rest.strip():
                    chunks.append(rest)
        return "\n\n".join(chunks)
    return part_text(part, 256 * 1024)


def _text_of(parts: _Parts) -> str:
    if any(t.strip() for t in parts.plain):
        text = "\n\n".join(parts.plain)
        # some Exchange NDRs put the administrator details only in the HTML part
        if parts.html and "Remote Server returned" not in text and "Diagnostic information" not in text:
            h = "\n\n".join(html_to_text(x) for x in parts.html)
            if re.search(r"Remote Server returned|Reported error|Generating server", h, re.I):
                text += "\n\n" + h
    else:
        text = "\n\n".join(html_to_text(x) for x in parts.html)
    return text[:MAX_TEXT]


def _is_bounce(msg: Message, parts: _Parts, text: str) -> bool:
    if parts.dsn:
        return True
    if formats.detected_format(text):
        return True
    return False


def find_bounce(msg: Message, notes: list[str], depth: int = 0) -> tuple[Message, _Parts, str, bool]:
    """The message that is the bounce: msg itself, or a bounce attached to it (forwarded), depth-bounded."""
    parts = _collect(msg)
    text = _text_of(parts)
    if _is_bounce(msg, parts, text):
        return msg, parts, text, True
    if depth < MAX_NESTING:
        for sub in parts.rfc822:
            found = find_bounce(sub, notes, depth + 1)
            if found[3]:
                if depth == 0:
                    notes.insert(0, "the bounce was found inside a forwarded message")
                return found
    elif parts.rfc822:
        notes.append(f"attached messages nested deeper than {MAX_NESTING} levels were not read")
    return msg, parts, text, False


def parse_message(data: bytes) -> Bounce:
    notes: list[str] = []
    try:
        msg = email.message_from_bytes(data, _class=BounceMessage, policy=policy.compat32)
    except (RecursionError, MemoryError) as e:
        raise ValueError(f"the MIME structure is too deep to parse ({type(e).__name__})") from None
    bmsg, parts, text, _ = find_bounce(msg, notes)
    b = Bounce(kind="message", notes=notes)
    _read_headers(b, bmsg)
    attempts: list[Attempt] = []
    per_msg: dict[str, str] = {}
    for d in parts.dsn:
        pm, atts = dsn.dsn_attempts(dsn.field_blocks(_dsn_text(d)))
        for k, v in pm.items():
            per_msg.setdefault(k, v)
        attempts.extend(atts)
    human = formats.cut_original(text)
    fmt, text_attempts, info = formats.extract(human)
    text_attempts = [a for a in text_attempts if formats.substantive(a)]
    b.text = human
    b.formats = (["rfc3464"] if parts.dsn else []) + ([fmt] if fmt and text_attempts else [])
    if _is_mdn(b, parts):
        # RFC 8098: a read receipt reports what happened after delivery, never a failure to deliver
        _original(b, parts)
        return b.reject("read_receipt", "a read receipt (message disposition notification, RFC 8098), not a bounce")
    if attempts:
        _merge(attempts, text_attempts)
        b.format, b.evidence = "rfc3464", "a delivery-status report (RFC 3464)"
    elif text_attempts:
        attempts = text_attempts
        b.format, b.evidence = fmt, f"the {fmt} bounce format"
    else:
        # a DSN pasted into the body, or DSN-looking fields in a text part
        blocks = dsn.field_blocks(human)
        pm, atts = dsn.dsn_attempts(blocks) if dsn.has_dsn_fields(blocks) else ({}, [])
        if atts:
            attempts, b.format, b.evidence = atts, "rfc3464-text", "delivery-status fields (RFC 3464) in the text"
            per_msg.update(pm)
        else:
            attempts, where = formats.generic(_unquoted(human)) if human.strip() else ([], "")
            b.format = "text" if human.strip() else ""
            b.evidence = where
    if attempts and not any(formats.failed(a) for a in attempts):
        _original(b, parts)
        actions = "/".join(dict.fromkeys(a.action or "delivered" for a in attempts))
        return b.reject("delivered", f"a delivery report whose recipients were all {actions}, not a failure")
    failed = [x.strip() for x in b.headers.get("x-failed-recipients", "").split(",") if x.strip()]
    if failed and attempts and not attempts[0].recipient:
        attempts[0].recipient = failed[0]
    if not attempts and failed:
        attempts = [Attempt(recipient=r, source="x-failed-recipients") for r in failed]
        b.evidence = "an X-Failed-Recipients field"
    if not attempts:
        if not _wording_only(b, human):
            _original(b, parts)
            return b
        attempts = b.attempts
    for a in attempts:
        if not a.action and info.get("action"):
            a.action = info["action"]
    b.attempts = attempts
    b.reporting_mta = dsn.typed(per_msg.get("reporting-mta", "")) or info.get("reporting_mta", "")
    b.received_from_mta = dsn.typed(per_msg.get("received-from-mta", "")) or info.get("received_from", "")
    b.arrival_date = per_msg.get("arrival-date", "")
    b.envelope_sender = dsn.typed(per_msg.get("x-postfix-sender", "")) or dsn.typed(per_msg.get("x-original-sender", ""))
    _original(b, parts)
    return b


def _read_headers(b: Bounce, bmsg) -> None:
    """The bounce's own header fields that the classification and the report read."""
    b.from_ = header(bmsg, "From")
    b.to = header(bmsg, "To")
    b.subject = header(bmsg, "Subject")
    b.date = header(bmsg, "Date")
    try:
        b.received = [replies.unwrap(_decode_header(v)) for v in (bmsg.get_all("Received") or [])[:40]]
    except Exception:  # noqa: BLE001
        b.received = []
    for name in ("X-Failed-Recipients", "Auto-Submitted", "X-MS-Exchange-Message-Is-Ndr", "X-Mailer", "X-Postfix-Queue-ID",
                 "Return-Path", "Content-Type", "Precedence", "X-Autoreply", "X-Autorespond", "List-Id"):
        v = header(bmsg, name)
        if v:
            b.headers[name.lower()] = v
    if any(p.defects for p in [bmsg] if hasattr(p, "defects")):
        if any("StartBoundaryNotFound" in type(d).__name__ or "CloseBoundaryNotFound" in type(d).__name__ for d in bmsg.defects):
            b.notes.append("the MIME structure is broken or truncated; read what was there")


def _is_mdn(b: Bounce, parts: _Parts) -> bool:
    ctype = re.sub(r"[\s\"]", "", b.headers.get("content-type", "")).lower()
    return "report-type=disposition-notification" in ctype or "message/disposition-notification" in parts.types \
        or "message/global-disposition-notification" in parts.types


_QUOTED_RE = re.compile(r"(?m)^[ \t]*>.*\n?")


def _unquoted(text: str) -> str:
    """The text without the lines quoted from earlier messages ("> ..."): a reply a person quotes
    in a conversation is not this message's bounce."""
    return _QUOTED_RE.sub("", text)


def _wording_only(b: Bounce, human: str) -> bool:
    """No reply, no report: a bounce by its wording (From, Subject, the start of the text), else
    the message is marked as not a bounce (an auto-reply, or ordinary mail).  True for a bounce."""
    strong_auto = evidence.auto_reply(b.subject, {k: v for k, v in b.headers.items() if k != "auto-submitted"})
    if strong_auto:
        b.reject("auto_reply", f"an automatic reply ({strong_auto}), not a bounce")
        return False
    said = evidence.from_daemon(b.from_) or evidence.wording(b.subject) or evidence.wording(human)
    if said:
        b.evidence = f"bounce wording ({said[:60]!r})"
        if human.strip():
            b.attempts = [formats.text_attempt(human)]
        return True
    auto = evidence.auto_reply(b.subject, b.headers)
    report = re.search(r"report-type=\"?([\w.-]+)", re.sub(r"\s", "", b.headers.get("content-type", "")), re.I)
    if auto:
        b.reject("auto_reply", f"an automatic reply ({auto}), not a bounce")
    elif report and report.group(1).lower() == "feedback-report":
        b.reject("message", "an abuse or feedback report (ARF, RFC 5965), not a bounce")
    elif report and report.group(1).lower() != "delivery-status":
        b.reject("message", f"a report of type {report.group(1)[:40]}, not a delivery-status report (RFC 3464)")
    elif b.headers.get("list-id"):
        b.reject("message", "a mailing-list message with no SMTP reply, no delivery-status report and no bounce wording")
    else:
        b.reject("message", "an ordinary message: no SMTP reply, no delivery-status report and no bounce wording")
    return False


def _merge(dsn: list[Attempt], text: list[Attempt]) -> None:
    """Fill what the DSN fields lack (a reply text, the remote host) from the human part."""
    by_rcpt = {t.recipient.lower(): t for t in text if t.recipient}
    for i, a in enumerate(dsn):
        t = by_rcpt.get(a.recipient.lower()) or (text[i] if len(text) == len(dsn) else None)
        if t is None:
            continue
        if not a.diagnostic and t.diagnostic:
            a.diagnostic, a.code = t.diagnostic, a.code or t.code
            a.status = a.status or t.status
        for f in ("remote_mta", "remote_ip", "command"):
            if not getattr(a, f) and getattr(t, f):
                setattr(a, f, getattr(t, f))


def _original(b: Bounce, parts: _Parts) -> None:
    hdrs: Message | None = None
    if parts.rfc822:
        hdrs = parts.rfc822[0]
    elif parts.headers:
        try:
            # Only its header fields are read: headersonly stops the parser at the first blank
            # line instead of parsing a body (a MIME tree, for a multipart type) nobody reads.
            hdrs = email.parser.Parser(policy=policy.compat32).parsestr(parts.headers[0].lstrip(), headersonly=True)
        except Exception:  # noqa: BLE001
            hdrs = None
    if hdrs is None:
        m = re.search(r"(?im)^From: (.+)$", b.text.split("Original message headers", 1)[-1]) if "Original message headers" in b.text else None
        if m:
            b.original_from = replies.unwrap(m.group(1)[:replies.MAX_FIELD])
        return
    b.original_from = header(hdrs, "From")
    b.original_to = header(hdrs, "To")
    b.original_subject = header(hdrs, "Subject")
    rp = header(hdrs, "Return-Path")
    if rp and not b.envelope_sender:
        b.envelope_sender = rp.strip("<> ")
    try:
        b.original_received = [replies.unwrap(_decode_header(v)) for v in (hdrs.get_all("Received") or [])[:40]]
    except Exception:  # noqa: BLE001
        b.original_received = []
