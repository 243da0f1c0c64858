"""CI gating of DNS changes (issue 9): --zone-file, --baseline and the CI formats.

The end-to-end tests play a zone repository's CI job against the lab: the
zone of good.test as the repository holds it (unsigned, from the lab's own
file), a pull request that breaks it, and the job's commands from docs/ci.md.
"""

from __future__ import annotations

import asyncio
import json
import re
import xml.etree.ElementTree as ET
from pathlib import Path

import pytest
from conftest import ROOT, deliverck, validate_report

from deliverck.model import (
    CheckResult,
    Direction,
    Finding,
    Owner,
    Report,
    Severity,
    Status,
    TargetInfo,
    Verdict,
)
from deliverck.net.dns import DnsClient, Outcome, ResolverAddress
from deliverck.net.overlay import ZoneFileSpec, load_overlay, parse_zone_file_option

CI = ROOT / "tests" / "ci"
GH_LINE = re.compile(r"^::(error|warning) title=([^:\n]*)::([^\n]*)$")


# --- the zone-repository CI example, in the lab -------------------------------------------

def _repo_zone(lab, tmp_path: Path, change=None) -> Path:
    """good.test as a zone repository holds it: the served zone without DNSSEC records."""
    served = Path(lab.lab_dir) / "zones" / "good.test.zone"
    keep = [ln for ln in served.read_text().splitlines()
            if ln.split()[3:4] not in (["RRSIG"], ["NSEC"], ["NSEC3"], ["DNSKEY"], ["NSEC3PARAM"])]
    text = "\n".join(keep) + "\n"
    if change:
        text = change(text)
    zones = tmp_path / "zones"
    zones.mkdir(exist_ok=True)
    p = zones / "good.test.zone"
    p.write_text(text)
    return p


def _break_mx(text: str) -> str:
    assert "MX 10 mx1.good.test." in text
    return text.replace("MX 10 mx1.good.test.", "MX 10 mx3.good.test.")


def audit(lab, *args: str):
    return deliverck("--ca-file", lab.ca_file, "--trust-anchor", lab.trust_anchor,
                     "--smtp-timeout", "3", "--dns-timeout", "2", "--deadline", "30", *args)


def _ids(doc) -> list[tuple[str, str]]:
    return [(f["id"], f["subject"]) for c in doc["checks"] for f in c["findings"]]


def test_zone_repo_ci_example_fails_on_the_breaking_change(lab, tmp_path):
    # main branch: the zone as deployed passes, with and without the overlay
    live = audit(lab, "good.test", "--json")
    assert live.returncode == 0, live.stdout[-2000:] + live.stderr
    unchanged = audit(lab, "good.test", "--zone-file", str(_repo_zone(lab, tmp_path)), "--json")
    assert unchanged.returncode == 0, unchanged.stdout[-3000:] + unchanged.stderr
    doc = json.loads(unchanged.stdout)
    validate_report(doc)
    assert doc["zone_files"] == [{"path": str(tmp_path / "zones" / "good.test.zone"), "origin": "good.test"}]
    status = {c["id"]: c["status"] for c in doc["checks"]}
    assert status["dnssec"] == status["dane"] == "skipped"     # unsigned proposed data: not judged
    assert ("mx.target_nxdomain", "mx3.good.test") not in _ids(doc)

    # the pull request: MX 10 points at a name that does not exist
    (tmp_path / "baseline.json").write_text(live.stdout)
    zone = _repo_zone(lab, tmp_path, _break_mx)
    broken = audit(lab, "good.test", "--zone-file", f"{zone}:good.test", "--json")
    assert broken.returncode == 1, broken.stdout[-3000:]
    doc = json.loads(broken.stdout)
    validate_report(doc)
    assert doc["verdict"] == "fail"
    assert ("mx.target_nxdomain", "mx3.good.test") in _ids(doc)
    failing = [c["id"] for c in doc["checks"] if c["status"] == "fail"]
    assert failing == ["mx"], failing

    # the job of docs/ci.md: GitHub annotations against the baseline, then JUnit
    gh = audit(lab, "good.test", "--zone-file", str(zone), "--baseline", str(tmp_path / "baseline.json"),
               "--format", "github")
    assert gh.returncode == 1, gh.stdout
    notes = [GH_LINE.match(ln) for ln in gh.stdout.splitlines() if ln.startswith("::")]
    assert all(notes), gh.stdout
    assert [(m.group(1), "mx.target_nxdomain" in m.group(2)) for m in notes] == [("error", True)], gh.stdout
    assert "mx3.good.test" in notes[0].group(3)
    assert "baseline" in gh.stdout and "1 new" in gh.stdout

    junit = audit(lab, "good.test", "--zone-file", str(zone), "--baseline", str(tmp_path / "baseline.json"),
                  "--format", "junit")
    assert junit.returncode == 1
    suite = ET.fromstring(junit.stdout)
    assert suite.tag == "testsuite" and suite.get("failures") == "1"
    cases = {c.get("name"): c for c in suite.iter("testcase")}
    assert set(cases) == {c["id"] for c in doc["checks"]}
    assert "mx.target_nxdomain" in cases["mx"].find("failure").get("message")
    assert cases["dnssec"].find("skipped") is not None
    assert cases["ptr"].find("failure") is None


