"""End to end: the real CLI against every lab scenario, judged by the
scenario's own expectations (deliverck/lab/scenarios/*.toml), so adding a
scenario adds a test."""

from __future__ import annotations

import json
import os

import pytest
from conftest import ROOT, deliverck, validate_report

from deliverck.ndr.catalog import load as load_catalog
from deliverck.registry import all_checks, finding_specs

SCENARIOS = sorted(p.stem for p in (ROOT / "deliverck" / "lab" / "scenarios").glob("*.toml"))
EXIT = {"pass": 0, "fail": 1, "incomplete": 3}


def audit(lab, *args: str):
    """The CLI as the tests run it: the lab CA trusted, short SMTP and DNS limits."""
    return deliverck("--ca-file", lab.ca_file, "--trust-anchor", lab.trust_anchor,
                     "--smtp-timeout", "3", "--dns-timeout", "2", *args)


@pytest.mark.parametrize("name", SCENARIOS)
def test_scenario(lab, name):
    sc = lab.scenario(name)
    if sc.unavailable:
        if os.environ.get("CI"):
            pytest.fail(f"{name}: {sc.unavailable}")
        pytest.skip(sc.unavailable)
    missing = set(sc.expect.requires) - {c.id for c in all_checks()}
    if missing:
        # A scenario may land before its check (checks/_name.py is not registered yet).
        pytest.skip(f"{name} needs checks that are not registered yet: {sorted(missing)}")
    r = audit(lab, sc.domain, "--json", "--deadline", "30")
    assert r.stderr == "", r.stderr
    doc = json.loads(r.stdout)
    validate_report(doc)
    ids = [f["id"] for c in doc["checks"] for f in c["findings"]]
    assert doc["verdict"] == sc.expect.verdict, (doc["verdict"], ids)
    assert r.returncode == EXIT[sc.expect.verdict] == doc["exit_code"]
    for fid in sc.expect.findings:
        assert fid in ids, f"{name}: expected {fid} in {ids}"
    for fid in sc.expect.absent:
        assert fid not in ids, f"{name}: did not expect {fid}"
    declared = finding_specs()
    catalog = {e.key for e in load_catalog().entries}
    for c in doc["checks"]:
        for f in c["findings"]:
            assert f["id"] in declared
            assert set(f["ndr"]) <= catalog
        if doc["verdict"] == "incomplete":
            assert c["status"] != "fail"
    assert_one_story(doc)
    if doc["verdict"] != "pass":
        failing = {f["id"] for c in doc["checks"] for f in c["findings"]
                   if f["severity"] in ("error", "critical") and not f["inconclusive"]}
        predicted_causes = {x for p in doc["predicted_ndrs"] for x in p["caused_by"]}
        # every definite failure with a catalog entry shows up as a predicted NDR
        for fid in failing:
            if declared[fid].ndr:
                assert fid in predicted_causes, fid


_STAND_INS = ("its address", "the mail host", "its HELO name", "the block list", "its greeting reply", "(DNSBL zone)")
_INTERNALS = ("Do53:", "Malformed SMTP response", "The DNS operation timed out", "Traceback")


def assert_one_story(doc: dict) -> None:
    """The verdict, the findings and the predicted NDRs agree: links both ways, the
    same owner, a likelihood on every prediction, no PASS above a certain bounce."""
    findings = [f for c in doc["checks"] for f in c["findings"]]
    by_key: dict[str, list[dict]] = {}
    for p in doc["predicted_ndrs"]:
        by_key.setdefault(p["key"], []).append(p)
        assert p["likelihood"] in ("will", "may")
        assert bool(p["condition"]) == (p["likelihood"] == "may"), p
        for text in _STAND_INS + _INTERNALS:
            assert text not in p["reply"], (p["key"], p["reply"])
        owners = {f["owner"] for f in findings if f["id"] in p["caused_by"] and f["subject"] in p["subjects"]}
        assert owners == {p["owner"]}, (p["key"], p["owner"], owners)
    for f in findings:
        for key in f["ndr"]:
            assert any(f["id"] in p["caused_by"] and f["subject"] in p["subjects"] for p in by_key[key]), (f, key)
    for p in doc["predicted_ndrs"]:
        assert any(p["key"] in f["ndr"] for f in findings if f["id"] in p["caused_by"]), p["key"]
    defaults = set(load_catalog().default_receivers())
    certain = [p for p in doc["predicted_ndrs"] if p["likelihood"] == "will" and p["system"] in defaults
               and ((p["code"] or 0) >= 500 or (not p["code"] and (p["status"] or "").startswith("5.")))]
    if certain:
        assert doc["verdict"] != "pass", [p["reply"] for p in certain]
        for p in certain:
            causes = [f for f in findings if p["key"] in f["ndr"] and f["id"] in p["caused_by"] and not f["inconclusive"]]
            assert all(f["severity"] in ("error", "critical") for f in causes), (p["key"], causes)


