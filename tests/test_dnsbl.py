"""The dnsbl check: list data, query names, return codes, and the lab runs."""

from __future__ import annotations

import json

import pytest
from conftest import ROOT, deliverck, validate_report

from deliverck.records import dnsbl
from deliverck.records.dnsbl import DnsList, domain_query_name, from_toml, interpret, ip_query_name, select

LISTS = dnsbl.load()


def zen() -> DnsList:
    lst = LISTS.by_id("spamhaus-zen")
    assert lst is not None
    return lst


# -- query names (RFC 5782 2.1, 2.3, 2.4)


def test_ipv4_query_name_reverses_octets():
    assert ip_query_name("192.0.2.99", "zen.spamhaus.org") == "99.2.0.192.zen.spamhaus.org"
    assert zen().query_name("127.0.0.2") == "2.0.0.127.zen.spamhaus.org"


def test_ipv6_query_name_reverses_nibbles():
    # RFC 5782 2.4's own example
    name = ip_query_name("2001:db8:1:2:3:4:567:89ab", "ugly.example.com")
    assert name == "b.a.9.8.7.6.5.0.4.0.0.0.3.0.0.0.2.0.0.0.1.0.0.0.8.b.d.0.1.0.0.2.ugly.example.com"
    assert ip_query_name("2001:db8::1", "z.example").count(".") == 32 + 1


def test_domain_query_name():
    assert domain_query_name("Example.COM.", "dbl.spamhaus.org") == "example.com.dbl.spamhaus.org"


def test_ipv6_only_for_lists_that_support_it():
    assert zen().supports("2001:db8::1")
    spamcop = LISTS.by_id("spamcop")
    assert spamcop and spamcop.supports("192.0.2.1") and not spamcop.supports("2001:db8::1")


# -- return codes


def test_codes_from_the_data():
    i = interpret(zen(), ["127.0.0.2"])
    assert [c.code for c in i.listed] == ["127.0.0.2"] and i.klass == "spam" and "SBL" in i.meaning
    pbl = interpret(zen(), ["127.0.0.10"])
    assert pbl.klass == "policy" and "PBL" in pbl.meaning
    both = interpret(zen(), ["127.0.0.10", "127.0.0.4"])
    assert both.klass == "spam"                       # the worst class decides
    dbl = interpret(LISTS.by_id("spamhaus-dbl"), ["127.0.1.4"])
    assert "phish" in dbl.meaning


@pytest.mark.parametrize("code", ["127.255.255.252", "127.255.255.254", "127.255.255.255"])
def test_error_codes_are_neither_listed_nor_clean(code):
    i = interpret(zen(), [code])
    assert not i.listed and [c.code for c in i.errors] == [code] and i.errors[0].error


def test_undocumented_and_bogus_answers():
    i = interpret(LISTS.by_id("spamcop"), ["127.0.0.7"])
    assert i.listed and "not documented" in i.meaning
    assert interpret(zen(), ["203.0.113.9"]).bogus == ("203.0.113.9",)   # NXDOMAIN rewriting resolver


def test_custom_zone_and_dqs_key_masked():
    sel = select(["dnsbl.example.net", "SECRETKEY.zen.dq.spamhaus.net"])
    custom, dqs = sel.lists
    assert custom.custom and interpret(custom, ["127.0.0.3"]).listed
    assert interpret(custom, ["127.255.255.254"]).errors
    assert dqs.codes == zen().codes and "SECRETKEY" not in dqs.shown_zone
    assert dqs.query_name("127.0.0.2", shown=True) == "2.0.0.127.<key>.zen.dq.spamhaus.net"


def test_selection():
    assert select([]).lists == LISTS.defaults()
    sel = select(["sorbs", "spam.dnsbl.sorbs.net", "spamhaus-zen", "zen.spamhaus.org", "nonsense"])
    assert [x.id for x in sel.lists] == ["spamhaus-zen"]
    assert [x.id for x in sel.retired] == ["sorbs"]
    assert sel.unknown == ("nonsense",)
    with pytest.raises(ValueError, match="nonsense"):
        dnsbl.check_selection(["nonsense"])


# -- the data file


def test_shipped_lists_are_valid():
    assert LISTS.problems() == []
    ids = [x.id for x in LISTS.lists]
    assert len(ids) == len(set(ids))
    for lst in LISTS.lists:
        assert lst.zone and lst.codes and lst.source
        if lst.retired:
            assert lst.note and not lst.default
    defaults = {x.id for x in LISTS.defaults()}
    assert {"spamhaus-zen", "spamhaus-dbl", "barracuda", "spamcop"} <= defaults
    assert not any(x.lab or x.retired for x in LISTS.defaults())
    assert LISTS.by_id("sorbs").retired == "2024"


