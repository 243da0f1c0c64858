"""Scenarios: one TOML file per failure, read into frozen dataclasses.

Adding a scenario is adding a file to scenarios/; nothing here knows any
scenario by name.  The schema is documented in README.md beside this file.
"""

from __future__ import annotations

import dataclasses
import functools
import ipaddress
import re
import tomllib
from dataclasses import dataclass
from pathlib import Path

import dns.exception
import dns.name
import dns.rdatatype
import dns.zone

from deliverck.lab.errors import LabUnavailable

SCENARIO_DIR = Path(__file__).with_name("scenarios")
PARENT = dns.name.from_text("test.")

DOCUMENTATION_NETS = tuple(ipaddress.ip_network(n) for n in (
    "192.0.2.0/24", "198.51.100.0/24", "203.0.113.0/24", "2001:db8::/32"))

SERVED_BY = ("nsd", "blackhole", "servfail", "refused", "nobody")
MISBEHAVING = ("blackhole", "servfail", "refused")
VERDICTS = ("pass", "fail", "incomplete")
RESERVED_NAMES = ("ns",)          # ns.test. and below hold the lab's own servers


def is_documentation(address: str) -> bool:
    addr = ipaddress.ip_address(address)
    return any(addr.version == net.version and addr in net for net in DOCUMENTATION_NETS)


BEHAVIOURS = ("smtp", "postfix", "http", "close", "filtered", "ehlo-close", "ehlo-hang")
TLS_VERSIONS = ("modern", "legacy")
RELAY = ("denied", "open")
PEER_KEYS = ("behaviour", "hostname", "greeting", "greeting_delay", "starttls", "tls_versions", "cert",
             "cert_names", "cert_key", "cert_signature", "relay", "ports", "clock_offset", "postfix")
DATE_PLACEHOLDER = "{date}"       # in a greeting: the peer's RFC 5322 date-time at each connection
KDC_BEHAVIOURS = ("mit", "filtered", "refused")
KDC_KEYS = ("behaviour", "realm", "clock_offset", "kpasswd", "principals")
REALM_RE = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]*\Z")
PRINCIPAL_RE = re.compile(r"[A-Za-z0-9_][A-Za-z0-9._-]*(/[A-Za-z0-9_][A-Za-z0-9._-]*)*\Z")
RESERVED_PRINCIPALS = ("krbtgt", "kadmin", "K")   # first components kdb5_util creates itself
MAX_CLOCK_OFFSET = 10 * 365 * 86400                # seconds: a clock off by years is a typo


@dataclass(frozen=True)
class Expectation:
    verdict: str
    findings: tuple[str, ...] = ()
    absent: tuple[str, ...] = ()
    requires: tuple[str, ...] = ()      # check ids the expectation needs (named findings' checks included)


@dataclass(frozen=True)
class PeerSpec:
    """How the SMTP peer on one address behaves; the defaults are a healthy server."""
    behaviour: str = "smtp"             # smtp (aiosmtpd) | postfix (real Postfix) | http | close | filtered
                                        # | ehlo-close | ehlo-hang (greets, then closes / goes silent)
    hostname: str | None = None         # greeting and EHLO name; None: first PTR name, else first owner name
    greeting: str | None = None         # whole greeting line, e.g. "554 No SMTP service here"
    greeting_delay: float = 0.0         # seconds before the greeting (a tarpit)
    starttls: bool = True
    tls_versions: str = "modern"        # modern: TLS 1.2+; legacy: TLS 1.0 and 1.1 only
    cert: str = "valid"                 # certs.PROFILES
    cert_names: tuple[str, ...] | None = None   # None: the names that lead to the address (MX host names)
    cert_key: str = "ec256"             # certs.KEYS
    cert_signature: str = "sha256"      # certs.SIGNATURES
    relay: str = "denied"               # open: RCPT TO any domain gets 250
    ports: tuple[int, ...] = (25,)      # 465 is implicit TLS; 25 and 587 offer STARTTLS
    clock_offset: float = 0.0           # seconds added to the clock behind {date} in the greeting
    postfix: tuple[tuple[str, str], ...] = ()   # postfix only: extra main.cf parameters (restrictions, limits)


