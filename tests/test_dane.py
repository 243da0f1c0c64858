"""DANE: TLSA matching (deliverck/records/tlsa.py) and the dane check's logic.

Unit tests run on certificates made here with cryptography; the lab tests
judge the lab peers' certificates against the TLSA records the lab publishes
(placeholders filled at lab start, see deliverck/lab/tlsa.py).
"""

from __future__ import annotations

import asyncio
import datetime as dt
import types

import dns.rdata
import dns.rdataclass
import dns.rdatatype
import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.hazmat.primitives.serialization import Encoding
from cryptography.x509.oid import NameOID

from deliverck.records import tlsa as dane
from deliverck.records.tlsa import Tlsa

NOW = dt.datetime.now(dt.UTC).replace(microsecond=0)   # the check judges at the real now
DAY = dt.timedelta(days=1)
HOST = "mx.example.test"


def _cert(subject: str, key, issuer_name: str, issuer_key, *, ca: bool, names=(), start=NOW - 10 * DAY,
          end=NOW + 80 * DAY) -> x509.Certificate:
    b = (x509.CertificateBuilder()
         .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, subject)]))
         .issuer_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, issuer_name)]))
         .public_key(key.public_key()).serial_number(x509.random_serial_number())
         .not_valid_before(start).not_valid_after(end)
         .add_extension(x509.BasicConstraints(ca=ca, path_length=None), critical=True))
    if names:
        b = b.add_extension(x509.SubjectAlternativeName([x509.DNSName(n) for n in names]), critical=False)
    return b.sign(issuer_key, hashes.SHA256())


def _key():
    return ec.generate_private_key(ec.SECP256R1())


@pytest.fixture(scope="module")
def pki():
    ca_key, int_key, leaf_key, other_key = _key(), _key(), _key(), _key()
    ca = _cert("Test Root", ca_key, "Test Root", ca_key, ca=True)
    inter = _cert("Test Intermediate", int_key, "Test Root", ca_key, ca=True)
    leaf = _cert(HOST, leaf_key, "Test Intermediate", int_key, ca=False, names=(HOST,))
    other_leaf = _cert("other.example.test", other_key, "Test Intermediate", int_key, ca=False,
                       names=("other.example.test",))
    expired = _cert(HOST, leaf_key, "Test Intermediate", int_key, ca=False, names=(HOST,),
                    start=NOW - 100 * DAY, end=NOW - 2 * DAY)
    foreign_ca_key = _key()
    foreign_ca = _cert("Foreign Root", foreign_ca_key, "Foreign Root", foreign_ca_key, ca=True)
    der = lambda c: c.public_bytes(Encoding.DER)  # noqa: E731
    return types.SimpleNamespace(
        ca=ca, inter=inter, leaf=leaf, other=other_leaf, expired=expired, foreign_ca=foreign_ca,
        chain=(der(leaf), der(inter), der(ca)),
        chain_no_root=(der(leaf), der(inter)),
        other_chain=(der(other_leaf), der(inter), der(ca)),
        expired_chain=(der(expired), der(inter), der(ca)),
        leaf_only=(der(leaf),),
    )


# ---------------------------------------------------------------- records


def test_parse_and_text_round_trip():
    r = Tlsa.parse("3 1 1 " + "ab" * 32)
    assert (r.usage, r.selector, r.mtype, r.data) == (3, 1, 1, b"\xab" * 32)
    assert Tlsa.parse(r.text()) == r
    assert r.usable and r.short().endswith("...")
    with pytest.raises(ValueError):
        Tlsa.parse("3 1")


def test_from_dnspython_rdata():
    rd = dns.rdata.from_text(dns.rdataclass.IN, dns.rdatatype.TLSA, "2 0 1 " + "00" * 32)
    assert Tlsa.from_rdata(rd) == Tlsa(2, 0, 1, bytes(32))


