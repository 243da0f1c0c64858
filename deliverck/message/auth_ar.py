"""Authentication-Results fields (RFC 8601): what receivers on the way recorded, parsed with authres.

Whose field is whose.  A receiver prepends its trace fields, so the final receiver's
Authentication-Results sits above those of earlier hops; and RFC 8601 5 makes a receiver delete
fields that arrive carrying its own authserv-id.  deliverck cannot know the final receiver's
authserv-id for sure (it is a name the receiver chooses, often not a host name), so it decides:

1. the receiver's field is the topmost Authentication-Results field, provided a Received field
   (a hop) lies below it: a field below every Received field was in the message before the first
   relay wrote its trace, so the author wrote it and no receiver did;
2. that field's authserv-id is taken as the receiver's; when the topmost Received field's `by`
   host is the same name or in the same organizational domain, that confirms it (said in `why`);
3. another field with the receiver's authserv-id (or in its organizational domain) lower in the
   header, below a Received field written outside that organization, came from outside: the
   receiver should have deleted it (RFC 8601 5), so it is reported as forged, as is any field
   below every Received field.  Fields of other authserv-ids are earlier hops' (forwarders,
   mailing lists) and are listed, not judged.

Real fields are often not quite RFC 8601: Microsoft 365 writes no authserv-id, Yahoo ends with
";".  A field authres refuses is retried with those two repairs; if it still fails it is kept as
unparseable (a note, never a crash).
"""

from __future__ import annotations

import re
from dataclasses import dataclass

import authres

from deliverck.target import org_domain

MAX_FIELDS = 20         # Authentication-Results fields read per message
MAX_FIELD_CHARS = 8192  # longer values are cut before parsing
_BY = re.compile(r"\bby\s+([^\s;()]+)", re.I)


@dataclass(frozen=True)
class ArMethod:
    method: str                            # "spf", "dkim", "dmarc", "arc", "compauth", ...
    result: str                            # lower-case result word
    reason: str = ""
    props: tuple[tuple[str, str], ...] = ()  # ("header.d", "example.com"), ("smtp.mailfrom", ...)

    def prop(self, *names: str) -> str:
        for n in names:
            for k, v in self.props:
                if k == n:
                    return v
        return ""


@dataclass(frozen=True)
class ArField:
    index: int                  # 0 = the topmost Authentication-Results field
    position: int               # its place among all header fields (0 = first)
    raw: str                    # the value, unfolded (exact text for JSON)
    authserv_id: str = ""       # "" when the field has none (Microsoft 365) or cannot be parsed
    methods: tuple[ArMethod, ...] = ()
    repaired: str = ""          # what was repaired before authres accepted it
    error: str = ""             # why it could not be parsed ("" when parsed)
    hops_above: int = 0         # Received fields above it
    hops_below: int = 0         # Received fields below it

    def results(self, method: str) -> tuple[ArMethod, ...]:
        return tuple(m for m in self.methods if m.method == method)


@dataclass(frozen=True)
class AuthResFields:
    fields: tuple[ArField, ...]
    receiver: ArField | None            # the field taken as the final receiver's
    why: str                            # how it was decided (or why there is none)
    forged: tuple[tuple[ArField, str], ...] = ()
    count: int = 0                      # fields in the message (only MAX_FIELDS are read)


def _parse_value(value: str) -> tuple[object | None, str, str]:
    """(authres header, repair note, error)."""
    v = value[:MAX_FIELD_CHARS]
    tries = [(v, "")]
    trimmed = v.rstrip().rstrip(";").rstrip()
    if trimmed != v.rstrip():
        tries.append((trimmed, "a trailing ';' removed"))
    if "=" in trimmed.split(";", 1)[0]:
        tries.append(("; " + trimmed, "no authserv-id (Microsoft 365 writes none)"))
        tries.append(("unknown; " + trimmed, "no authserv-id (Microsoft 365 writes none)"))
    error = ""
    for text, note in tries:
        try:
            return authres.AuthenticationResultsHeader.parse_value(text), note, ""
        except Exception as e:    # authres.SyntaxError and anything its parser trips on
            error = error or " ".join(str(e).split())[:200]
    return None, "", error


