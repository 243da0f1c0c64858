"""Write a lab directory: zone files, NSD and unbound configs, services, manifest.

This runs outside the namespace; everything inside reads only this directory.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from pathlib import Path

from deliverck.lab import badns, certs, dkim_keys, kdc, postfix, signing, tlsa, zones
from deliverck.lab import manifest as m
from deliverck.lab.errors import LabUnavailable
from deliverck.lab.host import namespace_flags
from deliverck.lab.scenarios import Scenario, is_documentation, load_all, problems

RESOLVER = "127.0.0.1"
RESOLVER6 = "::1"
UNBOUND_BEHIND_PROXY = "127.0.0.2"
# The second unbound (zones.RESOLVERS["unsigned-root"]): non-validating, resolving from an
# unsigned copy of the lab root (an auth-zone for upstream use, RFC 8806 style) while every
# zone below is the signed one NSD serves.
UNSIGNED_ROOT_CONF = "unbound-unsigned-root.conf"
UNSIGNED_ROOT_ZONE = "unsigned-root.zone"
# Built-in zones served in every lab like --zone-dir zones (a user zone of the
# same origin replaces one): copies of real DNS block list zones (see zones/README.md).
BUILTIN_ZONES = Path(__file__).parent / "zones"


def nsd_conf(d: Path, tree: zones.Tree) -> str:
    lines = ["server:"]
    lines += [f"  ip-address: {a}" for a in zones.SERVERS["nsd"][1]]
    lines += [
        "  port: 53",
        '  username: ""',
        '  chroot: ""',
        '  database: ""',
        f'  zonesdir: "{d / "zones"}"',
        f'  zonelistfile: "{d / "nsd.zonelist"}"',
        f'  xfrdfile: "{d / "nsd.xfrd"}"',
        f'  xfrdir: "{d}"',
        f'  pidfile: "{d / "nsd.pid"}"',
        f'  logfile: "{d / "nsd.log"}"',
        "  server-count: 1",
        "  verbosity: 1",
        "  hide-version: yes",
        "  refuse-any: no",
        "remote-control:",
        "  control-enable: no",
    ]
    for lz in sorted(tree.served(), key=lambda z: z.origin.to_text()):
        lines += ["zone:", f'  name: "{lz.origin}"', f'  zonefile: "{zones.file_name(lz.origin)}"']
    return "\n".join(lines) + "\n"


def unbound_conf(d: Path, tree: zones.Tree, latency_ms: int, trust_anchor: Path | None, *,
                 interfaces: tuple[str, ...] = (), name: str = "unbound", root_zone: Path | None = None) -> str:
    """unbound's configuration: the lab's validating resolver; or (interfaces, name, root_zone) a
    second one that takes the root from `root_zone` instead of asking NSD for it."""
    if not interfaces:
        interfaces = (UNBOUND_BEHIND_PROXY,) if latency_ms > 0 else (RESOLVER, RESOLVER6)
    auth = zones.SERVERS["nsd"][1]
    lines = ["server:"]
    lines += [f"  interface: {a}" for a in interfaces]
    lines += [
        "  port: 53",
        "  verbosity: 1",
        '  username: ""',
        '  chroot: ""',
        f'  directory: "{d}"',
        f'  pidfile: "{d / (name + ".pid")}"',
        f'  logfile: "{d / (name + ".log")}"',
        "  use-syslog: no",
        "  log-servfail: yes",
        f'  root-hints: "{d / "root.hints"}"',
        "  do-not-query-localhost: no",
        "  access-control: 0.0.0.0/0 allow",
        "  access-control: ::/0 allow",
        "  num-threads: 1",
        # One thread's defaults (1,024 queries in flight, 4,096 outgoing sockets) drop
        # queries when a bulk run keeps 200 audits going at once (issue 16's bench):
        # dropped queries turn into timeouts that measure the lab, not deliverck.
        "  num-queries-per-thread: 8192",
        "  outgoing-range: 8192",
        "  so-reuseport: no",
        "  do-ip6: yes",
        "  qname-minimisation: no",
        "  prefetch: no",
        "  ede: yes",
        # Broken scenarios must fail within seconds, not unbound's default minutes.
        "  outbound-msg-retry: 2",
        "  infra-cache-max-rtt: 1000",
        "  unknown-server-time-limit: 300",
        "  cache-max-negative-ttl: 10",
        "  discard-timeout: 10000",          # Debian's default drops a late SERVFAIL
        "  infra-host-ttl: 30",
        '  tls-cert-bundle: ""',
    ]
    if trust_anchor is not None:
        lines += ['  module-config: "validator iterator"', f'  trust-anchor-file: "{trust_anchor}"',
                  "  val-log-level: 2"]
    else:
        lines += ['  module-config: "iterator"']
    # unbound answers test. and the documentation reverse zones itself (RFC 6761,
    # RFC 6303); the lab serves them for real.
    for origin in sorted(o for o in tree.zones if o != zones.ROOT):
        lines.append(f'  local-zone: "{origin}" nodefault')
    lines += ["remote-control:", "  control-enable: no"]
    if root_zone is not None:
        lines += ["auth-zone:", '  name: "."', f'  zonefile: "{root_zone}"', "  for-downstream: no",
                  "  for-upstream: yes", "  fallback-enabled: no"]
    for origin in tree.user_origins:
        lines += ["stub-zone:", f'  name: "{origin}"'] + [f"  stub-addr: {a}" for a in auth]
    return "\n".join(lines) + "\n"


def root_hints() -> str:
    name, addresses = zones.SERVERS["nsd"]
    lines = [f". 3600000 NS {name}"]
    for a in addresses:
        lines.append(f"{name} 3600000 {'AAAA' if ':' in a else 'A'} {a}")
    return "\n".join(lines) + "\n"


SMTP_LOG = "smtp.log"


def _greeting(spec, hostname: str) -> str:
    if spec.behaviour in ("http", "close", "filtered"):
        return ""
    if spec.behaviour == "postfix":
        return f"220 {hostname} ESMTP Postfix"
    return spec.greeting or f"220 {hostname} ESMTP deliverck-lab"


def smtp_peer(d: Path, s: Scenario, address: str) -> m.SmtpPeer:
    spec = s.peer(address)
    hostname = s.smtp_hostname(address)
    uses_tls = spec.behaviour in ("smtp", "postfix") and (spec.starttls or 465 in spec.ports)
    return m.SmtpPeer(
        address=address, hostname=hostname, behaviour=spec.behaviour, ports=spec.ports,
        greeting=_greeting(spec, hostname), greeting_delay=spec.greeting_delay,
        starttls=spec.starttls and spec.behaviour in ("smtp", "postfix"), tls_versions=spec.tls_versions,
        cert=spec.cert, cert_names=tuple(spec.cert_names or s.cert_names(address)), cert_key=spec.cert_key,
        cert_signature=spec.cert_signature,
        cert_file=str(d / "tls" / f"{address.replace(':', '_')}.pem") if uses_tls else None,
        relay=spec.relay, clock_offset=spec.clock_offset)


def key_file(peer: m.SmtpPeer) -> str | None:
    return peer.cert_file[: -len(".pem")] + ".key" if peer.cert_file else None


def manifest_for(d: Path, scenarios: Sequence[Scenario], tree: zones.Tree, latency_ms: int,
                 trust_anchor: Path | None, postfix_unavailable: str | None = None) -> m.Manifest:
    servers = tuple(m.DnsServer(name.to_text(omit_final_dot=True), b, addrs)
                    for b, (name, addrs) in (*zones.SERVERS.items(), *zones.RESOLVERS.items()))
    return m.Manifest(
        schema=m.SCHEMA,
        lab_dir=str(d),
        resolver=RESOLVER,
        unbound=UNBOUND_BEHIND_PROXY if latency_ms > 0 else RESOLVER,
        dns_latency_ms=latency_ms,
        dnssec=trust_anchor is not None,
        trust_anchor=str(trust_anchor) if trust_anchor else None,
        servers=servers,
        zones=tuple(sorted(lz.origin.to_text() for lz in tree.served())),
        user_zones=tuple(o.to_text() for o in tree.user_origins),
        lo_addresses=tuple(tree.addresses()),
        scenarios=tuple(
            m.Scenario(
                name=s.name, domain=s.domain, description=s.description, served_by=s.served_by,
                reverse_served_by=s.reverse_served_by, signed=s.signed, addresses=s.addresses(),
                never_contacted=s.never_contacted,
                reverse=tuple(m.ReverseEntry(a, names) for a, names in s.reverse),
                smtp=tuple(smtp_peer(d, s, a) for a in s.smtp),
                expect=m.Expectation(s.expect.verdict, s.expect.findings, s.expect.absent, s.expect.requires),
                unavailable=(postfix_unavailable if postfix_unavailable and any(
                    spec.behaviour == "postfix" for _a, spec in s.peers) else None),
                kdcs=tuple(m.KdcSpec(address=k.address, behaviour=k.behaviour, realm=k.realm,
                                     clock_offset=k.clock_offset, kpasswd=k.kpasswd, principals=k.principals)
                           for k in s.kdcs))
            for s in scenarios),
        ca_file=str(d / "tls" / "ca.pem"),
        smtp_log=str(d / SMTP_LOG),
        postfix=None if postfix_unavailable else (postfix.version() or "unknown"),
        postfix_unavailable=postfix_unavailable,
    )


def _peer_config(s: m.Scenario, p: m.SmtpPeer) -> dict:
    return {"address": p.address, "hostname": p.hostname, "domain": s.domain, "behaviour": p.behaviour,
            "ports": list(p.ports), "greeting": p.greeting, "greeting_delay": p.greeting_delay,
            "starttls": p.starttls, "tls_versions": p.tls_versions, "cert_file": p.cert_file,
            "key_file": key_file(p), "relay": p.relay, "clock_offset": p.clock_offset,
            "weak": p.cert_key == "rsa1024" or p.cert_signature == "sha1"}


def services(manifest: m.Manifest, latency_ms: int) -> dict:
    return {
        "badns": [{"address": a, "behaviour": s.behaviour}
                  for s in manifest.servers if s.behaviour in badns.BEHAVIOURS for a in s.addresses],
        "smtp": list({p.address: _peer_config(s, p)   # first one wins
                      for s in reversed(manifest.scenarios) for p in reversed(s.smtp)
                      if p.behaviour != "postfix"}.values()),
        "smtp_log": manifest.smtp_log,
        "postfix": [{"address": p.address, "dir": str(postfix.instance_dir(Path(manifest.lab_dir), p.address))}
                    for s in manifest.scenarios if s.unavailable is None
                    for p in s.smtp if p.behaviour == "postfix"],
        "kdc": [{"address": k.address, "behaviour": k.behaviour, "realm": k.realm,
                 "clock_offset": k.clock_offset, "kpasswd": k.kpasswd, "principals": list(k.principals),
                 "dir": str(kdc.instance_dir(Path(manifest.lab_dir), k.address))}
                for s in manifest.scenarios for k in s.kdcs if k.behaviour != "refused"],
        "latency": ({"listen": [RESOLVER, RESOLVER6], "upstream": UNBOUND_BEHIND_PROXY,
                     "delay_ms": latency_ms} if latency_ms > 0 else None),
    }


def write_certificates(d: Path, manifest: m.Manifest) -> None:
    """A fresh lab CA, and for every TLS-speaking peer its certificate and key."""
    ca = certs.make_ca(d / "tls")
    for s in manifest.scenarios:
        for p in s.smtp:
            key = key_file(p)              # set exactly when cert_file is
            if p.cert_file and key:
                certs.issue(ca, p.cert_names, Path(p.cert_file), Path(key), profile=p.cert,
                            key_kind=p.cert_key, signature=p.cert_signature)


def write_postfix(d: Path, manifest: m.Manifest, scenarios: Sequence[Scenario] = ()) -> None:
    by_name = {s.name: s for s in scenarios}
    for s in manifest.scenarios:
        for p in s.smtp:
            if p.behaviour == "postfix" and s.unavailable is None:
                options = dict(by_name[s.name].peer(p.address).postfix) if s.name in by_name else {}
                postfix.write_instance(d, p.address, p.hostname, s.domain, p.starttls, p.cert_file, key_file(p),
                                       options)


def write_kdcs(d: Path, manifest: m.Manifest) -> None:
    for s in manifest.scenarios:
        for k in s.kdcs:
            if k.behaviour == "mit":
                kdc.write_instance(d, k.address, k.realm)


def postfix_reason() -> str | None:
    try:
        return postfix.unavailable(namespace_flags())
    except LabUnavailable as e:
        return str(e)


def prepare(d: Path, zone_dirs: Sequence[Path] = (), dns_latency_ms: int = 0,
            scenarios: Sequence[Scenario] | None = None, dnssec: bool = True,
            postfix_unavailable: str | None | bool = True) -> m.Manifest:
    """Fill directory `d` with everything the lab needs; return its manifest.

    postfix_unavailable: True = find out here; None = Postfix peers run; a string = why they cannot."""
    if scenarios is None:
        scenarios = load_all()
    found = problems(tuple(scenarios))
    if found:
        more = f" (and {len(found) - 1} more)" if len(found) > 1 else ""
        raise LabUnavailable(f"scenario data is inconsistent: {found[0]}{more}; fix deliverck/lab/scenarios/")
    builtin = len(zones.user_zone_files([BUILTIN_ZONES]))
    tree = zones.build(scenarios, [BUILTIN_ZONES, *zone_dirs])
    del tree.user_origins[:builtin]        # built-in zones are lab zones, not the user's
    dkim_keys.export(d)                    # private halves of {dkim:...} keys, for the lab's test sender (sendtest.py)
    trust_anchor = d / "root.ds" if dnssec else None
    if postfix_unavailable is True:
        postfix_unavailable = postfix_reason()
    manifest = manifest_for(d, scenarios, tree, dns_latency_ms, trust_anchor, postfix_unavailable or None)
    # Certificates before signing: {tlsa:...} placeholders hash them (tlsa.py).
    write_certificates(d, manifest)
    tlsa.fill(tree, manifest)
    if trust_anchor is not None:
        trust_anchor.write_text("\n".join(signing.sign(tree)) + "\n", encoding="utf-8")
    (d / "zones").mkdir(parents=True, exist_ok=True)
    for lz in tree.served():
        (d / "zones" / zones.file_name(lz.origin)).write_text(zones.zone_text(lz.records), encoding="utf-8")
    write_postfix(d, manifest, scenarios)
    write_kdcs(d, manifest)
    for a in manifest.lo_addresses:
        assert is_documentation(a), a      # nothing else ever goes onto lo
    (d / "nsd.conf").write_text(nsd_conf(d, tree), encoding="utf-8")
    (d / "unbound.conf").write_text(unbound_conf(d, tree, dns_latency_ms, trust_anchor), encoding="utf-8")
    (d / UNSIGNED_ROOT_ZONE).write_text(zones.zone_text(zones.unsigned_copy(tree.zones[zones.ROOT].records)),
                                        encoding="utf-8")
    (d / UNSIGNED_ROOT_CONF).write_text(
        unbound_conf(d, tree, 0, None, interfaces=zones.RESOLVERS["unsigned-root"][1], name="unbound-unsigned-root",
                     root_zone=d / UNSIGNED_ROOT_ZONE), encoding="utf-8")
    (d / "root.hints").write_text(root_hints(), encoding="utf-8")
    (d / "resolv.conf").write_text(f"nameserver {RESOLVER}\n", encoding="utf-8")
    (d / "services.json").write_text(json.dumps(services(manifest, dns_latency_ms), indent=1), encoding="utf-8")
    (d / "manifest.json").write_text(manifest.to_json(), encoding="utf-8")
    return manifest
