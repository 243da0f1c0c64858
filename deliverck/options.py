# size: over 500 lines because the OPTIONS data table takes about 110 of them
"""Every option of an audit, once: its type, validator, default, help, config-file key, bulk-line
key and environment variable, and the one function that turns option values into a Config.

The `check`, `bulk` (its flags and each JSON line), `audit` (the config file) and `explain --run`
commands all build their Config through build_config(), so a value is judged by one rule whatever
its source, and a default lives in one place: the field of deliverck.config.Config (the table reads
it from there; options.py builds Config, so Config cannot read the table).  Adding an option: one
Option row in OPTIONS, a field in Config, and the code that uses it (docs/architecture.md).

The validators raise UsageError with one line that names the option as the user wrote it: a flag
(`--dns-timeout`), a config key (`dns_timeout`) or a JSON key (`"ips"`).
"""

from __future__ import annotations

import dataclasses
import math
import os
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from deliverck.config import Config
from deliverck.errors import UsageError
from deliverck.inputfile import ReadError, read_limited, regular_file
from deliverck.model import Severity
from deliverck.target import (
    Target,
    _show,
    is_address_literal,
    is_hostname,
    normalise_name,
    parse_target,
    refuse_unprobeable,
)

# The lab (`deliverck lab run`/`lab exec`) hands its private CA and its DNS root's
# trust anchor to the commands it runs through these; a CI job can set them once.
# An explicit --ca-file/--trust-anchor wins over the variable.
CA_FILE_ENV = "DELIVERCK_CA_FILE"
TRUST_ANCHOR_ENV = "DELIVERCK_TRUST_ANCHOR"
# Upper bounds of numeric options.  None of them is a policy: each is far beyond any
# useful value and keeps a typo (or inf) from turning into a run that never ends.
MAX_SECONDS = 86400.0        # one day, for every time limit
MIN_SECONDS = 0.001          # one millisecond: below it no answer can come (1e-320 is a typo too)
MAX_CERT_WARN_DAYS = 3650    # ten years: longer than any certificate deliverck would judge
MAX_ITEMS = 100              # names or addresses in one list option (more: use `deliverck bulk`)
MAX_PORTS = 10               # --ports: submission ports, not a port scan
MAX_CA_BYTES = 16 * 1024 * 1024       # --ca-file: a bundle of every public CA is about 250 KB
MAX_ANCHOR_BYTES = 1024 * 1024        # --trust-anchor: a few DS or DNSKEY lines
MAX_EXPLAIN_MB = 1024                 # explain --max-size: memory holds what is read


def split(values: list[str] | None) -> tuple[str, ...]:
    out: list[str] = []
    for v in values or []:
        out += [x.strip() for x in v.split(",") if x.strip()]
    return tuple(out)


def list_items(values: list[str] | None, option: str, what: str, limit: int = MAX_ITEMS,
           empty_ok: bool = False) -> tuple[str, ...]:
    """The comma-separated items of a list option.

    An option given with no item (`--only ''`, `--ip "$UNSET"`) is a mistake, never "the
    default": an empty --only would silently run every check.  empty_ok: a config file's or
    a bulk line's empty list, where "none" is exactly what the default does (`ips = []`).
    """
    items = split(values)
    if values is not None and not items and not empty_ok:
        raise UsageError(f"{option} is empty: give {what}, or leave it out")
    if len(items) > limit:
        raise UsageError(f"{option}: {len(items)} items, at most {limit} in one audit")
    return items


def check_names(values: list[str] | None, option: str, empty_ok: bool = False) -> tuple[str, ...]:
    return list_items(values, option, "check names separated by commas (see `deliverck checks`)", empty_ok=empty_ok)


def ips(values: list[str] | None, option: str = "--ip", empty_ok: bool = False) -> tuple[str, ...]:
    from deliverck.net.addresses import is_ip  # validators import the network layer when they run (issue 16)

    out = []
    for addr in list_items(values, option, "the server's outbound IPv4 or IPv6 addresses", empty_ok=empty_ok):
        if not is_ip(addr):
            raise UsageError(f"{option}: {_show(addr)} is not an IP address "
                             "(give the server's outbound IPv4 or IPv6 address)")
        out.append(addr)
    return tuple(out)