@dataclass(frozen=True)
class KdcSpec:
    """A Kerberos KDC on one address of the scenario (kdc.py runs it)."""
    address: str
    behaviour: str = "mit"              # mit (krb5kdc, kadmind) | filtered (dropped) | refused (nothing listens)
    realm: str = ""
    clock_offset: int = 0               # seconds; non-zero: the KDC runs under libfaketime
    kpasswd: bool = True                # mit: kadmind serves kpasswd on 464 (TCP and UDP)
    principals: tuple[str, ...] = ()    # mit: created with random keys and +requires_preauth


def _is_number(value) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool)


def _peer_spec(data: dict, source: str, where: str, base: PeerSpec = PeerSpec()) -> PeerSpec:
    from deliverck.lab import certs

    if not isinstance(data, dict):
        raise LabUnavailable(f"scenario {source}: {where} must be a table")
    unknown = set(data) - set(PEER_KEYS)
    if unknown:
        raise LabUnavailable(f"scenario {source}: {where} has unknown keys {sorted(unknown)} (known: {list(PEER_KEYS)})")
    fields = dict(base.__dict__)
    choices = {"behaviour": BEHAVIOURS, "tls_versions": TLS_VERSIONS, "relay": RELAY, "cert": certs.PROFILES,
               "cert_key": certs.KEYS, "cert_signature": certs.SIGNATURES}
    for key, value in data.items():
        if key in choices and value not in choices[key]:
            raise LabUnavailable(f"scenario {source}: {where}.{key} must be one of {choices[key]}, not {value!r}")
        if key in ("hostname", "greeting") and not (isinstance(value, str) and value):
            raise LabUnavailable(f"scenario {source}: {where}.{key} must be a non-empty string")
        if key == "greeting" and not (value[:3].isdigit() and value[3:4] == " "):
            raise LabUnavailable(f"scenario {source}: {where}.greeting must start with a reply code and a space")
        if key == "greeting" and ("{" in value.replace(DATE_PLACEHOLDER, "")
                                  or "}" in value.replace(DATE_PLACEHOLDER, "")):
            raise LabUnavailable(f"scenario {source}: {where}.greeting may hold no placeholder but {DATE_PLACEHOLDER}")
        if key == "clock_offset" and not (_is_number(value) and abs(value) < MAX_CLOCK_OFFSET):
            raise LabUnavailable(f"scenario {source}: {where}.clock_offset must be a number of seconds")
        if key == "starttls" and not isinstance(value, bool):
            raise LabUnavailable(f"scenario {source}: {where}.starttls must be true or false")
        if key == "greeting_delay" and (isinstance(value, bool) or not isinstance(value, (int, float)) or value < 0):
            raise LabUnavailable(f"scenario {source}: {where}.greeting_delay must be a number of seconds >= 0")
        if key == "cert_names":
            value = _strs(data, key, source)
            if not value:
                raise LabUnavailable(f"scenario {source}: {where}.cert_names must not be empty")
        if key == "postfix":
            from deliverck.lab.postfix import PARAMETER, PROTECTED

            if not isinstance(value, dict) or not all(isinstance(v, str) for v in value.values()):
                raise LabUnavailable(f"scenario {source}: {where}.postfix must be a table of main.cf "
                                     "parameter = \"value\"")
            bad = sorted(k for k in value if k in PROTECTED or not PARAMETER.match(k))
            if bad:
                raise LabUnavailable(f"scenario {source}: {where}.postfix cannot set {bad}")
            if any("\n" in v for v in value.values()):
                raise LabUnavailable(f"scenario {source}: {where}.postfix values must be one line")
            value = tuple(sorted(value.items()))
        if key == "ports":
            if (not isinstance(value, list) or not value
                    or not all(isinstance(p, int) and not isinstance(p, bool) and p in (25, 465, 587) for p in value)):
                raise LabUnavailable(f"scenario {source}: {where}.ports must be a list of 25, 465, 587")
            value = tuple(dict.fromkeys(value))
        fields[key] = float(value) if key in ("greeting_delay", "clock_offset") else value
    spec = PeerSpec(**fields)
    if spec.behaviour == "postfix":
        plain = PeerSpec(behaviour="postfix")
        odd = [k for k in ("greeting", "greeting_delay", "tls_versions", "cert_key", "cert_signature", "relay",
                           "ports", "clock_offset") if getattr(spec, k) != getattr(plain, k)]
        if odd:
            raise LabUnavailable(f"scenario {source}: {where}: a postfix peer cannot set {odd}")
    elif spec.postfix:
        raise LabUnavailable(f"scenario {source}: {where}.postfix is for behaviour = \"postfix\" peers only")
    elif spec.clock_offset and DATE_PLACEHOLDER not in (spec.greeting or ""):
        raise LabUnavailable(f"scenario {source}: {where}.clock_offset needs a greeting with {DATE_PLACEHOLDER}")
    return spec


