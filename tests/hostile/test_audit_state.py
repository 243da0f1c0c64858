"""Issue 14, items 5 and 8 (audit): cron alerts are never lost, a corrupt state file is refused
before any probe, full disks and symbolic links.

`deliverck audit --changes-only --state FILE` is the cron job that mails an admin when a
target changed.  The state file is its memory of what was already reported: it must only
move on once the report reached its reader.  These tests break the reader (a full disk as
standard output, a pipe whose reader is gone, a closed standard output, a full file system
under --output or --state) and check that the next run reports the change again.

No lab is needed: the targets' resolver is 127.0.0.1:9, where nothing answers, so every
audit is quick and `incomplete`, which is a change like any other.  /dev/full is only ever
opened for writing and given as standard output, never as a path deliverck could replace.
"""

from __future__ import annotations

import json
import os
import socket
import stat
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest
from fullfs import on_a_full_fs

CONFIG = textwrap.dedent("""\
    [defaults]
    resolvers = ["{resolver}"]
    dns_timeout = 0.3
    only = ["mx"]

    [[target]]
    name = "good.test"
    """)


def config(tmp_path: Path, resolver: str = "127.0.0.1:9") -> Path:
    p = tmp_path / "deliverck.toml"
    p.write_text(CONFIG.format(resolver=resolver))
    return p


def run(*args: str, stdout=subprocess.PIPE, timeout: float = 60) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "deliverck", *args], stdout=stdout, stderr=subprocess.PIPE,
                          text=True, timeout=timeout, env={**os.environ, "COLUMNS": "160"})


def one_error_line(stderr: str) -> str:
    lines = stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("deliverck: error: "), stderr
    assert "Traceback" not in stderr and "Exception ignored" not in stderr
    return lines[0]


def audit_args(cfg: Path, state: Path, *more: str) -> list[str]:
    return ["audit", "-c", str(cfg), "--changes-only", "--state", str(state), *more]


def reported(cfg: Path, state: Path) -> str:
    """What the next run tells cron (its standard output)."""
    r = run(*audit_args(cfg, state))
    assert r.returncode in (0, 3), r.stderr
    return r.stdout


# --- item 5: stdout fails -> the state stays, the change is reported again ----------------------

@pytest.mark.slow
def test_a_full_disk_on_stdout_does_not_eat_the_alert(tmp_path):
    cfg, state = config(tmp_path), tmp_path / "state.json"
    with open("/dev/full", "w") as full:              # a device: only ever our standard output
        r = run(*audit_args(cfg, state), stdout=full)
    assert r.returncode == 3
    line = one_error_line(r.stderr)
    assert "standard output" in line and "No space left on device" in line and str(state) in line
    assert not state.exists()                          # nothing recorded as reported
    again = reported(cfg, state)
    assert "Changes since the last run" in again and "good.test: new target" in again
    assert reported(cfg, state) == ""                  # delivered once: recorded, quiet since


