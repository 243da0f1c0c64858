"""The RFC 7208 conformance suite, all 203 cases, through the real `deliverck spf` command.

Each scenario's zone data is served by a real DNS server (dnspython
messages over UDP and TCP on 127.0.0.1, one free high port per scenario), and
each case runs the CLI as a user would:

    deliverck spf --ip HOST --helo HELO --sender MAILFROM --resolver 127.0.0.1:PORT --json -- DOMAIN

so the whole path is under test: option parsing (odd HELO names, empty local
parts, address literals), the DNS client (UDP, TCP on truncation, timeouts,
CNAMEs, names with spaces), the evaluator, the JSON output and the exit code.
The suite is vendored (tests/data/spf/, with its licence and provenance); if
it is missing the test fails and says so.  No lab needed: loopback only.

Each case is a process of its own.  Starting Python and importing the CLI
costs about 0.3 s of CPU, 203 times over on a 2-core machine, so the cases
fork from "zygotes": Python processes that imported deliverck.cli once and
fork a child per case, which runs `deliverck.cli.main(argv)` (what the
`deliverck` script runs) with its own stdout, stderr and exit status.  Every
SPAWN_EVERY-th case also runs as a plain `python -m deliverck` process and
must print the same bytes with the same exit code.
"""

from __future__ import annotations

import asyncio
import json
import queue
import struct
import subprocess
import sys
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import dns.exception
import dns.flags
import dns.message
import dns.name
import dns.rcode
import dns.rdata
import dns.rdataclass
import dns.rdatatype
import dns.rdtypes.ANY.TXT
import dns.rrset
import pytest

DATA = Path(__file__).resolve().parent / "data" / "spf"
SUITE = DATA / "rfc7208-tests.yml"
LICENCE = DATA / "rfc7208-tests.LICENSE"
CASES = 203
WORKERS = 4                 # CLI processes at a time
SPAWN_EVERY = 25            # every 25th case also as a plain `python -m deliverck` process
CASE_TIMEOUT = 60           # seconds, per case
DNS_TIMEOUT = "2"           # --dns-timeout: the suite's TIMEOUT entries cost this much
SOA = "ns.suite.invalid. hostmaster.suite.invalid. 1 3600 600 86400 300"
DROP = object()             # "do not answer"


# ---- the suite's zone data as DNS answers ------------------------------------------------

def _key(labels) -> tuple[bytes, ...]:
    return tuple(x.lower() for x in labels if x)


def _text_key(name: str) -> tuple[bytes, ...]:
    return _key(x.encode("utf-8") for x in name.split("."))


def _rdata(rdtype: str, value):
    if rdtype in ("TXT", "SPF"):
        strings = [s.encode("utf-8") for s in value] or [b""]   # no strings: see data/spf/README.md
        chunks = [s[i:i + 255] for s in strings for i in range(0, max(len(s), 1), 255)]
        return dns.rdtypes.ANY.TXT.TXT(dns.rdataclass.IN, dns.rdatatype.from_text(rdtype), chunks)
    if rdtype == "MX":
        pref, host = value
        value = f"{pref} {host or '.'}"
    return dns.rdata.from_text(dns.rdataclass.IN, dns.rdatatype.from_text(rdtype), str(value),
                               origin=dns.name.root, relativize=False)


