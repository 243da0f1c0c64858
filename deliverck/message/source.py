"""Reading messages users name: a file, standard input ("-"), an mbox, or a directory of them.

The bytes are kept exactly as stored: a DKIM signature covers them, and a converted line ending or
charset would make a good signature fail.  Files saved by mail clients usually end lines in LF
only; that is noted, not changed (dkimpy canonicalizes either form).  Memory stays bounded: an
mbox is split while it is read, one message at a time, and a message larger than
model.MAX_MESSAGE_BYTES is kept truncated with a note (a receiver would refuse it for its size,
and its DKIM body hash cannot match).

What no receiver could ever get is refused with one line (UsageError, exit 2): a missing or
unreadable path, an empty file, an archive or a document, text that does not start with a header
field, a directory without any message.  Anything a receiver can get (odd or 8-bit headers, bare
LF, a body without MIME) is read and left to the checks to judge.

mbox: RFC 4155 ("From " separator lines).  Writers quote body lines that start with "From " as
">From " (mboxo, mboxrd); one level of quoting is removed so that the body is the one that was
signed (mboxrd's rule), and the message notes it.
"""

from __future__ import annotations

import io
import os
import re
import sys
from collections.abc import Iterator
from typing import Any, BinaryIO

from deliverck.errors import UsageError
from deliverck.inputfile import ReadError, open_stream
from deliverck.message.model import MAX_MESSAGE_BYTES, Message
from deliverck.text import safe

MAX_MBOX_MESSAGES = 10_000          # messages taken from one mbox file
MAX_DIRECTORY_FILES = 10_000        # files looked at in one directory
_LINE = 1 << 16                     # one readline() call; longer lines arrive in pieces

_MBOX_FROM = re.compile(rb"^From \S+ +\w{3} ")                 # RFC 4155: "From sender date"
# RFC 5322 2.2 allows any printable name; real ones are letters, digits, '-' and '_' (and such a
# first line tells a message from a listing, a log line or JSON)
_FIELD = re.compile(rb"^[A-Za-z0-9][A-Za-z0-9_-]{0,75}[ \t]*:")
_MESSAGE_FIELD = re.compile(rb"^(?:From|To|Cc|Subject|Date|Message-ID|Received|Return-Path|MIME-Version|Content-Type|"
                            rb"Sender|Reply-To|DKIM-Signature|ARC-Seal|Delivered-To|Authentication-Results)[ \t]*:", re.I)
_NOT_HEADER = ("does not start with a message header (fields such as From:, Date: or Received: before a blank "
               "line), so it is not a message")
_QUOTED_FROM = re.compile(rb"^>(>*From )")
_NOT_MESSAGES = ((b"PK\x03\x04", "a ZIP archive or office document"), (b"%PDF", "a PDF document"),
                 (b"\x1f\x8b", "a gzip archive"), (b"BZh", "a bzip2 archive"), (b"7z\xbc\xaf'\x1c", "a 7-Zip archive"),
                 (b"\xfd7zXZ", "an xz archive"), (b"\xff\xfe", "UTF-16 text"), (b"\xfe\xff", "UTF-16 text"),
                 (b"\x89PNG", "a PNG image"), (b"\xff\xd8\xff", "a JPEG image"), (b"\x7fELF", "a program"))


def read_messages(path: str) -> Iterator[Message]:
    """The messages at PATH, one at a time.  UsageError (one line) for input that holds none."""
    if path == "-":
        yield from _read_stream(_stdin(), "-")
        return
    if os.path.isdir(path):
        yield from _read_directory(path)
        return
    yield from _read_stream(_open(path), path)


def _stdin() -> BinaryIO:
    if sys.stdin is None or sys.stdin.isatty():
        raise UsageError("standard input is a terminal: pipe a message into it (deliverck message - < mail.eml) "
                         "or give a file")
    return sys.stdin.buffer


