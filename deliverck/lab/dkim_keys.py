"""DKIM keys for lab scenarios, generated fresh at every lab start.

A scenario asks for a key with a TXT placeholder instead of a key record:

    s1._domainkey  TXT "{dkim:rsa2048}"
    k1._domainkey  TXT "{dkim:rsa1024; t=y}"      ; extra tags go before p=

Kinds: rsa2048, rsa1024, rsa512 (too short: made from two random primes,
since cryptography refuses to generate it), ed25519, revoked (empty p=).
`fill(zone)` replaces every placeholder with `v=DKIM1; k=...; [extra;] p=...`,
split into 255-byte strings as a TXT record must be.

Private keys stay in this process's memory (`PRIVATE`, by domain and
selector) until `export(lab_dir)` writes them to
<lab dir>/dkim/<domain>/<selector>.pem (directory 0700, files 0600; the lab
dir is private to one run).  Only the lab's test sender (sendtest.py) reads
them, to sign its messages as the domain's real signer would; deliverck
itself never signs or sends mail.
"""

from __future__ import annotations

import base64
import os
import re
import secrets
from pathlib import Path

import dns.rdata
import dns.rdataclass
import dns.rdatatype
import dns.zone
from cryptography.hazmat.primitives.asymmetric import ed25519, rsa
from cryptography.hazmat.primitives.serialization import (
    Encoding,
    NoEncryption,
    PrivateFormat,
    PublicFormat,
)

from deliverck.lab.errors import LabUnavailable

PLACEHOLDER = re.compile(r"^\{dkim:([a-z0-9]+)\s*(?:;\s*([^{}]*))?\}$")
KINDS = ("rsa2048", "rsa1024", "rsa512", "ed25519", "revoked")
EXPORT_DIR = "dkim"                # under the lab dir: dkim/<domain>/<selector>.pem

# (domain, selector) -> private key PEM of every key fill() made in this process (none for revoked).
PRIVATE: dict[tuple[str, str], bytes] = {}


def _probable_prime(bits: int) -> int:
    while True:
        n = secrets.randbits(bits) | (1 << (bits - 1)) | (1 << (bits - 2)) | 1
        if _miller_rabin(n):
            return n


def _miller_rabin(n: int, rounds: int = 32) -> bool:
    if n < 4:
        return n in (2, 3)
    for p in (3, 5, 7, 11, 13, 17, 19, 23, 29, 31, 37):
        if n % p == 0:
            return n == p
    d, r = n - 1, 0
    while d % 2 == 0:
        d, r = d // 2, r + 1
    for _ in range(rounds):
        x = pow(secrets.randbelow(n - 3) + 2, d, n)
        if x in (1, n - 1):
            continue
        for _ in range(r - 1):
            x = pow(x, 2, n)
            if x == n - 1:
                break
        else:
            return False
    return True


def _rsa512() -> rsa.RSAPrivateKey:
    """A 512-bit RSA key from two random primes (cryptography refuses to generate one)."""
    e = 65537
    while True:
        p, q = _probable_prime(256), _probable_prime(256)
        if p != q and (p * q).bit_length() == 512 and (p - 1) % e and (q - 1) % e:
            break
    d = pow(e, -1, (p - 1) * (q - 1))
    public = rsa.RSAPublicNumbers(e, p * q)
    numbers = rsa.RSAPrivateNumbers(p, q, d, rsa.rsa_crt_dmp1(d, p), rsa.rsa_crt_dmq1(d, q),
                                    rsa.rsa_crt_iqmp(p, q), public)
    return numbers.private_key(unsafe_skip_rsa_key_validation=True)


def key_pair(kind: str) -> tuple[str, str, bytes | None]:
    """(k= value, base64 p= value, private key PEM or None) for a fresh key of `kind`.

    RSA keys are written as PKCS#1 ("RSA PRIVATE KEY"), which every DKIM signer reads (dkimpy,
    OpenDKIM); Ed25519 as PKCS#8 (dkimpy wants the raw 32 bytes: see sendtest.signing_key)."""
    if kind == "revoked":
        return "rsa", "", None
    if kind == "ed25519":
        private = ed25519.Ed25519PrivateKey.generate()
        raw = private.public_key().public_bytes(Encoding.Raw, PublicFormat.Raw)
        pem = private.private_bytes(Encoding.PEM, PrivateFormat.PKCS8, NoEncryption())
        return "ed25519", base64.b64encode(raw).decode(), pem
    if kind in ("rsa2048", "rsa1024"):
        key = rsa.generate_private_key(65537, int(kind[3:]))
    elif kind == "rsa512":
        key = _rsa512()
    else:
        raise LabUnavailable(f"unknown DKIM key kind {kind!r} in a {{dkim:...}} placeholder (use one of {', '.join(KINDS)})")
    der = key.public_key().public_bytes(Encoding.DER, PublicFormat.SubjectPublicKeyInfo)
    pem = key.private_bytes(Encoding.PEM, PrivateFormat.TraditionalOpenSSL, NoEncryption())
    return "rsa", base64.b64encode(der).decode(), pem


