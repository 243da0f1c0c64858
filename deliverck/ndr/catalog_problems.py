"""Checks of single catalog entries that Catalog.problems() runs: reply code and status, likelihood, profile.

Kept apart from catalog.py so that the loader stays small; the entry is read by its fields only.
"""

from __future__ import annotations

import re
from typing import Any

from deliverck.model import Direction, Likelihood, Owner

STATUS_RE = re.compile(r"^([245])\.(\d{1,3})\.(\d{1,3})$")
CONTROL_RE = re.compile(r"[\x00-\x1f\x7f-\x9f]")
# Sender profiles a catalog entry can be limited to: "bulk" marks a rule the receiver documents for
# bulk senders only (5,000 or more messages a day; Gmail's and Yahoo's sender guidelines, Microsoft's
# high-volume sender requirements), so for anyone else it stays a possibility.
PROFILES = ("bulk",)


def likelihood_problems(e: Any) -> list[str]:
    where = f"entry {e.key!r}"
    names = tuple(x.value for x in Likelihood)
    out: list[str] = []
    if e.likelihood and e.likelihood not in names:
        out.append(f"{where}: unknown likelihood {e.likelihood!r} (use one of: {', '.join(names)})")
    if e.findings and not e.likelihood:
        out.append(f"{where}: missing likelihood (will or may): findings predict this entry")
    for fid, value in e.likelihood_by_finding.items():
        if fid not in e.findings:
            out.append(f"{where}: 'likelihood_by_finding' names {fid!r}, which is not in its findings")
        if value not in names:
            out.append(f"{where}: unknown likelihood {value!r} for {fid} (use one of: {', '.join(names)})")
    may = e.likelihood == "may" or "may" in e.likelihood_by_finding.values()
    if may and not e.condition.strip():
        out.append(f"{where}: likelihood 'may' needs a condition (what the reply depends on)")
    if e.profile and e.profile not in PROFILES:
        out.append(f"{where}: unknown profile {e.profile!r} (use one of: {', '.join(PROFILES)}, or leave it out)")
    elif e.profile and e.findings and not e.condition.strip():
        out.append(f"{where}: profile {e.profile!r} needs a condition (what the reply takes for other senders)")
    if e.condition and CONTROL_RE.search(e.condition):
        out.append(f"{where}: control character in condition")
    return out


def value(x: Any) -> Any:
    return x.value if isinstance(x, Direction | Owner) else x


def code_problems(e: Any) -> list[str]:
    where = f"entry {e.key!r}"
    out: list[str] = []
    if isinstance(e.code, bool) or not isinstance(e.code, int):
        return [f"{where}: reply code must be an integer, got {e.code!r}"]
    if e.code != 0 and not 200 <= e.code <= 599:
        out.append(f"{where}: reply code {e.code} is not an SMTP reply code (200-599, or 0 for none)")
    if e.status:
        m = STATUS_RE.match(e.status)
        if not m:
            out.append(f"{where}: bad enhanced status syntax {e.status!r} (want class.subject.detail, e.g. 5.7.25)")
        elif e.code and str(e.code)[0] != m.group(1) and not e.mixed_class:
            out.append(
                f"{where}: status {e.status} disagrees with reply code {e.code} "
                "(set mixed_class = true only if the system really does this)"
            )
        elif e.mixed_class and (not e.code or str(e.code)[0] == m.group(1)):
            out.append(f"{where}: mixed_class is set but code and status agree")
    elif e.mixed_class:
        out.append(f"{where}: mixed_class is set but there is no status")
    if e.status_range_end:
        start, end = STATUS_RE.match(e.status or ""), STATUS_RE.match(e.status_range_end)
        if not start:
            out.append(f"{where}: status_range_end needs a status that opens the range")
        elif not end:
            out.append(f"{where}: bad status_range_end syntax {e.status_range_end!r} (want e.g. 5.7.649)")
        elif start.groups()[:2] != end.groups()[:2] or int(end.group(3)) <= int(start.group(3)):
            out.append(
                f"{where}: status range {e.status}-{e.status_range_end} must stay in one class and "
                "subject and end above its start")
    if e.code == 0 and not e.status and not e.text:
        out.append(f"{where}: neither reply code, status nor text")
    return out
