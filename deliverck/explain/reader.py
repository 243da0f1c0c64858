"""Getting bytes in safely: size bound, binary and encoding sniffing, mbox splitting, charset decoding."""

from __future__ import annotations

import codecs
import os
import re

MAX_BYTES = 10 * 1024 * 1024        # read at most this much of a file; the rest is ignored (noted)
MAX_MESSAGES = 1000                 # messages taken from one mbox file
_DSN_FIELDS = re.compile(r"^(?:Reporting-MTA|Final-Recipient|Original-Recipient|Action|Status|Diagnostic-Code|Remote-MTA|"
                         r"Arrival-Date|Last-Attempt-Date|Received-From-MTA|X-Postfix-Sender|X-Postfix-Queue-ID|X-Display-Name|"
                         r"Will-Retry-Until|X-Supplementary-Info)\s*:", re.I)
_HEADER_LINE = re.compile(rb"^[!-9;-~]{1,60}:")
# Fields every message has one of (RFC 5322 section 3.6, RFC 2045 MIME-Version/Content-Type,
# RFC 5321 Return-Path/Received): a block of "name: value" lines without any is YAML or a
# config file, not a message.
_MESSAGE_FIELD = re.compile(rb"^(?:From|To|Cc|Subject|Date|Message-ID|Received|Return-Path|MIME-Version|Content-Type|"
                            rb"Sender|Reply-To|Delivered-To|In-Reply-To|References|X-Failed-Recipients|Auto-Submitted)[ \t]*:", re.I)

# Bytes that are not control characters for sniff(): deleting them leaves the control bytes to count.
_NOT_CTRL = bytes([9, 10, 12, 13, 27, *range(32, 256)])

_ALIASES = {
    "gb2312": "gb18030", "gbk": "gb18030", "gb_2312-80": "gb18030", "x-gbk": "gb18030", "euc-cn": "gb18030", "cp936": "gb18030",
    "big5": "big5hkscs", "ks_c_5601-1987": "cp949", "euc-kr": "cp949", "shift_jis": "cp932", "sjis": "cp932",
    "iso-8859-1": "cp1252", "latin1": "cp1252", "latin-1": "cp1252", "us-ascii": "cp1252", "ascii": "cp1252",
    "unicode-1-1-utf-7": "utf-7", "utf8": "utf-8", "x-unknown": "", "unknown-8bit": "", "default": "", "charset": "",
}


class InputError(Exception):
    """The input cannot be explained (binary, empty, unreadable): a one-line reason."""


def read_file(path: str, limit: int = MAX_BYTES) -> tuple[bytes, list[str]]:
    """At most `limit` bytes.  A FIFO nobody writes to reads as empty and /dev/zero stops at the
    limit (deliverck.inputfile): bad input gives one line, never a hang."""
    from deliverck.inputfile import ReadError, read_limited

    notes: list[str] = []
    try:
        data, more = read_limited(path, limit)
    except ReadError as e:
        if "directory" in str(e):
            raise InputError(f"{path} is a directory") from None
        raise InputError(f"cannot read {path}: {str(e).removeprefix('cannot be read ').strip('()')}") from None
    if more:
        try:
            size = os.stat(path).st_size
        except OSError:
            size = 0
        got = f"file is {size} bytes" if size > limit else f"file holds more than {limit} bytes"
        notes.append(f"{got}: only the first {limit} were read")
    return data, notes


