"""Scenarios: one TOML file per failure, read into frozen dataclasses.

Adding a scenario is adding a file to scenarios/; nothing here knows any
scenario by name.  The schema is documented in README.md beside this file.
"""

from __future__ import annotations

import ipaddress
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


@dataclass(frozen=True)
class Expectation:
    verdict: str
    findings: tuple[str, ...] = ()
    absent: tuple[str, ...] = ()


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
        text = "$TTL 300\n" + self.records
        try:
            return dns.zone.from_text(text, origin=self.origin, relativize=False,
                                      check_origin=False, filename=self.source)
        except dns.exception.SyntaxError as e:
            raise LabUnavailable(f"scenario {self.source}: records do not parse ({_shift(e)})") from None

    def addresses(self) -> tuple[str, ...]:
        """Every A/AAAA address the scenario publishes, in zone order."""
        seen: dict[str, None] = {}
        for _name, _ttl, rdata in self.zone().iterate_rdatas():
            if rdata.rdtype in (dns.rdatatype.A, dns.rdatatype.AAAA):
                seen[rdata.address] = None
        for address, _names in self.reverse:
            seen[address] = None
        return tuple(seen)

    def ptr_names(self, address: str) -> tuple[str, ...]:
        return next((names for a, names in self.reverse if a == address), ())

    def smtp_hostname(self, address: str) -> str:
        """Name a peer greets with: its first PTR name, else the first name holding the address."""
        names = self.ptr_names(address)
        if names:
            return names[0].rstrip(".")
        for name, _ttl, rdata in self.zone().iterate_rdatas():
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


def parse(text: str, source: str) -> Scenario:
    try:
        data = tomllib.loads(text)
    except tomllib.TOMLDecodeError as e:
        raise LabUnavailable(f"scenario {source} is not valid TOML: {e}") from None
    known = {"name", "description", "records", "served_by", "signed", "reverse",
             "reverse_served_by", "smtp", "never_contacted", "expect"}
    unknown = set(data) - known
    if unknown:
        raise LabUnavailable(f"scenario {source}: unknown keys {sorted(unknown)} (known: {sorted(known)})")
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
    served_by = data.get("served_by", "nsd")
    reverse_served_by = data.get("reverse_served_by", "nsd")
    for key, value in (("served_by", served_by), ("reverse_served_by", reverse_served_by)):
        if value not in SERVED_BY:
            raise LabUnavailable(f"scenario {source}: {key} must be one of {SERVED_BY}, not {value!r}")
    origin = dns.name.Name((name,)).concatenate(PARENT)
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
    smtp = data.get("smtp", [])
    expect = data.get("expect")
    if not isinstance(expect, dict) or expect.get("verdict") not in VERDICTS:
        raise LabUnavailable(f"scenario {source}: [expect] verdict must be one of {VERDICTS}")
    scenario = Scenario(
        name=name,
        description=data["description"],
        records=data.get("records", ""),
        served_by=served_by,
        signed=bool(data.get("signed", True)),
        reverse=tuple(reverse),
        reverse_served_by=reverse_served_by,
        smtp=(),
        never_contacted=tuple(str(ipaddress.ip_address(a)) for a in _strs(data, "never_contacted", source)),
        expect=Expectation(verdict=expect["verdict"],
                           findings=_strs(expect, "findings", source),
                           absent=_strs(expect, "absent", source)),
        source=source,
    )
    if served_by != "nsd" and scenario.records.strip():
        raise LabUnavailable(f"scenario {source}: records are only served when served_by = 'nsd'")
    if smtp == "all":
        smtp = [a for a in scenario.addresses() if is_documentation(a)]
    elif not isinstance(smtp, list) or not all(isinstance(a, str) for a in smtp):
        raise LabUnavailable(f"scenario {source}: smtp must be \"all\" or a list of addresses")
    smtp = tuple(str(ipaddress.ip_address(a)) for a in smtp)
    scenario = Scenario(**{**scenario.__dict__, "smtp": smtp})
    scenario.zone()            # parse errors surface at load time
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