def test_zone_file_from_process_substitution(lab, tmp_path):
    """issue 13: `--zone-file <(git show main:zone)` was read twice, so the second read of the pipe
    found nothing and said "no SOA record".  Played here with bash's real process substitution."""
    import os
    import subprocess
    import sys

    zone = _repo_zone(lab, tmp_path, _break_mx)
    argv = [sys.executable, "-m", "deliverck", "good.test", "--only", "mx", "--json", "--dns-timeout", "2"]
    r = subprocess.run(["bash", "-c", '"$@" --zone-file <(cat "$ZONE"):good.test', "bash", *argv],
                       capture_output=True, text=True, timeout=60, env={**os.environ, "ZONE": str(zone)})
    assert r.returncode == 1, r.stderr
    doc = json.loads(r.stdout)
    assert ("mx.target_nxdomain", "mx3.good.test") in _ids(doc)
    assert doc["zone_files"][0]["path"].startswith("/dev/fd/")


def test_zone_file_is_read_once_from_a_fifo(tmp_path):
    import os
    import threading

    from deliverck.net.overlay import read_zone_text

    fifo = tmp_path / "zone.fifo"
    os.mkfifo(fifo)
    text = (CI / "overlay.example.zone").read_text()

    def writer():
        with open(fifo, "w") as f:          # blocks until the one reader opens it
            f.write(text)

    t = threading.Thread(target=writer, daemon=True)
    t.start()
    spec = read_zone_text(parse_zone_file_option(f"{fifo}:overlay.example"))
    t.join(5)
    assert not t.is_alive()
    # Parsed as often as needed (the CLI validates, the run loads) without touching the FIFO again:
    # a second open of the FIFO would block for ever, with no writer left.
    for _ in range(2):
        overlay = load_overlay([spec])
        assert overlay.answer("overlay.example", "SOA").kind == "ok"


def test_baseline_new_fixed_unchanged(lab, tmp_path):
    zone = _repo_zone(lab, tmp_path, _break_mx)
    first = audit(lab, "good.test", "--zone-file", str(zone), "--json")
    assert first.returncode == 1
    base = json.loads(first.stdout)
    # An old problem the change fixes, as an earlier report would carry it.
    base["checks"][0]["findings"].append({**base["checks"][0]["findings"][0], "id": "mx.target_no_address",
                                          "subject": "old.good.test", "severity": "error"})
    (tmp_path / "base.json").write_text(json.dumps(base))

    r = audit(lab, "good.test", "--zone-file", str(zone), "--baseline", str(tmp_path / "base.json"), "--json")
    doc = json.loads(r.stdout)
    validate_report(doc)
    b = doc["baseline"]
    # the breaking finding was already in the baseline: nothing new, so the gate passes
    assert (r.returncode, doc["verdict"]) == (0, "pass"), b
    assert {"id": "mx.target_nxdomain", "subject": "mx3.good.test", "severity": "error"} in b["unchanged_findings"]
    assert b["fixed_findings"] == [{"id": "mx.target_no_address", "subject": "old.good.test", "severity": "error"}]
    assert (b["new"], b["fixed"]) == (0, 1) and b["unchanged"] == len(b["unchanged_findings"]) >= 1
    assert all(f["severity"] != "info" for f in b["unchanged_findings"])    # facts are not compared

    md = audit(lab, "good.test", "--zone-file", str(zone), "--baseline", str(tmp_path / "base.json"),
               "--format", "markdown")
    assert md.returncode == 0
    assert "Fixed since the baseline" in md.stdout and "mx\\.target\\_no\\_address" in md.stdout

    # against a clean baseline the same finding is new and fails
    clean = audit(lab, "good.test", "--json")
    (tmp_path / "clean.json").write_text(clean.stdout)
    r = audit(lab, "good.test", "--zone-file", str(zone), "--baseline", str(tmp_path / "clean.json"), "--json")
    doc = json.loads(r.stdout)
    assert r.returncode == 1 and doc["verdict"] == "fail"
    assert {"id": "mx.target_nxdomain", "subject": "mx3.good.test", "severity": "error"} in \
        doc["baseline"]["new_findings"]


