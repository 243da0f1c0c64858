"""Issue 19, the data behind the report's pictures: the audit's network steps on one time axis
with the critical path (deliverck/timing.py), and the structured facts in finding args (the SPF
include tree, the DNSSEC chain, the MX hosts).  Unit tests for the pure parts; one lab test runs
the real CLI and reads its JSON, as a renderer would."""

from __future__ import annotations

import asyncio
import json

import pytest
from conftest import deliverck, validate_report

from deliverck import timing
from deliverck.checks.dnssec import chain_links
from deliverck.model import Report, Severity, Step, TargetInfo, Verdict
from deliverck.net import dnssec
from deliverck.net.smtp import Reply, SmtpSession

# ---- the critical path -------------------------------------------------------------------------

def test_critical_path_walks_back_from_the_step_that_ended_last():
    spans = [
        (0.0, 1.0, "mx"),      # 0: MX
        (1.0, 2.0, "mx"),      # 1: A of the host, after MX
        (0.0, 2.5, "dnsbl"),   # 2: a slow block list question, ends before the SMTP step starts
        (3.0, 5.0, "smtp"),    # 3: the session, ends last
        (0.5, 0.8, "spf"),     # 4: off the path
    ]
    # 3 started at 3.0: the latest step that ended by then is 2 (2.5), then nothing ended by 0.0.
    assert timing.critical_path(spans) == {3, 2}


def test_critical_path_prefers_the_same_checks_previous_step():
    spans = [
        (0.0, 1.0, "mx"),      # 0
        (1.0, 2.0, "mx"),      # 1: mx's own previous question
        (0.0, 2.9, "dkim"),    # 2: ends later, but another check's
        (3.0, 4.0, "mx"),      # 3: ends last
    ]
    assert timing.critical_path(spans) == {3, 1, 0}


def test_critical_path_ends_on_ties_and_empty_steps():
    spans = [(1.0, 1.0, "a"), (1.0, 1.0, "a"), (1.0, 1.0, ""), (0.0, 1.0, "")]
    path = timing.critical_path(spans)
    assert path and path <= {0, 1, 2, 3}
    assert timing.critical_path([]) == set()


def test_critical_path_stays_cheap_at_the_bound():
    import time
    n = timing.MAX_STEPS
    spans = [(i * 0.001, i * 0.001 + 0.0005, "dnsbl") for i in range(n)]
    t = time.perf_counter()
    path = timing.critical_path(spans)
    assert time.perf_counter() - t < 0.5
    assert len(path) == n          # a strict sequence: every step waited for the one before


# ---- collecting the steps ----------------------------------------------------------------------

def test_collect_puts_dns_and_other_steps_on_one_axis():
    tl = timing.Timeline(t0=100.0)
    tl.add("smtp", "connect 192.0.2.1:25", 100.050, 100.080, check="smtp")
    # The DNS client was made 2 ms after the run started; its log is relative to that.
    log = [("example.test", "MX", 0.001, 0.010, "mx"), ("example.test", "TXT", 0.003, 0.004, "")]
    steps, dropped = timing.collect(tl, log, dns_t0=100.002)
    assert dropped == 0
    assert [(s.kind, s.label, s.check, s.start_ms, s.end_ms) for s in steps] == [
        ("dns", "MX example.test", "mx", 3.0, 12.0),
        ("dns", "TXT example.test", "", 5.0, 6.0),
        ("smtp", "connect 192.0.2.1:25", "smtp", 50.0, 80.0),
    ]
    assert [s.critical for s in steps] == [True, False, True]


def test_collect_is_bounded_and_counts_what_it_left_out():
    tl = timing.Timeline(t0=0.0, limit=3)
    for i in range(5):
        tl.add("http", f"GET {i}", float(i), i + 0.5, check="mta_sts")
    assert len(tl.raw) == 3 and tl.dropped == 2
    log = [("n", "A", 0.1 * i, 0.1 * i + 0.05, "") for i in range(4)]
    steps, dropped = timing.collect(tl, log, dns_t0=0.0, dns_dropped=1, limit=5)
    assert len(steps) == 5
    assert dropped == 2 + 1 + 2          # the timeline's, the DNS log's, and past `limit` here
    assert [s.start_ms for s in steps] == sorted(s.start_ms for s in steps)


