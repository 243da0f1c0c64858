"""Runs the checks of one audit concurrently and turns them into a Report.

Each check runs inside an *attempt*: its own deadline, and a crash or hang
becomes a finding (`<id>.crashed`, `<id>.timeout`) that makes the check's
status `error`.  One check can never take down the report, and a check that
did not complete is never reported as a pass.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import time
import traceback
from collections.abc import Sequence
from datetime import UTC, datetime
from typing import Protocol

from deliverck import __version__, datacache, timing
from deliverck.config import Config
from deliverck.context import Context
from deliverck.errors import IncompleteError, UsageError
from deliverck.model import (
    CheckResult,
    Finding,
    Report,
    Severity,
    Skip,
    Status,
    TargetInfo,
)
from deliverck.net import dns as dnsnet
from deliverck.net.overlay import load_overlay
from deliverck.registry import Check, all_checks
from deliverck.target import Target
from deliverck.verdict import judge, status_of


def select_checks(config: Config, options: tuple[str, str] = ("--only", "--skip")) -> tuple[Check, ...]:
    """The checks to run; UsageError for an unknown name or a selection that leaves none.

    `options` names only/skip as the user wrote them (a config file says `only`, not `--only`).
    """
    checks = all_checks()
    known = {c.id for c in checks}
    for name in config.only + config.skip:
        if name not in known:
            raise UsageError(f"unknown check {name!r} (known: {', '.join(sorted(known))}; see `deliverck checks`)")
    selected = tuple(c for c in checks if config.selects(c.id))
    if not selected:
        only, skip = options
        chose = f"{only} {','.join(config.only)} and " if config.only else ""
        raise UsageError(f"{chose}{skip} {','.join(config.skip)} {'leave' if chose else 'leaves'} no check to run: "
                         "skip fewer checks (see `deliverck checks`)")
    return selected


def _apply_overrides(findings: list[Finding], overrides: dict[str, Severity]) -> list[Finding]:
    if not overrides:
        return findings
    return [dataclasses.replace(f, severity=overrides[f.id]) if f.id in overrides else f for f in findings]


class Attempted(Protocol):
    """What an attempt needs of the context a check runs with: the audit's Context, or the
    MessageContext of a message check (deliverck.message.context)."""

    config: Config
    target: Target


async def attempt(check: Check, ctx: Attempted) -> CheckResult:
    # The network steps this check's questions start are credited to it (deliverck/timing.py).
    token = timing.current_check.set(check.id)
    try:
        return await _attempt(check, ctx)
    finally:
        timing.current_check.reset(token)


async def _attempt(check: Check, ctx: Attempted) -> CheckResult:
    cfg = ctx.config
    start = time.monotonic()
    tb = ""
    reason = ""
    try:
        async with asyncio.timeout(cfg.check_timeout):
            findings = list(await check.run(ctx))
    except Skip as e:
        return CheckResult(check.id, check.spec.title, Status.SKIPPED,
                           int((time.monotonic() - start) * 1000), reason=str(e))
    except TimeoutError:
        reason = f"did not finish within {cfg.check_timeout:g}s"
        findings = [check.spec.finding("timeout", ctx.target.label, check=check.id,
                                       seconds=f"{cfg.check_timeout:g}")]
    except asyncio.CancelledError:
        # The run's global deadline: report what we know, never a pass.
        reason = f"the run's deadline of {cfg.deadline:g}s passed first"
        findings = [check.spec.finding("timeout", ctx.target.label, check=check.id,
                                       seconds=f"{cfg.deadline:g}")]
    except Exception as e:  # a bug in a check must not kill the run
        tb = traceback.format_exc()
        reason = f"{type(e).__name__}: {e}"
        findings = [check.spec.finding("crashed", ctx.target.label, check=check.id,
                                       error=f"{type(e).__name__}: {e}")]
    findings = _apply_overrides(findings, cfg.severity_overrides)
    duration = int((time.monotonic() - start) * 1000)
    status = status_of(findings, cfg.fail_on)
    if status is Status.ERROR and not reason:
        reason = "; ".join(f.summary for f in findings if f.inconclusive)
    return CheckResult(check.id, check.spec.title, status, duration, tuple(findings), reason, tb)


def _now() -> str:
    return datetime.now(UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")


async def run_audit(config: Config, checks: Sequence[Check] | None = None) -> Report:
    """Audit config.target.  Raises IncompleteError when the resolver cannot be used (no answer,
    the root or a real TLD denied, recursion refused, invented answers)."""
    from deliverck.ndr.catalog import load as load_catalog

    selected = tuple(checks) if checks is not None else select_checks(config)
    if not selected:
        raise UsageError("no check to run: skip fewer checks (see `deliverck checks`)")
    started, t0 = _now(), time.monotonic()
    overlay = load_overlay(config.zone_files) if config.zone_files else None
    client = dnsnet.DnsClient(config.resolvers, timeout=config.dns_timeout, overlay=overlay)
    ctx = Context(config, client, timing.Timeline(t0))
    # The public suffix list is loaded before the first question goes out (~8 ms from the cache,
    # once per process): checks ask for it synchronously (org_domain).  Built on the loop in
    # mid-audit it stalled every check for ~0.1 s; loaded in a thread beside the first round
    # trips it held the GIL in long C calls (marshal, frozenset) while the loop waited to send,
    # and one DNS step took 20-40 ms (tests/test_fixed_cost.py).  A failed load is raised where used.
    if not datacache.psl_loaded():
        with contextlib.suppress(Exception):
            datacache.public_suffix_list()
    # Named tasks: asyncio's debug mode then names the check in a slow-callback warning.
    tasks = [asyncio.create_task(attempt(c, ctx), name=f"check {c.id}") for c in selected]
    # Resolver sanity runs beside the checks: a resolver that cannot answer for the root or the
    # target's TLD, or that invents answers, stops the run with one line (net/dns.py `_sanity`).
    reach = asyncio.ensure_future(client.reachable(config.target.name or config.target.ip or ""))
    try:
        ok, why = await reach
        if not ok:
            raise IncompleteError(why)
        done, pending = await asyncio.wait(tasks, timeout=max(config.deadline - (time.monotonic() - t0), 0))
        for t in pending:
            t.cancel()
        results = [await t for t in tasks]
        roles = await _roles(ctx)
    finally:
        for t in tasks:
            t.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        await ctx.close()
        await dnsnet.close(client)
    steps, dropped = timing.collect(ctx.timeline, client.stats.log, client.t0, client.stats.log_dropped)
    receivers = config.receivers or load_catalog().default_receivers()
    domain = config.target.name or _ptr_name(results) or config.target.ip
    j = judge(results, fail_on=config.fail_on, receivers=receivers, domain=domain,
              sender=config.sender or None, overrides=config.severity_overrides,
              sender_profile=config.sender_profile)
    target = TargetInfo(
        input=config.target.input,
        name=config.target.name,
        ip=config.target.ip,
        roles=roles,
        notes=config.target.notes,
    )
    return Report(
        target=target,
        started=started,
        finished=_now(),
        duration_ms=int((time.monotonic() - t0) * 1000),
        verdict=j.verdict,
        exit_code=j.exit_code,
        fail_on=config.fail_on,
        checks=j.checks,
        predicted_ndrs=j.predicted_ndrs,
        resolvers=tuple(str(r) for r in client.resolvers),
        receivers=tuple(receivers),
        tool_version=__version__,
        zone_files=tuple((z["path"], z["origin"]) for z in overlay.describe()) if overlay else (),
        timings=steps,
        timings_dropped=dropped,
    )


async def _roles(ctx: Context) -> tuple[str, ...]:
    try:
        async with asyncio.timeout(1):
            return await ctx.roles()
    except (Exception, asyncio.CancelledError):
        return ()


def _ptr_name(results: Sequence[CheckResult]) -> str:
    for r in results:
        for f in r.findings:
            name = f.args.get("ptr_name")
            if name:
                return str(name)
    return ""
