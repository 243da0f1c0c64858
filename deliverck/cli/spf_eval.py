"""`deliverck spf DOMAIN --ip ADDR [--helo NAME] [--sender ADDR]`: one SPF evaluation, explained.

The command takes what an SMTP receiver takes.  A receiver evaluates SPF for
whatever the client sent: HELO names that are one label (OEMCOMPUTER) or an
address literal ([192.0.2.1]), a MAIL FROM without a local part (@example.net),
with a quoted local part, under a domain with a 64-octet label.  RFC 7208 gives
each a result (4.3: a malformed or single-label domain is "none", a missing
local part is "postmaster"; 2.3: the HELO check needs a fully qualified name;
2.4: the null reverse-path is checked as postmaster@HELO), so this command
gives that result with the reason, never a usage error.  Exit 2 (UsageError)
is kept for what no receiver can be sent: an --ip that is no IP address, text
with control characters or longer than an SMTP command line, `--sender <>`
without the HELO name it stands for.

Exit codes (docs/spf.md): 0 pass; 1 any other result (fail, softfail,
neutral, none, permerror, temperror); 2 bad usage; 3 could not check: the
resolver, not the domain, failed (deliverck.records.spf.blame).  Every line that can
hold text from DNS or from the command line goes through
deliverck.text.safe; JSON keeps it exact (schema "deliverck.spf/1").
"""

from __future__ import annotations

import asyncio
import ipaddress
import json as jsonlib
from collections.abc import Sequence
from dataclasses import dataclass

from deliverck import __version__
from deliverck.errors import IncompleteError, UsageError
from deliverck.model import EXIT_FAIL, EXIT_PASS
from deliverck.net.dns import DnsClient, ResolverAddress
from deliverck.records.spf.blame import Blame, locate, resolver_denies
from deliverck.records.spf.evaluator import (
    LOOKUP_LIMIT,
    VOID_LIMIT,
    Lookup,
    SpfResult,
    check_host,
)
from deliverck.records.spf.lint import LOOP_SUMMARY
from deliverck.text import safe

SPF_SCHEMA = "deliverck.spf/1"
# RFC 5321 4.5.3.1.4: a command line is at most 512 octets, CRLF included;
# nothing longer reaches a receiver's SPF check.
MAX_INPUT = 510


@dataclass(frozen=True)
class SpfInput:
    """The identities as a receiver would hold them, and what RFC 7208 says about their form."""

    domain: str                  # check_host()'s <domain> for the MAIL FROM identity
    ip: str                      # as given (the case of an IPv6 address shows in %{i})
    sender: str                  # check_host()'s <sender>
    helo: str                    # "" when not given
    notes: tuple[str, ...] = ()


def _text(value: str, what: str) -> str:
    s = value.strip()
    if any(ord(c) < 0x20 or ord(c) == 0x7F for c in s):
        raise UsageError(f"{what} {value!r} holds a control character: no SMTP receiver is sent one (RFC 5321 "
                         "2.3.8: commands are lines of text)")
    if len(s.encode("utf-8")) > MAX_INPUT:
        raise UsageError(f"{what} is {len(s.encode('utf-8'))} octets long: an SMTP command line holds at most "
                         "512 (RFC 5321 4.5.3.1.4), so no receiver is sent it")
    return s


def _domain_form(name: str) -> str:
    """An IDN as its A-label (RFC 8616: SPF looks up A-labels); anything else as given."""
    if name.isascii():
        return name
    try:
        import idna

        return idna.encode(name, uts46=True).decode("ascii")
    except (UnicodeError, ValueError):   # idna.IDNAError is a UnicodeError
        return name


