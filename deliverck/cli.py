"""Command line: parse, build a Config, run, render.  Nothing else lives here.

`deliverck example.com` means `deliverck check example.com`: when the first
argument is not a command, `check` is implied.
"""

from __future__ import annotations

import asyncio
import math
import os
import sys
import traceback
from typing import List, Optional

import typer

from deliverck import __version__
from deliverck.config import Config
from deliverck.errors import DeliverckError, UsageError
from deliverck.model import EXIT_INCOMPLETE, EXIT_USAGE, Severity
from deliverck.net.addresses import is_ip
from deliverck.net.dns import parse_resolver
from deliverck.report import FORMATS, RenderOptions
from deliverck.target import _show, parse_target, refuse_unprobeable

app = typer.Typer(
    add_completion=False,
    pretty_exceptions_enable=False,
    no_args_is_help=True,
    help="Predict the bounces (NDRs) a mail server will cause, before it causes them.",
)


def _version(value: bool) -> None:
    if value:
        typer.echo(f"deliverck {__version__}")
        raise typer.Exit(0)


@app.callback()
def _root(
    version: bool = typer.Option(False, "--version", callback=_version, is_eager=True,
                                 help="Print the version and exit."),
) -> None:
    """deliverck TARGET runs every check; see `deliverck check --help`."""


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


def _split(values: Optional[List[str]]) -> tuple[str, ...]:
    out: list[str] = []
    for v in values or []:
        out += [x.strip() for x in v.split(",") if x.strip()]
    return tuple(out)


def _items(values: Optional[List[str]], option: str, what: str, limit: int = MAX_ITEMS,
           empty_ok: bool = False) -> tuple[str, ...]:
    """The comma-separated items of a list option.

    An option given with no item (`--only ''`, `--ip "$UNSET"`) is a mistake, never "the
    default": an empty --only would silently run every check.  empty_ok: a config file's or
    a bulk line's empty list, where "none" is exactly what the default does (`ips = []`).
    """
    items = _split(values)
    if values is not None and not items and not empty_ok:
        raise UsageError(f"{option} is empty: give {what}, or leave it out")
    if len(items) > limit:
        raise UsageError(f"{option}: {len(items)} items, at most {limit} in one audit")
    return items


def _check_names(values: Optional[List[str]], option: str, empty_ok: bool = False) -> tuple[str, ...]:
    return _items(values, option, "check names separated by commas (see `deliverck checks`)", empty_ok=empty_ok)


def _ips(values: Optional[List[str]], option: str = "--ip", empty_ok: bool = False) -> tuple[str, ...]:
    out = []
    for addr in _items(values, option, "the server's outbound IPv4 or IPv6 addresses", empty_ok=empty_ok):
        if not is_ip(addr):
            raise UsageError(f"{option}: {_show(addr)} is not an IP address "
                             "(give the server's outbound IPv4 or IPv6 address)")
        out.append(addr)
    return tuple(out)


def _receivers(value: Optional[str], option: str = "--receivers") -> tuple[str, ...]:
    from deliverck.ndr.catalog import parse_receivers

    if value is not None and not value.strip(" ,"):
        raise UsageError(f"{option} is empty: give 'default', 'all' or receiver ids (see `deliverck checks`)")
    try:
        return tuple(parse_receivers(value))
    except ValueError as e:
        raise UsageError(f"{option}: {e}") from None


def _severity(text: str, option: str) -> Severity:
    try:
        return Severity.from_text(text)
    except ValueError as e:
        raise UsageError(f"{option}: {e}") from None


def _format(fmt: str, as_json: bool) -> str:
    if as_json:
        return "json"
    if fmt not in FORMATS:
        raise UsageError(f"unknown --format {_show(fmt)} (use one of: {', '.join(FORMATS)})")
    return fmt


def _positive(value: float, option: str) -> float:
    """A time limit in seconds: finite, MIN_SECONDS to MAX_SECONDS (inf, nan and 1e-320 are typos, not limits)."""
    try:
        seconds = float(value)
    except (TypeError, ValueError, OverflowError):
        seconds = math.nan
    if not (math.isfinite(seconds) and MIN_SECONDS <= seconds <= MAX_SECONDS):
        raise UsageError(f"{option} must be a positive number of seconds, at least {MIN_SECONDS:g} and at most "
                         f"{MAX_SECONDS:g} (not {value!r})")
    return seconds


def _megabytes(value: float, option: str = "--max-size") -> int:
    """A size in MB (explain --max-size) as bytes: finite, above 0, at most MAX_EXPLAIN_MB."""
    try:
        mb = float(value)
    except (TypeError, ValueError, OverflowError):
        mb = math.nan
    if not (math.isfinite(mb) and 0 < mb <= MAX_EXPLAIN_MB):
        raise UsageError(f"{option} must be a number of megabytes above 0, at most {MAX_EXPLAIN_MB} (not {value!r})")
    return max(1, int(mb * 1024 * 1024))


