"""Pure DNSSEC proofs over answers already fetched: signatures, DS digests, denial of existence.

No network here: each function takes a `Raw` answer (net/dnssec_query.py) and the keys it must be
checked with, and says "" (it verifies) or why not in one line (RFC 4035 5.3, RFC 5155 8).
"""

from __future__ import annotations

import base64
import datetime as _dt

import dns.dnssec
import dns.name
import dns.rdatatype

from deliverck.net.dnssec_query import Raw

SECURE, INSECURE, BOGUS, INDETERMINATE = "secure", "insecure", "bogus", "indeterminate"

# What dnspython can verify here (RFC 8624 "MUST validate" set plus the ones still seen).
_SUPPORTED_ALGS = {
    dns.dnssec.Algorithm.RSASHA1, dns.dnssec.Algorithm.RSASHA1NSEC3SHA1,
    dns.dnssec.Algorithm.RSASHA256, dns.dnssec.Algorithm.RSASHA512,
    dns.dnssec.Algorithm.ECDSAP256SHA256, dns.dnssec.Algorithm.ECDSAP384SHA384,
    dns.dnssec.Algorithm.ED25519, dns.dnssec.Algorithm.ED448,
}
_SUPPORTED_DIGESTS = {1: "SHA1", 2: "SHA256", 4: "SHA384"}


# ---------------------------------------------------------------- signatures

def _when(ts: int) -> str:
    return _dt.datetime.fromtimestamp(ts, _dt.UTC).strftime("%Y-%m-%d %H:%M:%SZ")


def _txt(name: dns.name.Name) -> str:
    return name.to_text()


def check_rrset(rrset, sigs, keys, zone: dns.name.Name, now: float) -> str:
    """"" when some RRSIG over `rrset` by a key of `keys` (the DNSKEY RRset of
    `zone`) verifies now; else why not, in one line."""
    what = f"{_txt(rrset.name)} {dns.rdatatype.to_text(rrset.rdtype)}"
    if not sigs:
        return f"no RRSIG over {what}"
    reasons = []
    for sig in sigs:
        if sig.signer != zone:
            reasons.append(f"RRSIG over {what} is signed by {_txt(sig.signer)}, not by its zone {_txt(zone)}")
            continue
        if sig.expiration < now:
            reasons.append(f"RRSIG over {what} (key {sig.key_tag}) expired {_when(sig.expiration)} "
                           f"(valid from {_when(sig.inception)})")
            continue
        if sig.inception > now:
            reasons.append(f"RRSIG over {what} (key {sig.key_tag}) not valid before {_when(sig.inception)}")
            continue
        candidates = [k for k in keys if dns.dnssec.key_id(k) == sig.key_tag and k.algorithm == sig.algorithm]
        if not candidates:
            reasons.append(f"RRSIG over {what} names key {sig.key_tag}, which {_txt(zone)} DNSKEY does not hold")
            continue
        try:
            dns.dnssec.validate_rrsig(rrset, sig, {zone: keys}, now=now)
            return ""
        except dns.dnssec.UnsupportedAlgorithm:
            reasons.append(f"RRSIG over {what} uses unsupported algorithm {sig.algorithm}")
        except dns.dnssec.ValidationFailure as e:
            reasons.append(f"RRSIG over {what} (key {sig.key_tag}) does not verify ({e})")
    return reasons[0] if len(reasons) == 1 else "; ".join(dict.fromkeys(reasons))


def _ds_matches(ds, key, owner: dns.name.Name) -> bool:
    alg = _SUPPORTED_DIGESTS.get(ds.digest_type)
    if alg is None:
        return False
    try:
        return dns.dnssec.make_ds(owner, key, alg) == ds
    except Exception:
        return False


def _supported_ds(dsset) -> list:
    return [d for d in dsset if d.algorithm in _SUPPORTED_ALGS and d.digest_type in _SUPPORTED_DIGESTS]


