"""What an X.509 certificate says, read into plain facts (CertInfo) that tls.py judges.

Every field comes from a remote server: a field the parser cannot decode becomes a note in the
fact, never an exception, and text is kept as sent (escaping is the renderer's job).
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass

from cryptography import x509
from cryptography.exceptions import InvalidSignature, UnsupportedAlgorithm
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import dsa, ec, ed448, ed25519, padding, rsa
from cryptography.x509.oid import NameOID


@dataclass(frozen=True)
class CertInfo:
    """One certificate, as facts; text fields are the server's, uninterpreted."""

    subject: str
    issuer: str
    serial: str
    not_before: dt.datetime
    not_after: dt.datetime
    dns_names: tuple[str, ...]
    ip_addresses: tuple[str, ...]
    common_names: tuple[str, ...]
    key_type: str
    key_bits: int
    curve: str
    signature_algorithm: str
    signature_hash: str
    is_ca: bool
    self_issued: bool
    self_signed: bool
    sha256: str



def read(cert: x509.Certificate) -> CertInfo:
    key_type, key_bits, curve = _key(cert)
    sig_alg, sig_hash = _signature(cert)
    subject = name_text(lambda: cert.subject, "subject")
    issuer = name_text(lambda: cert.issuer, "issuer")
    try:
        self_issued = cert.subject == cert.issuer
    except Exception:  # noqa: BLE001
        self_issued = False
    return CertInfo(
        subject=subject,
        issuer=issuer,
        serial=_serial(cert),
        not_before=cert.not_valid_before_utc,
        not_after=cert.not_valid_after_utc,
        dns_names=tuple(n.lower() for n in _san(cert, x509.DNSName)),
        ip_addresses=tuple(str(a) for a in _san(cert, x509.IPAddress)),
        common_names=_common_names(cert),
        key_type=key_type,
        key_bits=key_bits,
        curve=curve,
        signature_algorithm=sig_alg,
        signature_hash=sig_hash,
        is_ca=_is_ca(cert),
        self_issued=self_issued,
        self_signed=self_issued and _signed_by(cert, cert),
        sha256=cert.fingerprint(hashes.SHA256()).hex(),
    )


def name_text(get, what: str) -> str:
    try:
        return get().rfc4514_string()
    except Exception as e:  # noqa: BLE001 - undecodable attribute values must not stop the analysis
        return f"<undecodable {what}: {one_line(e)}>"


def _serial(cert: x509.Certificate) -> str:
    try:
        return format(cert.serial_number, "x")
    except Exception:  # noqa: BLE001
        return ""


def _san(cert: x509.Certificate, kind) -> list:
    try:
        ext = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName)
    except x509.ExtensionNotFound:
        return []
    return list(ext.value.get_values_for_type(kind))


def _common_names(cert: x509.Certificate) -> tuple[str, ...]:
    try:
        attrs = cert.subject.get_attributes_for_oid(NameOID.COMMON_NAME)
    except Exception:  # noqa: BLE001
        return ()
    out = []
    for a in attrs:
        v = a.value
        out.append(v if isinstance(v, str) else v.decode("utf-8", "backslashreplace"))
    return tuple(out)


def _is_ca(cert: x509.Certificate) -> bool:
    try:
        return bool(cert.extensions.get_extension_for_class(x509.BasicConstraints).value.ca)
    except x509.ExtensionNotFound:
        return False


def _key(cert: x509.Certificate) -> tuple[str, int, str]:
    try:
        key = cert.public_key()
    except (UnsupportedAlgorithm, ValueError):
        try:
            return cert.public_key_algorithm_oid.dotted_string, 0, ""
        except Exception:  # noqa: BLE001
            return "unknown", 0, ""
    if isinstance(key, rsa.RSAPublicKey):
        return "RSA", key.key_size, ""
    if isinstance(key, ec.EllipticCurvePublicKey):
        return "EC", key.curve.key_size, key.curve.name
    if isinstance(key, ed25519.Ed25519PublicKey):
        return "Ed25519", 256, ""
    if isinstance(key, ed448.Ed448PublicKey):
        return "Ed448", 456, ""
    if isinstance(key, dsa.DSAPublicKey):
        return "DSA", key.key_size, ""
    return type(key).__name__, 0, ""


def _signature(cert: x509.Certificate) -> tuple[str, str]:
    oid = cert.signature_algorithm_oid
    name = getattr(oid, "_name", "") or ""
    if not name or name == "Unknown OID":
        name = oid.dotted_string
    try:
        h = cert.signature_hash_algorithm
    except UnsupportedAlgorithm:
        h = None
    return name, (h.name if h is not None else "")


def _signed_by(cert: x509.Certificate, issuer: x509.Certificate) -> bool:
    try:
        cert.verify_directly_issued_by(issuer)
        return True
    except InvalidSignature:
        return False
    except (ValueError, TypeError, UnsupportedAlgorithm):
        pass
    # verify_directly_issued_by refuses SHA-1 and MD5, which old self-signed roots still use
    try:
        if cert.issuer != issuer.subject:
            return False
        key, params = issuer.public_key(), cert.signature_algorithm_parameters
        sig, tbs, h = cert.signature, cert.tbs_certificate_bytes, cert.signature_hash_algorithm
        # A key whose parameters do not match its kind cannot have signed the certificate.
        if isinstance(key, rsa.RSAPublicKey) and h is not None and isinstance(params, (padding.PSS, padding.PKCS1v15)):
            key.verify(sig, tbs, params, h)
        elif isinstance(key, ec.EllipticCurvePublicKey) and isinstance(params, ec.ECDSA):
            key.verify(sig, tbs, params)
        elif isinstance(key, dsa.DSAPublicKey) and h is not None:
            key.verify(sig, tbs, h)
        else:
            return False
    except (InvalidSignature, ValueError, TypeError, UnsupportedAlgorithm):
        return False
    return True



def one_line(e: BaseException) -> str:
    text = " ".join(str(e).split()) or type(e).__name__
    return text[:300]
