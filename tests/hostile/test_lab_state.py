"""Issue 14, items 1 and 9: the state of `lab up`, and `lab exec` in the caller's directory.

deliverck runs as root; `lab up` leaves a lab running and records it in a state file that
`lab exec` (enters its namespaces) and `lab down` (signals its processes, removes its
directory) trust.  Before issue 14 the file lived at /tmp/deliverck-lab-<uid>/..., unchecked:
another local user who made it first chose what root removed and whom root signalled.

A second user cannot be played here (the tests may run as root or not), so the hostile cases
are built as the same user, as an attacker would have left them: the state directory a
symlink to a directory the attacker controls, a directory writable by everyone, a state file
that names a directory outside the lab or an unrelated process (a `sleep` started here).  In
each case `lab down`, `lab up` and `lab exec` must exit 2 with one line, and the directory
and the process must be untouched.

Every state directory and victim is under the test's tmp_path ($XDG_RUNTIME_DIR or $TMPDIR
point there), so no other lab on the machine is seen or touched.
"""

from __future__ import annotations

import json
import os
import stat
import subprocess
import sys
import time
from pathlib import Path

import pytest

SCHEMA = "deliverck.lab-state/1"
CLI_TIMEOUT = 60


def _cli(*args: str, env: dict, cwd: Path | None = None, timeout: float = CLI_TIMEOUT) -> subprocess.CompletedProcess:
    full = {k: v for k, v in os.environ.items() if k != "XDG_RUNTIME_DIR"}
    return subprocess.run([sys.executable, "-m", "deliverck", *args], capture_output=True, text=True,
                          timeout=timeout, env={**full, **env}, cwd=cwd)


def _one_error_line(r: subprocess.CompletedProcess, fragment: str) -> None:
    lines = r.stderr.splitlines()
    assert r.returncode == 2, (r.returncode, r.stdout, r.stderr)
    assert len(lines) == 1 and lines[0].startswith("deliverck: error: "), r.stderr
    assert fragment in lines[0], r.stderr
    assert "Traceback" not in r.stderr


@pytest.fixture
def xdg(tmp_path) -> Path:
    d = tmp_path / "xdg"
    d.mkdir(mode=0o700)
    return d


@pytest.fixture
def victim(tmp_path) -> Path:
    """A directory of the caller's that no lab command may remove."""
    d = tmp_path / "victim"
    d.mkdir(mode=0o700)
    (d / "precious").write_text("keep me\n")
    return d


@pytest.fixture
def stranger():
    """A process of the caller's that no lab command may signal."""
    proc = subprocess.Popen(["sleep", "120"])
    deadline = time.monotonic() + 5
    while _cmdline(proc.pid) != ["sleep", "120"] and time.monotonic() < deadline:     # exec'd
        time.sleep(0.01)
    yield proc
    proc.kill()
    proc.wait()


def _proc_start(pid: int) -> int:
    return int(Path(f"/proc/{pid}/stat").read_bytes().rsplit(b")", 1)[1].split()[19])


def _cmdline(pid: int) -> list[str]:
    return [a.decode() for a in Path(f"/proc/{pid}/cmdline").read_bytes().split(b"\0")[:-1]]


def _dead_pid() -> int:
    p = subprocess.Popen(["true"])
    p.wait()
    return p.pid


def _state(lab_dir: str, pid: int, unshare_pid: int, start: int = 1, digest: str = "0" * 64,
           lab_cmd: list[str] | None = None, unshare_cmd: list[str] | None = None) -> str:
    lab_cmd = lab_cmd or [sys.executable, "-m", "deliverck.lab.inside", lab_dir, "--hold"]
    unshare_cmd = unshare_cmd or ["/usr/bin/unshare", "-nm", "--pid", "--fork", *lab_cmd]
    return json.dumps({"schema": SCHEMA, "lab_dir": lab_dir, "manifest_sha256": digest, "userns": False,
                       "lab": {"pid": pid, "start": start, "cmdline": lab_cmd},
                       "unshare": {"pid": unshare_pid, "start": start, "cmdline": unshare_cmd}})


def _old_state(lab_dir: str, pid: int) -> str:
    """The state file of deliverck before issue 14, as an attacker would write it."""
    return json.dumps({"pid": pid, "unshare_pid": pid, "lab_dir": lab_dir, "userns": False})