def receivers(value: str | None, option: str = "--receivers") -> tuple[str, ...]:
    from deliverck.ndr.catalog import parse_receivers

    if value is not None and not value.strip(" ,"):
        raise UsageError(f"{option} is empty: give 'default', 'all' or receiver ids (see `deliverck checks`)")
    try:
        return tuple(parse_receivers(value))
    except ValueError as e:
        raise UsageError(f"{option}: {e}") from None


def severity(text: str, option: str) -> Severity:
    try:
        return Severity.from_text(text)
    except ValueError as e:
        raise UsageError(f"{option}: {e}") from None


def positive(value: float, option: str) -> float:
    """A time limit in seconds: finite, MIN_SECONDS to MAX_SECONDS (inf, nan and 1e-320 are typos, not limits)."""
    try:
        seconds = float(value)
    except (TypeError, ValueError, OverflowError):
        seconds = math.nan
    if not (math.isfinite(seconds) and MIN_SECONDS <= seconds <= MAX_SECONDS):
        raise UsageError(f"{option} must be a positive number of seconds, at least {MIN_SECONDS:g} and at most "
                         f"{MAX_SECONDS:g} (not {value!r})")
    return seconds


def megabytes(value: float, option: str = "--max-size") -> int:
    """A size in MB (explain --max-size) as bytes: finite, above 0, at most MAX_EXPLAIN_MB."""
    try:
        mb = float(value)
    except (TypeError, ValueError, OverflowError):
        mb = math.nan
    if not (math.isfinite(mb) and 0 < mb <= MAX_EXPLAIN_MB):
        raise UsageError(f"{option} must be a number of megabytes above 0, at most {MAX_EXPLAIN_MB} (not {value!r})")
    return max(1, int(mb * 1024 * 1024))


def _path_error(label: str, path: str, e: Exception | str) -> UsageError:
    """One line for a file option that cannot be used: `--ca-file /x: is a directory`."""
    return UsageError(f"{label} {path}: {e}" if path else f"{label} {e}")


def cert_warn_days(days: int, option: str = "--cert-warn-days") -> int:
    if isinstance(days, bool) or not isinstance(days, int) or not 0 <= days <= MAX_CERT_WARN_DAYS:
        raise UsageError(f"{option} must be 0 or more days, at most {MAX_CERT_WARN_DAYS} (not {days!r})")
    return days


def _env_path(path: str | None, env: str, option: str) -> tuple[str | None, str]:
    """(path, label for messages): the option's value, else the environment variable's."""
    if path is None:
        path = os.environ.get(env) or None
    label = f"{option} (from ${env})" if path is not None and path == os.environ.get(env) else option
    if path is not None and not path.strip():
        raise UsageError(f"{label} is empty: give a file")
    return path, label


def trust_anchor(path: str | None):
    """--trust-anchor, else $DELIVERCK_TRUST_ANCHOR, else None (IANA's root keys)."""
    path, label = _env_path(path, TRUST_ANCHOR_ENV, "--trust-anchor")
    if path is None:
        return None
    from deliverck.net.dnssec import parse_anchors

    # The file is read again by path when the audit starts: a regular file, checked here without
    # opening it (a FIFO would hang, /dev/zero never end), then read once, bounded, to parse it.
    try:
        regular_file(path, MAX_ANCHOR_BYTES)
        data, _ = read_limited(path, MAX_ANCHOR_BYTES)
    except ReadError as e:
        what = "; give a file of DS or DNSKEY records" if "directory" in str(e) else ""
        raise _path_error(label, path, f"{e}{what}") from None
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError as e:
        raise UsageError(f"{label} {path}: not UTF-8 text (byte {e.start + 1}); give DS or DNSKEY records "
                         "as text, e.g. `. IN DS 20326 8 2 E06D...`") from None
    try:
        if not parse_anchors(text):
            raise ValueError("it holds no record (only comments or blank lines); a trust anchor file holds DS or "
                             "DNSKEY records of the root zone, one per line, e.g. `. IN DS 20326 8 2 E06D44B8...`")
    except ValueError as e:
        # parse_anchors names the line and the kind of problem, never the line's text (issue 14)
        raise UsageError(f"{label} {path}: {' '.join(str(e).split())}") from None
    return Path(path)


