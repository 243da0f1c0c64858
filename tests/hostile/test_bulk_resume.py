"""Issue 14, items 6, 7 and 8 (bulk): resume loses nothing, retries what did not finish, one
run per output file, an output that is the input, full disks and symbolic links.

Most cases need no lab: the resolver is 127.0.0.1:9, where nothing answers, so a target that
is audited gets a quick `error` line, which is all the resume logic needs to be seen at work.
Earlier runs' lines are written by hand (a report needs only its verdict here).  One case runs
in the lab, where a retried target really passes.
"""

from __future__ import annotations

import json
import os
import resource
import signal
import stat
import subprocess
import sys
import time
from pathlib import Path

import pytest
from fullfs import on_a_full_fs

SCHEMA = "deliverck.bulk/1"
DEAD = ["--resolver", "127.0.0.1:9", "--dns-timeout", "0.3", "--only", "mx"]


def line(target: str, verdict: str | None, n: int = 1, error: str = "") -> str:
    """A line as an earlier run wrote it: status ok with a report, or status error."""
    doc = {"schema": SCHEMA, "line": n, "input": target, "status": "ok" if verdict else "error",
           "report": {"schema": "deliverck.report/1", "verdict": verdict} if verdict else None,
           "error": error if not verdict else ""}
    return json.dumps(doc, separators=(",", ":"))


def bulk(*args: str, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, timeout: float = 120,
         preexec_fn=None) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "deliverck", "bulk", *args], stdin=stdin, stdout=stdout,
                          stderr=subprocess.PIPE, text=True, timeout=timeout, preexec_fn=preexec_fn)


def docs(path: Path) -> list[dict]:
    text = path.read_text()
    assert text == "" or text.endswith("\n")
    return [json.loads(x) for x in text.splitlines()]


def inputs(path: Path) -> list[str]:
    return [d["input"] for d in docs(path)]


def one_error_line(stderr: str) -> str:
    lines = stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("deliverck: error: "), stderr
    assert "Traceback" not in stderr and "Exception ignored" not in stderr and "Task exception" not in stderr
    return lines[0]


# --- item 6: resume -------------------------------------------------------------------------------

def test_a_complete_last_line_without_its_newline_is_audited_again(tmp_path):
    """Before: the line was counted done, then trimmed away: 1 of 50 targets lost, exit 0."""
    names = [f"t{i}.example" for i in range(50)]
    (tmp_path / "in.txt").write_text("\n".join(names) + "\n")
    out = tmp_path / "out.jsonl"
    out.write_text("\n".join(line(n, "pass", i + 1) for i, n in enumerate(names)))   # no final newline
    r = bulk(str(tmp_path / "in.txt"), "-o", str(out), *DEAD)
    assert sorted(inputs(out)) == sorted(names)                  # every target, once
    last = docs(out)[-1]
    assert last["input"] == "t49.example" and last["status"] == "error"   # audited again, just now
    assert r.returncode == 3, r.stderr                           # and its error counts
    assert "1 targets:" in r.stderr and "49 already done" in r.stderr


def earlier_run(tmp_path: Path) -> Path:
    out = tmp_path / "out.jsonl"
    out.write_text("\n".join([line("a.example", "pass", 1), line("b.example", None, 2, error="no resolver"),
                              line("c.example", "incomplete", 3), line("d.example", "pass", 4)]) + "\n")
    (tmp_path / "in.txt").write_text("a.example\nb.example\nc.example\nd.example\n")
    return out


def test_error_and_incomplete_targets_are_retried_and_replace_their_lines(tmp_path):
    out = earlier_run(tmp_path)
    r = bulk(str(tmp_path / "in.txt"), "-o", str(out), *DEAD)
    assert r.returncode == 3, r.stderr
    got = {d["input"]: d for d in docs(out)}
    assert sorted(inputs(out)) == ["a.example", "b.example", "c.example", "d.example"]   # one line each
    assert got["b.example"]["error"] != "no resolver"                # audited again
    assert got["c.example"]["status"] == "error"                     # was ok/incomplete: audited again
    assert got["a.example"]["report"] == {"schema": "deliverck.report/1", "verdict": "pass"}   # kept
    assert "2 targets:" in r.stderr and "2 already done, 2 retried" in r.stderr
    assert not list(tmp_path.glob(".*.tmp"))


def test_no_retry_keeps_them_and_the_exit_code_still_counts_them(tmp_path):
    out = earlier_run(tmp_path)
    before = out.read_bytes()
    r = bulk(str(tmp_path / "in.txt"), "-o", str(out), "--no-retry", *DEAD)
    assert out.read_bytes() == before                                # nothing audited, nothing changed
    assert r.returncode == 3, r.stderr                               # b is an error, c incomplete
    assert "0 targets:" in r.stderr and "4 already done" in r.stderr


