"""The lab's DNS tree: which zones exist, who serves them, and their records.

Everything is computed here, outside the namespace, so that a bad zone file is
reported before anything starts.  Delegations are derived, never hand-written:
every zone is delegated from its closest enclosing zone in the tree.
"""

from __future__ import annotations

import ipaddress
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

import dns.exception
import dns.name
import dns.rdata
import dns.rdataclass
import dns.rdatatype
import dns.rdtypes.ANY.NS
import dns.reversename
import dns.rrset
import dns.zone

from deliverck.lab import dkim_keys
from deliverck.lab.errors import LabUnavailable
from deliverck.lab.scenarios import Scenario, is_documentation

TTL = 300
ROOT = dns.name.root
TEST = dns.name.from_text("test.")

# The lab's own DNS servers: name -> (behaviour, addresses).  They live in test.
AUTH_NAME = dns.name.from_text("ns.test.")
SERVERS: dict[str, tuple[dns.name.Name, tuple[str, ...]]] = {
    "nsd": (AUTH_NAME, ("192.0.2.53", "2001:db8::53")),
    # IPv4 only, so a lookup through it times out after one address's retries.
    "blackhole": (dns.name.from_text("blackhole.ns.test."), ("192.0.2.54",)),
    "servfail": (dns.name.from_text("servfail.ns.test."), ("192.0.2.55", "2001:db8::55")),
    "refused": (dns.name.from_text("refused.ns.test."), ("192.0.2.56", "2001:db8::56")),
}
# Resolvers that behave like a user's broken environment (tests/test_environment.py points
# --resolver at them): IPv4 only, on documentation addresses, named under ns.test. like the
# servers above.  The Python ones live in badns.py; unsigned-root is a second unbound
# (plan.py, inside.py) that resolves from an unsigned copy of the lab root.
RESOLVERS: dict[str, tuple[dns.name.Name, tuple[str, ...]]] = {
    "nxdomain-resolver": (dns.name.from_text("nxdomain-resolver.ns.test."), ("192.0.2.57",)),
    "servfail-root": (dns.name.from_text("servfail-root.ns.test."), ("192.0.2.58",)),
    "strip-dnssec": (dns.name.from_text("strip-dnssec.ns.test."), ("192.0.2.59",)),
    "unsigned-root": (dns.name.from_text("unsigned-root.ns.test."), ("192.0.2.60",)),
    "drop-dnssec": (dns.name.from_text("drop-dnssec.ns.test."), ("192.0.2.61",)),
}
REVERSE_ZONES = tuple(dns.name.from_text(z) for z in (
    "2.0.192.in-addr.arpa.", "100.51.198.in-addr.arpa.", "113.0.203.in-addr.arpa.",
    "8.b.d.0.1.0.0.2.ip6.arpa."))


@dataclass
class LabZone:
    origin: dns.name.Name
    server: str                            # key of SERVERS
    zone: dns.zone.Zone | None = None      # records, when served by NSD
    source: str = "lab"                    # "lab", a scenario name or a user file
    signed: bool = True

    @property
    def records(self) -> dns.zone.Zone:
        """The records of an NSD-served zone (the only zones that have any here)."""
        if self.zone is None:
            raise LabUnavailable(f"zone {self.origin} is not served by the lab's NSD: it holds no records")
        return self.zone


@dataclass
class Tree:
    zones: dict[dns.name.Name, LabZone] = field(default_factory=dict)
    user_origins: list[dns.name.Name] = field(default_factory=list)

    def served(self) -> list[LabZone]:
        return [z for z in self.zones.values() if z.server == "nsd"]

    def enclosing(self, name: dns.name.Name, *, proper: bool = False) -> LabZone | None:
        """The NSD-served zone that holds `name` (the closest ancestor)."""
        best = None
        for z in self.served():
            if name.is_subdomain(z.origin) and not (proper and name == z.origin):
                if best is None or len(z.origin) > len(best.origin):
                    best = z
        return best

    def holder(self, name: dns.name.Name, *, proper: bool = False) -> LabZone:
        """enclosing(), for names the lab root always holds (it is served by NSD)."""
        z = self.enclosing(name, proper=proper)
        if z is None:
            raise LabUnavailable(f"no zone served by the lab's NSD holds {name}")
        return z

    def addresses(self) -> list[str]:
        """Every documentation-range A/AAAA in served zones: these go onto lo."""
        seen: dict[str, None] = {}
        for _name, addrs in (*SERVERS.values(), *RESOLVERS.values()):
            for a in addrs:
                seen[a] = None
        for z in self.served():
            for _n, _ttl, rdata in z.records.iterate_rdatas():
                if rdata.rdtype in (dns.rdatatype.A, dns.rdatatype.AAAA) and is_documentation(rdata.to_text()):
                    seen[str(ipaddress.ip_address(rdata.to_text()))] = None
        return list(seen)


