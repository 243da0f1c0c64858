"""TLSA records and DANE matching for SMTP (RFC 6698, RFC 7671, RFC 7672).

Pure functions, no network: the caller hands over the TLSA records it looked
up and the certificate chain the SMTP session recorded (DER, leaf first), and
everything is decided from those bytes, the MX host name and a clock.

SMTP uses only two certificate usages (RFC 7672 3.1.3): DANE-EE(3), which pins
the leaf (its names and dates are ignored), and DANE-TA(2), which pins a trust
anchor the server sends in its chain (the leaf must chain to it, must be
within its validity and must carry the MX host name, RFC 7672 3.2).  PKIX-TA(0)
and PKIX-EE(1) are unusable for SMTP; a sender treats such records as absent
for authentication but still insists on TLS.

Formerly net/dane.py: nothing here does I/O, so it sits with the other record
evaluators; the one import from net/ is tls.name_matches (RFC 6125 wildcard
rules), shared with PKIX host-name verification rather than copied.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import warnings
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field

from cryptography import x509
from cryptography.exceptions import InvalidSignature, UnsupportedAlgorithm
from cryptography.hazmat.primitives.serialization import Encoding, PublicFormat
from cryptography.utils import CryptographyDeprecationWarning

from deliverck.net.tls import name_matches

USAGES = {0: "PKIX-TA", 1: "PKIX-EE", 2: "DANE-TA", 3: "DANE-EE"}
SELECTORS = {0: "Cert", 1: "SPKI"}
MATCHING = {0: "Full", 1: "SHA2-256", 2: "SHA2-512"}
_LENGTHS = {1: 32, 2: 64}


@dataclass(frozen=True)
class Tlsa:
    usage: int
    selector: int
    mtype: int
    data: bytes

    @classmethod
    def from_rdata(cls, rd) -> Tlsa:
        return cls(int(rd.usage), int(rd.selector), int(rd.mtype), bytes(rd.cert))

    @classmethod
    def parse(cls, text: str) -> Tlsa:
        """`3 1 1 <hex>` (whitespace inside the hex allowed)."""
        parts = text.split()
        if len(parts) < 4:
            raise ValueError(f"TLSA needs usage, selector, matching type and data: {text!r}")
        u, s, m = (int(p) for p in parts[:3])
        return cls(u, s, m, bytes.fromhex("".join(parts[3:])))

    def text(self) -> str:
        return f"{self.usage} {self.selector} {self.mtype} {self.data.hex()}"

    def short(self) -> str:
        h = self.data.hex()
        return f"{self.usage} {self.selector} {self.mtype} {h[:16]}..." if len(h) > 20 else self.text()

    @property
    def usable(self) -> bool:
        """Usable for SMTP (RFC 7672 3.1.3): DANE-TA or DANE-EE, a known selector and matching type,
        and digest data of the right length."""
        if self.usage not in (2, 3) or self.selector not in SELECTORS or self.mtype not in MATCHING:
            return False
        return self.mtype == 0 or len(self.data) == _LENGTHS[self.mtype]

    @property
    def why_unusable(self) -> str:
        if self.usage in (0, 1):
            return f"usage {self.usage} ({USAGES[self.usage]}) is not used for SMTP (RFC 7672 3.1.3)"
        if self.usage not in USAGES:
            return f"unknown usage {self.usage}"
        if self.selector not in SELECTORS:
            return f"unknown selector {self.selector}"
        if self.mtype not in MATCHING:
            return f"unknown matching type {self.mtype}"
        if self.mtype in _LENGTHS and len(self.data) != _LENGTHS[self.mtype]:
            return f"{MATCHING[self.mtype]} data is {len(self.data)} bytes, not {_LENGTHS[self.mtype]}"
        return ""


def _load(der: bytes) -> x509.Certificate:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", CryptographyDeprecationWarning)
        return x509.load_der_x509_certificate(bytes(der))


def selected(cert: x509.Certificate | bytes, selector: int) -> bytes:
    """The bytes a TLSA selector picks: the whole certificate (0) or its SubjectPublicKeyInfo (1)."""
    c = _load(cert) if isinstance(cert, (bytes, bytearray, memoryview)) else cert
    if selector == 0:
        return c.public_bytes(Encoding.DER)
    if selector == 1:
        return c.public_key().public_bytes(Encoding.DER, PublicFormat.SubjectPublicKeyInfo)
    raise ValueError(f"unknown TLSA selector {selector}")


def association(cert: x509.Certificate | bytes, selector: int, mtype: int) -> bytes:
    """The certificate association data a `U selector mtype` record must carry for `cert`."""
    raw = selected(cert, selector)
    if mtype == 0:
        return raw
    if mtype == 1:
        return hashlib.sha256(raw).digest()
    if mtype == 2:
        return hashlib.sha512(raw).digest()
    raise ValueError(f"unknown TLSA matching type {mtype}")


def record_for(cert: x509.Certificate | bytes, usage: int, selector: int, mtype: int) -> Tlsa:
    return Tlsa(usage, selector, mtype, association(cert, selector, mtype))


def matches(rec: Tlsa, cert: x509.Certificate | bytes) -> bool:
    """Does `rec`'s association data match `cert` (ignoring usage)?"""
    try:
        return association(cert, rec.selector, rec.mtype) == rec.data
    except (ValueError, UnsupportedAlgorithm):
        return False


