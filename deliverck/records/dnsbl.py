"""DNS block lists as data: dnsbl-lists.toml, its loader and validator, query names
and the interpretation of answers (RFC 5782).

Nothing here touches the network: checks/dnsbl.py asks the context for the
lookups and uses these functions to build the names and read the answers.  The
one outside input besides the shipped data is $DELIVERCK_DNSBL_LISTS, the
extra lists files (a user's private lists, the lab's fixtures), read with a
size bound when the lists are first loaded.
"""

from __future__ import annotations

import functools
import hashlib
import ipaddress
import os
import re
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from importlib import resources
from typing import Any

from deliverck import datacache
from deliverck.inputfile import ReadError, read_limited

KINDS = ("ip", "domain")
CLASSES = ("spam", "policy", "minor")
# Worst first: the class that decides the finding when several codes answer.
CLASS_RANK = {"spam": 0, "policy": 1, "minor": 2}

_ID_RE = re.compile(r"^[a-z0-9][a-z0-9-]*$")
_LABEL_RE = re.compile(r"^(?!-)[a-z0-9_-]{1,63}(?<!-)$")
_LIST_FIELDS = {"id", "name", "zone", "kind", "ipv6", "default", "class", "delist", "source", "note",
                "test_listed", "test_unlisted", "codes", "dqs_suffix", "aliases", "retired", "lab"}
_REQUIRED = {"id", "name", "zone", "kind", "class", "source", "codes"}
_CODE_FIELDS = {"code", "meaning", "class", "error"}

# Answers in 127.255.255.0/24 are what Spamhaus (and lists modelled on it) use
# for "your query was refused"; for a zone we know nothing about, such an
# answer is treated as an error rather than a listing.
_GENERIC_ERROR_NET = ipaddress.ip_network("127.255.255.0/24")
_LOOPBACK_NET = ipaddress.ip_network("127.0.0.0/8")


@dataclass(frozen=True)
class Code:
    code: str
    meaning: str
    klass: str = ""          # "" = the list's class
    error: bool = False


@dataclass(frozen=True)
class DnsList:
    id: str
    name: str
    zone: str
    kind: str
    klass: str
    source: str
    codes: tuple[Code, ...]
    ipv6: bool = False
    default: bool = False
    delist: str = ""
    note: str = ""
    test_listed: str = ""
    test_unlisted: str = ""
    dqs_suffix: str = ""
    aliases: tuple[str, ...] = ()
    retired: str = ""
    lab: bool = False
    custom: bool = False       # given as a zone with --dnsbl, not from dnsbl-lists.toml
    display_zone: str = ""     # the zone as shown in reports (a DQS key masked)

    @property
    def shown_zone(self) -> str:
        return self.display_zone or self.zone

    @property
    def positive(self) -> str:
        """RFC 5782 section 5: the test entry that must be listed."""
        return self.test_listed or ("127.0.0.2" if self.kind == "ip" else "test")

    @property
    def negative(self) -> str:
        """RFC 5782 section 5: the test entry that must not be listed."""
        return self.test_unlisted or ("127.0.0.1" if self.kind == "ip" else "invalid")

    def supports(self, ip: str) -> bool:
        return ipaddress.ip_address(ip).version == 4 or self.ipv6

    def query_name(self, subject: str, *, shown: bool = False) -> str:
        zone = self.shown_zone if shown else self.zone
        if self.kind == "ip":
            return ip_query_name(subject, zone)
        return domain_query_name(subject, zone)

    def code(self, answer: str) -> Code | None:
        for c in self.codes:
            if c.code == answer:
                return c
        return None


