"""DMARCbis (issue 17): the DNS tree walk, the organizational domain, the new and removed tags, the
comparison with RFC 7489, and the check against the lab through the CLI."""

from __future__ import annotations

import asyncio
import json

import pytest
from checkctx import FakeCtx, txt
from hypothesis import given, settings
from hypothesis import strategies as st

from deliverck.records import dmarc as dm
from deliverck.records import dmarc_discovery as bis

# ------------------------------------------------------------------ the walk's names


@pytest.mark.parametrize("domain, names", [
    ("example.com", ("example.com", "com")),
    ("A.B.Example.COM.", ("a.b.example.com", "b.example.com", "example.com", "com")),
    ("com", ("com",)),
    ("", ()),
    # 8 labels: the name, then 7, 6, ... 1 labels
    ("a.b.c.d.e.f.g.h", ("a.b.c.d.e.f.g.h", "b.c.d.e.f.g.h", "c.d.e.f.g.h", "d.e.f.g.h", "e.f.g.h",
                         "f.g.h", "g.h", "h")),
    # 10 labels: the shortcut jumps from the name straight to its last 7 labels
    ("x.y.a.b.c.d.e.f.g.h", ("x.y.a.b.c.d.e.f.g.h", "b.c.d.e.f.g.h", "c.d.e.f.g.h", "d.e.f.g.h", "e.f.g.h",
                             "f.g.h", "g.h", "h")),
])
def test_walk_names(domain, names):
    assert bis.walk_names(domain) == names


_label = st.text(alphabet="abcxyz019-", min_size=1, max_size=6).filter(lambda s: s[0] != "-" and s[-1] != "-")
_domains = st.lists(_label, min_size=1, max_size=30).map(".".join)


@settings(max_examples=400, deadline=None)
@given(_domains)
def test_walk_names_properties(domain):
    names = bis.walk_names(domain)
    assert names[0] == domain
    assert 1 <= len(names) <= bis.MAX_QUERIES == 8
    counts = [len(n.split(".")) for n in names]
    assert counts == sorted(counts, reverse=True) and len(set(counts)) == len(counts)
    assert counts[-1] == 1                                   # down to the top-level label, never the root
    assert all(n and domain.endswith("." + n) for n in names[1:])
    assert all(c <= bis.SHORTCUT_LABELS for c in counts[1:])


# ------------------------------------------------------------------ walks over a fake DNS


def _lookup(records: dict[str, tuple[str, ...]], failed: frozenset[str] = frozenset(), asked: list | None = None):
    async def lookup(name: str) -> bis.Probe:
        if asked is not None:
            asked.append(name)
        if name in failed:
            return bis.Probe(name, failed="timeout")
        return bis.Probe(name, records.get(name, ()))
    return lookup


def _walks(domain, records, failed=frozenset()):
    asked: list[str] = []
    lk = _lookup(records, failed, asked)

    async def both():
        return await bis.policy_walk(domain, lk), await bis.org_walk(domain, lk)

    pw, ow = asyncio.run(both())
    return pw, ow, asked


_RECORD = st.sampled_from(["v=DMARC1; p=reject", "v=DMARC1; p=none; psd=n", "v=DMARC1; p=reject; psd=y",
                           "v=DMARC1; p=quarantine; psd=u", "v=DMARC1 p=broken"])


@settings(max_examples=300, deadline=None)
@given(_domains, st.data())
def test_walk_properties(domain, data):
    names = bis.walk_names(domain)
    placed = data.draw(st.dictionaries(st.sampled_from(names), st.lists(_RECORD, min_size=1, max_size=2)
                                       .map(tuple), max_size=4))
    failed = data.draw(st.frozensets(st.sampled_from(names), max_size=1))
    pw, ow, asked = _walks(domain, placed, failed)
    for walk in (pw, ow):
        queried = [p.domain for p in walk.probes]
        assert len(queried) <= bis.MAX_QUERIES and queried == list(names[:len(queried)])
        assert all(q for q in queried)                       # never the root
    # policy discovery stops at the first name with exactly one record (or a failed lookup)
    single = [n for n in names if len(placed.get(n, ())) == 1]
    stops = [n for n in names if n in failed or n in single]
    if stops:
        assert pw.probes[-1].domain == stops[0]
        assert pw.found is None or pw.found.domain == stops[0]
    else:
        assert len(pw.probes) == len(names) and pw.found is None
    org = bis.organizational_domain(ow)
    if ow.failed is not None:
        assert org is None
    else:
        assert org is not None and (org == domain or domain.endswith("." + org))


