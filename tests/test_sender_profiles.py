"""Sender profiles (issue 17, "Sender profiles: predictions that depend on who is sending").

The receivers' bulk-sender rules (Gmail's and Yahoo's sender guidelines, Outlook.com's high-volume
sender requirements) fire for senders of 5,000+ messages a day, which deliverck cannot see.  Under
--sender-profile bulk an unmet rule is a certain bounce (`will`, the verdict fails); under the
default (transactional) the same reply is predicted as `may`, with the volume it takes in words, and
the verdict is not raised by it.  Each case runs the real CLI in the lab (--json), once per profile.
"""

from __future__ import annotations

import json

import pytest
from conftest import deliverck, validate_report
from test_scenarios import assert_one_story

# case -> (target and extra arguments, the finding that breaks the rule, replies (system, status) it predicts)
CASES = {
    "no-spf": (("profile-nospf.test",), "spf.missing", {("gmail", "5.7.27"), ("outlook-com", "5.7.515")}),
    "no-dmarc": (("profile-nodmarc.test",), "dmarc.none_found", {("gmail", "5.7.40"), ("outlook-com", "5.7.515")}),
    "not-aligned": (("profile-unaligned.test", "--sender", "news@profile-brand.test"), "sender_rules.not_aligned",
                    {("gmail", "5.7.32"), ("outlook-com", "5.7.515")}),
}
_RUNS: dict[tuple[str, str], tuple[int, dict]] = {}


def run(lab, case: str, profile: str | None) -> tuple[int, dict]:
    """The JSON report of CASE under PROFILE (None: the flag left out), audited once per test session."""
    key = (case, profile or "")
    if key not in _RUNS:
        args, _, _ = CASES[case]
        extra = ("--sender-profile", profile) if profile else ()
        r = deliverck("--ca-file", lab.ca_file, "--trust-anchor", lab.trust_anchor, "--smtp-timeout", "3",
                      "--dns-timeout", "2", "--deadline", "30", *args, *extra, "--json")
        assert r.stderr == "", r.stderr
        doc = json.loads(r.stdout)
        validate_report(doc)
        assert r.returncode == doc["exit_code"]
        _RUNS[key] = (r.returncode, doc)
    return _RUNS[key]


def findings(doc: dict) -> dict[str, dict]:
    return {f["id"]: f for c in doc["checks"] for f in c["findings"]}


def replies(doc: dict, cause: str) -> dict[tuple[str, str], list[dict]]:
    out: dict[tuple[str, str], list[dict]] = {}
    for p in doc["predicted_ndrs"]:
        if cause in p["caused_by"] and p["code"] >= 500:
            out.setdefault((p["system"], p["status"]), []).append(p)
    return out


@pytest.mark.parametrize("case", sorted(CASES))
def test_bulk_profile_predicts_the_documented_replies_as_certain(lab, case):
    code, doc = run(lab, case, "bulk")
    _, cause, want = CASES[case]
    got = replies(doc, cause)
    assert want <= set(got), (want, sorted(got))
    for key in want:
        assert all(p["likelihood"] == "will" and p["condition"] == "" for p in got[key]), got[key]
    f = findings(doc)[cause]
    assert f["severity"] in ("error", "critical")       # a certain 5xx from a default receiver raises it
    assert doc["verdict"] == "fail" and code == 1
    assert_one_story(doc)


@pytest.mark.parametrize("profile", [None, "transactional"])
@pytest.mark.parametrize("case", sorted(CASES))
def test_default_profile_predicts_the_same_replies_as_may_with_the_volume(lab, case, profile):
    code, doc = run(lab, case, profile)
    _, cause, want = CASES[case]
    got = replies(doc, cause)
    assert want <= set(got), (want, sorted(got))
    for key in want:
        for p in got[key]:
            assert p["likelihood"] == "may", p
            assert "5,000" in p["condition"], p["condition"]
    assert findings(doc)[cause]["severity"] not in ("error", "critical")
    assert doc["verdict"] == "pass" and code == 0
    assert_one_story(doc)


@pytest.mark.parametrize("case", sorted(CASES))
def test_what_cannot_be_seen_is_listed_for_bulk_senders_only(lab, case):
    bulk = findings(run(lab, case, "bulk")[1])
    default = findings(run(lab, case, None)[1])
    nv = bulk["sender_rules.not_visible"]
    assert nv["severity"] == "info"
    assert all(w in nv["fix"] for w in ("Postmaster Tools", "Feedback Loop", "SNDS"))
    assert "sender_rules.not_visible" not in default


def test_the_system_audited_alone_is_aligned(lab):
    # The same system sending as itself: no alignment finding, whatever the profile.
    r = deliverck("--ca-file", lab.ca_file, "--trust-anchor", lab.trust_anchor, "--smtp-timeout", "3",
                  "--dns-timeout", "2", "--deadline", "30", "profile-unaligned.test", "--sender-profile", "bulk",
                  "--json")
    doc = json.loads(r.stdout)
    assert "sender_rules.not_aligned" not in findings(doc)
    assert not any(p["status"] == "5.7.32" for p in doc["predicted_ndrs"])
