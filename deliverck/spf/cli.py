"""`deliverck spf DOMAIN --ip ADDR [--helo NAME] [--sender ADDR]`: one SPF evaluation, explained.

The typer command in deliverck/cli.py validates its options with
`validate_args()` (UsageError, exit 2) and prints what `spf_command()`
returns: the result, the explanation, the trace as an indented tree and the
problems (or a JSON document, schema "deliverck.spf/1"), with exit code 0 for
pass and 1 for any other result.  Every line that can hold text from DNS goes
through deliverck.report.escape.safe.
"""

from __future__ import annotations

import ipaddress
import json as jsonlib
import re
from typing import Sequence

from deliverck import __version__
from deliverck.errors import UsageError
from deliverck.model import EXIT_FAIL, EXIT_PASS
from deliverck.net.dns import DnsClient, ResolverAddress
from deliverck.report.escape import safe
from deliverck.spf.evaluator import LOOKUP_LIMIT, VOID_LIMIT, Lookup, SpfResult, check_host

SPF_SCHEMA = "deliverck.spf/1"
_LOCAL = re.compile(r"^[A-Za-z0-9!#$%&'*+/=?^_`{|}~.\-]{1,64}$")


def validate_args(domain: str, ip: str, sender: str = "", helo: str = "") -> tuple[str, str, str, str]:
    """Normalised (domain, ip, sender, helo); UsageError (one line) for bad input."""
    from deliverck.target import normalise_name

    d = normalise_name(domain)
    try:
        addr = ipaddress.ip_address((ip or "").strip().strip("[]"))
    except ValueError:
        raise UsageError(f"--ip {ip!r} is not an IP address (use e.g. 192.0.2.1 or 2001:db8::1)") from None
    s = (sender or "").strip()
    if s:
        local, at, sdom = s.rpartition("@")
        if not at or not local or not _LOCAL.match(local):
            raise UsageError(f"--sender {sender!r} is not an address (use local-part@domain, e.g. bounce@{d})")
        s = f"{local}@{normalise_name(sdom)}"
    h = normalise_name(helo) if helo and helo.strip() else ""
    return d, str(addr), s, h


async def evaluate(domain: str, ip: str, *, sender: str = "", helo: str = "",
                   dns: Lookup) -> tuple[SpfResult, SpfResult | None]:
    """The MAIL FROM identity's result, and the HELO identity's when a HELO name is given."""
    res = await check_host(ip, domain, sender=sender or f"postmaster@{domain}", helo=helo, dns=dns)
    hres = None
    if helo:
        hres = await check_host(ip, helo, sender=f"postmaster@{helo}", helo=helo, dns=dns)
    return res, hres


def exit_code(res: SpfResult) -> int:
    return EXIT_PASS if res.result == "pass" else EXIT_FAIL


def render_text(res: SpfResult, hres: SpfResult | None = None) -> str:
    lines = [f"SPF {res.result.upper()}: {res.ip} at {res.domain}"
             + (f" (matched {res.mechanism})" if res.mechanism else "")]
    lines.append(f"sender: {res.sender}" + (f"   helo: {res.helo}" if res.helo else ""))
    lines.append(f"lookups: {res.lookups_used}/{LOOKUP_LIMIT}   void lookups: {res.void_lookups}/{VOID_LIMIT}")
    if res.explanation:
        lines.append(f"explanation: {res.explanation}")
    lines += _section(res)
    if hres is not None:
        lines.append("")
        lines.append(f"HELO identity: SPF {hres.result.upper()}: {hres.ip} at {hres.domain}"
                     + (f" (matched {hres.mechanism})" if hres.mechanism else ""))
        lines += _section(hres)
    return "\n".join(safe(x) for x in lines) + "\n"


def _section(res: SpfResult) -> list[str]:
    out = []
    if res.trace is not None:
        out.append("trace:")
        out += ["  " + x for x in res.trace.render()]
    if res.problems:
        out.append("problems:")
        out += [f"  - {p}" for p in res.problems]
    return out


def render_json(res: SpfResult, hres: SpfResult | None = None) -> str:
    doc = {"schema": SPF_SCHEMA, "tool_version": __version__, **res.as_dict(),
           "helo_result": hres.as_dict() if hres is not None else None, "exit_code": exit_code(res)}
    return jsonlib.dumps(doc, indent=2, ensure_ascii=True) + "\n"


async def spf_command(domain: str, ip: str, helo: str = "", sender: str = "",
                      resolvers: Sequence[ResolverAddress] = (), timeout: float = 5.0,
                      json: bool = False, dns: Lookup | None = None) -> tuple[str, int]:
    """Evaluate SPF for (ip, domain) and render it: (output text, exit code 0 pass / 1 otherwise).

    Arguments are validated with validate_args() first (UsageError).  `dns`
    replaces the resolver (tests); otherwise a DnsClient over `resolvers`
    (default: /etc/resolv.conf) with `timeout` seconds per question; no
    resolver configured raises IncompleteError (exit 3).
    """
    domain, ip, sender, helo = validate_args(domain, ip, sender, helo)
    client = dns if dns is not None else DnsClient(resolvers, timeout=timeout)
    res, hres = await evaluate(domain, ip, sender=sender, helo=helo, dns=client)
    text = render_json(res, hres) if json else render_text(res, hres)
    return text, exit_code(res)
