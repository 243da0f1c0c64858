"""deliverck bulk: input parsing, sharding, resume, and real runs in the lab
(in-process asyncio and on a local Dask cluster)."""

from __future__ import annotations

import io
import json
from pathlib import Path

import pytest

from deliverck.config import Config
from deliverck.errors import UsageError
from deliverck.fleet import bulk
from deliverck.target import Target
from tests.conftest import deliverck, validate_report

BASE = Config(target=Target(input="-", name="invalid"))


def items(text: str, **kw) -> list[bulk.Item]:
    return list(bulk.read_items(io.BytesIO(text.encode()), BASE, **kw))


def test_lines_text_json_comments_and_bad_ones():
    got = items("example.com\n# comment\n\n  mail.example.org  \n"
                '{"target": "example.net", "ips": ["192.0.2.7"], "dkim_selectors": ["s1"], "helo": "mx.example.net"}\n'
                "bad..example\n{\"target\": 5}\n{not json\n"
                '{"target": "example.org", "colour": "red"}\n'
                + "x" * 5000 + "\n")
    assert [(i.line, i.input, bool(i.config)) for i in got] == [
        (1, "example.com", True), (4, "mail.example.org", True), (5, "example.net", True),
        (6, "bad..example", False), (7, '{"target": 5}', False), (8, "{not json", False),
        (9, "example.org", False), (10, "x" * 80, False)]
    net = got[2].config
    assert (net.target.name, net.outbound_ips, net.dkim_selectors, net.helo_name) == (
        "example.net", ("192.0.2.7",), ("s1",), "mx.example.net")
    assert "empty label" in got[3].error and "colour" in got[6].error and "longer than" in got[7].error


def test_shards_partition_the_input_stably():
    names = [f"d{i}.example" for i in range(300)]
    text = "\n".join(names) + "\n"
    shards = [{i.input for i in items(text, shard=(k, 3))} for k in (1, 2, 3)]
    assert set().union(*shards) == set(names)
    assert sum(len(s) for s in shards) == len(names)          # disjoint
    assert all(60 < len(s) < 140 for s in shards)             # roughly even
    assert bulk.shard_of("Example.COM ", 7) == bulk.shard_of("example.com", 7)


@pytest.mark.parametrize("text", ["0/2", "3/2", "2", "a/b", "1/0", ""])
def test_bad_shard(text):
    with pytest.raises(UsageError):
        bulk.parse_shard(text)


def _line(target: str, verdict: str | None, status: str = "ok") -> str:
    report = {"verdict": verdict} if verdict else None
    return json.dumps({"schema": bulk.SCHEMA, "line": 1, "input": target, "status": status if report else "error",
                       "report": report, "error": ""}, separators=(",", ":"))


def test_resume_skips_done_and_trims_a_torn_line(tmp_path):
    out = tmp_path / "out.jsonl"
    good = _line("a.example", "pass")
    other = json.dumps({"schema": "something/1", "input": "b.example"})
    out.write_text(good + "\n" + other + "\n" + '{"schema": "deliverck.bulk/1", "input": "c.exa')
    assert bulk.done_inputs(out) == {"a.example"}
    bulk.trim_torn_line(out)
    assert out.read_text() == good + "\n" + other + "\n"
    bulk.trim_torn_line(out)                                   # idempotent
    assert out.read_text().endswith("\n")
    left = items("a.example\nb.example\nc.example\n", done=bulk.done_inputs(out))
    assert [i.input for i in left] == ["b.example", "c.example"]


def test_scan_counts_only_complete_lines_and_marks_retries(tmp_path):
    """Issue 14, item 6: a last line that is complete JSON without its newline is torn (it is
    trimmed, so it must not count); error and incomplete lines are retried, and a later line
    of the same input supersedes them."""
    lines = [_line("a.example", "pass"), _line("b.example", None), _line("c.example", "incomplete"),
             _line("d.example", "fail"), _line("b.example", "pass"), _line("e.example", "pass")]
    text = "\n".join(lines)                                    # the last line lacks its newline
    out = tmp_path / "out.jsonl"
    out.write_text(text)
    with out.open("rb") as f:
        scan = bulk.scan_output(f)
    assert scan.end == len(text) - len(lines[-1]) and scan.size == len(text)
    assert scan.last == {"a.example": "pass", "b.example": "pass", "c.example": "incomplete", "d.example": "fail"}
    assert scan.done() == {"a.example", "b.example", "d.example"}
    assert scan.done(retry=False) == {"a.example", "b.example", "c.example", "d.example"}
    start_b = len(lines[0]) + 1
    assert scan.superseded == [(start_b, start_b + len(lines[1]) + 1)]
    start_c = start_b + len(lines[1]) + 1
    assert scan.pending == {"c.example": (start_c, start_c + len(lines[2]) + 1)}
    assert scan.counts() == {"pass": 2, "fail": 1, "incomplete": 1, "error": 0}
    dst = tmp_path / "copy"
    with out.open("rb") as src, dst.open("wb") as d:
        bulk.copy_without(src.fileno(), d.fileno(), scan.end, scan.superseded + [scan.pending["c.example"]])
    assert dst.read_text().splitlines() == [lines[0], lines[3], lines[4]]