def sniff(data: bytes) -> tuple[bytes, list[str]]:
    """Bytes ready for parsing (UTF-16/32 re-encoded to UTF-8); raises InputError for binary or empty input."""
    notes: list[str] = []
    if not data.strip():
        raise InputError("it is empty")
    for bom, enc in ((codecs.BOM_UTF32_LE, "utf-32"), (codecs.BOM_UTF32_BE, "utf-32"),
                     (codecs.BOM_UTF16_LE, "utf-16"), (codecs.BOM_UTF16_BE, "utf-16")):
        if data.startswith(bom):
            notes.append(f"decoded from {enc.upper()}")
            return data.decode(enc, errors="replace").encode("utf-8"), notes
    if data.startswith(codecs.BOM_UTF8):
        data = data[3:]
    head = data[:8192]
    if head[:4] in (b"PK\x03\x04", b"%PDF") or head[:2] == b"\x1f\x8b" or head[:3] == b"BZh" or head[:6] == b"7z\xbc\xaf'\x1c":
        raise InputError("it is an archive or document, not a message (extract the bounce first)")
    # UTF-16 without a BOM: every other byte NUL
    if len(head) >= 16 and head[1::2].count(0) > len(head) * 0.4 and head[0::2].count(0) < len(head) * 0.05:
        notes.append("decoded from UTF-16LE (no BOM)")
        return data.decode("utf-16-le", errors="replace").encode("utf-8"), notes
    nul = head.count(0)
    ctrl = len(head.translate(None, _NOT_CTRL))
    if nul > 0 or ctrl > len(head) * 0.1:
        raise InputError("it is binary data, not a message or text")
    return data, notes


def decode(data: bytes, declared: str = "") -> str:
    """Text from bytes whatever the declared charset says: UTF-8 if it is valid UTF-8, else the
    declared charset (CJK charsets read with their supersets), else cp1252; never raises."""
    cs = (declared or "").strip().strip('"').lower()
    cs = _ALIASES.get(cs, cs)
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError:
        pass
    if cs and cs != "utf-8":
        try:
            codecs.lookup(cs)
            return data.decode(cs, errors="replace")
        except (LookupError, ValueError):
            pass
    # undeclared 8-bit text: Chinese bounces are common, try GB18030 strictly first
    try:
        return data.decode("gb18030")
    except UnicodeDecodeError:
        return data.decode("cp1252", errors="replace")


def looks_like_message(data: bytes) -> bool:
    """An RFC 5322 message (or mbox) rather than pasted text."""
    lines = data[:4096].lstrip(b"\r\n").splitlines()[:40]
    if not lines:
        return False
    if lines[0].startswith(b"From ") and len(lines) > 1 and _HEADER_LINE.match(lines[1]):
        return True
    headers = known = 0
    for ln in lines:
        if not ln.strip():
            break
        if ln[:1] in (b" ", b"\t"):
            continue
        if not _HEADER_LINE.match(ln):
            return False
        if _DSN_FIELDS.match(ln.decode("latin-1")):
            return False   # pasted delivery-status fields, not a message
        headers += 1
        known += bool(_MESSAGE_FIELD.match(ln))
    return headers >= 2 and known >= 1


_MBOX_SEP_RE = re.compile(rb"(?:\r?\n)(?=From \S+ +\w{3} )")


def mbox_spans(data: bytes) -> list[tuple[int, int]]:
    """Where each message of an mbox file lies in data ("From " separator lines), as (start, end)
    offsets: worker processes read their own messages from the file by these (explain/pool.py).
    A single message is one span of the whole."""
    if not data.startswith(b"From "):
        return [(0, len(data))]
    pieces: list[tuple[int, int]] = []
    start = 0
    for m in _MBOX_SEP_RE.finditer(data):
        pieces.append((start, m.start()))
        start = m.end()
        if len(pieces) == MAX_MESSAGES:
            break
    else:
        pieces.append((start, len(data)))
    out = []
    for s, e in pieces:
        nl = data.find(b"\n", s, e)
        if data.startswith(b"From ", s, e) and nl >= 0:
            s = nl + 1
        if data[s:e].strip():
            out.append((s, e))
    return out or [(0, len(data))]


def split_mbox(data: bytes) -> list[bytes]:
    """The messages of an mbox file ("From " separator lines); a single message is a list of one."""
    return [data[s:e] for s, e in mbox_spans(data)]
