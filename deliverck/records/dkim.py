"""DKIM public key records (RFC 6376 section 3.6.1, RFC 8463 for ed25519).

`parse_key_record(text)` checks the syntax and raises `DkimSyntaxError` for a
record receivers would discard; everything that parses comes back as a
`DkimKey` whose properties say whether receivers can use it: revoked (empty
p=), testing (t=y), an unknown key type, no usable hash algorithm, a service
type that excludes email, a key that does not load, and the key's strength.
"""

from __future__ import annotations

import base64
import binascii
from dataclasses import dataclass

from cryptography.hazmat.primitives.asymmetric import ed25519, rsa
from cryptography.hazmat.primitives.serialization import (
    Encoding,
    PublicFormat,
    load_der_public_key,
)

from deliverck.records import tags as taglist

KNOWN_TAGS = ("v", "g", "h", "k", "n", "p", "s", "t")
KEY_TYPES = ("rsa", "ed25519")
HASHES = ("sha1", "sha256")
RSA_MIN_BITS = 1024         # RFC 8301 3.2: verifiers MUST NOT consider shorter keys valid
RSA_GOOD_BITS = 2048        # RFC 8301 3.2: signers SHOULD use at least 2048 bits


class DkimSyntaxError(taglist.TagListError):
    """The key record is not a valid DKIM key record."""


@dataclass(frozen=True)
class DkimKey:
    text: str
    version: str = ""                 # "" when v= is absent (allowed)
    key_type: str = "rsa"             # k=, lower-cased
    hashes: tuple[str, ...] = ()      # h=; () means all
    services: tuple[str, ...] = ("*",)
    flags: tuple[str, ...] = ()       # t=
    notes_tag: str = ""               # n=
    public_key: str = ""              # p=, whitespace removed
    unknown_tags: tuple[str, ...] = ()
    syntax_notes: tuple[str, ...] = ()
    bits: int = 0                     # key size: RSA modulus bits, 256 for ed25519
    key_error: str = ""               # why the p= data does not give a key of type k=
    key_format: str = ""              # "spki", "pkcs1" (RSAPublicKey, accepted by verifiers) or "raw"

    @property
    def revoked(self) -> bool:
        return self.public_key == ""

    @property
    def testing(self) -> bool:
        return "y" in self.flags

    @property
    def strict(self) -> bool:
        return "s" in self.flags

    @property
    def known_type(self) -> bool:
        return self.key_type in KEY_TYPES

    @property
    def usable_hashes(self) -> tuple[str, ...]:
        return tuple(h for h in (self.hashes or HASHES) if h in HASHES)

    @property
    def sha1_only(self) -> bool:
        return self.usable_hashes == ("sha1",)

    @property
    def for_email(self) -> bool:
        return "*" in self.services or "email" in self.services

    @property
    def strength(self) -> str:
        """"ok", "weak" (RSA 1024..2047) or "too_short" (RSA < 1024); "" when no key loaded."""
        if self.key_error or self.revoked or not self.bits:
            return ""
        if self.key_type == "ed25519":
            return "ok"
        if self.bits < RSA_MIN_BITS:
            return "too_short"
        if self.bits < RSA_GOOD_BITS:
            return "weak"
        return "ok"

    @property
    def problem(self) -> str:
        """Why receivers cannot verify signatures with this key; "" when they can."""
        if self.revoked:
            return "revoked (empty p=)"
        if not self.known_type:
            return f"unknown key type k={self.key_type}"
        if self.key_error:
            return self.key_error
        if not self.usable_hashes:
            return f"no hash algorithm receivers know in h={':'.join(self.hashes)}"
        if self.sha1_only:
            return "h=sha1 only (RFC 8301: verifiers must not accept rsa-sha1 signatures)"
        if not self.for_email:
            return f"service type s={':'.join(self.services)} excludes email"
        if self.strength == "too_short":
            return f"RSA key of {self.bits} bits (receivers ignore keys under {RSA_MIN_BITS} bits)"
        return ""

    @property
    def usable(self) -> bool:
        return not self.problem

    def describe(self) -> str:
        if self.revoked:
            return "revoked"
        if self.bits:
            return f"{self.key_type} {self.bits} bits"
        return self.key_type


