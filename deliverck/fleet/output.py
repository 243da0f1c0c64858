"""Where the fleet's results go.

`deliverck audit`: atomic output files and standard output, written before its
state file.  `deliverck bulk`: the input checked before anything is written, and
the output file that is a run's memory (locked for the run, resumed, compacted at
the end)."""

from __future__ import annotations

import errno
import fcntl
import os
import stat
import sys
import tempfile
from pathlib import Path

from deliverck.errors import DeliverckError, UsageError
from deliverck.fleet import bulk
from deliverck.inputfile import ReadError, open_stream, read_limited, sync_directory
from deliverck.text import safe

# Outputs first, the state last (deliverck audit).
#
# With --changes-only the state file is the memory of what was already reported: it may
# only move on once the report has reached its reader.  So every output is written and
# flushed first (--output, then standard output); any failure there (a full disk, `mail`
# gone from the other end of the pipe) leaves the state as it was, and the next run reports
# the same changes again.  The state is written last; if that fails, the changes were
# delivered and will be reported once more: a duplicate mail, never a lost one.


class OutputError(DeliverckError):
    """An output could not be written: the run could not complete (exit 3)."""


def write_stdout(text: str, state: str | None = None) -> None:
    """TEXT on standard output, flushed (and on disk when standard output is a file); an
    OutputError naming the failure otherwise."""
    kept = f"; --state {state} was left as it was, so the next run reports the same changes" if state else ""
    stream = sys.stdout
    try:
        if stream is None:
            raise OSError(9, "standard output is closed")
        stream.write(text)
        stream.flush()
        fd = stream.fileno()
        if stat.S_ISREG(os.fstat(fd).st_mode):
            try:
                os.fsync(fd)                # `> report.txt` on a full disk fails here at the latest
            except OSError as e:
                if e.errno not in (errno.EINVAL, errno.ENOTSUP, errno.EOPNOTSUPP):
                    raise                   # (a file system without fsync is not a failure)
    except (OSError, ValueError) as e:
        if stream is not None:
            _silence_stdout()
        why = "broken pipe: the reader stopped reading" if isinstance(e, BrokenPipeError) else \
            (getattr(e, "strerror", None) or str(e))
        raise OutputError(f"cannot write the report to standard output ({why}){kept}") from None


def _silence_stdout() -> None:
    """After a failed write, what is left in sys.stdout's buffer would fail again when Python
    flushes it at exit (a second error, with a traceback-like "Exception ignored" text): point
    file descriptor 1 at the null device so that flush succeeds and goes nowhere."""
    try:
        null = os.open(os.devnull, os.O_WRONLY)
    except OSError:
        return
    try:
        os.dup2(null, 1)
    except OSError:
        pass
    finally:
        os.close(null)


def write_atomic(path: str | Path, text: str, what: str = "--output", state: str | None = None) -> None:
    """Write to a temporary file next to PATH, fsync, rename over PATH: readers see the old or the new file.

    A symbolic link is written through: the file it points to is replaced and the link stays
    (a link in /etc pointing into /var keeps working).  An existing file keeps its permission
    bits, and its owner and group where the caller may set them; a new one gets what the
    umask allows (never mkstemp's 0600, which would hide it from node_exporter).  Failures
    while writing (a full disk, an I/O error) are OutputError (exit 3): PATH is left as it was."""
    target = Path(os.path.realpath(path))
    directory = target.parent
    kept = f"; --state {state} was left as it was, so the next run reports the same changes" if state else ""
    if not directory.is_dir():
        raise UsageError(f"{what} {path}: the directory {directory} does not exist")
    try:
        old = os.stat(target)
    except FileNotFoundError:
        old = None
    except OSError as e:
        raise OutputError(f"cannot write {what} {path} ({e.strerror or e}){kept}") from None
    try:
        fd, tmp = tempfile.mkstemp(prefix=f".{target.name}.", suffix=".tmp", dir=directory)
    except OSError as e:
        raise OutputError(f"cannot write {what} {path}: cannot create a file in {directory} "
                          f"({e.strerror or e}){kept}") from None
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as f:
            f.write(text)
            f.flush()
            os.fsync(f.fileno())
            keep_mode(f.fileno(), old)
        os.replace(tmp, target)
    except BaseException as e:
        try:
            os.unlink(tmp)
        except OSError:
            pass
        if isinstance(e, OSError):
            raise OutputError(f"cannot write {what} {path} ({e.strerror or e}){kept}") from None
        raise
    sync_directory(directory)


def keep_mode(fd: int, old: os.stat_result | None) -> None:
    if old is None:
        umask = os.umask(0)
        os.umask(umask)
        os.fchmod(fd, 0o666 & ~umask)
        return
    try:
        os.fchown(fd, old.st_uid, old.st_gid)
    except OSError:
        try:
            os.fchown(fd, -1, old.st_gid)     # not root: keep the group at least, when ours
        except OSError:
            pass
    os.fchmod(fd, stat.S_IMODE(old.st_mode))