def test_the_exit_code_reflects_every_target_in_the_file(tmp_path):
    """Before: a resumed run with nothing left to do exited 0 over a file holding a failure."""
    out = tmp_path / "out.jsonl"
    out.write_text(line("a.example", "pass") + "\n" + line("b.example", "fail", 2) + "\n")
    (tmp_path / "in.txt").write_text("a.example\nb.example\n")
    r = bulk(str(tmp_path / "in.txt"), "-o", str(out), *DEAD)
    assert r.returncode == 1, r.stderr
    assert "holds 2 targets: 1 pass, 1 fail" in r.stderr


def test_no_retry_needs_an_output(tmp_path):
    (tmp_path / "in.txt").write_text("a.example\n")
    r = bulk(str(tmp_path / "in.txt"), "--no-retry")
    assert r.returncode == 2 and "--no-retry needs --output" in one_error_line(r.stderr)


def test_a_run_without_dns_is_finished_by_the_next_one(lab, tmp_path):
    """The cron story: the resolver was down at night; the morning run audits those targets
    again (in the lab, where they answer) and the file ends with one real verdict per target."""
    (tmp_path / "in.txt").write_text("good.test\nno-ptr.test\n")
    out = tmp_path / "out.jsonl"
    r = bulk(str(tmp_path / "in.txt"), "-o", str(out), *DEAD)
    assert r.returncode == 3 and [d["status"] for d in docs(out)] == ["error", "error"]
    r = bulk(str(tmp_path / "in.txt"), "-o", str(out), "--only", "mx,ptr", "--dns-timeout", "2")
    assert r.returncode == 1, r.stderr                              # no-ptr.test fails
    verdicts = {d["input"]: d["report"]["verdict"] for d in docs(out)}
    assert verdicts == {"good.test": "pass", "no-ptr.test": "fail"}
    r = bulk(str(tmp_path / "in.txt"), "-o", str(out), "--only", "mx,ptr")
    assert r.returncode == 1 and "0 targets:" in r.stderr and len(docs(out)) == 2


# --- item 7: one run per output; the output is never the input ------------------------------------

def _flock_holders(path: Path) -> list[int]:
    st = path.stat()
    want = f"{os.major(st.st_dev):02x}:{os.minor(st.st_dev):02x}:{st.st_ino}"
    pids = []
    for row in Path("/proc/locks").read_text().splitlines():
        f = row.split()
        if len(f) > 5 and f[1] == "FLOCK" and f[5] == want:
            pids.append(int(f[4]))
    return pids


