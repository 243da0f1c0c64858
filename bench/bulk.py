"""`make bench`, bulk part (`python -m bench --only bulk`): audits of many lab domains,
deliverck vs checkdmarc.

BULK_ZONE holds N generated mail domains (d<i>.bulk.example: MX, SPF, DMARC;
50 MX hosts on documentation addresses, no PTR), served by the lab like any
--zone-dir zone, behind the same DNS latency as the other benches.

Each run is a child process (`python -m bench.bulk N [CONCURRENCY [dns|all [ORIGIN [RESOLVER [WORKERS]]]]]`)
so that its peak RSS is its own: 1,000 and 10,000 domains side by side show whether
memory stays flat as the input grows.  Two kinds of runs: DNS-only checks (CHECKS),
and every default check (what `deliverck bulk` runs without --only: DNSSEC with
deliverck's own validation, DANE, MTA-STS, DKIM, Kerberos discovery, and SMTP, whose
connections are refused here: nothing listens on the generated MX addresses).  The
second kind is where a per-audit object kept alive by a module-level cache shows up
(issue 14: the DNSSEC sessions, ~85 KB per domain, 430 MB at 2,500 domains); it must
stay flat and within ALL_RSS_LIMIT_MB.  CPU time / wall time shows whether the run is
bound by the concurrency budget (low) or by the CPU (near 100 %).  checkdmarc (a
widely used SPF/DMARC checker, sequential per domain) does its own DNS-only work on
the same domains through the same resolver.
"""

from __future__ import annotations

import json
import resource
import shutil
import subprocess
import sys
import time
from pathlib import Path

from deliverck.lab.measure import run_measured

ORIGIN = "bulk.example"
DOMAINS = 10_000
MX_HOSTS = 50
CONCURRENCY = 200
CHECKS = ("mx", "ptr", "spf", "dmarc", "dnsbl")
ALL_CONCURRENCY = 50        # every default check asks ~50 questions per domain: a budget the lab resolver keeps up with
ALL_RSS_LIMIT_MB = 200
CHECKDMARC_DOMAINS = 40
WORKERS_DOMAINS = 3_000     # --workers N against --dask local:N (issue 16): same domains, same total concurrency


def write_zone(directory: Path, n: int = DOMAINS) -> Path:
    lines = [f"$ORIGIN {ORIGIN}.", "$TTL 3600",
             f"@ SOA ns.{ORIGIN}. hostmaster.{ORIGIN}. 1 3600 600 86400 300", "@ NS ns.test."]
    for j in range(MX_HOSTS):
        lines.append(f"mx{j} A 192.0.2.{200 + j % 10}")
    for i in range(n):
        d = f"d{i}"
        lines += [f"{d} MX 10 mx{i % MX_HOSTS}", f'{d} TXT "v=spf1 mx -all"',
                  f'_dmarc.{d} TXT "v=DMARC1; p=none; rua=mailto:dmarc@{d}.{ORIGIN}"']
    directory.mkdir(parents=True, exist_ok=True)
    path = directory / f"{ORIGIN}.zone"
    path.write_text("\n".join(lines) + "\n", encoding="ascii")
    return path


def domains(n: int, origin: str = ORIGIN) -> list[str]:
    return [f"d{i}.{origin}" for i in range(n)]


def default_workers() -> int:
    from deliverck.cli.flags import default_workers as cores

    return cores()


