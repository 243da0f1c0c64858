"""A command's own peak memory, for the tests and the bench that bound it.

Linux carries a process's peak RSS across fork and exec: a child of a grown
process reports at least its parent's peak, also for itself.  A small launcher
spawns the measured command, so the peak reported (by wait4) is the command's own.
"""

from __future__ import annotations

import subprocess
import sys
import tempfile

_LAUNCHER = """
import os, sys
pid = os.posix_spawn(sys.argv[2], sys.argv[2:], os.environ)
_, status, usage = os.wait4(pid, 0)
with open(sys.argv[1], "w") as f:
    f.write(str(usage.ru_maxrss))
sys.exit(os.waitstatus_to_exitcode(status))
"""


def run_measured(argv: list[str], **kw) -> tuple[subprocess.CompletedProcess, float]:
    """subprocess.run(argv, **kw) and the command's own peak RSS in MB (argv[0] must be a path)."""
    with tempfile.NamedTemporaryFile("r", prefix="deliverck-rss-") as rss:
        r = subprocess.run([sys.executable, "-c", _LAUNCHER, rss.name, *argv], **kw)
        text = rss.read().strip()
    return r, (int(text) / 1024 if text else 0.0)
