"""`--baseline REPORT.json`: judge only what changed since an earlier report.

A CI job that gates a zone change should fail on regressions, not on every
old problem of the domain.  A finding is "the same" as one in the baseline
when its (id, subject) pair is equal: the subject names the host, address or
record a finding is about, so a finding that moves to another host is new,
while a changed wording or severity is not.  Only problems are compared:
findings of severity notice or worse, and findings that could not be
settled; info findings state facts ("2 MX records"), not problems, and are
neither new nor fixed.  With a baseline, a check fails
only on new findings at or above --fail-on; findings the check could not
settle (inconclusive) always count, since "could not check" is never a pass.
"""

from __future__ import annotations

import dataclasses
import json

from deliverck.errors import UsageError
from deliverck.model import BaselineDiff, Report, Severity, Status
from deliverck.verdict import status_of, verdict_of

Key = tuple[str, str]


@dataclasses.dataclass(frozen=True)
class Baseline:
    path: str
    findings: dict[Key, str]          # (id, subject) -> severity text


# A report is tens of KB; a baseline larger than this is not one (or is /dev/zero).
MAX_BASELINE_BYTES = 64 * 1024 * 1024


def load_baseline(path: str) -> Baseline:
    from deliverck.inputfile import ReadError, read_limited

    if not path:
        raise UsageError("--baseline is empty: give an earlier report (`deliverck TARGET --json > baseline.json`)")
    label = f"--baseline {path}"
    try:
        # Read once and bounded: `--baseline <(git show main:report.json)` is a pipe.
        data, more = read_limited(path, MAX_BASELINE_BYTES)
    except ReadError as e:
        what = ", not a JSON report" if "directory" in str(e) else ""
        raise UsageError(f"{label}: {e}{what}") from None
    if more:
        raise UsageError(f"{label}: larger than {MAX_BASELINE_BYTES // (1024 * 1024)} MiB: not a report "
                         "from `deliverck TARGET --json`")
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError:
        raise UsageError(f"{label}: not UTF-8 text (give a report from `deliverck TARGET --json`)") from None
    try:
        doc = json.loads(text)
    except json.JSONDecodeError as e:
        raise UsageError(f"{label}: not JSON: line {e.lineno}: {e.msg}") from None
    except RecursionError:
        raise UsageError(f"{label}: not a deliverck report (JSON nested too deeply)") from None
    schema = doc.get("schema") if isinstance(doc, dict) else None
    if not isinstance(schema, str) or not schema.startswith("deliverck.report/"):
        raise UsageError(f"{label}: not a deliverck report (no \"schema\": \"deliverck.report/1\"); "
                         "make one with `deliverck TARGET --json > baseline.json`")
    findings: dict[Key, str] = {}
    try:
        for c in doc["checks"]:
            for f in c["findings"]:
                if not isinstance(f["id"], str) or not isinstance(f["subject"], str):
                    raise TypeError
                if f.get("severity") == "info" and not f.get("inconclusive"):
                    continue
                findings[(f["id"], f["subject"])] = str(f.get("severity", ""))
    except (KeyError, TypeError):
        raise UsageError(f"{label}: malformed report: every check needs findings with id and subject") from None
    return Baseline(path, findings)


def apply_baseline(report: Report, baseline: Baseline) -> Report:
    """The report with statuses, verdict and exit code judged on new findings only (by the
    same rules as every audit: verdict.status_of and verdict.verdict_of)."""
    seen: set[Key] = set()
    new, unchanged = [], []
    results = []
    for c in report.checks:
        counted = []
        for f in c.findings:
            if f.severity == Severity.INFO and not f.inconclusive:
                continue
            key = (f.id, f.subject)
            seen.add(key)
            if key in baseline.findings:
                unchanged.append(f)
            else:
                new.append(f)
            if f.inconclusive or key not in baseline.findings:
                counted.append(f)
        if c.status is Status.SKIPPED:
            results.append(c)
        else:
            results.append(dataclasses.replace(c, status=status_of(counted, report.fail_on)))
    fixed = tuple((fid, subject, sev) for (fid, subject), sev in baseline.findings.items()
                  if (fid, subject) not in seen)
    verdict, code = verdict_of(results)
    diff = BaselineDiff(path=baseline.path, new=tuple(new), fixed=fixed, unchanged=tuple(unchanged))
    return dataclasses.replace(report, checks=tuple(results), verdict=verdict, exit_code=code, baseline=diff)


def shown_findings(report: Report, min_severity: Severity = Severity.INFO):
    """(check, finding) pairs a CI renderer reports: with a baseline, only new ones."""
    for c in report.checks:
        for f in c.findings:
            if f.severity < min_severity and not f.inconclusive:
                continue
            if report.baseline is not None and f.severity == Severity.INFO and not f.inconclusive:
                yield c, f                    # facts are not compared; shown as they are
                continue
            if report.baseline is not None and not report.baseline.is_new(f):
                continue
            yield c, f