def _plant(statedir: Path, text: str, mode: int = 0o700) -> Path:
    statedir.mkdir(mode=0o700, parents=True, exist_ok=True)
    (statedir / "state.json").write_text(text)
    statedir.chmod(mode)
    return statedir / "state.json"


def _all_refused(env: dict, fragment: str, victim: Path, stranger=None) -> None:
    for args in (["lab", "down"], ["lab", "up", "-q"], ["lab", "exec", "--", "true"]):
        t0 = time.monotonic()
        r = _cli(*args, env=env)
        _one_error_line(r, fragment)
        assert time.monotonic() - t0 < 10, "refused before a lab is built"
        assert (victim / "precious").read_text() == "keep me\n", args
        if stranger is not None:
            assert stranger.poll() is None, f"{args} signalled an unrelated process"


# --- the state directory ------------------------------------------------------------------------

def test_a_state_directory_that_is_a_symlink_is_refused(tmp_path, xdg, victim, stranger):
    elsewhere = tmp_path / "attacker"
    _plant(elsewhere, _old_state(str(victim), stranger.pid))
    (xdg / "deliverck-lab").symlink_to(elsewhere)
    _all_refused({"XDG_RUNTIME_DIR": str(xdg)}, "is a symbolic link", victim, stranger)
    assert (elsewhere / "state.json").exists()


def test_a_state_directory_writable_by_others_is_refused(xdg, victim, stranger):
    statefile = _plant(xdg / "deliverck-lab", _old_state(str(victim), stranger.pid), mode=0o777)
    _all_refused({"XDG_RUNTIME_DIR": str(xdg)}, "is writable by others (mode 0777)", victim, stranger)
    assert statefile.exists()


def test_xdg_runtime_dir_writable_by_others_is_refused(tmp_path, victim):
    shared = tmp_path / "shared"
    shared.mkdir()
    shared.chmod(0o1777)
    _plant(shared / "deliverck-lab", _old_state(str(victim), _dead_pid()))
    _all_refused({"XDG_RUNTIME_DIR": str(shared)}, "$XDG_RUNTIME_DIR", victim)


@pytest.mark.skipif(os.geteuid() != 0, reason="giving a directory to another user needs root")
@pytest.mark.slow
def test_a_state_directory_of_another_user_is_refused(xdg, victim):
    statefile = _plant(xdg / "deliverck-lab", _old_state(str(victim), _dead_pid()))
    os.chown(xdg / "deliverck-lab", 65534, 65534)
    _all_refused({"XDG_RUNTIME_DIR": str(xdg)}, "belongs to uid 65534, not to you", victim)
    assert statefile.exists()


def test_without_xdg_runtime_dir_the_private_tmp_directory_is_checked(tmp_path, victim, stranger):
    """No $XDG_RUNTIME_DIR: <tmp>/deliverck-lab-<uid>/deliverck-lab, where anyone may create the
    first level first (here: a symlink to a directory the attacker fills)."""
    tmp = tmp_path / "tmp"
    tmp.mkdir()
    attacker = tmp_path / "attacker"
    _plant(attacker / "deliverck-lab", _old_state(str(victim), stranger.pid))
    (tmp / f"deliverck-lab-{os.getuid()}").symlink_to(attacker)
    _all_refused({"TMPDIR": str(tmp)}, "is a symbolic link", victim, stranger)


def test_an_older_deliverck_state_directory_is_tightened_to_0700(tmp_path):
    """An older deliverck created the levels 0755: still the caller's and writable by nobody
    else, so they are used, and made 0700."""
    tmp = tmp_path / "tmp"
    (tmp / f"deliverck-lab-{os.getuid()}" / "deliverck-lab").mkdir(parents=True)
    for d in (tmp / f"deliverck-lab-{os.getuid()}", tmp / f"deliverck-lab-{os.getuid()}" / "deliverck-lab"):
        d.chmod(0o755)
    r = _cli("lab", "down", env={"TMPDIR": str(tmp)})
    assert (r.returncode, r.stdout, r.stderr) == (0, "no lab is up\n", "")
    for d in (tmp / f"deliverck-lab-{os.getuid()}", tmp / f"deliverck-lab-{os.getuid()}" / "deliverck-lab"):
        assert stat.S_IMODE(d.stat().st_mode) == 0o700