def dnsbl(values: list[str] | None, option: str = "--dnsbl") -> tuple[str, ...]:
    from deliverck.records.dnsbl import check_selection

    items = list_items(values, option, "DNSBL ids or zones (see `deliverck checks`)")
    try:
        check_selection(items)
    except ValueError as e:
        raise UsageError(f"{option}: {e}") from None
    return items


def sender(text: str | None) -> str:
    if text is None:
        return ""
    s = text.strip()
    if s.count("@") != 1 or not s.split("@")[0] or any(c.isspace() or ord(c) < 32 for c in s):
        raise UsageError(f"--sender {_show(text)} is not a mail address (use e.g. bounces@example.com)")
    local, domain = s.split("@")
    try:
        return f"{local}@{normalise_name(domain)}"
    except UsageError as e:
        raise UsageError(f"--sender {_show(text)}: {e}") from None


# Who sends through the audited server: the large mailbox providers apply stricter rules to bulk
# senders (5,000+ messages a day to Gmail or Yahoo personal accounts, or to Microsoft's consumer
# services, counted per From domain).  deliverck cannot see volume, so the user says it.
SENDER_PROFILES = ("transactional", "bulk")


def sender_profile(value: object, option: str = "--sender-profile") -> str:
    if value is None:       # the flag not given: Config's default
        return str(Config.__dataclass_fields__["sender_profile"].default)
    text = value.strip().lower() if isinstance(value, str) else ""
    if text not in SENDER_PROFILES:
        shown = _show(value) if isinstance(value, str) else repr(value)
        raise UsageError(f"{option} {shown}: give one of {', '.join(SENDER_PROFILES)} (bulk: 5,000 or more "
                         "messages a day to Gmail, Yahoo or Outlook.com from one From domain)")
    return text


def selector(text: str) -> str:
    s = text.strip().strip(".").lower()
    # A selector is one or more DNS labels (RFC 6376 3.1); it sits under _domainkey.
    if not s or not is_hostname(s + ".example"):
        raise UsageError(f"--dkim-selector {_show(text)} is not a valid selector (letters, digits, hyphens, dots)")
    return s


def ports(text: str | None) -> tuple[int, ...]:
    if text is None:
        return ()
    out = []
    for part in split([text]):
        if not (part.isdigit() and len(part) <= 5) or not 0 < int(part) < 65536:
            raise UsageError(f"--ports {_show(text)}: give port numbers separated by commas, e.g. 25,465,587")
        if int(part) not in out:
            out.append(int(part))
    if not out:
        raise UsageError("--ports is empty: give port numbers separated by commas, e.g. 465,587")
    if len(out) > MAX_PORTS:
        raise UsageError(f"--ports: {len(out)} ports, at most {MAX_PORTS} (the submission ports, e.g. 465,587)")
    return tuple(p for p in out if p != 25)


def ehlo_name(name: str | None) -> str:
    if name is None:
        return ""
    n = name.strip().rstrip(".")
    if not (is_hostname(n) or (is_address_literal(n) and n.startswith("["))):
        raise UsageError(f"--ehlo-name {_show(name)} is not a fully qualified host name or [address] literal "
                         "(e.g. probe.example.com)")
    return n


def helo(name: str | None) -> str:
    if name is None:
        return ""
    n = name.strip()
    if not n or len(n) > 255 or not n.isprintable() or " " in n:
        raise UsageError(f"--helo {_show(name)}: give the single name the server sends in HELO/EHLO")
    return n


def realm(realm: str | None) -> str:
    if realm is None:
        return ""
    r = realm.strip()
    if not r or len(r) > 255 or not r.isascii() or not r.isprintable() or any(c in r for c in " /@\\"):
        raise UsageError(f"--realm {_show(realm)}: give a Kerberos realm name such as EXAMPLE.COM")
    return r


