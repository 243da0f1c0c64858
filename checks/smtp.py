"""SMTP: does every MX address accept an SMTP session on port 25?

Senders need a TCP connection, a 220 greeting and a working EHLO.  A refused
port, a server that greets with 554 or 421, something that is not SMTP, or
an IPv6 address that does not answer while IPv4 does: each makes senders
defer and, after their retry period, bounce.  Timeouts are judged with care:
when every connection times out, the checking network may be blocking port
25 (common on clouds and consumer ISPs), which says nothing about the server.
"""

from __future__ import annotations

import asyncio
import dataclasses

from deliverck.checkcontext import CheckContext
from deliverck.context import MailAddress
from deliverck.model import CheckSpec, Direction, Finding, FindingSpec, Owner, Severity, Skip
from deliverck.net.smtp import Outcome, SmtpSession
from deliverck.smtpfacts import evidence, transcript

IN, NONE = Direction.INBOUND, Direction.NONE
MAIL, NET = Owner.MAIL_ADMIN, Owner.NETWORK

CHECK = CheckSpec(
    id="smtp",
    title="SMTP service on port 25",
    cause="An MX address does not accept SMTP sessions (refused, silent, not SMTP, rejecting greeting, IPv6 down).",
    order=30,
    findings=(
        FindingSpec("smtp.greeting", Severity.INFO, "{ip} ({host}) greets: {greeting}",
                    "Nothing to fix.", Owner.NOBODY, NONE, refs=("RFC 5321 4.3.1",)),
        FindingSpec("smtp.refused", Severity.ERROR,
                    "{ip} ({host}) refuses connections on port {port}",
                    "Start the mail service on {ip}:{port}, or open port {port} in the firewall in front of it; "
                    "if the host no longer receives mail, remove it from MX.",
                    MAIL, IN, refs=("RFC 5321 5.1",)),
        FindingSpec("smtp.connect_timeout", Severity.ERROR,
                    "{ip} ({host}) did not answer a connection to port {port} within {seconds}s",
                    "Check that {ip} is up and that port {port} is open to the internet; a firewall that "
                    "drops packets looks exactly like this.",
                    NET, IN, refs=("RFC 5321 4.5.3.2",), inconclusive=True),
        FindingSpec("smtp.no_route", Severity.ERROR,
                    "this machine has no route to {ip} ({host}); its SMTP service could not be checked",
                    "Run deliverck from a network with {family} connectivity to check this address.",
                    NET, NONE, inconclusive=True),
        FindingSpec("smtp.port25_blocked", Severity.ERROR,
                    "every connection to port 25 timed out: the network deliverck runs in may block outbound port 25",
                    "Many clouds and ISPs block outbound port 25. Run deliverck from a host that may send mail "
                    "(e.g. the mail server's own network) before concluding that the servers are down.",
                    NET, NONE, inconclusive=True),
        FindingSpec("smtp.tarpit", Severity.WARNING,
                    "{ip} ({host}) accepted the connection but sent no greeting within {seconds}s",
                    "Senders wait up to 5 minutes for a greeting (RFC 5321 4.5.3.2.1) but many give up sooner: "
                    "check the server's load, its DNS lookups on connect, and any greeting delay (postscreen, "
                    "tarpitting) applied to legitimate senders.",
                    MAIL, IN, refs=("RFC 5321 4.5.3.2.1",)),
        FindingSpec("smtp.greeting_rejected", Severity.ERROR,
                    "{ip} ({host}) answers with a rejecting greeting: {greeting}",
                    "A 5xx greeting means the server takes no mail at all (RFC 5321 3.1): configure it to accept "
                    "mail for the domain, or remove it from MX.",
                    MAIL, IN, refs=("RFC 5321 3.1", "RFC 5321 4.2.3")),
        FindingSpec("smtp.greeting_deferred", Severity.ERROR,
                    "{ip} ({host}) answers with a temporary-failure greeting: {greeting}",
                    "A 4xx greeting makes every sender queue and retry: find out why the server is refusing "
                    "service (overload, connection limits, a blocklist against the checking address).",
                    MAIL, IN, refs=("RFC 5321 3.8", "RFC 5321 4.2.3")),
        FindingSpec("smtp.not_smtp", Severity.ERROR,
                    "{ip} ({host}) port {port} answers, but not with SMTP: {what}",
                    "Something other than a mail server (a web server, a proxy, a load balancer health page) "
                    "listens on port {port}: fix the port mapping or the MX record.",
                    MAIL, IN, refs=("RFC 5321 4.2",)),
        FindingSpec("smtp.closed", Severity.ERROR,
                    "{ip} ({host}) closes the connection before sending a greeting",
                    "The server or a firewall in front of it drops SMTP sessions: check its connection limits, "
                    "access lists and logs.",
                    MAIL, IN, refs=("RFC 5321 3.1",)),
        FindingSpec("smtp.no_ehlo", Severity.WARNING,
                    "{ip} ({host}) refuses EHLO ({reply}): no ESMTP, so no STARTTLS, SIZE or 8BITMIME",
                    "Enable ESMTP (EHLO) on the server; every current MTA supports it.",
                    MAIL, IN, refs=("RFC 5321 4.1.1.1",)),
        FindingSpec("smtp.ehlo_failed", Severity.ERROR,
                    "{ip} ({host}) greets, but {what} after EHLO: no sender gets as far as handing over mail",
                    "Find out why the server stops after EHLO (its log; a crash or a timeout in a milter, "
                    "policy service or DNS lookup it makes at EHLO; a firewall or proxy that cuts the session).",
                    MAIL, IN, refs=("RFC 5321 4.1.1.1", "RFC 5321 4.5.3.2")),
        FindingSpec("smtp.ipv6_unreachable", Severity.WARNING,
                    "{host} has AAAA {ip}, but port 25 does not answer there ({outcome}) while IPv4 works",
                    "Make the server listen on {ip} port 25 and open IPv6 in the firewall, or remove the AAAA "
                    "record: senders that prefer IPv6 try it first and lose time (a filtered port costs each "
                    "of them a connect timeout); IPv6-only senders cannot deliver at all.",
                    MAIL, IN, refs=("RFC 3974 3", "RFC 5321 5.2")),
        FindingSpec("smtp.no_host_accepts", Severity.CRITICAL,
                    "no MX address of {subject} accepts an SMTP session: inbound mail queues at senders and bounces",
                    "Bring up the mail service on at least one MX address, or fix the MX records.",
                    MAIL, IN, refs=("RFC 5321 4.5.4.1", "RFC 5321 5.1")),
        FindingSpec("smtp.probe_failed", Severity.ERROR,
                    "the SMTP probe of {ip} ({host}) failed: {detail}",
                    "Rerun with --debug; if it persists, report it with the transcript (-v).",
                    Owner.NOBODY, NONE, inconclusive=True),
        FindingSpec("smtp.other_port", Severity.INFO,
                    "{ip} ({host}) port {port}: {state}",
                    "Nothing to fix for MX delivery (senders use port 25); ports 465/587 serve your own users.",
                    Owner.NOBODY, NONE, refs=("RFC 8314 3.3", "RFC 6409")),
        FindingSpec("smtp.other_port_closed", Severity.NOTICE,
                    "{ip} ({host}) port {port} is not available ({state})",
                    "If your users submit mail on port {port}, open it; otherwise nothing to fix.",
                    MAIL, NONE, refs=("RFC 8314 3.3", "RFC 6409")),
        FindingSpec("smtp.not_probed", Severity.INFO,
                    "{ip} ({host}) is not a public address and was not probed (--probe-private probes it)",
                    "Nothing to check from outside.", Owner.NOBODY, NONE),
    ),
)

