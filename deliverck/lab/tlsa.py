"""TLSA records for lab scenarios, computed from the certificates the lab issues at start.

The lab makes fresh certificates at every start, so a scenario cannot write
their hashes down.  It writes a placeholder as the record's value instead:

    _25._tcp.mx  TLSA {tlsa:3 1 1}          ; the certificate the lab issues for mx's peer(s)
    _25._tcp.mx  TLSA {tlsa:2 0 1}          ; usages 0 and 2 name the lab CA (the peer then
                                            ;   sends the CA in its chain, RFC 7671 5.2.2)
    _25._tcp.mx  TLSA {tlsa:3 1 1 other}    ; a fresh key no peer uses (a mismatch, or the
                                            ;   pre-published next key of a rollover)

`mark(records)` (in Scenario.zone(), before parsing) turns each placeholder
into a parseable TLSA record with marker data; `fill(tree, manifest)` (in
plan.prepare(), after the certificates are issued and before signing)
replaces the marker with the real association data.  The host is the owner
name minus `_port._tcp`; its peers are the scenario peers on its A/AAAA
addresses (through one CNAME in the lab tree); a host with several peers
(IPv4 and IPv6) gets one record per distinct certificate.
"""

from __future__ import annotations

import datetime
import re
from pathlib import Path

import dns.name
import dns.rdata
import dns.rdataclass
import dns.rdatatype
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

from deliverck.lab.errors import LabUnavailable
from deliverck.records import tlsa as dane

PLACEHOLDER = re.compile(r"\{tlsa:\s*([0-3])\s+([01])\s+([0-2])\s*(other)?\s*\}")
MARKER = b"deliverck-lab-tlsa:"


def mark(records: str) -> str:
    """Placeholders -> TLSA values with marker data that dnspython parses."""
    def repl(m: re.Match) -> str:
        data = MARKER + (b"other" if m.group(4) else b"cert")
        data = data.ljust({"1": 32, "2": 64}.get(m.group(3), len(data)), b"\0")   # dnspython checks lengths
        return f"{m.group(1)} {m.group(2)} {m.group(3)} {data.hex()}"
    return PLACEHOLDER.sub(repl, records)


def _other_cert() -> x509.Certificate:
    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "deliverck lab unused key")])
    now = datetime.datetime.now(datetime.UTC)
    return (x509.CertificateBuilder().subject_name(name).issuer_name(name).public_key(key.public_key())
            .serial_number(x509.random_serial_number())
            .not_valid_before(now - datetime.timedelta(days=1)).not_valid_after(now + datetime.timedelta(days=90))
            .sign(key, hashes.SHA256()))


def _host_addresses(tree, host: dns.name.Name, depth: int = 0) -> list[str]:
    holder = tree.enclosing(host)
    if holder is None or holder.zone is None:
        return []
    node = holder.zone.get_node(host)
    if node is None:
        return []
    out = []
    for rdtype in (dns.rdatatype.A, dns.rdatatype.AAAA):
        rds = node.get_rdataset(dns.rdataclass.IN, rdtype)
        out += [rd.address for rd in rds] if rds else []
    cname = node.get_rdataset(dns.rdataclass.IN, dns.rdatatype.CNAME)
    if cname and depth < 3:
        out += _host_addresses(tree, next(iter(cname)).target, depth + 1)
    return out


def _load_pems(path: str) -> list[x509.Certificate]:
    return x509.load_pem_x509_certificates(Path(path).read_bytes())


def fill(tree, manifest) -> int:
    """Replace every marked TLSA record in the lab tree; return how many placeholders were filled."""
    peers = {p.address: p for s in manifest.scenarios for p in s.smtp}
    ca_file = Path(manifest.ca_file)
    ca = x509.load_pem_x509_certificate(ca_file.read_bytes())
    count = 0
    for lz in tree.served():
        for name, node in list(lz.zone.nodes.items()):
            rds = node.get_rdataset(dns.rdataclass.IN, dns.rdatatype.TLSA)
            if rds is None or not any(bytes(rd.cert).startswith(MARKER) for rd in rds):
                continue
            owner = name if name.is_absolute() else name.derelativize(lz.origin)
            host = owner.parent().parent() if len(owner.labels) > 3 else owner
            new: list[dane.Tlsa] = []
            for rd in rds:
                data = bytes(rd.cert)
                if not data.startswith(MARKER):
                    new.append(dane.Tlsa.from_rdata(rd))
                    continue
                count += 1
                u, s, m = int(rd.usage), int(rd.selector), int(rd.mtype)
                if data[len(MARKER):].rstrip(b"\0") == b"other":
                    certs = [_other_cert()]
                elif u in (0, 2):
                    certs = [ca]
                    for a in _host_addresses(tree, host):
                        p = peers.get(a)
                        if p is not None and p.cert_file and len(_load_pems(p.cert_file)) == 1:
                            # the server sends its trust anchor along (RFC 7671 5.2.2)
                            with open(p.cert_file, "ab") as f:
                                f.write(ca.public_bytes(serialization.Encoding.PEM))
                else:
                    certs = []
                    for a in _host_addresses(tree, host):
                        p = peers.get(a)
                        if p is not None and p.cert_file:
                            leaf = _load_pems(p.cert_file)[0]
                            if leaf not in certs:
                                certs.append(leaf)
                    if not certs:
                        raise LabUnavailable(f"TLSA placeholder at {owner}: no TLS-speaking lab peer serves "
                                             f"{host} (use {{tlsa:{u} {s} {m} other}} for a key nobody uses)")
                for c in certs:
                    r = dane.record_for(c, u, s, m)
                    if r not in new:
                        new.append(r)
            ttl = rds.ttl
            rds.clear()
            for r in new:
                rds.add(dns.rdata.from_text(dns.rdataclass.IN, dns.rdatatype.TLSA, r.text()), ttl)
    return count