def test_policy_walk_stops_at_the_first_record_and_skips_multiple():
    recs = {"b.example.com": ("v=DMARC1; p=none", "v=DMARC1; p=reject"), "example.com": ("v=DMARC1; p=reject",)}
    pw, _ow, _ = _walks("a.b.example.com", recs)
    assert [p.domain for p in pw.probes] == ["a.b.example.com", "b.example.com", "example.com"]
    assert pw.found is not None and pw.found.domain == "example.com"


@pytest.mark.parametrize("domain, records, org", [
    # psd=n: that domain, wherever it is
    ("a.team.example.com", {"team.example.com": ("v=DMARC1; p=none; psd=n",),
                            "example.com": ("v=DMARC1; p=reject",)}, "team.example.com"),
    # psd=y above the start: one label below it
    ("x.shop.psd.example", {"psd.example": ("v=DMARC1; p=reject; psd=y",)}, "shop.psd.example"),
    ("shop.psd.example", {"psd.example": ("v=DMARC1; p=reject; psd=y",)}, "shop.psd.example"),
    # psd=y at the start does not stop the walk
    ("psd.example", {"psd.example": ("v=DMARC1; p=reject; psd=y",)}, "psd.example"),
    # no psd=: the record with the fewest labels
    ("a.b.example.com", {"b.example.com": ("v=DMARC1; p=none",), "example.com": ("v=DMARC1; p=none",)},
     "example.com"),
    # none at all: the name itself (not what the public suffix list says)
    ("mail.example.com", {}, "mail.example.com"),
    # an invalid record is no record
    ("a.example.com", {"example.com": ("v=DMARC1 p=none",)}, "a.example.com"),
    # psd=y far above a deep name cut by the shortcut: the name one label below it
    ("l.k.j.i.h.g.f.e.d.c.b", {"c.b": ("v=DMARC1; p=none; psd=y",)}, "d.c.b"),
])
def test_organizational_domain(domain, records, org):
    _pw, ow, _ = _walks(domain, records)
    assert bis.organizational_domain(ow) == org


def test_a_failed_lookup_leaves_the_organizational_domain_unknown():
    _pw, ow, _ = _walks("a.example.com", {"com": ("v=DMARC1; p=none",)}, frozenset({"example.com"}))
    assert bis.organizational_domain(ow) is None and ow.failed is not None


# ------------------------------------------------------------------ tags


def test_new_tags_are_parsed():
    r = dm.parse_record("v=DMARC1; p=reject; t=y; psd=n; np=quarantine")
    assert r.test_mode and r.psd == "n" and r.nonexistent_policy == "quarantine"
    assert r.unknown_tags == () and r.problems == ()
    r = dm.parse_record("v=DMARC1; p=reject")
    assert not r.test_mode and r.psd == "u"


@pytest.mark.parametrize("text, fragment", [("v=DMARC1; p=none; t=maybe", "t="), ("v=DMARC1; p=none; psd=1", "psd=")])
def test_bad_new_tag_values_are_problems(text, fragment):
    r = dm.parse_record(text)
    assert any(p.startswith(fragment) for p in r.problems)
    assert not r.test_mode and r.psd == "u"


_VALUES = {"p": ["none", "quarantine", "reject"], "sp": ["none", "reject"], "np": ["reject", "none"],
           "t": ["y", "n"], "psd": ["y", "n", "u"], "adkim": ["r", "s"], "aspf": ["s"], "pct": ["0", "50", "100"],
           "ri": ["3600"], "fo": ["1", "0:d"], "rua": ["mailto:a@example.com"]}