def _path_error(label: str, path: str, e: Exception) -> UsageError:
    """One line for a file option that cannot be used: `--ca-file /x: is a directory`."""
    return UsageError(f"{label} {path}: {e}" if path else f"{label} {e}")


def _cert_warn_days(days: int, option: str = "--cert-warn-days") -> int:
    if isinstance(days, bool) or not isinstance(days, int) or not 0 <= days <= MAX_CERT_WARN_DAYS:
        raise UsageError(f"{option} must be 0 or more days, at most {MAX_CERT_WARN_DAYS} (not {days!r})")
    return days


def _env_path(path: Optional[str], env: str, option: str) -> tuple[Optional[str], str]:
    """(path, label for messages): the option's value, else the environment variable's."""
    if path is None:
        path = os.environ.get(env) or None
    label = f"{option} (from ${env})" if path is not None and path == os.environ.get(env) else option
    if path is not None and not path.strip():
        raise UsageError(f"{label} is empty: give a file")
    return path, label


def _trust_anchor(path: Optional[str]):
    """--trust-anchor, else $DELIVERCK_TRUST_ANCHOR, else None (IANA's root keys)."""
    path, label = _env_path(path, TRUST_ANCHOR_ENV, "--trust-anchor")
    if path is None:
        return None
    from pathlib import Path

    from deliverck.inputfile import ReadError, read_limited, regular_file
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


def _dnsbl(values: Optional[List[str]], option: str = "--dnsbl") -> tuple[str, ...]:
    from deliverck.dnsbl import check_selection

    items = _items(values, option, "DNSBL ids or zones (see `deliverck checks`)")
    try:
        check_selection(items)
    except ValueError as e:
        raise UsageError(f"{option}: {e}") from None
    return items


def _sender(text: Optional[str]) -> str:
    if text is None:
        return ""
    from deliverck.target import normalise_name

    s = text.strip()
    if s.count("@") != 1 or not s.split("@")[0] or any(c.isspace() or ord(c) < 32 for c in s):
        raise UsageError(f"--sender {_show(text)} is not a mail address (use e.g. bounces@example.com)")
    local, domain = s.split("@")
    try:
        return f"{local}@{normalise_name(domain)}"
    except UsageError as e:
        raise UsageError(f"--sender {_show(text)}: {e}") from None


def _selector(text: str) -> str:
    from deliverck.target import is_hostname

    s = text.strip().strip(".").lower()
    # A selector is one or more DNS labels (RFC 6376 3.1); it sits under _domainkey.
    if not s or not is_hostname(s + ".example"):
        raise UsageError(f"--dkim-selector {_show(text)} is not a valid selector (letters, digits, hyphens, dots)")
    return s


def _ports(text: Optional[str]) -> tuple[int, ...]:
    if text is None:
        return ()
    out = []
    for part in _split([text]):
        if not (part.isdigit() and len(part) <= 5) or not 0 < int(part) < 65536:
            raise UsageError(f"--ports {_show(text)}: give port numbers separated by commas, e.g. 25,465,587")
        if int(part) not in out:
            out.append(int(part))
    if not out:
        raise UsageError("--ports is empty: give port numbers separated by commas, e.g. 465,587")
    if len(out) > MAX_PORTS:
        raise UsageError(f"--ports: {len(out)} ports, at most {MAX_PORTS} (the submission ports, e.g. 465,587)")
    return tuple(p for p in out if p != 25)


def _ehlo_name(name: Optional[str]) -> str:
    if name is None:
        return ""
    from deliverck.target import is_address_literal, is_hostname

    n = name.strip().rstrip(".")
    if not (is_hostname(n) or (is_address_literal(n) and n.startswith("["))):
        raise UsageError(f"--ehlo-name {_show(name)} is not a fully qualified host name or [address] literal "
                         "(e.g. probe.example.com)")
    return n


def _helo(name: Optional[str]) -> str:
    if name is None:
        return ""
    n = name.strip()
    if not n or len(n) > 255 or not n.isprintable() or " " in n:
        raise UsageError(f"--helo {_show(name)}: give the single name the server sends in HELO/EHLO")
    return n


def _realm(realm: Optional[str]) -> str:
    if realm is None:
        return ""
    r = realm.strip()
    if not r or len(r) > 255 or not r.isascii() or not r.isprintable() or any(c in r for c in " /@\\"):
        raise UsageError(f"--realm {_show(realm)}: give a Kerberos realm name such as EXAMPLE.COM")
    return r


def _kdc(value: str) -> tuple[str, int]:
    """HOST, HOST:PORT, IPv6, [IPv6]:PORT -> (host, port)."""
    from deliverck.target import is_hostname

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