def _open(path: str) -> BinaryIO:
    try:
        return open_stream(path)
    except ReadError as e:
        raise UsageError(f"{safe(path)} {e}: give an .eml file, an mbox, a directory of them or - (stdin)") from None


def _refusal(head: bytes) -> str:
    """Why HEAD cannot be the start of a message, or "" when it can."""
    if not head.strip():
        return "is empty"
    for magic, what in _NOT_MESSAGES:
        if head.startswith(magic):
            return f"is {what}, not a message"
    lines = head.lstrip(b"\r\n").removeprefix(b"\xef\xbb\xbf").split(b"\n")
    if _MBOX_FROM.match(lines[0]):
        lines = lines[1:]
    if len(lines) > 1 and len(head) == 8192:
        lines = lines[:-1]                  # the last one may be cut by the 8 kB head
    known = False
    for line in lines:
        if not line.strip(b"\r"):
            break
        if line[:1] in (b" ", b"\t"):
            continue
        if not _FIELD.match(line):
            if known:
                break           # a receiver reads the rest as body; the format check reports the line
            return "is binary data, not a message" if b"\0" in head else _NOT_HEADER
        known = known or bool(_MESSAGE_FIELD.match(line))
    return "" if known else _NOT_HEADER


class _Chain(io.RawIOBase):
    """HEAD (already read to judge the input), then the rest of the stream."""

    def __init__(self, head: bytes, rest: BinaryIO) -> None:
        super().__init__()
        self._head, self._rest = head, rest

    def readable(self) -> bool:
        return True

    def readinto(self, buffer: Any) -> int:
        if self._head:
            n = min(len(buffer), len(self._head))
            buffer[:n] = self._head[:n]
            self._head = self._head[n:]
            return n
        data = self._rest.read1(len(buffer)) if hasattr(self._rest, "read1") else self._rest.read(len(buffer))
        buffer[:len(data)] = data
        return len(data)

    def close(self) -> None:
        if not self.closed and self._rest is not sys.stdin.buffer:
            self._rest.close()
        super().close()


def _read_stream(stream: BinaryIO, label: str, head: bytes | None = None) -> Iterator[Message]:
    """A pipe may deliver its first bytes in small pieces: the head is read in full (up to 8 kB or
    the end) before the input is judged."""
    if head is None:
        head = stream.read(8192)
    with io.BufferedReader(_Chain(head, stream), _LINE) as joined:
        why = _refusal(head)
        if why:
            raise UsageError(f"{safe(label)} {why}: give an .eml file, an mbox or a directory of them")
        first = head.lstrip(b"\r\n").split(b"\n", 1)[0]
        if _MBOX_FROM.match(first):
            yield from _split_mbox(joined, label)
        else:
            yield _single(joined, label)


def _single(stream: BinaryIO, label: str) -> Message:
    data = stream.read(MAX_MESSAGE_BYTES + 1)
    truncated = len(data) > MAX_MESSAGE_BYTES
    return _message(data[:MAX_MESSAGE_BYTES], label, truncated, ())


def _message(raw: bytes, label: str, truncated: bool, notes: tuple[str, ...]) -> Message:
    out = list(notes)
    if raw.startswith(b"\xef\xbb\xbf"):
        out.append("the file starts with a UTF-8 byte order mark, which is not part of a message: it was left out")
        raw = raw[3:]
    out += line_ending_notes(raw)
    if truncated:
        out.append(f"the message is larger than {MAX_MESSAGE_BYTES // (1024 * 1024)} MiB: only the first "
                   f"{MAX_MESSAGE_BYTES} bytes were read (receivers refuse messages this large; DKIM body hashes "
                   "cannot match)")
    return Message(raw=raw, label=label, notes=tuple(out), truncated=truncated)


def line_ending_notes(raw: bytes) -> list[str]:
    """What the line endings say about how the message was stored (SMTP sends CRLF, RFC 5321 2.3.8)."""
    crlf = raw.count(b"\r\n")
    lf = raw.count(b"\n") - crlf
    if lf and not crlf:
        return ["lines end in LF only, as files usually store them: judged as if they ended in CRLF"]
    if lf and crlf:
        return [f"mixed line endings ({crlf} CRLF, {lf} bare LF): a relay may rewrite them, which breaks "
                "simple DKIM canonicalization"]
    return []