@settings(max_examples=300, deadline=None)
@given(st.dictionaries(st.sampled_from(sorted(_VALUES)), st.integers(0, 2), min_size=1), st.data())
def test_parser_round_trips(choice, data):
    tags = {k: _VALUES[k][i % len(_VALUES[k])] for k, i in choice.items()}
    tags.setdefault("p", "none")
    ws = st.sampled_from(["", " ", "\t", "  "])
    parts = []
    for k, v in tags.items():
        name = "".join(c.upper() if data.draw(st.booleans()) else c for c in k)   # names are case-insensitive
        parts.append(f"{data.draw(ws)}{name}{data.draw(ws)}={data.draw(ws)}{v}{data.draw(ws)}")
    text = "v=DMARC1;" + ";".join(parts) + data.draw(st.sampled_from(["", ";"]))
    r = dm.parse_record(text)
    assert {k: v for k, v in r.tags.items() if k != "v"} == tags
    assert r.problems == () and r.unknown_tags == ()
    assert r.test_mode == (tags.get("t") == "y") and r.psd == tags.get("psd", "u")
    assert r.removed_tags == tuple(t for t in ("pct", "rf", "ri") if t in tags)
    again = dm.parse_record("v=DMARC1; " + "; ".join(f"{k}={v}" for k, v in r.tags.items() if k != "v"))
    assert again.tags == r.tags


@settings(max_examples=200, deadline=None)
@given(st.sampled_from(["p", "t", "psd", "np", "pct"]), st.sampled_from(["none", "y", "reject", "5"]),
       st.sampled_from(["none", "n", "quarantine", "6"]), st.booleans())
def test_a_duplicate_tag_makes_the_record_invalid(tag, v1, v2, upper):
    # RFC 6376 3.2 (which DMARC's tag-list syntax follows): a tag given twice invalidates the record,
    # also when the two names differ only in case (DMARC's tag names are case-insensitive).
    other = tag.upper() if upper else tag
    with pytest.raises(dm.DmarcSyntaxError, match="more than once"):
        dm.parse_record(f"v=DMARC1; {tag}={v1}; {other}={v2}")


def test_values_are_case_insensitive_but_the_version_is_not():
    r = dm.parse_record("v=DMARC1; P=REJECT; T=Y; PSD=N")
    assert r.policy == "reject" and r.test_mode and r.psd == "n"
    with pytest.raises(dm.DmarcSyntaxError):
        dm.parse_record("v=dmarc1; p=reject")


# ------------------------------------------------------------------ the two rule sets


def _rec(text):
    return dm.parse_record(text)


@pytest.mark.parametrize("text, domain, found_at, exists, rfc, bis_", [
    ("v=DMARC1; p=reject; t=y", "ex.test", "ex.test", True, "reject", "quarantine"),
    ("v=DMARC1; p=quarantine; t=y", "ex.test", "ex.test", True, "quarantine", "none"),
    ("v=DMARC1; p=none; t=y", "ex.test", "ex.test", True, "none", "none"),
    ("v=DMARC1; p=reject; pct=0", "ex.test", "ex.test", True, "quarantine", "reject"),
    ("v=DMARC1; p=quarantine; pct=0", "ex.test", "ex.test", True, "none", "quarantine"),
    ("v=DMARC1; p=reject; pct=50", "ex.test", "ex.test", True, "reject", "reject"),
    ("v=DMARC1; p=none; np=reject", "ghost.ex.test", "ex.test", False, "none", "reject"),
    ("v=DMARC1; p=none; np=reject", "real.ex.test", "ex.test", True, "none", "none"),
    ("v=DMARC1; p=reject; sp=quarantine; np=none", "ghost.ex.test", "ex.test", False, "quarantine", "none"),
    ("v=DMARC1; p=none; np=reject", "ex.test", "ex.test", False, "none", "none"),
])
def test_policies_under_each_rule_set(text, domain, found_at, exists, rfc, bis_):
    r = _rec(text)
    a, b = bis.rfc7489_policy(r, domain, found_at), bis.dmarcbis_policy(r, domain, found_at, exists)
    assert (a.policy, b.policy) == (rfc, bis_)


