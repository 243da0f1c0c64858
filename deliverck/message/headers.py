"""What a message says about itself: its From, Subject, Message-ID, Date, the hops of its Received
fields, and the envelope it claims.

A header is what some server or program wrote, not a proof.  The envelope (connecting address,
HELO name, MAIL FROM) comes first from the user's options, then from the SMTP session `deliverck
listen` saw, and only then from the header; each value names where it was read, and nothing is
guessed beyond what the header says.

Received fields (RFC 5321 4.4) have a grammar, but real MTAs fill its clauses with comments of their
own.  The forms read here, written from the MTAs' documentation and published examples:

  Postfix    from HELO (RDNS [IP]) (using TLSv1.3 with cipher ...) by HOST (Postfix) with ESMTPS id ...; DATE
  Sendmail   from HELO (RDNS [IP]) by HOST (8.17.1/8.17.1) with ESMTPS id ... (version=TLSv1.3 cipher=...); DATE
  Exim       from RDNS ([IP] helo=HELO) by HOST with esmtps (TLS1.3) tls CIPHER (Exim 4.96) ... id ...; DATE
  Exchange   from HELO (RDNS [IP]) by HOST (IP) with Microsoft SMTP Server (version=TLS1_2, cipher=...) id ...; DATE
  Gmail      from HELO (RDNS. [IP]) by mx.google.com with ESMTPS id ... (version=TLS1_3 cipher=... bits=...); DATE
             by 2002:a05:... with SMTP id ...; DATE                                    (no from clause)
  Yahoo      from RDNS (EHLO HELO) (IP) by mta....yahoo.com with SMTPS (version=TLS1_3 cipher=...); DATE

Protocol words of the `with` clause: RFC 3848 and RFC 6531 (ESMTPS, ESMTPSA, LMTPS, UTF8SMTPS...:
TLS was used; ESMTP, ESMTPA, SMTP...: it was not).
"""

from __future__ import annotations

import email.errors
import email.header
import email.message
import email.utils
import ipaddress
import re
from datetime import UTC, datetime

from deliverck.message.model import (
    FROM_HEADER,
    FROM_OPTION,
    FROM_SESSION,
    Claim,
    Envelope,
    Hop,
    Message,
    MessageInfo,
    Session,
)
from deliverck.target import is_hostname, org_domain

MAX_HOPS = 100                  # Received fields read from one message
MAX_FIELD = 8 * 1024            # characters of one field considered
MAX_DEPTH = 8                   # nesting of comments followed

_KEYWORDS = ("from", "by", "via", "with", "id", "for")
_TLS_PROTOCOLS = {"ESMTPS", "ESMTPSA", "SMTPS", "LMTPS", "LMTPSA", "UTF8SMTPS", "UTF8SMTPSA", "UTF8LMTPS",
                  "UTF8LMTPSA"}
_PLAIN_PROTOCOLS = {"SMTP", "ESMTP", "ESMTPA", "LMTP", "LMTPA", "UTF8SMTP", "UTF8SMTPA", "UTF8LMTP", "UTF8LMTPA"}
_TLS_VERSION = re.compile(r"\b(?:using|version=)\s*((?:TLS|SSL)v?[\d._]+)", re.I)
_EXIM_TLS = re.compile(r"^(TLS1[._]\d|TLSv1(?:\.\d)?|SSLv3)(?::|$)", re.I)
_HELO_IN_COMMENT = re.compile(r"\b(?:helo=|(?:EHLO|HELO)\s+)([^\s()\[\]]+)", re.I)
_COMMENT_TAIL = re.compile(r"\s*\([^()]*\)\s*$")


def unfold(value: str) -> str:
    """One line: folding removed (RFC 5322 2.2.3) and runs of white space made one space."""
    return " ".join(value.split())


def text_of(value: str) -> str:
    """A compat32 header value as text: 8-bit bytes (kept as surrogates by the parser) read as UTF-8."""
    try:
        return value.encode("utf-8", "surrogateescape").decode("utf-8", "replace")
    except UnicodeError:
        return value


