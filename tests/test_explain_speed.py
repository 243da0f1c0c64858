"""Issue 16, explain at 2,000 messages/s: what the workers send back, the word prefilter of the
bounce-format detectors, and an honest CPU figure in the bench's explain row.

The speed itself is measured by `make bench` (ratios, not timed tests); these tests pin down that
each shortcut gives the answers of the long way, on every file of the labelled corpus."""

from __future__ import annotations

import pickle
import sys
import time

import pytest
from conftest import ROOT, deliverck

from deliverck.explain import engine, formats, mime, pool, reader
from deliverck.explain.render import Triaged, not_a_bounce_line, render_jsonl, render_table

CORPUS = ROOT / "tests" / "bounces"
FILES = sorted(p for p in CORPUS.rglob("*") if p.is_file())


def _texts() -> list[str]:
    """Every corpus file's human text as find_bounce and extract see it (and pasted text as is)."""
    out = []
    for p in FILES:
        data, _ = reader.sniff(p.read_bytes())
        if reader.looks_like_message(data):
            for raw in reader.split_mbox(data):
                try:
                    msg = mime.email.message_from_bytes(raw, _class=mime.BounceMessage, policy=mime.policy.compat32)
                except (RecursionError, ValueError):
                    continue
                text = mime.find_bounce(msg, [])[2]
                out += [text, formats.cut_original(text)]
        else:
            out.append(reader.decode(data))
    return out


def _every_detector(text: str) -> list[str]:
    """The long way: every detector's regex run on the text."""
    return [name for name, detector, _ in formats.EXTRACTORS if detector.search(text[:formats.MAX_TEXT])]


def test_detectors_prefiltered_by_words_fire_as_without_the_filter():
    """The word scan (rules._needs/_present) skips only detectors that cannot match: on every
    corpus text, and on upper-case and non-ASCII variants of it, the same detectors fire."""
    texts = _texts()
    assert len(texts) > 150
    fired = 0
    for t in texts + [t.upper() for t in texts] + ["\u212a " + t for t in texts[:20]]:
        want = _every_detector(t)
        assert [name for name, _ in formats._detected(t)] == want
        assert formats.detected_format(t) == (want[0] if want else "")
        fired += bool(want)
    assert fired > 100, "the corpus should exercise the detectors"


def test_a_detector_skipped_by_the_prefilter_is_one_whose_words_are_absent():
    needs, words, words_re = formats._detector_words()
    exim = next(i for i, (name, _, _) in enumerate(formats.EXTRACTORS) if name == "exim")
    assert needs[exim] and words_re is not None
    text = "Hello.\nThis message was created automatically by mail delivery software.\n"
    assert "exim" in [n for n, _ in formats._detected(text)]
    assert "exim" not in [n for n, _ in formats._detected("Hello.\nNothing failed here.\n")]


@pytest.mark.parametrize("jsonl, verbose", [(True, False), (False, False), (False, True)])
def test_workers_send_back_the_rendered_record(jsonl, verbose):
    """A worker's task returns render.Triaged records, the text exactly what one process writes
    for the same file."""
    paths = [str(p) for p in FILES]
    got = pool._files_task(paths, reader.MAX_BYTES, False, (jsonl, verbose, True))
    trees = [e for p in paths for e in engine.explain_guarded(p)]
    assert all(isinstance(t, Triaged) for t in got) and len(got) == len(trees)
    for t, e in zip(got, trees, strict=True):
        skip = not e.is_bounce and not e.error
        if jsonl:
            want = render_jsonl(e)
        elif skip:
            want = not_a_bounce_line(e) if verbose else ""
        else:
            want = render_table(e, verbose=verbose, header=True)
        assert (t.text, t.skipped, t.exit_code) == (want, skip, e.exit_code)
        assert t.kind == (e.bounce.not_bounce_kind if skip and e.bounce else "")
    assert pickle.loads(pickle.dumps(got)) == got        # what travels: strings and flags, no object tree


@pytest.mark.slow
def test_directory_table_without_verbose_with_workers_is_the_single_process_output(tmp_path):
    """The table of a directory (skipped inputs counted in the last line, not shown) and the
    table of files named, with workers rendering the records."""
    for i in range(pool.MIN_FOR_WORKERS + 10):
        src = FILES[i % len(FILES)]
        (tmp_path / f"{i:05d}-{src.name}").write_bytes(src.read_bytes())
    for args in ([str(tmp_path)], sorted(str(p) for p in tmp_path.iterdir())):
        one = deliverck("explain", *args, "--workers", "1", timeout=300)
        two = deliverck("explain", *args, "--workers", "2", timeout=300)
        assert "Traceback" not in two.stderr
        assert (two.returncode, two.stdout, two.stderr) == (one.returncode, one.stdout, one.stderr)
        assert "== " in one.stdout


_ORPHAN = """
import os, sys, time
if os.fork() == 0:
    if os.fork() == 0:                      # a grandchild left behind, as a fork server's worker is
        t = time.process_time()
        while time.process_time() - t < 0.4:
            pass
    os._exit(0)
os.wait()
"""


def test_bench_explain_row_counts_the_cpu_of_every_process():
    """The bench's CPU figure includes processes the command started and did not wait for itself
    (the workers of multiprocessing's fork server); wait4 of the command alone does not."""
    sys.path.insert(0, str(ROOT))
    try:
        from bench.table import timed, timed_tree
    finally:
        sys.path.remove(str(ROOT))
    argv = [sys.executable, "-c", _ORPHAN]
    _code, _wall, alone = timed(argv)
    time.sleep(0.6)                          # the orphan of that run finishes elsewhere
    _wall, tree = timed_tree(argv)
    assert alone < 0.3 <= tree
