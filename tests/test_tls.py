"""Certificate analysis (deliverck.net.tls) against certificates made here.

A private CA, an intermediate and leaves for every case the starttls check must
tell apart; no network, no system trust store unless a test asks for it.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import ipaddress
import os
from functools import cache

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, ed25519, padding, rsa
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

from deliverck.errors import IncompleteError, UsageError
from deliverck.net import tls

NOW = dt.datetime(2026, 3, 1, 12, 0, tzinfo=dt.UTC)
DAY = dt.timedelta(days=1)
HOST = "mx1.example.com"


# --- a small certificate factory ----------------------------------------------

@cache
def rsa_key(bits: int = 2048, n: int = 0):
    return rsa.generate_private_key(public_exponent=65537, key_size=bits)


@cache
def ec_key(n: int = 0, curve: type = ec.SECP256R1):
    return ec.generate_private_key(curve())


@dataclasses.dataclass
class Issued:
    cert: x509.Certificate
    key: object

    @property
    def der(self) -> bytes:
        return self.cert.public_bytes(serialization.Encoding.DER)

    @property
    def pem(self) -> bytes:
        return self.cert.public_bytes(serialization.Encoding.PEM)


def name(cn: str | None, *extra: x509.NameAttribute) -> x509.Name:
    attrs = [x509.NameAttribute(NameOID.ORGANIZATION_NAME, "Lab")] if cn is None else [
        x509.NameAttribute(NameOID.COMMON_NAME, cn)]
    return x509.Name([*extra, *attrs])


def issue(subject: x509.Name, key, issuer: Issued | None = None, *, ca: bool = False,
          dns: tuple[str, ...] | None = None, ips: tuple[str, ...] = (),
          not_before: dt.datetime = NOW - 30 * DAY, not_after: dt.datetime = NOW + 70 * DAY,
          digest=hashes.SHA256(), serial: int = 0x1234ABCD, eku: bool = True) -> Issued:
    signer_key = issuer.key if issuer else key
    b = (x509.CertificateBuilder()
         .subject_name(subject)
         .issuer_name(issuer.cert.subject if issuer else subject)
         .public_key(key.public_key())
         .serial_number(serial)
         .not_valid_before(not_before)
         .not_valid_after(not_after)
         .add_extension(x509.BasicConstraints(ca=ca, path_length=None), critical=True)
         .add_extension(x509.SubjectKeyIdentifier.from_public_key(key.public_key()), critical=False))
    if issuer is not None or not ca:
        b = b.add_extension(x509.AuthorityKeyIdentifier.from_issuer_public_key(signer_key.public_key()),
                            critical=False)
    if ca:
        b = b.add_extension(x509.KeyUsage(digital_signature=True, key_cert_sign=True, crl_sign=True,
                                          content_commitment=False, key_encipherment=False,
                                          data_encipherment=False, key_agreement=False,
                                          encipher_only=False, decipher_only=False), critical=True)
    else:
        if eku:
            b = b.add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.SERVER_AUTH]), critical=False)
        sans: list[x509.GeneralName] = [x509.DNSName(d) for d in (dns or ())]
        sans += [x509.IPAddress(ipaddress.ip_address(a)) for a in ips]
        if sans:
            b = b.add_extension(x509.SubjectAlternativeName(sans), critical=False)
    if isinstance(signer_key, ed25519.Ed25519PrivateKey):
        return Issued(b.sign(signer_key, None), key)
    if digest.name in _LEGACY_RSA_OIDS:
        return Issued(_legacy_rsa_sign(b.sign(signer_key, hashes.SHA256()), signer_key, digest), key)
    return Issued(b.sign(signer_key, digest), key)


_SHA256_RSA_OID = bytes.fromhex("06092a864886f70d01010b")  # 1.2.840.113549.1.1.11
_LEGACY_RSA_OIDS = {"sha1": bytes.fromhex("06092a864886f70d010105"), "md5": bytes.fromhex("06092a864886f70d010104")}


def _legacy_rsa_sign(cert: x509.Certificate, signer_key, digest) -> x509.Certificate:
    """cryptography 50 no longer signs with SHA-1 or MD5, but servers still present such certificates.

    Swap the algorithm OID (same length) in the TBS and outer AlgorithmIdentifier and
    re-sign the TBS; an RSA signature has the key's length, so no DER lengths change.
    """
    der = cert.public_bytes(serialization.Encoding.DER)
    assert der.count(_SHA256_RSA_OID) == 2 and isinstance(signer_key, rsa.RSAPrivateKey)
    der = der.replace(_SHA256_RSA_OID, _LEGACY_RSA_OIDS[digest.name])
    tbs = x509.load_der_x509_certificate(der).tbs_certificate_bytes
    sig = signer_key.sign(tbs, padding.PKCS1v15(), digest)
    assert len(sig) == signer_key.key_size // 8
    return x509.load_der_x509_certificate(der[:-len(sig)] + sig)


@pytest.fixture(scope="module")
def ca() -> Issued:
    return issue(name("Lab Root CA"), rsa_key(2048, 1), ca=True,
                 not_before=NOW - 3650 * DAY, not_after=NOW + 3650 * DAY)


@pytest.fixture(scope="module")
def inter(ca) -> Issued:
    return issue(name("Lab Issuing CA"), ec_key(1), ca, ca=True,
                 not_before=NOW - 365 * DAY, not_after=NOW + 1000 * DAY)


@pytest.fixture(scope="module")
def store(ca):
    return x509.verification.Store([ca.cert])


def leaf(inter: Issued, **kw) -> Issued:
    kw.setdefault("dns", (HOST,))
    subject = kw.pop("subject", name(kw["dns"][0] if kw["dns"] else "nothing"))
    return issue(subject, kw.pop("key", ec_key(2)), inter, **kw)


def analyse(chain: list[Issued], host: str = HOST, store=None, **kw) -> tls.ChainReport:
    return tls.analyse([c.der for c in chain], host, now=kw.pop("now", NOW), store=store, **kw)


# --- parse_chain / CertInfo ----------------------------------------------------

def test_cert_info_fields(ca, inter):
    good = leaf(inter, dns=("MX1.Example.com", "*.mail.example.com"), ips=("192.0.2.25", "2001:db8::25"),
                serial=0xDEADBEEF)
    infos, error = tls.parse_chain([good.der, inter.der, ca.der])
    assert error == ""
    assert len(infos) == 3
    c = infos[0]
    assert c.subject == "CN=MX1.Example.com"
    assert c.issuer == "CN=Lab Issuing CA"
    assert c.serial == "deadbeef"
    assert c.not_before == NOW - 30 * DAY and c.not_before.tzinfo is not None
    assert c.not_after == NOW + 70 * DAY
    assert c.not_after.utcoffset() == dt.timedelta(0)
    assert c.dns_names == ("mx1.example.com", "*.mail.example.com")
    assert c.ip_addresses == ("192.0.2.25", "2001:db8::25")
    assert c.common_names == ("MX1.Example.com",)
    assert (c.key_type, c.key_bits, c.curve) == ("EC", 256, "secp256r1")
    assert c.signature_algorithm == "ecdsa-with-SHA256"
    assert c.signature_hash == "sha256"
    assert (c.is_ca, c.self_issued, c.self_signed) == (False, False, False)
    assert c.sha256 == good.cert.fingerprint(hashes.SHA256()).hex()
    assert len(c.sha256) == 64

    i = infos[1]
    assert (i.is_ca, i.self_signed, i.key_type, i.signature_algorithm) == (True, False, "EC",
                                                                           "sha256WithRSAEncryption")
    r = infos[2]
    assert (r.is_ca, r.self_issued, r.self_signed) == (True, True, True)
    assert (r.key_type, r.key_bits, r.curve) == ("RSA", 2048, "")


def test_cert_info_ed25519_and_p384(inter):
    ed = issue(name("ed.example.com"), ed25519.Ed25519PrivateKey.generate(), dns=("ed.example.com",))
    (c,), _ = tls.parse_chain([ed.der])
    assert (c.key_type, c.key_bits, c.curve) == ("Ed25519", 256, "")
    assert (c.signature_algorithm, c.signature_hash) == ("ed25519", "")
    assert c.self_signed
    p384 = leaf(inter, key=ec_key(3, ec.SECP384R1))
    (c,), _ = tls.parse_chain([p384.der])
    assert (c.key_type, c.key_bits, c.curve) == ("EC", 384, "secp384r1")


def test_self_issued_but_not_self_signed(ca):
    """Same subject and issuer, signed by another key: self-issued, not self-signed."""
    impostor = issue(ca.cert.subject, ec_key(4), ca, dns=("x.example.com",))
    (c,), _ = tls.parse_chain([impostor.der])
    assert c.self_issued and not c.self_signed


def test_garbage_der_is_reported_not_raised(inter):
    infos, error = tls.parse_chain([b"\x30\x03\x02\x01\x00"])
    assert infos == () and error.startswith("the leaf certificate cannot be parsed: ")
    assert "\n" not in error
    good = leaf(inter)
    infos, error = tls.parse_chain([good.der, b"not a certificate"])
    assert len(infos) == 1 and error.startswith("certificate 2 of 2 cannot be parsed")
    assert tls.parse_chain([]) == ((), "")


def test_control_characters_in_subject_are_kept_verbatim(inter, store):
    evil = "mx1.example.com\x1b[2J\x07\r\nX-Evil: 1"
    cert = leaf(inter, subject=name(evil))
    r = analyse([cert, inter], store=store)
    assert r.leaf.common_names == (evil,)
    assert "\x1b[2J" in r.leaf.subject  # never interpreted or dropped here; the renderers escape
    assert r.leaf.subject in tls.summarize(r)


def test_undecodable_subject_does_not_raise(inter, store):
    marker = "QQQQQQQQQQQQ"
    cert = leaf(inter, subject=name(marker))
    der = cert.der.replace(marker.encode(), b"\xff\xfe" + marker[2:].encode(), 1)
    assert der != cert.der
    infos, error = tls.parse_chain([der])
    if error:  # a parser that refuses it up front is fine too, as long as it is reported
        assert "cannot be parsed" in error
        return
    assert infos[0].subject.startswith("<undecodable subject")
    r = tls.analyse([der, inter.der], HOST, now=NOW, store=store)
    assert r.leaf is not None and not r.trusted  # the patch broke the signature
    tls.summarize(r)


# --- names -----------------------------------------------------------------------

@pytest.mark.parametrize("pattern, host, ok", [
    ("mx1.example.com", "mx1.example.com", True),
    ("MX1.Example.COM", "mx1.example.com", True),
    ("mx1.example.com", "MX1.EXAMPLE.COM", True),
    ("mx1.example.com.", "mx1.example.com", True),
    ("mx1.example.com", "mx1.example.com.", True),
    ("mx1.example.com", "mx2.example.com", False),
    ("mx1.example.com", "example.com", False),
    ("*.example.com", "a.example.com", True),
    ("*.example.com", "A.EXAMPLE.com", True),
    ("*.Example.com.", "a.example.com", True),
    ("*.example.com", "a.example.com.", True),
    ("*.example.com", "example.com", False),
    ("*.example.com", "a.b.example.com", False),
    ("*.example.com", ".example.com", False),
    ("*.example.com", "*.example.com", False),
    ("*.com", "example.com", False),
    ("*", "example", False),
    ("*.co.uk", "example.co.uk", False),
    ("f*.example.com", "foo.example.com", False),
    ("*o.example.com", "foo.example.com", False),
    ("f*o.example.com", "foo.example.com", False),
    ("a.*.example.com", "a.b.example.com", False),
    ("*.*.example.com", "a.b.example.com", False),
    ("**.example.com", "a.example.com", False),
    ("xn--bcher-kva.example", "bücher.example", True),
    ("xn--bcher-kva.example", "XN--BCHER-KVA.example", True),
    ("bücher.example", "xn--bcher-kva.example", True),
    ("*.xn--bcher-kva.example", "mx.bücher.example", True),
    ("*.bücher.example", "mx.xn--bcher-kva.example", True),
    ("*.bücher.example", "bücher.example", False),
    ("*.github.io", "example.github.io", False),
    ("*.example.com", "xn--bcher-kva.example.com", True),
    ("", "example.com", False),
    ("example.com", "", False),
])
def test_name_matches(pattern, host, ok):
    assert tls.name_matches(pattern, host) is ok


def test_host_names_ok_prefers_san_over_cn(inter):
    both = leaf(inter, subject=name("cn-only.example.com"), dns=("san.example.com",))
    (c,), _ = tls.parse_chain([both.der])
    assert tls.host_names_ok(c, "san.example.com")
    assert not tls.host_names_ok(c, "cn-only.example.com")

    cn_only = leaf(inter, subject=name("legacy.example.com"), dns=())
    (c,), _ = tls.parse_chain([cn_only.der])
    assert c.dns_names == () and c.common_names == ("legacy.example.com",)
    assert tls.host_names_ok(c, "legacy.example.com")
    assert not tls.host_names_ok(c, "other.example.com")

    ip_only = leaf(inter, subject=name("ip.example.com"), dns=(), ips=("192.0.2.25",))
    (c,), _ = tls.parse_chain([ip_only.der])
    # no SAN dNSName: the CN still names the host (legacy); the IP never matches a host name
    assert tls.host_names_ok(c, "ip.example.com")
    assert not tls.host_names_ok(c, "192.0.2.25")


# --- analyse ----------------------------------------------------------------------

def test_valid_chain(ca, inter, store):
    r = analyse([leaf(inter), inter], store=store)
    assert r.parse_error == ""
    assert r.trusted, r.trust_error
    assert r.trust_error == ""
    assert r.name_ok and r.names == (HOST,)
    assert (r.expired, r.not_yet_valid, r.days_left, r.expiring) == (False, False, 70, False)
    assert (r.weak_key, r.weak_signature) == ("", "")
    assert [c.subject for c in r.chain] == ["CN=mx1.example.com", "CN=Lab Issuing CA"]
    assert r.leaf == r.chain[0]


def test_valid_chain_with_root_sent_along(ca, inter, store):
    r = analyse([leaf(inter), inter, ca], store=store)
    assert r.trusted, r.trust_error
    assert len(r.chain) == 3


def test_missing_intermediate_is_untrusted(inter, store):
    r = analyse([leaf(inter)], store=store)
    assert not r.trusted
    assert r.trust_error == ("no chain to a trusted CA: CN=Lab Issuing CA is neither in the trust store "
                             "nor sent by the server")
    assert r.name_ok  # other grounds are unaffected


def test_unknown_ca_is_untrusted(inter):
    other_root = issue(name("Some Other CA"), ec_key(9), ca=True,
                       not_before=NOW - 10 * DAY, not_after=NOW + 1000 * DAY)
    r = analyse([leaf(inter), inter], store=x509.verification.Store([other_root.cert]))
    assert not r.trusted
    assert r.trust_error == ("no chain to a trusted CA: CN=Lab Root CA is neither in the trust store "
                             "nor sent by the server")


def test_expired_but_trusted(inter, store):
    old = leaf(inter, not_before=NOW - 100 * DAY, not_after=NOW - 10 * DAY - dt.timedelta(hours=1))
    r = analyse([old, inter], store=store)
    assert r.expired and not r.not_yet_valid
    assert r.trusted, r.trust_error
    assert r.days_left == -10  # toward zero: 10 days and an hour ago is "10 days ago"
    assert not r.expiring
    assert "expired" in tls.summarize(r)


def test_not_yet_valid_but_trusted(inter, store):
    early = leaf(inter, not_before=NOW + 5 * DAY, not_after=NOW + 400 * DAY)
    r = analyse([early, inter], store=store)
    assert r.not_yet_valid and not r.expired
    assert r.trusted, r.trust_error
    assert r.days_left == 400


def test_expiring_within_warn_days(inter, store):
    soon = leaf(inter, not_after=NOW + 20 * DAY + dt.timedelta(hours=5))
    r = analyse([soon, inter], store=store)
    assert r.days_left == 20 and r.expiring and not r.expired
    assert not analyse([soon, inter], store=store, warn_days=20).expiring
    assert analyse([soon, inter], store=store, warn_days=21).expiring


def test_wrong_name_but_trusted(inter, store):
    r = analyse([leaf(inter, dns=("www.example.org", "example.org")), inter], store=store)
    assert not r.name_ok
    assert r.names == ("www.example.org", "example.org")
    assert r.trusted, r.trust_error


def test_no_hostname_is_never_a_name_match(inter, store):
    r = analyse([leaf(inter), inter], host="", store=store)
    assert not r.name_ok and r.trusted


def test_wildcard_leaf(inter, store):
    wild = leaf(inter, dns=("*.example.com",))
    r = analyse([wild, inter], store=store)
    assert r.name_ok and r.trusted, r.trust_error
    assert not analyse([wild, inter], host="a.b.example.com", store=store).name_ok
    assert not analyse([wild, inter], host="example.com", store=store).name_ok


def test_self_signed_leaf(store):
    own = issue(name(HOST), ec_key(5), dns=(HOST,))
    r = analyse([own], store=store)
    assert r.leaf.self_signed and r.leaf.self_issued
    assert not r.trusted and r.trust_error == "self-signed"
    assert r.name_ok
    assert "self-signed" in tls.summarize(r)


def test_self_signed_leaf_is_untrusted_even_when_in_the_store():
    own = issue(name(HOST), ec_key(5), dns=(HOST,))
    r = analyse([own], store=x509.verification.Store([own.cert]))
    assert not r.trusted and r.trust_error == "self-signed"


def test_weak_rsa_key(inter, store):
    weak = leaf(inter, key=rsa_key(1024))
    r = analyse([weak, inter], store=store)
    assert r.leaf.key_type == "RSA" and r.leaf.key_bits == 1024
    assert r.weak_key == "RSA 1024 bits < 2048"
    assert r.weak_signature == ""
    assert r.name_ok and not r.expired
    assert r.trusted, r.trust_error  # trust and key strength are separate verdicts


def test_weak_key_in_intermediate(ca, store):
    weak_inter = issue(name("Weak Issuing CA"), rsa_key(1024, 1), ca, ca=True)
    r = analyse([leaf(weak_inter), weak_inter], store=store)
    assert r.weak_key == "RSA 1024 bits < 2048 (intermediate 1)"
    assert not r.trusted and r.trust_error == "RSA key is too weak"


def test_small_ec_key_is_weak(inter, store):
    small = leaf(inter, key=ec_key(6, ec.SECP224R1))
    r = analyse([small, inter], store=store)
    assert r.weak_key == "EC 224 bits < 256"


@pytest.fixture(scope="module")
def rsa_inter(ca) -> Issued:
    return issue(name("Lab RSA Issuing CA"), rsa_key(2048, 4), ca, ca=True)


def test_legacy_signatures_are_real(rsa_inter):
    """The test's own SHA-1/MD5 certificates must verify, or the weak-signature tests prove nothing."""
    for digest in (hashes.SHA1(), hashes.MD5()):
        cert = leaf(rsa_inter, digest=digest)
        rsa_inter.cert.public_key().verify(cert.cert.signature, cert.cert.tbs_certificate_bytes,
                                           padding.PKCS1v15(), digest)
        assert cert.cert.signature_hash_algorithm.name == digest.name


