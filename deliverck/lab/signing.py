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
            parent = tree.enclosing(lz.origin, proper=True)
            rdataset = parent.zone.find_rdataset(lz.origin, dns.rdatatype.DS, create=True)
            rdataset.add(ds, zones.TTL)
        with lz.zone.writer() as txn:
            dns.dnssec.sign_zone(lz.zone, txn, keys=[(private, dnskey)], dnskey_ttl=zones.TTL,
                                 inception=now - SKEW, expiration=now + LIFETIME)
    return root_ds
