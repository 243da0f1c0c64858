"""DMARC: the record parser, alignment, the pass/fail prediction, and the check in the lab."""

from __future__ import annotations

import json

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from deliverck.records import dmarc as dm
from deliverck.records.dmarc import DmarcSyntaxError, parse_record


def org(name: str) -> str:
    """A stand-in organizational domain: the last two labels."""
    return ".".join(name.split(".")[-2:])


# ------------------------------------------------------------------ parsing

def test_full_record():
    r = parse_record("v=DMARC1; p=reject; sp=quarantine; np=reject; adkim=s; aspf=r; pct=50; "
                     "rua=mailto:agg@example.com,mailto:x@reports.example.net!10m; ruf=mailto:f@example.com; "
                     "fo=1:d; rf=afrf; ri=3600")
    assert (r.policy, r.subdomain_policy, r.nonexistent_policy) == ("reject", "quarantine", "reject")
    assert (r.adkim, r.aspf, r.pct, r.fo, r.rf, r.ri) == ("s", "r", 50, ("1", "d"), ("afrf",), 3600)
    assert [u.address for u in r.rua] == ["agg@example.com", "x@reports.example.net"]
    assert r.rua[1].size_limit == "10m" and r.rua[1].domain == "reports.example.net"
    assert r.ruf[0].domain == "example.com"
    assert r.problems == () and r.unknown_tags == () and r.applies


def test_defaults():
    r = parse_record("v=DMARC1; p=none")
    assert (r.policy, r.subdomain_policy, r.adkim, r.aspf, r.pct, r.fo, r.ri) == \
        ("none", "none", "r", "r", 100, ("0",), 86400)


def test_tag_names_and_policy_values_are_case_insensitive():
    r = parse_record("v=DMARC1; P=Reject; ASPF=S")
    assert r.policy == "reject" and r.aspf == "s"


def test_missing_p_with_rua_is_p_none():
    r = parse_record("v=DMARC1; rua=mailto:a@example.com")
    assert r.policy == "none" and not r.policy_valid and r.applies
    assert any("p= is missing" in p for p in r.problems)


def test_missing_p_without_rua_applies_no_policy():
    r = parse_record("v=DMARC1; pct=10")
    assert not r.applies and r.policy == ""


def test_invalid_sp_invalidates_the_policy():
    r = parse_record("v=DMARC1; p=reject; sp=bogus")
    assert not r.applies
    r2 = parse_record("v=DMARC1; p=reject; sp=bogus; rua=mailto:a@example.com")
    assert r2.policy == "none" and r2.applies


@pytest.mark.parametrize("text, fragment, attr, value", [
    ("v=DMARC1; p=none; pct=101", "pct=", "pct", 100),
    ("v=DMARC1; p=none; pct=x", "pct=", "pct", 100),
    ("v=DMARC1; p=none; adkim=x", "adkim=", "adkim", "r"),
    ("v=DMARC1; p=none; aspf=relaxed", "aspf=", "aspf", "r"),
    ("v=DMARC1; p=none; ri=-1", "ri=", "ri", 86400),
    ("v=DMARC1; p=none; fo=2", "fo=", "fo", ("0",)),
    ("v=DMARC1; p=none; rf=iodef", "rf=", "rf", ("iodef",)),
    ("v=DMARC1; p=none; rua=agg@example.com", "no URI scheme", "rua", ()),
    ("v=DMARC1; p=none; rua=mailto:nobody", "not an email address", "rua", ()),
    ("v=DMARC1; p=none; rua=", "rua= is empty", "rua", ()),
])
def test_invalid_values_are_problems_with_defaults(text, fragment, attr, value):
    r = parse_record(text)
    assert any(fragment in p for p in r.problems), r.problems
    assert getattr(r, attr) == value


def test_https_report_uri_is_kept():
    r = parse_record("v=DMARC1; p=none; rua=https://reports.example.com/x")
    assert r.rua[0].scheme == "https" and r.problems == ()


def test_unknown_tags_are_ignored_and_listed():
    r = parse_record("v=DMARC1; p=none; foo=bar; tt=y")
    assert r.unknown_tags == ("foo", "tt") and r.policy == "none"


