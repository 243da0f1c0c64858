"""SPF record syntax (RFC 7208 4.5, 4.6, 5, 6, 7.1): a pure parser.

`parse_record(text)` never raises: it returns an `SpfRecord` or a
`ParseError` (an exception object, returned rather than raised, so callers
can treat a bad record as data).  Syntax errors anywhere in a record make the
whole record a permerror (RFC 7208 4.6), so the parser checks everything
before evaluation starts: terms, mechanism arguments, CIDR lengths, domain-spec
endings and macro syntax.
"""

from __future__ import annotations

import ipaddress
import re
from dataclasses import dataclass

MECHANISMS = ("all", "include", "a", "mx", "ptr", "ip4", "ip6", "exists")
# Terms that cost a DNS query and count against the limit of 10 (RFC 7208 4.6.4).
DNS_TERMS = ("include", "a", "mx", "ptr", "exists", "redirect")
QUALIFIERS = {"+": "pass", "-": "fail", "~": "softfail", "?": "neutral"}
MACRO_LETTERS = "slodiphcrtv"
EXP_ONLY_LETTERS = "crt"

_NAME = re.compile(r"[A-Za-z][A-Za-z0-9\-_.]*")
_MACRO = re.compile(r"%\{([A-Za-z])([0-9]*)([rR]?)([.\-+,/_=]*)\}")
_TOPLABEL = r"(?:[A-Za-z0-9]*[A-Za-z][A-Za-z0-9]*|[A-Za-z0-9]+-[A-Za-z0-9\-]*[A-Za-z0-9])"
_DOMAIN_END = re.compile(r"\." + _TOPLABEL + r"\.?$")
_ENDS_WITH_MACRO = re.compile(r"%\{[A-Za-z][0-9]*[rR]?[.\-+,/_=]*\}$")
_CIDR4 = r"(0|[1-9][0-9]?)"
_CIDR6 = r"(0|[1-9][0-9]{0,2})"
_DUAL_CIDR = re.compile(r"^(.*?)(?:/" + _CIDR4 + r")?(?://" + _CIDR6 + r")?$", re.S)
_QNUM = r"(?:25[0-5]|2[0-4][0-9]|1[0-9][0-9]|[1-9][0-9]|[0-9])"
_IP4 = re.compile(rf"^{_QNUM}\.{_QNUM}\.{_QNUM}\.{_QNUM}$")


class ParseError(Exception):
    """A syntax error in an SPF record or macro string (returned, not raised, by parse_record)."""

    def __init__(self, message: str, term: str = "") -> None:
        super().__init__(message)
        self.message = message
        self.term = term

    def __str__(self) -> str:
        return f"{self.message} (in term {self.term!r})" if self.term else self.message

    def __eq__(self, other: object) -> bool:
        return isinstance(other, ParseError) and (self.message, self.term) == (other.message, other.term)

    def __hash__(self) -> int:
        return hash((self.message, self.term))


@dataclass(frozen=True)
class MacroExpand:
    """`%{letter digits r delimiters}`."""

    letter: str          # lower case
    upper: bool          # upper-case letter: URL-escape the result
    digits: int | None
    reverse: bool
    delimiters: str      # "" means "."
    text: str


@dataclass(frozen=True)
class MacroString:
    text: str
    parts: tuple[str | MacroExpand, ...]

    @property
    def has_macros(self) -> bool:
        return any(isinstance(p, MacroExpand) for p in self.parts)

    @property
    def literal(self) -> str:
        """The value when there are no macros ("" otherwise)."""
        return "" if self.has_macros else "".join(p for p in self.parts if isinstance(p, str))

    @property
    def letters(self) -> str:
        return "".join(p.letter for p in self.parts if isinstance(p, MacroExpand))


