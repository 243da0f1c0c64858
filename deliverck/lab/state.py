"""The state of a lab kept up by `lab up`, and why `lab exec` and `lab down` may act on it.

`lab up` leaves a lab running; `lab exec` enters its namespaces and `lab down` signals its
processes and removes its directory.  What they know of the lab is in a state file, and
deliverck runs as root (cron, CI): whoever can write that file chooses which directory root
removes, which process root signals and whose namespaces root enters.  Issue 14: the file was
at /tmp/deliverck-lab-<uid>/deliverck-lab/state.json, which any local user could create first.

The rules (lab/README.md, "State of `lab up`"):

- The state directory is $XDG_RUNTIME_DIR/deliverck-lab, or without that variable
  <tmp>/deliverck-lab-<uid>/deliverck-lab (<tmp>: tempfile.gettempdir(), usually /tmp).
  Each directory deliverck creates there is created 0700.  Before use each level is checked
  (lstat, then opened with O_NOFOLLOW | O_DIRECTORY and checked again with fstat on the
  descriptor, same inode): a directory, not a symlink, owned by the caller, writable by
  nobody else (an older deliverck made them 0755: those are tightened to 0700).
  $XDG_RUNTIME_DIR itself must be the caller's and writable by nobody else (the XDG Base
  Directory specification makes it 0700).  Every later access goes through the descriptor
  (openat), so a rename in a parent cannot swap the directory after the check.
- The state file is read and written through that descriptor, O_NOFOLLOW: a regular file of
  the caller, at most MAX_STATE_BYTES, JSON with exactly the fields `lab up` writes.
- A process named by the state file is signalled (or its namespaces entered) only if it is
  the lab's: its start time (/proc/PID/stat field 22) and command line (/proc/PID/cmdline)
  equal what `lab up` recorded, and its real uid is the caller's.  The signal goes through a
  pidfd opened before the check, so a pid that is reused after the check is not hit.
- The lab directory named by the state file is removed only if it is the lab's: an absolute
  path of a directory (not a symlink) owned by the caller and writable by nobody else, whose
  manifest.json has the SHA-256 that `lab up` recorded.

Anything else stops the command with one line (UsageError, exit 2) that names what is wrong,
and nothing is signalled or removed.
"""

from __future__ import annotations

import errno
import fcntl
import hashlib
import json
import os
import signal
import stat
import tempfile
from dataclasses import dataclass
from pathlib import Path

from deliverck.errors import UsageError

SCHEMA = "deliverck.lab-state/1"
STATE_NAME = "state.json"
MAX_STATE_BYTES = 64 * 1024
MAX_MANIFEST_BYTES = 64 * 1024 * 1024
_PID_LIMIT = 1 << 22                     # PID_MAX_LIMIT on 64-bit Linux
_OPEN_DIR = os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW | os.O_CLOEXEC


class StateError(UsageError):
    """The state directory, file or what they name cannot be trusted: nothing was done."""


def _mode(st: os.stat_result) -> str:
    return oct(stat.S_IMODE(st.st_mode)).replace("0o", "0")


def _why_unsafe(st: os.stat_result, uid: int) -> str | None:
    """Why a directory's stat makes it unfit to hold (or be) the lab's, or None: what it holds
    can be trusted only if nobody but the caller could have put it there."""
    if stat.S_ISLNK(st.st_mode):
        return "is a symbolic link"
    if not stat.S_ISDIR(st.st_mode):
        return "is not a directory"
    if st.st_uid != uid:
        return f"belongs to uid {st.st_uid}, not to you (uid {uid})"
    if st.st_mode & 0o022:
        return f"is writable by others (mode {_mode(st)})"
    return None