def public_key(kind: str) -> tuple[str, str]:
    """(k= value, base64 p= value) for a fresh key of `kind`."""
    k, p, _pem = key_pair(kind)
    return k, p


def _record(kind: str, extra: str = "") -> tuple[str, bytes | None]:
    k, p, pem = key_pair(kind)
    tags = ["v=DKIM1", f"k={k}"] + [t.strip() for t in extra.split(";") if t.strip()] + [f"p={p}"]
    return "; ".join(tags), pem


def record(kind: str, extra: str = "") -> str:
    return _record(kind, extra)[0]


def _selector_domain(name: dns.name.Name, origin: dns.name.Name | None) -> tuple[str, str] | None:
    """(domain, selector) of <selector>._domainkey.<domain>, or None for any other owner name."""
    if not name.is_absolute() and origin is not None:
        name = name.derelativize(origin)
    labels = [label.decode("ascii", "replace").lower() for label in name.labels if label]
    if "_domainkey" not in labels:
        return None
    i = labels.index("_domainkey")
    if i == 0 or i == len(labels) - 1:
        return None
    return ".".join(labels[i + 1:]), ".".join(labels[:i])


def _txt(text: str) -> str:
    chunks = [text[i:i + 255] for i in range(0, len(text), 255)] or [""]
    return " ".join(f'"{c}"' for c in chunks)


def fill(zone: dns.zone.Zone) -> int:
    """Replace every {dkim:...} TXT placeholder in `zone`; return how many were replaced."""
    count = 0
    for name, node in zone.nodes.items():
        rds = node.get_rdataset(dns.rdataclass.IN, dns.rdatatype.TXT)
        if rds is None:
            continue
        new = []
        changed = False
        for rd in rds:
            text = b"".join(rd.strings).decode("ascii", "replace")
            m = PLACEHOLDER.match(text)
            if m:
                changed = True
                count += 1
                text, pem = _record(m.group(1), m.group(2) or "")
                where = _selector_domain(name, zone.origin)
                if pem is not None and where is not None:
                    PRIVATE[where] = pem
                rd = dns.rdata.from_text(dns.rdataclass.IN, dns.rdatatype.TXT, _txt(text))
            new.append(rd)
        if changed:
            ttl = rds.ttl
            rds.clear()
            for rd in new:
                rds.add(rd, ttl)
    return count


def export(lab_dir: Path | str, keys: dict[tuple[str, str], bytes] | None = None) -> list[Path]:
    """Write every private key fill() made (or `keys`) to <lab_dir>/dkim/<domain>/<selector>.pem.

    Files are created 0600 (O_EXCL after removing a stale one, so no other mode ever exists on
    disk) in 0700 directories; returns the paths written."""
    base = Path(lab_dir) / EXPORT_DIR
    written = []
    for (domain, selector), pem in sorted((PRIVATE if keys is None else keys).items()):
        if not domain or "/" in domain or "/" in selector or domain.startswith(".") or selector.startswith("."):
            continue                  # never a path outside the export directory
        d = base / domain
        d.mkdir(mode=0o700, parents=True, exist_ok=True)
        base.chmod(0o700)
        d.chmod(0o700)
        path = d / f"{selector}.pem"
        path.unlink(missing_ok=True)
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        with os.fdopen(fd, "wb") as f:
            f.write(pem)
        written.append(path)
    return written


def exported(lab_dir: Path | str, domain: str, selector: str) -> Path:
    """Where export() put the private key of <selector>._domainkey.<domain>."""
    return Path(lab_dir) / EXPORT_DIR / domain.rstrip(".").lower() / f"{selector.lower()}.pem"
