"""SPF prefetch benchmark: a 10-lookup, 4-deep include tree over a DNS with
a fixed latency per answer; prints the evaluation time in round trips.

    python -m bench.spf_prefetch [RTT_MS]         # in-memory DNS, no lab needed
    deliverck lab run --dns-latency 50 -- python -m bench.spf_prefetch --lab spf-deep.test IP

Without prefetch the tree costs one round trip per lookup (14 here: 4 TXT,
9 A, 1 MX + its A); with it, about its depth.
"""

from __future__ import annotations

import asyncio
import sys
import time

from deliverck.net.memdns import MemoryDns
from deliverck.records.spf.evaluator import check_host

IP = "192.0.2.10"

TREE = {
    "example.com": [("TXT", "v=spf1 include:a.example.com mx -all"), ("MX", "10 mx.example.com.")],
    "mx.example.com": [("A", IP)],
    "a.example.com": [("TXT", "v=spf1 include:b.example.com a:h1.example.com -all")],
    "b.example.com": [("TXT", "v=spf1 include:c.example.com a:h2.example.com a:h6.example.com -all")],
    "c.example.com": [("TXT", "v=spf1 a:h3.example.com a:h4.example.com a:h5.example.com -all")],
    **{f"h{i}.example.com": [("A", "198.51.100.1")] for i in range(1, 7)},
}


async def measure(rtt: float = 0.05) -> dict:
    dns = MemoryDns(TREE, delay=rtt)
    t0 = time.monotonic()
    r = await check_host(IP, "example.com", sender="x@example.com", dns=dns)
    elapsed = time.monotonic() - t0
    return {"result": r.result, "lookups_used": r.lookups_used, "queries": len(dns.queries),
            "max_concurrent": dns.max_active, "elapsed_s": round(elapsed, 3),
            "round_trips": round(elapsed / rtt, 2), "depth": 4}


async def measure_lab(domain: str, ip: str, rtt: float) -> dict:
    from deliverck.net.dns import DnsClient

    dns = DnsClient(timeout=5)
    t0 = time.monotonic()
    r = await check_host(ip, domain, sender=f"postmaster@{domain}", dns=dns)
    elapsed = time.monotonic() - t0
    return {"result": r.result, "lookups_used": r.lookups_used, "queries": dns.stats.queries,
            "elapsed_s": round(elapsed, 3), "round_trips": round(elapsed / rtt, 2) if rtt else None}


def main(argv: list[str]) -> None:
    if argv[:1] == ["--lab"]:
        domain, ip = argv[1], argv[2]
        rtt = float(argv[3]) / 1000 if len(argv) > 3 else 0.05
        print(asyncio.run(measure_lab(domain, ip, rtt)))
        return
    rtt = float(argv[0]) / 1000 if argv else 0.05
    print(asyncio.run(measure(rtt)))


if __name__ == "__main__":
    main(sys.argv[1:])