@pytest.mark.parametrize("text, fragment", [
    ("p=reject; v=DMARC1", "must start with v=DMARC1"),
    ("v=DMARC2; p=reject", "exactly DMARC1"),
    ("v=dmarc1; p=reject", "exactly DMARC1"),
    ("v=DMARC1 p=reject", "a ';' is missing after v=DMARC1"),
    ("v=DMARC1; p=reject; p=none", "more than once"),
    ("v=DMARC1; reject", "is not tag=value"),
    ("", "must start with"),
])
def test_syntax_errors(text, fragment):
    with pytest.raises(DmarcSyntaxError) as e:
        parse_record(text)
    assert fragment in str(e.value)


@pytest.mark.parametrize("text, yes", [
    ("v=DMARC1; p=none", True), (" v = DMARC1", True), ("v=dmarc1;p=none", True),
    ("v=DMARC10; p=none", False), ("v=DMARC1 p=none", True), ("v=DMARC1.1", False), ("p=none; v=DMARC1", False), ("v=spf1 -all", False),
])
def test_candidates(text, yes):
    assert dm.is_dmarc_candidate(text) is yes


def test_policy_for_subdomains():
    r = parse_record("v=DMARC1; p=reject; sp=none")
    assert r.policy_for("example.com", "example.com") == "reject"
    assert r.policy_for("mail.example.com", "example.com") == "none"


# ------------------------------------------------------------------ alignment and prediction

@pytest.mark.parametrize("mode, from_domain, auth_domain, ok", [
    ("r", "example.com", "example.com", True),
    ("s", "example.com", "example.com", True),
    ("r", "example.com", "mail.example.com", True),
    ("s", "example.com", "mail.example.com", False),
    ("r", "news.example.com", "bounce.example.com", True),
    ("s", "news.example.com", "bounce.example.com", False),
    ("r", "example.com", "example.net", False),
    ("s", "EXAMPLE.com.", "example.COM", True),
    ("r", "example.com", "", False),
])
def test_alignment(mode, from_domain, auth_domain, ok):
    assert dm.aligned(mode, from_domain, auth_domain, org) is ok


def test_alignment_uses_the_public_suffix_list_by_default():
    assert dm.aligned("r", "a.example.co.uk", "b.example.co.uk")
    assert not dm.aligned("r", "a.co.uk", "b.co.uk")


@pytest.mark.parametrize("aspf, spf, spf_domain, dkim, outcome", [
    ("r", "pass", "example.com", False, "pass"),
    ("r", "pass", "bounce.example.com", False, "pass"),
    ("s", "pass", "bounce.example.com", False, "fail"),
    ("s", "pass", "bounce.example.com", True, "dkim_dependent"),
    ("r", "fail", "example.com", False, "fail"),
    ("r", "softfail", "example.com", False, "fail"),
    ("r", "neutral", "example.com", False, "fail"),
    ("r", "none", "example.com", False, "fail"),
    ("r", "permerror", "example.com", False, "fail"),
    ("r", "fail", "example.com", True, "dkim_dependent"),
    ("r", "temperror", "example.com", False, "unknown"),
    ("r", "temperror", "example.com", True, "unknown"),
    ("r", "pass", "example.net", False, "fail"),
])
def test_evaluation_table(aspf, spf, spf_domain, dkim, outcome):
    ev = dm.evaluate(aspf, "example.com", spf, spf_domain, dkim, org)
    assert ev.outcome == outcome, ev.reason


def test_external_destinations_and_authorization_name():
    r = parse_record("v=DMARC1; p=none; rua=mailto:a@example.com,mailto:b@sub.example.com,"
                     "mailto:c@vendor.example.net; ruf=mailto:c@vendor.example.net,https://x.example.org/")
    ext = dm.external_destinations(r, "example.com", org)
    assert [u.domain for u in ext] == ["vendor.example.net"]
    assert dm.authorization_name("Example.com.", "vendor.example.net") == \
        "example.com._report._dmarc.vendor.example.net"
    assert dm.authorizes(["v=DMARC1"]) and dm.authorizes(["x", "v=DMARC1; rua=mailto:z@vendor.example.net"])
    assert not dm.authorizes(["v=spf1 -all"]) and not dm.authorizes([])


# ------------------------------------------------------------------ properties