class SuiteZone:
    """One scenario's zonedata, with the reference driver's conventions (tests/data/spf/README.md)."""

    def __init__(self, zonedata: dict, apexes: bool = True) -> None:
        """apexes=False: not even the root exists (a resolver that denies every name)."""
        self.apexes = apexes
        self.names: dict[tuple[bytes, ...], list] = {}
        for name, items in zonedata.items():
            records: list = []
            generated: list = []
            has_txt = False
            for item in items:
                if item == "TIMEOUT":
                    records.append("TIMEOUT")
                    continue
                for rdtype, value in item.items():
                    if rdtype in ("TXT", "SPF") and isinstance(value, str):
                        value = [value]
                    if rdtype == "TXT":
                        has_txt = True
                    elif rdtype == "SPF":
                        generated.append(("TXT", value))
                    if value != ["NONE"]:
                        records.append((rdtype, value))
            if not has_txt:
                records += generated
            self.names[_text_key(name)] = [r if r == "TIMEOUT" else (r[0], "TIMEOUT" if r[1] == "TIMEOUT"
                                                                      else _rdata(*r)) for r in records]
        self.above = {k[i:] for k in self.names for i in range(1, len(k))}
        self.tlds = {k[-1:] for k in self.names if k}

    def lookup(self, key: tuple[bytes, ...], rdtype: str, seen=()):
        """(rcode, [(owner key, rdtype, [rdata])]) or DROP."""
        items = self.names.get(key)
        if items is None:
            if self.apexes and (key == () or key in self.tlds):     # root and TLDs: the server's own apexes
                if rdtype in ("SOA", "NS"):
                    value = SOA if rdtype == "SOA" else "ns.suite.invalid."
                    return dns.rcode.NOERROR, [(key, rdtype, [_rdata(rdtype, value)])]
                return dns.rcode.NOERROR, []
            if key in self.above:
                return dns.rcode.NOERROR, []
            return dns.rcode.NXDOMAIN, []
        found, cname, waiting = [], None, True
        for item in items:
            if item == "TIMEOUT":
                if waiting:
                    return DROP
                break
            t, rd = item
            if t == rdtype:
                waiting = False
                if rd == "TIMEOUT":
                    return DROP
                found.append(rd)
            elif t == "CNAME" and rdtype != "CNAME" and rd != "TIMEOUT" and cname is None:
                cname = rd
        if found:
            return dns.rcode.NOERROR, [(key, rdtype, found)]
        if cname is None:
            return dns.rcode.NOERROR, []
        target = _key(cname.target.labels)
        if target in seen or len(seen) > 8:
            return dns.rcode.SERVFAIL, []               # a CNAME loop, as a recursive resolver reports it
        sub = self.lookup(target, rdtype, seen + (key,))
        if sub is DROP:
            return DROP
        return sub[0], [(key, "CNAME", [cname])] + sub[1]


def respond(zone: SuiteZone, wire: bytes, udp: bool) -> bytes | None:
    try:
        query = dns.message.from_wire(wire)
    except dns.exception.DNSException:
        return None
    if len(query.question) != 1:
        return None
    q = query.question[0]
    response = dns.message.make_response(query)
    response.flags |= dns.flags.RA
    out = zone.lookup(_key(q.name.labels), dns.rdatatype.to_text(q.rdtype))
    if out is DROP:
        return None
    rcode, rrsets = out
    response.set_rcode(rcode)
    owner = q.name
    for _, rdtype, rdatas in rrsets:
        rrset = dns.rrset.RRset(owner, dns.rdataclass.IN, dns.rdatatype.from_text(rdtype))
        for rd in rdatas:
            rrset.add(rd, 300)
        response.answer.append(rrset)
        if rdtype == "CNAME":
            owner = rdatas[0].target
    if not rrsets or rcode != dns.rcode.NOERROR:
        soa = dns.rrset.from_text(dns.name.root, 300, "IN", "SOA", SOA)
        response.authority.append(soa)
    limit = max(query.payload, 512) if udp and query.edns >= 0 else (512 if udp else 65535)
    try:
        return response.to_wire(max_size=limit, want_shuffle=False)   # the suite's order (ptr-limit)
    except dns.exception.TooBig:
        short = dns.message.make_response(query)
        short.flags |= dns.flags.RA | dns.flags.TC
        return short.to_wire()


