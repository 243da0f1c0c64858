"""`deliverck bulk`: audit many targets, streaming one JSON line per target.

Input: one target per line (domain, host, address; `#` comments and blank
lines are skipped), or JSON lines `{"target": "example.com", "ips": [...],
"dkim_selectors": [...], "helo": "...", "sender": "..."}`; both kinds may be
mixed.  A line that cannot be used is reported (one JSON line with its error,
and on stderr) and the run goes on.

Output (schema `deliverck.bulk/1`, docs/bulk.md): one line per input target,
in completion order: {"schema", "line", "input", "status": "ok" | "error",
"report": <deliverck.report/1 document> | null, "error": "..."}.

Memory stays flat whatever the input size: the input is read lazily, at most
`concurrency` audits are in flight, each audit has its own DNS cache that dies
with it, and results are written (and flushed) as they complete.  Resuming
keeps, per input already in the output, only the outcome of its last line
(see scan_output).
"""

from __future__ import annotations

import asyncio
import hashlib
import json
import os
import sys
import time
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import BinaryIO, Protocol

from deliverck.config import Config
from deliverck.errors import DeliverckError, UsageError
from deliverck.options import BULK_KEYS, BULK_LINE, build_config
from deliverck.target import _show

SCHEMA = "deliverck.bulk/1"
MAX_LINE = 4096                    # bytes per input line; longer lines are errors, not targets
# A line over MAX_LINE is skipped up to its line break; an input with no line break in this
# many bytes (/dev/zero, a binary file) is not a list of targets and is not read further.
MAX_SKIP = 16 * 1024 * 1024
SNIFF = 8192                       # bytes looked at before anything is written (looks_binary)
JSON_KEYS = {"target", *BULK_KEYS}
MAX_SHARDS = 10000                 # machines sharing one list; more is a typo


@dataclass(frozen=True)
class Item:
    line: int
    input: str                     # the target text as given (the resume key)
    config: Config | None = None   # None: the line is bad
    error: str = ""


def shard_of(key: str, shards: int) -> int:
    """1-based shard of a target: stable across runs, machines and Python versions."""
    digest = hashlib.sha256(key.strip().lower().encode("utf-8", "replace")).digest()
    return int.from_bytes(digest[:8], "big") % shards + 1


def parse_shard(text: str | None) -> tuple[int, int]:
    if text is None:
        return (1, 1)
    parts = text.split("/")
    if len(parts) != 2 or not all(p.isascii() and p.isdigit() and len(p) <= 6 for p in parts) \
            or not 1 <= int(parts[0]) <= int(parts[1]) <= MAX_SHARDS:
        raise UsageError(f"--shard {_show(text)}: give K/N with 1 <= K <= N <= {MAX_SHARDS}, e.g. --shard 2/8")
    return int(parts[0]), int(parts[1])


def _item(line_no: int, raw: str, base: Config) -> Item:
    text = raw.strip()
    if not text.startswith("{"):
        try:
            return Item(line_no, text, build_config(text, {}, BULK_LINE, base=base))
        except DeliverckError as e:
            return Item(line_no, text, error=str(e))
    try:
        data = json.loads(text)
    except json.JSONDecodeError as e:
        return Item(line_no, text[:200], error=f"not valid JSON ({e.msg} at column {e.colno})")
    if not isinstance(data, dict) or not isinstance(data.get("target"), str):
        return Item(line_no, text[:200], error='a JSON line needs a "target" string')
    target_text = data["target"]
    unknown = set(data) - JSON_KEYS
    if unknown:
        return Item(line_no, target_text, error=f"unknown keys {sorted(unknown)} (known: {sorted(JSON_KEYS)})")
    try:
        values = _line_values(data)
        # The options table's validators: a bulk line is judged as the same flags would be.
        return Item(line_no, target_text, build_config(target_text, values, BULK_LINE, base=base))
    except DeliverckError as e:
        return Item(line_no, target_text, error=str(e))


def _line_values(data: dict) -> dict:
    """The options of a JSON line by Config field, after a check of their JSON types; an empty
    list keeps the flags' value."""
    values: dict[str, str | list[str]] = {}
    for key, option in BULK_KEYS.items():
        if key not in data:
            continue
        v = data[key]
        if option.kind == "list":
            if not isinstance(v, list) or not all(isinstance(x, str) for x in v):
                raise UsageError(f'"{key}" must be ' + ("a list of IP addresses" if key == "ips" else "a list of strings"))
            if v:
                values[option.name] = v
        else:
            if not isinstance(v, str):
                raise UsageError(f'"{key}" must be a string')
            values[option.name] = v
    return values


