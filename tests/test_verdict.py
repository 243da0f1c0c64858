"""The verdict, the findings and the predicted NDRs tell one story (deliverck/verdict.py):
likelihoods, owners, finding.ndr links both ways, and no PASS above a certain bounce."""

from __future__ import annotations

import pytest

from deliverck.model import CheckResult, Finding, Likelihood, Owner, Severity, Status, Verdict
from deliverck.ndr import load, predict
from deliverck.ndr.predict import predict_links
from deliverck.registry import finding_specs
from deliverck.verdict import judge, status_of

SPECS = finding_specs()
DEFAULT = load().default_receivers()


def finding(fid: str, subject: str = "192.0.2.25", severity: Severity | None = None, **args) -> Finding:
    spec = SPECS[fid]
    return Finding(id=fid, severity=spec.severity if severity is None else severity, subject=subject,
                   summary=f"{fid} on {subject}", fix=spec.fix, owner=spec.owner, direction=spec.direction,
                   inconclusive=spec.inconclusive, args={"ip": subject, **args})


def result(*findings: Finding, check: str = "ptr") -> CheckResult:
    return CheckResult(check, check, status_of(findings, Severity.ERROR), 1, tuple(findings))


def test_every_prediction_has_a_likelihood_and_may_says_on_what():
    fs = [finding(fid) for fid in SPECS if not fid.endswith((".crashed", ".timeout"))]
    for p in predict(fs, load().system_ids(), domain="example.test"):
        assert p.likelihood in (Likelihood.WILL, Likelihood.MAY)
        assert bool(p.condition) == (p.likelihood is Likelihood.MAY), p.key


def test_a_warning_that_gmail_will_reject_is_raised_to_error():
    # A PTR name whose forward lookup does not lead back: Gmail's documented 550 5.7.25 always fires.
    f = finding("ptr.forward_mismatch", severity=Severity.WARNING)
    j = judge([result(f)], fail_on=Severity.ERROR, receivers=DEFAULT, domain="example.test")
    (g,) = j.checks[0].findings
    assert g.severity is Severity.ERROR and j.verdict is Verdict.FAIL and j.checks[0].status is Status.FAIL
    assert any("raised to error from warning: Gmail will answer 550 5.7.25" in e for e in g.evidence)
    assert "gmail.ptr-missing" in g.ndr


def test_a_may_prediction_does_not_raise_the_finding():
    # A generic PTR name: Gmail decides from its own address data, so its 550 5.7.1 is only "may".
    f = finding("ptr.generic")
    j = judge([result(f)], fail_on=Severity.ERROR, receivers=DEFAULT, domain="example.test")
    (g,) = j.checks[0].findings
    assert g.severity is f.severity < Severity.ERROR and j.verdict is Verdict.PASS
    (p,) = [p for p in j.predicted_ndrs if p.key == "gmail.ip-not-authorized"]
    assert p.likelihood is Likelihood.MAY and "own data" in p.condition


def test_user_severity_wins_and_receivers_outside_the_report_do_not_count():
    f = finding("ptr.forward_mismatch", severity=Severity.WARNING)
    j = judge([result(f)], fail_on=Severity.ERROR, receivers=DEFAULT, domain="example.test",
              overrides={"ptr.forward_mismatch": Severity.WARNING})
    assert j.checks[0].findings[0].severity is Severity.WARNING and j.verdict is Verdict.PASS
    j = judge([result(f)], fail_on=Severity.ERROR, receivers=("postfix",), domain="example.test")
    assert j.checks[0].findings[0].severity is Severity.WARNING and j.verdict is Verdict.PASS


def test_unsettled_findings_predict_may_and_are_never_raised():
    f = finding("mx.lookup_failed", subject="example.test")
    assert f.inconclusive
    j = judge([result(f, check="mx")], fail_on=Severity.ERROR, receivers=DEFAULT, domain="example.test")
    assert j.verdict is Verdict.INCOMPLETE
    assert j.predicted_ndrs and all(p.likelihood is Likelihood.MAY for p in j.predicted_ndrs)
    assert all("could not finish" in p.condition for p in j.predicted_ndrs)


def test_finding_ndr_and_caused_by_agree_both_ways():
    fs = [finding("ptr.missing"), finding("ptr.forward_mismatch", "192.0.2.26"), finding("ptr.generic", "192.0.2.27"),
          finding("helo.not_fqdn", "192.0.2.28", helo="OEMCOMPUTER"), finding("mx.null", "example.test")]
    j = judge([result(*fs)], fail_on=Severity.ERROR, receivers=load().system_ids(), domain="example.test")
    judged = j.checks[0].findings
    for f in judged:
        for key in f.ndr:
            assert any(p.key == key and f.id in p.caused_by and f.subject in p.subjects for p in j.predicted_ndrs)
    for p in j.predicted_ndrs:
        causes = [f for f in judged if p.key in f.ndr and f.owner == p.owner]
        assert {f.id for f in causes} == set(p.caused_by), p.key
        assert {f.owner for f in causes} == {p.owner}, p.key


