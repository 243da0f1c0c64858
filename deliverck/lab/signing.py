"""DNSSEC for the lab: fresh keys at every start, DS in the parents, a root trust anchor.

Zones are signed deepest first, so each child's DS is in its parent before
the parent is signed.  A zone with signed = false (and every user zone) gets
no DS in its parent: an insecure delegation, as in the real world.
"""

from __future__ import annotations

import time

import dns.dnssec
import dns.name
import dns.rdataclass
import dns.rdatatype
from cryptography.hazmat.primitives.asymmetric import ec

from deliverck.lab import zones

ALGORITHM = dns.dnssec.Algorithm.ECDSAP256SHA256
LIFETIME = 30 * 86400
SKEW = 3600             # signatures valid from an hour ago: tolerate a slightly wrong clock
CSK_FLAGS = 257         # ZONE | SEP: one key signs everything

# A scenario asks for a broken zone with a marker record in its records:
#     _dnssec-fault TXT "bad-signature"    every RRSIG except over the DNSKEY RRset is corrupted
#     _dnssec-fault TXT "expired-rrsig"    every RRSIG expired (signed 60 to 30 days ago)
# The marker is removed before signing; validating resolvers answer SERVFAIL for the zone.
FAULT_LABEL = "_dnssec-fault"
FAULTS = ("bad-signature", "expired-rrsig")


def sign(tree: zones.Tree) -> list[str]:
    """Sign every signed zone in place; return the root's DS records (the trust anchor)."""
    root_ds: list[str] = []
    now = int(time.time())
    for lz in sorted(tree.served(), key=lambda z: -len(z.origin)):
        if not lz.signed:
            continue
        private = ec.generate_private_key(ec.SECP256R1())
        dnskey = dns.dnssec.make_dnskey(private.public_key(), ALGORITHM, flags=CSK_FLAGS)
        ds = dns.dnssec.make_ds(lz.origin, dnskey, "SHA256")
        if lz.origin == dns.name.root:
            root_ds.append(f". {zones.TTL} IN DS {ds.to_text()}")
        else:
            rdataset = tree.holder(lz.origin, proper=True).records.find_rdataset(lz.origin, dns.rdatatype.DS, create=True)
            rdataset.add(ds, zones.TTL)
        fault = _take_fault(lz)
        inception, expiration = now - SKEW, now + LIFETIME
        if fault == "expired-rrsig":
            inception, expiration = now - 60 * 86400, now - 30 * 86400
        with lz.records.writer() as txn:
            dns.dnssec.sign_zone(lz.records, txn, keys=[(private, dnskey)], dnskey_ttl=zones.TTL,
                                 inception=inception, expiration=expiration)
        if fault == "bad-signature":
            _corrupt_signatures(lz.records)
    return root_ds


def _take_fault(lz: zones.LabZone) -> str:
    """Remove the zone's fault marker (see FAULT_LABEL) and return the fault, "" if none."""
    name = dns.name.Name((FAULT_LABEL.encode(),)).concatenate(lz.origin)
    rdataset = lz.records.get_rdataset(name, dns.rdatatype.TXT)
    if rdataset is None:
        return ""
    fault = b"".join(next(iter(rdataset)).strings).decode()
    if fault not in FAULTS:
        raise zones.LabUnavailable(f"zone {lz.origin}: {FAULT_LABEL} must be one of {FAULTS}, not {fault!r}")
    lz.records.delete_node(name)
    return fault


def _corrupt_signatures(zone) -> None:
    """Flip one bit of every signature except those over the DNSKEY RRset: the keys
    still match the DS, every other RRset (and the NSEC chain) is bogus."""
    for _name, node in zone.items():
        for rdataset in list(node.rdatasets):
            if rdataset.rdtype != dns.rdatatype.RRSIG or rdataset.covers == dns.rdatatype.DNSKEY:
                continue
            broken = [rd.replace(signature=bytes([rd.signature[0] ^ 0x01]) + rd.signature[1:])
                      for rd in rdataset]
            ttl = rdataset.ttl
            rdataset.clear()
            for rd in broken:
                rdataset.add(rd, ttl)