@pytest.mark.parametrize("usage,usable", [(0, False), (1, False), (2, True), (3, True), (4, False)])
def test_only_dane_usages_are_usable_for_smtp(usage, usable):
    r = Tlsa(usage, 1, 1, bytes(32))
    assert r.usable is usable
    if usage in (0, 1):
        assert "not used for SMTP" in r.why_unusable


@pytest.mark.parametrize("sel,mt,length,usable", [(1, 1, 31, False), (1, 2, 64, True), (1, 2, 32, False),
                                                  (2, 1, 32, False), (1, 3, 32, False), (0, 0, 5, True)])
def test_unknown_selectors_matching_types_and_bad_lengths_are_unusable(sel, mt, length, usable):
    assert Tlsa(3, sel, mt, bytes(length)).usable is usable


@pytest.mark.parametrize("selector", [0, 1])
@pytest.mark.parametrize("mtype", [0, 1, 2])
def test_association_data_for_every_selector_and_matching_type(pki, selector, mtype):
    import hashlib

    from cryptography.hazmat.primitives.serialization import PublicFormat
    raw = (pki.leaf.public_bytes(Encoding.DER) if selector == 0 else
           pki.leaf.public_key().public_bytes(Encoding.DER, PublicFormat.SubjectPublicKeyInfo))
    want = {0: raw, 1: hashlib.sha256(raw).digest(), 2: hashlib.sha512(raw).digest()}[mtype]
    assert dane.association(pki.leaf, selector, mtype) == want
    assert dane.association(pki.leaf.public_bytes(Encoding.DER), selector, mtype) == want
    rec = dane.record_for(pki.leaf, 3, selector, mtype)
    assert dane.matches(rec, pki.leaf) and not dane.matches(rec, pki.other)


# ---------------------------------------------------------------- DANE-EE


@pytest.mark.parametrize("selector", [0, 1])
@pytest.mark.parametrize("mtype", [0, 1, 2])
def test_dane_ee_matches_the_leaf(pki, selector, mtype):
    v = dane.verify([dane.record_for(pki.leaf, 3, selector, mtype)], pki.chain, (HOST,), now=NOW)
    assert v.ok and v.status == dane.MATCHED and "DANE-EE" in v.detail


def test_dane_ee_ignores_names_and_dates(pki):
    # The expired leaf has the same key: 3 1 1 still matches; a wrong reference name does not matter.
    rec = dane.record_for(pki.leaf, 3, 1, 1)
    assert dane.verify([rec], pki.expired_chain, ("not-the-host.test",), now=NOW).ok


def test_dane_ee_does_not_match_an_intermediate(pki):
    rec = dane.record_for(pki.inter, 3, 1, 1)
    assert dane.verify([rec], pki.chain, (HOST,), now=NOW).status == dane.NO_MATCH


def test_mismatch(pki):
    v = dane.verify([dane.record_for(pki.other, 3, 1, 1)], pki.chain, (HOST,), now=NOW)
    assert not v.ok and v.status == dane.NO_MATCH and "1 usable record" in v.detail


def test_one_matching_record_of_several_is_enough(pki):
    recs = [dane.record_for(pki.other, 3, 1, 1), Tlsa(1, 1, 1, bytes(32)), dane.record_for(pki.leaf, 3, 0, 2)]
    assert dane.verify(recs, pki.chain, (HOST,), now=NOW).ok


# ---------------------------------------------------------------- DANE-TA


@pytest.mark.parametrize("anchor", ["inter", "ca"])
@pytest.mark.parametrize("selector,mtype", [(0, 1), (1, 1), (0, 2), (1, 0)])
def test_dane_ta_anchor_in_the_chain(pki, anchor, selector, mtype):
    rec = dane.record_for(getattr(pki, anchor), 2, selector, mtype)
    v = dane.verify([rec], pki.chain, (HOST,), now=NOW)
    assert v.ok and "DANE-TA" in v.detail


def test_dane_ta_anchor_must_be_presented_unless_the_record_is_the_full_cert(pki):
    assert dane.verify([dane.record_for(pki.ca, 2, 1, 1)], pki.chain_no_root, (HOST,), now=NOW).status \
        == dane.NO_MATCH
    assert dane.verify([dane.record_for(pki.ca, 2, 0, 0)], pki.chain_no_root, (HOST,), now=NOW).ok


