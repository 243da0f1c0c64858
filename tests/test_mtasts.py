"""MTA-STS and TLS-RPT: parsers, the HTTPS fetch against the lab, and the check (imported directly
until it is registered)."""

from __future__ import annotations

import asyncio
import tomllib
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from deliverck.records import mtasts
from deliverck.records.mtasts import MtaStsError

ROOT = Path(__file__).resolve().parent.parent


def _check_module():
    """The check, registered (checks/mta_sts.py) or not yet (checks/_mta_sts.py)."""
    import importlib

    try:
        return importlib.import_module("deliverck.checks.mta_sts")
    except ModuleNotFoundError:
        return importlib.import_module("deliverck.checks._mta_sts")

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


@pytest.mark.parametrize("text,words", [
    # DMARC's "!size" suffix copied into TLS-RPT: a URI no reporter can use
    ("v=TLSRPTv1; rua=mailto:tls@example.com!10m", "size limit (!10m), which is DMARC's syntax"),
    ("v=TLSRPTv1; rua=mailto:a@example.com,,mailto:b@example.com", "empty URI"),
    # RFC 8460 3: tlsrpt-ext-value = 1*(%x21-3A / %x3C / %x3E-7E)
    ("v=TLSRPTv1; rua=mailto:a@example.com; ext=", "the value of ext is empty"),
    ("v=TLSRPTv1; rua=mailto:a@example.com; ext=a b", "the value of ext"),
])
def test_tlsrpt_errors_say_what_is_wrong(text, words):
    with pytest.raises(MtaStsError) as e:
        mtasts.parse_tlsrpt_record(text)
    assert words in str(e.value)


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
    _mta_sts = _check_module()

    assert _mta_sts.CHECK.id == "mta_sts" and _mta_sts.CHECK.order == 58
    ids = [f.id for f in _mta_sts.CHECK.findings]
    assert len(ids) == len(set(ids)) and all(i.startswith("mta_sts.") for i in ids)


def _pending_catalog() -> Path:
    base = ROOT / "deliverck" / "ndr" / "catalog"
    return base / "mta_sts.toml" if (base / "mta_sts.toml").exists() else base / "mta_sts.toml.pending"


def test_catalog_entries_are_valid_and_name_declared_findings():
    _mta_sts = _check_module()
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


def _policy_address(lab, scenario: str) -> str:
    from deliverck.lab import https_peer

    return next(s.address for s in https_peer.load_specs() if s.scenario == scenario)


def test_fetch_from_the_resolved_addresses_with_the_host_in_sni(lab):
    """The policy is fetched from the addresses the run resolved, the host name in SNI and Host (the
    certificate names only the host); an address with no route is skipped for the next one."""
    from deliverck.net import http

    good = _policy_address(lab, "mta-sts-good")
    r = asyncio.run(http.fetch(_url("mta-sts-good"), ca_file=lab.ca_file, addresses=(good,),
                               connect_timeout=5, read_timeout=5))
    assert (r.kind, r.address) == ("ok", good), r
    assert mtasts.parse_policy(r.body).mode == "enforce"
    # 198.51.100.254 is no lab address: inside the namespace there is no route to it
    r = asyncio.run(http.fetch(_url("mta-sts-good"), ca_file=lab.ca_file, addresses=("198.51.100.254", good),
                               connect_timeout=5, read_timeout=5))
    assert (r.kind, r.address) == ("ok", good), r
    r = asyncio.run(http.fetch(_url("mta-sts-good"), ca_file=lab.ca_file, addresses=("198.51.100.254",),
                               connect_timeout=5, read_timeout=5))
    assert r.kind == "no_route" and "no route" in r.error, r


@pytest.mark.parametrize("scenario,kind,words", [
    ("mta-sts-refused", "connect", "refused"),
    ("mta-sts-filtered", "connect_timeout", "no answer to the connection"),
])
def test_fetch_tells_a_refusal_from_silence(lab, scenario, kind, words):
    from deliverck.net import http

    address = _policy_address(lab, scenario)
    r = asyncio.run(http.fetch(_url(scenario), ca_file=lab.ca_file, addresses=(address,),
                               connect_timeout=1, read_timeout=1))
    assert r.kind == kind and words in r.error and r.detail, r
    assert "Errno" not in r.error                        # plain words; the library's text is in `detail`