def test_md5_signed_leaf(rsa_inter, store):
    r = analyse([leaf(rsa_inter, digest=hashes.MD5()), rsa_inter], store=store)
    assert (r.leaf.signature_algorithm, r.leaf.signature_hash) == ("md5WithRSAEncryption", "md5")
    assert r.weak_signature == "md5WithRSAEncryption"
    assert not r.trusted


def test_sha1_signed_leaf(rsa_inter, store):
    old = leaf(rsa_inter, digest=hashes.SHA1())
    r = analyse([old, rsa_inter], store=store)
    assert r.leaf.signature_algorithm == "sha1WithRSAEncryption"
    assert r.leaf.signature_hash == "sha1"
    assert r.weak_signature == "sha1WithRSAEncryption"
    assert r.weak_key == ""
    # cryptography's verifier (web PKI policy) refuses SHA-1 signatures: so would modern senders
    assert not r.trusted
    assert r.trust_error == "a certificate in the chain is signed with an algorithm senders refuse (e.g. SHA-1 or MD5)"


def _starttls_findings(report):
    from deliverck.checks import starttls
    from deliverck.net.smtp import TlsFacts

    args = dict(ip="192.0.2.25", host=HOST)
    return starttls._judge("192.0.2.25", HOST, TlsFacts(version="TLSv1.3"), report, ("C: STARTTLS",), args, 21, NOW)