def looks_binary(head: bytes) -> str:
    """Why the first bytes of an input are not a list of targets ("" when they may be one):
    said once, before any output, instead of one error line per chunk of garbage.  The rule of
    explain's reader: a NUL byte, or more than 10% control characters, is binary data."""
    for magic, kind in ((b"\x1f\x8b", "gzip"), (b"BZh", "bzip2"), (b"\xfd7zXZ\x00", "xz"), (b"PK\x03\x04", "zip"),
                        (b"(\xb5/\xfd", "zstd")):
        if head.startswith(magic):
            return f"{kind}-compressed data: decompress it first (e.g. zcat FILE | deliverck bulk -)"
    if head[:2] in (b"\xff\xfe", b"\xfe\xff"):
        return "UTF-16 text: save it as UTF-8 (one target per line)"
    if b"\0" in head or sum(b < 32 and b not in (9, 10, 13) for b in head) * 10 > len(head):
        return "binary data, not a list of targets (one domain, host or address per line, UTF-8)"
    if len(head) >= SNIFF and b"\n" not in head:
        return f"no line break in its first {SNIFF} bytes: not a list of targets (one per line)"
    return ""


@dataclass
class ReadStats:
    """What read_items saw: `lines` that hold a target (or a bad one), blank and # lines aside."""

    lines: int = 0


def read_items(stream: BinaryIO, base: Config, shard: tuple[int, int] = (1, 1),
               done: set[str] | None = None, stats: ReadStats | None = None) -> Iterator[Item]:
    """Lazily: the items of this shard not yet done.  Lines are read with a bound
    (MAX_LINE), so a line without end costs MAX_SKIP bytes at most, never all the memory."""
    k, n = shard
    stats = stats if stats is not None else ReadStats()
    line_no = 0
    while True:
        raw = stream.readline(MAX_LINE + 2)
        if not raw:
            return
        line_no += 1
        if line_no == 1 and raw.startswith(b"\xef\xbb\xbf"):
            raw = raw[3:]                           # a UTF-8 byte order mark is not part of the target
        if len(raw.rstrip(b"\r\n")) > MAX_LINE:
            stats.lines += 1
            ended = raw.endswith(b"\n")
            skipped = 0
            while not ended and skipped < MAX_SKIP:
                more = stream.readline(1 << 16)
                if not more:
                    ended = True
                skipped += len(more)
                ended = ended or more.endswith(b"\n")
            if n == 1 or shard_of(str(line_no), n) == k:
                yield Item(line_no, raw[:80].decode("utf-8", "replace"),
                           error=f"line longer than {MAX_LINE} bytes")
            if not ended:
                yield Item(line_no, raw[:80].decode("utf-8", "replace"),
                           error=f"no line break within {MAX_SKIP // (1024 * 1024)} MiB: the rest of the input "
                                 "is not read (one target per line)")
                return
            continue
        try:
            text = raw.decode("utf-8")
        except UnicodeDecodeError as e:
            stats.lines += 1
            shown = raw.strip()[:80].decode("utf-8", "replace")
            if n == 1 or shard_of(shown, n) == k:
                yield Item(line_no, shown, error=f"not UTF-8 text (byte {e.start + 1} of the line): "
                                                 "save the list as UTF-8")
            continue
        stripped = text.strip()
        if not stripped or stripped.startswith("#"):
            continue
        stats.lines += 1
        item = _item(line_no, text, base)
        if n > 1 and shard_of(item.input, n) != k:
            continue
        if done is not None and item.input in done:
            continue
        yield item


# --- the output file: resume, retries, one writer -----------------------------------------
#
# An output file is the run's memory: a target whose line says pass or fail is done; a line
# with status "error" or verdict "incomplete" is tried again by the next run (unless
# --no-retry), and the new line supersedes it.  Lines are only ever appended while a run
# goes on (a kill -9 loses at most the line being written, which has no newline yet); the
# superseded lines are removed when a run that retried them ends, by writing the file anew
# and renaming it over the old one.  At any moment the file is a valid resume point, and
# the last line of an input is the one that counts.