def test_a_line_longer_than_any_result_is_skipped_not_held(tmp_path, monkeypatch):
    monkeypatch.setattr(bulk, "MAX_RESULT_LINE", 200)
    out = tmp_path / "out.jsonl"
    out.write_text(_line("a.example", "pass") + "\n" + "x" * 5000 + "\n" + _line("b.example", "fail") + "\n")
    with out.open("rb") as f:
        scan = bulk.scan_output(f)
    assert scan.last == {"a.example": "pass", "b.example": "fail"} and scan.end == scan.size


# ---------------------------------------------------------------- in the lab, through the CLI

def lines(path: Path) -> list[dict]:
    return [json.loads(x) for x in path.read_text().splitlines()]


def test_bulk_run_resume_and_shards(lab, tmp_path):
    targets = ["good.test", "no-ptr.test", "many-mx.test", "bad..test", "mx-nxdomain.test"]
    src = tmp_path / "in.txt"
    src.write_text("\n".join(targets) + "\n")
    out = tmp_path / "out.jsonl"
    r = deliverck("bulk", str(src), "--only", "mx,ptr", "-o", str(out), "--dns-timeout", "2")
    assert r.returncode == 1, r.stderr                       # no-ptr fails
    assert "\r" not in r.stderr                               # no progress bar when not a terminal
    assert "line 4:" in r.stderr
    docs = lines(out)
    assert sorted(d["input"] for d in docs) == sorted(targets)
    by = {d["input"]: d for d in docs}
    assert by["bad..test"]["status"] == "error" and by["bad..test"]["report"] is None
    assert by["good.test"]["report"]["verdict"] == "pass"
    assert by["no-ptr.test"]["report"]["verdict"] == "fail"
    for d in docs:
        if d["report"]:
            validate_report(d["report"])
    # Resume: a torn last line is dropped and its target done again; the rest is skipped.
    text = out.read_text()
    cut = text.rstrip("\n").rfind("\n") + 1
    torn_input = json.loads(text[cut:])["input"]
    out.write_text(text[:cut] + text[cut:cut + 30])
    r = deliverck("bulk", str(src), "--only", "mx,ptr", "-o", str(out))
    assert "4 already done" in r.stderr
    again = lines(out)
    assert sorted(d["input"] for d in again) == sorted(targets)
    assert again[-1]["input"] == torn_input
    # Shards: 1/2 and 2/2 together are the whole input, each target once.
    parts = []
    for k in (1, 2):
        r = deliverck("bulk", str(src), "--only", "mx", "--shard", f"{k}/2")
        parts.append([json.loads(x)["input"] for x in r.stdout.splitlines()])
    assert sorted(parts[0] + parts[1]) == sorted(targets)


def test_bulk_on_a_local_dask_cluster(lab, tmp_path):
    targets = ["good.test", "no-ptr.test", "many-mx.test"] * 4
    src = tmp_path / "in.txt"
    src.write_text("\n".join(targets) + "\n")
    r = deliverck("bulk", str(src), "--only", "mx,ptr", "--dask", "local:2", "--concurrency", "4", timeout=180)
    assert r.returncode == 1, r.stderr
    docs = [json.loads(x) for x in r.stdout.splitlines()]
    assert sorted(d["input"] for d in docs) == sorted(targets)
    verdicts = {d["input"]: d["report"]["verdict"] for d in docs}
    assert verdicts == {"good.test": "pass", "no-ptr.test": "fail", "many-mx.test": "pass"}