def _principal(name: Optional[str]) -> str:
    if name is None:
        return ""
    n = name.strip()
    if not n or len(n) > 255 or not n.isprintable() or " " in n or "@" in n:
        raise UsageError(f"--principal {_show(name)}: give a client name without realm, e.g. probe or host/mx1")
    return n


def _resolvers(values: Optional[List[str]], option: str = "--resolver") -> tuple:
    if values is not None and len(values) > MAX_ITEMS:
        raise UsageError(f"{option}: {len(values)} resolvers, at most {MAX_ITEMS}")
    return tuple(parse_resolver(r) for r in values or [])


def _dkim_selectors(values: Optional[List[str]], option: str = "--dkim-selector",
                    empty_ok: bool = False) -> tuple[str, ...]:
    return tuple(_selector(x) for x in _items(values, option, "DKIM selectors", empty_ok=empty_ok))


def _kdcs(values: Optional[List[str]], option: str = "--kdc", empty_ok: bool = False) -> tuple[tuple[str, int], ...]:
    return tuple(_kdc(k) for k in _items(values, option, "KDCs as HOST[:PORT]", empty_ok=empty_ok))


def _ca_file(path: Optional[str]):
    """--ca-file, else $DELIVERCK_CA_FILE, else None (the system store only)."""
    path, label = _env_path(path, CA_FILE_ENV, "--ca-file")
    if path is None:
        return None
    from pathlib import Path

    from deliverck.inputfile import ReadError, regular_file
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


def _zone_files(values: Optional[List[str]]):
    from deliverck.net.overlay import load_overlay, parse_zone_file_option, read_zone_text

    if values is not None and len(values) > MAX_ITEMS:
        raise UsageError(f"--zone-file: {len(values)} files, at most {MAX_ITEMS}")
    # Each file is read here, once: a pipe (`--zone-file <(git show main:zone)`) has no second read.
    specs = tuple(read_zone_text(parse_zone_file_option(v)) for v in values or [])
    load_overlay(specs)        # syntax errors: one line, exit 2, before any lookup
    return specs


def _baseline(path: Optional[str]):
    if path is None:
        return None
    from deliverck.baseline import load_baseline

    return load_baseline(path)