# --- the overlay itself, without any network ------------------------------------------------

def _client(*specs: ZoneFileSpec) -> DnsClient:
    # port 9 (discard) of the loopback: any answer that needs the network fails
    return DnsClient([ResolverAddress("127.0.0.1", 9)], timeout=0.3, attempts=1,
                     overlay=load_overlay(specs or (ZoneFileSpec(str(CI / "overlay.example.zone")),)))


def _ask(client: DnsClient, name: str, rdtype: str):
    return asyncio.run(client.lookup(name, rdtype))


@pytest.mark.parametrize("name,rdtype,outcome,records", [
    ("overlay.example", "MX", Outcome.OK, ["10 mx1.overlay.example."]),
    ("mx1.overlay.example", "AAAA", Outcome.OK, ["2001:db8::10"]),
    ("mx1.overlay.example", "TXT", Outcome.NODATA, []),
    ("nothere.overlay.example", "A", Outcome.NXDOMAIN, []),
    ("alias.overlay.example", "A", Outcome.OK, ["192.0.2.10"]),
    ("alias.overlay.example", "CNAME", Outcome.OK, ["mx1.overlay.example."]),
    ("x.wild.overlay.example", "TXT", Outcome.OK, ['"wildcard"']),
    ("y.x.wild.overlay.example", "TXT", Outcome.OK, ['"wildcard"']),      # RFC 4592: closest encloser wild.
    ("x.wild.overlay.example", "A", Outcome.NODATA, []),
    ("b.deep.overlay.example", "A", Outcome.NODATA, []),                   # empty non-terminal
    ("c.b.deep.overlay.example", "A", Outcome.NXDOMAIN, []),
    ("overlay.example", "NS", Outcome.OK, ["ns1.overlay.example."]),
])
def test_overlay_answers(name, rdtype, outcome, records):
    ans = _ask(_client(), name, rdtype)
    assert ans.outcome is outcome, ans
    assert sorted(r.to_text() for r in ans.records) == records
    assert ans.server.startswith("zone-file:") and ans.server.endswith("overlay.example.zone")
    assert ans.authenticated is False


def test_overlay_cname_chain():
    ans = _ask(_client(), "alias.overlay.example", "AAAA")
    assert ans.via_cname and ans.canonical_name == "mx1.overlay.example"
    loop = _ask(_client(), "loop1.overlay.example", "A")
    assert loop.outcome is Outcome.ERROR and "CNAME" in loop.detail


@pytest.mark.parametrize("name", ["www.child.overlay.example", "child.overlay.example", "example.org",
                                  "outside.overlay.example"])
def test_overlay_falls_back_to_dns(name):
    # below a delegation, outside the zone, and a CNAME leaving the zone: real DNS answers (here: nobody)
    ans = _ask(_client(), name, "A")
    assert not ans.outcome.definite, ans
    if name.startswith("outside"):
        assert ans.canonical_name == "mail.elsewhere.invalid"


def test_zone_file_origin_rules(tmp_path):
    text = (CI / "overlay.example.zone").read_text().replace("$ORIGIN overlay.example.\n", "")
    named = tmp_path / "named.example.zone"
    named.write_text(text)
    ov = load_overlay([parse_zone_file_option(str(named))])
    assert [z["origin"] for z in ov.describe()] == ["named.example"]          # file name minus .zone
    ov = load_overlay([parse_zone_file_option(f"{named}:other.example")])
    assert [z["origin"] for z in ov.describe()] == ["other.example"]          # :ORIGIN wins
    ov = load_overlay([parse_zone_file_option(str(CI / "overlay.example.zone"))])
    assert [z["origin"] for z in ov.describe()] == ["overlay.example"]        # $ORIGIN