def raw_values(parsed: email.message.Message, name: str) -> list[str]:
    """The values of every field NAME as written (compat32 turns a value with 8-bit bytes into a
    Header object whose str() loses them; the raw items keep them as surrogates)."""
    wanted = name.lower()
    return [str(v) for k, v in parsed.raw_items() if k.lower() == wanted]


def values(parsed: email.message.Message, name: str) -> list[str]:
    """The values of every field NAME as text on one line (8-bit bytes read as UTF-8)."""
    return [unfold(text_of(v)) for v in raw_values(parsed, name)]


# ---- Received -------------------------------------------------------------------------------


def _tokens(text: str) -> list[tuple[str, str]]:
    """("word", w) and ("comment", c) in order; comments keep their inner parentheses' text."""
    out: list[tuple[str, str]] = []
    i, n = 0, len(text)
    while i < n:
        ch = text[i]
        if ch.isspace():
            i += 1
        elif ch == "(":
            depth, j = 0, i
            while j < n:
                if text[j] == "(":
                    depth += 1
                elif text[j] == ")":
                    depth -= 1
                    if depth == 0:
                        break
                elif text[j] == "\\":
                    j += 1
                j += 1
            out.append(("comment", text[i + 1:j]))
            i = j + 1
        else:
            j = i
            while j < n and not text[j].isspace() and text[j] != "(":
                j += 1
            out.append(("word", text[i:j]))
            i = j
    return out


def _split_date(value: str) -> tuple[str, str]:
    """(clauses, date): the date follows the last ';' outside comments."""
    depth, cut = 0, -1
    for i, ch in enumerate(value):
        if ch == "(":
            depth += 1
        elif ch == ")":
            depth = max(depth - 1, 0)
        elif ch == ";" and depth == 0:
            cut = i
    if cut < 0:
        return value, ""
    return value[:cut], value[cut + 1:].strip()


def rfc3339(date: str) -> str:
    """The date of a header field as RFC 3339 UTC, or "" when it cannot be read."""
    text = date.strip()
    while _COMMENT_TAIL.search(text):
        text = _COMMENT_TAIL.sub("", text)
    try:
        when = email.utils.parsedate_to_datetime(text)
    except (TypeError, ValueError, IndexError, OverflowError):
        return ""
    if when is None:
        return ""
    if when.tzinfo is None:
        when = when.replace(tzinfo=UTC)
    try:
        return when.astimezone(UTC).isoformat().replace("+00:00", "Z")
    except (OverflowError, ValueError):
        return ""


def _ip(text: str) -> str:
    t = text.strip("[]").strip()
    if t.lower().startswith("ipv6:"):
        t = t[5:]
    try:
        return str(ipaddress.ip_address(t))
    except ValueError:
        return ""


def _clauses(tokens: list[tuple[str, str]]) -> dict[str, list[tuple[str, str]]]:
    """The tokens of each clause, by keyword; what precedes the first keyword is dropped."""
    out: dict[str, list[tuple[str, str]]] = {}
    current = ""
    for kind, text in tokens:
        if kind == "word" and text.lower() in _KEYWORDS and text.lower() not in out:
            current = text.lower()
            out[current] = []
        elif current:
            out[current].append((kind, text))
    return out


def _from_clause(parts: list[tuple[str, str]]) -> tuple[str, str, str]:
    """(helo name, reverse DNS name, client address) as the from clause states them."""
    words = [t for k, t in parts if k == "word"]
    comments = [t for k, t in parts if k == "comment"]
    first = words[0] if words else ""
    helo, rdns, ip = first, "", _ip(first)     # "[192.0.2.1]" (a literal), or a bare address (Yahoo's HTTP hops)
    for c in comments:
        m = _HELO_IN_COMMENT.search(c)
        if m:                                       # Exim helo=, Yahoo (EHLO x): the first word is the rDNS name
            helo = m.group(1)
            if first and not _ip(first):
                rdns = first
        for br in re.findall(r"\[([^\]]{2,60})\]", c):
            if not _ip(br):
                continue
            ip = ip or _ip(br)
            before = c[:c.find("[" + br)].split()
            if before and before[-1].lower() not in ("unknown", "really", "helo") and not rdns:
                rdns = before[-1].rstrip(".")
            break
        if not ip:
            for w in c.replace(",", " ").split():   # Exchange (2603:10a6::12), Yahoo (203.0.113.5)
                if _ip(w) and ":" in w or w.count(".") == 3 and _ip(w):
                    ip = _ip(w)
                    break
    return helo, rdns, ip


