"""The hermetic lab: a small mail internet in a network namespace.

`run(command)` builds it (NSD, unbound, misbehaving DNS servers, SMTP peers, all
on documentation addresses on the namespace's `lo`), runs the command inside
with /etc/resolv.conf pointing at the lab resolver, and tears it all down.
Nothing inside can reach any other network: the namespace has only `lo`.
"""

from __future__ import annotations

import ctypes
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Sequence
from pathlib import Path

from deliverck.lab.errors import LabUnavailable
from deliverck.lab.host import find_tool, namespace_flags, preflight

__all__ = ["LabUnavailable", "run", "preflight", "unshare_argv", "command_env"]

# Block lists that exist only in the lab (their zones are in zones/): handed to commands
# through $DELIVERCK_DNSBL_LISTS (command_env), never part of the shipped lists.
DNSBL_LISTS = Path(__file__).parent / "dnsbl-lists.toml"


def unshare_argv(lab_dir: Path, tail: list[str]) -> list[str]:
    return [find_tool("unshare") or "unshare", *namespace_flags(), sys.executable, "-m", "deliverck.lab.inside",
            str(lab_dir), *tail]


def make_lab_dir(zone_dirs: Sequence[Path] = (), dns_latency_ms: int = 0) -> tuple[Path, object]:
    from deliverck.lab import plan
    if dns_latency_ms < 0:
        raise LabUnavailable(f"dns_latency_ms must be 0 or more, not {dns_latency_ms}")
    lab_dir = Path(tempfile.mkdtemp(prefix="deliverck-lab-"))
    try:
        manifest = plan.prepare(lab_dir, [Path(z) for z in zone_dirs], dns_latency_ms)
    except BaseException:
        shutil.rmtree(lab_dir, ignore_errors=True)
        raise
    return lab_dir, manifest


def command_env(manifest_path: Path, base: dict | None = None) -> dict[str, str]:
    """The environment of a command run in the lab (`lab run`, `lab exec`).

    $DELIVERCK_LAB names the manifest; the lab's private CA and its DNS root's trust
    anchor become deliverck's defaults for --ca-file and --trust-anchor, so that
    `deliverck lab run -- deliverck good.test` judges as the tests do.  A lab always
    replaces what an outer environment (or an outer lab) set.  The lab's fixture block
    lists (DNSBL_LISTS) join $DELIVERCK_DNSBL_LISTS in front of the files already named
    there: those are the caller's own lists (the bench's), and the lab serves the zones.
    """
    from deliverck.lab.manifest import ENV, from_json
    from deliverck.options import CA_FILE_ENV, TRUST_ANCHOR_ENV
    from deliverck.records.dnsbl import EXTRA_LISTS_ENV, extra_files

    manifest = from_json(Path(manifest_path).read_text(encoding="utf-8"))
    env = dict(os.environ if base is None else base)
    env[ENV] = str(manifest_path)
    for var, value in ((CA_FILE_ENV, manifest.ca_file), (TRUST_ANCHOR_ENV, manifest.trust_anchor)):
        if value:
            env[var] = str(value)
        else:
            env.pop(var, None)
    lists = extra_files(os.pathsep.join([str(DNSBL_LISTS), env.get(EXTRA_LISTS_ENV, "")]))
    env[EXTRA_LISTS_ENV] = os.pathsep.join(lists)
    return env


def describe(manifest) -> str:
    """What a lab starts, in one line (the progress line of `lab run` and `lab up`)."""
    peers = [p for s in manifest.scenarios for p in s.smtp]
    postfix = sum(1 for p in peers if p.behaviour == "postfix") if manifest.postfix else 0
    peers = [p for p in peers if p.behaviour != "postfix" or manifest.postfix]
    kdcs = sum(len(s.kdcs) for s in manifest.scenarios)
    parts = [f"DNS ({len(manifest.zones)} zones{', signed' if manifest.dnssec else ''})", "a validating resolver",
             f"{len(peers) - postfix} SMTP peers"]
    if postfix:
        parts.append(f"{postfix} Postfix")
    if kdcs:
        parts.append(f"{kdcs} KDCs")
    return ", ".join(parts)