def test_fetch_without_the_lab_ca_is_a_tls_failure(lab):
    from deliverck.net import http

    r = asyncio.run(http.fetch(_url("mta-sts-good"), ca_file=None, connect_timeout=5, read_timeout=5))
    assert r.kind == "tls", r
    assert r.error.startswith("the certificate is not valid") and "SSL" not in r.error, r


def _run_check(lab, name: str):
    from deliverck.checks import smtp, starttls
    _mta_sts = _check_module()
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
    assert result.status.value == {"fail": "fail", "incomplete": "error"}.get(expect["verdict"], "pass"), result


# --- the check's logic, on a stand-in context (no network) ---------------------------------------

class _Ctx:
    """Just enough of deliverck.context.CheckContext for the mta_sts check."""

    from deliverck.context import Context
    smtp_sessions = Context.smtp_sessions
    greeted_sessions = Context.greeted_sessions

    def __init__(self, domain, txt, policy_ip="203.0.113.99", mx_hosts=(), tlsa=()):
        import types
        self.config = types.SimpleNamespace(ca_file=None, smtp_timeout=5.0, probe_private=False)
        self.target = types.SimpleNamespace(is_ip=False, name=domain)
        self.txt = txt
        self.tlsa = set(tlsa)             # names with a TLSA RRset
        self.asked: list[tuple[str, str]] = []
        self.policy_ip = policy_ip
        self.mx_hosts = mx_hosts

    async def dns(self, name, rdtype):
        import dns.rdata

        from deliverck.net.dns import DnsAnswer, Outcome
        self.asked.append((name, rdtype))
        if rdtype == "TLSA":
            if name not in self.tlsa:
                return DnsAnswer(name, rdtype, Outcome.NXDOMAIN)
            return DnsAnswer(name, rdtype, Outcome.OK, (dns.rdata.from_text("IN", "TLSA", "3 1 1 " + "ab" * 32),))
        values = self.txt.get(name)
        if values is None:
            return DnsAnswer(name, rdtype, Outcome.NXDOMAIN)
        if values == "servfail":
            return DnsAnswer(name, rdtype, Outcome.SERVFAIL, detail="SERVFAIL")
        rds = tuple(dns.rdata.from_text("IN", "TXT", '"' + v + '"') for v in values)
        return DnsAnswer(name, rdtype, Outcome.OK, rds)

    async def addresses(self, name):
        return _host(name, self.policy_ip)

    async def mx(self):
        from deliverck.context import MxFacts, MxHost
        from deliverck.net.dns import DnsAnswer, Outcome
        hosts = tuple(MxHost(10, h, _host(h, "")) for h in self.mx_hosts)
        return MxFacts(self.target.name, DnsAnswer(self.target.name, "MX", Outcome.OK), _host(self.target.name, ""),
                       tuple((10, h) for h in self.mx_hosts), hosts)

    async def smtp_targets(self):
        return ()

    async def https(self, url, addresses, timeout):
        from deliverck.net import http  # looked up per call: _check() replaces http.fetch
        return await http.fetch(url, addresses=tuple(addresses), connect_timeout=timeout, read_timeout=timeout)


def _host(name, ip):
    import dns.rdata

    from deliverck.context import HostAddresses
    from deliverck.net.dns import DnsAnswer, Outcome
    a = (DnsAnswer(name, "A", Outcome.OK, (dns.rdata.from_text("IN", "A", ip),)) if ip
         else DnsAnswer(name, "A", Outcome.NODATA))
    return HostAddresses(name, a, DnsAnswer(name, "AAAA", Outcome.NODATA))


def _check(monkeypatch, ctx, body=None, result=None):
    _mta_sts = _check_module()
    from deliverck.net import http

    async def fake_fetch(url, **kw):
        if result is not None:
            return result
        return http.HttpResult(url, http.OK, 200, "text/plain", body=body.encode())

    monkeypatch.setattr(_mta_sts.http, "fetch", fake_fetch)
    findings = asyncio.run(_mta_sts.run(ctx))
    declared = {f.id for f in _mta_sts.CHECK.findings}
    assert {f.id for f in findings} <= declared
    return findings


D = "example.test"
REC = {f"_mta-sts.{D}": ["v=STSv1; id=1"], f"_smtp._tls.{D}": [f"v=TLSRPTv1; rua=mailto:r@{D}"]}