OUTCOMES = ("pass", "fail", "incomplete", "error")
RETRIED = frozenset({"incomplete", "error"})
# A line of our own output holds one report (tens of KB; the fan-out caps keep the worst
# target far below this).  A longer "line" is not one of ours and is skipped, not read whole.
MAX_RESULT_LINE = 64 * 1024 * 1024


def is_bulk_output(head: bytes) -> bool:
    """An existing --output file may be appended to (resume) only when it is one: its first
    bytes (64 are enough) start as every line result_line writes.  Anything else (a target
    list given as -o by mistake) would have its last line trimmed and lines appended."""
    return not head or head.startswith(b'{"schema":"' + SCHEMA.encode() + b'"')


def outcome_of(doc: object) -> str | None:
    """pass, fail, incomplete or error for a line of our schema; None for anything else."""
    if not (isinstance(doc, dict) and doc.get("schema") == SCHEMA and isinstance(doc.get("input"), str)):
        return None
    report = doc.get("report")
    if doc.get("status") == "ok" and isinstance(report, dict) and report.get("verdict") in OUTCOMES[:3]:
        return report["verdict"]
    return "error"


@dataclass
class Scan:
    """What an existing output file holds, read before the run (and before any change to it)."""

    end: int = 0                                   # bytes up to the end of the last complete line
    size: int = 0
    last: dict[str, str] = field(default_factory=dict)                   # input -> outcome of its last line
    pending: dict[str, tuple[int, int]] = field(default_factory=dict)    # input -> its last line, if retried
    superseded: list[tuple[int, int]] = field(default_factory=list)      # retried lines a later line replaced

    def done(self, retry: bool = True) -> set[str]:
        """The inputs a run skips: with retry, those whose last line is a pass or a fail."""
        return {k for k, v in self.last.items() if not retry or v not in RETRIED}

    def counts(self, besides: set[str] = frozenset()) -> dict[str, int]:   # type: ignore[assignment]
        out = dict.fromkeys(OUTCOMES, 0)
        for k, v in self.last.items():
            if k not in besides:
                out[v] += 1
        return out


def scan_output(f: BinaryIO) -> Scan:
    """Read an output file from its start.  A last line without its newline is torn (a run
    was killed while writing it) even when it happens to be complete JSON: it is not counted,
    and it is cut off before the first new line is appended ("trim first, then count")."""
    scan = Scan()
    f.seek(0)
    pos = 0
    while True:
        raw = f.readline(MAX_RESULT_LINE + 1)
        if not raw:
            break
        start, pos = pos, pos + len(raw)
        if not raw.endswith(b"\n"):
            if len(raw) <= MAX_RESULT_LINE:
                break                              # torn: the end of the file
            while True:                            # not a line of ours: skip it, never hold it whole
                more = f.readline(1 << 20)
                pos += len(more)
                if not more or more.endswith(b"\n"):
                    break
            if more:
                scan.end = pos
            continue
        scan.end = pos
        try:
            doc = json.loads(raw)
        except (ValueError, RecursionError):
            continue                               # not ours; kept as it is
        outcome = outcome_of(doc)
        if outcome is None:
            continue
        key = doc["input"]
        earlier = scan.pending.pop(key, None)
        if earlier is not None:
            scan.superseded.append(earlier)
        if outcome in RETRIED:
            scan.pending[key] = (start, pos)
        scan.last[key] = outcome
    f.seek(0, 2)
    scan.size = f.tell()
    return scan


def done_inputs(path: Path, retry: bool = True) -> set[str]:
    """Inputs already settled in an output file (see Scan.done)."""
    if not path.exists():
        return set()
    with path.open("rb") as f:
        return scan_output(f).done(retry)


def trim_torn_line(path: Path) -> None:
    """A run killed mid-write leaves a last line without newline: drop it before appending."""
    if not path.exists():
        return
    with path.open("rb+") as f:
        scan = scan_output(f)
        if scan.size > scan.end:
            f.truncate(scan.end)


def copy_without(src: int, dst: int, size: int, drop: list[tuple[int, int]]) -> None:
    """Bytes 0..SIZE of file descriptor SRC to DST, except the byte ranges in DROP."""
    pos = 0
    for a, b in sorted(drop) + [(size, size)]:
        while pos < a:
            chunk = os.pread(src, min(1 << 20, a - pos), pos)
            if not chunk:
                raise OSError(5, "the file became shorter while it was copied")
            view = memoryview(chunk)
            while view:
                view = view[os.write(dst, view):]
            pos += len(chunk)
        pos = max(pos, b)