_tagish = st.lists(
    st.tuples(st.sampled_from(["v", "p", "sp", "np", "adkim", "aspf", "pct", "rua", "ruf", "fo", "rf", "ri",
                               "x", "P", " v", "1", ""]),
              st.sampled_from(["=", " = ", "", "=="]),
              st.text(alphabet="DMARC1nonequarantinerejects0123456789:!,@.mailto; kmgt\t", max_size=40)),
    max_size=10,
).map(lambda parts: ";".join(a + b + c for a, b, c in parts))


@settings(max_examples=500, deadline=None)
@given(st.one_of(st.text(max_size=300), _tagish, _tagish.map(lambda s: "v=DMARC1;" + s)))
@pytest.mark.slow
def test_parser_raises_only_its_error(text):
    try:
        r = parse_record(text)
    except DmarcSyntaxError:
        return
    assert r.policy in ("", "none", "quarantine", "reject")
    assert 0 <= r.pct <= 100 and r.adkim in ("r", "s") and r.aspf in ("r", "s")
    assert r.applies == bool(r.policy)
    dm.external_destinations(r, "example.com", org)


@settings(max_examples=300, deadline=None)
@given(st.text(max_size=80))
def test_uri_parser_raises_only_value_error(text):
    try:
        dm.parse_uri(text)
    except ValueError:
        pass


# ------------------------------------------------------------------ the lab

def _findings(lab, domain, *args):
    from test_scenarios import audit
    r = audit(lab, domain, "--json", "--only", "dmarc", *args)
    doc = json.loads(r.stdout)
    return [f for c in doc["checks"] for f in c["findings"]], doc


def test_lab_record_at_the_org_domain(lab):
    found, _ = _findings(lab, "mail.dmarc-orgdomain.test")
    rec = [f for f in found if f["id"] == "dmarc.record"]
    assert rec and rec[0]["args"]["policy_domain"] == "dmarc-orgdomain.test"
    assert rec[0]["subject"] == "_dmarc.dmarc-orgdomain.test"


def test_lab_reject_predicts_exchange_online_5_7_509(lab):
    found, doc = _findings(lab, "dmarc-reject-spf-fail.test")
    fail = [f for f in found if f["id"] == "dmarc.would_fail_reject"]
    assert fail and fail[0]["subject"] == "198.51.100.188" and fail[0]["args"]["spf"] == "fail"
    statuses = {(p["system"], p["status"]) for p in doc["predicted_ndrs"]}
    assert ("exchange-online", "5.7.509") in statuses


def test_lab_external_rua(lab):
    bad, _ = _findings(lab, "dmarc-external-rua-unauthorized.test")
    assert "dmarc.external_unauthorized" in [f["id"] for f in bad]
    good, _ = _findings(lab, "dmarc-external-rua-authorized.test")
    ids = [f["id"] for f in good]
    assert "dmarc.external_authorized" in ids and "dmarc.external_unauthorized" not in ids


def test_lab_none_found_on_a_domain_without_dmarc(lab):
    found, _ = _findings(lab, "smtp-good.test")
    assert [f["id"] for f in found] == ["dmarc.none_found"]


def test_lab_subdomain_policy_and_sender_domain(lab):
    # mail from the org domain itself: p=reject, SPF passes (mx), so the prediction is a pass
    found, _ = _findings(lab, "dmarc-orgdomain.test")
    assert "dmarc.would_pass" in [f["id"] for f in found]
    # the From domain comes from --sender: a domain without DMARC
    found, _ = _findings(lab, "dmarc-orgdomain.test", "--sender", "x@smtp-good.test")
    assert [f["id"] for f in found] == ["dmarc.none_found"]


# ------------------------------------------------------------------ the check, on a fake context

from checkctx import FakeCtx, txt  # noqa: E402


def _ma(ip):
    from deliverck.context import MailAddress
    return MailAddress(ip, ("mx.example.test",), ("mx",))


async def _run(ctx):
    from deliverck.checks import dmarc as check
    return await check.run(ctx)


async def test_check_discovery_falls_back_to_the_org_domain():
    ctx = FakeCtx("mail.example.test", {"_dmarc.example.test": txt("_dmarc.example.test", "v=DMARC1; p=reject; sp=none")})
    found = await _run(ctx)
    assert [f.id for f in found] == ["dmarc.record", "dmarc.policy_none"]
    assert "sp=none" in found[1].summary
    assert found[0].args["policy_domain"] == "example.test" and found[0].args["effective"] == "none"
    # RFC 7489 asks the name and its organizational domain; the DMARCbis walk then goes on to the top
    # (the real Context caches answers, so each name is asked of the network once)
    assert list(dict.fromkeys(n for n, t in ctx.asked if t == "TXT")) == ["_dmarc.mail.example.test", "_dmarc.example.test",
                                                      "_dmarc.test"]


