"""`deliverck check TARGET` (the default command): one audit, rendered."""

from __future__ import annotations

import sys
from typing import Any

import typer

from deliverck.cli.flags import table_flags
from deliverck.errors import UsageError
from deliverck.options import build_config
from deliverck.report import FORMATS, RenderOptions
from deliverck.target import _show


def output_format(fmt: str, as_json: bool) -> str:
    if as_json:
        return "json"
    if fmt not in FORMATS:
        raise UsageError(f"unknown --format {_show(fmt)} (use one of: {', '.join(FORMATS)})")
    return fmt


@table_flags("target", "resolvers", "outbound_ips", "only", "skip", "fmt", "as_json", "fail_on", "receivers",
             "dns_timeout", "check_timeout", "deadline", "ehlo_name", "helo_name", "ca_file", "cert_warn_days",
             "smtp_timeout", "extra_ports", "sender", "sender_profile", "dkim_selectors", "dnsbl_lists", "trust_anchor", "kerberos",
             "realm", "kdcs", "principal", "max_skew", "kdc_timeout", "probe_private", "zone_files", "baseline",
             "verbose", "debug")
def check_cmd(
    target: str = typer.Argument(..., help="Mail domain, mail host, IP address, or user@domain."),
    fmt: str = typer.Option("table", "--format", "-f",
                            help=f"Output format: {', '.join(FORMATS)} (github: workflow annotations; "
                                 "prometheus: metrics for node_exporter's textfile collector)."),
    as_json: bool = typer.Option(False, "--json", help="Same as --format json."),
    baseline: str | None = typer.Option(None, "--baseline", metavar="REPORT.json",
                                           help="An earlier --json report: judge and report only new findings, list fixed ones."),
    verbose: bool = typer.Option(False, "--verbose", "-v", help="Show informational findings and the evidence."),
    debug: bool = typer.Option(False, "--debug", help="Show tracebacks of internal errors."),
    **values: Any,
) -> None:
    """Audit TARGET and predict the bounces it would cause (the default command)."""
    out_format = output_format(fmt, as_json)
    config = build_config(target, values, debug=debug)
    # The engine is imported once the flags are judged valid: `--help` and bad usage stay fast (issue 16).
    import asyncio

    from deliverck.baseline import apply_baseline, load_baseline
    from deliverck.runner import run_audit, select_checks

    base = load_baseline(baseline) if baseline is not None else None
    if config.target.is_ip and config.kdcs and not config.realm:
        raise UsageError("--kdc with an IP address as target: give the realm too (--realm EXAMPLE.COM)")
    select_checks(config)  # unknown check names are bad usage: fail before any lookup
    report = asyncio.run(run_audit(config))
    if base is not None:
        report = apply_baseline(report, base)
    sys.stdout.write(FORMATS[out_format](report, RenderOptions(verbose=verbose, debug=debug)))
    sys.stdout.flush()
    raise typer.Exit(report.exit_code)