def _open_checked(path: Path, parent_fd: int | None, create: bool, tighten: bool, what: str) -> int:
    """Open one directory level (relative to parent_fd when given), creating it 0700 if asked,
    and check it before and after the open.  Returns the descriptor."""
    uid = os.geteuid()
    name = path.name if parent_fd is not None else str(path)
    if create:
        try:
            os.mkdir(name, 0o700, dir_fd=parent_fd)
        except FileExistsError:
            pass
        except OSError as e:
            raise StateError(f"{what} {path}: cannot be created ({e.strerror or e})") from None
    try:
        before = os.lstat(name, dir_fd=parent_fd)
    except FileNotFoundError:
        raise StateError(f"{what} {path}: does not exist") from None
    except OSError as e:
        raise StateError(f"{what} {path}: cannot be used ({e.strerror or e})") from None
    remedy = ("set XDG_RUNTIME_DIR to a directory of your own (mode 0700)" if parent_fd is None else
              "remove it, or set XDG_RUNTIME_DIR to a directory of your own (mode 0700)")
    why = _why_unsafe(before, uid)
    if why:
        raise StateError(f"{what} {path} {why}: the lab's state is not kept there (nothing was done); {remedy}")
    try:
        fd = os.open(name, _OPEN_DIR, dir_fd=parent_fd)
    except OSError as e:
        raise StateError(f"{what} {path}: cannot be opened ({e.strerror or e})") from None
    try:
        after = os.fstat(fd)
        if (after.st_dev, after.st_ino) != (before.st_dev, before.st_ino):
            raise StateError(f"{what} {path} was replaced while being checked: try again")
        why = _why_unsafe(after, uid)
        if why:
            raise StateError(f"{what} {path} {why}: the lab's state is not kept there (nothing was done); {remedy}")
        if tighten and stat.S_IMODE(after.st_mode) != 0o700:
            os.fchmod(fd, 0o700)          # an older deliverck made it 0755; nobody else could write in it
    except BaseException:
        os.close(fd)
        raise
    return fd


@dataclass(frozen=True)
class Process:
    """A process of the lab as `lab up` saw it: pid, start time (clock ticks after boot), argv."""

    pid: int
    start: int
    cmdline: tuple[str, ...]
    ppid: int = 0             # read from /proc, not recorded

    def to_json(self) -> dict:
        return {"pid": self.pid, "start": self.start, "cmdline": list(self.cmdline)}


@dataclass(frozen=True)
class State:
    lab_dir: str
    manifest_sha256: str
    userns: bool
    lab: Process              # the lab's process 1 (python -m deliverck.lab.inside DIR --hold)
    unshare: Process          # unshare, its parent

    def to_json(self) -> str:
        return json.dumps({"schema": SCHEMA, "lab_dir": self.lab_dir, "manifest_sha256": self.manifest_sha256,
                           "userns": self.userns, "lab": self.lab.to_json(), "unshare": self.unshare.to_json()})


_GONE = "gone"


def identity(pid: int) -> Process | None:
    """The process `pid` as /proc shows it now; None when there is none, or only a zombie (dead,
    not yet reaped: nothing to signal).  A process of another real uid, or one /proc does not
    show, gets start -1 and no command line: it cannot be the caller's lab."""
    try:
        raw = Path(f"/proc/{pid}/stat").read_bytes()
        argv = Path(f"/proc/{pid}/cmdline").read_bytes()
        status = Path(f"/proc/{pid}/status").read_text(encoding="ascii", errors="replace")
    except (FileNotFoundError, ProcessLookupError):
        return None
    except OSError:
        return Process(pid, -1, ())
    # The command name (field 2) is in parentheses and may hold spaces and ')': split after the last ')'.
    fields = raw.rsplit(b")", 1)[-1].split()
    if fields[:1] in ([b"Z"], [b"X"]):
        return None
    try:
        start = int(fields[19])           # field 22 (starttime); fields[0] is field 3
    except (IndexError, ValueError):
        return Process(pid, -1, ())
    uid = next((line.split()[1] for line in status.splitlines() if line.startswith("Uid:")), "")
    if uid != str(os.getuid()):
        return Process(pid, -1, ())
    cmdline = tuple(a.decode("utf-8", "surrogateescape") for a in argv.split(b"\0")[:-1]) if argv else ()
    try:
        ppid = int(fields[1])             # field 4
    except (IndexError, ValueError):
        ppid = 0
    return Process(pid, start, cmdline, ppid)