def parse_macro_string(text: str, *, exp: bool = False, allow_space: bool = False) -> MacroString:
    """Parse a macro-string (RFC 7208 7.1); raises ParseError.

    `exp`: the exp-only letters c, r and t are allowed (explanation text).
    `allow_space`: SP is a literal (explain-string).
    """
    parts: list[str | MacroExpand] = []
    lit: list[str] = []
    i, n = 0, len(text)
    while i < n:
        ch = text[i]
        if ch == "%":
            nxt = text[i + 1:i + 2]
            if nxt == "%":
                lit.append("%")
                i += 2
                continue
            if nxt == "_":
                lit.append(" ")
                i += 2
                continue
            if nxt == "-":
                lit.append("%20")
                i += 2
                continue
            m = _MACRO.match(text, i)
            if not m:
                raise ParseError("invalid macro (a % must start %{x}, %%, %_ or %-)", text)
            letter = m.group(1).lower()
            if letter not in MACRO_LETTERS:
                raise ParseError(f"unknown macro letter {m.group(1)!r}", text)
            if letter in EXP_ONLY_LETTERS and not exp:
                raise ParseError(f"macro letter {m.group(1)!r} is allowed only in exp= explanations", text)
            digits = None
            if m.group(2):
                digits = int(m.group(2))
                if digits == 0:
                    raise ParseError("macro transformer digit 0 (must be nonzero)", text)
            if lit:
                parts.append("".join(lit))
                lit = []
            parts.append(MacroExpand(letter, m.group(1).isupper(), digits, bool(m.group(3)), m.group(4), m.group(0)))
            i = m.end()
            continue
        o = ord(ch)
        if not (0x21 <= o <= 0x7E or (allow_space and ch == " ")):
            raise ParseError(f"character {ch!r} not allowed", text)
        lit.append(ch)
        i += 1
    if lit:
        parts.append("".join(lit))
    return MacroString(text, tuple(parts))


def parse_domain_spec(text: str) -> MacroString:
    """A domain-spec: a macro-string ending in `.toplabel` or in a macro (RFC 7208 7.1)."""
    if not text:
        raise ParseError("empty domain-spec", text)
    ms = parse_macro_string(text)
    if not (_ENDS_WITH_MACRO.search(text) or _DOMAIN_END.search(text)):
        raise ParseError(f"{text!r} is not a valid domain-spec (must end in a dot and a top label "
                         "that is not all digits, or in a macro)", text)
    return ms


@dataclass(frozen=True)
class Mechanism:
    qualifier: str                    # "+", "-", "~", "?"
    name: str                         # one of MECHANISMS, lower case
    domain_spec: MacroString | None   # include/exists (required), a/mx/ptr (optional)
    network: str = ""                 # ip4/ip6: the network as written, without prefix
    cidr4: int | None = None
    cidr6: int | None = None
    text: str = ""                    # the term as written

    @property
    def result(self) -> str:
        return QUALIFIERS[self.qualifier]

    @property
    def counts(self) -> bool:
        return self.name in DNS_TERMS


@dataclass(frozen=True)
class Modifier:
    name: str                         # lower case
    value: MacroString
    text: str = ""

    @property
    def counts(self) -> bool:
        return self.name == "redirect"


Term = Mechanism | Modifier


@dataclass(frozen=True)
class SpfRecord:
    text: str                         # the record as published
    terms: tuple[Term, ...]

    @property
    def mechanisms(self) -> tuple[Mechanism, ...]:
        return tuple(t for t in self.terms if isinstance(t, Mechanism))

    def modifier(self, name: str) -> Modifier | None:
        for t in self.terms:
            if isinstance(t, Modifier) and t.name == name:
                return t
        return None

    @property
    def redirect(self) -> Modifier | None:
        return self.modifier("redirect")

    @property
    def exp(self) -> Modifier | None:
        return self.modifier("exp")

    @property
    def has_all(self) -> bool:
        return any(m.name == "all" for m in self.mechanisms)

    def to_text(self) -> str:
        """Canonical text: `v=spf1` and the terms, single-spaced."""
        return " ".join(["v=spf1", *(t.text for t in self.terms)])


def is_spf_record(text: str) -> bool:
    """Does this TXT string select as an SPF record (RFC 7208 4.5)?"""
    return text[:6].lower() == "v=spf1" and (len(text) == 6 or text[6] == " ")


