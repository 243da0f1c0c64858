"""Certificate facts and verdicts for a TLS session the SMTP probe already made.

Pure functions, no network: the probe hands over the chain exactly as the server
presented it (DER, leaf first), and everything here is decided from those bytes,
the MX host name, a clock and a trust store.

Senders judge a certificate on separate grounds (does it chain to a CA, is it
valid now, is it for this host, are key and signature sane) and bounce with a
different code for each, so each ground is reported on its own: trust is
verified with cryptography's verifier at a moment inside the leaf's validity and
for a name the leaf carries, so an expired or wrong-name certificate from a
trusted CA is reported as trusted, expired or mismatched.

Certificate text comes from a remote server: it is returned as str, never
interpreted, and escaping is the renderer's job.
"""

from __future__ import annotations

import datetime as dt
import ipaddress
import ssl
import warnings
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import idna
from cryptography import x509
from cryptography.utils import CryptographyDeprecationWarning
from cryptography.x509.oid import ExtendedKeyUsageOID
from cryptography.x509.verification import (
    ClientVerifier,
    Criticality,
    DNSName,
    ExtensionPolicy,
    IPAddress,
    PolicyBuilder,
    ServerVerifier,
    Store,
    VerificationError,
)

from deliverck.errors import IncompleteError, UsageError
from deliverck.inputfile import ReadError, read_limited
from deliverck.net import certfields
from deliverck.net.certfields import CertInfo, name_text, one_line

MIN_RSA_BITS = 2048
MIN_DSA_BITS = 2048
MIN_EC_BITS = 256
WEAK_HASHES = frozenset({"md5", "sha1"})
SYSTEM_CA_FALLBACK = Path("/etc/ssl/certs/ca-certificates.crt")
_DAY = dt.timedelta(days=1)


@dataclass(frozen=True)
class ChainReport:
    leaf: CertInfo | None
    chain: tuple[CertInfo, ...]
    parse_error: str = ""
    trusted: bool = False
    trust_error: str = ""
    trust_failure: str = ""          # why not trusted, as a word: TRUST_FAILURES
    name_ok: bool = False
    names: tuple[str, ...] = ()
    expired: bool = False
    not_yet_valid: bool = False
    days_left: int = 0
    weak_key: str = ""
    weak_signature: str = ""
    expiring: bool = False


# --- parsing -----------------------------------------------------------------

def parse_chain(ders: Sequence[bytes]) -> tuple[tuple[CertInfo, ...], str]:
    """Facts for each certificate; stops at the first one that cannot be parsed.

    Returns what parsed so far and "" or one line saying which certificate failed and why.
    """
    infos, _certs, error = _load(ders)
    return infos, error


def _load(ders: Sequence[bytes]) -> tuple[tuple[CertInfo, ...], tuple[x509.Certificate, ...], str]:
    infos: list[CertInfo] = []
    certs: list[x509.Certificate] = []
    for i, der in enumerate(ders):
        where = "the leaf certificate" if i == 0 else f"certificate {i + 1} of {len(ders)}"
        try:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore", CryptographyDeprecationWarning)  # e.g. a zero serial
                cert = x509.load_der_x509_certificate(bytes(der))
                info = certfields.read(cert)
        except Exception as e:  # noqa: BLE001 - remote bytes: any parser complaint is a finding, not a crash
            return tuple(infos), tuple(certs), f"{where} cannot be parsed: {one_line(e)}"
        infos.append(info)
        certs.append(cert)
    return tuple(infos), tuple(certs), ""



# --- names -------------------------------------------------------------------

def name_matches(pattern: str, hostname: str) -> bool:
    """RFC 6125 6.4.3 / RFC 9525 6.3: exact, or '*' as the whole left-most label matching one label.

    The wildcard needs at least two labels after it that are not a public suffix
    ('*.com', '*.co.uk' never match), partial wildcards ('f*.example.com') are refused,
    and both sides compare as lower-case A-labels with any trailing dot dropped.
    """
    p = _a_label(pattern)
    h = _a_label(hostname)
    if not p or not h:
        return False
    h_labels = h.split(".")
    if "" in h_labels or "*" in h:
        return False
    p_labels = p.split(".")
    if "" in p_labels:
        return False
    if "*" not in p:
        return p == h
    if p_labels[0] != "*" or "*" in ".".join(p_labels[1:]):
        return False
    base = ".".join(p_labels[1:])
    if len(p_labels) < 3 or _is_public_suffix(base):
        return False
    return len(h_labels) == len(p_labels) and h_labels[1:] == p_labels[1:]