def kdc(value: str) -> tuple[str, int]:
    """HOST, HOST:PORT, IPv6, [IPv6]:PORT -> (host, port)."""
    from deliverck.net.addresses import is_ip

    v = value.strip()
    host, port = v, 88
    if v.startswith("["):
        end = v.find("]")
        host, rest = v[1:end] if end > 0 else "", v[end + 1:] if end > 0 else "?"
        if rest:
            if not rest.startswith(":"):
                host = ""
            port = _kdc_port(rest[1:], value)
    elif v.count(":") == 1:
        host, p = v.split(":")
        port = _kdc_port(p, value)
    if not (is_ip(host) or is_hostname(host.rstrip(".").lower())):
        raise UsageError(f"--kdc {_show(value)}: give a KDC as HOST, HOST:PORT, IP or [IPv6]:PORT")
    return host.rstrip(".").lower(), port


def _kdc_port(text: str, value: str) -> int:
    if not (text.isdigit() and len(text) <= 5) or not 0 < int(text) < 65536:
        raise UsageError(f"--kdc {_show(value)}: the port must be a number from 1 to 65535")
    return int(text)


def principal(name: str | None) -> str:
    if name is None:
        return ""
    n = name.strip()
    if not n or len(n) > 255 or not n.isprintable() or " " in n or "@" in n:
        raise UsageError(f"--principal {_show(name)}: give a client name without realm, e.g. probe or host/mx1")
    return n


def resolvers(values: list[str] | None, option: str = "--resolver") -> tuple:
    if values is not None and len(values) > MAX_ITEMS:
        raise UsageError(f"{option}: {len(values)} resolvers, at most {MAX_ITEMS}")
    if not values:
        return ()
    from deliverck.net.dns import parse_resolver  # dnspython: only when a resolver is given (issue 16)

    return tuple(parse_resolver(r) for r in values)


def dkim_selectors(values: list[str] | None, option: str = "--dkim-selector",
                    empty_ok: bool = False) -> tuple[str, ...]:
    return tuple(selector(x) for x in list_items(values, option, "DKIM selectors", empty_ok=empty_ok))


def kdcs(values: list[str] | None, option: str = "--kdc", empty_ok: bool = False) -> tuple[tuple[str, int], ...]:
    return tuple(kdc(k) for k in list_items(values, option, "KDCs as HOST[:PORT]", empty_ok=empty_ok))


def ca_file(path: str | None):
    """--ca-file, else $DELIVERCK_CA_FILE, else None (the system store only)."""
    path, label = _env_path(path, CA_FILE_ENV, "--ca-file")
    if path is None:
        return None
    from deliverck.net.tls import load_trust_store

    p = Path(path)
    try:
        regular_file(path, MAX_CA_BYTES)     # read by path again later: no FIFO, no device, bounded
    except ReadError as e:
        what = "; give a PEM or DER file of CA certificates" if "directory" in str(e) else ""
        raise _path_error(label, path, f"{e}{what}") from None
    try:
        load_trust_store(p, system=False)  # one-line UsageError when missing, unreadable or empty
    except UsageError as e:
        raise UsageError(str(e).replace("--ca-file", label, 1)) from None
    return p


def zone_files(values: list[str] | None):
    from deliverck.net.overlay import load_overlay, parse_zone_file_option, read_zone_text

    if values is not None and len(values) > MAX_ITEMS:
        raise UsageError(f"--zone-file: {len(values)} files, at most {MAX_ITEMS}")
    # Each file is read here, once: a pipe (`--zone-file <(git show main:zone)`) has no second read.
    specs = tuple(read_zone_text(parse_zone_file_option(v)) for v in values or [])
    load_overlay(specs)        # syntax errors: one line, exit 2, before any lookup
    return specs




# --- the table --------------------------------------------------------------------------------


class OptionError(UsageError):
    """A value of one option that cannot be used; `option` says which (the config file names its line)."""

    def __init__(self, message: str, option: Option) -> None:
        super().__init__(message)
        self.option = option