# --- the verdict --------------------------------------------------------------

MATCHED = "matched"                  # a usable record authenticates the server
NO_MATCH = "no_match"                # no usable record matches the chain
TA_EXPIRED = "ta_expired"            # DANE-TA anchor found, but the leaf (or a CA between) is out of date
TA_HOST_MISMATCH = "ta_host_mismatch"  # DANE-TA anchor found, but the leaf does not name the host
NO_USABLE = "no_usable"              # every record is unusable for SMTP (usages 0/1, unknown values)
NO_CHAIN = "no_chain"                # the server presented no parseable certificate


@dataclass(frozen=True)
class Verdict:
    status: str
    record: Tlsa | None = None       # the record that matched (or whose anchor was found)
    detail: str = ""                 # one line for a human
    names: tuple[str, ...] = ()      # the leaf's names (DANE-TA name check)
    notes: tuple[str, ...] = field(default_factory=tuple)

    @property
    def ok(self) -> bool:
        return self.status == MATCHED


def _signed_by(cert: x509.Certificate, issuer: x509.Certificate) -> bool:
    try:
        cert.verify_directly_issued_by(issuer)
        return True
    except (InvalidSignature, ValueError, TypeError, UnsupportedAlgorithm):
        return False


def _chains_to(certs: Sequence[x509.Certificate], anchor: x509.Certificate, upto: int) -> bool:
    """certs[0] <- certs[1] <- ... <- certs[upto-1] <- anchor, each signed by the next."""
    path = list(certs[:upto]) + [anchor]
    return all(_signed_by(path[i], path[i + 1]) for i in range(len(path) - 1))


def _utc(now: dt.datetime) -> dt.datetime:
    return now.astimezone(dt.UTC) if now.tzinfo else now.replace(tzinfo=dt.UTC)


def _in_date(c: x509.Certificate, now: dt.datetime) -> bool:
    return c.not_valid_before_utc <= now <= c.not_valid_after_utc


def _names(c: x509.Certificate) -> tuple[str, ...]:
    try:
        ext = c.extensions.get_extension_for_class(x509.SubjectAlternativeName)
        sans = tuple(n.lower() for n in ext.value.get_values_for_type(x509.DNSName))
    except x509.ExtensionNotFound:
        sans = ()
    if sans:
        return sans
    try:
        return tuple(str(a.value) for a in c.subject.get_attributes_for_oid(x509.oid.NameOID.COMMON_NAME))
    except Exception:  # noqa: BLE001 - remote bytes
        return ()


