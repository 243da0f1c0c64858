"""`python -m bench [--latency MS] [--only PART,...]`: build a lab with DNS latency, run the parts inside.

Outside the lab this writes the bulk bench's generated zone, names the bench's
zones and block lists, and starts the lab; inside (--inside) it runs the parts
in the order `make bench` always printed them.  --only runs some parts (the
whole bench takes about 30 minutes): e.g. `python -m bench --only dnsbl`.  The last
part, "table", is issue 16's summary (bench/table.py): every row of "speed a user
feels" beside its bound or peer, measured on its own in about 4 minutes with
`python -m bench --only table` (`make bench BENCH_ARGS="--only table"`).
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
from pathlib import Path

from bench import DNSBL_LISTS, HERE, ZONES

LATENCY_MS = 50
# In the order they print; "chain" and "cli" frame the others as they always did.
PARTS = ("chain", "tarpit", "spf", "dnsbl", "dane", "kerberos", "bulk", "hostile", "explain", "cli", "table")


def inside(latency_ms: int, parts: tuple[str, ...]) -> int:
    from bench import audits, bulk, table

    runners = {"tarpit": audits.tarpit_bench, "spf": audits.spf_bench, "dnsbl": audits.dnsbl_bench,
               "dane": audits.dane_bench, "kerberos": audits.kerberos_bench}
    worst = None
    for part in parts:
        if part == "chain":
            worst = audits.chain_bench(latency_ms)
            if worst == float("inf"):
                return 1
        elif part in runners:
            worst = max(worst or 0.0, runners[part](latency_ms))
        elif part == "bulk":
            bulk.bench(latency_ms)                 # throughput and memory, not a ratio to a critical path
        elif part == "hostile":
            audits.hostile_bench(latency_ms)
        elif part == "explain":
            audits.explain_bench()
        elif part == "cli":
            audits.cli_bench(worst)
        elif part == "table":
            table.bench()                          # a summary: measures its own rows, in the same run
    return 0


def _parts(text: str) -> tuple[str, ...]:
    wanted = [p.strip() for p in text.split(",") if p.strip()]
    unknown = [p for p in wanted if p not in PARTS]
    if unknown or not wanted:
        raise argparse.ArgumentTypeError(f"unknown part {unknown[0] if unknown else text!r}: "
                                         f"give some of {','.join(PARTS)}")
    return tuple(p for p in PARTS if p in wanted)


def main(argv=None) -> int:
    p = argparse.ArgumentParser(prog="python -m bench", description=__doc__.splitlines()[0])
    p.add_argument("--latency", type=int, default=LATENCY_MS, help="ms added to every DNS answer")
    p.add_argument("--only", type=_parts, default=PARTS, metavar="PART,...",
                   help=f"run these parts only, of: {','.join(PARTS)}")
    p.add_argument("--inside", action="store_true", help=argparse.SUPPRESS)
    a = p.parse_args(argv)
    if a.inside:
        return inside(a.latency, a.only)
    from bench import bulk, solo
    from deliverck.lab import run
    from deliverck.records.dnsbl import EXTRA_LISTS_ENV, extra_files

    # The commands the lab runs import `bench` from this checkout, wherever they start.
    os.environ["PYTHONPATH"] = os.pathsep.join(x for x in (str(HERE.parent), os.environ.get("PYTHONPATH")) if x)
    os.environ[EXTRA_LISTS_ENV] = os.pathsep.join(
        extra_files(os.pathsep.join([os.environ.get(EXTRA_LISTS_ENV, ""), str(DNSBL_LISTS)])))
    with tempfile.TemporaryDirectory(prefix="deliverck-bench-") as tmp:
        zone_dirs = [ZONES]
        if "bulk" in a.only or "table" in a.only:
            generated = Path(tmp) / "zones"
            bulk.write_zone(generated)             # 10,000 generated mail domains for the bulk bench
            zone_dirs.append(generated)
        if "table" in a.only:
            alone = Path(tmp) / "solo"
            solo.write_zones(alone)                # domains that share nothing, each with reverse zones
            zone_dirs.append(alone)
        return run([sys.executable, "-m", "bench", "--inside", "--latency", str(a.latency),
                    "--only", ",".join(a.only)], dns_latency_ms=a.latency, zone_dirs=zone_dirs)


if __name__ == "__main__":
    sys.exit(main())