def parse_record(text: str) -> SpfRecord | ParseError:
    """Parse a whole record; returns ParseError for any syntax error, never raises."""
    try:
        if not isinstance(text, str):
            return ParseError("record is not text")
        if not is_spf_record(text):
            return ParseError("record does not start with 'v=spf1'")
        terms: list[Term] = []
        seen: set[str] = set()
        for raw in text[6:].split(" "):
            if not raw:
                continue
            term = parse_term(raw)
            if isinstance(term, Modifier) and term.name in ("redirect", "exp"):
                if term.name in seen:
                    return ParseError(f"more than one {term.name}= modifier", raw)
                seen.add(term.name)
            terms.append(term)
        return SpfRecord(text, tuple(terms))
    except ParseError as e:
        return e
    except Exception as e:  # defensive: the parser must never crash on remote data
        return ParseError(f"unparseable record ({type(e).__name__})")


def parse_term(raw: str) -> Term:
    """One term; raises ParseError."""
    for ch in raw:
        if not 0x21 <= ord(ch) <= 0x7E:
            raise ParseError(f"character {ch!r} not allowed", raw)
    m = _NAME.match(raw)
    if m and raw[m.end():m.end() + 1] == "=":
        name = m.group(0).lower()
        value = raw[m.end() + 1:]
        if name in ("redirect", "exp"):
            return Modifier(name, parse_domain_spec(value), raw)
        return Modifier(name, parse_macro_string(value), raw)
    q = "+"
    body = raw
    if body[:1] in QUALIFIERS:
        q, body = body[0], body[1:]
    m = _NAME.match(body)
    if not m:
        raise ParseError("not a mechanism or modifier", raw)
    name = m.group(0).lower()
    rest = body[m.end():]
    if name not in MECHANISMS:
        raise ParseError(f"unknown mechanism {m.group(0)!r}", raw)
    if name == "all":
        if rest:
            raise ParseError("'all' takes no argument", raw)
        return Mechanism(q, name, None, text=raw)
    if name in ("include", "exists"):
        if not rest.startswith(":"):
            raise ParseError(f"'{name}' needs ':domain'", raw)
        return Mechanism(q, name, parse_domain_spec(rest[1:]), text=raw)
    if name == "ptr":
        if not rest:
            return Mechanism(q, name, None, text=raw)
        if not rest.startswith(":"):
            raise ParseError("bad 'ptr' argument", raw)
        return Mechanism(q, name, parse_domain_spec(rest[1:]), text=raw)
    if name in ("a", "mx"):
        dm = _DUAL_CIDR.match(rest)
        assert dm is not None
        spec, c4, c6 = dm.group(1), dm.group(2), dm.group(3)
        if c4 is not None and int(c4) > 32:
            raise ParseError("IPv4 prefix length over 32", raw)
        if c6 is not None and int(c6) > 128:
            raise ParseError("IPv6 prefix length over 128", raw)
        if spec and not spec.startswith(":"):
            raise ParseError(f"bad '{name}' argument", raw)
        ds = parse_domain_spec(spec[1:]) if spec else None
        return Mechanism(q, name, ds, cidr4=None if c4 is None else int(c4),
                         cidr6=None if c6 is None else int(c6), text=raw)
    # ip4 / ip6
    if not rest.startswith(":"):
        raise ParseError(f"'{name}' needs ':address'", raw)
    arg = rest[1:]
    net, _, plen = arg.partition("/")
    if name == "ip4":
        if not _IP4.match(net):
            raise ParseError(f"{net!r} is not an IPv4 address", raw)
        if plen and not re.fullmatch(_CIDR4, plen) or plen and int(plen) > 32:
            raise ParseError("bad IPv4 prefix length", raw)
        if "/" in arg and not plen:
            raise ParseError("empty prefix length", raw)
        return Mechanism(q, name, None, net, cidr4=int(plen) if plen else None, text=raw)
    try:
        addr = ipaddress.IPv6Address(net)
    except ValueError:
        raise ParseError(f"{net!r} is not an IPv6 address", raw) from None
    del addr
    if plen and not re.fullmatch(_CIDR6, plen) or plen and int(plen) > 128:
        raise ParseError("bad IPv6 prefix length", raw)
    if "/" in arg and not plen:
        raise ParseError("empty prefix length", raw)
    return Mechanism(q, name, None, net, cidr6=int(plen) if plen else None, text=raw)
