"""Judging the resolver rather than the audited names.

A resolver that cannot answer for the root, that refers instead of resolving, or that invents
answers would make every check blame the target for the checker's own environment (DESIGN.md,
"Blame").  These pure helpers turn what the resolver did into plain words and, for the sanity
probe of `DnsClient.reachable`, into a `ResolverProblem` with its remedy.
"""

from __future__ import annotations

import ipaddress
import secrets
from collections.abc import Sequence
from dataclasses import dataclass

import dns.exception
import dns.flags
import dns.message
import dns.rdatatype

from deliverck.net.dnsanswer import DnsAnswer, Outcome, ResolverAddress, norm, one_line

# RFC 6761 6.4: names below `invalid.` never exist; one random label per process, so the
# audits of a bulk run share its (cached) NXDOMAIN.
INVENTED_PROBE = f"deliverck-{secrets.token_hex(6)}.invalid"
REMEDY = "check the network and /etc/resolv.conf, or pass another --resolver IP"


@dataclass(frozen=True)
class ResolverProblem:
    line: str          # for the user: the resolver, what it answered, why that stops the run, the remedy
    short: str         # for answers that were not used: the resolver and what it answered


def problem(resolvers: Sequence[ResolverAddress], what: str, why: str, short: str = "") -> ResolverProblem:
    """The resolver(s) named, what they did, why that stops the run, and the remedy."""
    names = ", ".join(str(r) for r in resolvers)
    who = f"the DNS resolver {names}" if len(resolvers) == 1 else f"the DNS resolvers {names}"
    return ResolverProblem(f"{who} {what}: {why}; {REMEDY}", f"{who} {short or what}")


def root_problem(ans: DnsAnswer, resolvers: Sequence[ResolverAddress], timeout: float) -> ResolverProblem | None:
    """Every recursive resolver can answer for the root (RFC 8109); one that cannot is unusable."""
    asked = "the root zone (. NS)"
    o = ans.outcome
    if o is Outcome.OK:
        # An authoritative server given as resolver (RA clear) is usable for the zones it holds,
        # as in a lab with its own root; a name it would only refer elsewhere is "could not
        # check" for that lookup (`is_referral`), never a missing record.
        return None
    if o is Outcome.TIMEOUT:
        return problem(resolvers, f"did not answer within {timeout:g}s", "nothing can be looked up")
    if o is Outcome.UNREACHABLE:
        return problem(resolvers, f"cannot be reached ({ans.detail})", "nothing can be looked up")
    why = {
        Outcome.NXDOMAIN: "it says no name exists (an offline machine, a captive portal or a filtering "
                          "forwarder), so none of its answers can be judged",
        Outcome.REFUSED: "it refuses to resolve for this machine (an authoritative-only server, or an "
                         "access list)",
        Outcome.SERVFAIL: "it cannot resolve anything (no connectivity upstream, or a DNSSEC trust "
                          "anchor that does not fit the root)",
        Outcome.NODATA: "it is not a working recursive resolver",
    }.get(o, f"it is not a working recursive resolver ({ans.detail})")
    label = "no records" if o is Outcome.NODATA else o.value.upper()
    return problem(resolvers, f"answered {label} for {asked}", why, f"answered {label} for {asked}")


def tld_problem(ans: DnsAnswer, tld: str, target: str, resolvers: Sequence[ResolverAddress],
                timeout: float) -> ResolverProblem | None:
    """A real TLD the resolver cannot answer for leaves the target unjudgeable from here."""
    if ans.outcome in (Outcome.OK, Outcome.NODATA):
        return None
    asked = f"the top-level domain {tld}. ({tld}. SOA)"
    if ans.outcome is Outcome.TIMEOUT:
        what = f"did not answer for {asked} within {timeout:g}s"
    elif ans.outcome in (Outcome.UNREACHABLE, Outcome.ERROR):
        what = f"failed for {asked} ({ans.detail})"
    else:
        what = f"answered {ans.outcome.value.upper()} for {asked}"
    return problem(resolvers, what, f"it cannot resolve names under {tld}., so {norm(target)} cannot be judged "
                                    "from here")


