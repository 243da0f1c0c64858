"""Whose clock is wrong: the judgement of clock readings taken during a Kerberos audit.

Kerberos refuses authenticators more than the allowed skew off the KDC's clock (RFC 4120 1.6;
MIT krb5 clockskew = 300 s; AD "Maximum tolerance for computer clock synchronization" = 5
minutes).  The readings come from KDC error replies (stime/susec) and from the dates Exchange
prints in its SMTP greeting.  The judgement is pure and lives below the checks so that it can be
read and tested alone; the kerberos check hands in its finding factory (`finding(slug, subject,
evidence, **fields)`), so the ids and texts stay declared in the check.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

from deliverck.model import Finding
from deliverck.net import kerberos as krb
from deliverck.net.smtp import Outcome, greeting_clock

GREETING_RESOLUTION = 1.0      # a greeting date has whole seconds


@dataclass(frozen=True)
class _TimedKdc:
    """A KDC whose clock was read: its skew is a number, so the judgement needs no None checks."""

    ip: str
    host: str
    skew: float
    uncertainty: float
    answered: tuple[krb.PortProbe, ...]


def fmt(skew: float) -> str:
    return f"{round(skew, 1) + 0.0:+.1f} s"


def greeting_readings(pairs) -> list[tuple[str, str, float, float, str]]:
    """(ip, host, skew against this machine, uncertainty, the greeting as sent) from dated greetings."""
    out = []
    for ma, s in pairs:
        g = s.greeting
        if s.outcome is not Outcome.OK or g is None or not g.at:
            continue
        when = greeting_clock(g.text)
        if when is None:
            continue
        # The date is truncated to the second: its true value lies in [when, when + 1).
        skew = when + GREETING_RESOLUTION / 2 - g.at
        out.append((ma.ip, ma.host or ma.ip, skew, GREETING_RESOLUTION / 2 + g.elapsed_ms / 1000, g.wire()))
    return out


def judge_clocks(realm: str, kdcs: list[krb.KdcProbe], mail: list[tuple], limit: float,
                 finding: Callable[..., Finding]) -> list[Finding]:
    """Blame each clock skew on the clock that disagrees with the others, once.

    Every reading is "that clock minus this machine's".  When all remote clocks
    agree with each other and not with this machine, this machine is wrong and
    nothing is judged.  Otherwise this machine's clock is the reference: a KDC
    more than `limit` off it is skewed (kerberos.kdc_clock_skew), and that
    finding is the whole story of its skew: the KDCs that disagree with it
    (kdcs_disagree) and the mail servers that agree with this machine but not
    with it (mail_clock_skew) are its evidence, not findings of their own.  A
    mail server is blamed when its own clock is off, or when it and a KDC that
    nobody else blames are too far apart.

    `mail` holds (ip, host, skew, uncertainty[, greeting line]) per dated greeting.
    """
    out: list[Finding] = []
    mail = [(*m[:4], m[4] if len(m) > 4 else "") for m in mail]
    timed = [_TimedKdc(k.ip, k.host, k.skew, k.uncertainty, k.answered) for k in kdcs if k.skew is not None]
    readings = [k.skew for k in timed] + [m[2] for m in mail]
    if (len(readings) >= 2 and max(readings) - min(readings) <= limit
            and all(abs(r) > limit for r in readings)):
        mean = sum(readings) / len(readings)
        return [finding("local_clock_suspect", "this machine",
                              [f"remote clocks: {', '.join(fmt(r) for r in readings)}"],
                              count=len(readings), limit=f"{limit:g}", skew=fmt(mean))]

    def off(value: float, unc: float, ref: float = 0.0, ref_unc: float = 0.0) -> bool:
        return abs(value - ref) - unc - ref_unc > limit

    skewed = {k.ip for k in timed if off(k.skew, k.uncertainty)}
    agreeing = [f"KDC {k.ip} ({k.host}): {fmt(k.skew)}" for k in timed if k.ip not in skewed]
    agreeing += [f"mail server {ip} ({host}) greeting: {fmt(skew)}" for ip, host, skew, unc, _g in mail
                 if not off(skew, unc)]
    for k in timed:
        ev = [p.describe() for p in k.answered]
        if k.ip in skewed:
            if agreeing:
                ev.append(f"in step with this machine's clock (within {limit:g} s): {'; '.join(agreeing[:6])}")
            out.append(finding("kdc_clock_skew", k.ip, ev, ip=k.ip, host=k.host, skew=fmt(k.skew),
                                     limit=f"{limit:g}", seconds=round(k.skew, 3)))
        else:
            out.append(finding("clock_ok", k.ip, ev, role="KDC", skew=fmt(k.skew), limit=f"{limit:g}",
                                     seconds=round(k.skew, 3)))
    unblamed = [k for k in timed if k.ip not in skewed]
    if len(unblamed) >= 2:
        fast = max(unblamed, key=lambda k: k.skew)
        slow = min(unblamed, key=lambda k: k.skew)
        spread = fast.skew - slow.skew
        if spread - fast.uncertainty - slow.uncertainty > limit:
            out.append(finding("kdcs_disagree", realm,
                                     [f"{k.ip} ({k.host}): {fmt(k.skew)}" for k in timed],
                                     realm=realm, fast=f"{fast.ip} ({fast.host})", slow=f"{slow.ip} ({slow.host})",
                                     spread=f"{spread:.1f}", limit=f"{limit:g}"))
    for ip, host, skew, unc, greeting in mail:
        ev = [f"greeting date of {ip}: {fmt(skew)} from this machine's clock (+/- {unc:.1f} s)"]
        if greeting:
            ev.insert(0, f"greeting: {greeting}")
        own_off = off(skew, unc)
        apart = [k for k in timed if off(skew, unc, k.skew, k.uncertainty)]
        # A KDC that is blamed already explains the gap, unless this server's own clock is off too.
        against = [k for k in apart if k.ip not in skewed] or (apart if own_off else [])
        if against:
            worst = max(against, key=lambda k: abs(skew - k.skew))
            diff = skew - worst.skew
            ev.append(f"KDC {worst.ip} ({worst.host}): {fmt(worst.skew)} from this machine's clock")
            out.append(finding("mail_clock_skew", ip, ev, ip=ip, host=host, skew=f"{diff:+.0f}",
                                     kdc=f"{worst.ip} ({worst.host})", limit=f"{limit:g}",
                                     seconds=round(diff, 1), greeting=greeting))
        elif own_off and not timed:
            out.append(finding("mail_clock_off", ip, ev, ip=ip, host=host, skew=fmt(skew),
                                     limit=f"{limit:g}", seconds=round(skew, 1), greeting=greeting))
        else:
            if own_off:
                ev.append("in step with every KDC read, so its Kerberos authentication works")
            out.append(finding("clock_ok", ip, ev, role=f"mail server {host}", skew=fmt(skew),
                                     limit=f"{limit:g}", seconds=round(skew, 1), greeting=greeting))
    return out