def parse_key_record(text: str) -> DkimKey:
    tl = taglist.parse(text, error=DkimSyntaxError)
    t = tl.tags
    version = ""
    if "v" in t:
        if tl.order[0] != "v":
            raise DkimSyntaxError("v= must be the first tag of a key record (RFC 6376 3.6.1)",
                                  text.find(tl.raw_names["v"]))
        if t["v"] != "DKIM1":
            raise DkimSyntaxError(f"v={t['v']!r}: the only version is DKIM1 (case-sensitive)",
                                  text.find(tl.raw_names["v"]))
        version = t["v"]
    if "p" not in t:
        raise DkimSyntaxError("no p= tag: the public key is required (an empty p= revokes the key)")
    key_type = t.get("k", "rsa").lower() or "rsa"
    hashes = tuple(h.lower() for h in taglist.split_list(t["h"])) if "h" in t else ()
    services = tuple(s.lower() for s in taglist.split_list(t["s"])) if "s" in t else ("*",)
    flags = tuple(f.lower() for f in taglist.split_list(t["t"])) if "t" in t else ()
    p = taglist.strip_ws(t["p"])
    bits, key_error, fmt = 0, "", ""
    if p and key_type in KEY_TYPES:
        bits, key_error, fmt = load_key(key_type, p)
    return DkimKey(
        text=text, version=version, key_type=key_type, hashes=hashes, services=services, flags=flags,
        notes_tag=t.get("n", ""), public_key=p,
        unknown_tags=tuple(tl.raw_names[n] for n in tl.order if n not in KNOWN_TAGS),
        syntax_notes=tl.notes, bits=bits, key_error=key_error, key_format=fmt,
    )


def load_key(key_type: str, p: str) -> tuple[int, str, str]:
    """(bits, error, format) for the base64 key data `p` of type `key_type`."""
    try:
        data = base64.b64decode(p, validate=True)
    except (binascii.Error, ValueError) as e:
        return 0, f"p= is not valid base64 ({e})", ""
    if key_type == "ed25519":
        if len(data) != 32:
            return 0, f"an ed25519 key is 32 bytes, p= holds {len(data)} (RFC 8463 4.2)", ""
        try:
            ed25519.Ed25519PublicKey.from_public_bytes(data)
        except ValueError as e:
            return 0, f"p= is not an ed25519 public key ({e})", ""
        return 256, "", "raw"
    fmt = "spki"
    try:
        key = load_der_public_key(data)
    except (ValueError, TypeError):
        try:
            key = load_der_public_key(_spki_from_pkcs1(data))
            fmt = "pkcs1"
        except (ValueError, TypeError, _DerError):
            return 0, "p= is not a DER public key (SubjectPublicKeyInfo or RSAPublicKey)", ""
    except Exception as e:  # cryptography raises UnsupportedAlgorithm for exotic keys
        return 0, f"p= does not load as a public key ({type(e).__name__})", ""
    if not isinstance(key, rsa.RSAPublicKey):
        return 0, f"k=rsa, but p= holds a {type(key).__name__.replace('PublicKey', '').lstrip('_')} key", ""
    if fmt == "spki":
        spki = key.public_bytes(Encoding.DER, PublicFormat.SubjectPublicKeyInfo)
        fmt = "spki" if spki == data else "pkcs1"
    return key.key_size, "", fmt


class _DerError(ValueError):
    pass


def _der_len(n: int) -> bytes:
    if n < 0x80:
        return bytes([n])
    b = n.to_bytes((n.bit_length() + 7) // 8, "big")
    return bytes([0x80 | len(b)]) + b


def _spki_from_pkcs1(der: bytes) -> bytes:
    """Wrap a PKCS#1 RSAPublicKey in a SubjectPublicKeyInfo (rsaEncryption)."""
    if not der or der[0] != 0x30:
        raise _DerError("not a DER SEQUENCE")
    alg = bytes.fromhex("300d06092a864886f70d0101010500")
    bitstring = b"\x03" + _der_len(len(der) + 1) + b"\x00" + der
    body = alg + bitstring
    return b"\x30" + _der_len(len(body)) + body
