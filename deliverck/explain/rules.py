"""The classification rule table (rules.toml): loading, validation, first-match lookup."""

from __future__ import annotations

import functools
import re
import tomllib
from dataclasses import dataclass
from importlib import resources

from deliverck import datacache
from deliverck.ndr import categories

CONFIDENCES = ("high", "medium", "low")
_STATUS_PAT_RE = re.compile(r"^([245xX])\.(\d{1,3})\.(\d{1,3})(?:-(\d{1,3}))?$")
_FIELDS = {"id", "category", "match", "status", "status_required", "code", "confidence", "system",
           "meaning", "fix", "owner", "source"}


@dataclass(frozen=True)
class Rule:
    id: str
    category: str
    patterns: tuple[re.Pattern, ...]
    status: tuple[str, ...] = ()
    status_required: bool = False
    code: tuple[int, ...] = ()
    confidence: str = "high"
    system: str = ""
    meaning: str = ""
    fix: str = ""
    owner: str = ""
    source: str = ""

    def status_ok(self, status: str) -> bool | None:
        """True/False when the rule has status conditions and a status is given; None otherwise."""
        if not self.status:
            return None
        if not status:
            return False if self.status_required else None
        return any(status_matches(p, status) for p in self.status)

    def search(self, text: str) -> re.Match | None:
        for p in self.patterns:
            m = p.search(text)
            if m:
                return m
        return None


def status_matches(pattern: str, status: str) -> bool:
    m = _STATUS_PAT_RE.match(pattern)
    parts = status.split(".")
    if not m or len(parts) != 3:
        return False
    cls, subj, lo, hi = m.groups()
    if cls not in "xX" and cls != parts[0]:
        return False
    if int(subj) != int(parts[1]):
        return False
    d = int(parts[2])
    return int(lo) <= d <= int(hi) if hi else d == int(lo)


@dataclass(frozen=True)
class RuleTable:
    rules: tuple[Rule, ...]
    fixes: dict
    problems: tuple[str, ...]

    def first(self, text: str, status: str = "", code: int = 0, skip: tuple[str, ...] = (),
              only: tuple[str, ...] = (), memo: dict[int, str | None] | None = None) -> tuple[Rule, str] | None:
        """The first rule matching text (and status/code conditions), with the matched fragment.

        memo: what each rule found in this same text before (rule index -> fragment or None),
        filled as rules are tried; a bounce's text is tried once per recipient, the rules run on
        it once."""
        for i, r in enumerate(self.rules):
            if r.category in skip or (only and r.category not in only):
                continue
            ok = r.status_ok(status)
            if ok is False:
                continue
            if r.code and code and code not in r.code:
                continue
            if not r.patterns:
                if ok:  # a status-only rule applies only to a status it names
                    return r, status
                continue
            if memo is None:
                m = r.search(text)
                frag = m.group(0) if m else None
            elif i in memo:
                frag = memo[i]
            else:
                m = r.search(text)
                frag = memo[i] = m.group(0) if m else None
            if frag is not None:
                return r, frag
        return None


def from_mapping(data: dict) -> RuleTable:
    problems: list[str] = []
    if data.get("schema") != 1:
        problems.append(f"unsupported rules schema {data.get('schema')!r}")
    rules, seen = [], set()
    for i, raw in enumerate(data.get("rule", [])):
        rid = str(raw.get("id", f"#{i + 1}"))
        where = f"rule {rid!r}"
        if set(raw) - _FIELDS:
            problems.append(f"{where}: unknown fields {sorted(set(raw) - _FIELDS)}")
        if rid in seen:
            problems.append(f"{where}: duplicate id")
        seen.add(rid)
        cat = str(raw.get("category", ""))
        if cat not in categories.IDS:
            problems.append(f"{where}: unknown category {cat!r}")
        if not str(raw.get("source", "")).strip():
            problems.append(f"{where}: missing source")
        conf = str(raw.get("confidence", "high"))
        if conf not in CONFIDENCES:
            problems.append(f"{where}: confidence must be one of {CONFIDENCES}")
        pats = []
        for p in raw.get("match", []):
            try:
                pats.append(re.compile(p, re.I))
            except re.error as e:
                problems.append(f"{where}: bad regex {p!r}: {e}")
        status = tuple(str(s) for s in raw.get("status", []))
        for s in status:
            if not _STATUS_PAT_RE.match(s):
                problems.append(f"{where}: bad status pattern {s!r}")
        if not pats and not status:
            problems.append(f"{where}: needs a match list or a status")
        owner = str(raw.get("owner", ""))
        if owner:
            from deliverck.model import Owner

            if owner not in {o.value for o in Owner}:
                problems.append(f"{where}: unknown owner {owner!r}")
        rules.append(Rule(
            id=rid, category=cat, patterns=tuple(pats), status=status,
            status_required=bool(raw.get("status_required", False)),
            code=tuple(int(c) for c in raw.get("code", [])), confidence=conf,
            system=str(raw.get("system", "")), meaning=str(raw.get("meaning", "")),
            fix=str(raw.get("fix", "")), owner=owner, source=str(raw.get("source", "")),
        ))
    fixes = dict(data.get("fix", {}))
    for cid in categories.IDS:
        if not str(fixes.get(cid, "")).strip():
            problems.append(f"[fix]: no default fix for category {cid!r}")
    for cid in fixes:
        if cid not in categories.IDS:
            problems.append(f"[fix]: unknown category {cid!r}")
    return RuleTable(tuple(rules), fixes, tuple(problems))


@functools.cache
def load() -> RuleTable:
    """The shipped rule table; its TOML parse is cached by content hash (deliverck/datacache.py)."""
    raw = resources.files("deliverck.explain").joinpath("rules.toml").read_bytes()
    return from_mapping(datacache.load("explain-rules", raw, lambda b: tomllib.loads(b.decode("utf-8"))))