def _is_public_suffix(name: str) -> bool:
    """'*.co.uk' would cover a whole registry; CAs may not issue it and we never match it."""
    from deliverck.datacache import public_suffix_list

    return bool(public_suffix_list().is_public(name))


def _a_label(name: str) -> str:
    s = name.strip().rstrip(".") if name else ""
    if not s:
        return ""
    if s.startswith("*."):
        rest = _a_label(s[2:])
        return f"*.{rest}" if rest else ""
    try:
        s.encode("ascii")
    except UnicodeEncodeError:
        try:
            return idna.encode(s, uts46=True).decode("ascii").lower()
        except idna.IDNAError:
            return ""
    return s.lower()


def host_names_ok(cert: CertInfo, hostname: str) -> bool:
    """SAN dNSNames when there are any (the CN is then ignored, RFC 6125 6.4.4); else the legacy CN."""
    return any(name_matches(n, hostname) for n in _valid_names(cert))


def _valid_names(cert: CertInfo) -> tuple[str, ...]:
    return cert.dns_names if cert.dns_names else cert.common_names


# --- trust -------------------------------------------------------------------

def load_trust_store(ca_file: Path | None, *, system: bool = True) -> Store:
    """System anchors (the bundle Python's ssl module uses) plus the user's --ca-file.

    A --ca-file that cannot be used is bad input: one line, UsageError.
    """
    certs: list[x509.Certificate] = []
    bundle = _system_bundle() if system else None
    if bundle is not None:
        try:
            certs += _pem_certificates(bundle.read_bytes())
        except OSError:
            pass
    if ca_file is not None:
        certs += _read_ca_file(Path(ca_file))
    if not certs:
        if system:
            raise IncompleteError(f"no trust anchors: no usable system CA bundle "
                                  f"({bundle or SYSTEM_CA_FALLBACK}); install ca-certificates or pass --ca-file")
        raise IncompleteError("no trust anchors: the system store is off and no --ca-file was given")
    return Store(certs)


def _pem_certificates(data: bytes) -> list[x509.Certificate]:
    """Every parseable certificate in a PEM bundle; one odd entry must not void the others."""
    out = []
    end = b"-----END CERTIFICATE-----"
    for block in data.split(end)[:-1]:
        try:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore", CryptographyDeprecationWarning)
                out.append(x509.load_pem_x509_certificate(block + end))
        except ValueError:
            continue
    return out


def _system_bundle() -> Path | None:
    paths = ssl.get_default_verify_paths()
    for p in (paths.cafile, paths.openssl_cafile, str(SYSTEM_CA_FALLBACK)):
        if p and Path(p).is_file():
            return Path(p)
    return None


MAX_CA_FILE = 16 * 1024 * 1024      # a large system bundle is about 0.2 MiB


def _read_ca_file(path: Path) -> list[x509.Certificate]:
    label = f"--ca-file {path}"
    if not path.exists():
        raise UsageError(f"{label}: no such file")
    if path.is_dir():
        raise UsageError(f"{label}: is a directory; give a PEM or DER file of CA certificates")
    try:
        data, more = read_limited(path, MAX_CA_FILE)
    except ReadError as e:
        raise UsageError(f"{label}: {e}") from None
    if more:
        raise UsageError(f"{label}: larger than {MAX_CA_FILE // (1024 * 1024)} MiB; give a PEM or DER file of CA "
                         "certificates")
    certs = _pem_certificates(data)
    if not certs:
        try:
            certs = [x509.load_der_x509_certificate(data)]
        except ValueError:
            certs = []
    if not certs:
        raise UsageError(f"{label}: holds no certificate; give PEM (-----BEGIN CERTIFICATE-----) or DER")
    return certs


# Why a chain is not trusted, as ChainReport.trust_failure: a verdict that follows from another
# finding (a SHA-1 signature, a self-signed leaf) is then shown as that finding's evidence.
TRUST_FAILURES = ("self_signed", "no_chain", "signature_algorithm", "ca_validity", "unparsable", "other")