@dataclass(frozen=True)
class Interpretation:
    """What the A records of one DNSBL answer mean."""

    listed: tuple[Code, ...] = ()       # codes that are listings
    errors: tuple[Code, ...] = ()       # codes meaning "query refused or misused"
    bogus: tuple[str, ...] = ()         # answers outside 127.0.0.0/8 (RFC 5782 2.1): not a DNSBL answer

    @property
    def klass(self) -> str:
        """The worst class among the listings."""
        return min((c.klass for c in self.listed), key=lambda k: CLASS_RANK.get(k, 9), default="")

    @property
    def meaning(self) -> str:
        return "; ".join(dict.fromkeys(c.meaning for c in self.listed))


def interpret(lst: DnsList, answers: Iterable[str]) -> Interpretation:
    """Read the A records of a DNSBL answer with the list's return codes."""
    listed: list[Code] = []
    errors: list[Code] = []
    bogus: list[str] = []
    for raw in answers:
        try:
            addr = ipaddress.ip_address(raw)
        except ValueError:
            bogus.append(raw)
            continue
        text = str(addr)
        known = lst.code(text)
        if known is not None:
            c = Code(known.code, known.meaning, known.klass or lst.klass, known.error)
            (errors if c.error else listed).append(c)
        elif addr.version == 4 and addr in _GENERIC_ERROR_NET and (lst.custom or not lst.codes or
                                                                     any(x.error for x in lst.codes)):
            errors.append(Code(text, "query refused or misused (an error answer in 127.255.255.0/24)",
                               lst.klass, True))
        elif addr.version == 4 and addr in _LOOPBACK_NET:
            listed.append(Code(text, f"listed (return code {text}, not documented for this list)", lst.klass))
        else:
            bogus.append(text)
    return Interpretation(tuple(listed), tuple(errors), tuple(bogus))


# -- query names (RFC 5782 2.1, 2.3, 2.4)


def ip_query_name(ip: str, zone: str) -> str:
    """IPv4: the octets reversed; IPv6: the 32 nibbles reversed (RFC 5782 2.4)."""
    addr = ipaddress.ip_address(ip)
    if addr.version == 4:
        head = ".".join(reversed(str(addr).split(".")))
    else:
        head = ".".join(reversed(addr.exploded.replace(":", "")))
    return f"{head}.{zone.rstrip('.')}"


def domain_query_name(name: str, zone: str) -> str:
    """A domain-based list (RFC 5782 2.3): the name itself prepended to the zone."""
    return f"{name.rstrip('.').lower()}.{zone.rstrip('.')}"


# -- loading and validation


def _code(raw: Any) -> Code:
    if not isinstance(raw, Mapping):
        return Code(str(raw), "")
    return Code(code=str(raw.get("code", "")), meaning=str(raw.get("meaning", "")),
                klass=str(raw.get("class", "")), error=bool(raw.get("error", False)))


def _list(raw: Mapping[str, Any]) -> DnsList:
    return DnsList(
        id=str(raw.get("id", "")),
        name=str(raw.get("name", "")),
        zone=str(raw.get("zone", "")).rstrip(".").lower(),
        kind=str(raw.get("kind", "")),
        klass=str(raw.get("class", "")),
        source=str(raw.get("source", "")),
        codes=tuple(_code(c) for c in raw.get("codes", ()) or ()),
        ipv6=bool(raw.get("ipv6", False)),
        default=bool(raw.get("default", False)),
        delist=str(raw.get("delist", "")),
        note=str(raw.get("note", "")),
        test_listed=str(raw.get("test_listed", "")),
        test_unlisted=str(raw.get("test_unlisted", "")),
        dqs_suffix=str(raw.get("dqs_suffix", "")).rstrip(".").lower(),
        aliases=tuple(str(a).rstrip(".").lower() for a in raw.get("aliases", ()) or ()),
        retired=str(raw.get("retired", "")),
        lab=bool(raw.get("lab", False)),
    )