def test_one_certificate_problem_is_one_finding(ca, rsa_inter, store):
    """Issue 13, one cause one finding: the SHA-1 signature is why the chain is untrusted, so it is the
    one error and the untrust its evidence; a self-signed or privately issued SHA-1 certificate is the
    self-signed or untrusted certificate, with the signature as evidence."""
    r = analyse([leaf(rsa_inter, digest=hashes.SHA1()), rsa_inter], store=store)
    assert r.trust_failure == "signature_algorithm"
    (f,) = _starttls_findings(r)
    assert f.id == "starttls.weak_signature" and any("not trusted" in e for e in f.evidence)

    private = issue(name("Private Root"), rsa_key(2048, 7), ca=True, not_before=NOW - 10 * DAY,
                    not_after=NOW + 900 * DAY)
    r = analyse([leaf(private, digest=hashes.SHA1())], store=store)
    assert r.trust_failure == "no_chain"
    (f,) = _starttls_findings(r)
    assert f.id == "starttls.cert_untrusted" and any("sha1WithRSAEncryption" in e for e in f.evidence)

    own = issue(name(HOST), rsa_key(2048, 3), dns=(HOST,), digest=hashes.SHA1())
    r = analyse([own], store=store)
    assert r.trust_failure == "self_signed" and r.weak_signature
    (f,) = _starttls_findings(r)
    assert f.id == "starttls.cert_self_signed" and any("sha1WithRSAEncryption" in e for e in f.evidence)

    # distinct causes stay distinct: a wrong name and a SHA-1 signature are two things to fix
    r = analyse([leaf(rsa_inter, digest=hashes.SHA1(), dns=("other.example.com",)), rsa_inter], store=store)
    assert sorted(f.id for f in _starttls_findings(r)) == ["starttls.cert_name_mismatch", "starttls.weak_signature"]