def _kdc_spec(address: str, data, source: str, default_realm: str, published: tuple[str, ...]) -> KdcSpec:
    where = f"[kdc.{address!r}]"
    try:
        canonical = str(ipaddress.ip_address(address))
    except ValueError:
        raise LabUnavailable(f"scenario {source}: kdc key {address!r} is not an IP address") from None
    if not isinstance(data, dict):
        raise LabUnavailable(f"scenario {source}: {where} must be a table")
    unknown = set(data) - set(KDC_KEYS)
    if unknown:
        raise LabUnavailable(f"scenario {source}: {where} has unknown keys {sorted(unknown)} (known: {list(KDC_KEYS)})")
    if not is_documentation(canonical):
        raise LabUnavailable(f"scenario {source}: {where}: {canonical} is outside the documentation ranges")
    if canonical not in published:
        raise LabUnavailable(f"scenario {source}: {where}: {canonical} is not an A/AAAA address of the scenario")
    behaviour = data.get("behaviour", "mit")
    if behaviour not in KDC_BEHAVIOURS:
        raise LabUnavailable(f"scenario {source}: {where}.behaviour must be one of {KDC_BEHAVIOURS}, not {behaviour!r}")
    realm = data.get("realm", default_realm)
    if not (isinstance(realm, str) and REALM_RE.match(realm)):
        raise LabUnavailable(f"scenario {source}: {where}.realm must be a realm name (letters, digits, . _ -)")
    offset = data.get("clock_offset", 0)
    if not isinstance(offset, int) or isinstance(offset, bool) or abs(offset) >= MAX_CLOCK_OFFSET:
        raise LabUnavailable(f"scenario {source}: {where}.clock_offset must be a whole number of seconds")
    kpasswd = data.get("kpasswd", True)
    if not isinstance(kpasswd, bool):
        raise LabUnavailable(f"scenario {source}: {where}.kpasswd must be true or false")
    principals = data.get("principals", [])
    if not isinstance(principals, list) or not all(isinstance(p, str) and PRINCIPAL_RE.match(p) for p in principals):
        raise LabUnavailable(f"scenario {source}: {where}.principals must be a list of principal names "
                             "without realm (e.g. \"alice\", \"host/mx.example.test\")")
    reserved = [p for p in principals if p.split("/")[0] in RESERVED_PRINCIPALS]
    if reserved:
        raise LabUnavailable(f"scenario {source}: {where}.principals {reserved} are made by kdb5_util itself")
    if behaviour != "mit":
        odd = [k for k in ("clock_offset", "kpasswd", "principals") if k in data]
        if odd:
            raise LabUnavailable(f"scenario {source}: {where}: a {behaviour} KDC cannot set {odd}")
    return KdcSpec(address=canonical, behaviour=behaviour, realm=realm, clock_offset=offset,
                   kpasswd=kpasswd and behaviour == "mit", principals=tuple(dict.fromkeys(principals)))


