"""The lab CA and the certificates its SMTP peers serve, made fresh at every start.

deliverck trusts the CA only when given `--ca-file`; nothing here touches the
system trust store.  Profiles make one thing wrong at a time: a window in the
past or the future, a window about to close, the wrong names, no CA at all, a
small key, a SHA-1 signature.
"""

from __future__ import annotations

import datetime
import ipaddress
import shutil
import subprocess
from dataclasses import dataclass
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, rsa
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

from deliverck.lab.errors import LabUnavailable

PROFILES = ("valid", "expired", "not-yet-valid", "expiring", "self-signed")
KEYS = ("ec256", "rsa2048", "rsa1024")
SIGNATURES = ("sha256", "sha1")
EXPIRING_DAYS = 7                  # well inside deliverck's default --cert-warn-days (21)
DAY = datetime.timedelta(days=1)


@dataclass(frozen=True)
class LabCA:
    cert: x509.Certificate
    key: rsa.RSAPrivateKey
    cert_file: Path
    key_file: Path


def _name(common_name: str) -> x509.Name:
    return x509.Name([x509.NameAttribute(NameOID.ORGANIZATION_NAME, "deliverck lab"),
                      x509.NameAttribute(NameOID.COMMON_NAME, common_name[:64])])


def _pem_key(key) -> bytes:
    return key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                             serialization.NoEncryption())


def _write(path: Path, data: bytes, private: bool = False) -> None:
    path.write_bytes(data)
    if private:
        path.chmod(0o600)


def new_key(kind: str):
    if kind == "ec256":
        return ec.generate_private_key(ec.SECP256R1())
    if kind in ("rsa2048", "rsa1024"):
        return rsa.generate_private_key(public_exponent=65537, key_size=int(kind[3:]))
    raise LabUnavailable(f"unknown certificate key kind {kind!r} (known: {KEYS})")


def make_ca(directory: Path, now: datetime.datetime | None = None) -> LabCA:
    """A fresh root CA (RSA 2048, so it can also sign with SHA-1 for the weak-signature peer)."""
    now = now or datetime.datetime.now(datetime.UTC)
    directory.mkdir(parents=True, exist_ok=True)
    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    name = _name(f"deliverck lab root CA {now:%Y-%m-%d %H:%M:%S}")
    ski = x509.SubjectKeyIdentifier.from_public_key(key.public_key())
    cert = (x509.CertificateBuilder()
            .subject_name(name).issuer_name(name).public_key(key.public_key())
            .serial_number(x509.random_serial_number())
            # Covers every leaf profile (expired ones too), so only the leaf is out of date.
            .not_valid_before(now - 365 * DAY).not_valid_after(now + 3650 * DAY)
            .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
            .add_extension(x509.KeyUsage(digital_signature=False, content_commitment=False,
                                         key_encipherment=False, data_encipherment=False,
                                         key_agreement=False, key_cert_sign=True, crl_sign=True,
                                         encipher_only=False, decipher_only=False), critical=True)
            .add_extension(ski, critical=False)
            .sign(key, hashes.SHA256()))
    ca = LabCA(cert, key, directory / "ca.pem", directory / "ca.key")
    _write(ca.cert_file, cert.public_bytes(serialization.Encoding.PEM))
    _write(ca.key_file, _pem_key(key), private=True)
    return ca


def _san(names: tuple[str, ...]) -> x509.SubjectAlternativeName:
    entries: list[x509.GeneralName] = []
    for n in names:
        literal = n[1:-1] if n.startswith("[") and n.endswith("]") else n
        try:
            entries.append(x509.IPAddress(ipaddress.ip_address(literal)))
        except ValueError:
            entries.append(x509.DNSName(n.rstrip(".")))
    return x509.SubjectAlternativeName(entries)


def window(profile: str, now: datetime.datetime) -> tuple[datetime.datetime, datetime.datetime]:
    if profile == "expired":
        return now - 90 * DAY, now - 2 * DAY
    if profile == "not-yet-valid":
        return now + 30 * DAY, now + 120 * DAY
    if profile == "expiring":
        return now - 60 * DAY, now + EXPIRING_DAYS * DAY
    if profile in ("valid", "self-signed"):
        return now - DAY, now + 90 * DAY
    raise LabUnavailable(f"unknown certificate profile {profile!r} (known: {PROFILES})")