def test_check_not_used(monkeypatch):
    assert [f.id for f in _check(monkeypatch, _Ctx(D, {}))] == ["mta_sts.not_used"]


def test_check_record_problems(monkeypatch):
    ids = {f.id for f in _check(monkeypatch, _Ctx(D, {f"_mta-sts.{D}": ["v=STSv1; id=1", "v=STSv1; id=2"]}),
                                body="version: STSv1\nmode: none\nmax_age: 86400\n")}
    assert {"mta_sts.record_multiple", "mta_sts.mode_none", "mta_sts.tlsrpt_missing"} <= ids
    ids = {f.id for f in _check(monkeypatch, _Ctx(D, {f"_mta-sts.{D}": ["v=STSv1; idd=1"]}),
                                body="version: STSv1\nmode: none\nmax_age: 86400\n")}
    assert "mta_sts.record_syntax" in ids
    ids = {f.id for f in _check(monkeypatch, _Ctx(D, {f"_mta-sts.{D}": "servfail"}))}
    assert ids == {"mta_sts.record_lookup_failed"}


def test_check_wildcard_matches_one_label_only_in_enforce(monkeypatch):
    policy = f"version: STSv1\nmode: enforce\nmx: *.{D}\nmax_age: 3600\n"
    ctx = _Ctx(D, REC, mx_hosts=(f"mx1.{D}", f"a.b.{D}"))
    found = _check(monkeypatch, ctx, body=policy)
    ids = [f.id for f in found]
    assert "mta_sts.max_age_short" in ids and "mta_sts.tlsrpt_ok" in ids
    unmatched = [f for f in found if f.id == "mta_sts.mx_unmatched"]
    assert [f.subject for f in unmatched] == [f"a.b.{D}"]
    assert unmatched[0].severity.to_text() == "error"


def test_check_testing_mode_only_warns(monkeypatch):
    policy = f"version: STSv1\nmode: testing\nmx: mx1.{D}\nmax_age: 604800\n"
    found = _check(monkeypatch, _Ctx(D, REC, mx_hosts=(f"mx1.{D}", f"mx2.{D}")), body=policy)
    ids = [f.id for f in found]
    assert "mta_sts.mode_testing" in ids and "mta_sts.testing_mx_unmatched" in ids
    assert "mta_sts.mx_unmatched" not in ids
    assert max(f.severity for f in found).to_text() == "warning"


def test_check_no_mx_matched(monkeypatch):
    policy = "version: STSv1\nmode: enforce\nmx: mail.elsewhere.test\nmax_age: 604800\n"
    ids = [f.id for f in _check(monkeypatch, _Ctx(D, REC, mx_hosts=(f"mx1.{D}",)), body=policy)]
    assert "mta_sts.no_mx_matched" in ids and "mta_sts.mx_unmatched" in ids


def test_check_policy_host_private_or_missing(monkeypatch):
    ids = [f.id for f in _check(monkeypatch, _Ctx(D, REC, policy_ip="10.1.2.3"), body="")]
    assert "mta_sts.policy_host_private" in ids and "mta_sts.policy_ok" not in ids
    ids = [f.id for f in _check(monkeypatch, _Ctx(D, REC, policy_ip=""), body="")]
    assert "mta_sts.policy_host_no_address" in ids


@pytest.mark.parametrize("kind,fid", [
    ("connect", "mta_sts.fetch_failed"), ("timeout", "mta_sts.fetch_failed"), ("tls", "mta_sts.fetch_tls_invalid"),
    ("status", "mta_sts.fetch_status"), ("redirect", "mta_sts.fetch_redirect"), ("too_big", "mta_sts.fetch_too_big"),
    ("content_type", "mta_sts.fetch_content_type"),
])
def test_check_fetch_failures(monkeypatch, kind, fid):
    from deliverck.net import http

    r = http.HttpResult("https://mta-sts.example.test/.well-known/mta-sts.txt", kind, 404 if kind == "status" else 0,
                        "text/html", location="https://elsewhere.test/", error="boom")
    found = _check(monkeypatch, _Ctx(D, REC, mx_hosts=(f"mx1.{D}",)), result=r)
    hits = [f for f in found if f.id == fid]
    assert len(hits) == 1 and hits[0].severity.to_text() == "error"
    assert "no MTA-STS policy" in hits[0].summary and "cached" in hits[0].summary


