"""Zone-file overlay: audit a proposed DNS change before it is deployed.

`--zone-file FILE[:ORIGIN]` loads a master file; DnsClient then answers
every question at or below that zone's origin from the file (NOERROR with
records, NODATA, NXDOMAIN; CNAMEs followed inside the file and out of it;
wildcards per RFC 4592) and everything else from real DNS.  Names below a
delegation in the file (NS records below the apex) go to real DNS too: the
child zone is not part of the change.

The origin is `:ORIGIN` when given, else the file's `$ORIGIN`, else the owner
of an absolute SOA record, else the file name minus `.zone`.

Answers from a file are never DNSSEC-authenticated: a proposed change has
no signatures yet.

Errors name the file, the line and the kind of problem, and never repeat what
the file says beyond a short prefix (redact): a path can point at anything,
and a dotenv file given by mistake (or through a symlink) once had its secret
printed by dnspython's "unknown rdatatype 'TOKEN'" (issue 14).  Only names the
file itself declares as the zone's origin are shown whole.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path

import dns.exception
import dns.name
import dns.rdataclass
import dns.rdatatype
import dns.zone

from deliverck.errors import UsageError

# A zone file larger than this is not a proposed change to a mail domain's zone.
MAX_ZONE_BYTES = 64 * 1024 * 1024
# Records made by $GENERATE lines (BIND's extension, which dnspython reads): a few
# characters can ask for 10^8 records, more memory and minutes than any zone needs.
MAX_GENERATED = 100_000
_GENERATE = re.compile(r"^\$GENERATE[ \t]+(\d+)-(\d+)(?:/(\d+))?", re.M | re.I)


@dataclass(frozen=True)
class ZoneFileSpec:
    path: str
    origin: str = ""          # "" = from the file (see the module docstring)
    # The file's text, once read (read_zone_text): a pipe or process substitution
    # (`--zone-file <(git show main:example.com.zone)`) can be read only once.
    text: str | None = field(default=None, repr=False, compare=False)

    def __str__(self) -> str:
        return f"{self.path}:{self.origin}" if self.origin else self.path


def parse_zone_file_option(text: str) -> ZoneFileSpec:
    """`FILE` or `FILE:ORIGIN` (the part after the last colon, when it has no slash)."""
    path, origin = text, ""
    if ":" in text:
        head, tail = text.rsplit(":", 1)
        if head and "/" not in tail:
            path, origin = head, tail.strip()
    if not path:
        raise UsageError(f"--zone-file {text!r}: give a zone file as FILE or FILE:ORIGIN")
    if origin:
        try:
            dns.name.from_text(origin.rstrip(".") + ".")
        except dns.exception.DNSException as e:
            raise UsageError(f"--zone-file {text!r}: {origin!r} is not a zone origin ({e})") from None
    return ZoneFileSpec(path, origin)


@dataclass(frozen=True)
class Step:
    """What the file says about one (name, type)."""

    kind: str                 # "ok" | "nodata" | "nxdomain" | "cname" | "network"
    records: tuple = ()
    ttl: int = 0
    target: str = ""          # for "cname": where to go next
    source: str = ""          # "zone-file:<path>"


class LoadedZone:
    def __init__(self, zone: dns.zone.Zone, path: str) -> None:
        self.zone = zone
        # load_zone_file always hands dnspython an origin, so the zone has one.
        assert zone.origin is not None
        self.origin: dns.name.Name = zone.origin
        self.path = path
        self.source = f"zone-file:{path}"
        names = list(zone.nodes.keys())
        # Every name that exists, empty non-terminals included (RFC 4592 2.2.2).
        self._exists: set[dns.name.Name] = set()
        for n in names:
            while n.is_subdomain(self.origin):
                if n in self._exists:
                    break
                self._exists.add(n)
                if n == self.origin:
                    break
                n = n.parent()
        self._cuts = {n for n in names if n != self.origin and zone.get_rdataset(n, dns.rdatatype.NS) is not None}

    def covers(self, name: dns.name.Name) -> bool:
        return name.is_subdomain(self.origin)

    def answer(self, name: dns.name.Name, rdtype: dns.rdatatype.RdataType) -> Step:
        # Below a delegation in the file: the child zone answers, from real DNS.
        n = name
        while n != self.origin:
            if n in self._cuts and not (n == name and rdtype == dns.rdatatype.DS):
                return Step("network")
            n = n.parent()
        node_name = name
        if name not in self._exists:
            # RFC 4592: the closest encloser's wildcard, if it has one.
            encloser = name.parent()
            while encloser not in self._exists:
                encloser = encloser.parent()
            wild = dns.name.Name((b"*",) + encloser.labels)
            if wild not in self._exists:
                return Step("nxdomain", source=self.source)
            node_name = wild
        rds = self.zone.get_rdataset(node_name, rdtype)
        if rds is not None:
            return Step("ok", tuple(rds), rds.ttl, source=self.source)
        if rdtype != dns.rdatatype.CNAME:
            cname = self.zone.get_rdataset(node_name, dns.rdatatype.CNAME)
            if cname is not None:
                return Step("cname", ttl=cname.ttl, target=cname[0].target.to_text(), source=self.source)
        return Step("nodata", source=self.source)


class Overlay:
    def __init__(self, zones: Sequence[LoadedZone]) -> None:
        # Deepest origin first: a file for sub.example.com wins over example.com.
        self.zones = sorted(zones, key=lambda z: -len(z.origin.labels))

    def __bool__(self) -> bool:
        return bool(self.zones)

    def zone_for(self, name: str | dns.name.Name) -> LoadedZone | None:
        n = name if isinstance(name, dns.name.Name) else _name(name)
        if n is None:
            return None
        return next((z for z in self.zones if z.covers(n)), None)

    def answer(self, name: str, rdtype: str) -> Step | None:
        """The file's answer, or None when real DNS must answer."""
        n = _name(name)
        if n is None:
            return None
        z = self.zone_for(n)
        if z is None:
            return None
        try:
            t = dns.rdatatype.from_text(rdtype)
        except dns.exception.DNSException:
            return None
        step = z.answer(n, t)
        return None if step.kind == "network" else step

    def describe(self) -> list[dict]:
        return [{"path": z.path, "origin": z.origin.to_text(omit_final_dot=True) or "."} for z in self.zones]


