"""`make bench` (`python -m bench`): how close is an audit to its critical path?

The lab delays every DNS answer by LATENCY ms (a proxy in front of the lab
resolver).  An audit of `many-mx.test` (4 MX hosts, each with A and AAAA)
cannot finish faster than its longest chain of dependent round trips:

    MX -> A/AAAA of an MX host -> PTR of its address -> A/AAAA of the PTR name

The last step costs nothing when the PTR names are the MX host names
(their addresses are already known: the context asks each question once),
so the chain is worked out from what the audit found, not assumed.  We
print wall time / (chain x LATENCY); 1.0 is perfect concurrency, and the
sequential sum of all lookups is shown for scale.  Ratios, not absolute
times, are the result: they hold on any machine.
"""

from __future__ import annotations

import asyncio
import statistics
import subprocess
import sys
import time

LATENCY_MS = 50
TARGETS = ("many-mx.test", "many-mx-ptr.test")
TARPIT_TARGET = "many-mx-tarpit.test"
SMTP_TIMEOUT = 2.0
RUNS = 7


def chain_length(report) -> int:
    """Dependent round trips: MX -> host A/AAAA -> PTR [-> A/AAAA of PTR names not yet known]."""
    findings = [f for c in report.checks for f in c.findings]
    mx_hosts = {e.split()[1] for f in findings if f.id == "mx.records" for e in f.evidence}
    ptr_names = {f.args["ptr_name"] for f in findings if f.id == "ptr.confirmed"}
    return 3 + (1 if ptr_names - mx_hosts else 0)


async def _audit_once(target: str, **options):
    from deliverck.config import Config
    from deliverck.runner import run_audit
    from deliverck.target import parse_target

    options.setdefault("only", ("mx", "ptr"))
    cfg = Config(target=parse_target(target), **options)
    t0 = time.perf_counter()
    report = await run_audit(cfg)
    return time.perf_counter() - t0, report


def chain_bench(latency_ms: int) -> float:
    """Checks mx and ptr on TARGETS; returns the worst ratio (inf when the lab is not intact)."""
    from deliverck.net import dns as dnsnet

    queries = {}
    orig = dnsnet.DnsClient._query

    async def counting(self, qname, rdtype):
        queries[(qname, rdtype)] = queries.get((qname, rdtype), 0) + 1
        return await orig(self, qname, rdtype)

    print(f"bench: audits (checks mx, ptr) with {latency_ms} ms added to every DNS answer; median of {RUNS} runs")
    worst = 0.0
    for target in TARGETS:
        asyncio.run(_audit_once(target))  # warm the lab resolver's cache, imports, PSL
        dnsnet.DnsClient._query = counting
        walls = []
        try:
            for _ in range(RUNS):
                queries.clear()
                wall, report = asyncio.run(_audit_once(target))
                if report.verdict.value != "pass":
                    print(f"bench: {target} did not pass ({report.verdict.value}); is the lab intact?",
                          file=sys.stderr)
                    return float("inf")
                walls.append(wall)
        finally:
            dnsnet.DnsClient._query = orig
        chain = chain_length(report)
        bound = chain * latency_ms / 1000
        med = statistics.median(walls)
        n = sum(queries.values())
        assert all(v == 1 for v in queries.values()), "a DNS question was asked twice"
        worst = max(worst, med / bound)
        print(f"  {target}")
        print(f"    DNS questions per audit        {n}, each asked once")
        print(f"    sequential sum of lookups      {n * latency_ms} ms")
        print(f"    critical path                  {chain} round trips = {bound * 1000:.0f} ms")
        print(f"    audit wall time                {med * 1000:.0f} ms (min {min(walls) * 1000:.0f}, "
              f"max {max(walls) * 1000:.0f})")
        print(f"    RATIO wall / critical path     {med / bound:.2f}")
    return worst


def cli_bench(worst: float | None) -> None:
    t0 = time.perf_counter()
    cli = subprocess.run([sys.executable, "-m", "deliverck", TARGETS[0], "--only", "mx,ptr"],
                         capture_output=True, text=True)
    cli_wall = time.perf_counter() - t0
    if worst is not None:
        print(f"  worst ratio {worst:.2f} (target <= 1.3)")
    print(f"  whole CLI process for {TARGETS[0]}: {cli_wall * 1000:.0f} ms (exit {cli.returncode}; "
          "includes interpreter start-up)")