def test_dane_ta_the_leaf_must_chain_to_the_anchor(pki):
    # A foreign CA sent along in the chain, pinned by the record: the leaf is not signed by it.
    der = lambda c: c.public_bytes(Encoding.DER)  # noqa: E731
    chain = (der(pki.leaf), der(pki.foreign_ca))
    assert dane.verify([dane.record_for(pki.foreign_ca, 2, 1, 1)], chain, (HOST,), now=NOW).status == dane.NO_MATCH


def test_dane_ta_checks_the_host_name(pki):
    rec = dane.record_for(pki.ca, 2, 1, 1)
    v = dane.verify([rec], pki.other_chain, (HOST,), now=NOW)
    assert v.status == dane.TA_HOST_MISMATCH and v.names == ("other.example.test",) and v.record == rec
    # Any reference identifier will do (RFC 7672 3.2.2: the CNAME-expanded name too).
    assert dane.verify([rec], pki.other_chain, (HOST, "other.example.test"), now=NOW).ok


def test_dane_ta_checks_the_dates(pki):
    v = dane.verify([dane.record_for(pki.ca, 2, 1, 1)], pki.expired_chain, (HOST,), now=NOW)
    assert v.status == dane.TA_EXPIRED and "the leaf" in v.detail


def test_dane_ta_does_not_match_the_leaf_itself(pki):
    # Usage 2 pins an anchor, not the end-entity certificate.
    assert dane.verify([dane.record_for(pki.leaf, 2, 1, 1)], pki.chain, (HOST,), now=NOW).status == dane.NO_MATCH


def test_a_full_match_beats_a_partial_one(pki):
    recs = [dane.record_for(pki.ca, 2, 1, 1), dane.record_for(pki.other, 3, 1, 1)]
    assert dane.verify(recs, pki.other_chain, ("other.example.test",), now=NOW).ok


# ---------------------------------------------------------------- unusable, empty, rollover


def test_only_pkix_usages_is_no_usable(pki):
    recs = [dane.record_for(pki.leaf, 1, 1, 1), dane.record_for(pki.ca, 0, 1, 1)]
    v = dane.verify(recs, pki.chain, (HOST,), now=NOW)
    assert v.status == dane.NO_USABLE and "usage 0" in v.detail and "usage 1" in v.detail


def test_no_chain(pki):
    assert dane.verify([dane.record_for(pki.leaf, 3, 1, 1)], (), (HOST,), now=NOW).status == dane.NO_CHAIN
    assert dane.verify([dane.record_for(pki.leaf, 3, 1, 1)], (b"garbage",), (HOST,), now=NOW).status \
        == dane.NO_CHAIN


def test_rollover(pki):
    one = dane.record_for(pki.leaf, 3, 1, 1)
    assert not dane.rollover_ready([one])
    assert not dane.rollover_ready([one, Tlsa(1, 1, 1, bytes(32))])          # the other is unusable
    assert dane.rollover_ready([one, dane.record_for(pki.other, 3, 1, 1)])  # current + next
    assert dane.rollover_ready([dane.record_for(pki.ca, 2, 1, 1)])           # an anchor outlives leaf keys


# ---------------------------------------------------------------- the check, on a stand-in context


def _tlsa_answer(name, recs, *, ad=True, outcome="ok"):
    from deliverck.net.dns import DnsAnswer, Outcome
    rds = tuple(dns.rdata.from_text(dns.rdataclass.IN, dns.rdatatype.TLSA, r.text()) for r in recs)
    return DnsAnswer(name, "TLSA", Outcome(outcome), rds if outcome == "ok" else (), authenticated=ad)


def _addr_answer(name, ip, *, ad=True, cname=""):
    from deliverck.net.dns import DnsAnswer, Outcome
    rds = (dns.rdata.from_text(dns.rdataclass.IN, dns.rdatatype.A, ip),)
    return DnsAnswer(name, "A", Outcome.OK, rds, canonical_name=cname or name, authenticated=ad)