async def test_check_ignores_non_dmarc_txt_and_reports_none():
    ctx = FakeCtx("example.test", {"_dmarc.example.test": txt("_dmarc.example.test", "v=spf1 -all")})
    assert [f.id for f in await _run(ctx)] == ["dmarc.none_found"]


async def test_check_multiple_and_syntax_and_lookup_failure():
    two = txt("_dmarc.example.test", "v=DMARC1; p=reject", "v=DMARC1; p=none")
    assert [f.id for f in await _run(FakeCtx("example.test", {"_dmarc.example.test": two}))] == ["dmarc.multiple"]
    bad = txt("_dmarc.example.test", "v=DMARC1 p=reject")
    found = await _run(FakeCtx("example.test", {"_dmarc.example.test": bad}))
    assert [f.id for f in found] == ["dmarc.syntax"] and "';' is missing" in found[0].summary
    failed = txt("_dmarc.example.test", outcome="timeout")
    found = await _run(FakeCtx("example.test", {"_dmarc.example.test": failed}))
    assert [f.id for f in found] == ["dmarc.lookup_failed"] and found[0].inconclusive


async def test_check_predictions_per_address(monkeypatch):
    rec = txt("_dmarc.example.test", "v=DMARC1; p=reject; pct=50; foo=1")
    ctx = FakeCtx("example.test", {"_dmarc.example.test": rec},
                  addresses=(_ma("192.0.2.1"), _ma("192.0.2.2"), _ma("192.0.2.3")),
                  spf={"192.0.2.1": "pass", "192.0.2.2": "fail", "192.0.2.3": "temperror"})
    found = await _run(ctx)
    by_ip = {f.subject: f.id for f in found if f.subject.startswith("192.")}
    assert by_ip == {"192.0.2.1": "dmarc.would_pass", "192.0.2.2": "dmarc.would_fail_reject",
                     "192.0.2.3": "dmarc.prediction_unknown"}
    ids = [f.id for f in found]
    assert "dmarc.pct_partial" in ids and "dmarc.unknown_tags" in ids
    fail = next(f for f in found if f.id == "dmarc.would_fail_reject")
    assert "(pct=50: reject for 50% of failing mail" in fail.summary


async def test_check_quarantine_and_dkim_dependent(monkeypatch):
    import base64

    from cryptography.hazmat.primitives.asymmetric import ed25519
    from cryptography.hazmat.primitives.serialization import Encoding, PublicFormat
    raw = ed25519.Ed25519PrivateKey.generate().public_key().public_bytes(Encoding.Raw, PublicFormat.Raw)
    answers = {"_dmarc.example.test": txt("_dmarc.example.test", "v=DMARC1; p=quarantine")}
    ctx = FakeCtx("example.test", dict(answers), addresses=(_ma("192.0.2.2"),), spf={"192.0.2.2": "softfail"})
    assert "dmarc.would_fail_quarantine" in [f.id for f in await _run(ctx)]
    answers["default._domainkey.example.test"] = txt("default._domainkey.example.test",
                                                     "v=DKIM1; k=ed25519; p=" + base64.b64encode(raw).decode())
    ctx = FakeCtx("example.test", answers, addresses=(_ma("192.0.2.2"),), spf={"192.0.2.2": "softfail"})
    assert "dmarc.dkim_dependent" in [f.id for f in await _run(ctx)]


async def test_check_external_report_destinations():
    rec = txt("_dmarc.example.test", "v=DMARC1; p=none; rua=mailto:a@vendor.test,mailto:b@other.test,mailto:c@example.test")
    auth = txt("example.test._report._dmarc.vendor.test", "v=DMARC1")
    ctx = FakeCtx("example.test", {"_dmarc.example.test": rec, "example.test._report._dmarc.vendor.test": auth})
    found = await _run(ctx)
    got = {f.args.get("dest"): f.id for f in found if f.id.startswith("dmarc.external")}
    assert got == {"vendor.test": "dmarc.external_authorized", "other.test": "dmarc.external_unauthorized"}
    assert "dmarc.policy_none" in [f.id for f in found]