def trust_failure_kind(reason: str) -> str:
    """The TRUST_FAILURES word for one of _trust_reason's lines."""
    if reason == "self-signed":
        return "self_signed"
    if reason.startswith("no chain to a trusted CA"):
        return "no_chain"
    if reason.startswith("a certificate in the chain is signed with an algorithm"):
        return "signature_algorithm"
    if reason.startswith("a CA certificate of the chain or the trust anchor is not valid"):
        return "ca_validity"
    if "cannot be parsed" in reason:
        return "unparsable"
    return "other"


def _trust(certs: Sequence[x509.Certificate], leaf: CertInfo, store: Store, now: dt.datetime) -> tuple[bool, str]:
    """Does the chain lead to an anchor, judged at a moment the leaf is valid and for a name it carries?

    The server verifier needs a subjectAltName to verify for.  A legacy leaf with
    none (CN only, which OpenSSL-based senders still accept) is verified with
    cryptography's client verifier under server-auth rules instead: same chain
    building and signature checks, no name.  Nothing is checked by hand.
    """
    if leaf.self_signed:
        return False, "self-signed"
    moment = _moment(leaf, now)
    builder = PolicyBuilder().store(store).time(moment)
    subject = _verify_subject(leaf)
    verifier: ServerVerifier | ClientVerifier
    try:
        if subject is not None:
            verifier = builder.extension_policies(ca_policy=_ca_policy(), ee_policy=_ee_policy()).build_server_verifier(subject)
        else:
            verifier = builder.extension_policies(ca_policy=_ca_policy(unnamed=True),
                                                  ee_policy=_ee_policy(unnamed=True)).build_client_verifier()
        verifier.verify(certs[0], list(certs[1:]))
    except (VerificationError, ValueError) as e:
        return False, _trust_reason(one_line(e), certs, moment, now)
    return True, ""


def _trust_reason(text: str, certs: Sequence[x509.Certificate], moment: dt.datetime, now: dt.datetime) -> str:
    """cryptography's reasons, minus its jargon; the raw text stays when it is already plain."""
    for prefix in ("validation failed: ", "candidates exhausted: "):
        text = text.removeprefix(prefix)
    if "no interior errors" in text:
        issuer = name_text(lambda: certs[-1].issuer, "issuer")
        return f"no chain to a trusted CA: {issuer} is neither in the trust store nor sent by the server"
    if text.startswith("Forbidden signature algorithm"):
        return "a certificate in the chain is signed with an algorithm senders refuse (e.g. SHA-1 or MD5)"
    if text.startswith("cert is not valid at validation time"):
        when = "now" if moment == now else f"on {moment:%Y-%m-%d %H:%M} UTC, inside the leaf's validity"
        return f"a CA certificate of the chain or the trust anchor is not valid {when}"
    return text


def _ca_policy(unnamed: bool = False) -> ExtensionPolicy:
    """Web PKI rules, except a CA without keyUsage is accepted, as OpenSSL-based senders do."""
    policy = ExtensionPolicy.webpki_defaults_ca().may_be_present(x509.KeyUsage, Criticality.AGNOSTIC, _ca_key_usage)
    if unnamed:
        policy = policy.may_be_present(x509.ExtendedKeyUsage, Criticality.AGNOSTIC, _server_eku)
    return policy


def _ee_policy(unnamed: bool = False) -> ExtensionPolicy:
    """Web PKI rules, except the authorityKeyIdentifier is optional (senders do not require it)."""
    policy = ExtensionPolicy.webpki_defaults_ee().may_be_present(
        x509.AuthorityKeyIdentifier, Criticality.AGNOSTIC, None)
    if unnamed:
        policy = (policy.may_be_present(x509.SubjectAlternativeName, Criticality.AGNOSTIC, None)
                  .may_be_present(x509.ExtendedKeyUsage, Criticality.AGNOSTIC, _server_eku))
    return policy


def _ca_key_usage(_policy, _cert, ku: x509.KeyUsage | None) -> None:
    if ku is not None and not ku.key_cert_sign:
        raise ValueError("keyUsage of a CA certificate lacks keyCertSign")


def _server_eku(_policy, _cert, eku: x509.ExtendedKeyUsage | None) -> None:
    if eku is not None and not {ExtendedKeyUsageOID.SERVER_AUTH, ExtendedKeyUsageOID.ANY_EXTENDED_KEY_USAGE} & set(eku):
        raise ValueError("extendedKeyUsage does not allow TLS server authentication")


