"""Reading a file the user named: bounded in size, never stuck on a FIFO.

A path on the command line can be anything: a directory, /dev/zero, a FIFO
nobody writes to, a pipe from process substitution (`--zone-file <(git show
main:zone)`, which is how CI jobs pass a proposed file), /proc/self/mem.  Every
reader of user files goes through here so that each of them

- refuses devices (/dev/zero, a disk, a terminal) and sockets at once, and reads
  at most `limit` bytes of anything else (saying whether there was more), so a
  runaway generator behind a pipe costs a bounded amount of memory and time;
- opens a FIFO without blocking: open(2) of a FIFO waits for a writer
  (fifo(7)), and a FIFO nobody writes to would hang the command forever.  Once
  open, a read with no writer returns end of file at once, so a FIFO without a
  writer reads as empty; a pipe with a writer is read like standard input;
- turns every OSError into one ReadError sentence the caller puts after its
  option name.

Nothing here interprets the bytes.
"""

from __future__ import annotations

import io
import os
import stat
import time
from typing import BinaryIO

# A FIFO whose writer is still being started (`producer > fifo & deliverck ... fifo`)
# may connect just after our open; before that a read says "end of file".
WRITER_GRACE = 1.0
CHUNK = 1 << 16


class ReadError(Exception):
    """Why a path cannot be read, in words that follow the option name: "is a directory"."""


def _open(path: str | os.PathLike) -> tuple[int, os.stat_result]:
    if not str(path):
        raise ReadError("is empty: give a file")
    try:
        fd = os.open(path, os.O_RDONLY | os.O_NONBLOCK | getattr(os, "O_CLOEXEC", 0))
    except FileNotFoundError:
        raise ReadError("no such file") from None
    except IsADirectoryError:
        raise ReadError("is a directory") from None
    except OSError as e:
        raise ReadError(f"cannot be read ({e.strerror or e})") from None
    try:
        st = os.fstat(fd)
        if stat.S_ISDIR(st.st_mode):
            raise ReadError("is a directory")
        if (stat.S_ISCHR(st.st_mode) or stat.S_ISBLK(st.st_mode) or stat.S_ISSOCK(st.st_mode)) \
                and not _is_dev_null(st):
            # /dev/zero, /dev/urandom, a disk, a terminal: never a file a user means to pass
            # (/dev/null is: "no input", and it reads as empty)
            raise ReadError("is a device, not a file")
        os.set_blocking(fd, True)        # reads below wait for a connected writer, as on stdin
    except ReadError:
        os.close(fd)
        raise
    except OSError as e:
        os.close(fd)
        raise ReadError(f"cannot be read ({e.strerror or e})") from None
    return fd, st


def _is_dev_null(st: os.stat_result) -> bool:
    try:
        null = os.stat(os.devnull)
    except OSError:
        return False
    return stat.S_ISCHR(st.st_mode) and st.st_rdev == null.st_rdev


def _first_read(fd: int, st: os.stat_result, size: int) -> bytes:
    """The first chunk; for a FIFO, end of file is believed only after WRITER_GRACE."""
    data = os.read(fd, size)
    if data or not stat.S_ISFIFO(st.st_mode):
        return data
    end = time.monotonic() + WRITER_GRACE
    while not data and time.monotonic() < end:
        time.sleep(0.05)
        data = os.read(fd, size)
    return data


def read_limited(path: str | os.PathLike, limit: int) -> tuple[bytes, bool]:
    """(at most `limit` bytes of the file, True when it holds more).  ReadError when it cannot be read."""
    fd, st = _open(path)
    chunks: list[bytes] = []
    total = 0
    try:
        data = _first_read(fd, st, min(CHUNK, limit + 1))
        while data:
            chunks.append(data)
            total += len(data)
            if total > limit:
                break
            data = os.read(fd, min(CHUNK, limit + 1 - total))
    except OSError as e:
        raise ReadError(f"cannot be read ({e.strerror or e})") from None
    finally:
        os.close(fd)
    blob = b"".join(chunks)
    return blob[:limit], total > limit


def open_stream(path: str | os.PathLike) -> BinaryIO:
    """A buffered binary stream of the file, for line-by-line readers (bulk input): peek()
    and readline(size) work.  ReadError when it cannot be opened or its first read fails."""
    fd, st = _open(path)
    try:
        first = _first_read(fd, st, CHUNK)
    except OSError as e:
        os.close(fd)
        raise ReadError(f"cannot be read ({e.strerror or e})") from None
    return io.BufferedReader(_Raw(first, fd), CHUNK)


class _Raw(io.RawIOBase):
    """The file descriptor, with its first chunk already read (see _first_read)."""

    def __init__(self, head: bytes, fd: int) -> None:
        super().__init__()
        self._head = head
        self._fd = fd

    def readable(self) -> bool:
        return True

    def readinto(self, buffer) -> int:
        if self._head:
            n = min(len(buffer), len(self._head))
            buffer[:n] = self._head[:n]
            self._head = self._head[n:]
            return n
        data = os.read(self._fd, len(buffer))
        buffer[:len(data)] = data
        return len(data)

    def close(self) -> None:
        if not self.closed:
            os.close(self._fd)
        super().close()


def regular_file(path: str | os.PathLike, limit: int) -> None:
    """For files read again later by path (--ca-file, --trust-anchor): a regular file of at
    most `limit` bytes.  stat(2) only, so a FIFO or a device is refused without being opened."""
    if not str(path):
        raise ReadError("is empty: give a file")
    try:
        st = os.stat(path)
    except FileNotFoundError:
        raise ReadError("no such file") from None
    except OSError as e:
        raise ReadError(f"cannot be read ({e.strerror or e})") from None
    if stat.S_ISDIR(st.st_mode):
        raise ReadError("is a directory")
    if not stat.S_ISREG(st.st_mode):
        raise ReadError("is not a regular file (a device, FIFO or socket): give a file")
    if st.st_size > limit:
        raise ReadError(f"is {st.st_size} bytes, larger than {limit // (1024 * 1024)} MiB")


def output_path(path: str | os.PathLike) -> None:
    """A path deliverck may create or replace: checked before any work, so that bad usage
    writes nothing.  An existing path must be a regular file (never a directory, and never
    a device: /dev/null renamed over would be replaced); its directory must exist and be
    writable."""
    p = os.fspath(path)
    if not p:
        raise ReadError("is empty: give a file")
    try:
        st = os.stat(p)
    except FileNotFoundError:
        st = None
    except OSError as e:
        raise ReadError(f"cannot be used ({e.strerror or e})") from None
    if st is not None:
        if stat.S_ISDIR(st.st_mode):
            raise ReadError("is a directory: give a file")
        if not stat.S_ISREG(st.st_mode):
            raise ReadError("is not a regular file (a device, FIFO or socket): give a file")
    directory = os.path.dirname(os.path.abspath(p))
    if not os.path.isdir(directory):
        raise ReadError(f"the directory {directory} does not exist")
    if not os.access(directory, os.W_OK | os.X_OK) or (st is not None and not os.access(p, os.W_OK)):
        raise ReadError("cannot be written (permission denied)")


def sync_directory(directory: str | os.PathLike) -> None:
    """fsync a directory after a rename in it, so the new name survives a crash (best effort)."""
    try:
        dfd = os.open(directory, os.O_RDONLY)
        try:
            os.fsync(dfd)
        finally:
            os.close(dfd)
    except OSError:
        pass