def is_ours(recorded: Process) -> str:
    """"ours" (the recorded process, still running), "gone" (no process has that pid) or
    "foreign" (another process has it: a reused pid, or a state file that names a stranger)."""
    now = identity(recorded.pid)
    if now is None:
        return _GONE
    return "ours" if (now.start, now.cmdline) == (recorded.start, recorded.cmdline) else "foreign"


def lab_status(state: State, statefile: Path) -> str:
    """"up" (the lab's processes run) or "gone" (none of them does); StateError (exit 2, nothing
    done) when a recorded pid belongs to another process, or the lab's process 1 is not the
    child of the recorded unshare."""
    seen = {}
    for name, recorded in (("lab", state.lab), ("unshare", state.unshare)):
        now = identity(recorded.pid)
        seen[name] = now
        if now is not None and (now.start, now.cmdline) != (recorded.start, recorded.cmdline):
            raise StateError(f"the lab state file {statefile} names pid {recorded.pid}, which is not the lab's "
                             "process (it started at another time or runs another command): nothing was signalled "
                             f"or removed; if no lab is up, remove {statefile}")
    if seen["lab"] is not None and seen["unshare"] is not None and seen["lab"].ppid != state.unshare.pid:
        raise StateError(f"the lab state file {statefile} names pid {state.lab.pid}, which is not the child of "
                         f"unshare (pid {state.unshare.pid}): nothing was signalled or removed; if no lab is up, "
                         f"remove {statefile}")
    return "gone" if seen["lab"] is None and seen["unshare"] is None else "up"


def signal_process(recorded: Process, signum: int) -> bool:
    """Send `signum` to the recorded process if it is still the lab's (checked after a pidfd is
    opened, so a pid reused after the check cannot be hit).  False when it is not running."""
    pidfd = None
    if hasattr(os, "pidfd_open") and hasattr(signal, "pidfd_send_signal"):
        try:
            pidfd = os.pidfd_open(recorded.pid)
        except ProcessLookupError:
            return False
        except OSError:
            pidfd = None          # an old kernel: checked, then os.kill
    try:
        if is_ours(recorded) != "ours":
            return False
        try:
            if pidfd is not None:
                signal.pidfd_send_signal(pidfd, signum)
            else:
                os.kill(recorded.pid, signum)
        except ProcessLookupError:
            return False
        return True
    finally:
        if pidfd is not None:
            os.close(pidfd)


def _digest_of(dir_fd: int) -> str | None:
    try:
        fd = os.open("manifest.json", os.O_RDONLY | os.O_NOFOLLOW | os.O_CLOEXEC | os.O_NONBLOCK, dir_fd=dir_fd)
    except OSError:
        return None
    try:
        st = os.fstat(fd)
        if not stat.S_ISREG(st.st_mode) or st.st_size > MAX_MANIFEST_BYTES:
            return None
        h = hashlib.sha256()
        while True:
            chunk = os.read(fd, 1 << 16)
            if not chunk:
                break
            h.update(chunk)
        return h.hexdigest()
    finally:
        os.close(fd)


def manifest_digest(lab_dir: Path) -> str:
    fd = os.open(lab_dir, _OPEN_DIR)
    try:
        digest = _digest_of(fd)
    finally:
        os.close(fd)
    if digest is None:
        raise StateError(f"the lab directory {lab_dir} holds no readable manifest.json")
    return digest


def check_lab_dir(state: State, statefile: Path) -> bool:
    """True when the lab directory is the lab's (see the module docstring), False when it is no
    longer there; StateError when something else is at its path."""
    path = state.lab_dir
    try:
        before = os.lstat(path)
    except FileNotFoundError:
        return False
    except OSError as e:
        raise StateError(f"{statefile} names the lab directory {path}, which cannot be checked "
                         f"({e.strerror or e}): nothing was removed") from None
    why = _why_unsafe(before, os.geteuid())
    if why is None:
        try:
            fd = os.open(path, _OPEN_DIR)
        except OSError as e:
            why = f"cannot be opened ({e.strerror or e})"
        else:
            try:
                after = os.fstat(fd)
                if (after.st_dev, after.st_ino) != (before.st_dev, before.st_ino):
                    why = "was replaced while being checked"
                elif _digest_of(fd) != state.manifest_sha256:
                    why = "does not hold the manifest.json `lab up` wrote"
            finally:
                os.close(fd)
    if why:
        raise StateError(f"{statefile} names the lab directory {path}, which {why}: it is not the lab's, "
                         f"nothing was removed or signalled; if no lab is up, remove {statefile}")
    return True