RPT = f"_smtp._tls.{D}"


@pytest.mark.parametrize("txt,tlsa,expected", [
    # judged whenever published, MTA-STS or not (issue 13, RFC 8460 3)
    ({RPT: [f"v=TLSRPTv1; rua=mailto:r@{D}"]}, (), ["mta_sts.tlsrpt_ok"]),
    ({RPT: [f"v=TLSRPTv1; rua=r@{D}"]}, (), ["mta_sts.tlsrpt_syntax"]),
    ({RPT: [f"v=TLSRPTv1; rua=r@{D}"]}, (f"_25._tcp.mx1.{D}",), ["mta_sts.tlsrpt_syntax"]),
    ({RPT: [f"v=TLSRPTv1; rua=mailto:a@{D}", f"v=TLSRPTv1; rua=mailto:b@{D}"]}, (), ["mta_sts.tlsrpt_multiple"]),
    # senders discard a record that does not start with the exact version: it is reported, not "missing"
    ({RPT: [f"v=tlsrptv1; rua=mailto:r@{D}"]}, (), ["mta_sts.tlsrpt_syntax"]),
    ({RPT: [f"rua=mailto:r@{D}; v=TLSRPTv1"]}, (), ["mta_sts.tlsrpt_syntax"]),
    # TXT strings that are not TLS-RPT are ignored (RFC 8460 3)
    ({RPT: ["site-verification=abc", f"v=TLSRPTv1; rua=mailto:r@{D}"]}, (), ["mta_sts.tlsrpt_ok"]),
    ({RPT: ["site-verification=abc"]}, (), []),
    # missing: a notice only when DANE (or MTA-STS) is in use
    ({}, (), []),
    ({}, (f"_25._tcp.mx1.{D}",), ["mta_sts.tlsrpt_missing"]),
    ({RPT: ["site-verification=abc"]}, (f"_25._tcp.mx1.{D}",), ["mta_sts.tlsrpt_missing"]),
])
def test_tlsrpt_stands_on_its_own_without_mta_sts(monkeypatch, txt, tlsa, expected):
    ctx = _Ctx(D, txt, mx_hosts=(f"mx1.{D}",), tlsa=tlsa)
    found = _check(monkeypatch, ctx)
    assert found[0].id == "mta_sts.not_used"
    assert [f.id for f in found if f.id.startswith("mta_sts.tlsrpt")] == expected
    missing = [f for f in found if f.id == "mta_sts.tlsrpt_missing"]
    if missing:
        assert missing[0].severity.to_text() == "notice" and "uses DANE" in missing[0].summary
        assert any("TLSA" in e for e in missing[0].evidence)


def test_dane_is_only_looked_up_when_it_decides_something(monkeypatch):
    ctx = _Ctx(D, {}, mx_hosts=(f"mx1.{D}", f"mx2.{D}"))
    _check(monkeypatch, ctx)
    assert sorted(n for n, t in ctx.asked if t == "TLSA") == [f"_25._tcp.mx1.{D}", f"_25._tcp.mx2.{D}"]
    # a published record is judged as it is; MTA-STS alone makes a missing one matter: no TLSA lookups then
    ctx = _Ctx(D, {RPT: [f"v=TLSRPTv1; rua=mailto:r@{D}"]}, mx_hosts=(f"mx1.{D}", f"mx2.{D}"))
    _check(monkeypatch, ctx)
    ctx2 = _Ctx(D, {f"_mta-sts.{D}": ["v=STSv1; id=1"]}, mx_hosts=(f"mx1.{D}",))
    (f,) = [f for f in _check(monkeypatch, ctx2, body="version: STSv1\nmode: none\nmax_age: 86400\n")
            if f.id == "mta_sts.tlsrpt_missing"]
    assert "uses MTA-STS" in f.summary
    assert not [q for q in ctx.asked + ctx2.asked if q[1] == "TLSA"]


