"""A full file system for a test: a tiny tmpfs in a mount namespace of the test's own.

`unshare -m` gives the command a private copy of the mount table (util-linux makes its
mounts private), so the tmpfs is seen by nothing else on the machine and disappears with the
command.  Used by the full-disk cases of issue 14 (items 5 and 8): real ENOSPC from the
kernel, never a device such as /dev/full as a path deliverck could rename over.
"""

from __future__ import annotations

import shlex
import shutil
import subprocess
import sys
from pathlib import Path

import pytest


def _why_not(tmp_path: Path) -> str:
    if not shutil.which("unshare"):
        return "unshare (util-linux) is not installed"
    probe = tmp_path / ".probe"
    probe.mkdir(exist_ok=True)
    r = subprocess.run(["unshare", "-m", "sh", "-c", f"mount -t tmpfs -o size=16k deliverck-test {probe}"],
                       capture_output=True, text=True, timeout=30)
    probe.rmdir()
    return "" if r.returncode == 0 else f"cannot mount a tmpfs in a mount namespace: {r.stderr.strip()}"


def on_a_full_fs(tmp_path: Path, setup: str, args: list[str], stdin: str = "/dev/null",
                 size: str = "64k", stdout: str = "") -> tuple[int, str, str, Path]:
    """Mount a SIZE tmpfs on tmp_path/full, run the shell line SETUP, fill what is left of the
    tmpfs (unless SETUP says `keep-room`), run `python -m deliverck ARGS` (its standard output
    to STDOUT, a path that may be on the tmpfs), and copy the tmpfs to tmp_path/after.
    (exit code, stdout unless STDOUT was given, stderr, after)."""
    why = _why_not(tmp_path)
    if why:
        pytest.skip(why)
    full, after = tmp_path / "full", tmp_path / "after"
    full.mkdir()
    cmd = shlex.join([sys.executable, "-m", "deliverck", *args])
    out = stdout or f"{tmp_path}/.stdout"
    fill = "" if "keep-room" in setup else f"dd if=/dev/zero of={full}/.filler bs=1k 2>/dev/null || true; "
    setup = setup.replace("keep-room", ":")
    script = (f"set -e; mount -t tmpfs -o size={size} deliverck-test {full}; {setup}; {fill}"
              f"set +e; {cmd} <{stdin} >{out} 2>{tmp_path}/.stderr; echo $? >{tmp_path}/.rc; "
              f"rm -f {full}/.filler; cp -a {full} {after}")
    r = subprocess.run(["unshare", "-m", "sh", "-c", script], capture_output=True, text=True, timeout=180)
    assert r.returncode == 0, r.stderr
    return (int((tmp_path / ".rc").read_text()), "" if stdout else (tmp_path / ".stdout").read_text(),
            (tmp_path / ".stderr").read_text(), after)
