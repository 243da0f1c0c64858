"""MTA-STS (RFC 8461) and TLS-RPT (RFC 8460): pure parsers, no network.

Every parser either returns a frozen result or raises MtaStsError (a
ValueError) with a one-line reason; nothing else escapes, whatever the input
(a property test holds them to it).

TLS-RPT stays in this module: its record uses the same field grammar and the
same error type, and checks/mta_sts.py reads both; a tlsrpt.py of its own would
have to import this module's private helpers.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

MAX_AGE_LIMIT = 31557600           # RFC 8461 3.2: max_age up to 31557600 (about one year)
MODES = ("enforce", "testing", "none")
TLSRPT_SCHEMES = ("mailto", "https")

_ALNUM = re.compile(r"^[A-Za-z0-9]{1,32}$")
_FIELD_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,31}$")
_FIELD_VALUE = re.compile(r"^[\x21-\x3a\x3c\x3e-\x7e]+$")    # printable, no ';' and no '='
_POLICY_KEY = re.compile(r"^[A-Za-z0-9_.-]{1,32}$")
_LABEL = re.compile(r"^(?!-)[A-Za-z0-9-]{1,63}(?<!-)$")
_DIGITS = re.compile(r"^[0-9]{1,10}$")
_WSP = " \t"


class MtaStsError(ValueError):
    """The input is not a valid record or policy; str() says why, in one line."""


# --- helpers -------------------------------------------------------------------

def _text(value: str | bytes, what: str) -> str:
    if isinstance(value, bytes):
        try:
            value = value.decode("ascii")
        except UnicodeDecodeError:
            raise MtaStsError(f"{what} is not ASCII") from None
    if not isinstance(value, str):
        raise MtaStsError(f"{what} is not text")
    if not value.isascii():
        raise MtaStsError(f"{what} is not ASCII")
    return value


def _fields(text: str, what: str) -> list[tuple[str, str]]:
    """`name=value; name=value[;]` with optional whitespace around the separators."""
    parts = text.split(";")
    if parts and parts[-1].strip(_WSP) == "":
        parts = parts[:-1]
    out = []
    for part in parts:
        part = part.strip(_WSP)
        if "=" not in part:
            raise MtaStsError(f"{what}: field {part[:40]!r} is not name=value")
        name, value = part.split("=", 1)
        out.append((name, value))
    if not out:
        raise MtaStsError(f"{what} is empty")
    return out


def is_hostname(name: str) -> bool:
    name = name[:-1] if name.endswith(".") else name
    if not name or len(name) > 253:
        return False
    return all(_LABEL.match(label) for label in name.split("."))


# --- _mta-sts TXT --------------------------------------------------------------

@dataclass(frozen=True)
class StsRecord:
    id: str
    extensions: tuple[tuple[str, str], ...] = ()


def looks_like_sts_record(text: str) -> bool:
    """RFC 8461 3.1: TXT records not starting with v=STSv1 are ignored (not errors)."""
    return text.startswith("v=STSv1")


def parse_sts_record(value: str | bytes) -> StsRecord:
    text = _text(value, "the _mta-sts record")
    fields = _fields(text, "the _mta-sts record")
    name, version = fields[0]
    if name != "v" or version != "STSv1":
        raise MtaStsError("the _mta-sts record must start with v=STSv1")
    ident = None
    extensions = []
    for name, value in fields[1:]:
        if name == "v":
            raise MtaStsError("v= appears more than once")
        if name == "id":
            if ident is not None:
                raise MtaStsError("id= appears more than once")
            if not _ALNUM.match(value):
                raise MtaStsError(f"id={value[:40]!r} must be 1 to 32 letters and digits")
            ident = value
            continue
        if not _FIELD_NAME.match(name):
            raise MtaStsError(f"field name {name[:40]!r} is not valid (1-32 letters, digits, _ - .)")
        if not _FIELD_VALUE.match(value):
            raise MtaStsError(f"the value of {name} is empty or has characters not allowed")
        extensions.append((name, value))
    if ident is None:
        raise MtaStsError("the _mta-sts record has no id= field")
    return StsRecord(ident, tuple(extensions))


# --- the policy file -------------------------------------------------------------

@dataclass(frozen=True)
class Policy:
    version: str
    mode: str
    max_age: int
    mx: tuple[str, ...]
    notes: tuple[str, ...] = ()           # tolerated oddities: repeated keys, unknown keys

    def matches(self, host: str) -> bool:
        return any(mx_matches(p, host) for p in self.mx)


def parse_policy(body: str | bytes) -> Policy:
    """RFC 8461 3.2: `key: value` lines separated by CRLF or LF; unknown keys ignored."""
    text = _text(body, "the policy")
    fields: dict[str, list[str]] = {}
    notes: list[str] = []
    lines = text.split("\n")
    for number, line in enumerate(lines, 1):
        if line.endswith("\r"):
            line = line[:-1]
        if line == "":
            continue
        if "\r" in line:
            raise MtaStsError(f"line {number}: a bare CR (lines end with CRLF or LF)")
        if ":" not in line:
            raise MtaStsError(f"line {number}: {line[:40]!r} is not key: value")
        key, value = line.split(":", 1)
        value = value.strip(_WSP)
        if not _POLICY_KEY.match(key):
            raise MtaStsError(f"line {number}: key {key[:40]!r} is not valid")
        if any(ord(c) < 0x20 for c in value if c != "\t") or "\x7f" in value:
            raise MtaStsError(f"line {number}: control characters in the value")
        fields.setdefault(key, []).append(value)
    for key in fields:
        if key not in ("version", "mode", "max_age", "mx"):
            notes.append(f"unknown key {key!r} ignored")
    for key in ("version", "mode", "max_age"):
        if len(fields.get(key, [])) > 1:
            notes.append(f"{key} appears {len(fields[key])} times; the first is used")

    def first(key: str) -> str:
        values = fields.get(key)
        if not values:
            raise MtaStsError(f"the policy has no {key}: line")
        return values[0]

    version = first("version")
    if version != "STSv1":
        raise MtaStsError(f"version: {version[:40]!r} (must be STSv1)")
    mode = first("mode")
    if mode not in MODES:
        raise MtaStsError(f"mode: {mode[:40]!r} (must be enforce, testing or none)")
    raw_age = first("max_age")
    if not _DIGITS.match(raw_age):
        raise MtaStsError(f"max_age: {raw_age[:40]!r} is not a number of seconds (1 to 10 digits)")
    max_age = int(raw_age)
    if max_age > MAX_AGE_LIMIT:
        raise MtaStsError(f"max_age: {max_age} is over the maximum {MAX_AGE_LIMIT}")
    mx = tuple(v.lower() for v in fields.get("mx", []))
    for pattern in mx:
        base = pattern[2:] if pattern.startswith("*.") else pattern
        if not is_hostname(base) or "*" in base:
            raise MtaStsError(f"mx: {pattern[:60]!r} is not a host name or *.domain pattern")
    if mode != "none" and not mx:
        raise MtaStsError(f"mode {mode} needs at least one mx: line")
    return Policy(version, mode, max_age, mx, tuple(notes))


def mx_matches(pattern: str, host: str) -> bool:
    """RFC 8461 4.1: exact match, or `*.` matching exactly one leftmost label."""
    pattern = pattern.lower().rstrip(".")
    host = host.lower().rstrip(".")
    if not pattern or not host:
        return False
    if pattern.startswith("*."):
        suffix = pattern[1:]                     # ".example.com"
        if not host.endswith(suffix):
            return False
        label = host[: -len(suffix)]
        return bool(label) and "." not in label
    return pattern == host


# --- _smtp._tls TXT ----------------------------------------------------------------

@dataclass(frozen=True)
class TlsRptRecord:
    rua: tuple[str, ...]
    extensions: tuple[tuple[str, str], ...] = ()


def looks_like_tlsrpt_record(text: str) -> bool:
    return text.startswith("v=TLSRPTv1")


def parse_tlsrpt_record(value: str | bytes) -> TlsRptRecord:
    """RFC 8460 3: v=TLSRPTv1; rua=<uri>[,<uri>]; only mailto: and https: URIs."""
    text = _text(value, "the _smtp._tls record")
    fields = _fields(text, "the _smtp._tls record")
    name, version = fields[0]
    if name != "v" or version != "TLSRPTv1":
        raise MtaStsError("the _smtp._tls record must start with v=TLSRPTv1")
    rua = None
    extensions = []
    for name, value in fields[1:]:
        if name == "v":
            raise MtaStsError("v= appears more than once")
        if name == "rua":
            if rua is not None:
                raise MtaStsError("rua= appears more than once")
            rua = tuple(u.strip(_WSP) for u in value.split(","))
            for uri in rua:
                _check_rua(uri)
            continue
        if not _FIELD_NAME.match(name):
            raise MtaStsError(f"field name {name[:40]!r} is not valid")
        if not _FIELD_VALUE.match(value):
            raise MtaStsError(f"the value of {name[:40]} is empty or has characters not allowed")
        extensions.append((name, value))
    if not rua:
        raise MtaStsError("the _smtp._tls record has no rua= field")
    return TlsRptRecord(rua, tuple(extensions))


_DMARC_SIZE = re.compile(r"![0-9]+[kmgt]?$", re.IGNORECASE)


def _check_rua(uri: str) -> None:
    if not uri:
        raise MtaStsError("rua has an empty URI (a stray comma?)")
    if size := _DMARC_SIZE.search(uri):
        raise MtaStsError(f"rua {uri[:60]!r} ends in a size limit ({size.group(0)}), which is "
                          "DMARC's syntax: TLS-RPT takes plain mailto: or https: URIs")
    scheme, sep, rest = uri.partition(":")
    if not sep or not rest:
        raise MtaStsError(f"rua {uri[:60]!r} is not a URI")
    scheme = scheme.lower()
    if scheme not in TLSRPT_SCHEMES:
        raise MtaStsError(f"rua {uri[:60]!r}: scheme {scheme[:20]!r} is not mailto: or https:")
    if any(c in uri for c in " \t\"<>\\^`{|}") or any(ord(c) < 0x21 or ord(c) > 0x7e for c in uri):
        raise MtaStsError(f"rua {uri[:60]!r} has characters not allowed in a URI")
    if scheme == "mailto":
        local, at, domain = rest.partition("@")
        if not at or not local or not is_hostname(domain.split("?")[0]):
            raise MtaStsError(f"rua {uri[:60]!r} is not mailto:<local>@<domain>")
    else:
        if not rest.startswith("//"):
            raise MtaStsError(f"rua {uri[:60]!r} is not https://<host>/...")
        host = rest[2:].split("/", 1)[0].split(":", 1)[0]
        if not is_hostname(host):
            raise MtaStsError(f"rua {uri[:60]!r}: {host[:40]!r} is not a host name")
