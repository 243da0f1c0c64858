"""Issue 16 (explain throughput): the rules' word prefilter never hides a match."""

from __future__ import annotations

import re
from pathlib import Path

from deliverck.explain import rules

CORPUS = Path(__file__).resolve().parent / "bounces"


def _texts():
    for p in sorted(CORPUS.iterdir()):
        if p.suffix in (".eml", ".txt"):
            yield p.read_bytes().decode("utf-8", "replace")


def test_most_rule_patterns_have_a_prefilter():
    t = rules.load()
    pats = [(p, n) for r in t.rules for p, n in zip(r.patterns, r.needs, strict=True)]
    ascii_pats = [(p, n) for p, n in pats if p.pattern.isascii()]
    assert sum(n is not None for _, n in ascii_pats) >= 0.9 * len(ascii_pats)


def test_the_prefilter_keeps_every_match_of_the_corpus():
    t = rules.load()
    checked = 0
    for text in _texts():
        for chunk in [text] + text.splitlines():
            present = rules._present(t.words_re, t.words, chunk)
            if present is None:
                continue
            for r in t.rules:
                for p, n in zip(r.patterns, r.needs, strict=True):
                    if n is not None and p.search(chunk):
                        checked += 1
                        assert not n.isdisjoint(present), (r.id, p.pattern, chunk[:200])
    assert checked > 100


def test_first_gives_the_same_rule_and_fragment_as_every_pattern_in_order():
    t = rules.load()
    bare = rules.RuleTable(tuple(rules.Rule(r.id, r.category, r.patterns, r.status, r.status_required, r.code)
                                 for r in t.rules), t.fixes, t.problems)
    n = 0
    for text in _texts():
        for chunk in [text] + text.splitlines():
            got, want = t.first(chunk), bare.first(chunk)
            assert (got and (got[0].id, got[1])) == (want and (want[0].id, want[1])), chunk[:200]
            n += want is not None
    assert n > 50


def test_non_ascii_text_runs_every_pattern():
    # re.I matches the Kelvin sign as "k": the ASCII prefilter must not rule "unknown" out
    t = rules.load()
    text = "550 5.1.1 User un\u212anown"
    assert re.search("unknown", text, re.I)
    assert rules._present(t.words_re, t.words, text) is None
    assert t.first(text) is not None
    assert t.first(text)[0].category == t.first("550 5.1.1 User unknown")[0].category