@dataclass(frozen=True)
class Scenario:
    name: str
    description: str
    records: str                          # master-file lines relative to the zone
    served_by: str = "nsd"
    signed: bool = True
    reverse: tuple[tuple[str, tuple[str, ...]], ...] = ()   # address -> absolute PTR names
    reverse_served_by: str = "nsd"
    smtp: tuple[str, ...] = ()
    peers: tuple[tuple[str, PeerSpec], ...] = ()             # address -> how its peer behaves
    kdcs: tuple[KdcSpec, ...] = ()                           # Kerberos KDCs, in file order
    never_contacted: tuple[str, ...] = ()
    expect: Expectation = Expectation("pass")
    source: str = ""

    @property
    def origin(self) -> dns.name.Name:
        return dns.name.Name((self.name,)).concatenate(PARENT)

    @property
    def domain(self) -> str:
        return self.origin.to_text(omit_final_dot=True)

    def zone(self) -> dns.zone.Zone:
        """The scenario's own records (no SOA/NS yet), absolute names."""
        from deliverck.lab import tlsa  # {tlsa:...} placeholders, filled at lab start (tlsa.py)

        text = "$TTL 300\n" + tlsa.mark(self.records)
        try:
            return dns.zone.from_text(text, origin=self.origin, relativize=False,
                                      check_origin=False, filename=self.source)
        except dns.exception.SyntaxError as e:
            raise LabUnavailable(f"scenario {self.source}: records do not parse ({_shift(e)})") from None

    @functools.cached_property
    def _rdatas(self) -> tuple:
        """(name, rdata) of the records, parsed once: the questions below ask them many times
        during lab start (zone() stays a fresh copy, which zones.build changes)."""
        return tuple((name, rdata) for name, _ttl, rdata in self.zone().iterate_rdatas())

    @property
    def default_realm(self) -> str:
        return self.domain.upper()

    def published(self) -> tuple[str, ...]:
        """Every A/AAAA address in the scenario's records (canonical text), in zone order."""
        seen: dict[str, None] = {}
        for _name, rdata in self._rdatas:
            if rdata.rdtype in (dns.rdatatype.A, dns.rdatatype.AAAA):
                seen[str(ipaddress.ip_address(rdata.address))] = None
        return tuple(seen)

    def addresses(self) -> tuple[str, ...]:
        """Every A/AAAA address the scenario publishes, in zone order."""
        seen: dict[str, None] = {}
        for _name, rdata in self._rdatas:
            if rdata.rdtype in (dns.rdatatype.A, dns.rdatatype.AAAA):
                seen[rdata.address] = None
        for address, _names in self.reverse:
            seen[address] = None
        return tuple(seen)

    def ptr_names(self, address: str) -> tuple[str, ...]:
        return next((names for a, names in self.reverse if a == address), ())

    def peer(self, address: str) -> PeerSpec:
        return next((spec for a, spec in self.peers if a == address), PeerSpec())

    def cert_names(self, address: str) -> tuple[str, ...]:
        """Names a healthy peer's certificate holds: every name that leads to the address (through
        one CNAME too), so the MX host name matches, then its PTR names."""
        holders = [name for name, rdata in self._rdatas
                   if rdata.rdtype in (dns.rdatatype.A, dns.rdatatype.AAAA) and rdata.address == address]
        aliases = [name for name, rdata in self._rdatas
                   if rdata.rdtype == dns.rdatatype.CNAME and rdata.target in holders]
        names = [n.to_text(omit_final_dot=True) for n in (*aliases, *holders)]
        names += [n.rstrip(".") for n in self.ptr_names(address)]
        return tuple(dict.fromkeys(names)) or (self.smtp_hostname(address),)

    def smtp_hostname(self, address: str) -> str:
        """Name a peer greets with: as configured, else its first PTR name, else the first name holding it."""
        configured = self.peer(address).hostname
        if configured:
            return configured
        names = self.ptr_names(address)
        if names:
            return names[0].rstrip(".")
        for name, rdata in self._rdatas:
            if rdata.rdtype in (dns.rdatatype.A, dns.rdatatype.AAAA) and rdata.address == address:
                return name.to_text(omit_final_dot=True)
        return self.domain


def _shift(e: Exception) -> str:
    """dnspython's message with line numbers made relative to `records` (we prepend one line)."""
    text = str(e)
    parts = text.split(":")
    for i, part in enumerate(parts):
        if part.strip().isdigit():
            parts[i] = f" records line {int(part) - 1}"
            parts = parts[i:]
            break
    return ":".join(parts).strip()


def _strs(data: dict, key: str, source: str) -> tuple[str, ...]:
    value = data.get(key, [])
    if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
        raise LabUnavailable(f"scenario {source}: {key} must be a list of strings")
    return tuple(value)


_KNOWN_KEYS = {"name", "description", "records", "served_by", "signed", "reverse",
               "reverse_served_by", "smtp", "peer", "peers", "never_contacted", "expect",
               "https",   # [https]: the MTA-STS policy server, read by https_peer.py
               "kdc"}     # [kdc."<address>"]: Kerberos KDCs (kdc.py)