def issue(ca: LabCA, names: tuple[str, ...], cert_file: Path, key_file: Path, *, profile: str = "valid",
          key_kind: str = "ec256", signature: str = "sha256",
          now: datetime.datetime | None = None) -> x509.Certificate:
    """Write a leaf certificate for `names` (first one is the CN) and its key; return the certificate."""
    if not names:
        raise LabUnavailable("a lab certificate needs at least one name")
    if signature not in SIGNATURES:
        raise LabUnavailable(f"unknown certificate signature {signature!r} (known: {SIGNATURES})")
    now = now or datetime.datetime.now(datetime.UTC)
    key = new_key(key_kind)
    not_before, not_after = window(profile, now)
    subject = _name(names[0].rstrip("."))
    self_signed = profile == "self-signed"
    builder = (x509.CertificateBuilder()
               .subject_name(subject)
               .issuer_name(subject if self_signed else ca.cert.subject)
               .public_key(key.public_key())
               .serial_number(x509.random_serial_number())
               .not_valid_before(not_before).not_valid_after(not_after)
               .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
               .add_extension(_san(names), critical=False)
               .add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.SERVER_AUTH]), critical=False))
    if not self_signed:
        builder = builder.add_extension(x509.AuthorityKeyIdentifier.from_issuer_public_key(ca.key.public_key()),
                                        critical=False)
    _write(key_file, _pem_key(key), private=True)
    if signature == "sha1":
        if self_signed:
            raise LabUnavailable("a SHA-1 signature is only made by the lab CA, not self-signed")
        cert = _sign_sha1(ca, builder, key, cert_file, not_before, not_after)
    else:
        cert = builder.sign(key if self_signed else ca.key, hashes.SHA256())
        _write(cert_file, cert.public_bytes(serialization.Encoding.PEM))
    return cert


def _sign_sha1(ca: LabCA, builder: x509.CertificateBuilder, key, cert_file: Path,
               not_before: datetime.datetime, not_after: datetime.datetime) -> x509.Certificate:
    """cryptography refuses to sign with SHA-1; the openssl command still does (from a CSR we make)."""
    openssl = shutil.which("openssl")
    if openssl is None:
        raise LabUnavailable("a SHA-1 signed lab certificate needs the openssl command: apt-get install openssl")
    draft = builder.sign(ca.key, hashes.SHA256())
    csr = (x509.CertificateSigningRequestBuilder().subject_name(draft.subject)
           .sign(key, hashes.SHA256()))
    work = cert_file.with_suffix(".sha1")
    work.mkdir(exist_ok=True)
    (work / "req.pem").write_bytes(csr.public_bytes(serialization.Encoding.PEM))
    san = ",".join(f"DNS:{n.value}" if isinstance(n, x509.DNSName) else f"IP:{n.value}"
                   for n in draft.extensions.get_extension_for_class(x509.SubjectAlternativeName).value)
    (work / "ext.cnf").write_text(f"basicConstraints=critical,CA:FALSE\nsubjectAltName={san}\n"
                                  "extendedKeyUsage=serverAuth\nauthorityKeyIdentifier=keyid\n")
    days = max(1, (not_after - not_before).days)
    r = subprocess.run([openssl, "x509", "-req", "-in", str(work / "req.pem"), "-CA", str(ca.cert_file),
                        "-CAkey", str(ca.key_file), "-set_serial", str(x509.random_serial_number()),
                        "-sha1", "-days", str(days), "-extfile", str(work / "ext.cnf"),
                        "-out", str(cert_file)], capture_output=True, text=True)
    shutil.rmtree(work, ignore_errors=True)
    if r.returncode != 0:
        raise LabUnavailable(f"openssl could not make the SHA-1 lab certificate: "
                             f"{(r.stderr or r.stdout).strip().splitlines()[-1:]}")
    return x509.load_pem_x509_certificate(cert_file.read_bytes())
