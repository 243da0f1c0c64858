"""DKIM key records: the parser (every tag, errors, key sizes), and discovery in the lab."""

from __future__ import annotations

import base64
import json

import pytest
from cryptography.hazmat.primitives.asymmetric import ec, ed25519, rsa
from cryptography.hazmat.primitives.serialization import Encoding, PublicFormat
from hypothesis import given, settings
from hypothesis import strategies as st

from deliverck.records import tags as taglist
from deliverck.records.dkim import DkimSyntaxError, parse_key_record
from deliverck.records.dkim_discovery import COMMON_SELECTORS, selectors_for


def rsa_p(bits: int = 2048, fmt: PublicFormat = PublicFormat.SubjectPublicKeyInfo) -> str:
    if bits < 1024:
        # cryptography refuses to generate these; a public key needs only a modulus of that size.
        n = (1 << (bits - 1)) | 0x10001
        key = rsa.RSAPublicNumbers(65537, n).public_key()
    else:
        key = rsa.generate_private_key(65537, bits).public_key()
    return base64.b64encode(key.public_bytes(Encoding.DER, fmt)).decode()


@pytest.fixture(scope="module")
def p2048():
    return rsa_p(2048)


@pytest.fixture(scope="module")
def p1024():
    return rsa_p(1024)


def ed_p() -> str:
    raw = ed25519.Ed25519PrivateKey.generate().public_key().public_bytes(Encoding.Raw, PublicFormat.Raw)
    return base64.b64encode(raw).decode()


# ------------------------------------------------------------------ tag lists

def test_tag_list_basics():
    tl = taglist.parse(" v = DKIM1 ;\tk=rsa; p=AB CD\r\n EF ;")
    assert tl.tags == {"v": "DKIM1", "k": "rsa", "p": "AB CD\r\n EF"}
    assert tl.order == ("v", "k", "p")
    assert taglist.parse("").tags == {}


@pytest.mark.parametrize("text, fragment, offset", [
    ("v=DKIM1; k", "is not tag=value", 9),
    ("v=DKIM1; =rsa", "has no name", 9),
    ("v=DKIM1; 1k=rsa", "not a valid tag name", 9),
    ("p=a; p=b", "more than once", 5),
    ("p=\x00", "not allowed", 2),
    ("p=é", "not allowed", 2),
])
def test_tag_list_errors_are_precise(text, fragment, offset):
    with pytest.raises(taglist.TagListError) as e:
        taglist.parse(text)
    assert fragment in e.value.message
    assert e.value.offset == offset


def test_empty_tag_spec_is_tolerated_with_a_note():
    tl = taglist.parse("v=DKIM1;; p=")
    assert tl.tags == {"v": "DKIM1", "p": ""}
    assert tl.notes and "character 9" in tl.notes[0]


# ------------------------------------------------------------------ key records

def test_good_rsa_key(p2048):
    k = parse_key_record(f"v=DKIM1; k=rsa; p={p2048}")
    assert (k.version, k.key_type, k.bits, k.strength, k.usable, k.key_format) == ("DKIM1", "rsa", 2048, "ok", True, "spki")
    assert k.describe() == "rsa 2048 bits"


def test_defaults_without_v_and_k(p2048):
    k = parse_key_record(f"p={p2048}")
    assert k.version == "" and k.key_type == "rsa" and k.usable
    assert k.hashes == () and k.usable_hashes == ("sha1", "sha256")
    assert k.services == ("*",) and k.for_email


def test_base64_with_whitespace(p2048):
    spaced = " ".join(p2048[i:i + 60] for i in range(0, len(p2048), 60))
    assert parse_key_record(f"v=DKIM1; p={spaced}").bits == 2048


def test_pkcs1_rsapublickey_is_accepted():
    k = parse_key_record(f"p={rsa_p(2048, PublicFormat.PKCS1)}")
    assert k.bits == 2048 and k.key_format == "pkcs1" and k.usable