@app.command("check")
def check_cmd(
    target: str = typer.Argument(..., help="Mail domain, mail host, IP address, or user@domain."),
    resolver: Optional[List[str]] = typer.Option(None, "--resolver", metavar="IP[:PORT]",
                                                 help="DNS resolver to use (repeatable); default: /etc/resolv.conf."),
    ip: Optional[List[str]] = typer.Option(None, "--ip", metavar="ADDR",
                                           help="An outbound address of the server, if it differs from the MX addresses (repeatable)."),
    only: Optional[List[str]] = typer.Option(None, "--only", metavar="CHECK[,CHECK]", help="Run only these checks."),
    skip: Optional[List[str]] = typer.Option(None, "--skip", metavar="CHECK[,CHECK]", help="Do not run these checks."),
    fmt: str = typer.Option("table", "--format", "-f",
                            help=f"Output format: {', '.join(FORMATS)} (github: workflow annotations; "
                                 "prometheus: metrics for node_exporter's textfile collector)."),
    as_json: bool = typer.Option(False, "--json", help="Same as --format json."),
    fail_on: str = typer.Option("error", "--fail-on", metavar="LEVEL",
                                help="Fail (exit 1) when a finding reaches this severity: info, notice, warning, error, critical."),
    receivers: Optional[str] = typer.Option(None, "--receivers", metavar="SYSTEM[,SYSTEM]",
                                            help="Receiver systems to predict NDRs for ('default', 'all', or ids; see `deliverck checks`)."),
    dns_timeout: float = typer.Option(5.0, "--dns-timeout", metavar="SECONDS", help="Time limit per DNS question."),
    check_timeout: float = typer.Option(30.0, "--check-timeout", metavar="SECONDS", help="Time limit per check."),
    deadline: float = typer.Option(60.0, "--deadline", metavar="SECONDS", help="Time limit for the whole run."),
    ehlo_name: Optional[str] = typer.Option(None, "--ehlo-name", metavar="NAME",
                                            help="Name deliverck gives in EHLO (default: this machine's FQDN, else deliverck-probe.invalid)."),
    helo: Optional[str] = typer.Option(None, "--helo", metavar="NAME",
                                       help="The name the audited server uses in HELO for outbound mail (default: the name it announces)."),
    ca_file: Optional[str] = typer.Option(None, "--ca-file", metavar="PEM", envvar=CA_FILE_ENV,
                                          help="Extra trusted CA certificates (a private CA) besides the system store."),
    cert_warn_days: int = typer.Option(21, "--cert-warn-days", metavar="DAYS", help="Warn when a certificate expires sooner."),
    smtp_timeout: float = typer.Option(10.0, "--smtp-timeout", metavar="SECONDS",
                                       help="Time limit per SMTP step (connect, greeting, EHLO, STARTTLS)."),
    ports: Optional[str] = typer.Option(None, "--ports", metavar="PORT[,PORT]",
                                        help="Also probe these ports of every MX address (e.g. 465,587); 25 is always probed."),
    sender: Optional[str] = typer.Option(None, "--sender", metavar="ADDR",
                                         help="Envelope sender the server uses (default: postmaster@DOMAIN)."),
    dkim_selector: Optional[List[str]] = typer.Option(None, "--dkim-selector", metavar="SELECTOR",
                                                      help="A DKIM selector the domain signs with (repeatable)."),
    dnsbl: Optional[List[str]] = typer.Option(None, "--dnsbl", metavar="LIST",
                                              help="DNSBL ids or zones to query instead of the default set (repeatable)."),
    trust_anchor: Optional[str] = typer.Option(None, "--trust-anchor", metavar="FILE", envvar=TRUST_ANCHOR_ENV,
                                               help="DNSSEC trust anchor for the root (DS or DNSKEY records); default: IANA's root KSKs."),
    kerberos: bool = typer.Option(False, "--kerberos",
                                  help="Run the Kerberos check even when nothing suggests Active Directory/Exchange."),
    realm: Optional[str] = typer.Option(None, "--realm", metavar="REALM",
                                        help="Kerberos realm (default: _kerberos TXT, else the domain in upper case); implies --kerberos."),
    kdc: Optional[List[str]] = typer.Option(None, "--kdc", metavar="HOST[:PORT]",
                                            help="A KDC / domain controller to probe instead of the SRV records (repeatable); implies --kerberos."),
    principal: Optional[str] = typer.Option(None, "--principal", metavar="NAME",
                                            help="Client principal for the AS-REQ probe (default: a random name no directory holds)."),
    max_skew: float = typer.Option(300.0, "--max-skew", metavar="SECONDS",
                                   help="Largest clock difference Kerberos accepts (default 300, AD's and MIT's default)."),
    kdc_timeout: float = typer.Option(5.0, "--kdc-timeout", metavar="SECONDS", help="Time limit per KDC port probe."),
    probe_private: bool = typer.Option(False, "--probe-private",
                                       help="Also connect to MX addresses in private, loopback or CGNAT ranges."),
    zone_file: Optional[List[str]] = typer.Option(None, "--zone-file", metavar="FILE[:ORIGIN]",
                                                  help="Answer names in this zone from FILE (a proposed change) instead of DNS (repeatable)."),
    baseline: Optional[str] = typer.Option(None, "--baseline", metavar="REPORT.json",
                                           help="An earlier --json report: judge and report only new findings, list fixed ones."),
    verbose: bool = typer.Option(False, "--verbose", "-v", help="Show informational findings and the evidence."),
    debug: bool = typer.Option(False, "--debug", help="Show tracebacks of internal errors."),
) -> None:
    """Audit TARGET and predict the bounces it would cause (the default command)."""
    from deliverck.runner import run_audit, select_checks

    out_format = _format(fmt, as_json)
    severity = _severity(fail_on, "--fail-on")
    recv = _receivers(receivers)
    resolvers = _resolvers(resolver)
    parsed = parse_target(target)
    refuse_unprobeable(parsed, probe_private)      # 127.0.0.1 and the like: nothing would be probed
    config = Config(
        target=parsed,
        resolvers=resolvers,
        outbound_ips=_ips(ip),
        only=_check_names(only, "--only"),
        skip=_check_names(skip, "--skip"),
        receivers=recv,
        fail_on=severity,
        dns_timeout=_positive(dns_timeout, "--dns-timeout"),
        check_timeout=_positive(check_timeout, "--check-timeout"),
        deadline=_positive(deadline, "--deadline"),
        debug=debug,
        ehlo_name=_ehlo_name(ehlo_name),
        helo_name=_helo(helo),
        ca_file=_ca_file(ca_file),
        cert_warn_days=_cert_warn_days(cert_warn_days),
        smtp_timeout=_positive(smtp_timeout, "--smtp-timeout"),
        probe_private=probe_private,
        extra_ports=_ports(ports),
        sender=_sender(sender),
        dkim_selectors=_dkim_selectors(dkim_selector),
        dnsbl_lists=_dnsbl(dnsbl),
        trust_anchor=_trust_anchor(trust_anchor),
        kerberos=kerberos or bool(realm) or bool(kdc),
        realm=_realm(realm),
        kdcs=_kdcs(kdc),
        principal=_principal(principal),
        max_skew=_positive(max_skew, "--max-skew"),
        kdc_timeout=_positive(kdc_timeout, "--kdc-timeout"),
        zone_files=_zone_files(zone_file),
    )
    base = _baseline(baseline)
    if config.target.is_ip and config.kdcs and not config.realm:
        raise UsageError("--kdc with an IP address as target: give the realm too (--realm EXAMPLE.COM)")
    select_checks(config)  # unknown check names are bad usage: fail before any lookup
    report = asyncio.run(run_audit(config))
    if base is not None:
        from deliverck.baseline import apply_baseline

        report = apply_baseline(report, base)
    sys.stdout.write(FORMATS[out_format](report, RenderOptions(verbose=verbose, debug=debug)))
    sys.stdout.flush()
    raise typer.Exit(report.exit_code)


