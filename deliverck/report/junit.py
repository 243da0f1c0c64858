"""JUnit XML for CI systems: one <testsuite> for the target, one <testcase> per check.

A failing check is a <failure>, a check that could not complete an <error>,
a skipped one <skipped>.  Built with ElementTree, so markup in remote text is
escaped; control characters (which XML 1.0 cannot carry at all) are escaped
first with `safe()`.  With --baseline only new findings fail a test case.
"""

from __future__ import annotations

import re
import xml.etree.ElementTree as ET

from deliverck.baseline import shown_findings
from deliverck.model import Report, Severity, Status
from deliverck.text import safe as _terminal_safe

# Characters XML 1.0 cannot carry at all, even as references (section 2.2, Char):
# what safe() leaves of them (noncharacters U+FFFE/U+FFFF, lone surrogates) is
# written as \uXXXX, so a banner cannot make the document malformed.
_NOT_XML = re.compile("[^\t\n\r\x20-\ud7ff\ue000-\ufffd\U00010000-\U0010ffff]")


def safe(text: object) -> str:
    return _NOT_XML.sub(lambda m: f"\\u{ord(m.group()):04x}", _terminal_safe(text))


def _finding_text(f) -> str:
    sev = "could-not-check" if f.inconclusive else f.severity.to_text()
    lines = [f"[{sev}] {f.id} {safe(f.subject)}: {safe(f.summary)}", f"  fix ({f.owner.value}): {safe(f.fix)}"]
    lines += [f"  seen: {safe(e)}" for e in f.evidence]
    return "\n".join(lines)


def render(report: Report, opts) -> str:
    t = report.target
    label = safe(t.name or t.ip)
    counted = lambda s: sum(1 for c in report.checks if c.status is s)  # noqa: E731
    suite = ET.Element("testsuite", {
        "name": f"deliverck {label}",
        "tests": str(len(report.checks)),
        "failures": str(counted(Status.FAIL)),
        "errors": str(counted(Status.ERROR)),
        "skipped": str(counted(Status.SKIPPED)),
        "time": f"{report.duration_ms / 1000:.3f}",
        "timestamp": report.started,
    })
    props = ET.SubElement(suite, "properties")
    facts = [("verdict", report.verdict.value), ("exit_code", str(report.exit_code)),
             ("fail_on", report.fail_on.to_text()), ("resolvers", ", ".join(report.resolvers))]
    facts += [("zone_file", f"{p} ({o})") for p, o in report.zone_files]
    if report.baseline is not None:
        b = report.baseline
        facts += [("baseline", b.path), ("baseline_new", str(len(b.new))),
                  ("baseline_fixed", str(len(b.fixed))), ("baseline_unchanged", str(len(b.unchanged)))]
    for name, value in facts:
        ET.SubElement(props, "property", {"name": name, "value": safe(value)})

    shown = {id(f) for _c, f in shown_findings(report)}
    for c in report.checks:
        case = ET.SubElement(suite, "testcase", {
            "name": c.id, "classname": f"deliverck.{label}", "time": f"{c.duration_ms / 1000:.3f}",
        })
        findings = [f for f in c.findings if id(f) in shown]
        if c.status is Status.SKIPPED:
            ET.SubElement(case, "skipped", {"message": safe(c.reason)})
        elif c.status is Status.FAIL:
            bad = [f for f in findings if not f.inconclusive and f.severity >= report.fail_on]
            el = ET.SubElement(case, "failure", {
                "message": "; ".join(f"{f.id} {safe(f.subject)}: {safe(f.summary)}" for f in bad)[:1000],
                "type": max(f.severity for f in bad).to_text() if bad else "error",
            })
            el.text = "\n".join(_finding_text(f) for f in bad)
        elif c.status is Status.ERROR:
            bad = [f for f in findings if f.inconclusive]
            el = ET.SubElement(case, "error", {"message": safe(c.reason)[:1000], "type": "could-not-check"})
            el.text = "\n".join(_finding_text(f) for f in bad)
        failing = {id(f) for f in findings if c.status is Status.FAIL and not f.inconclusive
                   and f.severity >= report.fail_on} | {id(f) for f in findings if f.inconclusive}
        rest = [f for f in findings if id(f) not in failing and (f.severity > Severity.INFO or opts.verbose)]
        if rest:
            ET.SubElement(case, "system-out").text = "\n".join(_finding_text(f) for f in rest)
    notes: list[str] = []
    if report.predicted_ndrs:
        notes.append("predicted NDRs (will: the receiver's rule always fires; may: it depends):")
        notes += [f"  {p.likelihood.value}: {p.direction.value} {safe(p.system_name)}: {safe(p.reply)}"
                  + (f" ({safe(p.condition)})" if p.condition else "")
                  + f" [owner {p.owner.value}; caused by {', '.join(p.caused_by)}]"
                  for p in report.predicted_ndrs]
    if report.baseline is not None and report.baseline.fixed:
        notes.append("fixed since the baseline:")
        notes += [f"  {i} {safe(s)} ({sev})" for i, s, sev in report.baseline.fixed]
    if notes:
        ET.SubElement(suite, "system-out").text = "\n".join(notes)
    ET.indent(suite)
    return ET.tostring(suite, encoding="unicode", xml_declaration=True) + "\n"