# --- the state file -----------------------------------------------------------------------------

def test_a_state_file_naming_a_directory_outside_the_lab_removes_nothing(xdg, victim):
    """The lab's processes are gone (dead pids): a stale lab, whose directory would be removed,
    if it were the lab's.  This one holds no manifest that `lab up` wrote."""
    statefile = _plant(xdg / "deliverck-lab", _state(str(victim), _dead_pid(), _dead_pid()))
    _all_refused({"XDG_RUNTIME_DIR": str(xdg)}, f"names the lab directory {victim}", victim)
    assert statefile.exists()


@pytest.mark.parametrize("pid", ["dead", "stranger"])
@pytest.mark.slow
def test_a_state_file_of_the_old_format_is_refused(xdg, victim, stranger, pid):
    """What issue 14 reproduced: a dead pid made `lab` remove lab_dir, a live one was signalled."""
    statefile = _plant(xdg / "deliverck-lab", _old_state(str(victim), _dead_pid() if pid == "dead" else stranger.pid))
    _all_refused({"XDG_RUNTIME_DIR": str(xdg)}, "is not a deliverck.lab-state/1 document", victim, stranger)
    assert statefile.exists()


@pytest.mark.slow
def test_a_state_file_naming_an_unrelated_process_signals_nothing(xdg, victim, stranger):
    statefile = _plant(xdg / "deliverck-lab", _state(str(victim), stranger.pid, stranger.pid))
    _all_refused({"XDG_RUNTIME_DIR": str(xdg)}, f"names pid {stranger.pid}, which is not the lab's process",
                 victim, stranger)
    assert statefile.exists()


@pytest.mark.slow
def test_a_state_file_copying_an_unrelated_process_exactly_signals_nothing(xdg, victim, stranger):
    """Start time and command line copied from /proc: they are not a lab's command line."""
    cmd = _cmdline(stranger.pid)
    assert cmd == ["sleep", "120"]
    _plant(xdg / "deliverck-lab", _state(str(victim), stranger.pid, stranger.pid, start=_proc_start(stranger.pid),
                                         lab_cmd=cmd, unshare_cmd=cmd))
    _all_refused({"XDG_RUNTIME_DIR": str(xdg)}, "lab.cmdline is not the lab's process 1", victim, stranger)


# SAFETY: every pid and path in these files is harmless (a dead pid, the victim directory), so
# that even code that trusted them (as deliverck before issue 14 did) could not do damage.
@pytest.mark.parametrize("case,fragment", [
    ("not-json", "it is not JSON"),
    ("relative", "lab_dir is not an absolute, normalised path"),
    ("dotdot", "lab_dir is not an absolute, normalised path"),
    ("pid-zero", "lab.pid is not a process id"),
    ("digest", "manifest_sha256"),
    ("extra-field", "its fields are not those `lab up` writes"),
])
@pytest.mark.slow
def test_a_malformed_state_file_is_one_line(xdg, victim, case, fragment):
    dead = _dead_pid()
    text = {"not-json": "not json",
            "relative": _state(os.path.relpath(victim), dead, dead),
            "dotdot": _state(f"{victim}/../{victim.name}", dead, dead),
            "pid-zero": _state(str(victim), 0, dead),
            "digest": _state(str(victim), dead, dead, digest="z" * 64),
            "extra-field": json.dumps({**json.loads(_state(str(victim), dead, dead)), "pid": dead})}[case]
    _plant(xdg / "deliverck-lab", text)
    _all_refused({"XDG_RUNTIME_DIR": str(xdg)}, fragment, victim)


@pytest.mark.slow
def test_a_state_file_that_is_a_symlink_is_refused(tmp_path, xdg, victim):
    real = tmp_path / "real-state.json"
    real.write_text(_old_state(str(victim), _dead_pid()))
    (xdg / "deliverck-lab").mkdir(mode=0o700)
    (xdg / "deliverck-lab" / "state.json").symlink_to(real)
    _all_refused({"XDG_RUNTIME_DIR": str(xdg)}, "state.json is a symbolic link", victim)


