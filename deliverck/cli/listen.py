"""`deliverck listen`: receive one test message from the user's own server and judge the real
envelope, session and message (docs/message.md, "listen")."""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Any

import typer

from deliverck.cli.check import output_format
from deliverck.cli.flags import table_flags
from deliverck.cli.message import REPORT_FLAGS, exit_code, render_one
from deliverck.errors import IncompleteError, UsageError
from deliverck.report import FORMATS, RenderOptions
from deliverck.target import _show

MAX_TIMEOUT = 86400.0       # a day: longer is a typo, and the listener must not outlive its purpose
MAX_COUNT = 1000
MAX_PEM_BYTES = 1024 * 1024     # a certificate chain and its key fit in far less


def _address(text: str) -> str:
    from deliverck.net.addresses import is_ip

    s = text.strip()
    if s.startswith("[") and s.endswith("]"):
        s = s[1:-1]
    if not is_ip(s):
        raise UsageError(f"--address {_show(text)} is not an IP address: give the local address to listen on "
                         "(0.0.0.0 for every IPv4 address, :: for every address)")
    return s


def _rcpt(text: str | None) -> str | None:
    if text is None:
        return None
    s = text.strip().strip("<>")
    local, _, domain = s.rpartition("@")
    if not local or not domain or any(c.isspace() or ord(c) < 32 or ord(c) == 127 for c in s) or len(s) > 254:
        raise UsageError(f"--rcpt {_show(text)} is not a mail address: give the test address to accept, "
                         "e.g. test@example.com")
    return s


def _reply(text: str | None) -> str:
    if text is None:
        return ""
    s = text.strip()
    if not (len(s) == 3 and s.isdigit() and s.startswith("4")):
        raise UsageError(f"--reply {_show(text)}: give a temporary SMTP reply code from 400 to 499 "
                         "(e.g. 451), or leave it out to accept with 250")
    return s


def _pem(path: str | None, option: str) -> Path | None:
    if path is None:
        return None
    from deliverck.inputfile import ReadError, regular_file

    try:
        regular_file(path, MAX_PEM_BYTES)
    except ReadError as e:
        raise UsageError(f"{option} {_show(path)} {e}: give a PEM file") from None
    return Path(path)


@table_flags("address", "port", "rcpt", "timeout", "count", "reply", "tls_cert", "tls_key", "hostname",
             *REPORT_FLAGS[:2], "jsonl", *REPORT_FLAGS[2:])
def listen_cmd(
    address: str = typer.Option(..., "--address", metavar="IP",
                                help="The local address to listen on (required: deliverck binds only where told)."),
    port: int = typer.Option(25, "--port", metavar="PORT", help="The TCP port (25 needs root or CAP_NET_BIND_SERVICE)."),
    rcpt: str | None = typer.Option(None, "--rcpt", metavar="ADDR",
                                    help="The one recipient to accept (default: a random address that is printed)."),
    timeout: float = typer.Option(600.0, "--timeout", metavar="SECONDS",
                                  help="Stop after this long, message or not."),
    count: int = typer.Option(1, "--count", metavar="N", help="Messages to receive before stopping."),
    reply: str | None = typer.Option(None, "--reply", metavar="4XX",
                                     help="Answer the message with this temporary code instead of 250."),
    tls_cert: str | None = typer.Option(None, "--tls-cert", metavar="PEM",
                                        help="Certificate chain for STARTTLS (default: a generated self-signed one)."),
    tls_key: str | None = typer.Option(None, "--tls-key", metavar="PEM", help="The private key of --tls-cert."),
    hostname: str | None = typer.Option(None, "--hostname", metavar="NAME",
                                        help="The name in the banner and EHLO reply (default: this host's name)."),
    fmt: str = typer.Option("table", "--format", "-f", help=f"Output format: {', '.join(FORMATS)}."),
    as_json: bool = typer.Option(False, "--json", help="Same as --format json."),
    jsonl: bool = typer.Option(False, "--jsonl", help="One JSON report per line, one line per message."),
    verbose: bool = typer.Option(False, "--verbose", "-v", help="Show informational findings and the evidence."),
    debug: bool = typer.Option(False, "--debug", help="Show tracebacks of internal errors."),
    **values: Any,
) -> None:
    """Receive a test message from your own mail server, then judge its real session and content."""
    out_format = "json" if jsonl else output_format(fmt, as_json)
    if out_format in ("json", "html") and count > 1:
        raise UsageError(f"--count above 1 with --format {out_format}: use --jsonl for one report per line")
    bind = _address(address)
    if not 1 <= port <= 65535:
        raise UsageError(f"--port {port}: give a TCP port from 1 to 65535")
    if not 0 < timeout <= MAX_TIMEOUT:
        raise UsageError(f"--timeout {timeout:g}: give seconds above 0 and at most {MAX_TIMEOUT:g}")
    if not 1 <= count <= MAX_COUNT:
        raise UsageError(f"--count {count}: give 1 to {MAX_COUNT} messages")
    if (tls_cert is None) != (tls_key is None):
        raise UsageError("--tls-cert and --tls-key go together: give both, or neither for a self-signed certificate")
    from deliverck import options

    name = options.helo(hostname) if hostname is not None else ""
    config = options.build_config(options.Target(input="listen"), values, debug=debug)
    import asyncio

    from deliverck.message.listen import ListenOptions

    opts = ListenOptions(address=bind, port=port, rcpt=_rcpt(rcpt), timeout=timeout, count=count,
                         reply=_reply(reply), tls_cert=_pem(tls_cert, "--tls-cert"), tls_key=_pem(tls_key, "--tls-key"),
                         hostname=name)
    codes = asyncio.run(_serve(config, opts, out_format, jsonl, RenderOptions(verbose=verbose, debug=debug)))
    if not codes:
        raise IncompleteError(f"no message arrived within {timeout:g}s: send one to the address printed above, "
                              "or give a longer --timeout")
    raise typer.Exit(exit_code(codes))


def _waiting(ready) -> None:
    """What to do while it waits, on standard error (standard output is the report's)."""
    lines = ready.lines()
    first = lines[0][:1].lower() + lines[0][1:]
    sys.stderr.write("\n".join([f"deliverck listen: {first}", *(f"  {line}" for line in lines[1:])]) + "\n")
    sys.stderr.flush()


async def _serve(config, opts, out_format: str, jsonl: bool, render: RenderOptions) -> list[int]:
    from deliverck.message.listen import receive
    from deliverck.message.runner import Given, MessageRun

    run = MessageRun(config)
    codes: list[int] = []

    async def judge(message, session) -> None:
        report = await run.judge(message, Given(session=session))
        # json and html are one document: --count above 1 needs --jsonl (checked above)
        sys.stdout.write(("\n" if codes and not jsonl else "") + render_one(report, out_format, jsonl, render))
        sys.stdout.flush()
        codes.append(report.exit_code)

    try:
        await receive(opts, _waiting, judge)
    finally:
        await run.close()
    return codes