class DaneCtx:
    """Just enough of CheckContext for the dane check: addresses, TLSA answers, SMTP sessions.

    DNSSEC comes from the AD bit of the answers, and from the own validations and
    suffix views a test sets; any other is unavailable, as with a resolver that
    cannot be asked (the check must then fall back, never fail)."""

    from deliverck.context import Context
    smtp_sessions = Context.smtp_sessions
    greeted_sessions = Context.greeted_sessions

    def __init__(self, host, ip, tlsa, session, *, addr_ad=True, cname=""):
        from deliverck.context import HostAddresses, MailAddress
        from deliverck.net.dns import DnsAnswer, Outcome
        self.config = types.SimpleNamespace()
        self.target = types.SimpleNamespace(is_ip=False, name="example.test", label="example.test")
        self.tlsa = tlsa                       # name -> DnsAnswer
        self.asked = []
        self.validations = {}                  # (name, rdtype) -> deliverck's own Validation
        self.suffix_views = {}                 # name -> the resolver's view of its public suffix
        self.ma = MailAddress(ip, (host,), ("mx",))
        self.session = session
        self.hosts = {host: HostAddresses(host, _addr_answer(host, ip, ad=addr_ad, cname=cname),
                                          DnsAnswer(host, "AAAA", Outcome.NODATA, authenticated=addr_ad))}

    async def mx(self):
        return None

    async def addresses(self, name):
        return self.hosts[name]

    async def dns(self, name, rdtype):
        from deliverck.net.dns import DnsAnswer, Outcome
        self.asked.append((name, rdtype))
        return self.tlsa.get(name) or DnsAnswer(name, rdtype, Outcome.NXDOMAIN, authenticated=True)

    async def smtp_targets(self):
        return (self.ma,)

    def zone_file_reason(self, names, check):
        return ""                              # no --zone-file

    async def dnssec_validation(self, name, rdtype):
        if (name, rdtype) in self.validations:
            return self.validations[(name, rdtype)]
        raise OSError("no own DNSSEC validation in this stand-in")

    async def suffix_view(self, name):
        if name in self.suffix_views:
            return self.suffix_views[name]
        raise OSError("no resolver to ask in this stand-in")

    async def smtp_session(self, ma, port=25):
        return self.session


def _session(chain=(), *, starttls=True, error=""):
    from deliverck.net.smtp import Outcome, SmtpSession, TlsFacts
    return SmtpSession("192.0.2.1", 25, HOST, Outcome.OK, extensions=("STARTTLS",) if starttls else (),
                       tls=TlsFacts("TLSv1.3", "TLS_AES_128_GCM_SHA256", tuple(chain), error) if starttls else None)


def _run(ctx):
    from deliverck.checks import dane as _dane
    return asyncio.run(_dane.run(ctx))


def _ids(found):
    return sorted(f.id for f in found)


Q = f"_25._tcp.{HOST}"


def test_check_matched_and_rollover(pki):
    ctx = DaneCtx(HOST, "192.0.2.1", {Q: _tlsa_answer(Q, [dane.record_for(pki.leaf, 3, 1, 1)])},
                  _session(pki.chain))
    assert _ids(_run(ctx)) == ["dane.matched", "dane.no_rollover"]
    ctx = DaneCtx(HOST, "192.0.2.1", {Q: _tlsa_answer(Q, [dane.record_for(pki.leaf, 3, 1, 1),
                                                           dane.record_for(pki.other, 3, 1, 1)])},
                  _session(pki.chain))
    assert _ids(_run(ctx)) == ["dane.matched"]


def test_check_not_used():
    ctx = DaneCtx(HOST, "192.0.2.1", {}, _session())
    assert _ids(_run(ctx)) == ["dane.not_used"]