def _name(text: str) -> dns.name.Name | None:
    try:
        return dns.name.from_text(text.rstrip(".") + ".") if text not in ("", ".") else dns.name.root
    except dns.exception.DNSException:
        return None


_LINE = re.compile(r"^.*?:(\d+): (.*)$", re.S)


def read_zone_text(spec: ZoneFileSpec) -> ZoneFileSpec:
    """The spec with the file's text: the one read of the file (UsageError when it cannot be read)."""
    if spec.text is not None:
        return spec
    from deliverck.inputfile import ReadError, read_limited

    label = f"--zone-file {spec.path}"
    try:
        # Bounded, and a FIFO nobody writes to reads as empty instead of blocking in open().
        data, more = read_limited(spec.path, MAX_ZONE_BYTES)
    except ReadError as e:
        what = ", not a zone file" if "directory" in str(e) else ""
        raise UsageError(f"{label}: {e}{what}") from None
    if more:
        raise UsageError(f"{label}: larger than {MAX_ZONE_BYTES // (1024 * 1024)} MiB; "
                         "give the zone of the mail domain")
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError as e:
        raise UsageError(f"{label}: not UTF-8 text ({e.reason} at byte {e.start})") from None
    return replace(spec, text=text)


def generated_records(text: str) -> int:
    """How many records the $GENERATE lines of a master file would make (counted, not made)."""
    generated = 0
    for m in _GENERATE.finditer(text):
        start, stop, step = int(m.group(1)), int(m.group(2)), int(m.group(3) or 1)
        generated += (stop - start) // max(step, 1) + 1 if stop >= start else 0
    return generated


def load_zone_file(spec: ZoneFileSpec) -> LoadedZone:
    """Parse one file (read once, see read_zone_text); UsageError (one line, with the line number)
    when it cannot be used."""
    label = f"--zone-file {spec.path}"
    p = Path(spec.path)
    text = read_zone_text(spec).text or ""
    if not text.strip():
        raise UsageError(f"{label}: the file is empty: give the zone's records (SOA and NS at its origin first)")
    if "\0" in text:
        raise UsageError(f"{label}: binary data (NUL bytes), not a zone file")
    generated = generated_records(text)
    if generated > MAX_GENERATED:
        raise UsageError(f"{label}: its $GENERATE lines make {generated} records, more than {MAX_GENERATED}: "
                         "give the records of the proposed change")
    origin = _origin(spec, text, p)
    if origin is None:
        raise UsageError(f"{label}: cannot tell the zone's origin: give it as {spec.path}:ORIGIN, "
                         "add $ORIGIN, or name the file ORIGIN.zone")
    try:
        zone = dns.zone.from_text(text, origin=origin, relativize=False, filename=spec.path)
    except dns.exception.SyntaxError as e:
        m = _LINE.match(str(e))
        where = f"line {m.group(1)}: {redact(m.group(2), text)}" if m else redact(str(e), text)
        raise UsageError(f"{label}: {where}") from None
    except (dns.zone.NoSOA, dns.zone.NoNS) as e:
        what = "SOA" if isinstance(e, dns.zone.NoSOA) else "NS"
        # The origin is shown whole: the user gave it, or the file declares it as the zone's name.
        raise UsageError(f"{label}: the zone has no {what} record at its origin {_text(origin)} "
                         "(give the origin as FILE:ORIGIN if it is another one)") from None
    except dns.zone.UnknownOrigin:
        raise UsageError(f"{label}: cannot tell the zone's origin: give it as {spec.path}:ORIGIN, "
                         "add $ORIGIN, or name the file ORIGIN.zone") from None
    except (dns.exception.DNSException, ValueError, AssertionError, RecursionError) as e:
        # dnspython asserts on some inputs it cannot place (AssertionError): still bad input, one line
        raise UsageError(f"{label}: {redact(str(e), text) or 'not a zone file dnspython can read'}") from None
    return LoadedZone(zone, spec.path)