_WHAT = "give a file with one target per line, or - for standard input"


def open_input(path: str):
    """The input as a binary stream, after a look at its first bytes (bulk.looks_binary): bad
    input is said before any output file is touched.  A FIFO without a writer reads as empty
    (deliverck.inputfile) instead of blocking."""
    if path == "-":
        if sys.stdin is None:
            raise UsageError(f"standard input is closed: {_WHAT}")
        stream = sys.stdin.buffer
        shown = "standard input"
    else:
        if not path:
            raise UsageError(f"FILE is empty: {_WHAT}")
        try:
            stream = open_stream(path)
        except ReadError as e:
            raise UsageError(f"{path}: {e}: {_WHAT}") from None
        shown = path
    try:
        # Both streams are io.BufferedReader at run time (open_stream builds one; so is CPython's
        # stdin.buffer), which typeshed and open_stream's annotation call BinaryIO.
        why = bulk.looks_binary(stream.peek(bulk.SNIFF)[:bulk.SNIFF])  # type: ignore[union-attr]
    except OSError as e:
        raise UsageError(f"{shown}: cannot be read ({e.strerror or e}): {_WHAT}") from None
    if why:
        if stream is not sys.stdin.buffer:
            stream.close()
        raise UsageError(f"{shown}: {why}")
    return stream


class FdOut:
    """Lines to a file descriptor, each written whole with os.write (no buffer of Python's that
    would try again, and fail again, at exit).  A failure is an OutputError (exit 3)."""

    def __init__(self, fd: int, shown: str) -> None:
        self.fd = fd
        self.shown = shown
        self.lines = 0
        self.failed = False

    def _fail(self, e: OSError) -> None:
        self.failed = True
        why = "broken pipe: the reader stopped reading" if isinstance(e, BrokenPipeError) else (e.strerror or str(e))
        n = self.lines
        raise OutputError(f"cannot write {self.shown} ({why}) after {n} line{'s' if n != 1 else ''}"
                          f"{self.resume_hint()}") from None

    def resume_hint(self) -> str:
        return ""

    def write(self, text: str) -> int:
        if self.failed:
            raise OSError(5, "an earlier write failed")
        view = memoryview(text.encode("utf-8"))
        try:
            while view:
                view = view[os.write(self.fd, view):]
        except OSError as e:
            self._fail(e)
        self.lines += text.count("\n")
        return len(text)

    def flush(self) -> None:
        pass


def _holder(st: os.stat_result) -> str:
    """Who holds the lock on the file of ST: ' (pid N: command line)' from /proc/locks, where
    the kernel lists every flock(2) lock with the pid that took it; '' when it cannot be told.
    A lock dies with its process, so a run killed with kill -9 never blocks the next one."""
    try:
        text = read_limited("/proc/locks", 1 << 20)[0].decode("ascii", "replace")
    except ReadError:
        return ""
    want = (os.major(st.st_dev), os.minor(st.st_dev), st.st_ino)
    for line in text.splitlines():
        f = line.split()
        if len(f) < 6 or f[1] != "FLOCK" or f[2] == "->":
            continue
        try:
            major, minor, inode = f[5].split(":")
            key = (int(major, 16), int(minor, 16), int(inode))
            pid = int(f[4])
        except ValueError:
            continue
        if key != want or pid <= 0:
            continue
        try:
            cmd = read_limited(f"/proc/{pid}/cmdline", 4096)[0]
        except ReadError:
            return f" (pid {pid})"
        words = " ".join(w.decode("utf-8", "replace") for w in cmd.split(b"\0") if w)
        words = words if len(words) <= 160 else words[:157] + "..."
        return f" (pid {pid}: {safe(words)})" if words else f" (pid {pid})"
    return ""