@pytest.mark.slow
def test_a_reader_gone_from_the_pipe_does_not_eat_the_alert(tmp_path):
    """`deliverck audit ... | mail admin` where mail died: a broken pipe."""
    cfg, state = config(tmp_path), tmp_path / "state.json"
    old = {"schema": "deliverck.state/1", "written": "2026-01-01T00:00:00Z",
           "targets": {"good.test": {"verdict": "pass", "findings": []}}}
    state.write_text(json.dumps(old))
    before = state.read_bytes()
    p = subprocess.Popen([sys.executable, "-m", "deliverck", *audit_args(cfg, state)],
                         stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    p.stdout.close()                                   # the reader is gone before anything is written
    _, err = p.communicate(timeout=60)
    assert p.returncode == 3
    assert "broken pipe" in one_error_line(err)
    assert state.read_bytes() == before
    assert "good.test: verdict pass -> incomplete" in reported(cfg, state)


def test_a_closed_stdout_does_not_eat_the_alert(tmp_path):
    """`deliverck audit ... >&-`: said before any lookup (exit 2), and nothing recorded."""
    resolver = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    resolver.bind(("127.0.0.1", 0))
    resolver.setblocking(False)
    cfg, state = config(tmp_path, f"127.0.0.1:{resolver.getsockname()[1]}"), tmp_path / "state.json"
    try:
        r = subprocess.run([sys.executable, "-m", "deliverck", *audit_args(cfg, state)], stdin=subprocess.DEVNULL,
                           capture_output=True, text=True, timeout=60,
                           preexec_fn=lambda: os.close(1))
        assert r.returncode == 2
        assert "standard output is closed" in one_error_line(r.stderr)
        assert not state.exists()
        with pytest.raises(BlockingIOError):
            resolver.recv(512)
    finally:
        resolver.close()
    assert "good.test: new target" in reported(config(tmp_path), state)


# --- full file systems: a tiny tmpfs in a mount namespace of our own ---------------------------

def test_stdout_to_a_file_on_a_full_disk_does_not_eat_the_alert(tmp_path):
    """`deliverck audit ... > /var/tmp/report.txt` on a full file system."""
    cfg, state = config(tmp_path), tmp_path / "state.json"
    rc, _, err, after = on_a_full_fs(tmp_path, ":", audit_args(cfg, state), stdout=str(tmp_path / "full" / "r.txt"))
    assert rc == 3
    assert "standard output (No space left on device)" in one_error_line(err)
    assert not state.exists()
    assert "good.test: new target" in reported(cfg, state)


def test_output_on_a_full_disk_leaves_the_state_and_says_so(tmp_path):
    cfg, state = config(tmp_path), tmp_path / "state.json"
    rc, _, err, after = on_a_full_fs(tmp_path, ":", audit_args(cfg, state, "-o", str(tmp_path / "full" / "out.prom"),
                                                                  "-f", "prometheus"))
    assert rc == 3
    assert "cannot write --output" in one_error_line(err)
    assert not state.exists()
    assert sorted(p.name for p in after.iterdir()) == []          # no temporary file left behind
    assert "good.test: new target" in reported(cfg, state)


def test_state_on_a_full_disk_keeps_the_old_state(tmp_path):
    """The report was delivered, the state could not be written: the old state stays whole, so
    the next run reports the change once more (a duplicate mail, never a lost one)."""
    cfg = config(tmp_path)
    old = {"schema": "deliverck.state/1", "written": "2026-01-01T00:00:00Z",
           "targets": {"good.test": {"verdict": "pass", "findings": []}}}
    (tmp_path / "old.json").write_text(json.dumps(old))
    state = tmp_path / "full" / "state.json"
    rc, stdout, err, after = on_a_full_fs(tmp_path, f"cp {tmp_path}/old.json {state}", audit_args(cfg, state))
    assert rc == 3
    line = one_error_line(err)
    assert "cannot write --state" in line and "reports the same changes again" in line
    assert "good.test: verdict pass -> incomplete" in stdout
    assert json.loads((after / "state.json").read_text()) == old
    assert sorted(p.name for p in after.iterdir()) == ["state.json"]


# --- item 8: a corrupt state file is refused before any probe -----------------------------------

S = "deliverck.state/1"
SHAPES = [
    ("not-json", "{{{", "not JSON"),
    ("a-list", "[1, 2]", f"not a {S} document"),
    ("wrong-schema", json.dumps({"schema": "x", "targets": {}}), f"not a {S} document"),
    ("targets-a-list", json.dumps({"schema": S, "targets": []}), f"not a {S} document"),
    ("entry-a-string", json.dumps({"schema": S, "targets": {"good.test": "pass"}}), "is a string"),
    ("missing-verdict", json.dumps({"schema": S, "targets": {"good.test": {"findings": []}}}), 'has no "verdict"'),
    ("missing-findings", json.dumps({"schema": S, "targets": {"good.test": {"verdict": "pass"}}}),
     'has no "findings"'),
    ("verdict-wrong-type", json.dumps({"schema": S, "targets": {"good.test": {"verdict": 1, "findings": []}}}),
     '"verdict" must be one of pass, fail, incomplete'),
    ("finding-two-strings", json.dumps({"schema": S, "targets": {"good.test": {
        "verdict": "fail", "findings": [["ptr.missing", "192.0.2.1"]]}}}), '"findings" item 1 must be'),
    ("finding-four-strings", json.dumps({"schema": S, "targets": {"good.test": {
        "verdict": "fail", "findings": [["a", "b", "c", "d"]]}}}), '"findings" item 1 must be'),
    ("finding-number", json.dumps({"schema": S, "targets": {"good.test": {
        "verdict": "fail", "findings": [["a", "b", 3]]}}}), '"findings" item 1 must be'),
    ("last-success-infinite", f'{{"schema": "{S}", "targets": {{"good.test": {{"verdict": "pass", "findings": [], '
                              '"last_success": 1e400}}}', '"last_success" must be a Unix time'),
    ("last-success-nan", f'{{"schema": "{S}", "targets": {{"good.test": {{"verdict": "pass", "findings": [], '
                         '"last_success": NaN}}}', '"last_success" must be a Unix time'),
    ("last-success-year-3e12", json.dumps({"schema": S, "targets": {"good.test": {
        "verdict": "pass", "findings": [], "last_success": 1e20}}}), '"last_success" must be a Unix time'),
    ("last-success-negative", json.dumps({"schema": S, "targets": {"good.test": {
        "verdict": "pass", "findings": [], "last_success": -1e15}}}), '"last_success" must be a Unix time'),
    ("last-success-text", json.dumps({"schema": S, "targets": {"good.test": {
        "verdict": "pass", "findings": [], "last_success": "yesterday"}}}), '"last_success" must be a Unix time'),
    ("deep", "[" * 100000 + "]" * 100000, ""),
    ("not-utf8", b'{"schema": "\xff"}', "not UTF-8"),
    ("control-chars-in-name", json.dumps({"schema": S, "targets": {"\x1b[31mred": {"verdict": "x", "findings": []}}}),
     '"\\u001b[31mred"'),
]


# Each shape with one of the formats, in turn: the crashes came from the table (findings) and
# JSON (last_success) renderers, which ran only after every target was audited.
FORMATS = ("table", "json", "prometheus")


@pytest.mark.parametrize("name,text,fragment,fmt", [(*s, FORMATS[i % 3]) for i, s in enumerate(SHAPES)],
                         ids=[s[0] for s in SHAPES])
@pytest.mark.slow
def test_a_corrupt_state_is_refused_before_any_probe(tmp_path, name, text, fragment, fmt):
    """Before: these crashed with an internal error after every target was audited (and the
    alert of that run was lost).  Now: exit 2, one line naming the file and the problem, and
    not one DNS question was asked (the resolver is a socket of this test)."""
    resolver = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    resolver.bind(("127.0.0.1", 0))
    resolver.setblocking(False)
    cfg = config(tmp_path, f"127.0.0.1:{resolver.getsockname()[1]}")
    state = tmp_path / "state.json"
    state.write_bytes(text if isinstance(text, bytes) else text.encode())
    before = state.read_bytes()
    try:
        r = run(*audit_args(cfg, state, "-f", fmt))
        assert r.returncode == 2, (r.stdout[-500:], r.stderr)
        line = one_error_line(r.stderr)
        assert line.startswith(f"deliverck: error: --state {state}: ") and fragment in line
        assert "delete it to start afresh" in line
        assert r.stdout == "" and state.read_bytes() == before
        with pytest.raises(BlockingIOError):
            resolver.recv(512)                         # no question reached the resolver
    finally:
        resolver.close()


@pytest.mark.slow
def test_every_state_shape_a_run_writes_is_read_back(tmp_path):
    """The validation refuses nothing that deliverck itself writes (incomplete, last_success)."""
    cfg, state = config(tmp_path), tmp_path / "state.json"
    assert "new target" in reported(cfg, state)
    doc = json.loads(state.read_text())
    doc["targets"]["good.test"]["last_success"] = 1767225600.5
    doc["targets"]["other.test"] = {"verdict": "fail", "findings": [["ptr.missing", "192.0.2.1", "error"]],
                                    "last_success": 0}
    state.write_text(json.dumps(doc))
    out = reported(cfg, state)
    assert "other.test: no longer in the config (was fail)" in out and "- error ptr.missing 192.0.2.1 (gone)" in out


# --- item 8: --output and --state as symbolic links: written through, mode kept ----------------

@pytest.mark.slow
def test_symlinked_output_and_state_are_written_through_and_keep_their_mode(tmp_path):
    cfg = config(tmp_path)
    real = tmp_path / "real"
    real.mkdir()
    (real / "deliverck.prom").write_text("# the last run\n")
    os.chmod(real / "deliverck.prom", 0o640)
    out_link, state_link = tmp_path / "out.prom", tmp_path / "state.json"
    out_link.symlink_to(real / "deliverck.prom")
    state_link.symlink_to(real / "state.json")          # dangling: the state is created through it
    r = run(*audit_args(cfg, state_link, "-o", str(out_link), "-f", "prometheus"))
    assert r.returncode == 3, r.stderr
    for link in (out_link, state_link):
        assert link.is_symlink()
    assert os.readlink(out_link) == str(real / "deliverck.prom")
    assert "deliverck_verdict" in (real / "deliverck.prom").read_text()
    assert stat.S_IMODE((real / "deliverck.prom").stat().st_mode) == 0o640
    assert json.loads((real / "state.json").read_text())["schema"] == S
    os.chmod(real / "state.json", 0o600)
    r = run(*audit_args(cfg, state_link, "-o", str(out_link), "-f", "prometheus"))
    assert r.returncode == 0 and r.stdout == ""                   # nothing changed: quiet
    assert state_link.is_symlink() and stat.S_IMODE((real / "state.json").stat().st_mode) == 0o600
    assert sorted(p.name for p in real.iterdir()) == ["deliverck.prom", "state.json"]


def test_output_and_state_that_are_one_file_through_a_link_are_refused(tmp_path):
    cfg = config(tmp_path)
    (tmp_path / "state.json").write_text("")
    (tmp_path / "link.json").symlink_to(tmp_path / "state.json")
    r = run(*audit_args(cfg, tmp_path / "state.json", "-o", str(tmp_path / "link.json")))
    assert r.returncode == 2 and "the same file" in one_error_line(r.stderr)