@dataclass(frozen=True)
class Lists:
    lists: tuple[DnsList, ...]
    load_problems: tuple[str, ...] = ()

    def by_id(self, list_id: str) -> DnsList | None:
        for lst in self.lists:
            if lst.id == list_id:
                return lst
        return None

    def by_zone(self, zone: str) -> DnsList | None:
        z = zone.rstrip(".").lower()
        for lst in self.lists:
            if z == lst.zone or z in lst.aliases:
                return lst
        return None

    def defaults(self) -> tuple[DnsList, ...]:
        return tuple(x for x in self.lists if x.default)

    def problems(self) -> list[str]:
        return list(self.load_problems) + validate(self.lists)


def validate(lists: Sequence[DnsList]) -> list[str]:
    """Every defect at once: missing fields, bad zones and codes, duplicates."""
    out: list[str] = []
    ids: set[str] = set()
    zones: set[str] = set()
    for lst in lists:
        where = f"list {lst.id or '?'!r}"
        if not _ID_RE.match(lst.id):
            out.append(f"{where}: id must be lowercase letters, digits and '-'")
        if lst.id in ids:
            out.append(f"duplicate list id {lst.id!r}")
        ids.add(lst.id)
        for z in (lst.zone, *lst.aliases):
            if z in zones:
                out.append(f"{where}: zone {z!r} belongs to another list too")
            zones.add(z)
        if not lst.name.strip():
            out.append(f"{where}: missing name")
        if not is_zone(lst.zone):
            out.append(f"{where}: zone {lst.zone!r} is not a DNS name with at least two labels")
        for a in lst.aliases:
            if not is_zone(a):
                out.append(f"{where}: alias {a!r} is not a DNS name")
        if lst.kind not in KINDS:
            out.append(f"{where}: kind {lst.kind!r} must be one of {', '.join(KINDS)}")
        if lst.klass not in CLASSES:
            out.append(f"{where}: class {lst.klass!r} must be one of {', '.join(CLASSES)}")
        if not lst.source.strip():
            out.append(f"{where}: missing source (cite the operator's documentation)")
        if not lst.codes:
            out.append(f"{where}: no return codes")
        if not any(not c.error for c in lst.codes):
            out.append(f"{where}: no listing code (only error codes)")
        seen_codes: set[str] = set()
        for c in lst.codes:
            cw = f"{where}: code {c.code!r}"
            try:
                addr = ipaddress.ip_address(c.code)
            except ValueError:
                out.append(f"{cw} is not an IPv4 address")
                continue
            if addr.version != 4 or addr not in _LOOPBACK_NET:
                out.append(f"{cw} is outside 127.0.0.0/8 (RFC 5782 2.1)")
            if c.code in seen_codes:
                out.append(f"{cw} appears twice")
            seen_codes.add(c.code)
            if not c.meaning.strip():
                out.append(f"{cw}: missing meaning")
            if c.klass and c.klass not in CLASSES:
                out.append(f"{cw}: class {c.klass!r} must be one of {', '.join(CLASSES)}")
            if c.code == "127.0.0.1" and not c.error:
                out.append(f"{cw}: 127.0.0.1 must never mean listed (RFC 5782 5)")
        if lst.retired:
            if not re.fullmatch(r"\d{4}(-\d{2})?", lst.retired):
                out.append(f"{where}: retired {lst.retired!r} must be a year (YYYY or YYYY-MM)")
            if not lst.note.strip():
                out.append(f"{where}: a retired list needs a note saying what happened")
            if lst.default:
                out.append(f"{where}: a retired list cannot be in the default set")
        elif lst.kind == "ip" and not lst.lab and not lst.delist.startswith("https://"):
            out.append(f"{where}: missing delist URL (https://...)")
        if lst.lab and lst.default:
            out.append(f"{where}: a lab list cannot be in the default set")
        if lst.lab and not lst.zone.endswith(".test"):
            out.append(f"{where}: lab lists live under .test")
        if lst.kind == "ip" and lst.test_listed:
            try:
                ipaddress.ip_address(lst.test_listed)
            except ValueError:
                out.append(f"{where}: test_listed {lst.test_listed!r} is not an IP address")
    if not any(x.default for x in lists):
        out.append("no list is in the default set")
    return out


