"""The lab's HTTPS server for MTA-STS scenarios: a policy at mta-sts.<scenario>.test:443.

A scenario with an `[https]` table gets one server on the address of its
`mta-sts` A record (port 443), with a certificate from the lab CA:

    [https]
    policy = \"\"\"version: STSv1
    mode: enforce
    mx: mx.example.test
    max_age: 604800
    \"\"\"
    status = 200                  # HTTP status of /.well-known/mta-sts.txt
    content_type = "text/plain"   # Content-Type header
    cert = "valid"                # valid | wrong-name (for www.<scenario>.test) | expired | self-signed
    redirect_to = ""              # non-empty: 301 with this Location
    oversize = false              # true: the policy padded past 64 KiB
    behaviour = "https"           # https | filtered (port 443 drops every SYN) | refused (nothing listens)

Every other path is 404.  Requests are read bounded (8 KiB head, 5 s), one
request per connection.  Started by services.py inside the namespace.
"""

from __future__ import annotations

import asyncio
import ssl
import tomllib
from dataclasses import dataclass
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa

from deliverck.lab import certs
from deliverck.lab.errors import LabUnavailable
from deliverck.lab.scenarios import SCENARIO_DIR

WELL_KNOWN = "/.well-known/mta-sts.txt"
CERTS = ("valid", "wrong-name", "expired", "self-signed")
BEHAVIOURS = ("https", "filtered", "refused")
KEYS = ("policy", "status", "content_type", "cert", "redirect_to", "oversize", "behaviour")
OVERSIZE = 200 * 1024
MAX_HEAD = 8192


@dataclass(frozen=True)
class HttpsSpec:
    scenario: str                 # scenario name
    domain: str                   # <scenario>.test
    address: str                  # address of mta-sts.<domain>
    policy: str = ""
    status: int = 200
    content_type: str = "text/plain"
    cert: str = "valid"
    redirect_to: str = ""
    oversize: bool = False
    behaviour: str = "https"

    @property
    def host(self) -> str:
        return f"mta-sts.{self.domain}"

    def cert_names(self) -> tuple[str, ...]:
        return (f"www.{self.domain}",) if self.cert == "wrong-name" else (self.host,)


def spec_from_table(name: str, table: dict, address: str, source: str = "") -> HttpsSpec:
    where = f"scenario {source or name}: [https]"
    if not isinstance(table, dict):
        raise LabUnavailable(f"{where} must be a table")
    unknown = set(table) - set(KEYS)
    if unknown:
        raise LabUnavailable(f"{where} has unknown keys {sorted(unknown)} (known: {list(KEYS)})")
    spec = HttpsSpec(scenario=name, domain=f"{name}.test", address=address,
                     policy=table.get("policy", ""), status=table.get("status", 200),
                     content_type=table.get("content_type", "text/plain"), cert=table.get("cert", "valid"),
                     redirect_to=table.get("redirect_to", ""), oversize=table.get("oversize", False),
                     behaviour=table.get("behaviour", "https"))
    if not isinstance(spec.policy, str) or not isinstance(spec.content_type, str) \
            or not isinstance(spec.redirect_to, str):
        raise LabUnavailable(f"{where}: policy, content_type and redirect_to are strings")
    if not isinstance(spec.status, int) or not 100 <= spec.status <= 599:
        raise LabUnavailable(f"{where}: status must be an HTTP status code")
    if spec.cert not in CERTS:
        raise LabUnavailable(f"{where}: cert must be one of {CERTS}")
    if not isinstance(spec.oversize, bool):
        raise LabUnavailable(f"{where}: oversize must be true or false")
    if spec.behaviour not in BEHAVIOURS:
        raise LabUnavailable(f"{where}: behaviour must be one of {BEHAVIOURS}")
    return spec


def _policy_address(records: str, domain: str) -> str | None:
    """The address of the scenario's `mta-sts` A record (first one)."""
    import dns.name
    import dns.rdatatype
    import dns.zone

    origin = dns.name.from_text(domain)
    zone = dns.zone.from_text("$TTL 300\n" + records, origin=origin, relativize=False, check_origin=False)
    want = dns.name.from_text("mta-sts", origin=origin)
    for name, _ttl, rdata in zone.iterate_rdatas():
        if name == want and rdata.rdtype in (dns.rdatatype.A, dns.rdatatype.AAAA):
            return rdata.to_text()      # an A/AAAA's text is its address
    return None