def _verify_subject(leaf: CertInfo) -> DNSName | IPAddress | None:
    """A name the leaf is valid for by its own SAN, so the name plays no part in the trust verdict."""
    for n in leaf.dns_names:
        concrete = _a_label("wildcard" + n[1:] if n.startswith("*.") else n)
        if not concrete or not name_matches(n, concrete):
            continue
        try:
            return DNSName(concrete)
        except ValueError:
            continue
    for a in leaf.ip_addresses:
        try:
            return IPAddress(ipaddress.ip_address(a))
        except ValueError:
            continue
    return None


def _moment(leaf: CertInfo, now: dt.datetime) -> dt.datetime:
    """Now if the leaf is valid now; else the nearest edge of its validity, so time is judged apart."""
    if now < leaf.not_before:
        return leaf.not_before
    if now > leaf.not_after:
        return leaf.not_after
    return now


# --- the whole picture -------------------------------------------------------

def analyse(ders: Sequence[bytes], hostname: str, *, now: dt.datetime, store: Store, warn_days: int = 21) -> ChainReport:
    infos, certs, error = _load(ders)
    if not infos:
        return ChainReport(leaf=None, chain=(), parse_error=error or "the server presented no certificate",
                           trust_error=error or "no certificate")
    leaf = infos[0]
    now = now.astimezone(dt.UTC) if now.tzinfo else now.replace(tzinfo=dt.UTC)
    if error:
        trusted, trust_error = False, error
    else:
        trusted, trust_error = _trust(certs, leaf, store, now)
    # Whole days, rounded toward zero: 2.5 days ago is -2 ("2 days ago"), not -3.
    days_left = int((leaf.not_after - now) / _DAY)
    expired = now > leaf.not_after
    return ChainReport(
        leaf=leaf,
        chain=infos,
        parse_error=error,
        trusted=trusted,
        trust_error=trust_error,
        trust_failure="" if trusted else trust_failure_kind(trust_error),
        name_ok=bool(hostname) and host_names_ok(leaf, hostname),
        names=_valid_names(leaf),
        expired=expired,
        not_yet_valid=now < leaf.not_before,
        days_left=days_left,
        weak_key=_weak_key(infos),
        weak_signature=_weak_signature(infos),
        expiring=not expired and days_left < warn_days,
    )


def _judged(infos: Sequence[CertInfo]) -> list[tuple[str, CertInfo]]:
    """The leaf and intermediates; a self-signed root sent along is an anchor, its own signature moot."""
    out = []
    for i, c in enumerate(infos):
        if i > 0 and c.self_signed:
            continue
        out.append(("leaf" if i == 0 else f"intermediate {i}", c))
    return out


def _weak_key(infos: Sequence[CertInfo]) -> str:
    for where, c in _judged(infos):
        minimum = {"RSA": MIN_RSA_BITS, "DSA": MIN_DSA_BITS, "EC": MIN_EC_BITS}.get(c.key_type)
        if minimum and c.key_bits < minimum:
            return f"{c.key_type} {c.key_bits} bits < {minimum}" + ("" if where == "leaf" else f" ({where})")
    return ""


def _weak_signature(infos: Sequence[CertInfo]) -> str:
    for where, c in _judged(infos):
        if c.signature_hash in WEAK_HASHES:
            return c.signature_algorithm + ("" if where == "leaf" else f" ({where})")
    return ""


def summarize(report: ChainReport) -> str:
    """One line for a human: who, issued by whom, until when, key and signature."""
    if report.leaf is None:
        return f"no certificate ({report.parse_error})" if report.parse_error else "no certificate"
    c = report.leaf
    key = f"{c.key_type} {c.curve or c.key_bits}" if c.key_type == "EC" else f"{c.key_type} {c.key_bits}"
    if c.key_type in ("Ed25519", "Ed448"):
        key = c.key_type
    if report.expired:
        when = f"expired {c.not_after.date().isoformat()} ({-report.days_left} days ago)"
    elif report.not_yet_valid:
        when = f"not valid before {c.not_before.date().isoformat()}"
    else:
        when = f"valid until {c.not_after.date().isoformat()} ({report.days_left} days)"
    issuer = "self-signed" if c.self_signed else f"issuer {c.issuer}"
    return f"{c.subject}, {issuer}, {when}, {key}, {c.signature_algorithm}"
