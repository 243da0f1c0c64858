"""What a running lab holds, for code and tests inside it.

The lab writes manifest.json before the command starts and points
$DELIVERCK_LAB at it; `current()` reads it back as frozen dataclasses.
"""

from __future__ import annotations

import json
import os
from dataclasses import asdict, dataclass
from pathlib import Path

from deliverck.lab.errors import LabUnavailable

SCHEMA = "deliverck.lab/1"
ENV = "DELIVERCK_LAB"


@dataclass(frozen=True)
class Expectation:
    verdict: str                       # "pass" | "fail" | "incomplete"
    findings: tuple[str, ...]          # finding ids that must appear
    absent: tuple[str, ...]            # finding ids that must not appear
    requires: tuple[str, ...] = ()     # check ids it needs (explicit, plus those of the named findings)


@dataclass(frozen=True)
class SmtpPeer:
    address: str
    hostname: str                      # what it greets with: 220 <hostname> ESMTP deliverck-lab
    behaviour: str = "smtp"            # smtp | postfix | http | close
    ports: tuple[int, ...] = (25,)
    greeting: str = ""                 # the greeting line it sends ("" for http/close); "{date}" in it is
                                       #   replaced at each connection by the peer's RFC 5322 date-time
    greeting_delay: float = 0.0
    starttls: bool = True              # offered on 25 and 587 (465 is implicit TLS)
    tls_versions: str = "modern"       # modern: TLS 1.2+; legacy: TLS 1.0/1.1 only
    cert: str = "valid"                # certificate profile (certs.PROFILES)
    cert_names: tuple[str, ...] = ()
    cert_key: str = "ec256"
    cert_signature: str = "sha256"
    cert_file: str | None = None       # PEM the peer serves (leaf only)
    relay: str = "denied"              # open: RCPT TO any domain gets 250
    clock_offset: float = 0.0          # seconds the peer's clock (behind {date}) is ahead (< 0: behind)


@dataclass(frozen=True)
class KdcSpec:
    address: str
    behaviour: str                     # mit (krb5kdc + kadmind) | filtered (everything dropped) | refused
    realm: str                         # e.g. "KERBEROS-GOOD.TEST"
    clock_offset: int = 0              # seconds the KDC's clock is ahead (< 0: behind); via libfaketime
    kpasswd: bool = False              # kadmind serves kpasswd on TCP and UDP 464 (mit only)
    principals: tuple[str, ...] = ()   # exist with +requires_preauth: an AS-REQ gets PREAUTH_REQUIRED (25);
                                       #   any other client name gets C_PRINCIPAL_UNKNOWN (6)


@dataclass(frozen=True)
class ReverseEntry:
    address: str
    names: tuple[str, ...]             # absolute PTR names; () means no PTR


@dataclass(frozen=True)
class Scenario:
    name: str
    domain: str                        # "good.test" (no trailing dot)
    description: str
    served_by: str                     # nsd | blackhole | servfail | refused | nobody
    reverse_served_by: str
    signed: bool
    addresses: tuple[str, ...]         # every A/AAAA the zone publishes
    never_contacted: tuple[str, ...]   # published in DNS only: never on lo, never probe
    reverse: tuple[ReverseEntry, ...]
    smtp: tuple[SmtpPeer, ...]
    expect: Expectation
    unavailable: str | None = None     # why this scenario cannot run here (e.g. Postfix missing)
    kdcs: tuple[KdcSpec, ...] = ()     # Kerberos KDCs on the scenario's addresses


@dataclass(frozen=True)
class DnsServer:
    name: str                          # "ns.test"
    behaviour: str                     # nsd | blackhole | servfail | refused
    addresses: tuple[str, ...]


