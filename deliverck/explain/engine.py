"""Inputs -> Explanations: a status code, a reply line, pasted text, a message file, an mbox, a directory."""

from __future__ import annotations

import os
import re
from collections.abc import Iterator
from datetime import UTC

from deliverck.explain import dsn, evidence, formats, reader, replies, systems
from deliverck.explain.classify import classify
from deliverck.explain.mime import parse_message
from deliverck.explain.model import Attempt, Bounce, Explanation, Party
from deliverck.explain.status import is_status, normalise_garbled

MAX_TEXT_ARG = 1024 * 1024
MAX_DIR_DEPTH = 16


SHORT_REPLY = 500        # characters: a whole input this short may be a reply's text without its code
SHORT_LINES = 3


def parse_text(text: str, explicit: bool = True) -> Bounce:
    """Pasted input: a status code, a reply line, DSN fields, a bounce's text, or anything else.

    explicit: the text was handed to explain on its own (argument, stdin, a file named on the
    command line), so a short text may be a reply quoted without its code; directory triage
    passes False and needs a code, DSN fields or bounce wording."""
    t = normalise_garbled(text.strip()[:MAX_TEXT_ARG])   # cut first: normalising is the costly part
    b = Bounce(kind="text", text=t)
    if is_status(t):
        b.kind, b.format, b.evidence = "status", "status", "an enhanced status code given on its own"
        b.attempts = [Attempt(status=t, source="argument")]
        if t[0] == "2":
            b.reject("success_reply", f"{t} is a success status (RFC 3463 class 2), not a delivery failure")
        return b
    one_line = "\n" not in t
    code, status, rest = replies.parse_reply(t) if replies.reply_head(t) else (0, "", "")
    lines = t.count("\n") + 1
    if (code or status) and (one_line or (len(t) < 2000 and not formats.detected_format(t) and (
            (code and (status or replies.all_reply_lines(t, code))) or lines <= SHORT_LINES))):
        b.kind, b.format, b.evidence = "reply", "reply", "an SMTP reply given on its own"
        b.attempts = [Attempt(code=code, status=status, diagnostic=rest, recipient=replies.first_addr(rest), source="argument")]
        if not evidence.is_failure(code, status):
            b.reject("success_reply", f"{code or status} is a success reply, not a delivery failure")
        return b
    blocks = dsn.field_blocks(t)
    if dsn.has_dsn_fields(blocks):
        pm, atts = dsn.dsn_attempts(blocks)
        if atts:
            b.format, b.evidence = "rfc3464-text", "delivery-status fields (RFC 3464)"
            b.attempts = atts
            b.reporting_mta = dsn.typed(pm.get("reporting-mta", ""))
            if not any(formats.failed(a) for a in atts):
                b.reject("delivered", "a delivery report whose recipients were all " + _actions(atts) + ", not a failure")
            return b
    kind = evidence.data_format(t)
    if kind:
        return b.reject("data", f"{_a(kind)} document, not a message or a bounce text")
    kind = evidence.document_kind(t)
    if kind:
        what = "program source or a patch" if kind == "source" else "a document (Markdown, HTML, XML or an RFC)"
        return b.reject(kind, f"{what}: replies or bounce sentences quoted in it are examples, not a bounce")
    human = formats.cut_original(t)
    fmt, atts, info = formats.extract(human)
    atts = [a for a in atts if formats.substantive(a)]
    if atts:
        b.format, b.attempts, b.evidence = fmt, atts, f"the {fmt} bounce format"
        b.reporting_mta = info.get("reporting_mta", "")
        for a in atts:
            a.action = a.action or info.get("action", "")
        return b
    b.format = "text"
    b.attempts, where = formats.generic(human)
    if b.attempts:
        b.evidence = where
        return b
    said = evidence.wording(human)
    if said:
        b.attempts, b.evidence = [formats.text_attempt(human)], f"bounce wording ({said[:60]!r})"
        return b
    if explicit and len(t) <= SHORT_REPLY and t.count("\n") < SHORT_LINES and _reply_words(t):
        b.attempts, b.evidence = [formats.text_attempt(t)], "a reply's wording given on its own"
        return b
    if evidence.first_reply(human):
        return b.reject("success_reply", "only success replies (2xx) in it, no failure")
    if evidence.is_log(t):
        return b.reject("log", "a log with no SMTP reply of a failed delivery (4xx/5xx) in it")
    kind = evidence.data_format(t, loose=True)
    if kind:
        return b.reject("data", f"{_a(kind)} document, not a message or a bounce text")
    return b.reject("text", "no SMTP reply, no delivery-status fields and no bounce wording in it")


def _a(word: str) -> str:
    return ("an " if word[:1] in "AEIOU" else "a ") + word