def test_weak_and_short_keys(p1024):
    weak = parse_key_record(f"v=DKIM1; p={p1024}")
    assert weak.strength == "weak" and weak.usable
    short = parse_key_record(f"v=DKIM1; p={rsa_p(512)}")
    assert short.bits == 512 and short.strength == "too_short" and not short.usable
    assert "512 bits" in short.problem


def test_ed25519():
    k = parse_key_record(f"v=DKIM1; k=ed25519; p={ed_p()}")
    assert k.key_type == "ed25519" and k.bits == 256 and k.usable and k.strength == "ok"
    bad = parse_key_record("v=DKIM1; k=ed25519; p=" + base64.b64encode(b"x" * 31).decode())
    assert "32 bytes" in bad.key_error and not bad.usable


def test_revoked():
    k = parse_key_record("v=DKIM1; k=rsa; p=")
    assert k.revoked and not k.usable and k.problem.startswith("revoked")
    assert k.strength == ""


def test_testing_and_strict_flags(p2048):
    k = parse_key_record(f"v=DKIM1; t=y:s; p={p2048}")
    assert k.testing and k.strict and k.usable
    assert parse_key_record(f"t=x; p={p2048}").flags == ("x",)


def test_hash_algorithms(p2048):
    assert parse_key_record(f"h=sha256; p={p2048}").usable
    sha1 = parse_key_record(f"h=sha1; p={p2048}")
    assert sha1.sha1_only and not sha1.usable and "RFC 8301" in sha1.problem
    unknown = parse_key_record(f"h=md5; p={p2048}")
    assert not unknown.usable and "no hash algorithm" in unknown.problem
    assert parse_key_record(f"h=sha1:sha256:foo; p={p2048}").usable_hashes == ("sha1", "sha256")


def test_service_type(p2048):
    assert parse_key_record(f"s=email; p={p2048}").usable
    assert parse_key_record(f"s=*; p={p2048}").usable
    other = parse_key_record(f"s=tlsrpt; p={p2048}")
    assert not other.usable and "excludes email" in other.problem


def test_unknown_key_type_is_unusable(p2048):
    k = parse_key_record(f"k=dsa; p={p2048}")
    assert not k.known_type and not k.usable and "k=dsa" in k.problem


def test_notes_and_unknown_tags(p2048):
    k = parse_key_record(f"v=DKIM1; n=hello world; x_foo=1; p={p2048}")
    assert k.notes_tag == "hello world" and k.unknown_tags == ("x_foo",)
    with pytest.raises(DkimSyntaxError, match="not a valid tag name"):
        parse_key_record(f"v=DKIM1; x-foo=1; p={p2048}")


def test_unknown_tag_names_are_kept(p2048):
    k = parse_key_record(f"v=DKIM1; foo=1; p={p2048}")
    assert k.unknown_tags == ("foo",) and k.usable


@pytest.mark.parametrize("text, fragment", [
    ("k=rsa; v=DKIM1; p=", "must be the first"),
    ("v=DKIM2; p=", "only version is DKIM1"),
    ("v=dkim1; p=", "only version is DKIM1"),
    ("v=DKIM1; k=rsa", "no p= tag"),
    ("v=DKIM1; p=a; p=b", "more than once"),
    ("v=DKIM1 p=abc", "only version"),
])
def test_syntax_errors(text, fragment):
    with pytest.raises(DkimSyntaxError) as e:
        parse_key_record(text)
    assert fragment in str(e.value)


@pytest.mark.parametrize("p, fragment", [
    ("!!!notbase64", "not valid base64"),
    (base64.b64encode(b"\x30\x03\x02\x01\x05").decode(), "not a DER public key"),
    ("AAAA", "not a DER public key"),
])
def test_unloadable_keys(p, fragment):
    k = parse_key_record(f"v=DKIM1; p={p}")
    assert fragment in k.key_error and not k.usable


def test_rsa_type_with_an_ec_key():
    ec_key = ec.generate_private_key(ec.SECP256R1()).public_key()
    p = base64.b64encode(ec_key.public_bytes(Encoding.DER, PublicFormat.SubjectPublicKeyInfo)).decode()
    k = parse_key_record(f"k=rsa; p={p}")
    assert "k=rsa, but p= holds" in k.key_error


