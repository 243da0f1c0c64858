"""`deliverck spf DOMAIN --ip ADDR`: RFC 7208 check_host for one address (docs/spf.md)."""

from __future__ import annotations

import sys

import typer

from deliverck import options
from deliverck.errors import UsageError
from deliverck.target import _show


def spf_cmd(
    domain: str = typer.Argument(..., help="The domain whose SPF record to evaluate: the MAIL FROM domain (for a "
                                 "null sender, the HELO name). Any name a receiver can be sent is evaluated; "
                                 "RFC 7208 gives malformed ones the result none."),
    ip: str = typer.Option(..., "--ip", metavar="ADDR", help="The sending address to evaluate (IPv4 or IPv6, "
                           "brackets allowed)."),
    helo: str | None = typer.Option(None, "--helo", metavar="NAME", help="HELO name, as the client sent it "
                                       "(also evaluated as an identity; address literals and single labels give "
                                       "none)."),
    sender: str | None = typer.Option(None, "--sender", metavar="ADDR", help="MAIL FROM address, as the client "
                                         "sent it (default postmaster@DOMAIN; '<>' is the null sender, checked as "
                                         "postmaster@HELO)."),
    resolver: list[str] | None = typer.Option(None, "--resolver", metavar="IP[:PORT]", help="DNS resolver (repeatable)."),
    dns_timeout: float = typer.Option(options.BY_NAME["dns_timeout"].default, "--dns-timeout", metavar="SECONDS",
                                      help="Time limit per DNS question."),
    fmt: str = typer.Option("table", "--format", "-f", help="table or json."),
    as_json: bool = typer.Option(False, "--json", help="Same as --format json."),
) -> None:
    """Evaluate SPF (RFC 7208 check_host) for one address: result, reason, explanation, trace.

    Exit 0 pass, 1 any other result, 2 bad usage, 3 could not check (the resolver failed): docs/spf.md.
    """
    import asyncio  # with the engine, not at start-up (issue 16)

    from deliverck.cli.spf_eval import parse_input, spf_command  # when the command runs: --help stays fast

    # Not an audit (no Config): --ip, --helo and --sender are the SMTP client's words, judged by
    # RFC 7208's rules in spf.cli, not by the audit's validators.
    if not as_json and fmt not in ("table", "json"):
        raise UsageError(f"unknown --format {_show(fmt)} for spf (use table or json)")
    out_format = "json" if as_json else fmt
    seconds = options.positive(dns_timeout, "--dns-timeout")       # the shared rule: finite, 0.001 to 86400
    resolvers = list(options.resolvers(resolver))
    parse_input(domain, ip, sender or "", helo or "")      # bad usage: exit 2 before any lookup
    text, code = asyncio.run(spf_command(domain, ip, helo or "", sender or "", resolvers, seconds,
                                         json=out_format == "json"))
    sys.stdout.write(text if text.endswith("\n") else text + "\n")
    raise typer.Exit(code)