_DEFINITE_FAILURES = {
    Outcome.REFUSED: "refused",
    Outcome.GREETING_REJECTED: "rejected",
    Outcome.GREETING_DEFERRED: "rejected",
    Outcome.NOT_SMTP: "rejected",
    Outcome.CLOSED: "rejected",
}
# The `outcome` argument of smtp.no_host_accepts: what the address it names did (the Outcome
# value, except these two, which say where the session ended).
_OUTCOME_ARG = {Outcome.CLOSED: "closed_before_greeting", Outcome.TARPIT: "timeout_before_greeting"}


def _greeting_line(s: SmtpSession) -> str:
    """The greeting exactly as the server sent it (for a non-SMTP answer, its first line)."""
    if s.greeting is not None:
        return s.greeting.wire()
    return s.first_line


def session_findings(ma: MailAddress, s: SmtpSession, seconds: float) -> list[Finding]:
    """The smtp check's findings for one address; the first carries the transcript."""
    found = _session_findings(ma, s, seconds)
    if found:
        found[0] = dataclasses.replace(found[0], evidence=transcript(s))
    return found


def _session_findings(ma: MailAddress, s: SmtpSession, seconds: float) -> list[Finding]:
    args = dict(ip=ma.ip, host=ma.host or ma.ip, port=s.port)
    o = s.outcome
    if o is Outcome.OK:
        out = [CHECK.finding("greeting", ma.ip, greeting=_greeting_line(s), **args)]
        if s.ehlo_error:
            what = "the server stops answering" if s.ehlo_error == "timeout" else "the server closes the connection"
            out.append(CHECK.finding("ehlo_failed", ma.ip, evidence(s, "EHLO", "HELO"), what=what,
                                     error=s.ehlo_error_text, **args))
        elif s.ehlo is not None and s.ehlo.code != 250:
            out.append(CHECK.finding("no_ehlo", ma.ip, evidence(s, "EHLO", "HELO"), reply=s.ehlo.wire(),
                                     **args))
        return out
    if o is Outcome.REFUSED:
        return [CHECK.finding("refused", ma.ip, **args)]
    if o is Outcome.CONNECT_TIMEOUT:
        return [CHECK.finding("connect_timeout", ma.ip, seconds=f"{seconds:g}", **args)]
    if o is Outcome.UNREACHABLE:
        return [CHECK.finding("no_route", ma.ip, family="IPv6" if ":" in ma.ip else "IPv4", **args)]
    if o is Outcome.TARPIT:
        return [CHECK.finding("tarpit", ma.ip, seconds=f"{seconds:g}", reason="timeout_before_greeting", **args)]
    if o is Outcome.GREETING_REJECTED:
        return [CHECK.finding("greeting_rejected", ma.ip, greeting=_greeting_line(s), reply=s.detail, **args)]
    if o is Outcome.GREETING_DEFERRED:
        return [CHECK.finding("greeting_deferred", ma.ip, greeting=_greeting_line(s), reply=s.detail, **args)]
    if o is Outcome.NOT_SMTP:
        return [CHECK.finding("not_smtp", ma.ip, greeting=_greeting_line(s), what=s.detail[:200], **args)]
    if o is Outcome.CLOSED:
        return [CHECK.finding("closed", ma.ip, reason="closed_before_greeting", **args)]
    return [CHECK.finding("probe_failed", ma.ip, detail=s.detail, **args)]


