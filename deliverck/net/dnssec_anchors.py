"""Trust anchors for deliverck's own DNSSEC validation: the IANA root keys, or a file given by the user.

Validation starts at the root (RFC 4035 5), so an anchor is a DS or DNSKEY record of the root zone.
A user's file is parsed without ever echoing its text: the path may point at any file (issue 14).
"""

from __future__ import annotations

from collections.abc import Iterable

import dns.exception
import dns.name
import dns.rdata
import dns.rdataclass
import dns.rdatatype
import dns.rrset

from deliverck.inputfile import ReadError, read_limited

# The IANA root zone trust anchors (https://data.iana.org/root-anchors/root-anchors.xml):
# KSK-2017 (key tag 20326) and KSK-2024 (key tag 38696), both RSASHA256, SHA-256 digests.
ROOT_ANCHORS: tuple[str, ...] = (
    ". IN DS 20326 8 2 E06D44B80B8F1D39A95C0B0D7C65D08458E880409BBB683457104237C7F8EC8D",
    ". IN DS 38696 8 2 683D2D0ACB8C9B712A1948B27F741219298D0A450D612C483AF444A4C0FB2B16",
)


def parse_anchors(lines: Iterable[str] | str) -> tuple[dns.rrset.RRset, ...]:
    """DS (or DNSKEY) records of the root zone in master-file form, one per line -> RRsets.

    Accepts what the lab's trust_anchor file holds (`. 3600 IN DS ...`), the short
    form `. IN DS ...` and unbound-anchor's root.key (`. 172800 IN DNSKEY 257 3 8 ...
    ;{id = 20326 ...}`); comments (`;`) and blank lines are skipped.  Anything else is
    ValueError naming the line and what is wrong with it, never its text: the path may
    point at any file (`--trust-anchor /etc/passwd`, a secrets file), issue 14.  Only
    the root's anchors are used (validation starts at the root), so another owner is an
    error too, not silently nothing.
    """
    if isinstance(lines, str):
        lines = lines.splitlines()
    what = ("a trust anchor file holds DS or DNSKEY records of the root zone, one per line, e.g. "
            "`. IN DS 20326 8 2 E06D44B8...`")
    forms = {dns.rdatatype.DS: "key tag, algorithm, digest type and the digest in hex",
             dns.rdatatype.DNSKEY: "flags, protocol 3, algorithm and the public key in base64"}
    sets: dict[tuple[dns.name.Name, int], dns.rrset.RRset] = {}
    for number, raw in enumerate(lines, 1):
        line = raw.split(";", 1)[0].strip()
        if not line:
            continue
        toks = line.split()
        if toks[0] != ".":
            raise ValueError(f"line {number} is not a record of the root zone (its owner must be '.'); {what}")
        rest = toks[1:]
        for _ in range(2):                # [TTL] [class] in either order (RFC 1035 5.1)
            if rest and rest[0].isdigit():
                rest = rest[1:]
            elif rest and rest[0].upper() == "IN":
                rest = rest[1:]
        try:
            rdtype = dns.rdatatype.from_text(rest[0]) if rest else None
        except (dns.exception.DNSException, ValueError):
            rdtype = None
        if rdtype not in forms:
            raise ValueError(f"line {number} is not a DS or DNSKEY record of class IN; {what}")
        try:
            rd = dns.rdata.from_text(dns.rdataclass.IN, rdtype, " ".join(rest[1:]))
        except Exception:                 # dnspython's messages quote the offending token: not shown
            name = dns.rdatatype.to_text(rdtype)
            raise ValueError(f"line {number}: its {name} record does not parse (give {forms[rdtype]})") from None
        key = (dns.name.root, rdtype)
        if key not in sets:
            sets[key] = dns.rrset.RRset(dns.name.root, dns.rdataclass.IN, rdtype)
        sets[key].add(rd)
    return tuple(sets.values())


def load_anchor_file(path: str, limit: int = 1024 * 1024) -> tuple[dns.rrset.RRset, ...]:
    """parse_anchors of a file, read once and bounded (a few records; the CLI checked it already,
    deliverck.options.trust_anchor).  ValueError naming the file when it cannot be used."""
    try:
        data, more = read_limited(path, limit)
    except ReadError as e:
        raise ValueError(f"trust anchor {path}: {e}") from None
    if more:
        raise ValueError(f"trust anchor {path}: larger than {limit} bytes")
    try:
        return parse_anchors(data.decode("utf-8"))
    except UnicodeDecodeError:
        raise ValueError(f"trust anchor {path}: not UTF-8 text") from None
    except ValueError as e:
        raise ValueError(f"trust anchor {path}: {e}") from None


DEFAULT_ANCHORS = parse_anchors(ROOT_ANCHORS)
