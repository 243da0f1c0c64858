"""`deliverck message FILE|DIR|MBOX|-`: judge real messages as the large receivers would (docs/message.md)."""

from __future__ import annotations

import sys
from typing import Any

import typer

from deliverck.cli.check import output_format
from deliverck.cli.flags import table_flags
from deliverck.errors import UsageError
from deliverck.model import EXIT_FAIL, EXIT_INCOMPLETE, EXIT_PASS
from deliverck.report import FORMATS, RenderOptions
from deliverck.target import _show

# The flags of `check` that mean the same for a message: where DNS comes from, whom to predict for,
# what fails, how long to wait.
REPORT_FLAGS = ("fmt", "as_json", "fail_on", "receivers", "sender_profile", "resolvers", "zone_files", "dns_timeout",
                "check_timeout", "deadline", "dnsbl_lists", "verbose", "debug")


def mail_from_option(text: str | None, option: str = "--mail-from") -> str | None:
    """The envelope sender as a receiver saw it in MAIL FROM: `<>` (or "") is the null sender of
    bounces; anything a receiver would take is accepted and judged, only what no SMTP command can
    carry (spaces, control characters, over 320 octets: RFC 5321 4.5.3.1) is refused."""
    if text is None:
        return None
    s = text.strip()
    if s.startswith("<") and s.endswith(">"):
        s = s[1:-1]
    if not s:
        return ""
    if len(s) > 320 or any(c.isspace() or ord(c) < 32 or ord(c) == 127 for c in s) or "@" not in s:
        raise UsageError(f"{option} {_show(text)} is not an envelope sender: give user@example.com, or <> for "
                         "the null sender of bounces")
    return s


def ip_option(text: str | None, option: str = "--ip") -> str | None:
    from deliverck.options import ips

    return None if text is None else ips([text], option)[0]


def exit_code(codes: list[int]) -> int:
    """Over several messages: a fail anywhere fails, then any that could not be judged."""
    if EXIT_FAIL in codes:
        return EXIT_FAIL
    if EXIT_INCOMPLETE in codes:
        return EXIT_INCOMPLETE
    return EXIT_PASS


@table_flags("source", "ip", "helo", "mail_from", *REPORT_FLAGS[:2], "jsonl", *REPORT_FLAGS[2:])
def message_cmd(
    source: str = typer.Argument(..., metavar="FILE|DIR|MBOX|-",
                                 help="A message (.eml), a directory or mbox of messages, or - for standard input."),
    ip: str | None = typer.Option(None, "--ip", metavar="ADDR",
                                  help="The address the message came from (default: the topmost Received field's claim)."),
    helo: str | None = typer.Option(None, "--helo", metavar="NAME",
                                    help="The HELO/EHLO name the sending server used (default: from the Received field)."),
    mail_from: str | None = typer.Option(None, "--mail-from", metavar="ADDR",
                                         help="The envelope sender, <> for the null sender (default: Return-Path)."),
    fmt: str = typer.Option("table", "--format", "-f", help=f"Output format: {', '.join(FORMATS)}."),
    as_json: bool = typer.Option(False, "--json", help="Same as --format json."),
    jsonl: bool = typer.Option(False, "--jsonl", help="One JSON report per line, one line per message."),
    verbose: bool = typer.Option(False, "--verbose", "-v", help="Show informational findings and the evidence."),
    debug: bool = typer.Option(False, "--debug", help="Show tracebacks of internal errors."),
    **values: Any,
) -> None:
    """Judge real messages: DKIM, ARC, SPF, DMARC, Authentication-Results, format, unsubscribe, TLS hops."""
    out_format = "json" if jsonl else output_format(fmt, as_json)
    from deliverck import options

    given_ip, given_mail_from = ip_option(ip), mail_from_option(mail_from)
    given_helo = options.helo(helo) if helo is not None else None
    config = options.build_config(options.Target(input=source), values, debug=debug)
    import asyncio

    from deliverck.message import source as msgsource
    from deliverck.message.runner import Given

    messages = msgsource.read_messages(source)
    given = Given(given_ip, given_helo, given_mail_from)
    codes = asyncio.run(_emit(config, messages, given, out_format, jsonl, RenderOptions(verbose=verbose, debug=debug)))
    raise typer.Exit(exit_code(codes))


def render_one(report, out_format: str, jsonl: bool, opts: RenderOptions) -> str:
    """One report as `message` and `listen` print it: a JSON line with --jsonl, else the format."""
    if jsonl:
        import json

        from deliverck.report.json import report_dict

        return json.dumps(report_dict(report, opts.debug), ensure_ascii=True) + "\n"
    return FORMATS[out_format](report, opts)


async def _emit(config, messages, given, out_format: str, jsonl: bool, opts: RenderOptions) -> list[int]:
    from deliverck.message.runner import run_messages

    codes: list[int] = []
    held = ""          # --json / --format html: one document, so the first waits until it is known to be the only one
    async for report in run_messages(config, messages, given):
        text = render_one(report, out_format, jsonl, opts)
        if not jsonl and out_format in ("json", "html"):
            if codes:
                raise UsageError(f"the input holds more than one message: use --jsonl for one report per line "
                                 f"(--format {out_format} makes one document of one message)")
            held = text
        else:
            sys.stdout.write(("\n" if codes and not jsonl else "") + text)
        sys.stdout.flush()
        codes.append(report.exit_code)
    sys.stdout.write(held)
    return codes