def _actions(atts: list[Attempt]) -> str:
    return "/".join(dict.fromkeys(a.action or "delivered" for a in atts))


# Words of refusal that a reply's text has and a note or a title does not.
_REFUSAL_RE = re.compile(r"\b(?:reject\w*|den(?:y|ied)|refus\w*|unknown|not (?:found|exist\w*|allowed|permitted|accepted|authori[sz]ed)|"
                         r"does(?:n't| not) exist|no such|invalid|fail\w*|exceed\w*|over quota|full|disabled|inactive|suspended|"
                         r"block\w*|banned|unavailable|unable|cannot|can'?t|timed? ?out|unreachable|too (?:many|large|big|long)|"
                         r"limit\w*|deferred|expired|out of range|unrouteable|blacklist\w*|listed)\b", re.I)


def _reply_words(text: str) -> bool:
    """The whole (short) text reads as a reply's words: an NDR catalog wording, or a rule of
    rules.toml together with a word of refusal ("Kerberos notes" is neither)."""
    from deliverck.explain.classify import catalog_match
    from deliverck.explain.rules import load

    if catalog_match(Attempt(diagnostic=text)) is not None:
        return True
    return load().first(text) is not None and bool(_REFUSAL_RE.search(text))


def _domain(addr: str) -> str:
    m = re.search(r"@([\w.-]+\.[a-z]{2,})", addr or "", re.I)
    return m.group(1).lower().rstrip(".") if m else ""


def _from_addr(value: str) -> str:
    m = re.search(replies.ADDR, value or "")
    return m.group(0) if m else ""


def identify(b: Bounce, e: Explanation) -> None:
    """Fill e.reporting, e.receiving and e.sending from the bounce."""
    rep = Party(host=b.reporting_mta)
    hit = systems.by_from(b.from_)
    if hit:
        rep.system, rep.name, rep.evidence = hit[0].id, hit[0].name, f"From: {b.from_}"
    if not rep.system and b.reporting_mta:
        s = systems.by_host(b.reporting_mta)
        if s:
            rep.system, rep.name, rep.evidence = s.id, s.name, f"reporting MTA {b.reporting_mta}"
    if not rep.system and b.format and b.kind == "message":
        s = systems.by_id(b.format) if b.format not in ("rfc3464", "rfc3464-text", "text", "chinese") else None
        if s is None:
            other = [f for f in b.formats if f != "rfc3464"]
            s = systems.by_id(other[0]) if other and other[0] != "chinese" else None
        if s:
            rep.system, rep.name, rep.evidence = s.id, s.name, f"the bounce's wording ({s.id} format)"
    if not rep.system and b.kind == "message":
        s = systems.by_host(_domain(_from_addr(b.from_)))
        if s:
            rep.system, rep.name, rep.evidence = s.id, s.name, f"From: {b.from_}"
    if not rep.host and b.kind == "message":
        rep.host = _domain(_from_addr(b.from_))
    e.reporting = rep

    p = e.primary
    recv = Party()
    if p is not None:
        a = p.attempt
        recv.host, recv.ip = a.remote_mta, a.remote_ip
        s = systems.by_host(a.remote_mta) if a.remote_mta else None
        if s:
            recv.system, recv.name, recv.evidence = s.id, s.name, f"remote MTA {a.remote_mta}"
        if not recv.system:
            hit = systems.by_text(a.diagnostic)
            if hit:
                recv.system, recv.name, recv.evidence = hit[0].id, hit[0].name, f"{hit[1]!r} in the reply"
        if not recv.system and p.rule:
            from deliverck.explain.rules import load

            r = next((r for r in load().rules if r.id == p.rule), None)
            s = systems.by_id(r.system) if r and r.system else None
            if r and s:
                recv.system, recv.name, recv.evidence = s.id, s.name, f"the reply's wording (rule {r.id})"
        if not recv.system and p.catalog_key:
            sys_id = p.catalog_key.split(".")[0]
            s = systems.by_id(sys_id)
            if s:
                recv.system, recv.name, recv.evidence = s.id, s.name, f"the reply's wording (catalog {p.catalog_key})"
        if not recv.system:
            d = _domain(a.recipient)
            s = systems.by_host(d) if d else None
            if s and s.kind == "provider":
                recv.system, recv.name, recv.evidence = s.id, s.name, f"the recipient's domain {d}"
    e.receiving = recv

    snd = Party()
    if p is not None:
        quoted = [ip for ip in replies.ips(p.attempt.diagnostic) if ip != p.attempt.remote_ip]
        if quoted:
            snd.ip, snd.evidence = quoted[0], "the address quoted in the reply"
        helo = re.search(r"<([\w.-]+)>: Helo command rejected", p.attempt.diagnostic)
        if helo:
            snd.host, snd.evidence = helo.group(1), (snd.evidence + "; " if snd.evidence else "") + "the HELO name quoted in the reply"
    rep_sys = systems.by_id(rep.system) if rep.system else None
    if not snd.host and b.reporting_mta and not (rep_sys and rep_sys.kind == "provider"):
        snd.host = b.reporting_mta
        snd.evidence = (snd.evidence + "; " if snd.evidence else "") + "the reporting MTA (it sent the message)"
    e.sending = snd


