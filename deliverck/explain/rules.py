"""The classification rule table (rules.toml): loading, validation, first-match lookup."""

from __future__ import annotations

import functools
import re
import re._constants as sre_c
import re._parser as sre_parse
import tomllib
from dataclasses import dataclass, field
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
    # Per pattern, the ASCII words (lower case) of which any match contains one, or None when
    # none is known (see _needs); `words`: all of them when every pattern has some, else None.
    # A substring test rules patterns (and whole rules) out before their regexes run.
    needs: tuple[frozenset[str] | None, ...] = field(default=(), compare=False, repr=False)
    words: frozenset[str] | None = field(default=None, compare=False, repr=False)

    def status_ok(self, status: str) -> bool | None:
        """True/False when the rule has status conditions and a status is given; None otherwise."""
        if not self.status:
            return None
        if not status:
            return False if self.status_required else None
        return any(status_matches(p, status) for p in self.status)

    def search(self, text: str, present: frozenset[str] | None = None) -> re.Match | None:
        """present: the table's words that text holds (_present); None: every pattern runs."""
        if present is not None and len(self.needs) == len(self.patterns):
            if self.words is not None and self.words.isdisjoint(present):
                return None
            for p, n in zip(self.patterns, self.needs):
                if n is None or not n.isdisjoint(present):
                    m = p.search(text)
                    if m:
                        return m
            return None
        for p in self.patterns:
            m = p.search(text)
            if m:
                return m
        return None


@functools.lru_cache(maxsize=1024)
def _status_pattern(pattern: str) -> tuple[str, int, int, int] | None:
    """(class, subject, low, high) of a rule's status pattern, parsed once: a table has a few hundred."""
    m = _STATUS_PAT_RE.match(pattern)
    if not m:
        return None
    cls, subj, lo, hi = m.groups()
    return cls, int(subj), int(lo), int(hi) if hi else int(lo)


def _literal_run(items) -> str:
    """The longest run of ASCII literal characters in a parsed sequence (every item of it is
    required, in order, so the run appears in any match)."""
    best = run = ""
    for op, av in items:
        if op is sre_c.LITERAL and av < 128:
            run += chr(av)
            best = max(best, run, key=len)
        else:
            run = ""
    return best.lower()


def _needs(pattern: re.Pattern) -> frozenset[str] | None:
    """Words one of which any match of pattern contains (lower case), or None when none is known.

    Only a necessary condition, and only used on ASCII text lowered (Rule.search): ASCII letters
    match case-insensitively exactly their two cases there, and an ASCII literal of the pattern
    appears in the lowered text whenever the regex matches, with or without re.I.  A top-level
    alternation needs a word in each branch; anything else (classes, repeats, groups) ends a run."""
    try:
        tree = list(sre_parse.parse(pattern.pattern, pattern.flags))
    except Exception:  # noqa: BLE001 - no prefilter: the regex always runs
        return None
    if len(tree) == 1 and tree[0][0] is sre_c.SUBPATTERN and not tree[0][1][2] & re.I.value:
        tree = list(tree[0][1][3])      # the whole pattern in a group: look inside it
    if len(tree) == 1 and tree[0][0] is sre_c.BRANCH:
        words = tuple(_literal_run(list(b)) for b in tree[0][1][1])
    else:
        words = (_literal_run(tree),)
    return frozenset(words) if all(len(w) >= 3 for w in words) else None


def _trie(words) -> str:
    """One regex for a set of literal words, shaped as their prefix tree, inside a lookahead:
    at each position of the text it reports the longest word starting there (a longer branch
    is tried before the end of a shorter word) in work bounded by the longest word, so a scan
    is linear in the text.  The shorter words starting there are substrings of that one (see
    _within)."""
    root: dict = {}
    for w in words:
        node = root
        for ch in w:
            node = node.setdefault(ch, {})
        node[""] = {}

    def build(node: dict) -> str:
        alts = [re.escape(ch) + build(child) for ch, child in sorted(node.items()) if ch]
        if not alts:
            return ""
        if len(alts) == 1 and "" not in node:
            return alts[0]
        return "(?:" + "|".join(alts) + ("|" if "" in node else "") + ")"

    return f"(?=({build(root)}))"


