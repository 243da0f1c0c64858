"""`explain --run`: which host, address or domain the bounce names for its category, and which checks to run."""

from __future__ import annotations

from dataclasses import dataclass, field

from deliverck.explain.engine import _domain, _from_addr
from deliverck.explain.model import Explanation

SENDING_SIDE = ("reverse_dns", "bad_helo", "blocked_ip")
SENDER_DOMAIN = ("auth_spf", "auth_dmarc", "auth_kerberos")


@dataclass
class RunPlan:
    target: str = ""
    checks: tuple[str, ...] = ()
    outbound_ips: tuple[str, ...] = ()
    sender: str = ""
    helo: str = ""
    kerberos: bool = False
    why: str = ""                 # what the target is, or why nothing runs
    options: dict = field(default_factory=dict)


def plan(e: Explanation) -> RunPlan:
    p = e.primary
    if p is None or e.error:
        return RunPlan(why="nothing was explained")
    category = p.underlying or p.category
    if not p.checks:
        return RunPlan(why=f"no deliverck check tests {p.category} causes")
    b = e.bounce
    assert b is not None, "an Explanation with results always carries its Bounce (engine.explain_bounce)"
    sender = _from_addr(b.envelope_sender) or _from_addr(b.to) or _from_addr(b.original_from)
    sender_domain = _domain(sender)
    rcpt_domain = _domain(p.attempt.recipient)
    rp = RunPlan(checks=tuple(p.checks), sender=sender)
    if category in SENDING_SIDE:
        s = e.sending
        rp.target = s.ip or s.host
        rp.outbound_ips = (s.ip,) if s.ip else ()
        rp.helo = s.host if s.host and "HELO" in s.evidence else ""
        rp.why = f"the sending server: {s.evidence}" if rp.target else "the bounce names no sending address or host"
    elif category in SENDER_DOMAIN:
        rp.target = sender_domain
        rp.outbound_ips = (e.sending.ip,) if e.sending.ip else ()
        rp.kerberos = category == "auth_kerberos"
        rp.why = f"the sender's domain {sender_domain}" if sender_domain else "the bounce names no sender address"
    else:
        rp.target = rcpt_domain or p.attempt.remote_mta or e.receiving.host
        rp.why = f"the recipient's domain {rcpt_domain}" if rcpt_domain else (
            f"the receiving host {rp.target}" if rp.target else "the bounce names no recipient domain or receiving host")
    if not rp.target:
        rp.checks = ()
    return rp
