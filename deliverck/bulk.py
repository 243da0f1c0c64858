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
reads only the `input` field of the lines already written.
"""

from __future__ import annotations

import asyncio
import dataclasses
import hashlib
import json
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import IO, Iterable, Iterator

from deliverck.config import Config
from deliverck.errors import DeliverckError, UsageError
from deliverck.target import parse_target

SCHEMA = "deliverck.bulk/1"
MAX_LINE = 4096                    # bytes per input line; longer lines are errors, not targets
JSON_KEYS = {"target", "ips", "dkim_selectors", "helo", "sender"}
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
        raise UsageError(f"--shard {text!r}: give K/N with 1 <= K <= N <= {MAX_SHARDS}, e.g. --shard 2/8")
    return int(parts[0]), int(parts[1])


def _item(line_no: int, raw: str, base: Config) -> Item:
    from deliverck.cli import _dkim_selectors, _helo, _ips, _sender

    text = raw.strip()
    if not text.startswith("{"):
        try:
            return Item(line_no, text, dataclasses.replace(base, target=parse_target(text)))
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
        changes: dict = {"target": parse_target(target_text)}
        # The check command's validators: a bulk line is judged as the same flags would be.
        ips = data.get("ips", [])
        if not isinstance(ips, list) or not all(isinstance(a, str) for a in ips):
            raise UsageError('"ips" must be a list of IP addresses')
        if ips:
            changes["outbound_ips"] = _ips(ips, '"ips"', empty_ok=True)
        selectors = data.get("dkim_selectors", [])
        if not isinstance(selectors, list) or not all(isinstance(s, str) for s in selectors):
            raise UsageError('"dkim_selectors" must be a list of strings')
        if selectors:
            changes["dkim_selectors"] = _dkim_selectors(selectors, '"dkim_selectors"', empty_ok=True)
        for key, check in (("helo", _helo), ("sender", _sender)):
            if key in data:
                if not isinstance(data[key], str):
                    raise UsageError(f'"{key}" must be a string')
                changes[{"helo": "helo_name"}.get(key, key)] = check(data[key])
    except DeliverckError as e:
        return Item(line_no, target_text, error=str(e))
    return Item(line_no, target_text, dataclasses.replace(base, **changes))


def read_items(stream: IO[str], base: Config, shard: tuple[int, int] = (1, 1),
               done: set[str] | None = None) -> Iterator[Item]:
    """Lazily: the items of this shard not yet done."""
    k, n = shard
    for line_no, raw in enumerate(stream, 1):
        if len(raw) > MAX_LINE:
            if n == 1 or shard_of(str(line_no), n) == k:
                yield Item(line_no, raw[:80], error=f"line longer than {MAX_LINE} characters")
            continue
        text = raw.strip()
        if not text or text.startswith("#"):
            continue
        item = _item(line_no, raw, base)
        if n > 1 and shard_of(item.input, n) != k:
            continue
        if done is not None and item.input in done:
            continue
        yield item


def done_inputs(path: Path) -> set[str]:
    """Inputs already in an output file (resume).  A torn last line is ignored (and rewritten)."""
    done: set[str] = set()
    if not path.exists():
        return done
    with path.open("r", encoding="utf-8", errors="replace") as f:
        for raw in f:
            try:
                doc = json.loads(raw)
            except json.JSONDecodeError:
                continue
            if isinstance(doc, dict) and doc.get("schema") == SCHEMA and isinstance(doc.get("input"), str):
                done.add(doc["input"])
    return done


def trim_torn_line(path: Path) -> None:
    """A run killed mid-write leaves a last line without newline: drop it before appending."""
    if not path.exists() or path.stat().st_size == 0:
        return
    with path.open("rb+") as f:
        f.seek(0, 2)
        size = f.tell()
        f.seek(max(0, size - 1))
        if f.read(1) == b"\n":
            return
        pos = size
        step = 65536
        while pos > 0:
            start = max(0, pos - step)
            f.seek(start)
            chunk = f.read(pos - start)
            nl = chunk.rfind(b"\n")
            if nl >= 0:
                f.truncate(start + nl + 1)
                return
            pos = start
        f.truncate(0)


def result_line(item: Item, report=None, error: str = "") -> str:
    from deliverck.report.json import report_dict

    doc = {"schema": SCHEMA, "line": item.line, "input": item.input,
           "status": "ok" if report is not None else "error",
           "report": report_dict(report) if report is not None else None,
           "error": error or item.error}
    return json.dumps(doc, ensure_ascii=True, separators=(",", ":")) + "\n"


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


async def run_items(items: Iterable[Item], out: IO[str], concurrency: int,
                    progress: Progress | None = None, on_bad=None) -> dict[str, int]:
    """Audit every item with at most `concurrency` in flight; write each line as it completes."""
    from deliverck.runner import run_audit

    from deliverck.net.dns import SharedCache, shared_cache

    shared_cache.set(SharedCache())       # audits started below share definite DNS answers
    counts = {"pass": 0, "fail": 0, "incomplete": 0, "error": 0}
    sem = asyncio.Semaphore(concurrency)
    running: set[asyncio.Task] = set()

    async def one(item: Item) -> None:
        try:
            if item.config is None:
                line, verdict = result_line(item), None
                if on_bad:
                    on_bad(item)
            else:
                try:
                    report = await run_audit(item.config)
                    line, verdict = result_line(item, report), report.verdict.value
                except DeliverckError as e:
                    line, verdict = result_line(item, error=str(e)), None
                except Exception as e:      # one target's internal error must not end the run
                    line, verdict = result_line(item, error=f"internal error: {type(e).__name__}: {e}"), None
            out.write(line)
            out.flush()
            counts[verdict or "error"] += 1
            if progress is not None:
                progress.update(verdict)
        finally:
            sem.release()

    for item in items:
        await sem.acquire()
        task = asyncio.ensure_future(one(item))
        running.add(task)
        task.add_done_callback(running.discard)
    if running:
        await asyncio.gather(*running)
    return counts