def test_a_stale_lab_of_the_caller_is_cleaned_up(tmp_path, xdg):
    """The positive case: the lab's processes are gone and its directory is the lab's (the
    caller's, 0700, the manifest `lab up` recorded): `lab down` removes it and the state."""
    import hashlib

    lab_dir = tmp_path / "deliverck-lab-stale"
    lab_dir.mkdir(mode=0o700)
    (lab_dir / "manifest.json").write_text('{"schema": "deliverck.lab/1"}')
    digest = hashlib.sha256((lab_dir / "manifest.json").read_bytes()).hexdigest()
    statefile = _plant(xdg / "deliverck-lab", _state(str(lab_dir), _dead_pid(), _dead_pid(), digest=digest))
    r = _cli("lab", "down", env={"XDG_RUNTIME_DIR": str(xdg)})
    assert (r.returncode, r.stdout, r.stderr) == (0, "no lab is up\n", "")
    assert not lab_dir.exists() and not statefile.exists()


# --- a real lab: up, exec in the caller's directory, down -----------------------------------------

EXDEV_PROBE = """\
import os, tempfile
fd, tmp = tempfile.mkstemp(dir=".")          # an absolute path, as mkstemp returns
os.close(fd)
os.replace(tmp, "relative.txt")              # a relative one: the same directory, the same mount
print(os.getcwd())
"""


def test_lab_up_exec_down_keep_to_their_own_lab(lab, tmp_path, xdg, victim):
    env = {"XDG_RUNTIME_DIR": str(xdg)}
    work = tmp_path / "work"
    work.mkdir()
    (work / "d.toml").write_text('[[target]]\nname = "good.test"\nonly = ["mx"]\n')
    up = _cli("lab", "up", "-q", env=env, timeout=180)
    assert up.returncode == 0, up.stderr
    statedir = xdg / "deliverck-lab"
    try:
        assert stat.S_IMODE(statedir.stat().st_mode) == 0o700
        st = (statedir / "state.json").stat()
        assert (stat.S_IMODE(st.st_mode), st.st_uid) == (0o600, os.geteuid())
        state = json.loads((statedir / "state.json").read_text())
        for p in (state["lab"], state["unshare"]):
            assert _proc_start(p["pid"]) == p["start"] and _cmdline(p["pid"]) == p["cmdline"]
        # Item 9: relative output paths inside `lab exec` (EXDEV before), in the caller's directory.
        r = _cli("lab", "exec", "--", sys.executable, "-c", EXDEV_PROBE, env=env, cwd=work)
        assert (r.returncode, r.stdout.strip(), r.stderr) == (0, str(work), "")
        assert (work / "relative.txt").exists()
        r = _cli("lab", "exec", "--", sys.executable, "-m", "deliverck", "audit", "-c", "d.toml",
                 "-o", "relative.prom", "--format", "prometheus", env=env, cwd=work)
        assert r.returncode == 0, r.stderr
        assert "deliverck_" in (work / "relative.prom").read_text()
        # A running lab whose state is changed to name a stranger's directory: nothing is signalled.
        good = (statedir / "state.json").read_text()
        forged = json.loads(good)
        forged["lab_dir"] = str(victim)
        (statedir / "state.json").write_text(json.dumps(forged))
        _one_error_line(_cli("lab", "down", env=env), "lab.cmdline is not the lab's process 1 for lab_dir")
        forged["lab"]["cmdline"][-2] = forged["unshare"]["cmdline"][-2] = str(victim)
        (statedir / "state.json").write_text(json.dumps(forged))
        _one_error_line(_cli("lab", "down", env=env), "nothing was signalled or removed")
        assert (victim / "precious").exists()
        assert all(_cmdline(p["pid"]) == p["cmdline"] for p in (state["lab"], state["unshare"]))
        (statedir / "state.json").write_text(good)
    finally:
        down = _cli("lab", "down", env=env)
    assert (down.returncode, down.stdout) == (0, "the lab is down\n"), down.stderr
    assert not Path(state["lab_dir"]).exists() and not (statedir / "state.json").exists()
    for p in (state["lab"], state["unshare"]):
        alive = Path(f"/proc/{p['pid']}/stat").exists()
        assert not alive or Path(f"/proc/{p['pid']}/stat").read_bytes().rsplit(b")", 1)[1].split()[0] == b"Z"