def load_specs(directory: Path = SCENARIO_DIR, names: set[str] | None = None) -> list[HttpsSpec]:
    """The [https] tables of the scenario files (only `names`, when given)."""
    out = []
    for path in sorted(directory.glob("*.toml")):
        data = tomllib.loads(path.read_text(encoding="utf-8"))
        if "https" not in data:
            continue
        name = data.get("name", path.stem)
        if names is not None and name not in names:
            continue
        address = _policy_address(data.get("records", ""), f"{name}.test.")
        if address is None:
            raise LabUnavailable(f"scenario {path}: [https] needs an `mta-sts` A or AAAA record")
        out.append(spec_from_table(name, data["https"], address, str(path)))
    return out


def body_for(spec: HttpsSpec) -> bytes:
    body = spec.policy.encode("utf-8")
    if spec.oversize:
        body += b"\n" + b"# padding\n" * (OVERSIZE // 10 + 1)
    return body


def response(spec: HttpsSpec, path: str) -> bytes:
    if path.split("?", 1)[0] != WELL_KNOWN:
        return _reply(404, "Not Found", "text/plain", b"not found\n")
    if spec.redirect_to:
        return _reply(301, "Moved Permanently", "text/plain", b"moved\n", location=spec.redirect_to)
    reasons = {200: "OK", 404: "Not Found", 403: "Forbidden", 500: "Internal Server Error"}
    return _reply(spec.status, reasons.get(spec.status, "Status"), spec.content_type, body_for(spec))


def _reply(status: int, reason: str, ctype: str, body: bytes, location: str = "") -> bytes:
    head = [f"HTTP/1.1 {status} {reason}", f"Content-Type: {ctype}", f"Content-Length: {len(body)}",
            "Connection: close", "Server: deliverck-lab"]
    if location:
        head.append(f"Location: {location}")
    return ("\r\n".join(head) + "\r\n\r\n").encode("latin-1") + body


def tls_context(spec: HttpsSpec, tls_dir: Path) -> ssl.SSLContext:
    ca_cert = x509.load_pem_x509_certificate((tls_dir / "ca.pem").read_bytes())
    ca_key = serialization.load_pem_private_key((tls_dir / "ca.key").read_bytes(), password=None)
    assert isinstance(ca_key, rsa.RSAPrivateKey), "the lab CA key is RSA (lab/certs.py)"
    ca = certs.LabCA(ca_cert, ca_key, tls_dir / "ca.pem", tls_dir / "ca.key")
    base = f"https-{spec.scenario}"
    cert_file, key_file = tls_dir / f"{base}.pem", tls_dir / f"{base}.key"
    certs.issue(ca, spec.cert_names(), cert_file, key_file,
                profile=spec.cert if spec.cert in ("expired", "self-signed") else "valid")
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    context.load_cert_chain(cert_file, key_file)
    return context


async def _handle(spec: HttpsSpec, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    try:
        head = await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), timeout=5)
        if len(head) > MAX_HEAD:
            return
        parts = head.split(b"\r\n", 1)[0].decode("latin-1").split()
        path = parts[1] if len(parts) >= 2 else "/"
        writer.write(response(spec, path))
        await asyncio.wait_for(writer.drain(), timeout=10)
    except (TimeoutError, asyncio.IncompleteReadError, asyncio.LimitOverrunError, ConnectionError, ssl.SSLError, OSError):
        pass
    finally:
        writer.close()
        try:
            await asyncio.wait_for(writer.wait_closed(), timeout=2)
        except Exception:
            pass


async def serve(spec: HttpsSpec, tls_dir: Path, port: int = 443) -> list:
    if spec.behaviour == "refused":
        return []                         # the address is on lo and nothing listens: RST
    if spec.behaviour == "filtered":
        from deliverck.lab.smtp_peers import Filtered

        return [Filtered(spec.address, port)]
    context = tls_context(spec, tls_dir)
    server = await asyncio.start_server(lambda r, w: _handle(spec, r, w), spec.address, port, ssl=context,
                                        limit=MAX_HEAD, ssl_handshake_timeout=5)
    return [server]


async def serve_all(lab_dir: Path) -> list:
    """Hook for services.py: one server per scenario of this lab that has an [https] table."""
    import json

    manifest = json.loads((lab_dir / "manifest.json").read_text(encoding="utf-8"))
    names = {s["name"] for s in manifest.get("scenarios", [])}
    on_lo = set(manifest.get("lo_addresses", []))
    held = []
    for spec in load_specs(names=names):
        if spec.address in on_lo:
            held += await serve(spec, lab_dir / "tls")
    return held