@dataclass(frozen=True)
class Source:
    """Where values come from: it names the option in messages, says whether an empty list is a
    mistake (a flag given no item) or "none" (`ips = []` in a file), and, for a config file,
    resolves relative paths against the file's directory and reads the environment's files once."""

    kind: str                                   # "flag", "file" or "bulk"
    base_dir: Path | None = None
    env_cache: dict | None = None            # file: $DELIVERCK_* values read once per load

    def path(self, value: str | None) -> str | None:
        if value is None or self.base_dir is None:
            return value
        p = Path(value).expanduser()
        return str(p if p.is_absolute() else self.base_dir / p)


FLAGS = Source("flag")
BULK_LINE = Source("bulk")


def config_file(base_dir: Path) -> Source:
    return Source("file", base_dir=base_dir, env_cache={})


# Value types, as a config file or JSON line holds them; on the command line every list is a
# repeatable flag of comma-separated items and a port list is one string.
KINDS = ("list", "strlist", "str", "number", "int", "intlist", "bool")
_FLAG_TYPES = {"list": list[str] | None, "strlist": str | None, "str": str | None, "number": float,
               "int": int, "intlist": str | None, "bool": bool}


@dataclass(frozen=True)
class Option:
    name: str                                   # the Config field it sets
    kind: str                                   # one of KINDS
    parse: Callable[[Any, str, Source], Any]    # (value as given, name as given, source) -> Config value
    help: str = ""
    flag: str | None = None                  # None: not a flag of `check`
    metavar: str | None = None
    config_key: str | None = None            # None: not in the config file
    bulk_key: str | None = None              # None: not in a bulk JSON line
    env: str | None = None                   # environment variable read when the option is absent
    before_target: bool = False                 # judged before the target (the order of check's messages)

    @property
    def default(self) -> Any:
        f = Config.__dataclass_fields__[self.name]
        if f.default_factory is not dataclasses.MISSING:
            return f.default_factory()
        return f.default

    @property
    def flag_type(self) -> Any:
        return _FLAG_TYPES[self.kind]

    @property
    def flag_default(self) -> Any:
        """What typer passes when the flag is absent: None for text and lists ("not given"), the
        Config default for numbers and switches, a severity by name."""
        d = self.default
        if isinstance(d, Severity):
            return d.to_text()
        return d if self.kind in ("number", "int", "bool") else None

    def label(self, source: Source) -> str:
        if source.kind == "file":
            return self.config_key or self.name
        if source.kind == "bulk":
            return f'"{self.bulk_key or self.name}"'
        return self.flag or self.name

    def read(self, value: Any, source: Source) -> Any:
        try:
            return self.parse(value, self.label(source), source)
        except OptionError:
            raise
        except UsageError as e:
            raise OptionError(str(e), self) from None


def _loose(source: Source) -> bool:
    """An empty list in a file or a JSON line is "none", as the default; an empty flag is a mistake."""
    return source.kind != "flag"


def _port_list(value: Any, label: str, source: Source) -> tuple[int, ...]:
    if source.kind == "file":
        return ports(",".join(str(x) for x in value)) if value else ()
    return ports(value)


def _receiver_list(value: Any, label: str, source: Source) -> tuple[str, ...]:
    return receivers(value if value is None or isinstance(value, str) else ",".join(value), label)


def _flag(value: Any, label: str, source: Source) -> bool:
    return bool(value)


_SECONDS = "SECONDS"