def _validate_dnskeys(zone: dns.name.Name, raw: Raw, dsset, now: float) -> tuple[str, str, object]:
    """(state, reason, keys) for the DNSKEY RRset of `zone` authenticated by `dsset`."""
    z = _txt(zone)
    if raw.error:
        return INDETERMINATE, f"DNSKEY lookup of {z} failed: {raw.error}", None
    keys = raw.rrset("answer", zone, dns.rdatatype.DNSKEY)
    if keys is None:
        return BOGUS, f"{z} has a DS in its parent but publishes no DNSKEY", None
    usable = _supported_ds(dsset)
    if not usable:
        algs = ", ".join(sorted({str(d.algorithm) for d in dsset}))
        return INSECURE, f"the DS of {z} uses only unsupported algorithms/digests ({algs}): treated as unsigned", None
    matching = [k for k in keys if any(_ds_matches(d, k, zone) for d in usable)]
    if not matching:
        tags = ", ".join(str(d.key_tag) for d in usable)
        have = ", ".join(str(dns.dnssec.key_id(k)) for k in keys)
        return BOGUS, f"DS digest mismatch: no DNSKEY of {z} (keys {have}) matches its DS (key tag {tags})", None
    sigs = raw.sigs("answer", zone, dns.rdatatype.DNSKEY)
    sigs_by_sep = [s for s in (sigs or ()) if any(dns.dnssec.key_id(k) == s.key_tag for k in matching)]
    why = check_rrset(keys, sigs_by_sep or sigs, keys, zone, now)
    if why:
        return BOGUS, why, None
    return SECURE, "", keys


# ---------------------------------------------------------------- denial of existence

def _nsec_sets(raw: Raw) -> list:
    # Callers judge a denial only after raw.error came back empty, and a Raw without error has a message.
    assert raw.msg is not None
    return [rr for rr in raw.msg.authority if rr.rdtype in (dns.rdatatype.NSEC, dns.rdatatype.NSEC3)]


def _denial_signed(raw: Raw, zone, keys, now) -> str:
    """"" when the NSEC/NSEC3 records of a negative answer are present and verify."""
    sets = _nsec_sets(raw)
    if not sets:
        return "no NSEC/NSEC3 records in a negative answer from a signed zone (broken denial of existence)"
    for rr in sets:
        why = check_rrset(rr, raw.sigs("authority", rr.name, rr.rdtype), keys, zone, now)
        if why:
            return f"broken denial of existence: {why}"
    return ""


def _bitmap_types(rd) -> set[int]:
    out = set()
    for window, bitmap in rd.windows:
        for i, byte in enumerate(bitmap):
            for bit in range(8):
                if byte & (0x80 >> bit):
                    out.add(window * 256 + i * 8 + bit)
    return out


def _nsec_covers(owner: dns.name.Name, nxt: dns.name.Name, name: dns.name.Name) -> bool:
    if owner < nxt:
        return owner < name < nxt
    return name > owner or name < nxt       # the last NSEC of the zone wraps to the apex


def _types_at(raw: Raw, name: dns.name.Name, zone: dns.name.Name):
    """The type bitmap NSEC/NSEC3 proves at `name`; ("covered", opt_out) when it
    proves the name does not exist; None when no record speaks to it."""
    for rr in _nsec_sets(raw):
        if rr.rdtype == dns.rdatatype.NSEC:
            for rd in rr:
                if rr.name == name:
                    return _bitmap_types(rd)
                if _nsec_covers(rr.name, rd.next, name):
                    return ("covered", False)
        else:
            for rd in rr:
                try:
                    h = dns.dnssec.nsec3_hash(name, rd.salt, rd.iterations, rd.algorithm)
                except Exception:
                    continue
                owner_hash = rr.name.labels[0].decode().upper()
                next_hash = _b32hex(rd.next)
                if h == owner_hash:
                    return _bitmap_types(rd)
                lo, hi = owner_hash, next_hash
                if (lo < h < hi) if lo < hi else (h > lo or h < hi):
                    return ("covered", bool(rd.flags & 1))
    return None


def _b32hex(raw_bytes: bytes) -> str:
    return base64.b32encode(raw_bytes).translate(
        bytes.maketrans(b"ABCDEFGHIJKLMNOPQRSTUVWXYZ234567", b"0123456789ABCDEFGHIJKLMNOPQRSTUV")
    ).decode().rstrip("=")