def test_validator_reports_defects():
    bad = from_toml("""
schema = 1
[[list]]
id = "a"
name = "A"
zone = "a.example"
kind = "ip"
class = "spam"
source = "doc"
default = true
delist = "https://a.example/"
codes = [{ code = "127.0.0.2", meaning = "listed" }]
[[list]]
id = "a"
name = "dup"
zone = "nodots"
kind = "url"
class = "worst"
source = ""
codes = [{ code = "10.0.0.1", meaning = "" }, { code = "127.0.0.1", meaning = "x" }]
retired = "2024"
[[list]]
id = "b"
name = "B"
zone = "b.example"
kind = "ip"
class = "spam"
codes = []
""")
    text = "\n".join(bad.problems())
    for expected in ("duplicate list id 'a'", "not a DNS name", "kind 'url'", "class 'worst'", "missing source",
                     "outside 127.0.0.0/8", "missing meaning", "127.0.0.1 must never mean listed",
                     "retired list needs a note", "list 'b': missing fields ['source']", "list 'b': no return codes"):
        assert expected in text, expected


def test_every_default_list_has_a_lab_zone():
    zones_dir = ROOT / "deliverck" / "lab" / "zones"
    served = {p.name[: -len(".zone")] for p in zones_dir.glob("*.zone")}
    for lst in LISTS.defaults():
        assert lst.zone in served, lst.zone
    assert "dead.dnsbl.test" not in served


# -- lab runs


def audit(lab, *args: str):
    r = deliverck("--ca-file", lab.ca_file, "--smtp-timeout", "3", "--dns-timeout", "2", "--json", *args)
    assert r.stderr == "", r.stderr
    doc = json.loads(r.stdout)
    validate_report(doc)
    findings = [f for c in doc["checks"] for f in c["findings"] if f["id"].startswith("dnsbl.")]
    return r, doc, findings


def ids(findings) -> list[str]:
    return [f["id"] for f in findings]


def test_lab_listed(lab):
    r, doc, fs = audit(lab, "dnsbl-listed-zen.test", "--only", "dnsbl")
    assert r.returncode == 1 and doc["verdict"] == "fail"
    listed = [f for f in fs if f["id"] == "dnsbl.listed"]
    assert {f["subject"] for f in listed} == {"192.0.2.211", "2001:db8:2::211"}
    f = next(f for f in listed if f["subject"] == "192.0.2.211")
    assert f["args"]["list"] == "spamhaus-zen" and f["args"]["code"] == "127.0.0.2"
    assert f["args"]["delist"].startswith("https://") and "SBL" in f["args"]["meaning"]
    assert any("211.2.0.192.zen.spamhaus.org A: 127.0.0.2" in e for e in f["evidence"])
    assert any("TXT" in e and "SBL" in e for e in f["evidence"])
    keys = {p["key"] for p in doc["predicted_ndrs"]}
    assert "exchange-online.dnsbl-banned-sending-ip" in keys
    assert any(p["reply"].startswith("554 5.7.1 Service unavailable; Client host [192.0.2.211]")
               for p in doc["predicted_ndrs"])


def test_lab_clean(lab):
    r, doc, fs = audit(lab, "dnsbl-clean.test", "--only", "dnsbl")
    assert r.returncode == 0, ids(fs)
    assert set(ids(fs)) == {"dnsbl.clean"}
    assert {f["subject"] for f in fs} == {"192.0.2.210", "2001:db8:2::210", "dnsbl-clean.test"}
    v4 = next(f for f in fs if f["subject"] == "192.0.2.210")
    assert v4["args"]["count"] == len([x for x in LISTS.defaults() if x.kind == "ip"])


def test_lab_broken_list(lab):
    r, doc, fs = audit(lab, "dnsbl-clean.test", "--only", "dnsbl", "--dnsbl", "lab-everything")
    assert ids(fs) == ["dnsbl.list_broken"], ids(fs)      # its "listed" answers are ignored
    assert r.returncode == 0


def test_lab_refused_list(lab):
    r, doc, fs = audit(lab, "dnsbl-clean.test", "--only", "dnsbl", "--dnsbl", "lab-refused")
    assert ids(fs) == ["dnsbl.refused"], ids(fs)
    assert fs[0]["inconclusive"] and fs[0]["args"]["code"] == "127.255.255.254"
    assert "own recursive resolver" in fs[0]["fix"]
    assert r.returncode == 3 and doc["verdict"] == "incomplete"


def test_lab_dead_list(lab):
    r, doc, fs = audit(lab, "dnsbl-listed-zen.test", "--only", "dnsbl", "--dnsbl", "lab-dead")
    assert ids(fs) == ["dnsbl.list_dead"], ids(fs)
    assert fs[0]["inconclusive"] and r.returncode == 3


def test_lab_retired_list_requested(lab):
    r, doc, fs = audit(lab, "dnsbl-clean.test", "--only", "dnsbl", "--dnsbl", "dnsbl.sorbs.net",
                       "--dnsbl", "spamcop")
    retired = [f for f in fs if f["id"] == "dnsbl.retired"]
    assert len(retired) == 1 and "closed in 2024" in retired[0]["summary"]
    assert retired[0]["severity"] == "notice"
    assert "dnsbl.clean" in ids(fs) and r.returncode == 0
