"""Finds the checks: every module of `deliverck.checks`, plus entry points.

The list is derived, never kept by hand.  A check module exposes `CHECK`
(a CheckSpec) and `async def run(ctx) -> list[Finding]`.  Third-party
packages add checks through the entry-point group `deliverck.checks`, whose
value is a module path.  Every check also gets the runner's own findings
(`<id>.crashed`, `<id>.timeout`), and its findings' NDR keys are filled in
from the NDR catalog, the one place where finding -> NDR links live.
"""

from __future__ import annotations

import dataclasses
import importlib
import importlib.metadata
import pkgutil
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from functools import lru_cache
from types import ModuleType

from deliverck.model import CheckSpec, Direction, Finding, FindingSpec, Owner, Severity

ENTRY_POINT_GROUP = "deliverck.checks"


@dataclass(frozen=True)
class Check:
    spec: CheckSpec
    run: Callable[..., Awaitable[list[Finding]]]
    module: str

    @property
    def id(self) -> str:
        return self.spec.id


def runner_findings(check_id: str) -> tuple[FindingSpec, ...]:
    return (
        FindingSpec(
            id=f"{check_id}.crashed",
            severity=Severity.ERROR,
            summary="the {check} check stopped on an internal error: {error}",
            fix="This is a deliverck bug: rerun with --debug and report the traceback.",
            owner=Owner.NOBODY,
            direction=Direction.NONE,
            inconclusive=True,
        ),
        FindingSpec(
            id=f"{check_id}.timeout",
            severity=Severity.ERROR,
            summary="the {check} check did not finish within {seconds}s",
            fix="Rerun later or with a longer --check-timeout; servers that answer this slowly also delay real senders.",
            owner=Owner.NETWORK,
            direction=Direction.NONE,
            inconclusive=True,
        ),
    )


def _load_module(mod: ModuleType) -> Check:
    spec = getattr(mod, "CHECK", None)
    run = getattr(mod, "run", None)
    if not isinstance(spec, CheckSpec) or not callable(run):
        raise TypeError(f"{mod.__name__} is not a deliverck check (needs CHECK and run)")
    for f in spec.findings:
        if f.check_id != spec.id:
            raise ValueError(f"{mod.__name__}: finding {f.id} does not start with {spec.id}.")
    with_runner = spec.findings + runner_findings(spec.id)
    spec = dataclasses.replace(spec, findings=_with_ndr(with_runner))
    return Check(spec=spec, run=run, module=mod.__name__)


def _with_ndr(findings: tuple[FindingSpec, ...]) -> tuple[FindingSpec, ...]:
    from deliverck.ndr.catalog import load

    catalog = load()
    out = []
    for f in findings:
        keys = tuple(dict.fromkeys(f.ndr + tuple(e.key for e in catalog.by_finding(f.id))))
        out.append(dataclasses.replace(f, ndr=keys))
    return tuple(out)


@lru_cache(maxsize=1)
def all_checks() -> tuple[Check, ...]:
    import deliverck.checks as pkg

    found: dict[str, Check] = {}
    for info in pkgutil.iter_modules(pkg.__path__, prefix=pkg.__name__ + "."):
        if info.name.rsplit(".", 1)[1].startswith("_"):
            continue
        check = _load_module(importlib.import_module(info.name))
        found[check.id] = check
    for ep in importlib.metadata.entry_points(group=ENTRY_POINT_GROUP):
        check = _load_module(importlib.import_module(ep.value.split(":")[0]))
        if check.id in found and found[check.id].module != check.module:
            raise ValueError(f"entry point {ep.name}: check id {check.id!r} already taken by {found[check.id].module}")
        found[check.id] = check
    return tuple(sorted(found.values(), key=lambda c: (c.spec.order, c.id)))


@lru_cache(maxsize=1)
def message_checks() -> tuple[Check, ...]:
    """The checks of `deliverck message` and `deliverck listen`: the modules of deliverck.message.checks.
    They judge one message (deliverck.message.context.MessageContext), never a domain, so the audit's
    --only/--skip never names them; their findings share the catalog, the config's [severity] and ignores."""
    import deliverck.message.checks as pkg

    found: dict[str, Check] = {}
    for info in pkgutil.iter_modules(pkg.__path__, prefix=pkg.__name__ + "."):
        if info.name.rsplit(".", 1)[1].startswith("_"):
            continue
        check = _load_module(importlib.import_module(info.name))
        if check.id in {c.id for c in all_checks()} or check.id in found:
            raise ValueError(f"{info.name}: check id {check.id!r} is already taken")
        found[check.id] = check
    return tuple(sorted(found.values(), key=lambda c: (c.spec.order, c.id)))


def check_ids() -> tuple[str, ...]:
    return tuple(c.id for c in all_checks())


def finding_specs() -> dict[str, FindingSpec]:
    """Every finding deliverck can emit: the audit's checks and the message checks."""
    return {f.id: f for c in all_checks() + message_checks() for f in c.spec.findings}