class Output(FdOut):
    """--output: an earlier run's output (resumed), an empty file or a new one, opened and
    locked for the whole run (flock, exclusive, non-blocking: a second run on the same file
    stops at once with exit 2 and the pid of the first).  A symbolic link is written through.
    The file is changed only from the first line written: a run that writes no line leaves it
    as it was (and does not leave a new empty file behind)."""

    def __init__(self, path: str, retry: bool) -> None:
        self.path = path
        self.real = os.path.realpath(path)
        fd, self.created = self._open_locked()
        super().__init__(fd, f"--output {path}")
        try:
            head = os.pread(fd, 64, 0)
            if not bulk.is_bulk_output(head):
                raise UsageError(f"--output {path}: exists and is not a deliverck bulk output "
                                 f"({bulk.SCHEMA} lines): give a new file, or an earlier run's output to resume")
            with os.fdopen(os.dup(fd), "rb") as f:
                self.scan = bulk.scan_output(f)
        except OSError as e:
            os.close(fd)
            raise UsageError(f"--output {path}: cannot be read ({e.strerror or e})") from None
        except BaseException:
            os.close(fd)
            raise
        self.done = self.scan.done(retry)
        self.retried: set[str] = set()            # inputs whose retried line this run replaces
        self.started = False

    def _open_locked(self) -> tuple[int, bool]:
        flags = os.O_RDWR | os.O_APPEND | getattr(os, "O_CLOEXEC", 0)
        for _ in range(5):
            created = False
            try:
                fd = os.open(self.real, flags)
            except FileNotFoundError:
                try:
                    fd = os.open(self.real, flags | os.O_CREAT | os.O_EXCL, 0o666)
                    created = True
                except FileExistsError:
                    continue                      # another run created it just now: open that one
                except OSError as e:
                    raise UsageError(f"--output {self.path}: cannot be created ({e.strerror or e})") from None
            except OSError as e:
                raise UsageError(f"--output {self.path}: cannot be opened ({e.strerror or e})") from None
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                st = os.fstat(fd)
                os.close(fd)
                raise UsageError(f"--output {self.path}: another run is writing it{_holder(st)}: wait for it "
                                 "to end, or give another file") from None
            except OSError as e:
                os.close(fd)
                raise UsageError(f"--output {self.path}: cannot be locked ({e.strerror or e})") from None
            # A run that ended just now may have renamed a new file over the one we locked.
            try:
                same = os.path.samestat(os.fstat(fd), os.stat(self.real))
            except OSError:
                same = False
            if same:
                return fd, created
            os.close(fd)
        raise UsageError(f"--output {self.path}: keeps being replaced by another process: give another file")

    def resume_hint(self) -> str:
        return ": make room and run the same command again; it resumes where this run stopped"

    def items(self, items):
        """The items of the input, less those whose bad-line error is already in the file (a
        bad line stays bad: it is not written again at every resume); notes what is retried."""
        for item in items:
            if item.input in self.scan.pending:
                if item.config is None and self.scan.last.get(item.input) == "error":
                    continue
                self.retried.add(item.input)
            yield item

    def write(self, text: str) -> int:
        if not self.started:
            self.started = True
            if self.scan.size > self.scan.end:
                try:
                    os.ftruncate(self.fd, self.scan.end)      # the torn last line of a killed run
                except OSError as e:
                    self._fail(e)
        return super().write(text)

    def finish(self) -> None:
        """After a complete run: remove the lines that later lines superseded (retried targets),
        by writing the file anew next to it and renaming it over the old one, locked before
        the rename so that no other run gets in between."""
        drop = list(self.scan.superseded) + [self.scan.pending[k] for k in self.retried if k in self.scan.pending]
        if not self.lines or not drop:
            return
        directory = os.path.dirname(self.real)
        try:
            size = os.fstat(self.fd).st_size
            tfd, tmp = tempfile.mkstemp(prefix=f".{os.path.basename(self.real)}.", suffix=".tmp", dir=directory)
        except OSError as e:
            self._fail_compact(e)
        try:
            fcntl.flock(tfd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            bulk.copy_without(self.fd, tfd, size, drop)
            keep_mode(tfd, os.fstat(self.fd))
            os.fsync(tfd)
            os.replace(tmp, self.real)
        except OSError as e:
            os.close(tfd)
            try:
                os.unlink(tmp)
            except OSError:
                pass
            self._fail_compact(e)
        os.close(self.fd)                          # the old file and its lock; the new one is locked
        self.fd = tfd
        sync_directory(directory)

    def _fail_compact(self, e: OSError) -> None:
        self.failed = True
        raise OutputError(f"cannot rewrite --output {self.path} without the lines that were audited again "
                          f"({e.strerror or e}): every target is in it, and where one has two lines the last "
                          "one counts") from None

    def close(self) -> None:
        try:
            if self.lines and not self.failed:
                os.fsync(self.fd)
            elif self.created and not self.lines and os.fstat(self.fd).st_size == 0:
                os.unlink(self.real)              # still locked by us: nobody else has used it
        except OSError:
            pass
        finally:
            os.close(self.fd)


def not_the_input(file: str, output: str) -> None:
    """Appending results to the file being read would read them back as targets, without end."""
    try:
        out = os.stat(output)
    except OSError:
        return
    try:
        src = os.fstat(sys.stdin.fileno()) if file == "-" else os.stat(file)
    except (OSError, ValueError, AttributeError):
        return
    if os.path.samestat(src, out):
        shown = "standard input" if file == "-" else file
        raise UsageError(f"--output {output} is the input ({shown}): give another file for the results")