def _first_run(tmp_path: Path, out: Path) -> subprocess.Popen:
    """A run that holds OUT and waits for more input on a pipe we keep open."""
    p = subprocess.Popen([sys.executable, "-m", "deliverck", "bulk", "-", "-o", str(out), *DEAD],
                         stdin=subprocess.PIPE, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    p.stdin.write("# the list follows\n")
    p.stdin.flush()
    deadline = time.monotonic() + 30
    while p.pid not in _flock_holders(out):
        assert p.poll() is None and time.monotonic() < deadline, "the first run never locked its output"
        time.sleep(0.05)
    return p


@pytest.mark.slow
def test_a_second_run_on_the_same_output_stops_and_names_the_first(tmp_path):
    """Before: both runs audited every target and wrote it twice."""
    (tmp_path / "in.txt").write_text("a.example\nb.example\n")
    out = tmp_path / "out.jsonl"
    out.write_text("")
    first = _first_run(tmp_path, out)
    try:
        r = bulk(str(tmp_path / "in.txt"), "-o", str(out), *DEAD)
        assert r.returncode == 2
        msg = one_error_line(r.stderr)
        assert f"--output {out}: another run is writing it (pid {first.pid}: " in msg and "bulk -" in msg
        assert out.read_text() == ""
    finally:
        first.stdin.write("a.example\n")
        first.stdin.close()
        first.wait(timeout=60)
    assert first.returncode == 3 and inputs(out) == ["a.example"]
    r = bulk(str(tmp_path / "in.txt"), "-o", str(out), *DEAD)      # the lock went with its run
    assert r.returncode == 3 and sorted(inputs(out)) == ["a.example", "b.example"]


def test_a_run_killed_with_kill_9_leaves_no_lock_behind(tmp_path):
    (tmp_path / "in.txt").write_text("a.example\n")
    out = tmp_path / "out.jsonl"
    out.write_text("")
    first = _first_run(tmp_path, out)
    first.send_signal(signal.SIGKILL)
    first.wait(timeout=30)
    r = bulk(str(tmp_path / "in.txt"), "-o", str(out), *DEAD)
    assert r.returncode == 3, r.stderr
    assert inputs(out) == ["a.example"]


def _small_files() -> None:
    """For the old code, which appended to the file it read, without end: stop at 1 MB."""
    resource.setrlimit(resource.RLIMIT_FSIZE, (1 << 20, 1 << 20))


@pytest.mark.parametrize("how", ["same-path", "symlink", "hard-link", "stdin"])
@pytest.mark.slow
def test_an_output_that_is_the_input_is_refused(tmp_path, how):
    out = tmp_path / "out.jsonl"
    out.write_text(line("a.example", "pass") + "\n" + line("b.example", None, 2) + "\n")
    before = out.read_bytes()
    src = str(out)
    if how == "symlink":
        (tmp_path / "link").symlink_to(out)
        src = str(tmp_path / "link")
    elif how == "hard-link":
        os.link(out, tmp_path / "link")
        src = str(tmp_path / "link")
    with out.open("rb") as f:
        r = bulk("-" if how == "stdin" else src, "-o", str(out), *DEAD, stdin=f if how == "stdin" else subprocess.DEVNULL,
                 timeout=60, preexec_fn=_small_files)
    assert r.returncode == 2, r.stderr[-1000:]
    assert "is the input" in one_error_line(r.stderr)
    assert out.read_bytes() == before


# --- item 8: full disks, closed pipes, symbolic links ---------------------------------------------

@pytest.mark.slow
def test_a_full_disk_is_one_line_exit_3_and_the_run_resumes(tmp_path):
    """Before: nine raw asyncio tracebacks."""
    names = [f"t{i}.example" for i in range(100)]
    (tmp_path / "in.txt").write_text("\n".join(names) + "\n")
    out = tmp_path / "full" / "out.jsonl"
    rc, _, err, after = on_a_full_fs(tmp_path, "keep-room", [
        "bulk", str(tmp_path / "in.txt"), "-o", str(out), "--concurrency", "20", *DEAD], size="8k")
    assert rc == 3
    msg = one_error_line(err)
    assert f"cannot write --output {out} (No space left on device) after " in msg and "run the same command" in msg
    saved = after / "out.jsonl"
    written = saved.read_text().count("\n")
    assert 0 < written < 100
    r = bulk(str(tmp_path / "in.txt"), "-o", str(saved), *DEAD)        # the same run, with room
    assert r.returncode == 3, r.stderr
    assert sorted(inputs(saved)) == sorted(names)                       # every target, once


def test_a_full_disk_as_standard_output(tmp_path):
    (tmp_path / "in.txt").write_text("".join(f"t{i}.example\n" for i in range(5)))
    with open("/dev/full", "w") as full:                  # a device: only ever our standard output
        r = bulk(str(tmp_path / "in.txt"), *DEAD, stdout=full)
    assert r.returncode == 3
    assert "standard output (No space left on device)" in one_error_line(r.stderr)


def test_a_reader_gone_from_the_pipe(tmp_path):
    (tmp_path / "in.txt").write_text("".join(f"t{i}.example\n" for i in range(5)))
    p = subprocess.Popen([sys.executable, "-m", "deliverck", "bulk", str(tmp_path / "in.txt"), *DEAD],
                         stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    p.stdout.close()
    _, err = p.communicate(timeout=60)
    assert p.returncode == 3
    assert "broken pipe" in one_error_line(err)


def test_a_symlinked_output_is_written_through_and_keeps_its_mode(tmp_path):
    real = tmp_path / "data"
    real.mkdir()
    earlier_run(tmp_path)
    (tmp_path / "out.jsonl").rename(real / "results.jsonl")
    os.chmod(real / "results.jsonl", 0o640)
    link = tmp_path / "out.jsonl"
    link.symlink_to(real / "results.jsonl")
    r = bulk(str(tmp_path / "in.txt"), "-o", str(link), *DEAD)        # retries: the file is written anew
    assert r.returncode == 3, r.stderr
    assert link.is_symlink() and os.readlink(link) == str(real / "results.jsonl")
    assert sorted(inputs(real / "results.jsonl")) == ["a.example", "b.example", "c.example", "d.example"]
    assert stat.S_IMODE((real / "results.jsonl").stat().st_mode) == 0o640
    assert sorted(p.name for p in real.iterdir()) == ["results.jsonl"]