def explain_bounce(b: Bounce, source: str, index: int = 0) -> Explanation:
    e = Explanation(source=source, index=index, bounce=b)
    if b.not_bounce:
        return e        # nothing to classify: no category, no systems
    human = b.text if b.kind == "message" else ""
    attempts = b.attempts or [Attempt(source="none")]
    # failures first: a delivered or relayed recipient in a DSN explains nothing
    attempts = sorted(attempts, key=lambda a: a.action in ("delivered", "relayed", "expanded"))
    for a in attempts[:100]:
        e.results.append(classify(a, human, retried=_retried(b, a)))
    identify(b, e)
    return e


def _when(value: str):
    from email.utils import parsedate_to_datetime

    try:
        d = parsedate_to_datetime(re.sub(r"\s*\([^)]*\)\s*$", "", value.strip())) if value.strip() else None
    except (TypeError, ValueError, IndexError, OverflowError):
        return None
    if d is not None and d.tzinfo is None:

        d = d.replace(tzinfo=UTC)
    return d


def _retried(b: Bounce, a: Attempt) -> float | None:
    """Seconds from the message's arrival to the last attempt (or the bounce's date), if both are stated."""
    start = _when(b.arrival_date)
    end = _when(a.last_attempt) or _when(b.date)
    if start is None or end is None:
        return None
    return max((end - start).total_seconds(), 0.0)


def explain_text(text: str, source: str = "argument", explicit: bool = True) -> Explanation:
    return explain_bounce(parse_text(text, explicit), source)


def explain_bytes(data: bytes, source: str, notes: list[str] | None = None, explicit: bool = True) -> list[Explanation]:
    """Every message in data (one, or several in an mbox) explained; bad input gives one Explanation with error."""
    try:
        data, more = reader.sniff(data)
    except reader.InputError as ex:
        return [Explanation(source=source, error=f"{source}: {ex}")]
    notes = (notes or []) + more
    if not reader.looks_like_message(data):
        b = parse_text(reader.decode(data), explicit)
        e = explain_bounce(b, source)
        b.notes.extend(notes)
        return [e]
    return [explain_message(msg, source, i, notes, explicit) for i, msg in enumerate(reader.split_mbox(data))]


def explain_message(msg: bytes, source: str, index: int, notes: list[str], explicit: bool = True) -> Explanation:
    """One message of a file (the file's own notes first); also what a worker runs per mbox message."""
    try:
        b = parse_message(msg)
    except (ValueError, RecursionError) as ex:
        b = parse_text(reader.decode(msg), explicit)
        b.notes.append(f"read as plain text: {ex}")
    b.notes[:0] = notes
    return explain_bounce(b, source, index)


def explain_path(path: str, limit: int = reader.MAX_BYTES, explicit: bool = True) -> list[Explanation]:
    """explicit: the file was named by the user (False in directory triage, see parse_text)."""
    try:
        data, notes = reader.read_file(path, limit)
    except reader.InputError as ex:
        return [Explanation(source=path, error=str(ex))]
    return explain_bytes(data, path, notes, explicit)


def iter_files(root: str) -> Iterator[str]:
    """Regular files under root, depth-first, names sorted within each directory, hidden names skipped.
    Holds one directory's names at a time per level, never the results."""
    def walk(d: str, depth: int) -> Iterator[str]:
        try:
            with os.scandir(d) as it:
                entries = sorted((x for x in it if not x.name.startswith(".")), key=lambda x: x.name)
        except OSError:
            return
        for x in entries:
            try:
                if x.is_dir(follow_symlinks=False):
                    if depth < MAX_DIR_DEPTH:
                        yield from walk(x.path, depth + 1)
                elif x.is_file(follow_symlinks=True):
                    yield x.path
            except OSError:
                continue
    yield from walk(root, 0)


def iter_directory(root: str, limit: int = reader.MAX_BYTES) -> Iterator[Explanation]:
    for path in iter_files(root):
        yield from explain_guarded(path, limit)


def explain_guarded(path: str, limit: int = reader.MAX_BYTES) -> list[Explanation]:
    """A file of a directory: one bad file never stops the triage of the others."""
    try:
        return explain_path(path, limit, explicit=False)
    except Exception as ex:  # noqa: BLE001
        return [Explanation(source=path, error=f"{path}: could not be read ({type(ex).__name__}: {' '.join(str(ex).split())[:200]})")]