def test_check_no_starttls_mismatch_bogus_insecure_unusable(pki):
    two = [dane.record_for(pki.other, 3, 1, 1), dane.record_for(pki.other, 3, 1, 2)]
    assert _ids(_run(DaneCtx(HOST, "192.0.2.1", {Q: _tlsa_answer(Q, two)}, _session(starttls=False)))) \
        == ["dane.no_starttls"]
    assert _ids(_run(DaneCtx(HOST, "192.0.2.1", {Q: _tlsa_answer(Q, two)}, _session(pki.chain)))) \
        == ["dane.no_match"]
    assert _ids(_run(DaneCtx(HOST, "192.0.2.1", {Q: _tlsa_answer(Q, [], outcome="servfail")},
                             _session(pki.chain)))) == ["dane.tlsa_bogus"]
    assert _ids(_run(DaneCtx(HOST, "192.0.2.1", {Q: _tlsa_answer(Q, two, ad=False)}, _session(pki.chain)))) \
        == ["dane.insecure"]
    found = _run(DaneCtx(HOST, "192.0.2.1", {Q: _tlsa_answer(Q, two)}, _session(pki.chain), addr_ad=False))
    assert _ids(found) == ["dane.insecure"] and "address records" in found[0].summary
    found = _run(DaneCtx(HOST, "192.0.2.1", {Q: _tlsa_answer(Q, [dane.record_for(pki.leaf, 1, 1, 1)])},
                         _session(pki.chain)))
    assert _ids(found) == ["dane.unusable_usage"]


def test_check_dane_ta_findings(pki):
    ta = [dane.record_for(pki.ca, 2, 1, 1)]
    assert _ids(_run(DaneCtx(HOST, "192.0.2.1", {Q: _tlsa_answer(Q, ta)}, _session(pki.chain)))) \
        == ["dane.matched"]
    assert _ids(_run(DaneCtx(HOST, "192.0.2.1", {Q: _tlsa_answer(Q, ta)}, _session(pki.other_chain)))) \
        == ["dane.ta_host_mismatch"]
    assert _ids(_run(DaneCtx(HOST, "192.0.2.1", {Q: _tlsa_answer(Q, ta)}, _session(pki.expired_chain)))) \
        == ["dane.ta_cert_expired"]


def test_check_cname_rule(pki):
    """RFC 7672 2.2.2: the TLSA of the CNAME target first, then the original name's."""
    target = "real.hoster.test"
    qt = f"_25._tcp.{target}"
    good = [dane.record_for(pki.leaf, 3, 1, 1), dane.record_for(pki.other, 3, 1, 1)]
    bad = [dane.record_for(pki.other, 3, 1, 1), dane.record_for(pki.other, 3, 1, 2)]
    # Both published: the target's wins.
    ctx = DaneCtx(HOST, "192.0.2.1", {qt: _tlsa_answer(qt, good), Q: _tlsa_answer(Q, bad)}, _session(pki.chain),
                  cname=target)
    found = _run(ctx)
    assert _ids(found) == ["dane.matched"] and found[0].args["qname"] == qt
    assert ctx.asked[0] == (qt, "TLSA")
    # Only the original name's: used after the target's comes back empty.
    ctx = DaneCtx(HOST, "192.0.2.1", {Q: _tlsa_answer(Q, bad)}, _session(pki.chain), cname=target)
    found = _run(ctx)
    assert _ids(found) == ["dane.no_match"] and found[0].args["qname"] == Q
    assert [q for q, _ in ctx.asked] == [qt, Q]


def test_check_declares_everything_it_emits_and_predicts_catalog_entries():
    import tomllib
    from pathlib import Path

    from deliverck.checks import dane as _dane
    from deliverck.ndr import catalog as catalog_mod
    root = Path(catalog_mod.__file__).parent
    data = tomllib.loads((root / "catalog.toml").read_text(encoding="utf-8"))
    for p in sorted((root / "catalog").iterdir()):
        if p.name.endswith(".toml"):
            data.setdefault("entry", []).extend(tomllib.loads(p.read_text(encoding="utf-8")).get("entry", []))
    cat = catalog_mod.from_mapping(data)
    assert cat.problems() == []
    keys = {e.key for e in cat.entries}
    ids = {f.id for f in _dane.CHECK.findings}
    for f in _dane.CHECK.findings:
        assert set(f.ndr) <= keys, f.id
    for e in cat.entries:
        for fid in e.findings:
            if fid.startswith("dane."):
                assert fid in ids, (e.key, fid)
    assert _dane.CHECK.id == "dane" and _dane.CHECK.order == 55