@pytest.mark.parametrize("fid", sorted({fid for e in load().entries for fid in e.findings if fid in SPECS}))
def test_prediction_owner_is_the_finding_owner(fid):
    f = finding(fid, host="mx1.example.test", helo="mx1.example.test", zone="zen.example.test")
    for p in predict([f], load().system_ids(), domain="example.test"):
        assert p.owner == SPECS[fid].owner, (fid, p.key)


def test_helo_owner_is_the_same_in_finding_and_postfix_ndr():
    f = finding("helo.not_fqdn", helo="OEMCOMPUTER")
    preds, links = predict_links([f], ["postfix"], domain="example.test")
    assert preds and all(p.owner is Owner.MAIL_ADMIN for p in preds)
    assert set(links[0]) == {p.key for p in preds}
    assert any("<OEMCOMPUTER>: Helo command rejected" in p.reply for p in preds)


def test_replies_show_no_placeholder_or_stand_in_for_an_open_relay():
    preds = predict([finding("relay.open")], load().system_ids(), domain="example.test")
    rbl = [p for p in preds if p.key == "postfix.rbl-blocked"]
    assert rbl and rbl[0].reply.endswith("blocked using zen.spamhaus.org")
    for p in preds:
        assert "(" not in p.reply.split("]")[-1] or "DNSBL zone" not in p.reply
        assert "{" not in p.reply


def test_a_greeting_reply_is_quoted_in_the_prediction():
    f = finding("smtp.no_host_accepts", subject="example.test", reason="rejected", host="mx1.example.test",
                greeting="554 5.7.1 go away", ip="192.0.2.25", outcome="greeting_rejected")
    (p,) = [p for p in predict([f], ["postfix"], domain="example.test") if p.key == "postfix.smtp-refused-to-talk"]
    assert p.reply == "host mx1.example.test[192.0.2.25] refused to talk to me: 554 5.7.1 go away"


@pytest.mark.parametrize("outcome, want", [
    ("closed_before_greeting", "4.4.2 lost connection with mx1.example.test[192.0.2.25] while receiving the "
                               "initial server greeting"),
    ("greeting_rejected", "host mx1.example.test[192.0.2.25] refused to talk to me: 554 no service"),
])
def test_postfix_tells_a_closed_connection_from_a_refusing_greeting(outcome, want):
    f = finding("smtp.no_host_accepts", subject="example.test", reason="rejected", outcome=outcome,
                host="mx1.example.test", ip="192.0.2.25",
                greeting="" if outcome.startswith("closed") else "554 no service")
    replies = [p.reply for p in predict([f], ["postfix"], domain="example.test")]
    assert replies == [want]


# --- sender profiles (issue 17): a bulk-only rule is `will` for bulk senders, `may` for others ---------

def _bulk_catalog():
    """One receiver with one bulk-sender rule, so the test does not hang on the shipped entries' wording."""
    from deliverck.ndr.catalog import from_mapping

    return from_mapping({"schema": 1, "system": [{"id": "gmail", "name": "Gmail", "default": True}], "entry": [{
        "key": "gmail.spf-not-pass", "system": "gmail", "direction": "outbound", "code": 550, "status": "5.7.27",
        "text": "The sender does not meet basic SPF requirements.", "meaning": "SPF did not pass.",
        "owner": "dns_admin", "fix": "Publish SPF.", "findings": ["spf.missing"], "source": "test",
        "category": "auth_spf", "likelihood": "will", "profile": "bulk",
        "condition": "if this domain sends 5,000+ messages a day to Gmail"}]})


@pytest.mark.parametrize("profile, likely", [("bulk", Likelihood.WILL), ("transactional", Likelihood.MAY),
                                             ("", Likelihood.MAY)])
def test_a_bulk_rule_is_certain_only_for_bulk_senders(profile, likely):
    cat = _bulk_catalog()
    f = finding("spf.missing", subject="example.test")
    (p,), _ = predict_links([f], ["gmail"], domain="example.test", catalog=cat, sender_profile=profile)
    assert p.likelihood is likely
    assert p.condition == ("" if likely is Likelihood.WILL else "if this domain sends 5,000+ messages a day to Gmail")


@pytest.mark.parametrize("profile, verdict", [("bulk", Verdict.FAIL), ("transactional", Verdict.PASS)])
def test_bulk_profile_fails_where_the_bulk_rules_are_unmet(monkeypatch, profile, verdict):
    import deliverck.ndr.catalog as catalog

    cat = _bulk_catalog()
    monkeypatch.setattr(catalog, "load", lambda: cat)
    f = finding("spf.missing", subject="example.test")
    j = judge([result(f, check="spf")], fail_on=Severity.ERROR, receivers=["gmail"], domain="example.test",
              sender_profile=profile)
    (g,) = j.checks[0].findings
    assert j.verdict is verdict
    assert (g.severity is Severity.ERROR) == (profile == "bulk")
    assert g.ndr == ("gmail.spf-not-pass",)