def name_ok(c: x509.Certificate, reference: Iterable[str]) -> bool:
    """RFC 7672 3.2.3: SAN dNSNames (else the CN) against the reference identifiers; wildcards as RFC 6125."""
    names = _names(c)
    return any(name_matches(n, ref) for n in names for ref in reference if ref)


def verify(records: Iterable[Tlsa], chain: Sequence[bytes], reference: Sequence[str],
           now: dt.datetime | None = None) -> Verdict:
    """Judge the chain a server presented against its TLSA RRset, as a DANE SMTP client would.

    reference: the names the leaf may carry under DANE-TA (RFC 7672 3.2.2: the MX host name,
    its CNAME-expanded form when the TLSA came from there, optionally the next-hop domain).
    """
    now = _utc(now or dt.datetime.now(dt.UTC))
    records = list(records)
    usable = [r for r in records if r.usable]
    if not usable:
        return Verdict(NO_USABLE, detail="; ".join(sorted({r.why_unusable for r in records})) or "no records")
    certs: list[x509.Certificate] = []
    for der in chain:
        try:
            certs.append(_load(der))
        except Exception:  # noqa: BLE001 - remote bytes: stop at the first unparseable certificate
            break
    if not certs:
        return Verdict(NO_CHAIN, detail="the server presented no parseable certificate")
    leaf = certs[0]
    # DANE-EE: the leaf, and nothing else about it (RFC 7672 3.1.1).
    for r in usable:
        if r.usage == 3 and matches(r, leaf):
            return Verdict(MATCHED, r, "DANE-EE: the leaf's " + ("public key" if r.selector else "certificate")
                           + " matches; names and dates do not apply")
    # DANE-TA: an anchor in the chain (or the record's full certificate), the leaf chaining to it.
    partial: list[Verdict] = []
    for r in usable:
        if r.usage != 2:
            continue
        anchors: list[tuple[x509.Certificate, int]] = [(c, i) for i, c in enumerate(certs) if i > 0 and matches(r, c)]
        if r.selector == 0 and r.mtype == 0:
            try:
                full = x509.load_der_x509_certificate(r.data)
                anchors.append((full, len(certs)))
            except ValueError:
                pass
        for anchor, pos in anchors:
            # The anchor sits at `pos`; the chain below it must be signed link by link.
            upto = min(pos, len(certs))
            if not _chains_to(certs, anchor, upto):
                continue
            below = certs[:upto]
            stale = [c for c in below if not _in_date(c, now)]
            if stale:
                c = stale[0]
                which = "the leaf" if c is leaf else "an intermediate"
                partial.append(Verdict(TA_EXPIRED, r, f"DANE-TA: {which} is outside its validity "
                                       f"({c.not_valid_before_utc:%Y-%m-%d} to {c.not_valid_after_utc:%Y-%m-%d})",
                                       names=_names(leaf)))
                continue
            if not name_ok(leaf, reference):
                partial.append(Verdict(TA_HOST_MISMATCH, r, "DANE-TA: the leaf chains to the anchor but names "
                                       + (", ".join(_names(leaf)) or "nothing") + ", not "
                                       + " or ".join(x for x in reference if x), names=_names(leaf)))
                continue
            return Verdict(MATCHED, r, "DANE-TA: the chain leads to the published trust anchor and the leaf "
                           "names the host", names=_names(leaf))
    if partial:
        return partial[0]
    return Verdict(NO_MATCH, detail=f"none of {len(usable)} usable record(s) matches the {len(certs)} "
                   "certificate(s) presented")


def rollover_ready(records: Iterable[Tlsa]) -> bool:
    """RFC 7671 8.1 / RFC 7672 3.1: a lone `3 1 1` leaves no room for the next key.

    Ready: more than one usable record, or any usable DANE-TA record (the anchor outlives leaf keys)."""
    usable = [r for r in records if r.usable]
    return len(usable) != 1 or usable[0].usage != 3