def tarpit_bench(latency_ms: int) -> float:
    """Full audit (every check, SMTP included) of 4 MX hosts, one of them a tarpit.

    Its critical path: MX -> A/AAAA (2 round trips) -> connect -> the
    tarpit's greeting timeout; every other session runs alongside it.
    """
    from pathlib import Path

    from deliverck.lab.manifest import current

    ca = Path(current().ca_file)
    deadline = 30.0
    options = dict(only=(), ca_file=ca, smtp_timeout=SMTP_TIMEOUT, deadline=deadline)
    asyncio.run(_audit_once(TARPIT_TARGET, **options))
    walls = []
    for _ in range(3):
        wall, report = asyncio.run(_audit_once(TARPIT_TARGET, **options))
        walls.append(wall)
    ids = {f.id for c in report.checks for f in c.findings}
    bound = 2 * latency_ms / 1000 + SMTP_TIMEOUT
    med = statistics.median(walls)
    print(f"  {TARPIT_TARGET} (all checks; one MX is a tarpit; --smtp-timeout {SMTP_TIMEOUT:g})")
    print(f"    verdict                        {report.verdict.value} (tarpit reported: {'smtp.tarpit' in ids})")
    print(f"    critical path                  2 round trips + greeting timeout = {bound * 1000:.0f} ms")
    print(f"    audit wall time                {med * 1000:.0f} ms (deadline {deadline:g} s)")
    print(f"    RATIO wall / critical path     {med / bound:.2f}")
    return med / bound


def spf_bench(latency_ms: int) -> float:
    """SPF check_host() over a 10-lookup, 4-deep include tree (spf-deep.test).

    Dependent round trips: TXT of the domain, of each of the 3 nested includes,
    then the A lookups named in the deepest record = 5; the mx mechanism's
    lookups are fetched ahead while the includes are walked.
    """
    from deliverck.net.dns import DnsClient
    from deliverck.records.spf import check_host

    async def once():
        dns = DnsClient(timeout=5)
        t0 = time.perf_counter()
        r = await check_host("198.51.100.226", "spf-deep.test", sender="postmaster@spf-deep.test", dns=dns)
        return time.perf_counter() - t0, r, dns.stats.queries

    asyncio.run(once())
    runs = [asyncio.run(once()) for _ in range(RUNS)]
    med = statistics.median(w for w, _, _ in runs)
    _, result, queries = runs[-1]
    chain, rtt = 5, latency_ms / 1000
    print("  SPF spf-deep.test (10 lookups, 4-deep include tree)")
    print(f"    result                         {result.result} ({result.lookups_used} lookups counted, {queries} queries)")
    print(f"    one lookup at a time           {queries} round trips = {queries * latency_ms} ms")
    print(f"    critical path                  {chain} round trips = {chain * latency_ms} ms")
    print(f"    evaluation wall time           {med * 1000:.0f} ms = {med / rtt:.2f} round trips")
    print(f"    RATIO wall / critical path     {med / (chain * rtt):.2f}")
    return med / (chain * rtt)


def dnsbl_bench(latency_ms: int) -> float:
    """An audit (dnsbl check only) of dnsbl-clean.test against 20 lists.

    MX -> A/AAAA -> one round of list queries: 3 round trips, whatever the
    number of lists (each list's RFC 5782 test entries go out in parallel).
    """
    from deliverck.records.dnsbl import load

    lists = load()
    ids = [x.id for x in lists.defaults()] + [x.id for x in lists.lists if x.id.startswith("bench-")]
    ids = tuple(ids[:20])
    options = dict(only=("dnsbl",), dnsbl_lists=ids)
    asyncio.run(_audit_once("dnsbl-clean.test", **options))
    walls = []
    for _ in range(RUNS):
        wall, report = asyncio.run(_audit_once("dnsbl-clean.test", **options))
        walls.append(wall)
    med = statistics.median(walls)
    rtt = latency_ms / 1000
    chain = 3
    print(f"  DNSBL dnsbl-clean.test against {len(ids)} lists (verdict {report.verdict.value})")
    print(f"    critical path                  {chain} round trips = {chain * latency_ms} ms")
    print(f"    audit wall time                {med * 1000:.0f} ms = {med / rtt:.2f} round trips")
    print(f"    RATIO wall / critical path     {med / (chain * rtt):.2f}")
    return med / (chain * rtt)