def test_sha1_signed_intermediate(ca, store):
    sha1_inter = issue(name("SHA1 Issuing CA"), rsa_key(2048, 5), ca, ca=True, digest=hashes.SHA1())
    r = analyse([leaf(sha1_inter), sha1_inter], store=store)
    assert r.weak_signature == "sha1WithRSAEncryption (intermediate 1)"


def test_sha1_self_signed_root_sent_along_is_not_weak(inter, store):
    sha1_root = issue(name("Old Root"), rsa_key(2048, 2), ca=True, digest=hashes.SHA1())
    sha1_inter = issue(name("Issuing CA"), ec_key(8), sha1_root, ca=True)
    r = analyse([leaf(sha1_inter), sha1_inter, sha1_root], store=x509.verification.Store([sha1_root.cert]))
    assert r.chain[2].signature_hash == "sha1"
    assert r.weak_signature == ""
    assert r.trusted, r.trust_error


def test_cn_only_leaf(inter, store):
    """No SAN: the server verifier cannot be used; the chain is still verified (client verifier, server rules)."""
    legacy = leaf(inter, subject=name(HOST), dns=())
    r = analyse([legacy, inter], store=store)
    assert r.names == (HOST,)
    assert r.name_ok
    assert r.trusted, r.trust_error
    assert not analyse([legacy], store=store).trusted  # still needs its intermediate


