"""DKIM keys for lab scenarios, generated fresh at every lab start.

A scenario asks for a key with a TXT placeholder instead of a key record:

    s1._domainkey  TXT "{dkim:rsa2048}"
    k1._domainkey  TXT "{dkim:rsa1024; t=y}"      ; extra tags go before p=

Kinds: rsa2048, rsa1024, rsa512 (too short: made from two random primes,
since cryptography refuses to generate it), ed25519, revoked (empty p=).
`fill(zone)` replaces every placeholder with `v=DKIM1; k=...; [extra;] p=...`,
split into 255-byte strings as a TXT record must be.  Private keys are kept
in memory only: nothing in the lab signs mail.
"""

from __future__ import annotations

import base64
import re
import secrets

import dns.rdata
import dns.rdataclass
import dns.rdatatype
import dns.zone
from cryptography.hazmat.primitives.asymmetric import ed25519, rsa
from cryptography.hazmat.primitives.serialization import Encoding, PublicFormat

from deliverck.lab.errors import LabUnavailable

PLACEHOLDER = re.compile(r"^\{dkim:([a-z0-9]+)\s*(?:;\s*([^{}]*))?\}$")
KINDS = ("rsa2048", "rsa1024", "rsa512", "ed25519", "revoked")


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


def public_key(kind: str) -> tuple[str, str]:
    """(k= value, base64 p= value) for a fresh key of `kind`."""
    if kind == "revoked":
        return "rsa", ""
    if kind == "ed25519":
        raw = ed25519.Ed25519PrivateKey.generate().public_key().public_bytes(Encoding.Raw, PublicFormat.Raw)
        return "ed25519", base64.b64encode(raw).decode()
    if kind in ("rsa2048", "rsa1024"):
        key = rsa.generate_private_key(65537, int(kind[3:])).public_key()
    elif kind == "rsa512":
        while True:
            n = _probable_prime(256) * _probable_prime(256)
            if n.bit_length() == 512:
                break
        key = rsa.RSAPublicNumbers(65537, n).public_key()
    else:
        raise LabUnavailable(f"unknown DKIM key kind {kind!r} in a {{dkim:...}} placeholder (use one of {', '.join(KINDS)})")
    der = key.public_bytes(Encoding.DER, PublicFormat.SubjectPublicKeyInfo)
    return "rsa", base64.b64encode(der).decode()


def record(kind: str, extra: str = "") -> str:
    k, p = public_key(kind)
    tags = ["v=DKIM1", f"k={k}"] + [t.strip() for t in extra.split(";") if t.strip()] + [f"p={p}"]
    return "; ".join(tags)


def _txt(text: str) -> str:
    chunks = [text[i:i + 255] for i in range(0, len(text), 255)] or [""]
    return " ".join(f'"{c}"' for c in chunks)


def fill(zone: dns.zone.Zone) -> int:
    """Replace every {dkim:...} TXT placeholder in `zone`; return how many were replaced."""
    count = 0
    for _name, node in zone.nodes.items():
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
                text = record(m.group(1), m.group(2) or "")
                rd = dns.rdata.from_text(dns.rdataclass.IN, dns.rdatatype.TXT, _txt(text))
            new.append(rd)
        if changed:
            ttl = rds.ttl
            rds.clear()
            for rd in new:
                rds.add(rd, ttl)
    return count
