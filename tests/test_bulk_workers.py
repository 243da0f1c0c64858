"""deliverck bulk --workers N (issue 16, "all cores of one machine"): the same lines as one
process, in input order, resumable after a kill, sharded, and polite across workers."""

from __future__ import annotations

import io
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from deliverck.cli import flags
from deliverck.config import Config
from deliverck.fleet import bulk, workers
from deliverck.target import Target
from tests.conftest import deliverck

TIMING = ("started", "finished", "duration_ms")
MIXED = ["good.test", "no-ptr.test", "bad..test", "many-mx.test", "mx-nxdomain.test", "servfail.test",
         '{"target": "good.test", "colour": "red"}', "nxdomain.test", "good.test"]


def untimed(doc):
    """A line without the fields that say when and how long (they differ from run to run)."""
    if isinstance(doc, dict):
        return {k: untimed(v) for k, v in doc.items() if k not in TIMING}
    if isinstance(doc, list):
        return [untimed(v) for v in doc]
    return doc


def docs(text: str) -> list[dict]:
    return [json.loads(x) for x in text.splitlines()]


# ---------------------------------------------------------------- no network

def test_concurrency_is_split_between_the_workers():
    assert workers.shares(50, 2) == [25, 25]
    assert workers.shares(5, 2) == [3, 2]
    assert workers.shares(3, 8) == [1, 1, 1]             # never a worker without an audit to run
    assert workers.shares(1, 4) == [1]
    assert 1 <= flags.default_workers() <= flags.MAX_WORKERS


def test_permits_hold_the_per_address_limit_across_workers():
    """The parent's count: two workers asking for one address never hold more than the limit,
    waiting requests are served in order, and a cancel that crosses a grant is counted once."""
    p = workers.Permits(2)
    assert p.acquire(0, 1, "192.0.2.1") == [(0, 1)]
    assert p.acquire(1, 1, "192.0.2.1") == [(1, 1)]
    assert p.acquire(1, 2, "192.0.2.1") == []              # third at once: waits
    assert p.acquire(0, 2, "192.0.2.1") == []
    assert p.acquire(0, 3, "192.0.2.2") == [(0, 3)]        # another address is not held up
    assert p.release(0, 1) == [(1, 2)]                     # first come, first served
    assert p.release(0, 1) == []                           # twice: harmless
    assert p.release(0, 2) == []                           # withdrawn while waiting
    assert p.release(1, 1) == [] and p.release(1, 2) == [] and p.release(0, 3) == []
    assert p.peak == {"192.0.2.1": 2, "192.0.2.2": 1} and not p.used and not p.held and not p.waiting
    p.acquire(0, 4, "192.0.2.1")
    p.acquire(0, 5, "192.0.2.1")
    p.acquire(1, 3, "192.0.2.1")
    assert p.drop_worker(0) == [(1, 3)]                    # a worker that died gives its slots back
    assert p.used == {"192.0.2.1": 1}


# ---------------------------------------------------------------- in the lab, through the CLI

@pytest.mark.slow
def test_workers_write_the_lines_of_one_process_in_input_order(lab, tmp_path):
    src = tmp_path / "in.txt"
    src.write_text("\n".join(MIXED) + "\n")
    args = ("bulk", str(src), "--only", "mx,ptr,spf", "--dns-timeout", "2", "--concurrency", "8")
    one = deliverck(*args, "--workers", "1", timeout=120)
    two = deliverck(*args, "--workers", "2", timeout=120)
    assert one.returncode == two.returncode == 1, two.stderr
    assert one.stderr.splitlines()[-1] == two.stderr.splitlines()[-1]          # the same summary
    a, b = docs(one.stdout), docs(two.stdout)
    assert [d["line"] for d in b] == [1, 2, 3, 4, 5, 6, 7, 8, 9]              # input order
    assert {d["line"]: untimed(d) for d in a} == {d["line"]: untimed(d) for d in b}
    statuses = {d["input"]: (d["status"], d["report"] and d["report"]["verdict"]) for d in b}
    assert statuses["good.test"] == ("ok", "pass") and statuses["no-ptr.test"] == ("ok", "fail")
    assert statuses["bad..test"][0] == "error" and "line 3:" in two.stderr