# ---------------------------------------------------------------- the lab

LAB_EXPECT = {
    "good-dane": {"dane.matched"},
    "dane-mismatch": {"dane.no_match"},
    "dane-ta": {"dane.matched"},
    "dane-insecure": {"dane.insecure"},
    "dane-no-starttls": {"dane.no_starttls"},
    "dane-unusable-usage": {"dane.unusable_usage"},
    "dane-no-rollover": {"dane.matched", "dane.no_rollover"},
    "dane-bogus": {"dane.tlsa_bogus"},
}


def _lab_tlsa(name: str):
    """The TLSA RRset and the AD bit, asked of the lab's validating resolver with AD=1 (RFC 6840 5.7)."""
    import dns.flags
    import dns.message
    import dns.query
    q = dns.message.make_query(name, "TLSA", use_edns=0, payload=1232)
    q.flags = dns.flags.RD | dns.flags.AD
    r = dns.query.udp(q, "127.0.0.1", timeout=3)
    recs = [Tlsa.from_rdata(rd) for rr in r.answer if rr.rdtype == dns.rdatatype.TLSA for rd in rr]
    return recs, bool(r.flags & dns.flags.AD)


@pytest.mark.parametrize("scenario", sorted(set(LAB_EXPECT) - {"dane-bogus"}))
def test_lab_tlsa_placeholders_hash_the_issued_certificates(lab, scenario):
    from pathlib import Path
    s = next(x for x in lab.scenarios if x.name == scenario)
    host = f"mx.{s.domain}"
    recs, ad = _lab_tlsa(f"_25._tcp.{host}")
    assert recs, "no TLSA published"
    assert ad is s.signed
    peer = s.smtp[0]
    if peer.cert_file is None:                    # no TLS: the records name unused keys
        assert scenario == "dane-no-starttls"
        return
    chain = [c.public_bytes(Encoding.DER) for c in x509.load_pem_x509_certificates(Path(peer.cert_file).read_bytes())]
    v = dane.verify(recs, chain, (host,))
    want = {"dane-mismatch": dane.NO_MATCH, "dane-unusable-usage": dane.NO_USABLE}.get(scenario, dane.MATCHED)
    assert v.status == want, v.detail
    if scenario == "dane-ta":
        assert len(chain) == 2 and v.record.usage == 2     # the peer sends the lab CA along


@pytest.mark.parametrize("scenario", sorted(LAB_EXPECT))
def test_lab_check(lab, monkeypatch, scenario):
    """The check against the real context: DNS through the lab's unbound, the chain from the real SMTP probe."""
    from pathlib import Path

    from deliverck.checks import dane as _dane
    from deliverck.config import Config
    from deliverck.context import Context
    from deliverck.net.dns import DnsClient
    from deliverck.target import parse_target

    # No trust anchor given: security comes from the lab unbound's AD bit, as in a CLI run.
    monkeypatch.delenv("DELIVERCK_TRUST_ANCHOR", raising=False)
    s = next(x for x in lab.scenarios if x.name == scenario)

    async def go():
        ctx = Context(Config(target=parse_target(s.domain), ca_file=Path(lab.ca_file)), DnsClient(timeout=3))
        try:
            return await _dane.run(ctx)
        finally:
            await ctx.close()

    found = asyncio.run(go())
    assert {f.id for f in found} == LAB_EXPECT[scenario], [f.summary for f in found]
    for f in found:
        _dane.CHECK.spec(f.id)