def test_pct_50_is_partial_under_rfc7489_only():
    r = _rec("v=DMARC1; p=reject; pct=50")
    a, b = bis.rfc7489_policy(r, "ex.test", "ex.test"), bis.dmarcbis_policy(r, "ex.test", "ex.test")
    assert a.partial and not b.partial and not a.same_outcome(b)
    assert "quarantine for the rest" in a.describe()


def test_removed_tags_say_what_pct_0_becomes():
    note = bis.removed_tags_note(_rec("v=DMARC1; p=reject; pct=0; ri=3600"))
    assert "pct=0 (the old test mode) is ignored" in note and "t=y" in note and "ri=3600 is ignored" in note


def test_receiver_rules_are_data_with_a_model_each():
    assert all(m in (bis.RFC7489, bis.DMARCBIS) and note for m, note in bis.RECEIVER_RULES.values())
    assert "gmail" in bis.receivers_following(bis.RFC7489)


# ------------------------------------------------------------------ the check, on a fake context


async def _run(ctx):
    from deliverck.checks import dmarc as check
    return await check.run(ctx)


def _ma(ip):
    from deliverck.context import MailAddress
    return MailAddress(ip, ("mx.example.test",), ("mx",))


async def test_check_t_y_is_not_a_full_reject():
    ctx = FakeCtx("example.test", {"_dmarc.example.test": txt("_dmarc.example.test", "v=DMARC1; p=reject; t=y")},
                  addresses=(_ma("192.0.2.2"),), spf={"192.0.2.2": "fail"})
    found = {f.id: f for f in await _run(ctx)}
    assert "not a full reject" in found["dmarc.test_mode"].summary
    assert found["dmarc.bis_disagrees"].args["aspect"] == "policy"
    assert "p=quarantine" in found["dmarc.bis_disagrees"].args["dmarcbis"]
    # receivers on RFC 7489 ignore t= and still reject; the finding says DMARCbis receivers would not
    assert "DMARCbis apply p=quarantine" in found["dmarc.would_fail_reject"].summary


async def test_check_np_applies_to_a_nonexistent_sender_domain():
    ctx = FakeCtx("ghost.example.test", {"_dmarc.example.test": txt("_dmarc.example.test",
                                                                    "v=DMARC1; p=none; np=reject")},
                  addresses=(_ma("192.0.2.2"),), spf={"192.0.2.2": "none"})
    found = {f.id: f for f in await _run(ctx)}
    assert found["dmarc.bis_disagrees"].args["dmarcbis"].startswith("np=reject")
    assert found["dmarc.would_fail_reject_bis"].subject == "192.0.2.2"
    assert "dmarc.would_fail_reject" not in found


async def test_check_psd_record_moves_the_organizational_domain():
    ctx = FakeCtx("shop.psd.test", {"_dmarc.psd.test": txt("_dmarc.psd.test", "v=DMARC1; p=reject; psd=y")})
    found = await _run(ctx)
    dis = [f for f in found if f.id == "dmarc.bis_disagrees"]
    assert [(f.args["rfc7489"], f.args["dmarcbis"]) for f in dis] == [("psd.test", "shop.psd.test")]
    assert "dmarc.psd_record" in [f.id for f in found]


async def test_check_multiple_records_then_a_parent_policy():
    # RFC 7489 applies no policy at all; DMARCbis discards both records and finds the parent's
    two = txt("_dmarc.a.example.test", "v=DMARC1; p=none", "v=DMARC1; p=reject")
    ctx = FakeCtx("a.example.test", {"_dmarc.a.example.test": two,
                                     "_dmarc.example.test": txt("_dmarc.example.test", "v=DMARC1; p=quarantine")})
    found = {f.id: f for f in await _run(ctx)}
    assert "dmarc.multiple" in found
    dis = found["dmarc.bis_disagrees"].args
    assert (dis["rfc7489"], dis["dmarcbis"]) == ("no policy", "p=quarantine from _dmarc.example.test")