def say(message: str) -> None:
    sys.stderr.write(f"lab: {message}\n")
    sys.stderr.flush()


# Runs inside the lab just before the command: says how long the start took, then
# becomes the command (exec: same process, same signals).  Only the standard library
# (python -S): it adds milliseconds, not an import of deliverck.
_READY = """\
import os, sys, time
lab_dir, t0, argv = sys.argv[1], float(sys.argv[2]), sys.argv[3:]
sys.stderr.write(f"lab: ready in {time.time() - t0:.1f} s\\n")
sys.stderr.flush()
try:
    os.execvp(argv[0], argv)
except OSError as e:
    with open(os.path.join(lab_dir, "error"), "w", encoding="utf-8") as f:
        f.write(f"cannot run {argv[0]!r} inside the lab: {e.strerror}\\n")
    sys.exit(125)
"""


def inner_pid(unshare_pid: int) -> int | None:
    """The lab's process 1 as seen from outside (unshare --fork's only child)."""
    try:
        children = Path(f"/proc/{unshare_pid}/task/{unshare_pid}/children").read_text().split()
    except OSError:
        return None
    return int(children[0]) if children else None


def _die_with_parent() -> None:
    """In unshare, before exec: if we die, unshare is killed, and --kill-child stops the lab."""
    try:
        ctypes.CDLL(None, use_errno=True).prctl(1, signal.SIGKILL)    # PR_SET_PDEATHSIG
    except (OSError, AttributeError):
        pass


def _stop(proc: subprocess.Popen, signum: int = signal.SIGTERM) -> None:
    """Ask the lab's process 1 to stop (unshare itself ignores SIGTERM)."""
    pid = inner_pid(proc.pid)
    try:
        if pid is not None:
            os.kill(pid, signum)
        else:
            proc.kill()
    except ProcessLookupError:
        pass


def start_error(lab_dir: Path) -> str | None:
    try:
        return (lab_dir / "error").read_text(encoding="utf-8").strip() or "the lab failed to start"
    except FileNotFoundError:
        return None


def run(command: list[str], *, zone_dirs: Sequence[Path] = (), dns_latency_ms: int = 0,
        progress: bool = False) -> int:
    """Run `command` inside a fresh lab and return its exit status.

    stdin/stdout/stderr and cwd are the caller's; so is the environment, plus
    $DELIVERCK_LAB (the manifest path) and the lab's CA and trust anchor
    (command_env).  progress: short lines on stderr while the lab starts (it
    takes seconds).  Raises LabUnavailable if the lab cannot start; the lab
    directory (with the server logs) is then kept.
    """
    if not command:
        raise LabUnavailable("no command given to run inside the lab")
    namespace_flags()
    t0 = time.time()
    if progress:
        say("preparing zones, DNSSEC keys, certificates and server configurations ...")
    lab_dir, manifest = make_lab_dir(zone_dirs, dns_latency_ms)
    env = command_env(lab_dir / "manifest.json")
    keep = False
    if progress:
        say(f"starting {describe(manifest)} ...")
        command = [sys.executable, "-S", "-c", _READY, str(lab_dir), repr(t0), *command]
    try:
        proc = subprocess.Popen(unshare_argv(lab_dir, ["--", *command]), env=env, preexec_fn=_die_with_parent)
        previous = {}
        if threading.current_thread() is threading.main_thread():
            for sig in (signal.SIGTERM, signal.SIGHUP):
                previous[sig] = signal.signal(sig, lambda signum, _f: _stop(proc, signum))
        try:
            status = proc.wait()
        except KeyboardInterrupt:       # the command got the terminal's SIGINT too: let it finish
            try:
                proc.wait(5)
            except subprocess.TimeoutExpired:
                _stop(proc)
                proc.wait()
            raise
        finally:
            for sig, handler in previous.items():
                signal.signal(sig, handler)
        error = start_error(lab_dir)
        if error is not None:
            keep = True
            raise LabUnavailable(error + f" (lab files kept in {lab_dir})")
        return status if status >= 0 else 128 - status
    finally:
        if not keep:
            shutil.rmtree(lab_dir, ignore_errors=True)