# --- the renderers with hostile remote text -------------------------------------------------

HOSTILE = "evil\x1b[31m\r\n::error::pwned %0A <script>x</script> [click](http://evil.example) ![i](x) | @admin"


def _report(baseline=None) -> Report:
    bad = Finding(id="smtp.greeting_5xx", severity=Severity.ERROR, subject="192.0.2.9", summary=HOSTILE,
                  fix="Fix it, now: really", owner=Owner.MAIL_ADMIN, direction=Direction.INBOUND,
                  evidence=(HOSTILE,))
    warn = Finding(id="dmarc.p_none", severity=Severity.WARNING, subject="example.com", summary="p=none",
                   fix="Publish p=reject", owner=Owner.DNS_ADMIN, direction=Direction.OUTBOUND)
    checks = (
        CheckResult("smtp", "SMTP", Status.FAIL, 5, (bad,)),
        CheckResult("dmarc", "DMARC", Status.WARN, 5, (warn,)),
        CheckResult("dane", "DANE", Status.SKIPPED, 0, (), reason=HOSTILE),
    )
    return Report(target=TargetInfo("example.com", "example.com", ""), started="2026-11-23T00:00:00Z",
                  finished="2026-11-23T00:00:01Z", duration_ms=1000, verdict=Verdict.FAIL, exit_code=1,
                  fail_on=Severity.ERROR, checks=checks, predicted_ndrs=(), resolvers=("127.0.0.1:53",),
                  receivers=(), tool_version="0", zone_files=(("zones/example.com.zone", "example.com"),))


def _render(fmt: str, report: Report) -> str:
    from deliverck.report import FORMATS, RenderOptions

    return FORMATS[fmt](report, RenderOptions())


def test_junit_escapes_hostile_text():
    out = _render("junit", _report())
    assert "\x1b" not in out and "\r" not in out
    suite = ET.fromstring(out)                        # well-formed despite control characters and markup
    smtp = next(c for c in suite.iter("testcase") if c.get("name") == "smtp")
    assert "<script>" in smtp.find("failure").get("message")        # text, not markup
    assert suite.find("testcase[@name='dane']/skipped") is not None
    assert (suite.get("tests"), suite.get("failures"), suite.get("skipped")) == ("3", "1", "1")


def test_github_annotations_escape_hostile_text():
    out = _render("github", _report())
    lines = out.splitlines()
    commands = [ln for ln in lines if ln.startswith("::")]
    assert len(commands) == 2, out                    # the error and the warning; the banner starts none
    assert [GH_LINE.match(ln).group(1) for ln in commands] == ["error", "warning"]
    assert "%0A" in commands[0] and "%250A" in commands[0] and "\x1b" not in out
    assert "%3A" in GH_LINE.match(commands[0]).group(2)     # the colon in the title property


def test_markdown_escapes_hostile_text():
    out = _render("markdown", _report())
    assert "<script" not in out and "](" not in out and "![" not in out and "@admin" not in out
    assert "\x1b" not in out and "\r" not in out
    for ln in out.splitlines():
        if ln.startswith("| `"):
            assert ln.count("|") - ln.count("\\|") == 4, ln     # no injected table cells
    assert "**FAIL**" in out and "`smtp.greeting_5xx`" in out and "Publish p=reject" in out


def test_renderers_with_baseline_show_only_new_findings():
    import dataclasses

    from deliverck.model import BaselineDiff

    r = _report()
    old, new = r.checks[0].findings[0], r.checks[1].findings[0]
    diff = BaselineDiff(path="base.json", new=(new,), fixed=(("ptr.missing", "192.0.2.8", "error"),),
                        unchanged=(old,))
    r = dataclasses.replace(r, baseline=diff)
    gh = _render("github", r)
    assert [ln.split(" ", 1)[0] for ln in gh.splitlines() if ln.startswith("::")] == ["::warning"]
    assert "fixed: ptr.missing 192.0.2.8" in gh
    table = _render("table", r)
    assert "1 new, 1 fixed, 1 unchanged" in table and "(unchanged)" in table and "ptr.missing" in table
    doc = json.loads(_render("json", r))
    validate_report(doc)
    assert doc["baseline"]["fixed_findings"] == [{"id": "ptr.missing", "subject": "192.0.2.8", "severity": "error"}]
    assert "smtp.greeting_5xx" not in _render("markdown", r).split("New findings")[1]
