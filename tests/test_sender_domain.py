"""The sender's own domain (issue 17, "The sender's own domain"): the CLI in the lab with --sender.

The target is sender-good.test's server; the sender addresses live in the sender-* scenarios (one
per case) or in names that do not exist.  Each test reads the JSON report: the sender_domain
finding, its owner, the predicted NDRs, the exit code, and that the report tells one story.
"""

from __future__ import annotations

import json

import pytest
from conftest import validate_report
from test_scenarios import EXIT, assert_one_story, audit

from deliverck.target import sender_domain_of

TARGET = "sender-good.test"


def run(lab, sender: str, *extra: str) -> tuple[dict, int]:
    r = audit(lab, TARGET, "--sender", sender, "--json", "--deadline", "30", *extra)
    assert r.stderr == "", r.stderr
    doc = json.loads(r.stdout)
    validate_report(doc)
    assert_one_story(doc)
    assert r.returncode == doc["exit_code"] == EXIT[doc["verdict"]]
    return doc, r.returncode


def check(doc: dict) -> dict:
    return next(c for c in doc["checks"] if c["id"] == "sender_domain")


def predicted(doc: dict, finding: str) -> dict[str, dict]:
    return {p["key"]: p for p in doc["predicted_ndrs"] if finding in p["caused_by"]}


def test_sender_domain_of():
    assert sender_domain_of("News@Brand.Example.") == "brand.example"
    assert sender_domain_of("") == "" and sender_domain_of("postmaster") == ""


def test_nonexistent_sender_domain_is_the_sender_domain_owners_and_predicts_postfix_5_1_8(lab):
    doc, rc = run(lab, "news@gone.sender-good.test")
    c = check(doc)
    assert c["status"] == "fail" and rc == 1 and doc["verdict"] == "fail"
    [f] = c["findings"]
    assert f["id"] == "sender_domain.nxdomain" and f["owner"] == "dns_admin" and not f["inconclusive"]
    assert f["subject"] == "gone.sender-good.test"
    assert any("NXDOMAIN" in e for e in f["evidence"])
    p = predicted(doc, "sender_domain.nxdomain")["postfix.sender-domain-not-found-550"]
    assert p["likelihood"] == "may" and "reject_unknown_sender_domain" in p["condition"]
    assert p["reply"] == "550 5.1.8 <news@gone.sender-good.test>: Sender address rejected: Domain not found"
    assert p["owner"] == "dns_admin" and p["direction"] == "outbound"


def test_null_mx_sender_domain(lab):
    doc, rc = run(lab, "news@sender-nullmx.test")
    [f] = check(doc)["findings"]
    assert f["id"] == "sender_domain.null_mx" and f["owner"] == "dns_admin" and f["severity"] == "error"
    assert rc == 1
    p = predicted(doc, "sender_domain.null_mx")
    assert p and all(x["likelihood"] == "may" for x in p.values())
    assert any(x["status"] == "5.7.27" for x in p.values())


def test_sender_domain_without_mx_or_address(lab):
    doc, rc = run(lab, "news@sender-nomail.test")
    [f] = check(doc)["findings"]
    assert f["id"] == "sender_domain.no_mail" and f["owner"] == "dns_admin"
    assert rc == 1
    assert "postfix.sender-domain-not-found-550" in predicted(doc, "sender_domain.no_mail")


def test_fine_sender_domain_passes(lab):
    doc, rc = run(lab, "news@sender-brand.test")
    c = check(doc)
    assert c["status"] == "pass" and [f["id"] for f in c["findings"]] == ["sender_domain.ok"]
    assert "mx.sender-good.test" in c["findings"][0]["summary"]
    assert rc == 0 and doc["verdict"] == "pass"
    assert not [p for p in doc["predicted_ndrs"] if any(x.startswith("sender_domain.") for x in p["caused_by"])]


@pytest.mark.parametrize("extra", [(), ("--sender", "bounces@sender-good.test")])
def test_skipped_without_sender_or_for_the_targets_own_domain(lab, extra):
    r = audit(lab, TARGET, "--json", "--only", "sender_domain", *extra)
    c = check(json.loads(r.stdout))
    assert c["status"] == "skipped" and c["findings"] == [] and c["reason"]
    assert r.returncode == 0


def test_unresolvable_sender_domain_is_could_not_check(lab):
    doc, rc = run(lab, "news@servfail.test", "--only", "mx,sender_domain")
    c = check(doc)
    [f] = c["findings"]
    assert f["id"] == "sender_domain.unresolved" and f["inconclusive"]
    assert f["owner"] != "dns_admin" and f["ndr"] == []
    assert c["status"] == "error" and doc["verdict"] == "incomplete" and rc == 3


def test_missing_spf_and_dmarc_reported_once(lab):
    # The spf and dmarc checks follow --sender: they report the missing records, not this check.
    doc, _ = run(lab, "news@sender-noauth.test")
    ids = [f["id"] for c in doc["checks"] for f in c["findings"]]
    assert "spf.missing" in ids and "dmarc.none_found" in ids
    assert "sender_domain.no_spf" not in ids and "sender_domain.no_dmarc" not in ids
    # Without those checks, this one says it.
    doc, rc = run(lab, "news@sender-noauth.test", "--skip", "spf,dmarc")
    found = {f["id"]: f for f in check(doc)["findings"]}
    assert {"sender_domain.ok", "sender_domain.no_spf", "sender_domain.no_dmarc"} == set(found)
    assert found["sender_domain.no_spf"]["owner"] == "dns_admin"
    assert "_dmarc.sender-noauth.test" in found["sender_domain.no_dmarc"]["summary"]