def _tls(value: str, with_words: list[str], with_comments: list[str]) -> tuple[str, bool | None]:
    m = _TLS_VERSION.search(value)
    version = m.group(1) if m else ""
    for c in with_comments:                         # Exim: with esmtps (TLS1.3) tls ...
        e = _EXIM_TLS.match(c.strip())
        if e and not version:
            version = e.group(1)
    proto = with_words[0].upper() if with_words else ""
    if version or proto in _TLS_PROTOCOLS or "Google Transport Security" in value:
        return version, True
    if any(c.strip().upper() == "TLS" for c in with_comments):      # Exchange: Microsoft SMTP Server (TLS)
        return "", True
    if proto in _PLAIN_PROTOCOLS:
        return "", False
    return "", None


def parse_received(value: str, index: int) -> Hop:
    """One Received field (its value as written) as a Hop; unknown parts stay empty."""
    raw = unfold(text_of(value))[:MAX_FIELD]
    clauses_text, date = _split_date(raw)
    clauses = _clauses(_tokens(clauses_text))
    helo, rdns, ip = _from_clause(clauses.get("from", []))
    by_words = [t for k, t in clauses.get("by", []) if k == "word"]
    with_parts = clauses.get("with", [])
    with_words: list[str] = []
    for k, t in with_parts:
        if k != "word":
            break
        with_words.append(t)
    with_comments = [t for k, t in with_parts if k == "comment"]
    tls, encrypted = _tls(clauses_text, with_words, with_comments)
    proto = with_words[0].upper() if with_words else ""
    with_ = " ".join(with_words) if proto not in _TLS_PROTOCOLS | _PLAIN_PROTOCOLS else proto
    return Hop(index=index, from_name=helo, from_rdns=rdns, from_ip=ip, by=by_words[0] if by_words else "",
               with_=with_, tls=tls, encrypted=encrypted, date=rfc3339(date), raw=raw)


def hops_of(parsed: email.message.Message) -> tuple[Hop, ...]:
    """The Received fields, topmost (the last hop) first, at most MAX_HOPS."""
    fields = raw_values(parsed, "Received")
    return tuple(parse_received(v, i + 1) for i, v in enumerate(fields[:MAX_HOPS]))


# ---- the envelope ---------------------------------------------------------------------------


def _internal(ip: str) -> bool:
    """A hand-off inside the receiving system (loopback, RFC 1918, link-local, CGNAT, ULA), not the
    connection from outside.  Documentation ranges count as outside: they stand for public ones."""
    a = ipaddress.ip_address(ip)
    if a.is_loopback or a.is_link_local or a.is_unspecified:
        return True
    nets = ("10.0.0.0/8", "172.16.0.0/12", "192.168.0.0/16", "100.64.0.0/10", "fc00::/7")
    return any(a in ipaddress.ip_network(n) for n in nets)


def _same_system(hop: Hop) -> bool:
    """The client and the server of a hop are in one organizational domain: a hand-off inside one
    system (Exchange Online's and Gmail's internal hops name public addresses)."""
    client = (hop.from_rdns or hop.from_name).rstrip(".").lower()
    server = hop.by.rstrip(".").lower()
    if not is_hostname(client) or not is_hostname(server):
        return False
    return org_domain(client) == org_domain(server)


def received_hop(hops: tuple[Hop, ...]) -> tuple[Hop | None, list[str]]:
    """The hop whose from clause the receiving side wrote about the sender's connection: the topmost
    Received field that names a client address from outside the receiver (a mailbox server's own
    LMTP or internal relay fields above it name loopback or private addresses, none, or a client of
    the receiver's own organizational domain)."""
    notes: list[str] = []
    for hop in hops:
        if hop.from_ip and not _internal(hop.from_ip) and not _same_system(hop):
            if hop.index > 1:
                above = "Received #1" if hop.index == 2 else f"Received #1 to #{hop.index - 1}"
                notes.append(f"{above}: hand-offs inside the receiving system; the envelope is read from "
                             f"Received #{hop.index}")
            return hop, notes
    return None, notes