@app.command("spf")
def spf_cmd(
    domain: str = typer.Argument(..., help="The domain whose SPF record to evaluate: the MAIL FROM domain (for a "
                                 "null sender, the HELO name). Any name a receiver can be sent is evaluated; "
                                 "RFC 7208 gives malformed ones the result none."),
    ip: str = typer.Option(..., "--ip", metavar="ADDR", help="The sending address to evaluate (IPv4 or IPv6, "
                           "brackets allowed)."),
    helo: Optional[str] = typer.Option(None, "--helo", metavar="NAME", help="HELO name, as the client sent it "
                                       "(also evaluated as an identity; address literals and single labels give "
                                       "none)."),
    sender: Optional[str] = typer.Option(None, "--sender", metavar="ADDR", help="MAIL FROM address, as the client "
                                         "sent it (default postmaster@DOMAIN; '<>' is the null sender, checked as "
                                         "postmaster@HELO)."),
    resolver: Optional[List[str]] = typer.Option(None, "--resolver", metavar="IP[:PORT]", help="DNS resolver (repeatable)."),
    dns_timeout: float = typer.Option(5.0, "--dns-timeout", metavar="SECONDS", help="Time limit per DNS question."),
    fmt: str = typer.Option("table", "--format", "-f", help="table or json."),
    as_json: bool = typer.Option(False, "--json", help="Same as --format json."),
) -> None:
    """Evaluate SPF (RFC 7208 check_host) for one address: result, reason, explanation, trace.

    Exit 0 pass, 1 any other result, 2 bad usage, 3 could not check (the resolver failed): docs/spf.md.
    """
    from deliverck.spf.cli import parse_input, spf_command

    if not as_json and fmt not in ("table", "json"):
        raise UsageError(f"unknown --format {_show(fmt)} for spf (use table or json)")
    out_format = "json" if as_json else fmt
    seconds = _positive(dns_timeout, "--dns-timeout")       # the shared rule: finite, 0.001 to 86400
    resolvers = list(_resolvers(resolver))
    parse_input(domain, ip, sender or "", helo or "")      # bad usage: exit 2 before any lookup
    text, code = asyncio.run(spf_command(domain, ip, helo or "", sender or "", resolvers, seconds,
                                         json=out_format == "json"))
    sys.stdout.write(text if text.endswith("\n") else text + "\n")
    raise typer.Exit(code)


@app.command("checks")
def checks_cmd(
    fmt: str = typer.Option("table", "--format", "-f", help="table, json or markdown."),
) -> None:
    """List every check and every finding it can emit, with severity and NDR keys."""
    from deliverck.report.checklist import render_checks

    if fmt not in ("table", "json", "markdown"):
        raise UsageError(f"unknown --format {_show(fmt)} (use one of: table, json, markdown)")
    sys.stdout.write(render_checks(fmt))


_EXPLAIN_PATHLIKE = (".eml", ".msg", ".txt", ".mbox", ".mbx", ".dsn", ".json", ".log")


def _explain_inputs(inputs: List[str]) -> tuple[str, list[str]]:
    """('stdin'|'dir'|'files'|'text', items) from the INPUT arguments."""
    import os

    items = [x for x in inputs]
    if not items or not any(x.strip() for x in items):
        raise UsageError("explain: give a status code (5.7.506), a reply line, pasted text, a bounce file, "
                         "a directory, or - for standard input")
    if items == ["-"]:
        return "stdin", items
    exists = [os.path.exists(x) for x in items]
    if len(items) == 1 and os.path.isdir(items[0]):
        return "dir", items
    if all(exists):
        for x in items:
            if os.path.isdir(x):
                raise UsageError(f"explain: {x} is a directory: give one directory, or files")
        return "files", items
    if any(exists) and len(items) > 1 and sum(exists) > 1:
        missing = next(x for x, e in zip(items, exists) if not e)
        raise UsageError(f"explain: {missing}: no such file")
    if len(items) == 1:
        x = items[0].strip()
        if " " not in x and (x.lower().endswith(_EXPLAIN_PATHLIKE) or x.startswith(("/", "./", "../", "~"))):
            raise UsageError(f"explain: {x}: no such file or directory")
    return "text", [" ".join(items)]