@pytest.mark.parametrize("args,fragment", [
    (["bulk", "/nonexistent/targets"], "no such file"),
    (["bulk", "/"], "directory"),
    (["bulk", "-", "--shard", "3/2"], "--shard"),
    (["bulk", "-", "--concurrency", "0"], "--concurrency"),
    (["bulk", "-", "--only", "nosuchcheck"], "unknown check"),
    (["bulk", "-", "--dask", "local:x"], "--dask"),
    # issue 13: said before any input is read (so /dev/null: nothing to read either way)
    (["bulk", "/dev/null", "--dask", "bogus://x"], "--dask 'bogus://x': unknown address scheme"),
    (["bulk", "/dev/null", "--dask", "tcp://"], "--dask"),
    (["bulk", "/dev/null", "--dask", "local:100000"], "--dask"),
    (["bulk", "/dev/null", "--only", "mx", "--skip", "mx"], "leave no check to run"),
    (["bulk", "/dev/null", "--only", ""], "--only is empty"),
    (["bulk", "/dev/null", "--receivers", ""], "--receivers is empty"),
    (["bulk", "/dev/null", "--dns-timeout", "inf"], "--dns-timeout"),
    (["bulk", "/dev/null", "--concurrency", "1000000"], "--concurrency"),
    (["bulk", "/dev/null", "--shard", "1/" + "9" * 5000], "--shard"),
])
@pytest.mark.slow
def test_bulk_bad_usage(args, fragment):
    r = deliverck(*args)
    assert r.returncode == 2, (r.stdout, r.stderr)
    lines_ = r.stderr.strip().splitlines()
    assert len(lines_) == 1 and fragment in lines_[0] and "Traceback" not in r.stderr


async def test_audits_of_a_bulk_run_share_definite_dns_answers_only(lab):
    from deliverck.net.dns import DnsClient, Outcome, ResolverAddress, SharedCache, shared_cache

    resolvers = (ResolverAddress(lab.resolver, 53),)
    cache = SharedCache(max_entries=3)
    token = shared_cache.set(cache)
    try:
        first, second = DnsClient(resolvers, timeout=2), DnsClient(resolvers, timeout=2)
        a = await first.lookup("good.test", "MX")
        b = await second.lookup("good.test", "MX")
        assert a.outcome is Outcome.OK and b is a
        assert (first.stats.queries, second.stats.queries) == (1, 0)
        failed = await first.lookup("servfail.test", "MX")          # a zone whose server answers SERVFAIL
        assert not failed.outcome.definite
        await second.lookup("servfail.test", "MX")
        assert second.stats.queries == 1                           # failures are asked again
        for name in ("many-mx.test", "no-ptr.test", "nxdomain.test", "mx-cname.test"):
            await first.lookup(name, "MX")
        assert len(cache._entries) == 3                            # least recently used went
    finally:
        shared_cache.reset(token)
    alone = DnsClient(resolvers, timeout=2)
    await alone.lookup("good.test", "MX")
    assert alone.stats.queries == 1                                # outside a bulk run nothing is shared


@pytest.mark.slow
def test_dask_without_the_extra_names_it(tmp_path):
    """The venv has dask; a blocked import plays a slim install (`import dask` fails)."""
    import subprocess
    import sys

    block = ("import sys; sys.modules['dask'] = sys.modules['distributed'] = None; "
             "from deliverck.cli import main; main()")
    out = tmp_path / "out.jsonl"
    for address in ("local:2", "tcp://127.0.0.1:8786"):
        r = subprocess.run([sys.executable, "-c", block, "bulk", "/dev/null", "--dask", address, "-o", str(out)],
                           capture_output=True, text=True, timeout=60)
        assert r.returncode == 2, r.stderr
        assert r.stderr.strip().splitlines() == [
            "deliverck: error: --dask needs the optional extra: pip install 'deliverck[dask]'"]
        assert not out.exists()                 # said before any output file is made


def test_bulk_line_values_use_the_check_validators():
    lines = [{"target": "b.example", "ips": []},                       # an empty list: none, the default
             {"target": "c.example", "ips": ["not-an-ip"]},
             {"target": "d.example", "dkim_selectors": ["_bad"]},
             {"target": "e.example", "ips": [f"192.0.2.{i}" for i in range(101)]}]
    got = items("".join(json.dumps(x) + "\n" for x in lines))
    assert got[0].config.outbound_ips == ()
    assert "'not-an-ip' is not an IP address" in got[1].error
    assert "_bad" in got[2].error
    assert "at most 100" in got[3].error                               # as --ip with 101 addresses