@functools.cache
def _within(words: frozenset[str], word: str) -> frozenset[str]:
    return frozenset(w for w in words if w in word)


@functools.lru_cache(maxsize=16)
def _present(words_re: re.Pattern | None, words: frozenset[str], text: str) -> frozenset[str] | None:
    """The table's words found in text (lowered), or None for non-ASCII text, where re.I also
    matches other letters ("K", Kelvin sign, matches "k") and every pattern must run.  Cached:
    a bounce's own text is tried for each of its recipients."""
    if words_re is None or not text.isascii():
        return None
    found = set(words_re.findall(text.lower()))      # the one group: the longest word at each place
    return frozenset().union(*(_within(words, w) for w in found))


def status_matches(pattern: str, status: str) -> bool:
    pat = _status_pattern(pattern)
    parts = status.split(".")
    if pat is None or len(parts) != 3:
        return False
    cls, subj, lo, hi = pat
    if cls not in "xX" and cls != parts[0]:
        return False
    if subj != int(parts[1]):
        return False
    return lo <= int(parts[2]) <= hi


@dataclass(frozen=True)
class RuleTable:
    rules: tuple[Rule, ...]
    fixes: dict
    problems: tuple[str, ...]
    words: frozenset[str] = field(default=frozenset(), compare=False, repr=False)   # every Rule.needs word
    words_re: re.Pattern | None = field(default=None, compare=False, repr=False)     # finds them (_trie)
    # The rules each word may let through, and those no word rules out (no prefilter, or status
    # only): first() then visits only the rules a text can match, in table order, instead of all.
    by_word: dict[str, tuple[int, ...]] = field(default_factory=dict, compare=False, repr=False)
    always: frozenset[int] = field(default=frozenset(), compare=False, repr=False)

    def _candidates(self, present: frozenset[str] | None) -> list[int] | range:
        if present is None or not self.by_word:
            return range(len(self.rules))
        found = set(self.always)
        for w in present:
            found.update(self.by_word.get(w, ()))
        return sorted(found)

    def first(self, text: str, status: str = "", code: int = 0, skip: tuple[str, ...] = (),
              only: tuple[str, ...] = (), memo: dict[int, str | None] | None = None) -> tuple[Rule, str] | None:
        """The first rule matching text (and status/code conditions), with the matched fragment.

        memo: what each rule found in this same text before (rule index -> fragment or None),
        filled as rules are tried; a bounce's text is tried once per recipient, the rules run on
        it once."""
        present = _present(self.words_re, self.words, text)
        rules = self.rules
        for i in self._candidates(present):
            r = rules[i]
            if r.category in skip or (only and r.category not in only):
                continue
            if present is not None and r.words is not None and r.words.isdisjoint(present):
                continue            # none of its patterns can match: its conditions do not matter
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
                m = r.search(text, present)
                frag = m.group(0) if m else None
            elif i in memo:
                frag = memo[i]
            else:
                m = r.search(text, present)
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
        needs = tuple(_needs(p) for p in pats)
        rules.append(Rule(
            id=rid, category=cat, patterns=tuple(pats), status=status, needs=needs,
            words=frozenset().union(*needs) if needs and None not in needs else None,  # type: ignore[arg-type]
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
    words = frozenset(w for r in rules for n in r.needs if n is not None for w in n)
    by_word: dict[str, list[int]] = {}
    for i, r in enumerate(rules):
        for w in r.words or ():
            by_word.setdefault(w, []).append(i)
    return RuleTable(tuple(rules), fixes, tuple(problems), words, re.compile(_trie(words)) if words else None,
                     {w: tuple(ix) for w, ix in by_word.items()}, frozenset(i for i, r in enumerate(rules) if r.words is None))


@functools.cache
def load() -> RuleTable:
    """The shipped rule table; its TOML parse is cached by content hash (deliverck/datacache.py)."""
    raw = resources.files("deliverck.explain").joinpath("rules.toml").read_bytes()
    return from_mapping(datacache.load("explain-rules", raw, lambda b: tomllib.loads(b.decode("utf-8"))))