def _explain_run(e, opts: dict, as_json, verbose, debug) -> int:
    from deliverck.explain.render import render_json, render_table
    from deliverck.explain.run import plan
    from deliverck.registry import check_ids
    from deliverck.report import FORMATS as REPORT_FORMATS
    from deliverck.runner import run_audit

    rp = plan(e)
    known = set(check_ids())
    checks = tuple(c for c in rp.checks if c in known)
    why = ""
    if checks and rp.target:
        try:
            target = parse_target(rp.target)
            refuse_unprobeable(target, False, option=f"`deliverck {rp.target} --probe-private`")
        except UsageError as ex:
            why = f"cannot audit {rp.target!r}: {ex}"
    if not checks or not rp.target or why:
        why = why or (rp.why if not rp.target or not rp.checks else "none of its checks is installed")
        if as_json:
            doc = render_json(e)
            import json as _json

            d = _json.loads(doc)
            d["run"] = {"ran": False, "reason": why}
            sys.stdout.write(_json.dumps(d, indent=2, ensure_ascii=False) + "\n")
        else:
            sys.stdout.write(render_table(e, verbose=verbose) + f"\nrun: nothing to run: {why}\n")
        return e.exit_code
    config = Config(
        target=target,
        resolvers=opts["resolvers"],
        outbound_ips=rp.outbound_ips,
        only=checks,
        dns_timeout=opts["dns_timeout"],
        deadline=opts["deadline"],
        debug=debug,
        helo_name=_helo(rp.helo) if rp.helo else "",
        sender=_sender(rp.sender) if rp.sender else "",
        ca_file=opts["ca_file"],
        trust_anchor=opts["trust_anchor"],
        kerberos=rp.kerberos,
    )
    report = asyncio.run(run_audit(config))
    if as_json:
        import json as _json

        audit = _json.loads(REPORT_FORMATS["json"](report, RenderOptions(verbose=verbose, debug=debug)))
        d = _json.loads(render_json(e))
        d["run"] = {"ran": True, "target": rp.target, "why": rp.why, "checks": list(checks), "exit_code": report.exit_code}
        d["audit"] = audit
        sys.stdout.write(_json.dumps(d, indent=2, ensure_ascii=False) + "\n")
    else:
        sys.stdout.write(render_table(e, verbose=verbose))
        sys.stdout.write(f"\nrun: {', '.join(checks)} against {rp.target} ({rp.why})\n\n")
        sys.stdout.write(REPORT_FORMATS["table"](report, RenderOptions(verbose=verbose, debug=debug)))
    return report.exit_code


def _explain_options(ctx, run: bool, resolver, dns_timeout, deadline, ca_file, trust_anchor) -> dict:
    """The --run options, validated before any input is read, with or without --run: a value that
    is wrong is wrong either way.  A file named only by $DELIVERCK_CA_FILE/$DELIVERCK_TRUST_ANCHOR
    is read only for --run (the lab sets them for every command; explaining a code reads no file)."""
    def given(name: str) -> bool:
        # By name: typer vendors click in some releases (see _usage_error).
        return run or getattr(ctx.get_parameter_source(name), "name", "DEFAULT") not in ("ENVIRONMENT", "DEFAULT")

    return {
        "resolvers": _resolvers(resolver),
        "dns_timeout": _positive(dns_timeout, "--dns-timeout"),
        "deadline": _positive(deadline, "--deadline"),
        "ca_file": _ca_file(ca_file) if given("ca_file") else None,
        "trust_anchor": _trust_anchor(trust_anchor) if given("trust_anchor") else None,
    }