def is_zone(name: str) -> bool:
    labels = name.rstrip(".").lower().split(".")
    return len(labels) >= 2 and len(name) <= 253 and all(_LABEL_RE.match(lbl) for lbl in labels)


def from_mapping(data: Mapping[str, Any]) -> Lists:
    problems: list[str] = []
    if data.get("schema") != 1:
        problems.append(f"unsupported lists schema {data.get('schema')!r} (want 1)")
    lists = []
    for i, raw in enumerate(data.get("list", [])):
        label = raw.get("id", f"#{i + 1}")
        unknown = set(raw) - _LIST_FIELDS
        if unknown:
            problems.append(f"list {label!r}: unknown fields {sorted(unknown)}")
        missing = _REQUIRED - set(raw)
        if missing:
            problems.append(f"list {label!r}: missing fields {sorted(missing)}")
        for c in raw.get("codes", ()) or ():
            if isinstance(c, Mapping) and set(c) - _CODE_FIELDS:
                problems.append(f"list {label!r}: code {c.get('code')!r}: unknown fields {sorted(set(c) - _CODE_FIELDS)}")
        lists.append(_list(raw))
    return Lists(tuple(lists), tuple(problems))


def from_toml(text: str) -> Lists:
    # Imported here: most runs load cached parses (deliverck/datacache.py) and never need it.
    import tomllib

    return from_mapping(tomllib.loads(text))


def _toml_error() -> type[Exception]:
    import tomllib

    return tomllib.TOMLDecodeError


def _parse_toml(blob: bytes) -> dict[str, Any]:
    import tomllib

    return tomllib.loads(blob.decode("utf-8"))


# Extra lists files (same format as dnsbl-lists.toml), separated by os.pathsep: a user's private
# lists, and the lab's fixture lists, which the lab names here for the commands it runs
# (deliverck/lab/__init__.py, command_env) so that the shipped file holds real lists only.
EXTRA_LISTS_ENV = "DELIVERCK_DNSBL_LISTS"
MAX_LISTS_BYTES = 1024 * 1024


class ListsFileError(ValueError):
    """An extra lists file cannot be used; the message says which and what to do."""


def extra_files(value: str | None = None) -> tuple[str, ...]:
    """The files named by $DELIVERCK_DNSBL_LISTS (or `value`), each once."""
    raw = os.environ.get(EXTRA_LISTS_ENV, "") if value is None else value
    seen: dict[str, str] = {}
    for item in raw.split(os.pathsep):
        if item.strip():
            seen.setdefault(os.path.realpath(item.strip()), item.strip())
    return tuple(seen.values())


def load() -> Lists:
    """The shipped lists plus those of the extra files; ListsFileError for an unusable extra file."""
    return _load(extra_files())


@functools.cache
def _load(extra: tuple[str, ...]) -> Lists:
    # The shipped file's TOML parse is cached by content hash (deliverck/datacache.py); the
    # user's extra files are read and parsed each time, as they may change at any moment.
    raw = resources.files("deliverck.records").joinpath("dnsbl-lists.toml").read_bytes()
    shipped = from_mapping(datacache.load("dnsbl-lists", raw, _parse_toml))
    if not extra:
        return shipped
    lists = list(shipped.lists)
    for path in extra:
        lists.extend(_extra(path).lists)
    shipped_problems = set(validate(shipped.lists))
    bad = [x for x in validate(lists) if x not in shipped_problems]
    if bad:
        more = f" (and {len(bad) - 1} more)" if len(bad) > 1 else ""
        raise ListsFileError(f"${EXTRA_LISTS_ENV} ({os.pathsep.join(extra)}): {bad[0]}{more}: "
                             "fix the file or remove it from the variable")
    return Lists(tuple(lists), shipped.load_problems)