def _table(text: str, source: str) -> dict:
    try:
        data = tomllib.loads(text)
    except tomllib.TOMLDecodeError as e:
        raise LabUnavailable(f"scenario {source} is not valid TOML: {e}") from None
    unknown = set(data) - _KNOWN_KEYS
    if unknown:
        raise LabUnavailable(f"scenario {source}: unknown keys {sorted(unknown)} (known: {sorted(_KNOWN_KEYS)})")
    return data


def _name(data: dict, source: str) -> str:
    for key in ("name", "description"):
        if not isinstance(data.get(key), str) or not data[key]:
            raise LabUnavailable(f"scenario {source}: {key} must be a non-empty string")
    name = data["name"]
    try:
        label = dns.name.from_text(name, origin=None)
    except dns.exception.DNSException:
        label = None
    if label is None or len(label.labels) != 1 or name != name.lower() or name in RESERVED_NAMES:
        raise LabUnavailable(f"scenario {source}: name {name!r} must be one lower-case DNS label, not {RESERVED_NAMES}")
    return name


def _reverse(data: dict, origin: dns.name.Name, source: str) -> tuple[tuple[str, tuple[str, ...]], ...]:
    reverse = []
    raw_reverse = data.get("reverse", {})
    if not isinstance(raw_reverse, dict):
        raise LabUnavailable(f"scenario {source}: reverse must be a table of address = [PTR names]")
    for address, names in raw_reverse.items():
        try:
            address = str(ipaddress.ip_address(address))
        except ValueError:
            raise LabUnavailable(f"scenario {source}: reverse key {address!r} is not an IP address") from None
        if isinstance(names, str):
            names = [names]
        if not isinstance(names, list) or not all(isinstance(n, str) for n in names):
            raise LabUnavailable(f"scenario {source}: reverse[{address!r}] must be a list of names")
        absolute = tuple(dns.name.from_text(n, origin=origin).to_text() for n in names)
        reverse.append((address, absolute))
    return tuple(reverse)


def _expectation(data: dict, source: str) -> Expectation:
    expect = data.get("expect")
    if not isinstance(expect, dict) or expect.get("verdict") not in VERDICTS:
        raise LabUnavailable(f"scenario {source}: [expect] verdict must be one of {VERDICTS}")
    unknown = set(expect) - {"verdict", "findings", "absent", "requires"}
    if unknown:
        raise LabUnavailable(f"scenario {source}: [expect] has unknown keys {sorted(unknown)}")
    findings = _strs(expect, "findings", source)
    absent = _strs(expect, "absent", source)
    for fid in findings + absent:
        if fid.count(".") != 1 or not all(fid.split(".")):
            raise LabUnavailable(f"scenario {source}: finding id {fid!r} is not <check>.<slug>")
    implied = [fid.split(".")[0] for fid in findings + absent]
    requires = tuple(dict.fromkeys([*_strs(expect, "requires", source), *implied]))
    return Expectation(verdict=expect["verdict"], findings=findings, absent=absent, requires=requires)


def _peer_specs(data: dict, source: str) -> tuple[PeerSpec, dict[str, PeerSpec]]:
    """[peer] (every peer's default) and [peers] (per address, by canonical address)."""
    default_peer = _peer_spec(data.get("peer", {}), source, "[peer]")
    raw_peers = data.get("peers", {})
    if not isinstance(raw_peers, dict):
        raise LabUnavailable(f"scenario {source}: [peers] must be a table of address = {{...}}")
    peer_overrides = {}
    for address, table in raw_peers.items():
        try:
            canonical = str(ipaddress.ip_address(address))
        except ValueError:
            raise LabUnavailable(f"scenario {source}: peers key {address!r} is not an IP address") from None
        peer_overrides[canonical] = _peer_spec(table, source, f"[peers.{address!r}]", default_peer)
    return default_peer, peer_overrides


def _kdcs(data: dict, scenario: Scenario, source: str) -> tuple[KdcSpec, ...]:
    raw_kdcs = data.get("kdc", {})
    if not isinstance(raw_kdcs, dict):
        raise LabUnavailable(f"scenario {source}: [kdc] must be a table of address = {{...}}")
    published = scenario.published() if raw_kdcs else ()     # parse errors of records surface here too
    kdcs = tuple(_kdc_spec(a, t, source, scenario.default_realm, published) for a, t in raw_kdcs.items())
    doubled = sorted({k.address for k in kdcs if [x.address for x in kdcs].count(k.address) > 1})
    if doubled:
        raise LabUnavailable(f"scenario {source}: [kdc] names {doubled} more than once")
    return kdcs