async def run(ctx: CheckContext) -> list[Finding]:
    addresses = [a for a in await ctx.mail_addresses() if a.receives]
    if not addresses:
        raise Skip("no receiving address to probe (see the mx check)")
    out: list[Finding] = []
    for ma in addresses:
        if not ctx.probe_allowed(ma):
            out.append(CHECK.finding("not_probed", ma.ip, ip=ma.ip, host=ma.host or ma.ip))
    pairs = await ctx.smtp_sessions()
    if not pairs:
        return out
    seconds = ctx.config.smtp_timeout
    working_hosts = {ma.host for ma, s in pairs if s.usable}
    # IPv6 down while IPv4 of the same host works: IPv6-first senders lose time.  That
    # finding replaces the address's own refused/timeout one (one cause, one finding).
    ipv6_down = {ma.ip for ma, s in pairs
                 if ":" in ma.ip and s.outcome in (Outcome.REFUSED, Outcome.CONNECT_TIMEOUT)
                 and any(o.outcome is Outcome.OK for m, o in pairs if m.host == ma.host and ":" not in m.ip)}
    for ma, s in pairs:
        if ma.ip in ipv6_down:
            out.append(CHECK.finding("ipv6_unreachable", ma.ip, transcript(s), ip=ma.ip, host=ma.host or ma.ip,
                                     outcome=s.outcome.value, port=s.port))
            continue
        found = session_findings(ma, s, seconds)
        if ma.host in working_hosts:
            # Senders move on to the host's next address (RFC 5321 5.2):
            # a dead address of a working host costs time, not mail.
            found = [f if f.inconclusive or f.severity < Severity.ERROR
                     else dataclasses.replace(f, severity=Severity.WARNING)
                     for f in found]
        out += found

    out += await _other_ports(ctx)
    outcomes = [s.outcome for _, s in pairs]
    if all(o is Outcome.CONNECT_TIMEOUT for o in outcomes):
        out.append(CHECK.finding("port25_blocked", ctx.target.label))
    if not any(s.usable for _, s in pairs) and not all(o is Outcome.CONNECT_TIMEOUT for o in outcomes):
        judged = [(ma, s) for ma, s in pairs if s.outcome not in (Outcome.UNREACHABLE, Outcome.ERROR, Outcome.TARPIT)]
        kinds = {"rejected" if s.ehlo_error else _DEFINITE_FAILURES.get(s.outcome, "timeout") for _, s in judged}
        if kinds:
            reason = kinds.pop() if len(kinds) == 1 else "mixed"
            # The most preferred address that failed definitely: what a sender's bounce quotes.
            first_ma, first = next(((m, x) for m, x in judged if x.outcome in _DEFINITE_FAILURES or x.ehlo_error),
                                   judged[0])
            outcome = f"ehlo_{first.ehlo_error}" if first.ehlo_error else \
                _OUTCOME_ARG.get(first.outcome, first.outcome.value)
            out.append(CHECK.finding("no_host_accepts", ctx.target.label, reason=reason,
                                     host=first_ma.host or first_ma.ip, ip=first_ma.ip, port=first.port,
                                     outcome=outcome,
                                     greeting=_greeting_line(first)))
    return out


async def _other_ports(ctx: CheckContext) -> list[Finding]:
    ports = [p for p in ctx.config.extra_ports if p != 25]
    if not ports:
        return []
    targets = await ctx.smtp_targets()
    jobs = [(ma, p) for ma in targets for p in ports]
    found = await asyncio.gather(*(ctx.smtp_session(ma, p) for ma, p in jobs))
    out = []
    for (ma, port), s in zip(jobs, found):
        args = dict(ip=ma.ip, host=ma.host or ma.ip, port=port)
        if s.outcome is Outcome.OK:
            tls = f", {s.tls.version}" if s.tls and s.tls.version else ""
            state = (s.greeting.line() if s.greeting else "greeted") + tls
            out.append(CHECK.finding("other_port", ma.ip, transcript(s), state=state, **args))
        else:
            out.append(CHECK.finding("other_port_closed", ma.ip, transcript(s),
                                     state=s.outcome.value.replace("_", " "), **args))
    return out