def dane_bench(latency_ms: int) -> float:
    """A DANE audit of good-dane.test: checks mx, starttls, dane and dnssec.

    Dependent round trips: MX, then the MX host's A/AAAA and its TLSA at once,
    then the SMTP session (on loopback, no added latency); the DNSSEC chain of
    every RRset is fetched concurrently (DS and DNSKEY of every zone cut at once).
    The bound is those DNS round trips plus the time of the SMTP session
    itself, measured in the same run from its transcript-free duration.
    """
    from pathlib import Path

    from deliverck.lab.manifest import current

    m = current()
    options = dict(only=("mx", "starttls", "dane", "dnssec"), ca_file=Path(m.ca_file),
                   trust_anchor=Path(m.trust_anchor))
    asyncio.run(_audit_once("good-dane.test", **options))
    walls, smtp_ms = [], []
    for _ in range(RUNS):
        wall, report = asyncio.run(_audit_once("good-dane.test", **options))
        walls.append(wall)
        starttls = next(c for c in report.checks if c.id == "starttls")
        smtp_ms.append(starttls.duration_ms)
    ids = {f.id for c in report.checks for f in c.findings}
    rtt = latency_ms / 1000
    # MX -> addresses -> session: the starttls check's own duration already holds the two DNS
    # round trips and the session, so it is the floor any audit of it must wait for.
    floor = statistics.median(smtp_ms) / 1000
    dns_bound = 3 * rtt        # MX -> TLSA/addresses -> own DNSSEC chain (one round, all cuts at once)
    bound = max(floor, dns_bound)
    med = statistics.median(walls)
    print(f"  DANE good-dane.test (mx, starttls, dane, dnssec; verdict {report.verdict.value}, "
          f"dane.matched: {'dane.matched' in ids}, dnssec.secure: {'dnssec.secure' in ids})")
    print(f"    DNS critical path              3 round trips = {dns_bound * 1000:.0f} ms")
    print(f"    SMTP path (2 RTT + session)    {floor * 1000:.0f} ms")
    print(f"    audit wall time                {med * 1000:.0f} ms")
    print(f"    RATIO wall / critical path     {med / bound:.2f}")
    return med / bound


KDC_TIMEOUT = 2.0


def kerberos_bench(latency_ms: int) -> float:
    """The kerberos check on kerberos-one-filtered.test: a realm of three KDCs, one filtered.

    Dependent steps: the locator SRV lookups (all at once), the KDC hosts'
    A/AAAA, then every port of every KDC probed at the same moment: the
    filtered KDC's silent ports cost one --kdc-timeout together, whatever
    the number of KDCs, ports and UDP re-sends.
    """
    options = dict(only=("kerberos",), kdc_timeout=KDC_TIMEOUT)
    asyncio.run(_audit_once("kerberos-one-filtered.test", **options))
    walls = []
    for _ in range(3):
        wall, report = asyncio.run(_audit_once("kerberos-one-filtered.test", **options))
        walls.append(wall)
    findings = [f for c in report.checks for f in c.findings]
    alive = sorted({f.subject for f in findings if f.id == "kerberos.alive"})
    filtered = sorted({f.args["port"] for f in findings if f.id == "kerberos.port_filtered"})
    rtt = latency_ms / 1000
    bound = 2 * rtt + KDC_TIMEOUT
    med = statistics.median(walls)
    serial = 5 * KDC_TIMEOUT    # UDP 88 with 3 tries of a timeout each, then TCP 88, then TCP 464
    print(f"  Kerberos kerberos-one-filtered.test (3 KDCs, one filtered; --kdc-timeout {KDC_TIMEOUT:g}; "
          f"verdict {report.verdict.value})")
    print(f"    live KDCs                      {', '.join(alive) or '-'}; filtered: {', '.join(filtered) or '-'}")
    print(f"    port by port, retry by retry   {serial * 1000:.0f} ms for the filtered KDC alone")
    print(f"    critical path                  2 round trips + one timeout = {bound * 1000:.0f} ms")
    print(f"    audit wall time                {med * 1000:.0f} ms")
    print(f"    RATIO wall / critical path     {med / bound:.2f}")
    return med / bound


HOSTILE_TARGETS = ("hostile-many-mx.test", "hostile-many-aaaa.test", "hostile-many-ptr.test",
                   "hostile-many-rua.test", "good.test")
HOSTILE_RSS_LIMIT_MB = 100


def hostile_bench(latency_ms: int) -> None:
    """The worst single targets of the lab (1,000 MX hosts, 500 AAAA on one host, 100 PTR names,
    200 DMARC report destinations) audited by the CLI with every default check and the default
    deadline, each in its own process: wall time and peak RSS (the interpreter included; good.test
    for scale).  The fan-out limits (context.py) keep them near a sane domain's cost."""
    import dataclasses
    import json
    import tempfile

    from deliverck.config import Config
    from deliverck.lab.manifest import current
    from deliverck.lab.measure import run_measured

    m = current()
    deadline = next(f.default for f in dataclasses.fields(Config) if f.name == "deadline")
    print(f"  hostile single targets (all default checks, CLI process, deadline {deadline:g} s, "
          f"{latency_ms} ms per DNS answer)")
    for target in HOSTILE_TARGETS:
        with tempfile.TemporaryFile() as out:
            t0 = time.perf_counter()
            proc, rss = run_measured([sys.executable, "-m", "deliverck", target, "--json", "--ca-file",
                                      m.ca_file, "--trust-anchor", m.trust_anchor],
                                     stdout=out, stderr=subprocess.DEVNULL, timeout=600)
            wall = time.perf_counter() - t0
            out.seek(0)
            try:
                doc = json.loads(out.read())
            except ValueError:
                doc = {}
        findings = [f for c in doc.get("checks", ()) for f in c["findings"]]
        late = sum(1 for f in findings if f["id"].endswith(".timeout"))
        ok = wall < deadline and rss <= HOSTILE_RSS_LIMIT_MB and not late
        print(f"    {target:<24} {wall:5.1f} s  peak RSS {rss:4.0f} MB  exit {proc.returncode}  "
              f"{len(findings)} findings{f', {late} timed out' if late else ''}  "
              f"{'ok' if ok else 'OVER (deadline or ' + str(HOSTILE_RSS_LIMIT_MB) + ' MB)'}")