def parse_input(domain: str, ip: str, sender: str = "", helo: str = "") -> SpfInput:
    """The evaluation inputs; UsageError (one line) only for what no receiver could see."""
    raw_ip = _text(ip or "", "--ip")
    literal = raw_ip[1:-1] if raw_ip.startswith("[") and raw_ip.endswith("]") else raw_ip
    if literal[:5].lower() == "ipv6:":                  # the RFC 5321 IPv6 address-literal tag
        literal = literal[5:]
    try:
        addr = ipaddress.ip_address(literal)
    except ValueError:
        raise UsageError(f"--ip {ip!r} is not an IP address (use e.g. 192.0.2.1 or 2001:db8::1)") from None
    if "%" in literal:
        raise UsageError(f"--ip {ip!r} has a zone index (%...): give the address alone")
    del addr
    notes: list[str] = []

    d = _text(domain or "", "DOMAIN")
    if d.endswith(".") and d != ".":
        d = d[:-1]
    if not d:
        raise UsageError("DOMAIN is empty: give the MAIL FROM domain (or, for a null sender, the HELO name)")
    d = _domain_form(d).lower()

    h = _text(helo or "", "--helo")
    h = _domain_form(h)

    s = _text(sender or "", "--sender")
    null = False
    if s.startswith("<") and s.endswith(">"):
        s = s[1:-1].strip()
        if not s:
            if not h:
                raise UsageError("--sender '<>' is the null reverse-path: its identity is postmaster@HELO "
                                 "(RFC 7208 2.4), so give --helo NAME too")
            s, null = f"postmaster@{h}", True
            notes.append(f"the MAIL FROM is null (<>): the identity checked is {s} (RFC 7208 2.4)")
            if d != h.lower().rstrip("."):
                notes.append(f"DOMAIN {d} is not the HELO name {h}: for a null sender receivers evaluate {h}")
    if s:
        local, at, sdom = s.rpartition("@")
        if not at:
            local, sdom = "", s
            notes.append(f"the MAIL FROM {s} has no @: receivers that accept it take it as the domain, with "
                         "local part postmaster (RFC 7208 4.3)")
        elif not local:
            notes.append(f"the MAIL FROM {s} has no local part: %{{l}} is postmaster (RFC 7208 4.3)")
        sdom = _domain_form(sdom)
        s = f"{local}@{sdom}" if at else sdom
        if sdom.lower().rstrip(".") != d and not null:
            notes.append(f"DOMAIN {d} is not the MAIL FROM domain {sdom}: {d} is evaluated, with %{{o}} = {sdom}")
    else:
        s = f"postmaster@{d}"
    return SpfInput(d, literal, s, h, tuple(notes))


def validate_args(domain: str, ip: str, sender: str = "", helo: str = "") -> tuple[str, str, str, str]:
    """(domain, ip, sender, helo) as evaluated; UsageError (one line) for bad input."""
    i = parse_input(domain, ip, sender, helo)
    return i.domain, i.ip, i.sender, i.helo


async def evaluate(domain: str, ip: str, *, sender: str = "", helo: str = "",
                   dns: Lookup) -> tuple[SpfResult, SpfResult | None]:
    """The MAIL FROM identity's result, and the HELO identity's when a HELO name is given.

    The two are independent check_host() runs (RFC 7208 2.3, 2.4) and share the
    resolver's answers, so they run at the same time.
    """
    mail = check_host(ip, domain, sender=sender or f"postmaster@{domain}", helo=helo, dns=dns)
    if not helo:
        return await mail, None
    hres = check_host(ip, helo, sender=f"postmaster@{helo}", helo=helo, dns=dns)
    res, h = await asyncio.gather(mail, hres)
    return res, h


def exit_code(res: SpfResult) -> int:
    return EXIT_PASS if res.result == "pass" else EXIT_FAIL


def reason(res: SpfResult, identity: str = "MAIL FROM") -> str:
    """One sentence: why this result, with the RFC 7208 section."""
    d, ip, m = res.domain, res.ip, res.mechanism
    first = res.problems[0] if res.problems else ""
    if res.result == "pass":
        return f"the SPF record of {d} authorizes {ip}: {m} matched (RFC 7208 2.6.3)"
    if res.result in ("fail", "softfail"):
        return (f"the SPF record of {d} does not authorize {ip}: {m} matched, {res.result} "
                f"(RFC 7208 2.6.{4 if res.result == 'fail' else 5})")
    if res.result == "neutral":
        if res.cause == "default":
            return f"nothing in the SPF record of {d} matched {ip} and no all ends it: neutral by default (RFC 7208 4.7)"
        return f"{m} matched {ip}: the SPF record of {d} makes no assertion about it (RFC 7208 2.6.2)"
    if res.result == "none":
        if res.cause == "invalid_domain":
            if identity == "HELO":
                return f"{first}; a HELO name is checked only when it is a fully qualified domain name (RFC 7208 2.3)"
            return first
        if res.cause == "nxdomain":
            return f"{d} does not exist (NXDOMAIN): the result is none (RFC 7208 4.3)"
        return f"{d} publishes no SPF record: no TXT record starts with v=spf1 (RFC 7208 4.5)"
    if res.result == "permerror":
        if res.cause == "loop" and res.loop:
            return LOOP_SUMMARY.format(subject=d, message=res.loop) + " (RFC 7208 4.6.4)"
        return f"the SPF record of {d} cannot be evaluated: {first or res.cause} (RFC 7208 2.6.7)"
    lk = res.failed_lookup
    what = f"the {lk.rdtype} lookup of {lk.name} failed ({lk.outcome})" if lk else (first or "a DNS lookup failed")
    return f"{what}: receivers get temperror and defer the mail (RFC 7208 2.6.6, 4.4)"