@app.command("explain")
def explain_cmd(
    ctx: typer.Context,
    inputs: Optional[List[str]] = typer.Argument(None, metavar="INPUT...",
                                                 help="An enhanced status code (5.7.506), a reply line, a pasted diagnostic block, "
                                                      "a bounce file (.eml, mbox), a directory of them, or - for standard input."),
    as_json: bool = typer.Option(False, "--json", help="One JSON document (schema deliverck.explain/1)."),
    jsonl: bool = typer.Option(False, "--jsonl", help="One JSON line per message, written as each is read (for directories)."),
    run: bool = typer.Option(False, "--run", help="Run the checks that test the cause against the host/IP/domain the bounce names."),
    max_size: float = typer.Option(10.0, "--max-size", metavar="MB",
                                   help=f"Read at most this many MB of each file (above 0, at most {MAX_EXPLAIN_MB})."),
    resolver: Optional[List[str]] = typer.Option(None, "--resolver", metavar="IP[:PORT]", help="--run: DNS resolver (repeatable)."),
    dns_timeout: float = typer.Option(5.0, "--dns-timeout", metavar="SECONDS", help="--run: time limit per DNS question."),
    deadline: float = typer.Option(60.0, "--deadline", metavar="SECONDS", help="--run: time limit for the audit."),
    ca_file: Optional[str] = typer.Option(None, "--ca-file", metavar="PEM", envvar=CA_FILE_ENV,
                                          help="--run: extra trusted CA certificates."),
    trust_anchor: Optional[str] = typer.Option(None, "--trust-anchor", metavar="FILE", envvar=TRUST_ANCHOR_ENV,
                                               help="--run: DNSSEC trust anchor for the root."),
    verbose: bool = typer.Option(False, "--verbose", "-v", help="Show all the evidence."),
    debug: bool = typer.Option(False, "--debug", help="Show tracebacks of internal errors."),
) -> None:
    """Explain a bounce: the reply, the systems, a category, meaning, owner, fix and the checks that test the cause.

    An input with no SMTP reply, no delivery-status report and no bounce wording is "not a bounce" (one line, no category); a directory skips such inputs and counts them in its last line.

    Exit 0: explained; 1: undetermined or not a bounce (in a directory: some message undetermined or unreadable, or nothing a bounce); 2: bad usage or input.  With --run, the audit's exit code."""
    from deliverck.explain import engine, reader
    from deliverck.explain.render import not_a_bounce_line, render_json, render_jsonl, render_table, skipped_summary

    if as_json and jsonl:
        raise UsageError("explain: use either --json or --jsonl")
    limit = _megabytes(max_size)
    opts = _explain_options(ctx, run, resolver, dns_timeout, deadline, ca_file, trust_anchor)
    mode, items = _explain_inputs(inputs or [])
    if mode in ("dir", "files") and (run and (mode == "dir" or len(items) > 1)):
        raise UsageError("explain: --run takes one bounce, not a directory or several files")
    if mode == "dir" and as_json:
        raise UsageError("explain: a directory gives one result per message: use --jsonl")
    if mode == "text":
        results = iter([engine.explain_text(items[0])])
    elif mode == "stdin":
        data = sys.stdin.buffer.read(limit + 1)
        notes = [f"input over {limit} bytes: only the first {limit} were read"] if len(data) > limit else []
        results = iter(engine.explain_bytes(data[:limit], "stdin", notes))
    elif mode == "dir":
        import os

        if not os.access(items[0], os.R_OK | os.X_OK):
            raise UsageError(f"explain: cannot read the directory {items[0]}")
        results = engine.iter_directory(items[0], limit)
    else:
        results = (e for path in items for e in engine.explain_path(path, limit))
    multi = mode == "dir" or len(items) > 1
    if not multi and not jsonl:
        found = list(x for _, x in zip(range(reader.MAX_MESSAGES + 1), results))
        if len(found) == 1 and found[0].error:
            raise UsageError(f"explain: {found[0].error}")
        if len(found) > 1 and as_json:
            raise UsageError(f"explain: {items[0]} holds {len(found)} messages: use --jsonl for one line per message")
        if len(found) > 1 or not run or not found[0].is_bounce:
            code = 0
            for i, e in enumerate(found):
                if as_json:
                    sys.stdout.write(render_json(e))
                else:
                    sys.stdout.write(("\n" if i else "") + render_table(e, verbose=verbose, header=len(found) > 1))
                code = max(code, 1 if e.exit_code else 0) if len(found) > 1 else e.exit_code
            sys.stdout.flush()
            raise typer.Exit(code)
        raise typer.Exit(_explain_run(found[0], opts, as_json, verbose, debug))
    # Directory triage skips what is not a bounce (docs/explain.md): the table says how many and why in
    # one closing line (-v: one line per skipped input); --jsonl keeps one record per input, the
    # skipped ones with category "not_a_bounce".  Skipped inputs do not make the exit code 1, unless
    # nothing at all was a bounce.
    code = 0
    printed = total = 0
    skipped: dict[str, int] = {}
    for e in results:
        total += 1
        skip = mode == "dir" and not e.is_bounce and not e.error
        if skip:
            skipped[e.bounce.not_bounce_kind] = skipped.get(e.bounce.not_bounce_kind, 0) + 1
        if jsonl:
            sys.stdout.write(render_jsonl(e))
        elif skip:
            if verbose:
                sys.stdout.write(not_a_bounce_line(e))
        else:
            sys.stdout.write(("\n" if printed else "") + render_table(e, verbose=verbose, header=True))
            printed += 1
        sys.stdout.flush()
        if e.exit_code and not skip:
            code = 1
    if mode == "dir" and total and sum(skipped.values()) == total:
        code = 1
    if mode == "dir" and not total:
        # Nothing to read is not a bounce explained (docs/explain.md: exit 1 when nothing in it was a bounce).
        note = f"{items[0]}: no file to read in it (hidden names and special files are skipped)\n"
        (sys.stderr if jsonl else sys.stdout).write(("deliverck: explain: " if jsonl else "") + note)
        code = 1
    if skipped and not jsonl:
        sys.stdout.write(("\n" if printed else "") + skipped_summary(skipped, total))
    raise typer.Exit(code)