def test_selector_order_and_dedup():
    sels = selectors_for(("mine", "selector1"))
    assert sels[:2] == [("mine", "given"), ("selector1", "given")]
    assert [s for s, _ in sels].count("selector1") == 1
    assert len(sels) == len(COMMON_SELECTORS) + 1
    assert 10 <= len(COMMON_SELECTORS) <= 20


# ------------------------------------------------------------------ properties

_tagchars = st.text(alphabet=st.characters(min_codepoint=0, max_codepoint=0x3000), max_size=200)
_tagish = st.lists(
    st.tuples(st.sampled_from(["v", "k", "p", "h", "s", "t", "n", "x", " p", "1", ""]),
              st.sampled_from(["=", " = ", "", "=="]),
              st.text(alphabet="DKIM1rsaed25519yA/+=sha:*email; \t", max_size=30)),
    max_size=8,
).map(lambda parts: ";".join(a + b + c for a, b, c in parts))


@settings(max_examples=400, deadline=None)
@given(st.one_of(_tagchars, _tagish))
@pytest.mark.slow
def test_key_parser_raises_only_its_error(text):
    try:
        k = parse_key_record(text)
    except DkimSyntaxError:
        return
    # whatever parses answers every question without raising
    assert isinstance(k.usable, bool)
    k.problem, k.strength, k.describe()


# ------------------------------------------------------------------ the lab

@pytest.mark.parametrize("scenario, finding, args", [
    ("dkim-good", "dkim.key_found", {"selector": "s1", "key_type": "rsa", "bits": 2048}),
    ("dkim-ed25519", "dkim.key_found", {"selector": "default", "key_type": "ed25519"}),
    ("dkim-weak-1024", "dkim.weak_key", {"bits": 1024}),
    ("dkim-short-512", "dkim.key_too_short", {"bits": 512}),
    ("dkim-revoked", "dkim.revoked", {"selector": "mail"}),
    ("dkim-testing", "dkim.testing", {"selector": "google"}),
    ("dkim-m365", "dkim.cname_dangling", {"selector": "selector1"}),
])
def test_lab_key_discovery(lab, scenario, finding, args):
    from test_scenarios import audit
    r = audit(lab, f"{scenario}.test", "--json", "--only", "dkim")
    doc = json.loads(r.stdout)
    found = [f for c in doc["checks"] for f in c["findings"] if f["id"] == finding]
    assert found, [f["id"] for c in doc["checks"] for f in c["findings"]]
    for k, v in args.items():
        assert found[0]["args"][k] == v


def test_lab_given_selector_is_probed_first_and_missing_one_reported(lab):
    from test_scenarios import audit
    r = audit(lab, "dkim-good.test", "--json", "--only", "dkim", "--dkim-selector", "nosuch")
    doc = json.loads(r.stdout)
    ids = [f["id"] for c in doc["checks"] for f in c["findings"]]
    assert "dkim.selector_missing" in ids and "dkim.key_found" in ids
    assert "dkim.no_key_found" not in ids


# ------------------------------------------------------------------ the check, on a fake context

from checkctx import FakeCtx, txt  # noqa: E402


def _ids(findings):
    return [f.id for f in findings]


