"""Issue 14, item 15: hostile remote text in every output format: XML stays well-formed."""

from __future__ import annotations

import xml.etree.ElementTree as ET

from deliverck.model import CheckResult, Direction, Finding, Owner, Report, Severity, Status, TargetInfo, Verdict
from deliverck.report import FORMATS, RenderOptions

# Characters XML 1.0 forbids even as references, as a banner can carry them.
NOT_XML = "\ufffe\uffff\x00\x0b\x1b\ud800"


def _report() -> Report:
    f = Finding(id="smtp.greeting_rejected", severity=Severity.ERROR, subject="192.0.2.9",
                summary=f"554 go away {NOT_XML}", fix="Fix it.", owner=Owner.MAIL_ADMIN,
                direction=Direction.INBOUND, evidence=(f"S: 554 {NOT_XML}",), args={"greeting": f"554 {NOT_XML}"})
    return Report(target=TargetInfo("example.test", "example.test", ""), started="2026-12-05T00:00:00Z",
                  finished="2026-12-05T00:00:01Z", duration_ms=1000, verdict=Verdict.FAIL, exit_code=1,
                  fail_on=Severity.ERROR, checks=(CheckResult("smtp", "SMTP", Status.FAIL, 5, (f,),
                                                              reason=NOT_XML),),
                  predicted_ndrs=(), resolvers=("127.0.0.1:53",), receivers=(), tool_version="0")


def test_junit_is_well_formed_xml_whatever_a_banner_carries():
    out = FORMATS["junit"](_report(), RenderOptions(verbose=True))
    root = ET.fromstring(out.split("?>", 1)[1])          # raises on a character XML cannot carry
    text = "".join(root.itertext()) + "".join(v for el in root.iter() for v in el.attrib.values())
    assert "\\ufffe" in text and "\\uffff" in text and "\\x1b" in text
    assert not any(ch in text for ch in NOT_XML)


# --- through the CLI, against a lab server whose greeting is hostile ---------------------------

import json  # noqa: E402

from conftest import deliverck  # noqa: E402

BANNER = "554 mx.hostile-banner.test \x1b[31mred\x1b[0m\x07 \ufffe no service"


def test_json_keeps_remote_text_exactly_and_human_formats_escape_it(lab):
    r = deliverck("hostile-banner.test", "--json", "--only", "mx,smtp", "--smtp-timeout", "3")
    doc = json.loads(r.stdout)
    greeting = next(f for c in doc["checks"] for f in c["findings"] if f["id"] == "smtp.greeting_rejected")
    assert greeting["args"]["greeting"] == BANNER               # the real ESC and BEL, not "\\x1b"
    assert BANNER in greeting["summary"]
    for fmt in ("table", "markdown", "github", "junit", "html"):
        out = deliverck("hostile-banner.test", "--format", fmt, "--only", "mx,smtp", "--smtp-timeout", "3",
                        "-v").stdout
        assert "\x1b" not in out and "\x07" not in out, fmt
        assert "x1b" in out, fmt                                # shown, escaped
    junit = deliverck("hostile-banner.test", "--format", "junit", "--only", "mx,smtp", "--smtp-timeout", "3").stdout
    ET.fromstring(junit.split("?>", 1)[1])


def test_txt_records_reach_json_as_published():
    """DKIM/DMARC TXT text is kept as published (ESC stays ESC), never pre-escaped to backslash text."""
    import dns.rdata

    from deliverck.records.dkim_discovery import txt_text

    rd = dns.rdata.from_wire("IN", "TXT", b"\x19v=DMARC1; p=none \x1b[31m\xc3\xa9\xff", 0, 26)
    assert txt_text(rd) == "v=DMARC1; p=none \x1b[31m\u00e9\ufffd"