def _extra(path: str) -> Lists:
    where = f"${EXTRA_LISTS_ENV}: {path}"
    try:
        blob, more = read_limited(path, MAX_LISTS_BYTES)
    except ReadError as e:
        raise ListsFileError(f"{where} {e}: name a lists file (the format of deliverck/records/dnsbl-lists.toml) "
                             "or unset the variable") from None
    if more:
        raise ListsFileError(f"{where} is larger than {MAX_LISTS_BYTES // 1024} KiB: a lists file is small")
    # Read every time (the file may change at any moment), parsed only when its bytes are new:
    # the parse is cached by content hash like the shipped file's, one cache file per path.
    slot = "dnsbl-extra-" + hashlib.sha256(os.path.realpath(path).encode("utf-8", "surrogateescape")).hexdigest()[:16]
    try:
        lists = from_mapping(datacache.load(slot, blob, _parse_toml))
    except (UnicodeDecodeError, _toml_error()) as e:     # evaluated only when something was raised
        raise ListsFileError(f"{where} is not a TOML lists file ({' '.join(str(e).split())})") from None
    if lists.load_problems:
        raise ListsFileError(f"{where}: {lists.load_problems[0]}")
    return lists


# -- selection (--dnsbl)


@dataclass(frozen=True)
class Selection:
    lists: tuple[DnsList, ...] = ()          # to query
    retired: tuple[DnsList, ...] = ()        # asked for, but retired: a notice, no query
    unknown: tuple[str, ...] = ()            # neither a known id nor a zone
    requested: tuple[str, ...] = field(default_factory=tuple)


def custom_list(zone: str, catalog: Lists) -> DnsList:
    """A list given by zone: a DQS zone borrows the codes of its public twin."""
    z = zone.rstrip(".").lower()
    for lst in catalog.lists:
        if lst.dqs_suffix and z.endswith("." + lst.dqs_suffix):
            shown = "<key>." + lst.dqs_suffix
            return DnsList(id=lst.id + "-dqs", name=lst.name + " (Data Query Service)", zone=z, kind=lst.kind,
                           klass=lst.klass, source=lst.source, codes=lst.codes, ipv6=lst.ipv6,
                           delist=lst.delist, note=lst.note, test_listed=lst.test_listed,
                           test_unlisted=lst.test_unlisted, display_zone=shown)
    return DnsList(id=z, name=z, zone=z, kind="ip", klass="spam",
                   source="given with --dnsbl; return codes unknown: any 127.0.0.0/8 answer counts as listed",
                   codes=(), custom=True)


def select(requested: Sequence[str], catalog: Lists | None = None) -> Selection:
    """Resolve --dnsbl values (ids or zones); () = the default set."""
    cat = catalog or load()
    if not requested:
        return Selection(lists=cat.defaults())
    lists: list[DnsList] = []
    retired: list[DnsList] = []
    unknown: list[str] = []
    for item in requested:
        key = item.strip().rstrip(".").lower()
        if not key:
            continue
        lst = cat.by_id(key) or cat.by_zone(key)
        if lst is None and "." in key and is_zone(key):
            lst = custom_list(key, cat)
        if lst is None:
            unknown.append(item)
        elif lst.retired:
            if lst not in retired:
                retired.append(lst)
        elif all(x.zone != lst.zone for x in lists):
            lists.append(lst)
    return Selection(tuple(lists), tuple(retired), tuple(unknown), tuple(requested))


def check_selection(requested: Sequence[str], catalog: Lists | None = None) -> None:
    """For a front end: raise ValueError naming a --dnsbl value that is neither an id nor a zone."""
    sel = select(requested, catalog)
    if sel.unknown:
        known = ", ".join(x.id for x in (catalog or load()).lists if not x.lab)
        raise ValueError(f"unknown DNSBL {sel.unknown[0]!r}: give a list id ({known}) or a zone")
