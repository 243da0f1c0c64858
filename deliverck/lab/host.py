"""What this machine offers the lab: its tools and the namespaces unshare may create.

Kept apart from the package's __init__ so that the lab's parts (plan.py asks
whether Postfix can run) can ask it without importing the package that imports them.
"""

from __future__ import annotations

import os
import shutil
import subprocess

from deliverck.lab.errors import LabUnavailable

TOOLS = {"unbound": "unbound", "nsd": "nsd", "ip": "iproute2", "unshare": "util-linux",
         "nsenter": "util-linux", "mount": "mount"}
_NS_FLAGS = ["--pid", "--fork", "--kill-child=SIGTERM", "--mount-proc"]
_namespace_flags: list[str] | None = None


def find_tool(name: str) -> str | None:
    path = os.environ.get("PATH", os.defpath) + os.pathsep + "/usr/sbin:/sbin:/usr/bin:/bin"
    return shutil.which(name, path=path)


def _try_unshare(flags: list[str]) -> str | None:
    """None if `unshare FLAGS true` works, else its error."""
    try:
        r = subprocess.run([find_tool("unshare") or "unshare", *flags, "true"], capture_output=True, text=True, timeout=10)
    except (OSError, subprocess.TimeoutExpired) as e:
        return str(e)
    return None if r.returncode == 0 else (r.stderr.strip().splitlines() or [f"status {r.returncode}"])[-1]


def namespace_flags() -> list[str]:
    """unshare flags that work here: a user namespace when possible, else (as real root) none."""
    global _namespace_flags
    if _namespace_flags is not None:
        return _namespace_flags
    missing = [n for n in TOOLS if find_tool(n) is None]
    if missing:
        packages = " ".join(sorted({TOOLS[n] for n in missing} | {"unbound", "nsd", "iproute2"}))
        raise LabUnavailable(f"{', '.join(missing)} {'is' if len(missing) == 1 else 'are'} not installed: "
                             f"apt-get install {packages}")
    try:
        import aiosmtpd  # noqa: F401
    except ImportError:
        raise LabUnavailable("aiosmtpd is not installed (the lab's SMTP peers): pip install 'deliverck[lab]'") from None
    # Real root runs without a user namespace, so Postfix can drop privileges to its own user.
    if os.geteuid() == 0 and _try_unshare(["-nm", *_NS_FLAGS]) is None:
        _namespace_flags = ["-nm", *_NS_FLAGS]
        return _namespace_flags
    err = _try_unshare(["-rnm", *_NS_FLAGS])
    if err is None:
        _namespace_flags = ["-rnm", *_NS_FLAGS]
        return _namespace_flags
    raise LabUnavailable(f"the lab needs user and network namespaces (unshare -rn failed: {err}); "
                         "run as root or enable unprivileged user namespaces "
                         "(sysctl kernel.unprivileged_userns_clone=1 / user.max_user_namespaces)")


def preflight() -> str | None:
    """None if the lab can run here, else the one-line reason.  Starts nothing."""
    try:
        namespace_flags()
    except LabUnavailable as e:
        return str(e)
    return None