def remove_lab_dir(state: State, statefile: Path) -> None:
    import shutil

    if check_lab_dir(state, statefile):
        # rmtree opens the top directory itself and refuses a symbolic link (fd-based walk on Linux).
        shutil.rmtree(state.lab_dir, ignore_errors=True)


def _process(d: object, what: str) -> Process:
    if not isinstance(d, dict) or set(d) != {"pid", "start", "cmdline"}:
        raise ValueError(f"{what} must hold pid, start and cmdline")
    pid, start, cmdline = d["pid"], d["start"], d["cmdline"]
    if isinstance(pid, bool) or not isinstance(pid, int) or not 1 < pid <= _PID_LIMIT:
        raise ValueError(f"{what}.pid is not a process id")
    if isinstance(start, bool) or not isinstance(start, int) or start < 0:
        raise ValueError(f"{what}.start is not a start time")
    if not isinstance(cmdline, list) or not cmdline or not all(isinstance(a, str) for a in cmdline):
        raise ValueError(f"{what}.cmdline is not a command line")
    return Process(pid, start, tuple(cmdline))


def parse(text: bytes) -> State:
    """The state, or ValueError saying which field is wrong (never echoing the file)."""
    try:
        d = json.loads(text.decode("utf-8"))
    except (UnicodeDecodeError, ValueError):
        raise ValueError("it is not JSON") from None
    if not isinstance(d, dict) or d.get("schema") != SCHEMA:
        raise ValueError(f"it is not a {SCHEMA} document (an older deliverck's, or not deliverck's)")
    if set(d) != {"schema", "lab_dir", "manifest_sha256", "userns", "lab", "unshare"}:
        raise ValueError("its fields are not those `lab up` writes")
    lab_dir = d["lab_dir"]
    if (not isinstance(lab_dir, str) or not os.path.isabs(lab_dir) or os.path.normpath(lab_dir) != lab_dir
            or lab_dir == "/" or "\0" in lab_dir):
        raise ValueError("lab_dir is not an absolute, normalised path")
    digest = d["manifest_sha256"]
    if not (isinstance(digest, str) and len(digest) == 64 and all(c in "0123456789abcdef" for c in digest)):
        raise ValueError("manifest_sha256 is not a SHA-256 in hex")
    if not isinstance(d["userns"], bool):
        raise ValueError("userns is not true or false")
    lab, unshare = _process(d["lab"], "lab"), _process(d["unshare"], "unshare")
    # What `lab up` starts (lab.unshare_argv): unshare FLAGS PYTHON -m deliverck.lab.inside LAB_DIR --hold.
    tail = ["-m", "deliverck.lab.inside", lab_dir, "--hold"]
    if list(lab.cmdline[1:]) != tail:
        raise ValueError("lab.cmdline is not the lab's process 1 for lab_dir")
    if os.path.basename(unshare.cmdline[0]) != "unshare" or list(unshare.cmdline[-len(lab.cmdline):]) != list(lab.cmdline):
        raise ValueError("unshare.cmdline is not the unshare that starts the lab")
    return State(lab_dir, digest, d["userns"], lab, unshare)