def invented_problem(ans: DnsAnswer, resolvers: Sequence[ResolverAddress]) -> ResolverProblem | None:
    """An answer for INVENTED_PROBE means NXDOMAIN rewriting: no answer of this resolver can be trusted."""
    if not ans.ok:
        return None
    shown = ", ".join(one_line(t)[:60] for t in ans.texts()[:2])
    return problem(resolvers, f"answered {shown} for {INVENTED_PROBE}, a name that cannot exist (RFC 6761 6.4)",
                   "it invents answers (NXDOMAIN rewriting or a captive portal), so none of its "
                   "answers can be trusted", "invents answers for names that do not exist")




def real_tld(target: str) -> str:
    """The target's TLD when the public suffix list's ICANN section has it, else "".

    The TLD set comes from deliverck.datacache (parsed once, cached by content hash), so this
    costs the event loop no parse of the list in the middle of the audit's first round trips."""
    from deliverck.datacache import icann_tlds

    n = norm(target)
    if not n or is_ip(n):
        return ""
    tld = n.rsplit(".", 1)[-1]
    return tld if tld in icann_tlds() else ""


def is_ip(text: str) -> bool:
    try:
        ipaddress.ip_address(text)
    except ValueError:
        return False
    return True



def server_text(server: str, port) -> str:
    """dnspython names a server `Do53:192.0.2.53@53`: show `192.0.2.53:53`."""
    addr = server.split(":", 1)[1] if server.startswith("Do53:") else server
    addr = addr.rsplit("@", 1)[0]
    try:
        return str(ResolverAddress(str(ipaddress.ip_address(addr)), int(port)))
    except (ValueError, TypeError):
        return f"{addr}:{port}"


def plain(e: BaseException) -> str:
    """An exception as a phrase for users: its message (dnspython's default is the class docstring)."""
    text = one_line(str(e)).rstrip(".")
    return text or type(e).__name__


def is_referral(resp: dns.message.Message) -> bool:
    """A non-authoritative answer with no records and no SOA, only NS records of a zone cut below:
    the server refers the question elsewhere instead of resolving it (RFC 1034 4.3.1)."""
    if resp.flags & dns.flags.AA or resp.answer:
        return False
    if any(rr.rdtype == dns.rdatatype.SOA for rr in resp.authority):
        return False
    return any(rr.rdtype == dns.rdatatype.NS for rr in resp.authority)


def classify_errors(errors: list) -> tuple[Outcome, str]:
    """What each resolver did, in plain words (`192.0.2.53:53 answered SERVFAIL`)."""
    outcomes = []
    parts = []
    for err in errors:
        server, _tcp, port, what = err[0], err[1], err[2], err[3]
        who = server_text(str(server), port)
        if isinstance(what, str):
            parts.append(f"{who} answered {what}")
            if what == "SERVFAIL":
                outcomes.append(Outcome.SERVFAIL)
            elif what == "REFUSED":
                outcomes.append(Outcome.REFUSED)
            else:
                outcomes.append(Outcome.ERROR)
        elif isinstance(what, OSError):
            parts.append(f"{who} unreachable ({what.strerror or plain(what)})")
            outcomes.append(Outcome.UNREACHABLE)
        elif isinstance(what, dns.exception.Timeout):
            parts.append(f"{who} did not answer in time")
            outcomes.append(Outcome.TIMEOUT)
        else:
            parts.append(f"{who} sent an unusable answer ({plain(what)})")
            outcomes.append(Outcome.ERROR)
    parts = list(dict.fromkeys(parts))
    for o in (Outcome.SERVFAIL, Outcome.REFUSED, Outcome.ERROR, Outcome.TIMEOUT, Outcome.UNREACHABLE):
        if o in outcomes:
            return o, "; ".join(parts)
    return Outcome.ERROR, "; ".join(parts) or "every resolver failed"