EXPLAIN_FILES = 10_000


def explain_bench(n: int = EXPLAIN_FILES) -> None:
    r = explain_measure(n)
    if r is None:
        print("  explain: no corpus at tests/bounces; skipped")
        return
    print(f"  explain: directory of {n} bounce files ({r['size'] / 1e6:.1f} MB; {r['templates']} corpus templates, "
          "varied addresses)")
    print(f"    messages explained             {r['count']} ({r['undetermined']} undetermined)")
    print(f"    wall time                      {r['wall']:.2f} s")
    print(f"    RATE messages per second       {r['count'] / r['wall']:.0f}")
    print(f"    peak Python memory (tracemalloc, {n // 5} files)  {r['peak'] / 1e6:.1f} MB")
    print(f"    peak RSS growth over the run   {r['rss_growth_kb'] / 1024:.1f} MB")


def write_bounces(directory, n: int) -> int:
    """n bounce files in `directory`: the labelled corpus (tests/bounces) with the recipient,
    sender and IP addresses varied per copy.  Returns the number of templates (0: no corpus)."""
    import re
    from pathlib import Path

    corpus = Path(__file__).resolve().parents[1] / "tests" / "bounces"
    templates = [p.read_bytes() for p in sorted(corpus.glob("*.eml")) + sorted(corpus.glob("*.txt"))]
    addr = re.compile(rb"([A-Za-z0-9._%+-]+)@(example\.(?:net|com|org)|contoso\.example)")
    for i in range(n if templates else 0):
        t = templates[i % len(templates)]
        t = addr.sub(lambda m, i=i: m.group(1) + b"." + str(i).encode() + b"@" + m.group(2), t)
        t = t.replace(b"198.51.100.7", f"198.51.{100 + i % 3}.{i % 250 + 1}".encode())
        (Path(directory) / f"{i:05d}.eml").write_bytes(t)
    return len(templates)


def explain_measure(n: int = EXPLAIN_FILES) -> dict | None:
    """`deliverck explain DIR --jsonl` over n bounce files: messages per second and peak memory.

    The files are the labelled corpus (tests/bounces) with the recipient, sender and
    IP addresses varied per copy, written to a temporary directory; the directory
    is explained in this process with its output discarded, the way the CLI streams
    it.  Memory is the peak of Python allocations during the run (tracemalloc, a
    second pass over a fifth of the files) and the growth of the process's peak RSS.
    """
    import io
    import resource
    import shutil
    import tempfile
    import tracemalloc
    from pathlib import Path

    from deliverck.explain.engine import iter_directory
    from deliverck.explain.render import render_jsonl

    tmp = Path(tempfile.mkdtemp(prefix="deliverck-explain-bench-"))
    try:
        templates = write_bounces(tmp, n)
        if not templates:
            return None
        size = sum(p.stat().st_size for p in tmp.iterdir())
        rss0 = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
        sink = io.StringIO()
        t0 = time.perf_counter()
        count = undetermined = 0
        for e in iter_directory(str(tmp)):
            sink.write(render_jsonl(e))
            if sink.tell() > 1 << 20:
                sink.seek(0)
                sink.truncate()
            count += 1
            undetermined += e.category == "undetermined"
        wall = time.perf_counter() - t0
        rss1 = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
        sub = tmp / "subset"
        sub.mkdir()
        for p in sorted(tmp.glob("*.eml"))[: n // 5]:
            p.rename(sub / p.name)
        tracemalloc.start()
        for e in iter_directory(str(sub)):
            render_jsonl(e)
        _, peak = tracemalloc.get_traced_memory()
        tracemalloc.stop()
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    return {"size": size, "templates": templates, "count": count, "undetermined": undetermined,
            "wall": wall, "peak": peak, "rss_growth_kb": rss1 - rss0}
