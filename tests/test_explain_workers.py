"""Issue 16: `explain --workers N` spreads a directory, many files or a large mbox over worker
processes, with the output of one process: same lines, same order, same exit code.  Also the
pieces of the faster single process that the corpus tests do not pin down by themselves.

Real over fake: the CLI runs in a subprocess over a directory of real bounces (the labelled
corpus, varied per copy as bench/audits.py does)."""

from __future__ import annotations

import os
import re
from pathlib import Path

import pytest
from conftest import ROOT, deliverck

from deliverck.explain import pool, reader, rules, systems

CORPUS = ROOT / "tests" / "bounces"
N = pool.MIN_FOR_WORKERS + 40           # enough that the workers start, with a partial last task


def _templates() -> list[bytes]:
    return [p.read_bytes() for p in sorted(CORPUS.glob("*.eml")) + sorted(CORPUS.glob("*.txt"))]


def _vary(t: bytes, i: int) -> bytes:
    return re.sub(rb"([A-Za-z0-9._%+-]+)@(example\.(?:net|com|org))", lambda m: m.group(1) + b".%d@" % i + m.group(2), t)


@pytest.fixture(scope="module")
def bounce_dir(tmp_path_factory) -> Path:
    d = tmp_path_factory.mktemp("bounces")
    ts = _templates()
    for i in range(N):
        (d / f"{i:05d}.eml").write_bytes(_vary(ts[i % len(ts)], i))
    # what a directory also holds: unreadable input and a non-bounce, at places workers handle
    (d / "00007.eml").write_bytes(b"\x00\x01binary" * 50)
    (d / "00100.eml").write_bytes(b"")
    (d / "00150.eml").write_bytes(b"From: ann@example.org\nTo: bob@example.org\nSubject: lunch\n\nNoon?\n")
    return d


@pytest.fixture(scope="module")
def mbox(tmp_path_factory) -> Path:
    f = tmp_path_factory.mktemp("mbox") / "bounces.mbox"
    ts = [t for t in _templates() if not t.startswith(b"From ")]
    with f.open("wb") as out:
        out.write(b"\xef\xbb\xbf")        # a UTF-8 BOM: the offsets the workers read must allow for it
        for i in range(N):
            out.write(b"From MAILER-DAEMON Mon Mar  3 10:15:02 2025\n" + _vary(ts[i % len(ts)], i).rstrip(b"\n") + b"\n\n")
    return f


def _same(args: list[str]) -> None:
    one = deliverck("explain", *args, "--workers", "1", timeout=300)
    two = deliverck("explain", *args, "--workers", "2", timeout=300)
    assert one.returncode in (0, 1), one.stderr
    assert "Traceback" not in two.stderr
    assert (two.returncode, two.stdout, two.stderr) == (one.returncode, one.stdout, one.stderr)


@pytest.mark.slow
def test_directory_jsonl_with_workers_is_the_single_process_output(bounce_dir):
    _same([str(bounce_dir), "--jsonl"])


@pytest.mark.slow
def test_directory_table_with_workers_is_the_single_process_output(bounce_dir):
    _same([str(bounce_dir), "-v"])


@pytest.mark.slow
def test_files_named_with_workers_are_the_single_process_output(bounce_dir):
    _same([*sorted(str(p) for p in bounce_dir.iterdir()), "--jsonl"])


@pytest.mark.slow
def test_large_mbox_with_workers_is_the_single_process_output(mbox):
    _same([str(mbox), "--jsonl"])
    _same([str(mbox)])


def test_tasks_run_in_other_processes():
    """The pool really hands work to other processes (a task returning /proc/self: the worker's pid)."""
    got = "".join(pool._ordered([(os.readlink, ("/proc/self",))], 2))
    assert got.isdigit() and int(got) != os.getpid()


@pytest.mark.parametrize("value", ["0", "-1", "257", "two", "1.5", ""])
def test_bad_workers_is_one_line_and_exit_2(value):
    r = deliverck("explain", "5.1.1", "--workers", value)
    lines = r.stderr.strip().splitlines()
    assert r.returncode == 2 and r.stdout == "" and len(lines) == 1, r.stderr
    assert lines[0].startswith("deliverck: error:") and "--workers" in lines[0]


def test_mbox_spans_are_the_messages_split_mbox_gave():
    """reader.mbox_spans against the splitting by re.split it replaced (kept here as the reference)."""
    def reference(data: bytes) -> list[bytes]:
        if not data.startswith(b"From "):
            return [data]
        out = []
        for p in re.split(rb"(?:\r?\n)(?=From \S+ +\w{3} )", data)[:reader.MAX_MESSAGES]:
            nl = p.find(b"\n")
            body = p[nl + 1:] if p.startswith(b"From ") and nl >= 0 else p
            if body.strip():
                out.append(body)
        return out or [data]

    pieces = [b"From a Mon 1\n", b"\n", b"\r\n", b"x: y\n", b"From  b  Tue\n", b"From c d\n", b" ", b"From q Wed ", b"From"]
    cases = [b"", b"From x", b"From \n"] + [t for t in _templates()]
    cases += [b"".join(pieces[(i * 7 + j * 3) % len(pieces)] for j in range(i % 11)) for i in range(400)]
    for data in cases:
        assert [data[s:e] for s, e in reader.mbox_spans(data)] == reference(data), data[:80]


def test_systems_prefilter_keeps_every_match_of_the_corpus():
    """systems.by_* skip the patterns whose words are not in the text: never one that matches."""
    checked = 0
    for p in sorted(CORPUS.rglob("*")):
        if not p.is_file():
            continue
        text = p.read_bytes().decode("utf-8", "replace")
        for attr in ("hosts", "text", "from_"):
            ix = systems._index(attr)
            for chunk in [text, *text.splitlines()]:
                chunk = chunk.lower() if attr == "hosts" else chunk
                present = rules._present(ix.words_re, ix.words, chunk)
                if present is None:
                    continue
                for _s, pat, needs in ix.entries:
                    if needs is not None and pat.search(chunk):
                        checked += 1
                        assert not needs.isdisjoint(present), (pat.pattern, chunk[:200])
    assert checked > 100
    ix = systems._index("text")
    assert sum(n is not None for _, _, n in ix.entries) >= 0.8 * len(ix.entries)


def _rule_loads() -> list[int]:
    """Run in a worker: how often this process lineage loaded, and looked up, the rule table."""
    from deliverck.explain import rules as r

    info = r.load.cache_info()
    return [info.misses, info.hits]


def test_workers_start_with_the_rule_table_loaded():
    """Forked from a fork server that loaded the data (explain/preload.py): the worker's own
    warm-up finds the table cached rather than loading it again."""
    import multiprocessing

    if "forkserver" not in multiprocessing.get_all_start_methods():
        pytest.skip("no forkserver start method here: spawned workers load the data themselves")
    assert list(pool._ordered([(_rule_loads, ())], 2)) == [1, 1]
