"""MTA-STS and TLS-RPT: parsers, the HTTPS fetch against the lab, and the check (imported directly
until it is registered)."""

from __future__ import annotations

import asyncio
import tomllib
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from deliverck import mtasts
from deliverck.mtasts import MtaStsError

ROOT = Path(__file__).resolve().parent.parent

GOOD = "version: STSv1\r\nmode: enforce\r\nmx: mail.example.com\r\nmx: *.example.net\r\nmax_age: 604800\r\n"


# --- _mta-sts TXT ------------------------------------------------------------------

@pytest.mark.parametrize("text,ident", [
    ("v=STSv1; id=20160831085700Z;", "20160831085700Z"),
    ("v=STSv1;id=abc", "abc"),
    ("v=STSv1; id=abc ;  ", "abc"),
    ("v=STSv1; id=abc; ext=value", "abc"),
])
def test_sts_record_ok(text, ident):
    assert mtasts.parse_sts_record(text).id == ident


@pytest.mark.parametrize("text", [
    "", "v=STSv1", "v=STSv2; id=1", "id=1; v=STSv1", "v=STSv1; id=", "v=STSv1; id=" + "a" * 33,
    "v=STSv1; id=a-b", "v=STSv1; id=1; id=2", "v=STSv1; id=1; v=STSv1", "v=STSv1; id=1; garbage",
    "v=STSv1; id=1; e=", "v=STSv1; id=1; =x", "v=STSv1; id=\xe9",
])
def test_sts_record_bad(text):
    with pytest.raises(MtaStsError):
        mtasts.parse_sts_record(text)


# --- policy ---------------------------------------------------------------------------

def test_policy_crlf_and_lf():
    for body in (GOOD, GOOD.replace("\r\n", "\n"), GOOD.encode()):
        p = mtasts.parse_policy(body)
        assert (p.version, p.mode, p.max_age, p.mx) == ("STSv1", "enforce", 604800, ("mail.example.com",
                                                                                     "*.example.net"))
        assert p.notes == ()


def test_policy_unknown_keys_ignored_and_noted():
    p = mtasts.parse_policy(GOOD + "foo: bar\n")
    assert p.mode == "enforce" and any("foo" in n for n in p.notes)


def test_policy_mode_none_needs_no_mx():
    assert mtasts.parse_policy("version: STSv1\nmode: none\nmax_age: 86400\n").mx == ()


@pytest.mark.parametrize("age", ["0", "31557600"])
def test_policy_max_age_bounds(age):
    assert mtasts.parse_policy(GOOD.replace("604800", age)).max_age == int(age)


@pytest.mark.parametrize("body", [
    "", GOOD.replace("STSv1", "STSv2"), GOOD.replace("enforce", "enforcing"), GOOD.replace("604800", "31557601"),
    GOOD.replace("604800", "-1"), GOOD.replace("604800", "1w"), GOOD.replace("604800", "12345678901"),
    "version: STSv1\nmode: enforce\nmax_age: 86400\n",                  # enforce without mx
    "mode: enforce\nmx: a.example\nmax_age: 86400\n",                   # no version
    GOOD.replace("max_age: 604800\r\n", ""), GOOD + "not a key value line\n",
    GOOD.replace("mail.example.com", "mail..example.com"), GOOD.replace("*.example.net", "a.*.example.net"),
    GOOD.replace("*.example.net", "*example.net"), "version: STSv1\rmode: enforce\n",
    GOOD.replace("mail.example.com", "m\u00e9l.example.com"),
])
def test_policy_bad(body):
    with pytest.raises(MtaStsError):
        mtasts.parse_policy(body)


@pytest.mark.parametrize("pattern,host,ok", [
    ("mail.example.com", "mail.example.com", True),
    ("mail.example.com", "MAIL.Example.com.", True),
    ("mail.example.com", "mx.example.com", False),
    ("*.example.com", "mx.example.com", True),
    ("*.example.com", "example.com", False),                # the wildcard needs one label
    ("*.example.com", "a.b.example.com", False),            # and only one (RFC 8461 4.1)
    ("*.example.com", "mx.badexample.com", False),
    ("*.example.com", ".example.com", False),
])
def test_mx_matches(pattern, host, ok):
    assert mtasts.mx_matches(pattern, host) is ok


# --- _smtp._tls TXT -------------------------------------------------------------------

@pytest.mark.parametrize("text,rua", [
    ("v=TLSRPTv1; rua=mailto:tls@example.com", ("mailto:tls@example.com",)),
    ("v=TLSRPTv1;rua=mailto:a@example.com,https://r.example.com/v1", ("mailto:a@example.com",
                                                                      "https://r.example.com/v1")),
    ("v=TLSRPTv1; rua=https://r.example.com:8443/x; ext=1;", ("https://r.example.com:8443/x",)),
])
def test_tlsrpt_ok(text, rua):
    assert mtasts.parse_tlsrpt_record(text).rua == rua


@pytest.mark.parametrize("text", [
    "", "v=TLSRPTv1", "v=TLSRPTv2; rua=mailto:a@b.example", "rua=mailto:a@b.example; v=TLSRPTv1",
    "v=TLSRPTv1; rua=http://r.example.com/", "v=TLSRPTv1; rua=ftp://r.example.com/",
    "v=TLSRPTv1; rua=mailto:nobody", "v=TLSRPTv1; rua=", "v=TLSRPTv1; rua=mailto:a@b.example,",
    "v=TLSRPTv1; rua=mailto:a@b.example; rua=mailto:c@d.example", "v=TLSRPTv1; rua=https:r.example.com",
])
def test_tlsrpt_bad(text):
    with pytest.raises(MtaStsError):
        mtasts.parse_tlsrpt_record(text)