OPTIONS: tuple[Option, ...] = (
    Option("fail_on", "str", lambda v, n, s: severity(v, n), flag="--fail-on", metavar="LEVEL",
           config_key="fail_on", before_target=True,
           help="Fail (exit 1) when a finding reaches this severity: info, notice, warning, error, critical."),
    Option("receivers", "strlist", _receiver_list, flag="--receivers", metavar="SYSTEM[,SYSTEM]",
           config_key="receivers", before_target=True,
           help="Receiver systems to predict NDRs for ('default', 'all', or ids; see `deliverck checks`)."),
    Option("resolvers", "list", lambda v, n, s: resolvers(v, n), flag="--resolver", metavar="IP[:PORT]",
           config_key="resolvers", before_target=True,
           help="DNS resolver to use (repeatable); default: /etc/resolv.conf."),
    Option("outbound_ips", "list", lambda v, n, s: ips(v, n, empty_ok=_loose(s)), flag="--ip", metavar="ADDR",
           config_key="ips", bulk_key="ips",
           help="An outbound address of the server, if it differs from the MX addresses (repeatable)."),
    Option("only", "list", lambda v, n, s: check_names(v, n), flag="--only", metavar="CHECK[,CHECK]",
           config_key="only", help="Run only these checks."),
    Option("skip", "list", lambda v, n, s: check_names(v, n, empty_ok=s.kind == "file"), flag="--skip",
           metavar="CHECK[,CHECK]", config_key="skip", help="Do not run these checks."),
    Option("dns_timeout", "number", lambda v, n, s: positive(v, n), flag="--dns-timeout", metavar=_SECONDS,
           config_key="dns_timeout", help="Time limit per DNS question."),
    Option("check_timeout", "number", lambda v, n, s: positive(v, n), flag="--check-timeout", metavar=_SECONDS,
           config_key="check_timeout", help="Time limit per check."),
    Option("deadline", "number", lambda v, n, s: positive(v, n), flag="--deadline", metavar=_SECONDS,
           config_key="deadline", help="Time limit for the whole run."),
    Option("ehlo_name", "str", lambda v, n, s: ehlo_name(v), flag="--ehlo-name", metavar="NAME",
           config_key="ehlo_name",
           help="Name deliverck gives in EHLO (default: this machine's FQDN, else deliverck-probe.invalid)."),
    Option("helo_name", "str", lambda v, n, s: helo(v), flag="--helo", metavar="NAME", config_key="helo",
           bulk_key="helo",
           help="The name the audited server uses in HELO for outbound mail (default: the name it announces)."),
    Option("ca_file", "str", lambda v, n, s: ca_file(s.path(v)), flag="--ca-file", metavar="PEM",
           config_key="ca_file", env=CA_FILE_ENV,
           help="Extra trusted CA certificates (a private CA) besides the system store."),
    Option("cert_warn_days", "int", lambda v, n, s: cert_warn_days(v, n), flag="--cert-warn-days", metavar="DAYS",
           config_key="cert_warn_days", help="Warn when a certificate expires sooner."),
    Option("smtp_timeout", "number", lambda v, n, s: positive(v, n), flag="--smtp-timeout", metavar=_SECONDS,
           config_key="smtp_timeout", help="Time limit per SMTP step (connect, greeting, EHLO, STARTTLS)."),
    Option("probe_private", "bool", _flag, flag="--probe-private", config_key="probe_private",
           help="Also connect to MX addresses in private, loopback or CGNAT ranges."),
    Option("extra_ports", "intlist", _port_list, flag="--ports", metavar="PORT[,PORT]", config_key="ports",
           help="Also probe these ports of every MX address (e.g. 465,587); 25 is always probed."),
    Option("sender", "str", lambda v, n, s: sender(v), flag="--sender", metavar="ADDR", config_key="sender",
           bulk_key="sender", help="Envelope sender the server uses (default: postmaster@DOMAIN)."),
    Option("sender_profile", "str", lambda v, n, s: sender_profile(v, n), flag="--sender-profile",
           metavar="PROFILE", config_key="sender_profile", bulk_key="sender_profile",
           help="Who sends: transactional (default) or bulk (5,000+ messages a day to Gmail, Yahoo or "
                "Outlook.com); bulk applies those receivers' bulk-sender rules for certain."),
    Option("dkim_selectors", "list", lambda v, n, s: dkim_selectors(v, n, empty_ok=_loose(s)),
           flag="--dkim-selector", metavar="SELECTOR", config_key="dkim_selectors", bulk_key="dkim_selectors",
           help="A DKIM selector the domain signs with (repeatable)."),
    Option("dnsbl_lists", "list", lambda v, n, s: dnsbl(None if v is None else list(v), n), flag="--dnsbl",
           metavar="LIST", config_key="dnsbl",
           help="DNSBL ids or zones to query instead of the default set (repeatable)."),
    Option("trust_anchor", "str", lambda v, n, s: trust_anchor(s.path(v)), flag="--trust-anchor", metavar="FILE",
           config_key="trust_anchor", env=TRUST_ANCHOR_ENV,
           help="DNSSEC trust anchor for the root (DS or DNSKEY records); default: IANA's root KSKs."),
    Option("kerberos", "bool", _flag, flag="--kerberos", config_key="kerberos",
           help="Run the Kerberos check even when nothing suggests Active Directory/Exchange."),
    Option("realm", "str", lambda v, n, s: realm(v), flag="--realm", metavar="REALM", config_key="realm",
           help="Kerberos realm (default: _kerberos TXT, else the domain in upper case); implies --kerberos."),
    Option("kdcs", "list", lambda v, n, s: kdcs(v, n, empty_ok=s.kind == "file"), flag="--kdc",
           metavar="HOST[:PORT]", config_key="kdcs",
           help="A KDC / domain controller to probe instead of the SRV records (repeatable); implies --kerberos."),
    Option("principal", "str", lambda v, n, s: principal(v), flag="--principal", metavar="NAME",
           config_key="principal",
           help="Client principal for the AS-REQ probe (default: a random name no directory holds)."),
    Option("max_skew", "number", lambda v, n, s: positive(v, n), flag="--max-skew", metavar=_SECONDS,
           config_key="max_skew",
           help="Largest clock difference Kerberos accepts (default 300, AD's and MIT's default)."),
    Option("kdc_timeout", "number", lambda v, n, s: positive(v, n), flag="--kdc-timeout", metavar=_SECONDS,
           config_key="kdc_timeout", help="Time limit per KDC port probe."),
    Option("zone_files", "list", lambda v, n, s: zone_files(v), flag="--zone-file", metavar="FILE[:ORIGIN]",
           help="Answer names in this zone from FILE (a proposed change) instead of DNS (repeatable)."),
)