def test_lab_placeholders_parse_as_tlsa_before_they_are_filled():
    import dns.zone

    from deliverck.lab import tlsa
    text = tlsa.mark("_25._tcp.mx TLSA {tlsa:3 1 1}\n_25._tcp.mx TLSA {tlsa:3 1 2 other}\n"
                     "_25._tcp.mx TLSA {tlsa:2 0 0}\n")
    z = dns.zone.from_text("$TTL 300\n" + text, origin="x.test.", relativize=False, check_origin=False)
    rds = z.find_rdataset("_25._tcp.mx.x.test.", "TLSA")
    assert len(rds) == 3 and all(bytes(rd.cert).startswith(tlsa.MARKER) for rd in rds)
    assert tlsa.mark("mx A 192.0.2.1") == "mx A 192.0.2.1"


def _above_validation(name):
    from deliverck.net import dnssec as _dnssec
    return _dnssec.Validation(name, "TLSA", "bogus", "root: the root zone has no DNSKEY here", ".", (), "ok",
                              ".", name + ".")


@pytest.mark.parametrize("suffix_ad,expect", [(False, "dane.cannot_validate"), (True, "dane.insecure")])
def test_check_chain_broken_above_is_not_the_domains_fault(pki, suffix_ad, expect):
    """No AD bit and own validation broken at the root (a stripping forwarder, a private root): DANE could
    not be judged; but a resolver that validates the suffix and sets no AD means the TLSA is unsigned."""
    from deliverck.net import dnssec as _dnssec
    two = [dane.record_for(pki.other, 3, 1, 1), dane.record_for(pki.other, 3, 1, 2)]
    ctx = DaneCtx(HOST, "192.0.2.1", {Q: _tlsa_answer(Q, two, ad=False)}, _session(pki.chain))
    ctx.validations[(Q, "TLSA")] = _above_validation(Q)
    ctx.suffix_views[Q] = _dnssec.ResolverView("ok", suffix_ad, "192.0.2.1:53")
    found = _run(ctx)
    assert _ids(found) == [expect]
    if expect == "dane.cannot_validate":
        assert found[0].inconclusive and found[0].owner.value == "network" and "--trust-anchor" in found[0].fix


def test_check_servfail_with_the_chain_broken_above_is_not_bogus(pki):
    from deliverck.net import dnssec as _dnssec
    ctx = DaneCtx(HOST, "192.0.2.1", {Q: _tlsa_answer(Q, [], outcome="servfail")}, _session(pki.chain),
                  addr_ad=False)
    ctx.validations[(Q, "TLSA")] = _above_validation(Q)
    for rdtype in ("A", "AAAA"):       # the host's addresses cannot be validated from here either
        ctx.validations[(HOST, rdtype)] = _above_validation(HOST)
    ctx.suffix_views[Q] = _dnssec.ResolverView("ok", False, "192.0.2.1:53")
    ctx.suffix_views[HOST] = _dnssec.ResolverView("ok", False, "192.0.2.1:53")
    assert _ids(_run(ctx)) == ["dane.cannot_validate"]


def test_check_servfail_for_tlsa_of_an_unsigned_host_is_no_failure(pki):
    """Issue 14: DANE senders never ask for TLSA when the host's addresses are insecure (RFC 7672
    2.2.2), so a SERVFAIL there (a broken zone, or a resolver under load) delays nobody."""
    from deliverck.net import dnssec as _dnssec
    ctx = DaneCtx(HOST, "192.0.2.1", {Q: _tlsa_answer(Q, [], outcome="servfail")}, _session(pki.chain),
                  addr_ad=False)
    for rdtype in ("A", "AAAA"):
        ctx.validations[(HOST, rdtype)] = _dnssec.Validation(
            HOST, rdtype, "insecure", "no DS for x.test: unsigned delegation", "x.test")
    found = _run(ctx)
    assert _ids(found) == ["dane.insecure"]
    assert not found[0].inconclusive and found[0].severity.to_text() == "notice"
    assert "never look up TLSA" in found[0].summary