class SuiteDnsServer:
    """UDP and TCP on 127.0.0.1, one port per zone, in a thread of its own."""

    def __init__(self, zones: list[SuiteZone]) -> None:
        self.zones = zones
        self.ports: list[int] = []
        self.queries = 0
        self.errors: list[str] = []        # exceptions while answering (a bug here, not in deliverck)
        self._loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self._loop.run_forever, daemon=True)
        self._closers: list = []

    def __enter__(self) -> SuiteDnsServer:
        self._thread.start()
        asyncio.run_coroutine_threadsafe(self._start(), self._loop).result(timeout=30)
        return self

    def __exit__(self, *exc) -> None:
        async def stop():
            for c in self._closers:
                c.close()
        asyncio.run_coroutine_threadsafe(stop(), self._loop).result(timeout=30)
        self._loop.call_soon_threadsafe(self._loop.stop)
        self._thread.join(timeout=30)

    async def _start(self) -> None:
        for zone in self.zones:
            self.ports.append(await self._serve(zone))

    async def _serve(self, zone: SuiteZone) -> int:
        loop = asyncio.get_running_loop()
        server = self
        for _ in range(50):
            class Udp(asyncio.DatagramProtocol):
                def connection_made(self, transport):
                    self.transport = transport

                def datagram_received(self, data, addr):
                    reply = server.answer(zone, data, udp=True)
                    if reply is not None:
                        self.transport.sendto(reply, addr)

            transport, _ = await loop.create_datagram_endpoint(Udp, local_addr=("127.0.0.1", 0))
            port = transport.get_extra_info("sockname")[1]
            try:
                tcp = await asyncio.start_server(lambda r, w: self._tcp(zone, r, w), "127.0.0.1", port)
            except OSError:              # the TCP port of the same number is taken: another pair
                transport.close()
                continue
            self._closers += [transport, tcp]
            return port
        raise RuntimeError("no free port pair on 127.0.0.1")

    def answer(self, zone: SuiteZone, data: bytes, udp: bool) -> bytes | None:
        self.queries += 1
        try:
            return respond(zone, data, udp)
        except Exception as e:
            self.errors.append(f"{type(e).__name__}: {e}")
            return None

    async def _tcp(self, zone: SuiteZone, reader, writer) -> None:
        try:
            while True:
                (length,) = struct.unpack("!H", await asyncio.wait_for(reader.readexactly(2), 10))
                data = await asyncio.wait_for(reader.readexactly(length), 10)
                reply = self.answer(zone, data, udp=False)
                if reply is None:
                    continue
                writer.write(struct.pack("!H", len(reply)) + reply)
                await writer.drain()
        except (TimeoutError, asyncio.IncompleteReadError, ConnectionError):
            pass
        finally:
            writer.close()


# ---- the cases -----------------------------------------------------------------------------

def load_suite() -> list[dict]:
    if not SUITE.is_file():
        pytest.fail(f"the RFC 7208 test suite is missing: {SUITE} (vendored from the pyspf sdist, see "
                    f"{DATA / 'README.md'}); restore it from git", pytrace=False)
    if not LICENCE.is_file():
        pytest.fail(f"the licence notice of the RFC 7208 test suite is missing: {LICENCE}; its licence requires "
                    "it beside the suite", pytrace=False)
    try:
        import yaml
    except ImportError:
        pytest.fail("PyYAML is needed to read the RFC 7208 test suite: pip install -e '.[test]'", pytrace=False)
    return list(yaml.safe_load_all(SUITE.read_bytes()))


def command(case: dict, port: int) -> list[str]:
    mailfrom, helo = case["mailfrom"], case["helo"]
    if mailfrom:
        domain, sender = mailfrom.rpartition("@")[2], mailfrom
    else:                        # the null reverse-path: the identity is postmaster@HELO (RFC 7208 2.4)
        domain, sender = helo, "<>"
    return [sys.executable, "-m", "deliverck", "spf", "--ip", case["host"], "--helo", helo, "--sender", sender,
            "--resolver", f"127.0.0.1:{port}", "--dns-timeout", DNS_TIMEOUT, "--json", "--", domain]


# A zygote: reads one JSON job per line, forks a child per job that runs the CLI's
# main() with stdout/stderr to the job's files, answers with the exit status.
ZYGOTE = r"""
import contextlib, io, json, os, signal, sys
import deliverck.cli
# Warm up: one evaluation that needs no DNS (a single-label domain is "none" at once)
# loads what the command imports on first use, so each child starts where it differs.
with contextlib.redirect_stdout(io.StringIO()), contextlib.redirect_stderr(io.StringIO()), \
        contextlib.suppress(SystemExit):
    deliverck.cli.main(["spf", "--ip", "192.0.2.1", "--resolver", "127.0.0.1:9", "--dns-timeout", "0.05",
                        "--json", "--", "warm-up"])
for line in sys.stdin:
    job = json.loads(line)
    sys.stdout.flush()
    sys.stderr.flush()
    pid = os.fork()
    if pid == 0:
        code = 70
        try:
            signal.alarm(job["timeout"])
            null = os.open(os.devnull, os.O_RDONLY)
            os.dup2(null, 0)
            for fd, path in ((1, job["out"]), (2, job["err"])):
                f = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
                os.dup2(f, fd)
                os.close(f)
            try:
                deliverck.cli.main(job["argv"])
                code = 0
            except SystemExit as e:
                code = e.code if isinstance(e.code, int) else (0 if e.code is None else 1)
            sys.stdout.flush()
            sys.stderr.flush()
        finally:
            os._exit(code)
    _, status = os.waitpid(pid, 0)
    print(json.dumps({"rc": os.waitstatus_to_exitcode(status)}), flush=True)
"""


