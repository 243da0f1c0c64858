"""Everything one audit run needs to know, built once by deliverck.options.build_config.

The field defaults below are the only place an option's default is written: the option table
(deliverck/options.py), the flags, the config file and bulk lines all read them from here
(tests/test_cli.py::test_each_default_is_written_once).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

from deliverck.model import Severity
from deliverck.target import Target

if TYPE_CHECKING:
    # Types only: importing deliverck.net.dns loads dnspython's resolver (and its DNS-over-HTTPS
    # stack), which `deliverck --help` and bad usage must not pay for (issue 16).
    from deliverck.net.dns import ResolverAddress
    from deliverck.net.overlay import ZoneFileSpec


@dataclass(frozen=True)
class Config:
    target: Target
    resolvers: tuple[ResolverAddress, ...] = ()
    outbound_ips: tuple[str, ...] = ()          # --ip: addresses the server sends from
    only: tuple[str, ...] = ()                  # run just these checks
    skip: tuple[str, ...] = ()                  # never run these
    receivers: tuple[str, ...] = ()             # receiver systems to predict for; () = default set
    fail_on: Severity = Severity.ERROR
    dns_timeout: float = 5.0                    # seconds per DNS question (all tries)
    check_timeout: float = 30.0                 # per check
    deadline: float = 60.0                      # whole run
    debug: bool = False
    ehlo_name: str = ""                         # what deliverck says in EHLO; "" = default_ehlo_name()
    helo_name: str = ""                         # --helo: the name the server uses for outbound mail
    helo_source: str = ""                       # where helo_name was read, when not --helo (message: "SMTP session",
                                                # "header Received #1 (by mx.example.net)")
    ca_file: Path | None = None                 # extra trust anchors (private CA, the lab's CA)
    cert_warn_days: int = 21
    smtp_timeout: float = 10.0                  # per SMTP phase (connect, greeting, EHLO, ...)
    probe_private: bool = False                 # also connect to private/loopback addresses
    extra_ports: tuple[int, ...] = ()           # --ports beyond 25 (e.g. 465, 587): reported, not judged for MX
    sender: str = ""                            # --sender: envelope sender (SPF macros, DMARC From domain)
    sender_profile: str = "transactional"       # --sender-profile: "transactional" or "bulk" (bulk-sender rules)
    dkim_selectors: tuple[str, ...] = ()        # --dkim-selector: known selectors, probed before common ones
    dnsbl_lists: tuple[str, ...] = ()           # --dnsbl: list ids or zones; () = the default set
    trust_anchor: Path | None = None            # --trust-anchor: DNSSEC root DS/DNSKEY (default: IANA's)
    severity_overrides: dict[str, Severity] = field(default_factory=dict)
    kerberos: bool = False                      # --kerberos: run the kerberos check even without signs of AD
    realm: str = ""                             # --realm: Kerberos realm; "" = from DNS, else the domain upper-cased
    kdcs: tuple[tuple[str, int], ...] = ()      # --kdc HOST[:PORT]: KDCs to probe instead of the SRV records
    principal: str = ""                         # --principal: client name for the AS-REQ; "" = a random one
    max_skew: float = 300.0                     # --max-skew: the Kerberos clock-skew limit, seconds
    kdc_timeout: float = 5.0                    # --kdc-timeout: per KDC port probe
    zone_files: tuple[ZoneFileSpec, ...] = ()   # --zone-file: answers for these zones come from the files
    per_address: int = 0                        # bulk --per-address: SMTP connections per remote address
                                                # across all audits of the process (0: one audit's own rule)

    def selects(self, check_id: str) -> bool:
        """Does the check run in this audit (--only / --skip)?  The one rule: runner.select_checks
        and the checks that report in another check's stead when it does not run."""
        return (not self.only or check_id in self.only) and check_id not in self.skip