def test_a_shared_fact_is_credited_to_its_first_asker():
    async def main():
        tl = timing.Timeline()
        shared: dict[str, asyncio.Future] = {}

        async def fetch():
            with tl.step("http", "GET https://mta-sts.example.test/.well-known/mta-sts.txt"):
                await asyncio.sleep(0.01)
            return "policy"

        async def check(name: str, delay: float):
            timing.current_check.set(name)
            await asyncio.sleep(delay)
            if "policy" not in shared:          # as Context.fact: the first asker starts the task
                shared["policy"] = asyncio.ensure_future(fetch())
            return await shared["policy"]

        await asyncio.gather(check("tls_rpt", 0.005), check("mta_sts", 0.0))
        assert timing.current_check.get() == ""      # nothing leaked out of the checks' tasks
        return tl.raw

    raw = asyncio.run(main())
    assert [(k, c) for k, _, c, _, _ in raw] == [("http", "mta_sts")]


def test_a_step_that_fails_is_still_noted():
    tl = timing.Timeline()
    with pytest.raises(OSError):
        with tl.step("kerberos", "AS-REQ EXAMPLE.TEST 192.0.2.88:88"):
            raise OSError("refused")
    assert [r[0] for r in tl.raw] == ["kerberos"]


def test_an_smtp_session_becomes_its_phases():
    from deliverck.net.smtp import Outcome, TlsFacts

    s = SmtpSession("192.0.2.1", 25, "mx1.example.test", Outcome.OK, connect_ms=10,
                    greeting=Reply(220, "hi", 20), ehlo=Reply(250, "ok", 5),
                    starttls=Reply(220, "go", 30), tls=TlsFacts())
    tl = timing.Timeline(t0=0.0)
    tl.add_session(s, "192.0.2.1", 25, "mx1.example.test", 1.0, 1.100)
    got = [(k, label, round((a - 1.0) * 1000), round((b - 1.0) * 1000)) for k, label, _, a, b in tl.raw]
    assert got == [
        ("smtp", "connect 192.0.2.1:25", 0, 10),
        ("smtp", "greeting, EHLO 192.0.2.1:25", 10, 35),
        ("tls", "STARTTLS mx1.example.test (192.0.2.1:25)", 35, 65),
        ("smtp", "SMTP 192.0.2.1:25", 65, 100),
    ]
    refused = SmtpSession("2001:db8::1", 25, "", Outcome.REFUSED)
    tl.add_session(refused, "2001:db8::1", 25, "", 2.0, 2.001)
    assert tl.raw[-1][:2] == ("smtp", "connect [2001:db8::1]:25")


# ---- the JSON of a report ----------------------------------------------------------------------

def _report(**kw) -> Report:
    return Report(TargetInfo("example.test", "example.test", ""), "2026-12-05T00:00:00.000Z",
                  "2026-12-05T00:00:01.000Z", 1000, Verdict.PASS, 0, Severity.ERROR, (), (), ("192.0.2.53:53",),
                  ("gmail",), "0", **kw)


def test_the_json_of_one_report_carries_its_timings():
    from deliverck.report.json import render, report_dict

    steps = (Step("dns", "MX example.test", "mx", 0.0, 3.5, True),
             Step("smtp", "connect 192.0.2.1:25 <script>", "smtp", 4.0, 9.0, True))
    doc = json.loads(render(_report(timings=steps, timings_dropped=3), type("O", (), {"debug": False})()))
    validate_report(doc)
    assert doc["timings"][1] == {"kind": "smtp", "label": "connect 192.0.2.1:25 <script>", "check": "smtp",
                                 "start_ms": 4.0, "end_ms": 9.0, "critical": True}
    assert doc["timings_dropped"] == 3
    # Bulk lines and fleet documents stay as small as they were.
    assert "timings" not in report_dict(_report(timings=steps))


# ---- the DNSSEC chain --------------------------------------------------------------------------

def _v(state, reason, zone="example.test", broken_at=""):
    return dnssec.Validation("mx1.example.test", "A", state, reason, zone, broken_at=broken_at)


def test_the_chain_names_the_link_that_broke():
    links = chain_links(_v(dnssec.BOGUS, "DS digest mismatch", broken_at="example.test"), False)
    assert [(x["zone"], x["status"]) for x in links] == [
        (".", "secure"), ("test", "secure"), ("example.test", "bogus"), ("mx1.example.test", "indeterminate")]
    assert links[2]["why"] == "DS digest mismatch" and links[-1]["kind"] == "rrset"