@pytest.mark.slow
def test_workers_with_shards_cover_the_input_once(lab, tmp_path):
    targets = ["good.test", "no-ptr.test", "many-mx.test", "mx-nxdomain.test", "nxdomain.test", "mx-cname.test"]
    src = tmp_path / "in.txt"
    src.write_text("\n".join(targets) + "\n")
    parts = []
    for k in (1, 2):
        r = deliverck("bulk", str(src), "--only", "mx", "--shard", f"{k}/2", "--workers", "2", timeout=120)
        got = docs(r.stdout)
        assert [d["line"] for d in got] == sorted(d["line"] for d in got)
        parts.append([d["input"] for d in got])
    assert sorted(parts[0] + parts[1]) == sorted(targets)
    assert {bulk.shard_of(t, 2) for t in parts[0]} <= {1} and {bulk.shard_of(t, 2) for t in parts[1]} <= {2}


@pytest.mark.slow
def test_a_killed_run_with_workers_is_completed_by_resume(lab, tmp_path):
    """kill -9 of the parent mid-run: its workers go away by themselves, the output is a prefix
    of the ordered output (perhaps with a torn line), and the same command completes it."""
    targets = ["good.test", "no-ptr.test", "many-mx.test", "mx-nxdomain.test"] + [f"gone{i}.test" for i in range(20)]
    src = tmp_path / "in.txt"
    src.write_text("\n".join(targets) + "\n")
    out = tmp_path / "out.jsonl"
    argv = [sys.executable, "-m", "deliverck", "bulk", str(src), "--only", "mx,ptr", "-o", str(out), "--workers", "2",
            "--concurrency", "2"]
    proc = subprocess.Popen(argv, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline and (not out.exists() or out.read_text().count("\n") < 3):
        time.sleep(0.02)
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait(30)
    partial = out.read_text()
    kept = [json.loads(x) for x in partial.splitlines(keepends=True) if x.endswith("\n")]
    assert 3 <= len(kept) < len(targets)
    assert [d["line"] for d in kept] == list(range(1, len(kept) + 1))          # a prefix, in order
    r = deliverck("bulk", str(src), "--only", "mx,ptr", "-o", str(out), "--workers", "2", timeout=120)
    assert r.returncode == 1, r.stderr
    final = docs(out.read_text())
    assert sorted(d["line"] for d in final) == list(range(1, len(targets) + 1))
    assert final[:len(kept)] == kept                                           # nothing done twice
    assert "already done" in r.stderr


@pytest.mark.slow
def test_per_address_limit_holds_across_workers(lab):
    """Twelve audits whose MX hosts are the same lab SMTP peers, in two workers with
    --per-address 1: every connection the peers saw (counted on the server side) was granted by
    the parent's one count per address, which never let two be open at once; without it, each
    worker would allow one of its own."""
    base = Config(target=Target(input="-", name="invalid"), only=("starttls",), dns_timeout=2.0, per_address=1,
                  ca_file=Path(lab.ca_file) if lab.ca_file else None)
    out = io.StringIO()
    since = time.time()
    run = workers._Run(bulk.read_items(io.BytesIO(b"good.test\n" * 12), base), out, 2, 12, 1, None, None)
    try:
        counts = run.run()
    finally:
        run.stop()
    assert sum(counts.values()) == 12 and len(out.getvalue().splitlines()) == 12
    sessions = lab.smtp_sessions(since=since)
    assert len(sessions) >= 12                                          # every audit connected
    assert run.permits.granted == len(sessions)                         # ... and each connection asked first
    assert set(run.permits.peak.values()) == {1}
    assert not run.permits.used and not run.permits.held                # every slot came back