def empty_zone(origin: dns.name.Name | None) -> dns.zone.Zone:
    return dns.zone.Zone(origin, relativize=False)


def _put(zone: dns.zone.Zone, name: dns.name.Name, rdtype: str, *texts: str, replace: bool = True) -> None:
    rdtype_ = dns.rdatatype.from_text(rdtype)
    rdataset = zone.find_rdataset(name, rdtype_, create=True)
    if replace:
        rdataset.clear()
    rdataset.update_ttl(TTL)
    for text in texts:
        rdataset.add(dns.rdata.from_text(dns.rdataclass.IN, rdtype_, text, origin=ROOT, relativize=False), TTL)


def _apex(zone: dns.zone.Zone) -> None:
    """SOA and NS at the apex, unless the zone (a user's) already has them."""
    origin = zone.origin
    assert origin is not None, "the lab's zones are built with an origin"
    if zone.get_rdataset(origin, dns.rdatatype.SOA) is None:
        _put(zone, origin, "SOA", f"{AUTH_NAME} hostmaster.test. 1 3600 600 86400 60")
    if zone.get_rdataset(origin, dns.rdatatype.NS) is None:
        _put(zone, origin, "NS", str(AUTH_NAME))


def _address_records(zone: dns.zone.Zone, name: dns.name.Name, addresses: Sequence[str]) -> None:
    v4 = [a for a in addresses if ipaddress.ip_address(a).version == 4]
    v6 = [a for a in addresses if ipaddress.ip_address(a).version == 6]
    if v4:
        _put(zone, name, "A", *v4)
    if v6:
        _put(zone, name, "AAAA", *v6)


def read_user_zone(path: Path) -> dns.zone.Zone:
    """A zone file named <origin>.zone; LabUnavailable names the file and line if it does not parse."""
    stem = path.name[: -len(".zone")]
    try:
        origin = dns.name.from_text(stem.rstrip(".") + "." if stem not in ("", ".", "root") else ".")
    except dns.exception.DNSException as e:
        raise LabUnavailable(f"zone file {path}: its name does not give a zone origin ({e})") from None
    from deliverck.inputfile import ReadError, read_limited
    from deliverck.net.overlay import MAX_GENERATED, MAX_ZONE_BYTES, generated_records

    try:
        data, more = read_limited(path, MAX_ZONE_BYTES)
    except ReadError as e:
        raise LabUnavailable(f"zone file {path}: {e}") from None
    if more:
        raise LabUnavailable(f"zone file {path} is larger than {MAX_ZONE_BYTES // (1024 * 1024)} MiB")
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError:
        raise LabUnavailable(f"zone file {path} is not UTF-8 text") from None
    if generated_records(text) > MAX_GENERATED:
        raise LabUnavailable(f"zone file {path}: its $GENERATE lines make more than {MAX_GENERATED} records")
    try:
        return dns.zone.from_text(text, origin=origin, relativize=False, filename=str(path))
    except dns.exception.SyntaxError as e:
        raise LabUnavailable(f"zone file {path} does not parse: {e}") from None
    except (dns.zone.NoSOA, dns.zone.NoNS) as e:
        raise LabUnavailable(f"zone file {path} does not parse: {(e.__doc__ or '').strip()} at {origin}") from None
    except (dns.exception.DNSException, UnicodeDecodeError, ValueError) as e:
        raise LabUnavailable(f"zone file {path} does not parse: {e}") from None
    except OSError as e:
        raise LabUnavailable(f"zone file {path} cannot be read: {e.strerror}") from None