def _mount_lab() -> None:
    try:
        from deliverck.lab.cli import lab_app
    except ImportError:  # the lab is optional in a slim install
        return
    app.add_typer(lab_app, name="lab", help="The built-in hermetic lab (tests, demo, benchmark).")


_mount_lab()
from deliverck import cli_bulk as _cli_bulk  # noqa: E402,F401  (registers `deliverck bulk`)

_COMMANDS_HELP = ("--help", "-h", "--version")


_CLICK: list = []


def _click_command():
    """The click command of the app, built once per process (typer builds it anew on each call,
    tens of milliseconds that every run would pay two or three times)."""
    if not _CLICK:
        _CLICK.append(typer.main.get_command(app))
    return _CLICK[0]


def _with_default_command(args: list[str]) -> list[str]:
    command = _click_command()
    names = set(getattr(command, "commands", {}))
    if not args or args[0].split("=", 1)[0] in _COMMANDS_HELP or args[0] in names:
        return args
    _not_a_command(args[0], names)
    return ["check", *args]


def _not_a_command(word: str, names: set[str]) -> None:
    """`deliverck help` or `deliverck expalin 5.7.1` is a mistyped command, not a target: a target
    has a dot (single labels are refused anyway), so say which command was meant."""
    import difflib

    w = word.strip().lower()
    if not w or w.startswith("-") or any(c in w for c in ".:@[/"):
        return
    if w in ("help", "version"):
        raise UsageError(f"{_show(word)} is not a command: use `deliverck --{w}`")
    close = difflib.get_close_matches(w, sorted(names), n=1, cutoff=0.75)
    if close:
        raise UsageError(f"unknown command {_show(word)}: did you mean `deliverck {close[0]}`? "
                         "(a target is a domain, host or address, e.g. example.com)")


def _help_hint(ctx, args: list[str]) -> str:
    """`deliverck lab run --help` for an error in `lab run`; click raises some errors (a flag given
    a value) without a context, and then the command is read from the arguments."""
    path = getattr(ctx, "command_path", "") or ""
    if not path or path == "deliverck":
        cmd, words = _click_command(), ["deliverck"]
        for a in args:
            sub = getattr(cmd, "commands", {}).get(a)
            if sub is None:
                break
            words.append(a)
            cmd = sub
        path = " ".join(words)
    return f"{path} --help"


def _usage_error(e: Exception) -> bool:
    # Typer has vendored click in some releases and depends on it in others:
    # recognise click's exceptions by shape rather than by import.
    return hasattr(e, "format_message") and type(e).__name__ in (
        "UsageError", "BadParameter", "MissingParameter", "NoSuchOption", "BadOptionUsage",
        "BadArgumentUsage", "ClickException", "FileError",
    )


def main(argv: Optional[List[str]] = None) -> None:
    args = list(sys.argv[1:] if argv is None else argv)
    debug = "--debug" in args
    command = _click_command()
    try:
        rc = command.main(args=_with_default_command(args), prog_name="deliverck", standalone_mode=False)
    except DeliverckError as e:
        if debug:
            traceback.print_exc()
        sys.stderr.write(f"deliverck: error: {e}\n")
        rc = e.exit_code
    except KeyboardInterrupt:
        sys.stderr.write("deliverck: interrupted\n")
        rc = 130
    except Exception as e:  # never a bare traceback for users
        name = type(e).__name__
        if name == "Exit" and hasattr(e, "exit_code"):
            rc = e.exit_code
        elif name == "NoArgsIsHelpError":  # help was printed: usage, not an error line
            rc = EXIT_USAGE
        elif name == "Abort":
            sys.stderr.write("deliverck: interrupted\n")
            rc = 130
        elif _usage_error(e):
            hint = _help_hint(getattr(e, "ctx", None), _with_default_command(args))
            msg = " ".join(e.format_message().split())
            sys.stderr.write(f"deliverck: error: {msg} (see `{hint}`)\n")
            rc = EXIT_USAGE
        else:
            if debug:
                traceback.print_exc()
            sys.stderr.write(
                f"deliverck: internal error: {name}: {e} (rerun with --debug and report it)\n"
            )
            rc = EXIT_INCOMPLETE
    sys.exit(rc if isinstance(rc, int) else 0)

from deliverck import cli_ops as _cli_ops  # noqa: E402,F401  (registers `audit` on app)