def test_every_scenario_file_is_in_the_lab(lab):
    assert sorted(s.name for s in lab.scenarios) == SCENARIOS


def test_good_table_report(lab):
    r = audit(lab, "good.test")
    assert r.returncode == 0, r.stdout + r.stderr
    assert r.stdout.splitlines()[1].startswith("VERDICT: PASS")
    assert "No bounces predicted" in r.stdout


def test_broken_table_report_shows_fix_and_ndrs(lab):
    r = audit(lab, "no-ptr.test")
    assert r.returncode == 1
    out = r.stdout
    assert "VERDICT: FAIL" in out
    assert "ptr.missing" in out and "fix (ip_owner)" in out
    assert "Predicted NDRs" in out and "outbound" in out


def test_ip_literal_target_is_a_host(lab):
    ip = lab.scenario("good").reverse[0].address
    r = audit(lab, ip, "--json")
    doc = json.loads(r.stdout)
    validate_report(doc)
    assert doc["target"]["roles"] == ["address"]
    mx = next(c for c in doc["checks"] if c["id"] == "mx")
    assert mx["status"] == "skipped"
    ptr = next(c for c in doc["checks"] if c["id"] == "ptr")
    assert ptr["status"] == "pass" and r.returncode == 0


def test_mail_address_and_outbound_ip(lab):
    bad_ip = lab.scenario("no-ptr").addresses[0]
    r = audit(lab, "postmaster@good.test", "--ip", bad_ip, "--json")
    doc = json.loads(r.stdout)
    assert doc["target"]["name"] == "good.test" and doc["target"]["notes"]
    missing = [f for c in doc["checks"] for f in c["findings"] if f["id"] == "ptr.missing"]
    assert [f["subject"] for f in missing] == [bad_ip]
    assert r.returncode == 1


def test_fail_on_and_only(lab):
    # generic-ptr has only warnings: passes by default, fails with --fail-on warning
    assert audit(lab, "generic-ptr.test").returncode == 0
    assert audit(lab, "generic-ptr.test", "--fail-on", "warning").returncode == 1
    r = deliverck("no-ptr.test", "--only", "mx", "--json")
    assert [c["id"] for c in json.loads(r.stdout)["checks"]] == ["mx"] and r.returncode == 0


def test_resolver_unreachable_exits_3(lab):
    r = deliverck("good.test", "--resolver", "127.0.0.9:53", "--dns-timeout", "1")
    assert r.returncode == 3
    assert r.stdout == ""
    assert len(r.stderr.strip().splitlines()) == 1 and "127.0.0.9:53" in r.stderr


def test_explicit_resolver(lab):
    r = audit(lab, "good.test", "--resolver", lab.resolver, "--json")
    assert r.returncode == 0
    assert json.loads(r.stdout)["resolvers"] == [f"{lab.resolver}:53"]


