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


def by_host(host: str) -> System | None:
    h = host.strip().strip(".").lower()
    if not h:
        return None
    for s in load():
        if any(p.search(h) for p in s.hosts):
            return s
    return None


def by_text(text: str, kinds: tuple[str, ...] = ("provider", "software")) -> tuple[System, str] | None:
    if not text:
        return None
    for s in load():
        if s.kind not in kinds:
            continue
        for p in s.text:
            m = p.search(text)
            if m:
                return s, m.group(0)
    return None


def by_from(from_: str) -> tuple[System, str] | None:
    if not from_:
        return None
    for s in load():
        for p in s.from_:
            m = p.search(from_)
            if m:
                return s, m.group(0)
    return None