BY_NAME: dict[str, Option] = {o.name: o for o in OPTIONS}
CONFIG_KEYS: dict[str, Option] = {o.config_key: o for o in OPTIONS if o.config_key}
BULK_KEYS: dict[str, Option] = {o.bulk_key: o for o in OPTIONS if o.bulk_key}


def build_config(target: Target | str, values: Mapping[str, Any], source: Source = FLAGS,
                 base: Config | None = None, **fixed: Any) -> Config:
    """The Config for TARGET from option VALUES (by Config field name, as the user gave them),
    each judged by its row of OPTIONS; absent ones keep BASE's value (else the default).  FIXED:
    fields a command sets itself, already typed (debug, per_address, the severity table).

    A target given as text is parsed after the options marked before_target (the order in which
    `check` has always said what is wrong), and refused when nothing of it would be probed."""
    unknown = set(values) - set(BY_NAME)
    if unknown:
        raise ValueError(f"build_config: no option {sorted(unknown)}")   # a caller's bug, not the user's
    fields: dict[str, Any] = {}
    rows = sorted(OPTIONS, key=lambda o: not o.before_target)
    parsed = target if isinstance(target, Target) else None
    for row in rows:
        if parsed is None and not row.before_target:
            parsed = parse_target(str(target))
            private = values.get("probe_private", base.probe_private if base else False)
            refuse_unprobeable(parsed, bool(private))      # 127.0.0.1 and the like: nothing would be probed
        if row.name in values:
            fields[row.name] = row.read(values[row.name], source)
        elif row.env and source.env_cache is not None:
            # A config file without the key: the environment's file, read at most once per load.
            # Its errors name the variable, not a line of the file: they are plain UsageErrors.
            if row.name not in source.env_cache:
                source.env_cache[row.name] = row.parse(None, row.label(FLAGS), FLAGS)
            fields[row.name] = source.env_cache[row.name]
    if parsed is None:
        parsed = parse_target(str(target))
    if {"kerberos", "realm", "kdcs"} & set(fields):
        fields["kerberos"] = bool(fields.get("kerberos") or fields.get("realm") or fields.get("kdcs"))
    fields.update(fixed)
    if base is not None:
        return dataclasses.replace(base, target=parsed, **fields)
    return Config(target=parsed, **fields)