def parse(text: str, source: str) -> Scenario:
    """A scenario file, judged in steps; the first problem found is the one reported."""
    data = _table(text, source)
    name = _name(data, source)
    served_by = data.get("served_by", "nsd")
    reverse_served_by = data.get("reverse_served_by", "nsd")
    for key, value in (("served_by", served_by), ("reverse_served_by", reverse_served_by)):
        if value not in SERVED_BY:
            raise LabUnavailable(f"scenario {source}: {key} must be one of {SERVED_BY}, not {value!r}")
    reverse = _reverse(data, dns.name.Name((name,)).concatenate(PARENT), source)
    expect = _expectation(data, source)
    default_peer, peer_overrides = _peer_specs(data, source)
    scenario = Scenario(
        name=name,
        description=data["description"],
        records=data.get("records", ""),
        served_by=served_by,
        signed=bool(data.get("signed", True)),
        reverse=reverse,
        reverse_served_by=reverse_served_by,
        smtp=(),
        never_contacted=tuple(str(ipaddress.ip_address(a)) for a in _strs(data, "never_contacted", source)),
        expect=expect,
        source=source,
    )
    if served_by != "nsd" and scenario.records.strip():
        raise LabUnavailable(f"scenario {source}: records are only served when served_by = 'nsd'")
    smtp = data.get("smtp", [])
    if smtp == "all":
        smtp = [a for a in scenario.addresses() if is_documentation(a)]
    elif not isinstance(smtp, list) or not all(isinstance(a, str) for a in smtp):
        raise LabUnavailable(f"scenario {source}: smtp must be \"all\" or a list of addresses")
    smtp = tuple(str(ipaddress.ip_address(a)) for a in smtp)
    stray = sorted(set(peer_overrides) - set(smtp))
    if stray:
        raise LabUnavailable(f"scenario {source}: [peers] names {stray}, which are not in smtp")
    peers = tuple((a, peer_overrides.get(a, default_peer)) for a in smtp)
    kdcs = _kdcs(data, scenario, source)
    parsed = scenario.__dict__.get("_rdatas")
    scenario = dataclasses.replace(scenario, smtp=smtp, peers=peers, kdcs=kdcs)
    if parsed is not None:     # the records did not change: keep their parse
        scenario.__dict__["_rdatas"] = parsed
    _ = scenario._rdatas       # parse errors surface at load time (and the parse is kept)
    return scenario


def load(path: Path) -> Scenario:
    return parse(path.read_text(encoding="utf-8"), str(path))


def load_all(directory: Path = SCENARIO_DIR) -> tuple[Scenario, ...]:
    scenarios = tuple(load(p) for p in sorted(directory.glob("*.toml")))
    names = [s.name for s in scenarios]
    duplicates = sorted({n for n in names if names.count(n) > 1})
    if duplicates:
        raise LabUnavailable(f"scenario names are not unique in {directory}: {duplicates}")
    return scenarios


def problems(scenarios: tuple[Scenario, ...]) -> list[str]:
    """Data errors a unit test reports: addresses outside the lab, shared addresses, bad peers."""
    found: list[str] = []
    owner: dict[str, str] = {}
    for s in scenarios:
        addresses = s.addresses()
        for address in addresses:
            if not is_documentation(address) and address not in s.never_contacted:
                found.append(f"{s.name}: {address} is outside the documentation ranges "
                             "and not listed in never_contacted")
            if address in owner and owner[address] != s.name:
                found.append(f"{s.name}: {address} is also used by {owner[address]}")
            owner.setdefault(address, s.name)
        for address in s.never_contacted:
            if is_documentation(address):
                found.append(f"{s.name}: never_contacted {address} is a lab address; drop it")
            if address in s.smtp:
                found.append(f"{s.name}: {address} is never_contacted but has an SMTP peer")
        for address in s.smtp:
            if not is_documentation(address):
                found.append(f"{s.name}: SMTP peer {address} is outside the documentation ranges")
            if address not in addresses:
                found.append(f"{s.name}: SMTP peer {address} is not published by the scenario")
        for address, _names in s.reverse:
            if not is_documentation(address):
                found.append(f"{s.name}: reverse entry {address} is outside the documentation ranges")
    return found