@dataclass(frozen=True)
class Manifest:
    schema: str
    lab_dir: str
    resolver: str                      # what /etc/resolv.conf names (port 53)
    unbound: str                       # unbound itself (differs from resolver with latency)
    dns_latency_ms: int
    dnssec: bool
    trust_anchor: str | None           # file with the lab root's DS, when signed
    servers: tuple[DnsServer, ...]
    zones: tuple[str, ...]             # every zone origin NSD serves
    user_zones: tuple[str, ...]
    lo_addresses: tuple[str, ...]
    scenarios: tuple[Scenario, ...]
    ca_file: str | None = None         # the lab CA (PEM): pass to deliverck as --ca-file
    smtp_log: str | None = None        # JSON lines, one per SMTP connection (see smtp_sessions)
    postfix: str | None = None         # Postfix version serving the postfix peers, None if unavailable
    postfix_unavailable: str | None = None   # why not, in one line

    def smtp_sessions(self, address: str | None = None, since: float | None = None) -> list[dict]:
        """Every SMTP connection a peer has finished, oldest first, optionally for one address and
        from a time.time() on.  Each: address, port, peer ("ip port"), time (start, epoch seconds),
        end, behaviour, tls (a TLS version or None), commands (verbs in order, e.g. ["EHLO",
        "STARTTLS", "EHLO", "QUIT"]).  A line is written when the connection ends."""
        from deliverck.lab import postfix as postfix_mod

        sessions: list[dict] = []
        if self.smtp_log:
            try:
                text = Path(self.smtp_log).read_text(encoding="utf-8")
            except FileNotFoundError:
                text = ""
            sessions += [json.loads(line) for line in text.splitlines() if line.strip()]
        for s in self.scenarios:
            for p in s.smtp:
                if p.behaviour == "postfix" and self.postfix:
                    sessions += postfix_mod.sessions(Path(self.lab_dir), p.address)
        sessions = [x for x in sessions if (address is None or x["address"] == address)
                    and (since is None or x["time"] >= since)]
        return sorted(sessions, key=lambda x: x["time"])

    def scenario(self, name: str) -> Scenario:
        for s in self.scenarios:
            if s.name == name or s.domain == name.rstrip("."):
                return s
        raise KeyError(f"no lab scenario {name!r}")

    def server(self, behaviour: str) -> DnsServer:
        return next(s for s in self.servers if s.behaviour == behaviour)

    def to_json(self) -> str:
        return json.dumps(asdict(self), indent=1)


def _tuple(v):
    return tuple(v) if isinstance(v, list) else v


def from_json(text: str) -> Manifest:
    d = json.loads(text)
    if d.get("schema") != SCHEMA:
        raise LabUnavailable(f"lab manifest has schema {d.get('schema')!r}, expected {SCHEMA!r}")
    scenarios = tuple(
        Scenario(**{**s,
                    "addresses": tuple(s["addresses"]),
                    "never_contacted": tuple(s["never_contacted"]),
                    "reverse": tuple(ReverseEntry(r["address"], tuple(r["names"])) for r in s["reverse"]),
                    "smtp": tuple(SmtpPeer(**{k: _tuple(v) for k, v in p.items()}) for p in s["smtp"]),
                    "expect": Expectation(**{k: _tuple(v) for k, v in s["expect"].items()}),
                    "kdcs": tuple(KdcSpec(**{k: _tuple(v) for k, v in x.items()}) for x in s.get("kdcs", ()))})
        for s in d["scenarios"])
    servers = tuple(DnsServer(s["name"], s["behaviour"], tuple(s["addresses"])) for s in d["servers"])
    return Manifest(**{**{k: _tuple(v) for k, v in d.items()}, "servers": servers, "scenarios": scenarios})


def current() -> Manifest:
    """The manifest of the lab this process runs in; LabUnavailable outside a lab."""
    path = os.environ.get(ENV)
    if not path:
        raise LabUnavailable(f"not inside a lab (${ENV} is unset); run the command under `deliverck lab run -- ...`")
    try:
        return from_json(Path(path).read_text(encoding="utf-8"))
    except OSError as e:
        raise LabUnavailable(f"the lab manifest {path} cannot be read ({e.strerror}); is the lab still up?") from None