def test_cn_only_leaf_from_an_unknown_ca(inter):
    other = issue(name("Other CA"), ec_key(9), ca=True)
    r = analyse([leaf(inter, subject=name(HOST), dns=()), inter], store=x509.verification.Store([other.cert]))
    assert not r.trusted and r.trust_error


def test_cn_only_leaf_for_clients_only(inter, store):
    client = with_eku(leaf(inter, subject=name(HOST), dns=(), eku=False), inter, [ExtendedKeyUsageOID.CLIENT_AUTH])
    r = analyse([client, inter], store=store)
    assert not r.trusted and "server authentication" in r.trust_error
    ok = with_eku(leaf(inter, subject=name(HOST), dns=(), eku=False), inter,
                  [ExtendedKeyUsageOID.CLIENT_AUTH, ExtendedKeyUsageOID.SERVER_AUTH])
    assert analyse([ok, inter], store=store).trusted


def test_bad_wildcard_only_leaf_is_still_judged_for_trust(inter, store):
    """'f*.example.com' is never a valid name here, but the chain itself is judged (client verifier)."""
    r = analyse([leaf(inter, dns=("f*.example.com",)), inter], host="foo.example.com", store=store)
    assert not r.name_ok
    assert r.trusted, r.trust_error


def test_san_ip_only_leaf(inter, store):
    ip_only = leaf(inter, subject=name("Lab Mail"), dns=(), ips=("192.0.2.25",))
    r = analyse([ip_only, inter], store=store)
    assert r.leaf.ip_addresses == ("192.0.2.25",)
    assert r.names == ("Lab Mail",)  # no SAN dNSName: the CN is what is left to match
    assert not r.name_ok
    assert r.trusted, r.trust_error  # verified for its IP address


