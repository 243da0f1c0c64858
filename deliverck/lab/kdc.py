"""Kerberos KDCs of the lab: real MIT krb5kdc/kadmind, and silent or refusing addresses.

Every `mit` KDC is one private instance in <lab>/kdc/<address>/: krb5.conf,
kdc.conf, an empty kadm5.acl, its own database and stash (made at every start
by `create_database`), logs and pid files.  KRB5_CONFIG and KRB5_KDC_PROFILE
point there, so nothing reads or writes /etc/krb5*.  A KDC with a clock
offset runs under libfaketime (LD_PRELOAD, FAKETIME="+600"): the wrapper
`faketime` names its shared memory after its own pid, which collides between
pid namespaces sharing /dev/shm.

`filtered` KDCs are served by the lab's Python process (`serve_filtered`);
`refused` ones are an address on lo and nothing else.
"""

from __future__ import annotations

import asyncio
import glob
import os
import secrets
import socket
import subprocess
from pathlib import Path

KDC_PORT = 88
KPASSWD_PORT = 464
KADMIN_PORT = 749
ENCTYPES = "aes256-cts-hmac-sha1-96:normal aes128-cts-hmac-sha1-96:normal"
PACKAGES = "krb5-kdc krb5-admin-server faketime"
FAKETIME_LIBS = ("/usr/lib/*/faketime/libfaketime.so.1", "/usr/lib/faketime/libfaketime.so.1",
                 "/usr/lib64/faketime/libfaketime.so.1")


def instance_dir(lab_dir: Path, address: str) -> Path:
    return lab_dir / "kdc" / address.replace(":", "_")


def _listen(address: str, port: int) -> str:
    return f"[{address}]:{port}" if ":" in address else f"{address}:{port}"


def krb5_conf(realm: str, address: str) -> str:
    return f"""\
[libdefaults]
  default_realm = {realm}
  dns_lookup_kdc = false
  dns_lookup_realm = false
  rdns = false

[realms]
  {realm} = {{
    kdc = {_listen(address, KDC_PORT)}
    admin_server = {_listen(address, KADMIN_PORT)}
    kpasswd_server = {_listen(address, KPASSWD_PORT)}
  }}
"""


def kdc_conf(d: Path, realm: str, address: str) -> str:
    # Every listener names the address: MIT's defaults are wildcards, which would
    # collide between the instances of one namespace.
    return f"""\
[kdcdefaults]
  kdc_listen = {_listen(address, KDC_PORT)}
  kdc_tcp_listen = {_listen(address, KDC_PORT)}

[realms]
  {realm} = {{
    database_name = {d / "principal"}
    key_stash_file = {d / "stash"}
    acl_file = {d / "kadm5.acl"}
    kpasswd_listen = {_listen(address, KPASSWD_PORT)}
    kadmind_listen = {_listen(address, KADMIN_PORT)}
    master_key_type = aes256-cts-hmac-sha1-96
    supported_enctypes = {ENCTYPES}
    max_life = 10h 0m 0s
    max_renewable_life = 7d 0h 0m 0s
  }}

[logging]
  kdc = FILE:{d / "kdc.log"}
  admin_server = FILE:{d / "kadmind.log"}
  default = FILE:{d / "krb5.log"}

[plugins]
  kdcpreauth = {{
    disable = spake
  }}
"""


def write_instance(lab_dir: Path, address: str, realm: str) -> Path:
    d = instance_dir(lab_dir, address)
    d.mkdir(parents=True, exist_ok=True)
    (d / "krb5.conf").write_text(krb5_conf(realm, address), encoding="utf-8")
    (d / "kdc.conf").write_text(kdc_conf(d, realm, address), encoding="utf-8")
    (d / "kadm5.acl").write_text("", encoding="utf-8")
    return d


