"""The one place that judges an audit: findings -> predicted NDRs -> statuses -> verdict.

The verdict, the findings and the predicted NDRs must tell one story.  So the
judgement runs in this order, for every front end (check, audit, bulk):

1. predict the replies of the receivers the report is for, and link each
   finding to the predictions it causes (JSON `finding.ndr`);
2. a finding that makes a receiver of the report reply with a permanent
   (5xx) error under a rule that always fires on that evidence
   (likelihood `will`) is at least `error`: a report never says PASS above
   a bounce it predicts for certain.  A severity the user set in the config
   (`[severity]`) is policy and wins over this; a finding deliverck could
   not settle (inconclusive) is never raised;
3. the status of each check and the verdict follow from the findings.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

from deliverck.model import (
    EXIT_FAIL,
    EXIT_INCOMPLETE,
    EXIT_PASS,
    CheckResult,
    Finding,
    Likelihood,
    NdrPrediction,
    Severity,
    Status,
    Verdict,
)


def status_of(findings: Sequence[Finding], fail_on: Severity) -> Status:
    if any(not f.inconclusive and f.severity >= fail_on for f in findings):
        return Status.FAIL
    if any(f.inconclusive for f in findings):
        return Status.ERROR
    if any(f.severity >= Severity.WARNING for f in findings):
        return Status.WARN
    return Status.PASS


def verdict_of(results: Sequence[CheckResult]) -> tuple[Verdict, int]:
    if any(r.status is Status.FAIL for r in results):
        return Verdict.FAIL, EXIT_FAIL
    if any(r.status is Status.ERROR for r in results):
        return Verdict.INCOMPLETE, EXIT_INCOMPLETE
    return Verdict.PASS, EXIT_PASS


def restatus(result: CheckResult, findings: Sequence[Finding], fail_on: Severity) -> CheckResult:
    """`result` holding `findings`, its status (and reason) judged again."""
    if result.status is Status.SKIPPED:
        return dataclasses.replace(result, findings=tuple(findings))
    status = status_of(findings, fail_on)
    reason = result.reason
    if status is Status.ERROR and not reason:
        reason = "; ".join(f.summary for f in findings if f.inconclusive)
    elif status is not Status.ERROR and result.status is Status.ERROR and not any(f.inconclusive for f in findings):
        reason = ""
    return dataclasses.replace(result, findings=tuple(findings), status=status, reason=reason)


@dataclass(frozen=True)
class Judgement:
    checks: tuple[CheckResult, ...]
    predicted_ndrs: tuple[NdrPrediction, ...]
    verdict: Verdict
    exit_code: int


def certain_bounce(p: NdrPrediction, receivers: Sequence[str], fallback: Sequence[str]) -> bool:
    """A permanent reply a receiver of the report always gives on this evidence."""
    return p.likelihood is Likelihood.WILL and p.permanent and p.system in receivers and p.system not in fallback


def judge(
    results: Sequence[CheckResult],
    *,
    fail_on: Severity,
    receivers: Sequence[str],
    domain: str,
    sender: str | None = None,
    overrides: Mapping[str, Severity] | None = None,
    sender_profile: str = "",
) -> Judgement:
    """sender_profile: "bulk" makes a receiver's bulk-sender rule (`profile = "bulk"` in the catalog)
    certain, so an unmet one raises the verdict; under "transactional" (or "", not known) it stays a
    `may` that names the volume it takes, and never does (docs/usage.md, "Sender profiles")."""
    from deliverck.ndr.catalog import load
    from deliverck.ndr.predict import predict_links

    cat = load()
    fallback = cat.fallback_receivers()
    findings = [f for r in results for f in r.findings]
    predictions, links = predict_links(findings, receivers, domain=domain, sender=sender, catalog=cat,
                                       sender_profile=sender_profile)
    by_key: dict[str, list[NdrPrediction]] = {}
    for p in predictions:
        by_key.setdefault(p.key, []).append(p)
    overrides = overrides or {}

    judged: list[CheckResult] = []
    i = 0
    for r in results:
        out: list[Finding] = []
        for f in r.findings:
            keys = links[i]
            i += 1
            certain = [p for k in keys for p in by_key[k]
                       if certain_bounce(p, receivers, fallback) and f.id in p.caused_by]
            if certain and not f.inconclusive and f.id not in overrides and f.severity < Severity.ERROR:
                p = certain[0]
                why = f"raised to error from {f.severity.to_text()}: {p.system_name} will answer {p.reply}"
                f = dataclasses.replace(f, severity=Severity.ERROR, evidence=f.evidence + (why,))
            if tuple(f.ndr) != keys:
                f = dataclasses.replace(f, ndr=keys)
            out.append(f)
        judged.append(restatus(r, out, fail_on))
    verdict, code = verdict_of(judged)
    return Judgement(tuple(judged), predictions, verdict, code)