def child(n: int, concurrency: int = CONCURRENCY, checks: str = "dns", origin: str = ORIGIN,
          resolver: str = "", workers: str = "") -> int:
    """Audit n domains in this process; print wall, CPU and peak RSS as JSON.

    checks: "dns" for CHECKS, "all" for every default check (what `deliverck bulk` runs
    without --only: SMTP, DNSSEC, DANE, MTA-STS, DKIM ... too).  origin: the generated
    zone (ORIGIN, or bench/solo.py's).  resolver: an address to ask instead of
    /etc/resolv.conf (the bench table's 0 ms rows ask the lab's unbound behind the
    latency proxy).  workers: "" for `deliverck bulk`'s default (one process per core), "1"
    for the single process, "N" for N worker processes, "dask:N" for `--dask local:N`;
    concurrency is the total in flight in every case (dask: split between its workers)."""
    import asyncio
    import io

    from deliverck.config import Config
    from deliverck.fleet import bulk
    from deliverck.target import Target

    only = CHECKS if checks == "dns" else ()
    resolvers = ()
    if resolver:
        from deliverck.net.dns import parse_resolver
        resolvers = (parse_resolver(resolver),)
    base = Config(target=Target(input="-", name="invalid"), only=only, dns_timeout=5.0, resolvers=resolvers)

    class Counting:                      # count lines, keep none (like writing to a file)
        lines = 0

        def write(self, s):
            self.lines += s.count("\n")

        def flush(self):
            pass

    out = Counting()
    text = io.BytesIO(("\n".join(domains(n, origin)) + "\n").encode("ascii"))   # bulk reads bytes, line-bounded
    cpu0, t0 = time.process_time(), time.perf_counter()
    items = bulk.read_items(text, base)
    workers = workers or str(default_workers())
    if workers.startswith("dask:"):
        from deliverck.fleet.dask import run_on_dask

        n_dask = int(workers[5:])
        counts = run_on_dask(items, out, f"local:{n_dask}", max(1, concurrency // n_dask))
    elif workers != "1":
        from deliverck.fleet.workers import run_workers

        counts = run_workers(items, out, int(workers), concurrency)
    else:
        counts = asyncio.run(bulk.run_items(items, out, concurrency))
    wall, cpu = time.perf_counter() - t0, time.process_time() - cpu0
    children = resource.getrusage(resource.RUSAGE_CHILDREN)     # the worker processes, once they are reaped
    cpu += children.ru_utime + children.ru_stime
    rss_kb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    print(json.dumps({"n": n, "concurrency": concurrency, "checks": checks, "wall": wall, "cpu": cpu,
                      "rss_mb": rss_kb / 1024, "worker_rss_mb": children.ru_maxrss / 1024, "lines": out.lines,
                      "counts": counts, "workers": workers}))
    return 0


def _run_child(n: int, concurrency: int = CONCURRENCY, checks: str = "dns", origin: str = ORIGIN,
               resolver: str = "", workers: str = "") -> dict:
    r, peak = run_measured([sys.executable, "-m", "bench.bulk", str(n), str(concurrency), checks, origin, resolver,
                            workers],
                           capture_output=True, text=True, timeout=3600)
    if r.returncode != 0:
        raise RuntimeError(f"bulk bench child failed: {r.stderr.strip()[-300:]}")
    doc = json.loads(r.stdout.strip().splitlines()[-1])
    doc["rss_mb"] = peak
    return doc


def checkdmarc_exe() -> str | None:
    """checkdmarc from PATH or next to this Python (the bench extra installs it), or None."""
    exe = shutil.which("checkdmarc") or str(Path(sys.executable).with_name("checkdmarc"))
    return exe if Path(exe).exists() else None


def _checkdmarc(n: int) -> tuple[float, int] | None:
    exe = checkdmarc_exe()
    if exe is None:
        return None
    t0 = time.perf_counter()
    r = subprocess.run([exe, "-n", "127.0.0.1", "-t", "5", "-f", "json", *domains(n)],
                       capture_output=True, text=True, timeout=1800)
    wall = time.perf_counter() - t0
    try:
        done = len(json.loads(r.stdout))
    except (json.JSONDecodeError, TypeError):
        done = 0
    return wall, done


def bench(latency_ms: int) -> float:
    small, big, budget = _run_child(1_000), _run_child(DOMAINS), _run_child(1_000, 10)
    single = _run_child(DOMAINS, CONCURRENCY, "dns", ORIGIN, "", "1")
    print(f"  bulk DNS-only audits ({', '.join(CHECKS)}) of lab domains, "
          f"{latency_ms} ms per DNS answer, default workers ({default_workers()}) and one process")
    for r in (small, big, budget, single):
        rate = r["n"] / r["wall"]
        print(f"    {r['n']:>6} domains, concurrency {r['concurrency']:>3}, workers {r['workers']:>2}  "
              f"{r['wall']:.1f} s = {rate:.0f} domains/s; "
              f"CPU busy "
              f"{100 * r['cpu'] / r['wall']:.0f} %; peak RSS {r['rss_mb']:.0f} MB; "
              f"verdicts {r['counts']}")
    growth = big["rss_mb"] / small["rss_mb"]
    print(f"    memory 10k / 1k                {growth:.2f} (flat = 1.0)")
    every = [_run_child(1_000, ALL_CONCURRENCY, "all"), _run_child(DOMAINS, ALL_CONCURRENCY, "all")]
    print("  bulk audits with every default check (SMTP refused at connect: nothing listens on the MX addresses)")
    for r in every:
        print(f"    {r['n']:>6} domains, concurrency {r['concurrency']:>3}  {r['wall']:.1f} s = "
              f"{r['n'] / r['wall']:.0f} domains/s; CPU busy {100 * r['cpu'] / r['wall']:.0f} %; "
              f"peak RSS {r['rss_mb']:.0f} MB; verdicts {r['counts']}")
    peak = max(r["rss_mb"] for r in every)
    print(f"    memory 10k / 1k                {every[1]['rss_mb'] / every[0]['rss_mb']:.2f} (flat = 1.0); "
          f"peak {peak:.0f} MB ({'within' if peak <= ALL_RSS_LIMIT_MB else 'OVER'} {ALL_RSS_LIMIT_MB} MB)")
    workers_vs_dask(latency_ms)
    cd = _checkdmarc(CHECKDMARC_DOMAINS)
    ours = big["n"] / big["wall"]
    if cd is None:
        print("    checkdmarc                     not installed (pip install checkdmarc) - comparison skipped")
    else:
        wall, done = cd
        theirs = CHECKDMARC_DOMAINS / wall
        print(f"    checkdmarc (sequential)        {CHECKDMARC_DOMAINS} domains in {wall:.1f} s = {theirs:.1f} "
              f"domains/s ({done} results)")
        print(f"    RATIO deliverck / checkdmarc   {ours / theirs:.0f}x the throughput (deliverck also does "
              "PTR and DNSBL; checkdmarc also NS, BIMI, MTA-STS/TLS-RPT records)")
    return 1.0


def workers_vs_dask(latency_ms: int, n: int = WORKERS_DOMAINS, runs: int = 2) -> dict[str, float]:
    """Domains/s of one process, --workers N and --dask local:N (N = cores), same domains and total
    concurrency, in turns so that a change of load hits all three alike; the best of `runs` each."""
    cores = default_workers()
    kinds = {"1": "1", "workers": str(cores), "dask": f"dask:{cores}"}
    best: dict[str, float] = dict.fromkeys(kinds, 0.0)
    for _ in range(runs):
        for key, workers in kinds.items():
            r = _run_child(n, CONCURRENCY, "dns", ORIGIN, "", workers)
            best[key] = max(best[key], r["n"] / r["wall"])
    print(f"  bulk DNS-only, {latency_ms} ms, {n} domains, concurrency {CONCURRENCY} in total, {cores} cores: "
          f"one process {best['1']:.0f}/s, --workers {cores} {best['workers']:.0f}/s, --dask local:{cores} "
          f"{best['dask']:.0f}/s; RATIO dask / workers {best['dask'] / best['workers']:.2f} (goal: within 10 %)")
    best["cores"] = cores
    return best


if __name__ == "__main__":
    sys.exit(child(int(sys.argv[1]), *(int(a) for a in sys.argv[2:3]), *sys.argv[3:7]))