def test_truncated_answer_falls_back_to_tcp(lab):
    import dns.flags
    import dns.message
    import dns.query

    q = dns.message.make_query("mx-truncated.test", "MX", use_edns=0, payload=1232)
    udp = dns.query.udp(q, lab.resolver, timeout=5)
    assert udp.flags & dns.flags.TC, "scenario no longer exceeds the UDP buffer"
    r = deliverck("mx-truncated.test", "--json", "--only", "mx")
    doc = json.loads(r.stdout)
    records = next(f for f in doc["checks"][0]["findings"] if f["id"] == "mx.records")
    assert records["args"]["count"] == 40


def test_silent_resolver_exits_3(lab):
    silent = lab.server("blackhole").addresses[0]
    r = deliverck("good.test", "--resolver", silent, "--dns-timeout", "1")
    assert r.returncode == 3 and r.stdout == ""
    assert silent in r.stderr and len(r.stderr.strip().splitlines()) == 1


def test_global_deadline_gives_error_not_pass(lab):
    # The tarpit never greets: the SMTP-based checks are still waiting when the run's deadline ends them.
    r = audit(lab, "tarpit.test", "--json", "--deadline", "1.5", "--smtp-timeout", "30")
    doc = json.loads(r.stdout)
    validate_report(doc)
    assert r.returncode == 3 and doc["verdict"] == "incomplete"
    status = {c["id"]: c["status"] for c in doc["checks"]}
    assert status["mx"] == "pass" and status["ptr"] == "pass"
    for c in doc["checks"]:
        if c["id"] in ("smtp", "helo", "starttls", "relay"):
            assert c["status"] == "error"
            assert [f["id"] for f in c["findings"]] == [f"{c['id']}.timeout"], c


def _sessions_after(lab, addresses, since, want):
    import time

    for _ in range(40):  # a peer logs a session when it ends; give it a moment
        found = {a: lab.smtp_sessions(address=a, since=since) for a in addresses}
        if all(len(v) >= want for v in found.values()):
            return found
        time.sleep(0.05)
    return found


@pytest.mark.parametrize("name", ["good", "postfix-good"])
def test_one_session_per_address_and_never_data(lab, name):
    import time

    sc = lab.scenario(name)
    if sc.unavailable:
        if os.environ.get("CI"):
            pytest.fail(sc.unavailable)
        pytest.skip(sc.unavailable)
    addresses = [p.address for p in sc.smtp]
    if name.startswith("postfix"):
        # Postfix's log has whole seconds: start on a fresh second so no earlier session counts.
        time.sleep(1.1)
        since = float(int(time.time()))
    else:
        since = time.time()
    r = audit(lab, sc.domain, "--json")
    assert r.returncode == 0, r.stdout[-2000:]
    found = _sessions_after(lab, addresses, since, 1)
    for address, sessions in found.items():
        assert len(sessions) == 1, (address, sessions)   # smtp, helo, starttls and relay shared it
        verbs = sessions[0]["commands"]
        assert "DATA" not in verbs and "STARTTLS" in verbs and verbs[-1] == "QUIT", verbs


def test_submission_ports_are_reported_not_judged(lab):
    r = audit(lab, "smtp-good.test", "--json", "--ports", "465,587")
    assert r.returncode == 0
    doc = json.loads(r.stdout)
    found = {(f["args"]["ip"], f["args"]["port"]): f for c in doc["checks"] for f in c["findings"]
             if f["id"] == "smtp.other_port"}
    ports = {port for _, port in found}
    assert ports == {465, 587}
    assert all("TLSv1" in f["summary"] for (ip, port), f in found.items() if port == 465)


def test_private_root_without_its_anchor_is_a_notice_not_a_failure(lab):
    # As in an independent lab with its own signed root: deliverck's default anchor (IANA's) does not
    # fit, the resolver's verdict counts, and nothing fails because of it.
    r = deliverck("good.test", "--json", "--only", "mx,dnssec", "--dns-timeout", "2",
                  unset=("DELIVERCK_TRUST_ANCHOR", "DELIVERCK_CA_FILE"))
    doc = json.loads(r.stdout)
    ids = [f["id"] for c in doc["checks"] for f in c["findings"]]
    assert "dnssec.anchor_mismatch" in ids and "dnssec.bogus" not in ids
    assert r.returncode == 0