def _return_path(parsed: email.message.Message) -> str | None:
    found = values(parsed, "Return-Path")
    if not found:
        return None
    text = found[0]
    if text.strip("<> ") == "":
        return ""
    _, addr = email.utils.parseaddr(text)
    return addr or text.strip("<> ")


def envelope_of(parsed: email.message.Message, hops: tuple[Hop, ...], *, ip: str | None = None,
                helo: str | None = None, mail_from: str | None = None,
                session: Session | None = None) -> tuple[Envelope, list[str]]:
    """The envelope and how it was found: options win, then the session, then the header."""
    hop, notes = received_hop(hops)
    where = f"{FROM_HEADER} Received #{hop.index} (by {hop.by or 'an unnamed host'})" if hop else ""

    def pick(option: str | None, flag: str, seen: str | None, header: str | None, header_source: str) -> Claim | None:
        if option is not None:
            return Claim(option, f"{FROM_OPTION} {flag}", True)
        if seen is not None:
            return Claim(seen, FROM_SESSION, True)
        if header is not None:
            return Claim(header, header_source, False)
        return None

    ip_claim = pick(ip, "--ip", session.peer_ip if session else None, hop.from_ip if hop else None, where)
    helo_claim = pick(helo, "--helo", session.helo if session else None,
                      hop.from_name if hop and hop.from_name else None, where)
    rp = _return_path(parsed)
    mf_claim = pick(mail_from, "--mail-from", session.mail_from if session else None, rp,
                    f"{FROM_HEADER} Return-Path")
    rcpt = session.rcpt if session else ()
    return Envelope(ip=ip_claim, helo=helo_claim, mail_from=mf_claim, rcpt=rcpt), notes


# ---- From and the rest ----------------------------------------------------------------------


def domain_of(address: str) -> str:
    """The domain of an address as DNS knows it: A-labels, lower case, no trailing dot ("" if none or
    not a valid name)."""
    if "@" not in address:
        return ""
    domain = address.rsplit("@", 1)[1].strip().strip("[]").rstrip(".").lower()
    if not domain:
        return ""
    if domain.isascii():
        return domain
    try:
        import idna

        return str(idna.encode(domain, uts46=True).decode("ascii"))
    except (idna.IDNAError, UnicodeError):
        return ""


def from_addresses(parsed: email.message.Message) -> tuple[str, ...]:
    """The addresses of every From field, in order, as written."""
    return tuple(addr for _, addr in email.utils.getaddresses(values(parsed, "From")) if addr)


def decoded(value: object) -> str:
    """A header value for a person: RFC 2047 encoded words decoded, one line."""
    text = text_of(str(value))
    try:
        return unfold(str(email.header.make_header(email.header.decode_header(text))))
    except (ValueError, LookupError, UnicodeError, email.errors.HeaderParseError):
        return unfold(text)


def info_of(message: Message, parsed: email.message.Message, *, ip: str | None = None, helo: str | None = None,
            mail_from: str | None = None, session: Session | None = None) -> MessageInfo:
    """The `message` member of the report: what the message says about itself, and its envelope."""
    hops = hops_of(parsed)
    envelope, notes = envelope_of(parsed, hops, ip=ip, helo=helo, mail_from=mail_from, session=session)
    froms = from_addresses(parsed)
    if len(froms) > 1:
        notes.append(f"{len(froms)} From addresses: the domain of the first, {domain_of(froms[0]) or '(none)'}, "
                     "is judged")
    first = lambda name: next(iter(values(parsed, name)), "")[:MAX_FIELD]   # noqa: E731
    return MessageInfo(label=message.label, size=len(message.raw), from_=froms,
                       from_domain=domain_of(froms[0]) if froms else "",
                       subject=decoded(first("Subject"))[:MAX_FIELD], message_id=first("Message-ID"),
                       date=first("Date"), envelope=envelope, session=session, hops=hops,
                       notes=(*message.notes, *notes))


def now_utc() -> datetime:
    return datetime.now(UTC)
