"""Bundled data sets (public suffix list, NDR catalog, rules, block lists) loaded once, fast (issue 16).

Parsing them from text costs 0.1-0.2 s of CPU per process: the public suffix list
alone takes ~0.1 s to build (every rule is IDNA-encoded), the catalog's TOML ~0.1 s.
That is most of the fixed cost of one audit, and the suffix list used to be built
inside the event loop, in the middle of the first DNS round trips.

So each data set is parsed once and its *plain data* (dicts, lists, strings,
numbers: what tomllib returns, or the suffix rules) is kept in the user's cache
directory as `marshal`, which loads ~100x faster than the text parses.  The rules
of that cache:

- Never trusted across versions: a file's name and its first element hold a
  SHA-256 of the source bytes, deliverck's version and Python's (marshal's format
  is Python's), so any change of either is a miss, never stale data.
- Plain data only: marshal cannot run code on load the way pickle can; even so a
  file is read only when this user owns it and its directory, neither is writable
  by group or others, and it is not a symlink (a cache another user can write is
  a place to plant input).  Anything else is a miss and the text is parsed.
- The cache is an optimisation: a cache directory that cannot be created or
  written (read-only home, no HOME) costs the parse, never an error.

The directory is $XDG_CACHE_HOME/deliverck (XDG Base Directory spec), else
~/.cache/deliverck, created 0700; DELIVERCK_CACHE_DIR overrides it and an empty
value turns the cache off.
"""

from __future__ import annotations

import contextlib
import hashlib
import marshal
import os
import stat
import sys
import tempfile
import threading
from collections.abc import Callable
from pathlib import Path
from typing import Any

from deliverck import __version__

CACHE_ENV = "DELIVERCK_CACHE_DIR"
MAX_BYTES = 32 * 1024 * 1024        # a read bound; the largest set is well under 1 MB
_SUFFIX = ".marshal"


def cache_dir() -> Path | None:
    """Where cached data lives for this user, or None when caching is off."""
    override = os.environ.get(CACHE_ENV)
    if override is not None:
        return Path(override) if override.strip() else None
    base = os.environ.get("XDG_CACHE_HOME", "").strip()
    if base and os.path.isabs(base):
        return Path(base) / "deliverck"
    home = os.environ.get("HOME", "").strip()
    return Path(home) / ".cache" / "deliverck" if home else None


def _private(st: os.stat_result) -> bool:
    """Owned by us and writable by nobody else: the only files and directories we read back."""
    return st.st_uid == os.geteuid() and not st.st_mode & (stat.S_IWGRP | stat.S_IWOTH)


def _key(name: str, source: bytes) -> str:
    h = hashlib.sha256()
    for part in (name, __version__, sys.version, str(marshal.version)):
        h.update(part.encode() + b"\0")
    h.update(source)
    return h.hexdigest()


def _read(path: Path, key: str) -> tuple[bool, Any]:
    try:
        if not _private(os.lstat(path.parent)) or not stat.S_ISDIR(os.lstat(path.parent).st_mode):
            return False, None
        fd = os.open(path, os.O_RDONLY | getattr(os, "O_NOFOLLOW", 0))
    except OSError:
        return False, None
    with os.fdopen(fd, "rb") as f:
        st = os.fstat(f.fileno())
        if not stat.S_ISREG(st.st_mode) or not _private(st) or st.st_size > MAX_BYTES:
            return False, None
        raw = f.read(MAX_BYTES + 1)
    try:
        stored = marshal.loads(raw)
    except (EOFError, ValueError, TypeError):
        return False, None
    if not (isinstance(stored, tuple) and len(stored) == 2 and stored[0] == key):
        return False, None
    return True, stored[1]