async def test_check_walk_is_bounded_for_deep_names():
    deep = ".".join(f"l{i}" for i in range(20)) + ".example.test"
    ctx = FakeCtx(deep, {})
    await _run(ctx)
    asked = list(dict.fromkeys(n for n, t in ctx.asked if t == "TXT"))
    # the tree walk's 8 names, plus RFC 7489's lookup at the public-suffix-list organizational domain
    assert len(asked) <= bis.MAX_QUERIES + 1 and "_dmarc.test" in asked
    assert all(n.startswith("_dmarc.") and n != "_dmarc." for n in asked)


async def test_check_reports_a_failed_walk_without_comparing():
    ctx = FakeCtx("example.test", {"_dmarc.example.test": txt("_dmarc.example.test", "v=DMARC1; p=none"),
                                   "_dmarc.test": txt("_dmarc.test", outcome="timeout")})
    ids = [f.id for f in await _run(ctx)]
    assert "dmarc.bis_walk_incomplete" in ids and "dmarc.bis_disagrees" not in ids


# ------------------------------------------------------------------ the lab, through the CLI


def _audit(lab, *args):
    from test_scenarios import assert_one_story, audit
    r = audit(lab, *args, "--json", "--only", "dmarc")
    doc = json.loads(r.stdout)
    assert_one_story(doc)
    return {f["id"]: f for c in doc["checks"] for f in c["findings"]}, doc


def test_lab_t_y_with_failing_mail(lab):
    found, doc = _audit(lab, "dmarcbis-testmode.test", "--ip", "192.0.2.141")
    assert "not a full reject" in found["dmarc.test_mode"]["summary"]
    fail = found["dmarc.would_fail_reject"]
    assert fail["subject"] == "192.0.2.141" and "DMARCbis apply p=quarantine" in fail["summary"]
    assert doc["verdict"] == "fail"


def test_lab_np_reject_for_a_nonexistent_sender_domain(lab):
    found, doc = _audit(lab, "dmarcbis-np.test", "--sender", "x@ghost.dmarcbis-np.test")
    dis = found["dmarc.bis_disagrees"]["args"]
    assert (dis["rfc7489"].split(" ")[0], dis["dmarcbis"].split(" ")[0]) == ("p=none", "np=reject")
    assert found["dmarc.would_fail_reject_bis"]["subject"] == "192.0.2.142"
    pred = [p for p in doc["predicted_ndrs"] if p["key"] == "generic.dmarcbis-reject"]
    assert pred and pred[0]["likelihood"] == "may"


def test_lab_psd_operator_and_the_organizational_domain(lab):
    found, _ = _audit(lab, "shop.dmarcbis-psd.test")
    args = found["dmarc.bis_disagrees"]["args"]
    assert (args["aspect"], args["rfc7489"], args["dmarcbis"]) == \
        ("organizational domain", "dmarcbis-psd.test", "shop.dmarcbis-psd.test")
    assert "gmail" in args["rfc7489_receivers"]
    assert "dmarc.psd_record" in found and "dmarc.would_pass" in found


def test_lab_psl_and_tree_walk_disagree(lab):
    from test_scenarios import audit
    r = audit(lab, "mail.team.dmarcbis-orgsplit.test", "--json", "--only", "dmarc")
    doc = json.loads(r.stdout)
    dis = {f["args"]["aspect"]: f["args"] for c in doc["checks"] for f in c["findings"]
           if f["id"] == "dmarc.bis_disagrees"}
    assert (dis["organizational domain"]["rfc7489"], dis["organizational domain"]["dmarcbis"]) == \
        ("dmarcbis-orgsplit.test", "team.dmarcbis-orgsplit.test")
    assert dis["policy"]["rfc7489"].startswith("p=quarantine from _dmarc.dmarcbis-orgsplit.test (pct=0")
    assert dis["policy"]["dmarcbis"] == "p=none from _dmarc.team.dmarcbis-orgsplit.test"
