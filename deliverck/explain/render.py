"""Explanations -> table text (everything from the bounce escaped) or JSON (schema deliverck.explain/1)."""

from __future__ import annotations

import json
import textwrap
from typing import NamedTuple

from deliverck.explain.model import Explanation, Party
from deliverck.text import safe

WIDTH = 100


def _wrap(label: str, text: str) -> list[str]:
    lines = textwrap.wrap(text, WIDTH - 14, break_long_words=True, break_on_hyphens=False) or [""]
    return [f"  {label:<11} {lines[0]}"] + [f"  {'':<11} {ln}" for ln in lines[1:]]


def _party(p: Party, unknown: str) -> str:
    if not (p.system or p.host or p.ip):
        return unknown
    s = p.name or ""
    where = " ".join(x for x in (safe(p.host), f"[{safe(p.ip)}]" if p.ip else "") if x)
    s = f"{s} at {where}" if s and where else (s or where)
    return s + (f" ({safe(p.evidence)})" if p.evidence else "")


def render_table(e: Explanation, verbose: bool = False, header: bool = False) -> str:
    out: list[str] = []
    title = safe(e.source) + (f" #{e.index + 1}" if e.index else "")
    if e.error:
        return f"{title}: error: {safe(e.error)}\n"
    if not e.is_bounce:
        return not_a_bounce_line(e)
    b = e.bounce
    assert b is not None, "an Explanation without an error always carries its Bounce (engine.explain_bounce)"
    if header:
        out.append(f"== {title}")
    kind = {"status": "status code", "reply": "reply line", "text": "text", "message": "message"}.get(b.kind, b.kind)
    fmt = f", {b.format}" if b.format and b.format not in (b.kind, "text") else ""
    out.append(f"deliverck explain: {kind}{fmt}" + (f" ({len(e.results)} recipients)" if len(e.results) > 1 else ""))
    out += _wrap("reporting", _party(e.reporting, "not identifiable from this input"))
    for i, r in enumerate(e.results):
        a = r.attempt
        if len(e.results) > 1:
            out.append(f"  --- recipient {i + 1} of {len(e.results)}")
        if a.recipient or a.action:
            out += _wrap("recipient", safe(a.recipient or "(not stated)") + (f" (action: {safe(a.action)})" if a.action else ""))
        out += _wrap("reply", safe(a.reply) if a.reply else "(no reply text found)")
        if a.status:
            out += _wrap("status", f"{safe(a.status)}: {r.status_meaning}")
        if i == 0:
            out += _wrap("receiving", _party(e.receiving, "not identifiable from this input"))
            if e.sending.host or e.sending.ip:
                out += _wrap("sending", _party(e.sending, ""))
        elif a.remote_mta or a.remote_ip:
            out += _wrap("receiving", safe(a.remote_mta) + (f" [{safe(a.remote_ip)}]" if a.remote_ip else ""))
        cat = f"{r.category}: {r.title} (confidence {r.confidence})"
        if r.underlying:
            cat += f"; last attempt: {r.underlying}"
        out += _wrap("category", cat)
        if i == 0 and e.final is False:
            out += _wrap("not final", "a delivery warning (Action: delayed): the sending server is still retrying; "
                                      "a bounce follows only if it gives up")
        out += _wrap("meaning", r.meaning)
        out += _wrap("owner", r.owner)
        out += _wrap("fix", r.fix)
        out += _wrap("checks", ", ".join(r.checks) + "  (deliverck explain ... --run)" if r.checks else "none: no deliverck check tests this cause")
        ev = r.evidence if verbose else r.evidence[:2]
        for j, x in enumerate(ev):
            out += _wrap("evidence" if j == 0 else "", safe(x))
    for n in b.notes:
        out += _wrap("note", safe(n))
    return "\n".join(out) + "\n"


def not_a_bounce_line(e: Explanation) -> str:
    """The one line for an input that is not a bounce (exit 1, no category)."""
    title = safe(e.source) + (f" #{e.index + 1}" if e.index else "")
    b = e.bounce
    assert b is not None, "is_bounce is False only for an Explanation that carries its Bounce"
    return f"{title}: not a bounce (confidence low): {safe(b.not_bounce)}\n"


def skipped_summary(counts: dict[str, int], total: int) -> str:
    """Directory triage: one line saying how many inputs were skipped and why."""
    from deliverck.explain.evidence import KINDS

    n = sum(counts.values())
    if not n:
        return ""
    why = ", ".join(f"{c} {KINDS.get(k, (k, k))[c != 1]}" for k, c in sorted(counts.items(), key=lambda x: (-x[1], x[0])))
    return f"skipped {n} of {total} {'input' if total == 1 else 'inputs'} that are not bounces: {why}\n"


def to_json(e: Explanation) -> dict:
    return e.to_json()


def render_json(e: Explanation, audit: dict | None = None) -> str:
    doc = e.to_json()
    if audit is not None:
        doc["audit"] = audit
    return json.dumps(doc, indent=2, ensure_ascii=False) + "\n"


def render_jsonl(e: Explanation) -> str:
    return json.dumps(e.to_json(), ensure_ascii=False, separators=(",", ":")) + "\n"


class Triaged(NamedTuple):
    """What directory triage (cli/explain.py) needs of one Explanation, its output already rendered.

    Worker processes send these back instead of the Explanation trees (issue 16): a string and four
    small fields pickle and load in a fraction of the time, and the rendering runs on the workers'
    cores rather than in the one process that writes the output."""
    text: str           # what to write for it: a JSON line, a table, a not-a-bounce line, or ""
    skipped: bool       # not a bounce, in a directory: counted by kind, not shown as a table
    kind: str           # evidence.KINDS key of a skipped input
    exit_code: int
    table: bool         # text is a table (separated from the previous one by a blank line)


def triage(e: Explanation, jsonl: bool, verbose: bool, directory: bool) -> Triaged:
    """The one record of e that `explain DIR` or `explain FILES...` writes (docs/explain.md)."""
    skip = directory and not e.is_bounce and not e.error
    kind = e.bounce.not_bounce_kind if skip and e.bounce is not None else ""
    if jsonl:
        return Triaged(render_jsonl(e), skip, kind, e.exit_code, False)
    if skip:
        return Triaged(not_a_bounce_line(e) if verbose else "", skip, kind, e.exit_code, False)
    return Triaged(render_table(e, verbose=verbose, header=True), skip, kind, e.exit_code, True)