def env(d: Path, clock_offset: int = 0) -> dict[str, str]:
    """The environment of every Kerberos tool of instance `d`: its files only, and its clock."""
    e = {**os.environ,
         "KRB5_CONFIG": str(d / "krb5.conf"),
         "KRB5_KDC_PROFILE": str(d / "kdc.conf"),
         "KRB5RCACHEDIR": str(d),
         "KRB5_KTNAME": f"FILE:{d / 'krb5.keytab'}",
         "KRB5_CLIENT_KTNAME": f"FILE:{d / 'client.keytab'}",
         "KRB5CCNAME": f"FILE:{d / 'ccache'}"}
    if clock_offset:
        lib = faketime_library()
        if lib is None:
            raise FileNotFoundError("libfaketime is not installed (apt-get install faketime)")
        e.update({"LD_PRELOAD": lib, "FAKETIME": f"{clock_offset:+d}", "FAKETIME_DONT_FAKE_MONOTONIC": "1"})
    return e


def faketime_library() -> str | None:
    for pattern in FAKETIME_LIBS:
        found = sorted(glob.glob(pattern))
        if found:
            return found[0]
    return None


def create_argv(tool: str, realm: str) -> list[str]:
    """kdb5_util: a fresh database and stash, under a master password nobody needs to know."""
    return [tool, "create", "-s", "-r", realm, "-P", secrets.token_urlsafe(24)]


def principals_script(principals: tuple[str, ...] | list[str]) -> str:
    """kadmin.local commands (on stdin): each principal with a random key, pre-authentication required."""
    return "".join(f"addprinc -randkey +requires_preauth {p}\n" for p in principals)


def krb5kdc_argv(tool: str, d: Path, realm: str) -> list[str]:
    return [tool, "-n", "-r", realm, "-P", str(d / "krb5kdc.pid")]


def kadmind_argv(tool: str, d: Path, realm: str) -> list[str]:
    return [tool, "-nofork", "-r", realm, "-P", str(d / "kadmind.pid")]


def create_databases(instances: list[dict], tools: dict[str, str]) -> None:
    """Make every instance's database in parallel, then its principals; raise RuntimeError with the
    first failure (one line)."""
    def run_all(jobs):
        procs = [(what, subprocess.Popen(argv, env=e, stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                                         stderr=subprocess.STDOUT, text=True), text)
                 for what, argv, e, text in jobs]
        errors = []
        for what, p, text in procs:
            out, _ = p.communicate(text, timeout=30)
            if p.returncode != 0 or "add_principal:" in out:
                lines = [ln for ln in out.splitlines() if ln.strip() and "kadmin.local:" not in ln]
                errors.append(f"{what} failed: {'; '.join(lines[-3:]) or f'status {p.returncode}'}")
        if errors:
            raise RuntimeError(errors[0])

    run_all([(f"kdb5_util create for the KDC on {i['address']}", create_argv(tools["kdb5_util"], i["realm"]),
              env(Path(i["dir"])), "") for i in instances])
    run_all([(f"kadmin.local addprinc for the KDC on {i['address']}",
              [tools["kadmin.local"], "-r", i["realm"]], env(Path(i["dir"])), principals_script(i["principals"]))
             for i in instances if i["principals"]])


class _Discard(asyncio.DatagramProtocol):
    """A bound UDP port that reads every datagram and never answers (so no ICMP either)."""

    def datagram_received(self, data, addr) -> None:
        pass


async def serve_filtered(address: str) -> list:
    """A firewall dropping everything to 88 and 464: TCP SYNs go unanswered, UDP is swallowed."""
    from deliverck.lab.smtp_peers import Filtered

    loop = asyncio.get_running_loop()
    held: list = []
    family = socket.AF_INET6 if ":" in address else socket.AF_INET
    for port in (KDC_PORT, KPASSWD_PORT):
        held.append(Filtered(address, port))
        transport, _ = await loop.create_datagram_endpoint(_Discard, local_addr=(address, port), family=family)
        held.append(transport)
    return held