def with_eku(cert: Issued, issuer: Issued, usages) -> Issued:
    c = cert.cert
    b = x509.CertificateBuilder(c.issuer, c.subject, c.public_key(), c.serial_number + 1,
                                c.not_valid_before_utc, c.not_valid_after_utc,
                                [e for e in c.extensions if not isinstance(e.value, x509.ExtendedKeyUsage)])
    return Issued(b.add_extension(x509.ExtendedKeyUsage(usages), critical=False).sign(issuer.key, hashes.SHA256()),
                  cert.key)


def test_leaf_for_clients_only_is_untrusted_for_a_server(inter, store):
    cert = with_eku(leaf(inter), inter, [ExtendedKeyUsageOID.CLIENT_AUTH])
    r = analyse([cert, inter], store=store)
    assert not r.trusted and r.trust_error
    assert r.name_ok


def test_leaf_without_authority_key_identifier_is_trusted(inter, store):
    """Web PKI requires an AKI on leaves; OpenSSL-based senders do not, so neither do we."""
    c = leaf(inter).cert
    b = x509.CertificateBuilder(c.issuer, c.subject, c.public_key(), 77, c.not_valid_before_utc,
                                c.not_valid_after_utc,
                                [e for e in c.extensions if not isinstance(e.value, x509.AuthorityKeyIdentifier)])
    bare = Issued(b.sign(inter.key, hashes.SHA256()), None)
    with pytest.raises(x509.ExtensionNotFound):
        bare.cert.extensions.get_extension_for_class(x509.AuthorityKeyIdentifier)
    r = analyse([bare, inter], store=store)
    assert r.trusted, r.trust_error


