"""The attempt wrapper and the verdict rules (no network involved)."""

import asyncio

import pytest

from deliverck.config import Config
from deliverck.model import CheckResult, CheckSpec, Direction, FindingSpec, Owner, Severity, Skip, Status, Verdict
from deliverck.registry import Check, runner_findings
from deliverck.runner import attempt
from deliverck.target import parse_target
from deliverck.verdict import status_of, verdict_of

SPEC = CheckSpec(
    id="demo", title="demo", cause="test double", findings=(
        FindingSpec("demo.bad", Severity.ERROR, "bad {subject}", "fix it", Owner.MAIL_ADMIN, Direction.OUTBOUND),
        FindingSpec("demo.meh", Severity.WARNING, "meh", "maybe", Owner.MAIL_ADMIN, Direction.OUTBOUND),
        FindingSpec("demo.unknown", Severity.ERROR, "could not", "retry", Owner.DNS_ADMIN, Direction.INBOUND,
                    inconclusive=True),
    ) + runner_findings("demo"),
)


class Ctx:
    def __init__(self, **kw):
        self.config = Config(target=parse_target("example.com"), **kw)
        self.target = self.config.target


def make(fn):
    return Check(spec=SPEC, run=fn, module="tests")


async def test_crash_becomes_error_finding_not_a_pass():
    async def boom(ctx):
        raise RuntimeError("kaputt")

    r = await attempt(make(boom), Ctx())
    assert r.status is Status.ERROR
    assert [f.id for f in r.findings] == ["demo.crashed"]
    assert "kaputt" in r.findings[0].summary
    assert "RuntimeError" in r.traceback


async def test_hang_becomes_timeout():
    async def hang(ctx):
        await asyncio.sleep(3600)

    r = await attempt(make(hang), Ctx(check_timeout=0.05))
    assert r.status is Status.ERROR
    assert [f.id for f in r.findings] == ["demo.timeout"]


async def test_skip_and_undeclared_finding():
    async def skip(ctx):
        raise Skip("not applicable")

    r = await attempt(make(skip), Ctx())
    assert (r.status, r.reason) == (Status.SKIPPED, "not applicable")

    async def undeclared(ctx):
        return [SPEC.finding("nope", "x")]

    r = await attempt(make(undeclared), Ctx())
    assert r.status is Status.ERROR and "undeclared" in r.findings[0].summary


async def test_severity_override_and_fail_on():
    async def warn(ctx):
        return [SPEC.finding("meh", "x")]

    assert (await attempt(make(warn), Ctx())).status is Status.WARN
    assert (await attempt(make(warn), Ctx(fail_on=Severity.WARNING))).status is Status.FAIL
    r = await attempt(make(warn), Ctx(severity_overrides={"demo.meh": Severity.ERROR}))
    assert r.status is Status.FAIL and r.findings[0].severity is Severity.ERROR


def test_status_rules():
    bad, meh, unk = (SPEC.finding(n, "x") for n in ("bad", "meh", "unknown"))
    assert status_of([], Severity.ERROR) is Status.PASS
    assert status_of([meh], Severity.ERROR) is Status.WARN
    assert status_of([bad, unk], Severity.ERROR) is Status.FAIL       # a definite failure wins
    assert status_of([meh, unk], Severity.ERROR) is Status.ERROR      # never a pass when incomplete
    assert status_of([unk], Severity.INFO) is Status.ERROR            # inconclusive never counts as fail


def test_verdict_and_exit_codes():
    def res(status):
        return CheckResult("c", "c", status, 0)

    assert verdict_of([res(Status.PASS), res(Status.SKIPPED)]) == (Verdict.PASS, 0)
    assert verdict_of([res(Status.PASS), res(Status.WARN)]) == (Verdict.PASS, 0)
    assert verdict_of([res(Status.ERROR), res(Status.PASS)]) == (Verdict.INCOMPLETE, 3)
    assert verdict_of([res(Status.ERROR), res(Status.FAIL)]) == (Verdict.FAIL, 1)


def test_a_selection_that_leaves_no_check_is_bad_usage():
    """issue 13: `--only mx --skip mx` crashed in asyncio.wait ("Set of Tasks/Futures is empty")."""
    from deliverck.errors import UsageError
    from deliverck.registry import check_ids
    from deliverck.runner import select_checks

    def cfg(**kw):
        return Config(target=parse_target("example.com"), **kw)

    with pytest.raises(UsageError, match=r"^--only mx and --skip mx leave no check to run"):
        select_checks(cfg(only=("mx",), skip=("mx",)))
    with pytest.raises(UsageError, match=r"^skip .* leaves no check to run"):
        select_checks(cfg(skip=tuple(check_ids())), ("only", "skip"))
    assert [c.id for c in select_checks(cfg(only=("mx", "ptr"), skip=("ptr",)))] == ["mx"]