def test_tlsrpt_lookup_failure_is_could_not_check(monkeypatch):
    found = _check(monkeypatch, _Ctx(D, {RPT: "servfail"}, mx_hosts=(f"mx1.{D}",)))
    (f,) = [f for f in found if f.id.startswith("mta_sts.tlsrpt")]
    assert f.id == "mta_sts.tlsrpt_lookup_failed" and f.inconclusive
    # the _mta-sts lookup failing does not stop a published TLS-RPT record from being judged
    found = _check(monkeypatch, _Ctx(D, {f"_mta-sts.{D}": "servfail", RPT: [f"v=TLSRPTv1; rua=r@{D}"]}))
    assert [f.id for f in found] == ["mta_sts.record_lookup_failed", "mta_sts.tlsrpt_syntax"]


@pytest.mark.parametrize("kind", ["connect_timeout", "no_route", "error"])
def test_policy_fetch_that_proves_nothing_about_the_host_is_could_not_check(monkeypatch, kind):
    """Blame rule: no answer to the connection (or no route, or a local error) may be this machine's
    network; only a refusal, a TLS failure or an HTTP answer places the fault at the policy host."""
    from deliverck.net import http

    r = http.HttpResult("https://mta-sts.example.test/.well-known/mta-sts.txt", kind, error="no answer",
                        address="203.0.113.99")
    found = _check(monkeypatch, _Ctx(D, REC, mx_hosts=(f"mx1.{D}",)), result=r)
    (f,) = [f for f in found if f.id.startswith(("mta_sts.fetch", "mta_sts.policy"))]
    assert f.id == "mta_sts.policy_not_checked" and f.inconclusive and f.owner.value == "network"
    assert "says nothing about mta-sts.example.test" in f.summary


def test_policy_is_fetched_from_the_addresses_the_run_resolved(monkeypatch):
    _mta_sts = _check_module()
    seen = {}

    async def fake_fetch(url, **kw):
        from deliverck.net import http
        seen.update(kw)
        return http.HttpResult(url, http.OK, 200, "text/plain", body=b"version: STSv1\nmode: none\nmax_age: 86400\n")

    monkeypatch.setattr(_mta_sts.http, "fetch", fake_fetch)
    asyncio.run(_mta_sts.run(_Ctx(D, REC, policy_ip="203.0.113.99")))
    assert seen["addresses"] == ("203.0.113.99",)


# --- fetch limits without the network (httpx MockTransport) ----------------------------------------

def _mock(handler):
    import httpx

    from deliverck.net import http

    return asyncio.run(http.fetch("https://mta-sts.example.test/.well-known/mta-sts.txt",
                                  transport=httpx.MockTransport(handler)))


def test_fetch_streamed_body_over_the_limit():
    import httpx

    def handler(request):
        assert request.url.path == "/.well-known/mta-sts.txt"
        return httpx.Response(200, headers={"content-type": "text/plain"},
                              stream=httpx.ByteStream(b"x" * (70 * 1024)))
    r = _mock(handler)
    assert r.kind == "too_big", r


def test_fetch_content_type_and_params():
    import httpx

    assert _mock(lambda req: httpx.Response(200, headers={"content-type": "text/plain; charset=utf-8"},
                                            content=GOOD.encode())).ok
    assert _mock(lambda req: httpx.Response(200, headers={"content-type": "text/html"},
                                            content=b"<html>")).kind == "content_type"
    r = _mock(lambda req: httpx.Response(302, headers={"location": "https://x.test/"}))
    assert (r.kind, r.location) == ("redirect", "https://x.test/")


def test_lab_https_tables_are_valid():
    from deliverck.lab import https_peer
    from deliverck.lab.errors import LabUnavailable

    specs = {s.scenario: s for s in https_peer.load_specs()}
    assert set(MTA_STS_SCENARIOS) <= set(specs)
    assert (specs["mta-sts-filtered"].behaviour, specs["mta-sts-refused"].behaviour) == ("filtered", "refused")
    with pytest.raises(LabUnavailable):
        https_peer.spec_from_table("x", {"behaviour": "slow"}, "192.0.2.1")
    assert specs["mta-sts-wrong-cert"].cert_names() == ("www.mta-sts-wrong-cert.test",)
    assert len(https_peer.body_for(specs["mta-sts-oversize"])) > 64 * 1024
    assert https_peer.response(specs["mta-sts-good"], "/other").startswith(b"HTTP/1.1 404")
    with pytest.raises(LabUnavailable):
        https_peer.spec_from_table("x", {"cert": "nope"}, "192.0.2.1")
    with pytest.raises(LabUnavailable):
        https_peer.spec_from_table("x", {"colour": "red"}, "192.0.2.1")