async def test_check_reports_keys_dangling_cnames_and_incompleteness(p2048):
    from deliverck.checks import dkim as check
    d = "example.test"
    ctx = FakeCtx(d, {
        f"s1._domainkey.{d}": txt(f"s1._domainkey.{d}", f"v=DKIM1; p={p2048}"),
        f"selector1._domainkey.{d}": txt(f"selector1._domainkey.{d}", outcome="nxdomain",
                                         cname="selector1-example-test._domainkey.contoso.onmicrosoft.com"),
        f"mail._domainkey.{d}": txt(f"mail._domainkey.{d}", "v=DKIM1; k=rsa; p="),
        f"k1._domainkey.{d}": txt(f"k1._domainkey.{d}", "v=DKIM1; k=rsa; h=sha1; p=" + p2048),
        f"s2._domainkey.{d}": txt(f"s2._domainkey.{d}", "k=rsa; v=DKIM1; p=" + p2048),
        f"dkim._domainkey.{d}": txt(f"dkim._domainkey.{d}", "google-site-verification=abc"),
    }, selectors=("s1",))
    found = await check.run(ctx)
    ids = _ids(found)
    assert ids.count("dkim.key_found") == 1
    dangling = [f for f in found if f.id == "dkim.cname_dangling"][0]
    assert "Microsoft 365" in dangling.summary
    assert {"dkim.revoked", "dkim.sha1_only", "dkim.syntax", "dkim.discovery_incomplete"} <= set(ids)
    assert "dkim.no_key_found" not in ids
    assert ctx.asked[0] == (f"s1._domainkey.{d}", "TXT")       # given selector first
    assert len(ctx.asked) == len(COMMON_SELECTORS)              # s1 is a common one too: asked once


async def test_check_without_keys_is_a_notice_not_an_error():
    from deliverck.checks import dkim as check
    found = await check.run(FakeCtx("example.test", {}))
    # One cause, one finding: the selectors looked at are the notice's evidence, not an info of their own.
    assert _ids(found) == ["dkim.no_key_found"]
    assert max(f.severity for f in found).to_text() == "notice"
    assert "selector1" in found[0].evidence[0] and "s1" in found[0].evidence[0]


async def test_check_failed_lookups_are_one_inconclusive_finding():
    from deliverck.checks import dkim as check
    from deliverck.records.dkim_discovery import selector_name
    d = "example.test"
    ctx = FakeCtx(d, {selector_name(s, d): txt(selector_name(s, d), outcome="servfail") for s in COMMON_SELECTORS})
    found = await check.run(ctx)
    failed = [f for f in found if f.id == "dkim.lookup_failed"]
    assert len(failed) == 1 and failed[0].inconclusive and failed[0].args["count"] == len(COMMON_SELECTORS)
    assert "dkim.no_key_found" not in _ids(found)


async def test_given_selector_without_key():
    from deliverck.checks import dkim as check
    found = await check.run(FakeCtx("example.test", {}, selectors=("nosuch",)))
    assert "dkim.selector_missing" in _ids(found) and "dkim.no_key_found" not in _ids(found)


# ------------------------------------------------------------------ Microsoft 365's DKIM CNAME targets (issue 17)

@pytest.mark.parametrize("target, m365", [
    ("selector1-example-com._domainkey.contoso.onmicrosoft.com", True),
    ("selector2-example-com._domainkey.contoso.n-v1.dkim.mail.microsoft", True),
    ("selector1-example-com._domainkey.contoso.r-v1.dkim.mail.microsoft", True),
    ("selector1-example-com._domainkey.contoso.n-v1.dkim.mail.microsoft.example.net", False),
    ("selector1-example-com._domainkey.dkim.mail.microsoft", False),
    ("s1-example-com._domainkey.contoso.n-v1.dkim.mail.microsoft", False),
])
def test_m365_cname_targets_old_and_new(target, m365):
    from deliverck.net.dns import DnsAnswer, Outcome
    from deliverck.records.dkim_discovery import interpret
    ans = DnsAnswer("selector1._domainkey.example.com", "TXT", Outcome.NXDOMAIN, canonical_name=target)
    r = interpret("selector1", "common", "example.com", ans)
    assert r.dangling and r.m365 is m365


def test_lab_m365_new_dkim_cname_is_recognised(lab):
    from test_scenarios import audit
    r = audit(lab, "dkim-m365-new.test", "--json", "--only", "dkim")
    doc = json.loads(r.stdout)
    found = [f for c in doc["checks"] for f in c["findings"] if f["id"] == "dkim.cname_dangling"]
    assert sorted(f["args"]["selector"] for f in found) == ["selector1", "selector2"]
    for f in found:
        assert f["args"]["target"].endswith(".n-v1.dkim.mail.microsoft")
        assert "Microsoft 365" in f["summary"]
    assert r.returncode == 0