# --- the parsers never raise anything else ------------------------------------------------

_ALPHABET = st.sampled_from(list("v=STSv1;id:TLSRPTvrua,mailto@https/.*-_ \t\r\nenforcetestingnonemx0123456789")
                            + ["\x00", "\xe9", "\u2028", "version: STSv1\n", "mode: enforce\n", "max_age: "])
_TEXT = st.one_of(st.text(), st.lists(_ALPHABET, max_size=40).map("".join), st.binary())


@settings(max_examples=400, deadline=None)
@given(_TEXT)
def test_parsers_raise_only_their_error(value):
    for parse in (mtasts.parse_sts_record, mtasts.parse_policy, mtasts.parse_tlsrpt_record):
        try:
            parse(value)
        except MtaStsError:
            pass


@settings(max_examples=200, deadline=None)
@given(st.text(max_size=80), st.text(max_size=80))
def test_mx_matches_never_raises(pattern, host):
    assert mtasts.mx_matches(pattern, host) in (True, False)


# --- the check's declarations and its pending catalog file -------------------------------------

def test_check_declares_its_findings():
    from deliverck.checks import _mta_sts

    assert _mta_sts.CHECK.id == "mta_sts" and _mta_sts.CHECK.order == 58
    ids = [f.id for f in _mta_sts.CHECK.findings]
    assert len(ids) == len(set(ids)) and all(i.startswith("mta_sts.") for i in ids)


def _pending_catalog() -> Path:
    base = ROOT / "deliverck" / "ndr" / "catalog"
    return base / "mta_sts.toml" if (base / "mta_sts.toml").exists() else base / "mta_sts.toml.pending"


def test_catalog_entries_are_valid_and_name_declared_findings():
    from deliverck.checks import _mta_sts
    from deliverck.ndr import catalog

    data = tomllib.loads((ROOT / "deliverck" / "ndr" / "catalog.toml").read_text(encoding="utf-8"))
    more = tomllib.loads(_pending_catalog().read_text(encoding="utf-8"))
    assert set(more) == {"entry"}
    data["entry"] = more["entry"]
    cat = catalog.from_mapping(data)
    assert not cat.problems(), cat.problems()
    declared = {f.id for f in _mta_sts.CHECK.findings}
    for e in cat.entries:
        assert set(e.findings) <= declared, e.key


# --- against the lab ---------------------------------------------------------------------------

def _url(name: str) -> str:
    return f"https://mta-sts.{name}.test/.well-known/mta-sts.txt"


@pytest.mark.lab
@pytest.mark.parametrize("scenario,kind", [
    ("mta-sts-good", "ok"), ("mta-sts-404", "status"), ("mta-sts-wrong-cert", "tls"),
    ("mta-sts-redirect", "redirect"), ("mta-sts-oversize", "too_big"),
])
def test_fetch_in_the_lab(lab, scenario, kind):
    from deliverck.net import http

    r = asyncio.run(http.fetch(_url(scenario), ca_file=lab.ca_file, connect_timeout=5, read_timeout=5))
    assert r.kind == kind, r
    if kind == "ok":
        assert mtasts.parse_policy(r.body).mode == "enforce"
    if kind == "redirect":
        assert r.status == 301 and r.location.startswith("https://www.")


@pytest.mark.lab
def test_fetch_without_the_lab_ca_is_a_tls_failure(lab):
    from deliverck.net import http

    r = asyncio.run(http.fetch(_url("mta-sts-good"), ca_file=None, connect_timeout=5, read_timeout=5))
    assert r.kind == "tls", r


def _run_check(lab, name: str):
    from deliverck.checks import _mta_sts, smtp, starttls
    from deliverck.config import Config
    from deliverck.registry import Check
    from deliverck.runner import run_audit
    from deliverck.target import parse_target

    config = Config(target=parse_target(f"{name}.test"), ca_file=Path(lab.ca_file))
    checks = [Check(m.CHECK, m.run, m.__name__) for m in (_mta_sts, smtp, starttls)]
    report = asyncio.run(run_audit(config, checks))
    return {r.id: r for r in report.checks}


def _scenario(name: str) -> dict:
    path = ROOT / "deliverck" / "lab" / "scenarios" / f"{name}.toml"
    return tomllib.loads(path.read_text(encoding="utf-8"))


MTA_STS_SCENARIOS = sorted(p.stem for p in (ROOT / "deliverck" / "lab" / "scenarios").glob("mta-sts-*.toml"))


@pytest.mark.lab
@pytest.mark.parametrize("name", MTA_STS_SCENARIOS)
def test_check_on_scenario(lab, name):
    results = _run_check(lab, name)
    result = results["mta_sts"]
    ids = {f.id for f in result.findings}
    expect = _scenario(name)["expect"]
    wanted = {f for f in expect.get("findings", []) if f.startswith("mta_sts.")}
    unwanted = {f for f in expect.get("absent", []) if f.startswith("mta_sts.")}
    assert wanted <= ids, (wanted - ids, result)
    assert not (unwanted & ids), (unwanted & ids, result)
    assert result.status.value == ("fail" if expect["verdict"] == "fail" else "pass"), result