def _write(path: Path, key: str, data: Any) -> None:
    try:
        blob = marshal.dumps((key, data))
    except ValueError:                   # a type marshal does not keep (e.g. a TOML date): no cache
        return
    with contextlib.suppress(OSError):
        path.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
        if not _private(os.lstat(path.parent)):
            return
        fd, tmp = tempfile.mkstemp(prefix=".tmp-", dir=path.parent)     # created 0600
        try:
            with os.fdopen(fd, "wb") as f:
                f.write(blob)
            os.replace(tmp, path)
        except OSError:
            os.unlink(tmp)
            return
        name = path.name[:-len(_SUFFIX) - 33]
        for old in path.parent.glob(f"{name}-{'?' * 32}{_SUFFIX}"):
            if old != path:                  # an earlier version's or source's copy of this data set
                with contextlib.suppress(OSError):
                    old.unlink()


def load(name: str, source: bytes, parse: Callable[[bytes], Any]) -> Any:
    """parse(source), or the plain data it returned the last time it saw these exact bytes.

    `name` is a short file-name-safe id of the data set; `parse` must return plain data only
    (what marshal keeps: dict, list, tuple, str, int, float, bool, None, bytes, frozenset)."""
    where = cache_dir()
    key = _key(name, source)
    path = where / f"{name}-{key[:32]}{_SUFFIX}" if where is not None else None
    if path is not None:
        hit, data = _read(path, key)
        if hit:
            return data
    data = parse(source)
    if path is not None:
        _write(path, key, data)
    return data


# The public suffix list, shared by target.org_domain, net.dns.public_suffix and net.tls: one
# object per process, built under a lock so that the preload thread (runner.run_audit) and a
# caller on the event loop never build it twice.
_lock = threading.Lock()
_psl: Any = None
_icann_tlds: frozenset[str] | None = None


def _psl_rules(source: bytes) -> tuple[tuple[str, ...], tuple[str, ...]]:
    """Every rule as publicsuffixlist keeps it (IDNA forms included), and the ICANN TLDs."""
    from publicsuffixlist import PublicSuffixList

    full = PublicSuffixList(source=source.splitlines())
    lines = [ln for ln in source.splitlines() if b"." not in ln]   # one-label rules and markers
    icann = PublicSuffixList(source=lines, only_icann=True)          # A-labels included
    tlds = (r for r in icann._publicsuffix if not r.startswith(("!", "*")))
    return tuple(sorted(full._publicsuffix)), tuple(sorted(tlds))


def _psl_source() -> bytes:
    import publicsuffixlist

    with open(publicsuffixlist.PSLFILE, "rb") as f:
        return f.read(MAX_BYTES)


def public_suffix_list() -> Any:
    """The bundled publicsuffixlist.PublicSuffixList, built once per process from cached rules.

    The object is built with the library's own parser from the cached, already IDNA-expanded
    rules (no encoding per rule: ~20 ms instead of ~110 ms), or, when the cached form loads
    and the library still keeps its rules where it did, by handing it the rule set directly
    (~1 ms).  A library that changed its internals gets the parser path."""
    global _psl, _icann_tlds
    if _psl is not None:
        return _psl
    with _lock:
        if _psl is None:
            from publicsuffixlist import PublicSuffixList

            rules, tlds = load("psl", _psl_source(), _psl_rules)
            _icann_tlds = frozenset(tlds)
            _psl = _from_rules(PublicSuffixList, rules)
    return _psl


def _from_rules(cls: Any, rules: tuple[str, ...]) -> Any:
    probe = cls(source=["com"], accept_encoded_idn=False)
    if set(vars(probe)) == {"accept_unknown", "_publicsuffix", "_maxlabel"}:
        psl = cls.__new__(cls)
        psl.accept_unknown = True
        psl._publicsuffix = frozenset(rules)
        psl._maxlabel = max((r.lstrip("!").count(".") + 1 for r in rules), default=0)
        if psl.privatesuffix("www.example.co.uk") == "example.co.uk":
            return psl
    return cls(source=rules, accept_encoded_idn=False)


def icann_tlds() -> frozenset[str]:
    """The top-level domains of the list's ICANN section (what a real TLD is, for resolver sanity)."""
    public_suffix_list()
    assert _icann_tlds is not None
    return _icann_tlds


def psl_loaded() -> bool:
    return _psl is not None
