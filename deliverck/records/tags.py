"""The tag=value list syntax shared by DKIM and DMARC (RFC 6376 section 3.2).

    tag-list  =  tag-spec *( ";" tag-spec ) [ ";" ]
    tag-spec  =  [FWS] tag-name [FWS] "=" [FWS] tag-value [FWS]
    tag-name  =  ALPHA *ALNUMPUNC             ; ALNUMPUNC = ALPHA / DIGIT / "_"
    tag-value =  [ tval *( 1*(WSP / FWS) tval ) ]
    tval      =  1*VALCHAR                    ; VALCHAR = %x21-3A / %x3C-7E

Tag names are case-sensitive in DKIM; DMARC's ABNF writes them as quoted
strings, which are case-insensitive, so the DMARC parser lower-cases them.
A name that occurs twice makes the whole list invalid (RFC 6376 3.2).
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field

_NAME = re.compile(r"[A-Za-z][A-Za-z0-9_]*\Z")
_WSP = " \t\r\n"


class TagListError(ValueError):
    """A record does not follow the tag-list syntax; `offset` is 0-based in the record text."""

    def __init__(self, message: str, offset: int | None = None) -> None:
        self.message = message
        self.offset = offset
        super().__init__(message if offset is None else f"{message} (at character {offset + 1})")


@dataclass(frozen=True)
class TagList:
    tags: dict[str, str]                 # name -> value, whitespace around the value removed
    order: tuple[str, ...]               # names in record order
    raw_names: dict[str, str] = field(default_factory=dict)   # name -> name as written
    notes: tuple[str, ...] = ()          # tolerated deviations (empty tag-specs)


def parse(text: str, *, fold_case: bool = False, error: type[TagListError] = TagListError) -> TagList:
    """Split `text` into tags; raise `error` with the offending position on bad syntax."""
    if not isinstance(text, str):
        raise error("the record is not text")
    for i, ch in enumerate(text):
        o = ord(ch)
        if o > 0x7E or (o < 0x21 and ch not in _WSP):
            raise error(f"character {ch!r} is not allowed in a tag list", i)
    tags: dict[str, str] = {}
    raw: dict[str, str] = {}
    order: list[str] = []
    notes: list[str] = []
    pos = 0
    parts = text.split(";")
    for n, part in enumerate(parts):
        start = pos
        pos += len(part) + 1
        if not part.strip(_WSP):
            if n == len(parts) - 1:
                continue                     # the optional trailing ";" (or an empty record)
            notes.append(f"empty tag-spec (';;') at character {start + 1}")
            continue
        if "=" not in part:
            lead = len(part) - len(part.lstrip(_WSP))
            raise error(f"{part.strip(_WSP)[:40]!r} is not tag=value", start + lead)
        name_part, value_part = part.split("=", 1)
        name = name_part.strip(_WSP)
        lead = len(name_part) - len(name_part.lstrip(_WSP))
        if not name:
            raise error("a tag has no name before '='", start + lead)
        if not _NAME.match(name):
            raise error(f"{name[:40]!r} is not a valid tag name (a letter, then letters, digits or '_')",
                        start + lead)
        value = value_part.strip(_WSP)
        key = name.lower() if fold_case else name
        if key in tags:
            raise error(f"tag {name!r} occurs more than once (RFC 6376 3.2 makes the whole record invalid)",
                        start + lead)
        tags[key] = value
        raw[key] = name
        order.append(key)
    return TagList(tags, tuple(order), raw, tuple(notes))


def split_list(value: str, sep: str = ":") -> list[str]:
    """A colon (or comma) separated list, whitespace around items removed, empty items dropped."""
    return [x.strip(_WSP) for x in value.split(sep) if x.strip(_WSP)]


def strip_ws(value: str) -> str:
    return "".join(value.split())