def render_text(res: SpfResult, hres: SpfResult | None = None, notes: Sequence[str] = ()) -> str:
    lines = [f"SPF {res.result.upper()}: {res.ip} at {res.domain}"
             + (f" (matched {res.mechanism})" if res.mechanism else "")]
    lines.append(f"sender: {res.sender}" + (f"   helo: {res.helo}" if res.helo else ""))
    lines.append(f"reason: {reason(res)}")
    lines.append(f"lookups: {res.lookups_used}/{LOOKUP_LIMIT}   void lookups: {res.void_lookups}/{VOID_LIMIT}")
    if res.explanation:
        lines.append(f"explanation: {res.explanation}"
                     + (" (default explanation)" if res.explanation_source == "default" else ""))
    lines += [f"note: {n}" for n in notes]
    lines += _section(res)
    if hres is not None:
        lines.append("")
        lines.append(f"HELO identity: SPF {hres.result.upper()}: {hres.ip} at {hres.domain}"
                     + (f" (matched {hres.mechanism})" if hres.mechanism else ""))
        lines.append(f"reason: {reason(hres, 'HELO')}")
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


def render_json(res: SpfResult, hres: SpfResult | None = None, notes: Sequence[str] = ()) -> str:
    helo = None
    if hres is not None:
        helo = {**hres.as_dict(), "reason": reason(hres, "HELO")}
    doc = {"schema": SPF_SCHEMA, "tool_version": __version__, **res.as_dict(), "reason": reason(res),
           "notes": list(notes), "helo_result": helo, "exit_code": exit_code(res)}
    return jsonlib.dumps(doc, indent=2, ensure_ascii=True) + "\n"


async def _blame(res: SpfResult, dns: Lookup, resolver: str) -> Blame | None:
    """Whose fault a temperror (or an NXDOMAIN "none") is; None when there is nothing to locate."""
    if res.result == "temperror" and res.failed_lookup is not None:
        return await locate(dns, res.failed_lookup, resolver)
    if res.result == "temperror":      # nothing to locate the fault with: not the domain's, then
        return Blame("resolver", res.domain, "TXT", "error", resolver, ())
    if res.result == "none" and res.cause == "nxdomain":
        return await resolver_denies(dns, res.domain, "TXT", resolver)
    return None


async def _sane(client: Lookup, domain: str) -> str:
    """"" when the resolver can be trusted to speak for `domain`, else one line saying why not.

    The same resolver sanity as a full audit (DnsClient.reachable: the root, the
    domain's real TLD, a name that cannot exist), asked while the evaluation runs;
    a stand-in resolver without it (tests) is taken as sane.
    """
    reachable = getattr(client, "reachable", None)
    if reachable is None:
        return ""
    import inspect

    ok, why = await (reachable(domain) if inspect.signature(reachable).parameters else reachable())
    return "" if ok else why


async def spf_command(domain: str, ip: str, helo: str = "", sender: str = "",
                      resolvers: Sequence[ResolverAddress] = (), timeout: float = 5.0,
                      json: bool = False, dns: Lookup | None = None) -> tuple[str, int]:
    """Evaluate SPF for (ip, domain) and render it: (output text, exit code 0 pass / 1 otherwise).

    Arguments go through parse_input() first (UsageError).  `dns` replaces the
    resolver (tests); otherwise a DnsClient over `resolvers` (default:
    /etc/resolv.conf) with `timeout` seconds per question; no resolver
    configured raises IncompleteError (exit 3), and so does a result that the
    resolver caused rather than the domain (see deliverck.records.spf.blame).
    """
    inp = parse_input(domain, ip, sender, helo)
    client = dns if dns is not None else DnsClient(resolvers, timeout=timeout)
    label = ", ".join(str(r) for r in getattr(client, "resolvers", ()))
    sanity = asyncio.ensure_future(_sane(client, inp.domain))
    try:
        res, hres = await evaluate(inp.domain, inp.ip, sender=inp.sender, helo=inp.helo, dns=client)
        # A result that needed no DNS (a name that cannot be a domain) stands whatever the resolver does.
        problem = await sanity if res.cause != "invalid_domain" else ""
        if problem:
            raise IncompleteError(f"could not check SPF for {inp.domain}: {problem}")
        blame = await _blame(res, client, label)
        if blame is not None and not blame.zone:
            raise IncompleteError(f"could not check SPF for {inp.domain}: {blame.resolver_sentence()}")
        notes = list(inp.notes)
        if blame is not None:
            notes.append(f"{blame.zone_sentence()}: the fault is in that zone, and receivers meet it too")
        if hres is not None:
            hblame = await _blame(hres, client, label)
            if hblame is not None and not hblame.zone:
                notes.append(f"the HELO identity {inp.helo} could not be checked: {hblame.resolver_sentence()}")
    finally:
        sanity.cancel()
        if isinstance(client, DnsClient) and dns is None:     # our own client, not the caller's
            from deliverck.net.dns import close

            await close(client)
    text = render_json(res, hres, notes) if json else render_text(res, hres, notes)
    return text, exit_code(res)
