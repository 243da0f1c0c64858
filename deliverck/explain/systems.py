"""Which mail systems a bounce names: the reporting system and the receiving system (systems.toml)."""

from __future__ import annotations

import functools
import re
import tomllib
from dataclasses import dataclass
from importlib import resources


@dataclass(frozen=True)
class System:
    id: str
    name: str
    kind: str
    hosts: tuple[re.Pattern, ...]
    text: tuple[re.Pattern, ...]
    from_: tuple[re.Pattern, ...]


def _c(items) -> tuple[re.Pattern, ...]:
    return tuple(re.compile(p, re.I) for p in items)


@functools.cache
def load() -> tuple[System, ...]:
    data = tomllib.loads(resources.files("deliverck.explain").joinpath("systems.toml").read_text(encoding="utf-8"))
    return tuple(System(str(s["id"]), str(s["name"]), str(s.get("kind", "provider")), _c(s.get("hosts", [])),
                        _c(s.get("text", [])), _c(s.get("from", []))) for s in data.get("system", []))


@functools.cache
def by_id(system_id: str) -> System | None:
    return next((s for s in load() if s.id == system_id), None)


@dataclass(frozen=True)
class _Index:
    """One field's patterns of every system in table order, each with the words one of which any
    of its matches contains (rules._needs), and the scan that finds those words in a text: the
    same word prefilter as the rule table (rules.py), so a pattern runs only where it can match."""
    entries: tuple[tuple[System, re.Pattern, frozenset[str] | None], ...]
    words: frozenset[str]
    words_re: re.Pattern | None


@functools.cache
def _index(attr: str) -> _Index:
    from deliverck.explain.rules import _needs, _trie

    entries = tuple((s, p, _needs(p)) for s in load() for p in getattr(s, attr))
    words = frozenset(w for _, _, n in entries if n is not None for w in n)
    return _Index(entries, words, re.compile(_trie(words)) if words else None)


def _first(attr: str, text: str, kinds: tuple[str, ...] | None = None) -> tuple[System, re.Match] | None:
    """The first system (table order, then its patterns in order) with a pattern matching text."""
    from deliverck.explain.rules import _present

    ix = _index(attr)
    present = _present(ix.words_re, ix.words, text)
    for s, p, needs in ix.entries:
        if kinds is not None and s.kind not in kinds:
            continue
        if present is not None and needs is not None and needs.isdisjoint(present):
            continue
        m = p.search(text)
        if m:
            return s, m
    return None


def by_host(host: str) -> System | None:
    h = host.strip().strip(".").lower()
    if not h:
        return None
    return _by_host(h)


@functools.lru_cache(maxsize=4096)
def _by_host(h: str) -> System | None:
    """Cached: a directory of bounces names the same few reporting and receiving hosts again and
    again, and the table of systems never changes within a process."""
    hit = _first("hosts", h)
    return hit[0] if hit else None


def by_text(text: str, kinds: tuple[str, ...] = ("provider", "software")) -> tuple[System, str] | None:
    if not text:
        return None
    hit = _first("text", text, kinds)
    return (hit[0], hit[1].group(0)) if hit else None


def by_from(from_: str) -> tuple[System, str] | None:
    if not from_:
        return None
    hit = _first("from_", from_)
    return (hit[0], hit[1].group(0)) if hit else None
