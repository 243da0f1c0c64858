"""`deliverck report history DIR`: the documents cron kept, read into the dashboard's observations.

DIR holds what cron writes: `deliverck TARGET --json > DIR/....json` (deliverck.report/1),
`deliverck audit --config ... --json -o DIR/....json` (deliverck.audit/1), the audit's
`--state` files (deliverck.state/1) and `deliverck bulk -o DIR/....jsonl` output (deliverck.bulk/1,
one target per line: the bulk summary).  Every `*.json` and `*.jsonl` file directly in DIR is read
(hidden files are skipped: write_atomic's temporary files start with a dot), each read bounded; a
single bulk output file can also be named instead of DIR.  A
file that no run could use is said in one line and left out; when no file at all can be used
the command stops with one line and exit 2 (UsageError), since there is nothing to draw.
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass

from deliverck.errors import UsageError
from deliverck.inputfile import ReadError, read_limited
from deliverck.report.dashboard import BadDocument, Observation, observations
from deliverck.text import safe

MAX_FILE_BYTES = 64 * 1024 * 1024       # as --baseline: a report is tens of KB, an audit of 1,000 targets tens of MB
MAX_FILES = 10000                       # a year of cron runs at one per hour; more is not a history directory
_HOW = "give the directory where cron keeps `deliverck ... --json` reports, audit JSON or --state files"


@dataclass
class History:
    observations: list[Observation]
    notes: list[str]                    # one line per file left out
    used: int                           # documents that gave observations


def _names(directory: str) -> list[str]:
    shown = safe(directory)
    if not directory:
        raise UsageError(f"DIR is empty: {_HOW}")
    try:
        with os.scandir(directory) as it:
            names = []
            for entry in it:
                if entry.name.startswith(".") or not entry.name.endswith((".json", ".jsonl")):
                    continue
                names.append(entry.name)
                if len(names) > MAX_FILES:
                    raise UsageError(f"{shown}: more than {MAX_FILES} JSON files: keep fewer runs, or move old "
                                     "ones to another directory")
    except FileNotFoundError:
        raise UsageError(f"{shown}: no such directory: {_HOW}") from None
    except NotADirectoryError:
        if directory.endswith(".jsonl"):
            return [""]                             # a bulk output file named directly
        raise UsageError(f"{shown}: not a directory: {_HOW}") from None
    except OSError as e:
        raise UsageError(f"{shown}: cannot be read ({e.strerror or e}): {_HOW}") from None
    if not names:
        raise UsageError(f"{shown}: no *.json file in it: {_HOW}")
    return sorted(names)


def _read(path: str) -> bytes:
    try:
        data, more = read_limited(path, MAX_FILE_BYTES)
    except ReadError as e:
        raise ValueError(str(e)) from None
    if more:
        raise ValueError(f"larger than {MAX_FILE_BYTES // (1024 * 1024)} MiB")
    return data


def _document(path: str, data: bytes | None = None) -> object:
    """The parsed JSON of PATH; ValueError with a short reason when it cannot be had."""
    if data is None:
        data = _read(path)
    try:
        return json.loads(data.decode("utf-8"))
    except UnicodeDecodeError:
        raise ValueError("not UTF-8 text") from None
    except json.JSONDecodeError as e:
        raise ValueError(f"not JSON (line {e.lineno}: {e.msg})") from None
    except RecursionError:
        raise ValueError("JSON nested too deeply") from None


def _lines(path: str, name: str, notes: list[str]) -> list[Observation]:
    """A bulk output file: one observation per line; a line that is not one of bulk's is noted."""
    out: list[Observation] = []
    for n, line in enumerate(_read(path).splitlines(), 1):
        if not line.strip():
            continue
        try:
            out += observations(_document(path, line), f"{name}:{n}")
        except (ValueError, BadDocument) as e:
            notes.append(safe(f"{path}: line {n}: {e}; left out"))
    if not out:
        raise ValueError("no line is a deliverck bulk result")
    return out


def read_history(directory: str) -> History:
    obs: list[Observation] = []
    notes: list[str] = []
    used = 0
    for name in _names(directory):
        path = os.path.join(directory, name) if name else directory
        try:
            found = _lines(path, name or os.path.basename(directory), notes) if path.endswith(".jsonl") \
                else observations(_document(path), name)
        except (ValueError, BadDocument) as e:
            notes.append(safe(f"{path}: {e}; left out"))
            continue
        used += 1
        obs += found
    if not obs:
        first = f" ({notes[0]})" if notes else ""
        what = "names no target" if used else "is a deliverck report, audit or state document"
        raise UsageError(f"{safe(directory)}: none of its JSON files {what}{first}: {_HOW}")
    return History(obs, notes, used)