class Zygote:
    def __init__(self, tmp: Path, n: int) -> None:
        self.out, self.err = tmp / f"out{n}", tmp / f"err{n}"
        self.proc = subprocess.Popen([sys.executable, "-c", ZYGOTE], stdin=subprocess.PIPE,
                                     stdout=subprocess.PIPE, text=True)

    def run(self, args: list[str]) -> subprocess.CompletedProcess:
        job = {"argv": args, "out": str(self.out), "err": str(self.err), "timeout": CASE_TIMEOUT}
        self.proc.stdin.write(json.dumps(job) + "\n")
        self.proc.stdin.flush()
        line = self.proc.stdout.readline()
        if not line:
            raise RuntimeError("the zygote process died")
        rc = json.loads(line)["rc"]
        return subprocess.CompletedProcess(args, rc, self.out.read_text(), self.err.read_text())

    def close(self) -> None:
        self.proc.stdin.close()
        self.proc.wait(timeout=30)


def spawn(args: list[str]) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "deliverck", *args], capture_output=True, text=True,
                          timeout=CASE_TIMEOUT, stdin=subprocess.DEVNULL)


def judge(tid: str, case: dict, port: int, run, check_spawn: bool = False) -> str:
    """"" when the CLI gives an allowed result (and the explanation, where the suite gives one)."""
    argv = command(case, port)[3:]
    shown = " ".join(argv)
    try:
        r = run(argv)
    except subprocess.TimeoutExpired:
        return f"{tid}: no answer within {CASE_TIMEOUT} s ({shown})"
    if r.returncode < 0:
        return f"{tid}: killed by signal {-r.returncode} ({shown})"
    if check_spawn:
        plain = spawn(argv)
        if (plain.returncode, plain.stdout, plain.stderr) != (r.returncode, r.stdout, r.stderr):
            return (f"{tid}: `python -m deliverck` gave exit {plain.returncode} and {plain.stdout[:200]!r}, "
                    f"the forked CLI exit {r.returncode} and {r.stdout[:200]!r} ({shown})")
    want = case["result"] if isinstance(case["result"], list) else [case["result"]]
    try:
        doc = json.loads(r.stdout)
    except ValueError:
        return f"{tid}: exit {r.returncode}, no JSON ({r.stderr.strip()[:300]!r}) for {shown}"
    got = doc["result"]
    problems = []
    if got not in want:
        problems.append(f"result {got}, want {' or '.join(want)} ({doc.get('reason', '')})")
    if r.returncode != (0 if got == "pass" else 1) or doc["exit_code"] != r.returncode:
        problems.append(f"exit {r.returncode} for {got}")
    if r.stderr:
        problems.append(f"stderr {r.stderr.strip()[:200]!r}")
    if "explanation" in case:
        exp = case["explanation"]
        if exp == "DEFAULT":     # the suite's name for the implementation's default explanation
            if doc["explanation_source"] != "default" or not doc["explanation"]:
                problems.append(f"explanation {doc['explanation']!r} ({doc['explanation_source']}), want the "
                                "default one")
        elif doc["explanation"] != exp:
            problems.append(f"explanation {doc['explanation']!r}, want {exp!r}")
    return f"{tid} [{case.get('spec', '')}]: " + "; ".join(problems) + f" -- {shown}" if problems else ""