def _origin(spec: ZoneFileSpec, text: str, path: Path) -> dns.name.Name | None:
    if spec.origin:
        return dns.name.from_text(spec.origin.rstrip(".") + ".")
    m = re.search(r"^\$ORIGIN[ \t]+(\S+)", text, re.M)
    if m:
        try:                              # the first $ORIGIN, as dnspython takes it
            return dns.name.from_text(m.group(1))
        except dns.exception.DNSException as e:
            line = text.count("\n", 0, m.start()) + 1
            raise UsageError(f"--zone-file {spec.path}: line {line}: $ORIGIN {token_hint(m.group(1))} is not a "
                             f"domain name ({redact(str(e), text)})") from None
    soa = re.search(r"^(\S+\.)[ \t]+(?:[^;\n]*?[ \t])?SOA[ \t]", text, re.M | re.I)
    if soa:
        try:
            return dns.name.from_text(soa.group(1))
        except dns.exception.DNSException:
            pass
    stem = path.name[: -len(".zone")] if path.name.endswith(".zone") else ""
    if stem:
        try:
            return dns.name.from_text(stem.rstrip(".") + ".")
        except dns.exception.DNSException:
            pass
    return None


def load_overlay(specs: Sequence[ZoneFileSpec]) -> Overlay:
    zones = [load_zone_file(s) for s in specs]
    seen: dict[dns.name.Name, str] = {}
    for z in zones:
        if z.origin in seen:
            raise UsageError(f"--zone-file {z.path}: zone {_text(z.origin)} is already given by {seen[z.origin]}")
        seen[z.origin] = z.path
    return Overlay(zones)


def _text(origin) -> str:
    return origin.to_text(omit_final_dot=True) if origin is not None else "(unknown)"


def _one_line(s: str) -> str:
    return " ".join(s.split())[:300]


# --- what an error line may show of a user's file --------------------------------------------

HINT_CHARS = 4          # at most this many characters of a token of the file, and at most half of it
_QUOTED = re.compile(r"'([^'\n]*)'|\"([^\"\n]*)\"")
_CAUGHT = re.compile(r"caught exception <class '[\w.]+'>: ")
_WORD = re.compile(r"[^\s'\"]{6,}")
_KEYWORDS = {"$INCLUDE", "$ORIGIN", "$TTL", "$GENERATE", "$UNICODE"}     # shown whole: words of the syntax


def token_hint(token: str) -> str:
    """A token of a user's file as an error line may show it: quoted, its first characters only
    (HINT_CHARS, and never more than half of it), escaped, with '…' when cut.  Enough to find it
    on the line the error names; too little to disclose a secret that happened to be there."""
    n = min(HINT_CHARS, max(1, len(token) // 2)) if token else 0
    shown = "".join(c if c.isascii() and c.isprintable() and c not in "'\\" else ascii(c)[1:-1]
                    for c in token[:n])
    return f"'{shown}{'…' if len(token) > n else ''}'"


def redact(message: str, text: str) -> str:
    """A parser's message about `text` (dnspython's, which quotes the offending token whole), with
    every quoted token and every longer word that also occurs in `text` cut to a token_hint;
    one line, at most 300 characters."""
    message = _CAUGHT.sub("", message)
    lowered = text.lower()
    out, pos = [], 0

    def words(part: str) -> str:
        return _WORD.sub(lambda w: token_hint(w.group(0)) if w.group(0).lower() in lowered else w.group(0), part)

    for m in _QUOTED.finditer(message):
        out.append(words(message[pos:m.start()]))
        token = m.group(1) if m.group(1) is not None else m.group(2)
        out.append(f"'{token}'" if token in _KEYWORDS else token_hint(token))
        pos = m.end()
    out.append(words(message[pos:]))
    return _one_line("".join(out))


def skip_reason(client, names: Sequence[str], check: str) -> str:
    """Why `check` (dnssec, dane) cannot judge names answered from a zone file, or ""."""
    overlay = getattr(client, "overlay", None)
    if not overlay:
        return ""
    for n in names:
        z = overlay.zone_for(n) if n else None
        if z is not None:
            return (f"{n} is answered from the zone file {z.path} (--zone-file): the proposed data is unsigned, "
                    f"so {check} is not judged; audit the signed zone after deployment")
    return ""