def result_line(item: Item, report=None, error: str = "") -> str:
    from deliverck.report.json import report_dict

    doc = {"schema": SCHEMA, "line": item.line, "input": item.input,
           "status": "ok" if report is not None else "error",
           "report": report_dict(report) if report is not None else None,
           "error": error or item.error}
    return json.dumps(doc, ensure_ascii=True, separators=(",", ":")) + "\n"


class LineSink(Protocol):
    """Where result lines go: a text file, an io.StringIO (a Dask worker's chunk) or output.FdOut,
    which writes each line whole with os.write and has no more of a file than this."""

    def write(self, text: str, /) -> object: ...

    def flush(self) -> None: ...


class VerdictSink(Protocol):
    """What hears of each finished target: Progress, or dask._Verdicts on a worker."""

    def update(self, verdict: str | None) -> None: ...


class Progress:
    """One status line on stderr, only when stderr is a terminal."""

    def __init__(self, enabled: bool, total: int | None = None) -> None:
        self.enabled = enabled
        self.total = total
        self.done = self.failed = self.errors = 0
        self.start = time.monotonic()
        self._last = 0.0

    def update(self, verdict: str | None) -> None:
        self.done += 1
        if verdict == "fail":
            self.failed += 1
        elif verdict is None:
            self.errors += 1
        now = time.monotonic()
        if self.enabled and (now - self._last > 0.2):
            self._last = now
            self._draw(now)

    def _draw(self, now: float) -> None:
        rate = self.done / max(now - self.start, 1e-6)
        total = f"/{self.total}" if self.total else ""
        sys.stderr.write(f"\r\x1b[Kdeliverck bulk: {self.done}{total} done, {self.failed} fail, "
                         f"{self.errors} error, {rate:.1f}/s")
        sys.stderr.flush()

    def close(self) -> None:
        if self.enabled:
            self._draw(time.monotonic())
            sys.stderr.write("\n")
            sys.stderr.flush()


async def audit_line(item: Item) -> tuple[str, str | None]:
    """One item's output line and verdict (None: an error line).  One target's internal error
    becomes its error line: it must not end the run."""
    from deliverck.runner import run_audit

    if item.config is None:
        return result_line(item), None
    try:
        report = await run_audit(item.config)
        return result_line(item, report), report.verdict.value
    except DeliverckError as e:
        return result_line(item, error=str(e)), None
    except Exception as e:
        return result_line(item, error=f"internal error: {type(e).__name__}: {e}"), None


def write_failure(e: BaseException) -> DeliverckError:
    """The one error a run raises when a line could not be written (the output stays resumable)."""
    if isinstance(e, DeliverckError):
        return e
    why = "broken pipe: the reader stopped reading" if isinstance(e, BrokenPipeError) else \
        (getattr(e, "strerror", None) or str(e))
    return DeliverckError(f"cannot write the results ({why})")


async def run_items(items: Iterable[Item], out: LineSink, concurrency: int,
                    progress: VerdictSink | None = None, on_bad=None) -> dict[str, int]:
    """Audit every item with at most `concurrency` in flight; write each line as it completes.

    When a line cannot be written (a full disk, a closed pipe), nothing more is started, the
    audits in flight are cancelled, and the error is raised once: every line written before
    is complete and the output can be resumed."""
    from deliverck.net.dns import SharedCache, shared_cache

    shared_cache.set(SharedCache())       # audits started below share definite DNS answers
    counts = {"pass": 0, "fail": 0, "incomplete": 0, "error": 0}
    sem = asyncio.Semaphore(concurrency)
    running: set[asyncio.Task] = set()
    failed: list[BaseException] = []

    async def one(item: Item) -> None:
        try:
            if item.config is None and on_bad:
                on_bad(item)
            line, verdict = await audit_line(item)
            if failed:
                return
            try:
                out.write(line)
                out.flush()
            except (OSError, ValueError, DeliverckError) as e:
                failed.append(e)
                return
            counts[verdict or "error"] += 1
            if progress is not None:
                progress.update(verdict)
        finally:
            sem.release()

    for item in items:
        await sem.acquire()
        if failed:
            sem.release()
            break
        task = asyncio.ensure_future(one(item))
        running.add(task)
        task.add_done_callback(running.discard)
    if failed:
        for task in running:
            task.cancel()
    if running:
        await asyncio.gather(*running, return_exceptions=bool(failed))
    if failed:
        raise write_failure(failed[0])
    return counts