def _lines(stream: BinaryIO) -> Iterator[tuple[bytes, bool]]:
    """(piece, starts_line) for the stream, each piece at most _LINE bytes."""
    at_start = True
    while True:
        piece = stream.readline(_LINE)
        if not piece:
            return
        yield piece, at_start
        at_start = piece.endswith(b"\n")


def _split_mbox(stream: BinaryIO, label: str) -> Iterator[Message]:
    """One message per "From " line; each kept within MAX_MESSAGE_BYTES, the file read once."""
    parts: list[bytes] = []
    size, count, truncated, unquoted = 0, 0, False, 0
    pending: Message | None = None

    def finish() -> Message | None:
        raw = b"".join(parts)
        if raw.endswith(b"\n\n"):
            raw = raw[:-1]              # the blank line before the next separator is the mbox's
        elif raw.endswith(b"\r\n\r\n"):
            raw = raw[:-2]
        if not raw.strip():
            return None
        notes = (f"{unquoted} body line(s) quoted by the mbox as '>From ' were unquoted",) if unquoted else ()
        return _message(raw, f"{label}#{count}", truncated, notes)

    for piece, starts_line in _lines(stream):
        if starts_line and _MBOX_FROM.match(piece):
            if count:
                msg = finish()
                if msg is not None:
                    if pending is not None:
                        yield pending
                    pending = msg
            if count >= MAX_MBOX_MESSAGES:
                if pending is not None:
                    yield _noted(pending, f"the mbox holds more than {MAX_MBOX_MESSAGES} messages: the rest was "
                                          "not read")
                return
            parts, size, truncated, unquoted = [], 0, False, 0
            count += 1
            continue
        if starts_line and _QUOTED_FROM.match(piece):
            piece = piece[1:]
            unquoted += 1
        if truncated or size + len(piece) > MAX_MESSAGE_BYTES:
            if not truncated:
                parts.append(piece[:MAX_MESSAGE_BYTES - size])
                size = MAX_MESSAGE_BYTES
            truncated = True
            continue
        parts.append(piece)
        size += len(piece)
    msg = finish()
    if pending is not None:
        yield pending
    if msg is not None:
        yield msg


def _noted(message: Message, note: str) -> Message:
    return Message(raw=message.raw, label=message.label, notes=(*message.notes, note), truncated=message.truncated)


def _read_directory(path: str) -> Iterator[Message]:
    """Each regular file of the directory in name order (not its subdirectories); files that are
    not messages are skipped and named in a note on the next message."""
    try:
        names = sorted(e.name for e in os.scandir(path) if not e.name.startswith(".") and e.is_file())
    except OSError as e:
        raise UsageError(f"{safe(path)} cannot be read ({e.strerror or e}): give a readable directory") from None
    skipped: list[str] = []
    found = 0
    for name in names[:MAX_DIRECTORY_FILES]:
        full = os.path.join(path, name)
        try:
            stream = open_stream(full)
        except ReadError as e:
            skipped.append(f"{name} ({e})")
            continue
        head = stream.read(8192)
        why = _refusal(head)
        if why:
            stream.close()
            skipped.append(f"{name} ({why.removeprefix('is ').split(',')[0].split(' (')[0]})")
            continue
        for msg in _read_stream(stream, full, head):
            found += 1
            if skipped:
                msg = _noted(msg, "skipped, not messages: " + "; ".join(skipped[:20])
                             + (f" and {len(skipped) - 20} more" if len(skipped) > 20 else ""))
                skipped = []
            yield msg
    if not found:
        raise UsageError(f"{safe(path)} holds no message (no file in it starts with a header field): give a "
                         "directory of .eml files or mboxes")