def ca_with_key_usage(ca: Issued, key_usage: x509.KeyUsage | None) -> Issued:
    key = ec_key(11)
    b = (x509.CertificateBuilder().subject_name(name("KU CA")).issuer_name(ca.cert.subject)
         .public_key(key.public_key()).serial_number(11)
         .not_valid_before(NOW - 10 * DAY).not_valid_after(NOW + 100 * DAY)
         .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
         .add_extension(x509.AuthorityKeyIdentifier.from_issuer_public_key(ca.key.public_key()), critical=False))
    if key_usage is not None:
        b = b.add_extension(key_usage, critical=True)
    return Issued(b.sign(ca.key, hashes.SHA256()), key)


def test_intermediate_key_usage(ca, store):
    no_ku = ca_with_key_usage(ca, None)
    r = analyse([leaf(no_ku), no_ku], store=store)
    assert r.trusted, r.trust_error
    signing_only = ca_with_key_usage(ca, x509.KeyUsage(True, False, False, False, False, False, False, False, False))
    r = analyse([leaf(signing_only), signing_only], store=store)
    assert not r.trusted and "keyCertSign" in r.trust_error


def test_expired_intermediate_is_untrusted(ca, store):
    old_inter = issue(name("Old Issuing CA"), ec_key(12), ca, ca=True,
                      not_before=NOW - 400 * DAY, not_after=NOW - DAY)
    r = analyse([leaf(old_inter, not_before=NOW - 30 * DAY), old_inter], store=store)
    assert not r.expired  # the leaf itself is fine ...
    assert not r.trusted  # ... but no sender can build a valid chain today
    assert r.trust_error == "a CA certificate of the chain or the trust anchor is not valid now"


def test_expired_leaf_outliving_its_ca(ca, store):
    """Trust is judged at the leaf's last valid moment; a CA that was not valid then fails it, and says when."""
    young_inter = issue(name("Young CA"), ec_key(13), ca, ca=True, not_before=NOW - 5 * DAY, not_after=NOW + 400 * DAY)
    old_leaf = leaf(young_inter, not_before=NOW - 90 * DAY, not_after=NOW - 10 * DAY)
    r = analyse([old_leaf, young_inter], store=store)
    assert r.expired and not r.trusted
    end = (NOW - 10 * DAY).strftime("%Y-%m-%d %H:%M")
    assert r.trust_error == (f"a CA certificate of the chain or the trust anchor is not valid on {end} UTC, "
                             "inside the leaf's validity")


def test_garbage_chain_report():
    nobody = x509.verification.Store([issue(name("Nobody"), ec_key(9), ca=True).cert])
    r = tls.analyse([b"garbage"], HOST, now=NOW, store=nobody)
    assert r.leaf is None and r.chain == ()
    assert r.parse_error.startswith("the leaf certificate cannot be parsed")
    assert not r.trusted and not r.name_ok
    assert tls.summarize(r).startswith("no certificate (")
    empty = tls.analyse([], HOST, now=NOW, store=nobody)
    assert empty.leaf is None and empty.parse_error


