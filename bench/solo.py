"""Generated mail domains that share nothing, for the bulk CPU row of `make bench` (issue 16).

Most real bulk lists are domains on infrastructure of their own, so the shared
cache of a bulk run saves nothing: every domain costs all of its questions.  Each
domain d<i>.solo.example here has its own MX host, its own IPv4 and IPv6 address,
and its own PTRs (naming the MX host back, so forward confirmation needs no extra
question), SPF and DMARC.

Only documentation addresses are used (RFC 5737, RFC 3849), and no packet is ever
sent to them: the bench runs DNS-only checks.  IPv6 is plentiful (one /48 of
2001:db8::/32, one reverse zone).  IPv4 is not: the three documentation /24s are
the lab's own reverse zones, with the scenarios' PTRs in them, so each free
address gets a reverse zone of its own (`<n>.<c>.<b>.<a>.in-addr.arpa`), which the
lab delegates from its /24 zone like any --zone-dir zone (deliverck/lab/zones.py
build()).  Free means: named nowhere in the lab's scenarios and zones nor in the
bench's; that leaves about 580 addresses, so the row audits that many domains
(at most DOMAINS) and says so.
"""

from __future__ import annotations

import ipaddress
import re
from pathlib import Path

from bench import ZONES

ORIGIN = "solo.example"
DOMAINS = 1_000
V6_PREFIX = ipaddress.ip_network("2001:db8:5e1f::/48")   # named by no lab scenario
V4_NETS = ("192.0.2", "198.51.100", "203.0.113")
SOA = "@ SOA ns.test. hostmaster.test. 1 3600 600 86400 300\n@ NS ns.test.\n"

_FORWARD = re.compile(r"\b(192\.0\.2|198\.51\.100|203\.0\.113)\.(\d{1,3})\b")
_REVERSED = re.compile(r"\b(\d{1,3})\.(2\.0\.192|100\.51\.198|113\.0\.203)\b")


def _lab_sources() -> list[Path]:
    import deliverck.lab

    lab = Path(deliverck.lab.__file__).resolve().parent
    return [p for p in (*lab.rglob("*"), *ZONES.rglob("*"))
            if p.is_file() and p.suffix in (".toml", ".zone", ".py")]


def used_v4() -> set[str]:
    """Every documentation IPv4 the lab or the bench writes down, forwards or as a reverse name."""
    used: set[str] = set()
    for path in _lab_sources():
        text = path.read_text(encoding="utf-8", errors="replace")
        used.update(f"{m.group(1)}.{m.group(2)}" for m in _FORWARD.finditer(text))
        for m in _REVERSED.finditer(text):
            used.add(".".join(reversed(m.group(2).split("."))) + "." + m.group(1))
    return used


def free_v4(limit: int = DOMAINS) -> list[str]:
    """Documentation IPv4 addresses no lab data names (network and broadcast addresses left out)."""
    used = used_v4()
    free = [f"{net}.{n}" for net in V4_NETS for n in range(1, 255) if f"{net}.{n}" not in used]
    return free[:limit]


def v6(i: int) -> str:
    return str(V6_PREFIX.network_address + i + 1)


def write_zones(directory: Path, n: int = DOMAINS) -> int:
    """Write the forward zone and every reverse zone into `directory`; return the domain count."""
    v4 = free_v4(n)
    n = len(v4)
    directory.mkdir(parents=True, exist_ok=True)
    fwd = [f"$ORIGIN {ORIGIN}.", "$TTL 3600", SOA.rstrip("\n")]
    rev6 = ["$TTL 3600", SOA.rstrip("\n")]
    for i, a in enumerate(v4):
        d, host = f"d{i}", f"mx.d{i}.{ORIGIN}."
        fwd += [f"{d} MX 10 mx.{d}", f"mx.{d} A {a}", f"mx.{d} AAAA {v6(i)}", f'{d} TXT "v=spf1 mx -all"',
                f'_dmarc.{d} TXT "v=DMARC1; p=reject; rua=mailto:dmarc@{d}.{ORIGIN}"']
        rev6.append(f"{ipaddress.ip_address(v6(i)).reverse_pointer}. PTR {host}")
        rname = ipaddress.ip_address(a).reverse_pointer
        (directory / f"{rname}.zone").write_text(f"$TTL 3600\n{SOA}@ PTR {host}\n", encoding="ascii")
    (directory / f"{ORIGIN}.zone").write_text("\n".join(fwd) + "\n", encoding="ascii")
    (directory / f"{_v6_zone()}.zone").write_text("\n".join(rev6) + "\n", encoding="ascii")
    return n


def _v6_zone() -> str:
    nibbles = V6_PREFIX.prefixlen // 4
    return ".".join(V6_PREFIX.network_address.reverse_pointer.split(".")[32 - nibbles:])


def domains(n: int) -> list[str]:
    return [f"d{i}.{ORIGIN}" for i in range(n)]