def _methods(h: object) -> tuple[ArMethod, ...]:
    out = []
    for r in getattr(h, "results", ()) or ():
        props = tuple((f"{p.type}.{p.name}".lower(), str(p.value or "")) for p in (r.properties or ()))
        out.append(ArMethod(str(r.method or "").lower(), str(r.result or "").lower(), str(r.reason or ""), props))
    return tuple(out)


def _org(name: str) -> str:
    name = name.lower().strip().rstrip(".")
    return org_domain(name) if "." in name else name


def read(items: list[tuple[str, str]]) -> AuthResFields:
    """`items`: the header fields in order (name, value), as email.message.Message.items() gives them."""
    received = [i for i, (k, _v) in enumerate(items) if k.lower() == "received"]
    ar_items = [(i, v) for i, (k, v) in enumerate(items) if k.lower() == "authentication-results"]
    fields = []
    for n, (pos, value) in enumerate(ar_items[:MAX_FIELDS]):
        raw = " ".join(str(value).split())
        h, note, error = _parse_value(raw)
        above = sum(1 for r in received if r < pos)
        aid = "" if h is None or note.startswith("no authserv-id") else str(getattr(h, "authserv_id", "") or "")
        fields.append(ArField(n, pos, raw, aid.lower(), _methods(h) if h is not None else (), note, error,
                              above, len(received) - above))
    if not fields:
        return AuthResFields((), None, "the message has no Authentication-Results field", count=len(ar_items))
    top = fields[0]
    forged: list[tuple[ArField, str]] = [(f, "it lies below every Received field: it was in the message before "
                                          "the first relay, so the sender wrote it") for f in fields
                                         if received and f.hops_below == 0]
    if not received:
        return AuthResFields(tuple(fields), None, "no Received field: deliverck cannot tell which receiver wrote "
                             "which Authentication-Results field", (), len(ar_items))
    if top.hops_below == 0:
        return AuthResFields(tuple(fields), None, "the topmost Authentication-Results field lies below every "
                             "Received field, so no receiver wrote it", tuple(forged), len(ar_items))
    by = _BY.search(str(items[received[0]][1]) or "")
    by_host = by.group(1).lower().rstrip(".") if by else ""
    why = "the topmost Authentication-Results field (a receiver prepends its own above earlier ones)"
    if top.authserv_id and by_host and (by_host == top.authserv_id or _org(by_host) == _org(top.authserv_id)):
        why += f"; the topmost Received field (by {by_host}) is in the same organization"
    elif not top.authserv_id:
        why += "; it names no authserv-id"
    else:
        why += f"; its authserv-id {top.authserv_id} is not confirmed by the topmost Received field" + \
            (f" (by {by_host})" if by_host else "")
    forged += _outsiders(items, received, fields, top)
    return AuthResFields(tuple(fields), top, why, tuple(forged), len(ar_items))


def _outsiders(items: list[tuple[str, str]], received: list[int], fields: list[ArField],
               top: ArField) -> list[tuple[ArField, str]]:
    """Fields claiming the receiver's authserv-id that came from outside its organization."""
    if not top.authserv_id:
        return []
    mine = _org(top.authserv_id)
    out = []
    for f in fields[1:]:
        if f.hops_below == 0 or not f.authserv_id or _org(f.authserv_id) != mine:
            continue
        outside = [r for r in received if r < f.position
                   and (m := _BY.search(str(items[r][1]))) and _org(m.group(1)) != mine]
        if outside:
            out.append((f, f"it claims the receiver's authserv-id {f.authserv_id} but lies below a Received "
                        f"field written outside {mine}: the receiver should have deleted it (RFC 8601 5)"))
    return out