def user_zone_files(zone_dirs: Sequence[Path]) -> list[Path]:
    files: list[Path] = []
    for d in zone_dirs:
        d = Path(d)
        if not d.is_dir():
            raise LabUnavailable(f"zone directory {d} does not exist or is not a directory")
        files.extend(sorted(d.glob("*.zone")))
    return files


def build(scenarios: Sequence[Scenario], zone_dirs: Sequence[Path] = ()) -> Tree:
    tree = Tree()

    def add(origin: dns.name.Name, server: str = "nsd", zone: dns.zone.Zone | None = None,
            source: str = "lab", signed: bool = True) -> LabZone:
        if server == "nsd" and zone is None:
            zone = empty_zone(origin)
        lz = LabZone(origin, server, zone, source, signed)
        tree.zones[origin] = lz
        return lz

    add(ROOT)
    add(TEST)
    for origin in REVERSE_ZONES:
        add(origin)
    for s in scenarios:
        if s.served_by == "nobody":
            continue
        add(s.origin, s.served_by, s.zone() if s.served_by == "nsd" else None, s.name, s.signed)

    # Fresh DKIM keys at every start for {dkim:...} TXT placeholders (dkim_keys.py).
    for lz in tree.served():
        dkim_keys.fill(lz.records)

    # PTRs go into whichever served zone holds the reverse name.
    for s in scenarios:
        for address, names in s.reverse:
            if not names:
                continue
            rname = dns.reversename.from_address(address)
            holder = tree.enclosing(rname)
            if holder is None or holder.origin == ROOT:
                raise LabUnavailable(f"scenario {s.source}: no lab reverse zone holds {address}")
            _put(holder.records, rname, "PTR", *names, replace=False)
        if s.reverse_served_by != "nsd":
            for address in s.addresses():
                if is_documentation(address):
                    add(dns.reversename.from_address(address), s.reverse_served_by, source=s.name)

    for path in user_zone_files(zone_dirs):
        zone = read_user_zone(path)
        user_origin = zone.origin
        assert user_origin is not None, "read_user_zone() gives every zone its origin"
        if user_origin == ROOT:
            raise LabUnavailable(f"zone file {path}: the lab root cannot be replaced; serve a zone below it")
        add(user_origin, "nsd", zone, str(path), signed=False)   # served as given
        tree.user_origins.append(user_origin)

    for lz in tree.served():
        _apex(lz.records)

    # The lab's own server names and addresses, in whichever zone now holds them.
    for _server, (name, addresses) in (*SERVERS.items(), *RESOLVERS.items()):
        _address_records(tree.holder(name).records, name, addresses)

    # Delegations from the closest enclosing zone, with glue when in bailiwick.
    for lz in sorted(tree.zones.values(), key=lambda z: len(z.origin)):
        if lz.origin == ROOT:
            continue
        parent = tree.holder(lz.origin, proper=True)
        ns_name, addresses = SERVERS[lz.server]
        _put(parent.records, lz.origin, "NS", str(ns_name))
        if ns_name.is_subdomain(lz.origin):
            _address_records(parent.records, ns_name, addresses)
    return tree


DNSSEC_TYPES = frozenset(dns.rdatatype.from_text(t) for t in (
    "DNSKEY", "RRSIG", "NSEC", "NSEC3", "NSEC3PARAM", "DS", "CDS", "CDNSKEY", "ZONEMD"))


def unsigned_copy(zone: dns.zone.Zone) -> dns.zone.Zone:
    """The zone as it was before signing: every DNSSEC record (and every DS) left out."""
    copy = empty_zone(zone.origin)
    for name, node in zone.items():
        for rdataset in node.rdatasets:
            if rdataset.rdtype in DNSSEC_TYPES or rdataset.covers in DNSSEC_TYPES:
                continue
            copy.find_rdataset(name, rdataset.rdtype, create=True).update(rdataset)
    return copy


def zone_text(zone: dns.zone.Zone) -> str:
    return zone.to_text(relativize=False, sorted=True)


def file_name(origin: dns.name.Name) -> str:
    return "root.zone" if origin == ROOT else origin.to_text() + "zone"