def test_a_bad_signature_over_the_record_leaves_the_zone_secure():
    links = chain_links(_v(dnssec.BOGUS, "RRSIG does not verify", broken_at="example.test"), True)
    assert [x["status"] for x in links] == ["secure", "secure", "secure", "bogus"]


def test_a_break_at_the_tld_leaves_what_is_below_unreached():
    links = chain_links(_v(dnssec.INDETERMINATE, "DS lookup failed", zone="test", broken_at="test"), False)
    assert [(x["zone"], x["status"]) for x in links] == [
        (".", "secure"), ("test", "indeterminate"), ("mx1.example.test", "indeterminate")]


def test_an_unsigned_delegation_is_insecure_at_its_cut():
    links = chain_links(_v(dnssec.INSECURE, "no DS for example.test"), False)
    assert [x["status"] for x in links] == ["secure", "secure", "insecure", "insecure"]


# ---- in the lab: the real CLI ------------------------------------------------------------------

def _audit(lab, name: str, *args: str) -> dict:
    r = deliverck("--ca-file", lab.ca_file, "--trust-anchor", lab.trust_anchor, "--smtp-timeout", "3",
                  "--dns-timeout", "2", f"{name}.test", "--format", "json", *args)
    assert r.returncode in (0, 1), r.stderr
    doc = json.loads(r.stdout)
    validate_report(doc)
    return doc


def _args(doc: dict, finding_id: str) -> list[dict]:
    return [f["args"] for c in doc["checks"] for f in c["findings"] if f["id"] == finding_id]


def test_an_audit_records_its_steps_and_the_facts_for_its_pictures(lab):
    doc = _audit(lab, "good")
    steps = doc["timings"]
    kinds = {s["kind"] for s in steps}
    assert {"dns", "smtp", "tls"} <= kinds
    checks = {c["id"] for c in doc["checks"]} | {""}
    assert all(s["check"] in checks for s in steps)
    assert any(s["kind"] == "dns" and s["check"] == "" for s in steps)     # the resolver's sanity questions
    assert all(0 <= s["start_ms"] <= s["end_ms"] <= doc["duration_ms"] + 1 for s in steps)
    critical = [s for s in steps if s["critical"]]
    assert max(steps, key=lambda s: s["end_ms"]) in critical
    ordered = sorted(critical, key=lambda s: s["end_ms"])
    assert all(a["end_ms"] <= b["start_ms"] for a, b in zip(ordered, ordered[1:]))
    assert any(s["kind"] == "smtp" for s in critical)      # the SMTP sessions decide a good audit's length
    hosts = _args(doc, "mx.records")[0]["hosts"]
    assert [(h["name"], h["preference"]) for h in hosts] == [("mx1.good.test", 10), ("mx2.good.test", 20)]
    ips = {ip for h in hosts for ip in h["audited"]}
    # The renderer joins by address: every ptr and starttls finding names one of the hosts' addresses.
    joined = _args(doc, "ptr.confirmed") + _args(doc, "starttls.ok")
    assert joined and all(a["ip"] in ips for a in joined)


def test_the_spf_tree_marks_where_the_budget_ran_out(lab):
    tree = _args(_audit(lab, "spf-over-limit", "--only", "spf"), "spf.record")[0]
    assert tree["lookups"] == 11 and tree["limit"] == 10
    root = tree["tree"]
    assert root["total"] == 11 and root["children"][0]["domain"] == "a.spf-over-limit.test"
    # include:a costs 1 + its subtree's 9: the 11th lookup is the `mx` after it in the top record.
    assert root["over"] and root["over_term"] == "mx"
    assert not any(n["over"] for n in _walk(root["children"][0]))


def _walk(node: dict):
    yield node
    for c in node["children"]:
        yield from _walk(c)


def test_the_dnssec_chain_shows_the_broken_link(lab):
    doc = _audit(lab, "dnssec-bogus", "--only", "dnssec")
    chain = [a for a in _args(doc, "dnssec.bogus") if a["rdtype"] == "MX"][0]["chain"]
    assert [(x["zone"], x["status"]) for x in chain] == [
        (".", "secure"), ("test", "secure"), ("dnssec-bogus.test", "secure"), ("dnssec-bogus.test", "bogus")]