class StateDir:
    """The verified state directory, open (use as a context manager)."""

    def __init__(self, path: Path, fd: int) -> None:
        self.path = path
        self.fd = fd

    @property
    def file(self) -> Path:
        return self.path / STATE_NAME

    def __enter__(self) -> StateDir:
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    def close(self) -> None:
        if self.fd >= 0:
            os.close(self.fd)
            self.fd = -1

    def lock(self) -> None:
        """One `lab up`/`lab down` at a time (released when the directory is closed)."""
        fcntl.flock(self.fd, fcntl.LOCK_EX)

    def read(self) -> State | None:
        try:
            fd = os.open(STATE_NAME, os.O_RDONLY | os.O_NOFOLLOW | os.O_CLOEXEC | os.O_NONBLOCK, dir_fd=self.fd)
        except FileNotFoundError:
            return None
        except OSError as e:
            why = "is a symbolic link" if e.errno == errno.ELOOP else f"cannot be read ({e.strerror or e})"
            raise StateError(f"the lab state file {self.file} {why}: nothing was done; remove it") from None
        try:
            st = os.fstat(fd)
            problem = None
            if not stat.S_ISREG(st.st_mode):
                problem = "is not a regular file"
            elif st.st_uid != os.geteuid():
                problem = f"belongs to uid {st.st_uid}, not to you"
            elif st.st_size > MAX_STATE_BYTES:
                problem = f"is larger than {MAX_STATE_BYTES // 1024} KiB"
            if problem:
                raise StateError(f"the lab state file {self.file} {problem}: nothing was done; remove it")
            data = os.read(fd, MAX_STATE_BYTES + 1)
        finally:
            os.close(fd)
        try:
            return parse(data)
        except ValueError as e:
            raise StateError(f"the lab state file {self.file}: {e}: nothing was done; if no lab is up, "
                             "remove it") from None

    def write(self, state: State) -> None:
        tmp = f".{STATE_NAME}.{os.getpid()}.tmp"
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | os.O_CLOEXEC, 0o600,
                     dir_fd=self.fd)
        try:
            with os.fdopen(fd, "w", encoding="utf-8") as f:
                f.write(state.to_json())
                f.flush()
                os.fsync(f.fileno())
            os.rename(tmp, STATE_NAME, src_dir_fd=self.fd, dst_dir_fd=self.fd)
        except BaseException:
            try:
                os.unlink(tmp, dir_fd=self.fd)
            except OSError:
                pass
            raise

    def remove(self) -> None:
        try:
            os.unlink(STATE_NAME, dir_fd=self.fd)
        except FileNotFoundError:
            pass


def state_dir_path() -> Path:
    runtime = os.environ.get("XDG_RUNTIME_DIR")
    if runtime:
        return Path(runtime) / "deliverck-lab"
    return Path(tempfile.gettempdir()) / f"deliverck-lab-{os.getuid()}" / "deliverck-lab"


def open_state_dir(create: bool) -> StateDir | None:
    """The verified state directory (created 0700 when `create`); None when it does not exist
    and `create` is false.  StateError (exit 2) when it or its parent cannot be trusted."""
    path = state_dir_path()
    runtime = os.environ.get("XDG_RUNTIME_DIR")
    parent = path.parent
    if runtime:
        if not os.path.isabs(runtime):
            raise StateError(f"$XDG_RUNTIME_DIR {runtime!r} is not an absolute path: set it to your runtime "
                             "directory (e.g. /run/user/UID) or unset it")
        parent_fd = _open_checked(parent, None, create=False, tighten=False, what="$XDG_RUNTIME_DIR")
    else:
        try:
            tmp_fd = os.open(parent.parent, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
        except OSError as e:
            raise StateError(f"the temporary directory {parent.parent} cannot be used ({e.strerror or e}): "
                             "set XDG_RUNTIME_DIR to a directory of your own") from None
        try:
            if not create and not _exists(parent.name, tmp_fd):
                return None
            parent_fd = _open_checked(parent, tmp_fd, create=create, tighten=True, what="the lab state directory")
        finally:
            os.close(tmp_fd)
    try:
        if not create and not _exists(path.name, parent_fd):
            return None
        fd = _open_checked(path, parent_fd, create=create, tighten=True, what="the lab state directory")
    finally:
        os.close(parent_fd)
    return StateDir(path, fd)


def _exists(name: str, dir_fd: int) -> bool:
    try:
        os.lstat(name, dir_fd=dir_fd)
    except FileNotFoundError:
        return False
    return True