def test_garbage_after_a_good_leaf(inter, store):
    r = tls.analyse([leaf(inter).der, b"garbage"], HOST, now=NOW, store=store)
    assert r.leaf is not None and r.name_ok
    assert r.parse_error.startswith("certificate 2 of 2") and not r.trusted


def test_naive_now_is_taken_as_utc(inter, store):
    r = tls.analyse([leaf(inter).der, inter.der], HOST, now=NOW.replace(tzinfo=None), store=store)
    assert r.days_left == 70 and r.trusted


def test_summarize(inter, store):
    r = analyse([leaf(inter, key=rsa_key(2048, 3)), inter], store=store)
    expected_until = (NOW + 70 * DAY).date().isoformat()
    assert tls.summarize(r) == (f"CN=mx1.example.com, issuer CN=Lab Issuing CA, valid until {expected_until} "
                                "(70 days), RSA 2048, ecdsa-with-SHA256")
    r = analyse([leaf(inter), inter], store=store)
    assert ", EC secp256r1, " in tls.summarize(r)


# --- trust store ---------------------------------------------------------------------

def test_load_trust_store_from_ca_file(tmp_path, ca, inter):
    pem = tmp_path / "lab-ca.pem"
    pem.write_bytes(b"# lab CA\n" + ca.pem)
    store = tls.load_trust_store(pem, system=False)
    assert analyse([leaf(inter), inter], store=store).trusted
    der = tmp_path / "lab-ca.der"
    der.write_bytes(ca.der)
    assert analyse([leaf(inter), inter], store=tls.load_trust_store(der, system=False)).trusted
    with pytest.raises(IncompleteError, match="^no trust anchors: the system store is off and no --ca-file was given$"):
        tls.load_trust_store(None, system=False)


def test_system_store_does_not_trust_the_lab_ca_but_ca_file_adds_it(tmp_path, ca, inter):
    if tls._system_bundle() is None:
        pytest.skip("no system CA bundle on this machine")
    assert not analyse([leaf(inter), inter], store=tls.load_trust_store(None)).trusted
    pem = tmp_path / "lab-ca.pem"
    pem.write_bytes(ca.pem)
    assert analyse([leaf(inter), inter], store=tls.load_trust_store(pem)).trusted


def test_ca_file_missing(tmp_path):
    with pytest.raises(UsageError) as e:
        tls.load_trust_store(tmp_path / "nope.pem")
    assert str(e.value) == f"--ca-file {tmp_path / 'nope.pem'}: no such file"
    assert e.value.exit_code == 2


def test_ca_file_unreadable(tmp_path, ca, monkeypatch):
    p = tmp_path / "secret.pem"
    p.write_bytes(ca.pem)
    if os.geteuid() != 0:
        p.chmod(0)
    else:  # root reads any file: make the read fail as it would for anyone else
        import deliverck.inputfile as inputfile
        real = inputfile.os.open
        monkeypatch.setattr(inputfile.os, "open",
                            lambda path, *a, **k: (_ for _ in ()).throw(PermissionError(13, "Permission denied"))
                            if str(path) == str(p) else real(path, *a, **k))
    try:
        with pytest.raises(UsageError) as e:
            tls.load_trust_store(p, system=False)
    finally:
        p.chmod(0o600)
    assert str(e.value) == f"--ca-file {p}: cannot be read (Permission denied)"


def test_ca_file_is_a_directory(tmp_path):
    with pytest.raises(UsageError, match="is a directory"):
        tls.load_trust_store(tmp_path, system=False)


@pytest.mark.parametrize("content", [b"", b"hello\n", b"-----BEGIN PRIVATE KEY-----\nAAAA\n-----END PRIVATE KEY-----\n",
                                     b"-----BEGIN CERTIFICATE-----\nnot base64!\n-----END CERTIFICATE-----\n"])
def test_ca_file_without_certificates(tmp_path, content):
    p = tmp_path / "empty.pem"
    p.write_bytes(content)
    with pytest.raises(UsageError) as e:
        tls.load_trust_store(p, system=False)
    assert str(e.value).startswith(f"--ca-file {p}: holds no certificate")
    assert "\n" not in str(e.value)