@pytest.mark.slow
def test_rfc7208_suite_through_the_cli(tmp_path):
    docs = load_suite()
    zones = [SuiteZone(d["zonedata"]) for d in docs]
    cases = [(i, tid, case) for i, d in enumerate(docs) for tid, case in d["tests"].items()]
    assert len(cases) == CASES, f"the suite has {len(cases)} cases, {CASES} expected: is {SUITE.name} complete?"
    t0 = time.monotonic()
    zygotes: queue.Queue[Zygote] = queue.Queue()
    for n in range(WORKERS):
        zygotes.put(Zygote(tmp_path, n))

    def one(job) -> str:
        n, (i, tid, case) = job
        z = zygotes.get()
        try:
            return judge(tid, case, server.ports[i], z.run, check_spawn=n % SPAWN_EVERY == 0)
        finally:
            zygotes.put(z)

    try:
        with SuiteDnsServer(zones) as server, ThreadPoolExecutor(WORKERS) as pool:
            failures = [f for f in pool.map(one, enumerate(cases)) if f]
            queries, errors = server.queries, server.errors
    finally:
        while not zygotes.empty():
            zygotes.get().close()
    elapsed = time.monotonic() - t0
    print(f"RFC 7208 suite: {CASES - len(failures)}/{CASES} through `deliverck spf` in {elapsed:.1f} s "
          f"({WORKERS} at a time, {queries} DNS queries, {len(range(0, CASES, SPAWN_EVERY))} also as "
          "`python -m deliverck`)")
    assert not errors, f"the test's DNS server failed: {errors[:5]}"
    assert queries > CASES                   # the answers came from the server, over the network
    assert not failures, f"{len(failures)}/{CASES} cases fail:\n" + "\n".join(failures)


# ---- the server itself ------------------------------------------------------------------------

def _ask(port: int, name: str, rdtype: str, tcp: bool = False):
    import dns.query

    q = dns.message.make_query(name, rdtype, use_edns=0, payload=1232)
    if tcp:
        return dns.query.tcp(q, "127.0.0.1", port=port, timeout=2)
    return dns.query.udp(q, "127.0.0.1", port=port, timeout=2)


@pytest.mark.slow
def test_the_suite_server_speaks_dns():
    zone = SuiteZone({
        "a.example.com": [{"SPF": "v=spf1 -all"}, {"A": "192.0.2.1"}],
        "b.example.com": [{"TXT": ["v=spf1 ", "x" * 300]}, "TIMEOUT"],
        "c.example.com": [{"CNAME": "a.example.com"}],
        "d.example.com": ["TIMEOUT"],
        "big.example.com": [{"TXT": f"{i}" + "z" * 200} for i in range(11)],
        "macro%percent  space.example.com": [{"A": "192.0.2.2"}],
    })
    with SuiteDnsServer([zone]) as server:
        port = server.ports[0]
        r = _ask(port, "a.example.com", "TXT")      # SPF served as TXT too, when no TXT is listed
        assert r.answer[0].rdtype == dns.rdatatype.TXT and r.answer[0][0].strings == (b"v=spf1 -all",)
        assert _ask(port, "A.EXAMPLE.COM", "SPF").answer[0].rdtype == dns.rdatatype.SPF
        r = _ask(port, "b.example.com", "TXT")      # records before TIMEOUT are served; long strings split
        assert [len(s) for s in r.answer[0][0].strings] == [7, 255, 45]
        r = _ask(port, "c.example.com", "A")
        assert [x.rdtype for x in r.answer] == [dns.rdatatype.CNAME, dns.rdatatype.A]
        assert _ask(port, "nowhere.example.com", "A").rcode() == dns.rcode.NXDOMAIN
        assert _ask(port, "example.com", "A").rcode() == dns.rcode.NOERROR      # above the data: NODATA
        assert _ask(port, "com", "SOA").answer and _ask(port, ".", "NS").answer
        r = _ask(port, "big.example.com", "TXT")
        assert r.flags & dns.flags.TC and not r.answer      # over 1232 octets: truncated on UDP ...
        assert len(_ask(port, "big.example.com", "TXT", tcp=True).answer[0]) == 11   # ... whole on TCP
        name = dns.name.Name([b"macro%percent  space", b"example", b"com", b""])
        assert _ask(port, name.to_text(), "A").answer[0][0].address == "192.0.2.2"
        for silent in ("d.example.com", "b.example.com"):
            rdtype = "A" if silent == "d.example.com" else "MX"
            with pytest.raises(dns.exception.Timeout):
                _ask(port, silent, rdtype)
        assert not server.errors


def test_a_missing_suite_fails_and_says_why(monkeypatch, tmp_path):
    monkeypatch.setattr(sys.modules[__name__], "SUITE", tmp_path / "rfc7208-tests.yml")
    with pytest.raises(pytest.fail.Exception, match="RFC 7208 test suite is missing"):
        load_suite()
