"""The TLS side of `deliverck listen`: the server context for STARTTLS, from the user's certificate
or a self-signed one made for this run.

A sending server that meets a self-signed certificate still encrypts: opportunistic TLS (RFC 3207;
Postfix `smtp_tls_security_level = may`, Exchange, Gmail) does not verify the receiver, so the
session shows the TLS version and cipher the sender really negotiates.  Only a sender configured
to verify (DANE, MTA-STS enforce, `secure`) would refuse it, and then the user gives --tls-cert.
"""

from __future__ import annotations

import datetime
import os
import ssl
import tempfile
import warnings
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import rsa
from cryptography.x509.oid import NameOID

from deliverck.errors import UsageError

CERT_LIFETIME = datetime.timedelta(days=1)


def server_context(cert: Path | None, key: Path | None, hostname: str) -> tuple[ssl.SSLContext, str]:
    """The STARTTLS context and what to tell the user about it ("given certificate ...", "self-signed for NAME")."""
    if (cert is None) != (key is None):
        raise UsageError("--tls-cert and --tls-key go together: give both (PEM files), or neither for a "
                         "self-signed certificate")
    ctx = _base_context()
    if cert is not None and key is not None:
        for flag, path in (("--tls-cert", cert), ("--tls-key", key)):
            if not path.is_file():
                raise UsageError(f"{flag} {path}: no such file; give a PEM file")
        try:
            ctx.load_cert_chain(str(cert), str(key))
        except (ssl.SSLError, OSError, ValueError) as e:
            raise UsageError(f"--tls-cert {cert} / --tls-key {key}: cannot be loaded as a PEM certificate chain and "
                             f"its private key ({_reason(e)}); check that the key matches the certificate") from None
        return ctx, f"given certificate {cert}"
    _load_self_signed(ctx, hostname)
    return ctx, f"self-signed for {hostname}"


def _base_context() -> ssl.SSLContext:
    """Every version and cipher the local OpenSSL can still speak.

    The listener measures the sender: if it refused TLS 1.0/1.1 or old ciphers, such a sender would
    fall back to plain text (or defer) and the report would say "no TLS" where the truth is "TLS 1.0".
    The server still picks the best both sides support, so modern senders get TLS 1.3.
    """
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)
        try:
            ctx.minimum_version = ssl.TLSVersion.TLSv1
            ctx.set_ciphers("DEFAULT:@SECLEVEL=0")
        except (ValueError, ssl.SSLError):     # an OpenSSL built without them: keep its defaults
            ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    return ctx


def _reason(e: BaseException) -> str:
    text = getattr(e, "reason", None) or getattr(e, "strerror", None) or str(e)
    return " ".join(str(text).split())[:200]


def self_signed(hostname: str) -> tuple[bytes, bytes]:
    """A one-day RSA-2048 certificate for `hostname` (CN and SAN) and its key, PEM.  RSA rather than
    ECDSA: some senders still offer only RSA cipher suites."""
    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    name = x509.Name([x509.NameAttribute(NameOID.ORGANIZATION_NAME, "deliverck listen"),
                      x509.NameAttribute(NameOID.COMMON_NAME, hostname[:64])])
    now = datetime.datetime.now(datetime.UTC)
    san: list[x509.GeneralName] = []
    try:
        san.append(x509.DNSName(hostname))
    except ValueError:
        pass
    builder = (x509.CertificateBuilder().subject_name(name).issuer_name(name).public_key(key.public_key())
               .serial_number(x509.random_serial_number())
               .not_valid_before(now - datetime.timedelta(minutes=5)).not_valid_after(now + CERT_LIFETIME))
    if san:
        builder = builder.add_extension(x509.SubjectAlternativeName(san), critical=False)
    cert = builder.sign(key, hashes.SHA256())
    key_pem = key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                serialization.NoEncryption())
    return cert.public_bytes(serialization.Encoding.PEM), key_pem


def _load_self_signed(ctx: ssl.SSLContext, hostname: str) -> None:
    """Python's ssl loads keys only from files: write them into a private directory (0700, files
    0600), load, and remove them at once, so the key lives on disk for milliseconds and then only
    in OpenSSL's memory."""
    cert_pem, key_pem = self_signed(hostname)
    with tempfile.TemporaryDirectory(prefix="deliverck-listen-") as tmp:
        os.chmod(tmp, 0o700)
        cert_file, key_file = Path(tmp, "cert.pem"), Path(tmp, "key.pem")
        fd = os.open(key_file, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        with os.fdopen(fd, "wb") as f:
            f.write(key_pem)
        cert_file.write_bytes(cert_pem)
        ctx.load_cert_chain(str(cert_file), str(key_file))
