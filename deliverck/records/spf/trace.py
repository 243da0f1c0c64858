"""The evaluation trace: which domains were evaluated, their records, each
term with what it looked up and whether it matched; includes and redirects
as child nodes.  Frozen dataclasses, rendered as an indented tree."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass


@dataclass(frozen=True)
class LookupTrace:
    name: str
    rdtype: str
    outcome: str                 # Outcome value: ok, nodata, nxdomain, servfail, timeout, ...,
                                 # or "invalid": no DNS query can be composed from the name
    answers: tuple[str, ...] = ()
    detail: str = ""             # why, for "invalid" (empty label, label over 63 octets ...)

    def describe(self) -> str:
        if self.outcome == "ok":
            return f"{self.name} {self.rdtype} -> {', '.join(self.answers)}"
        extra = f" ({self.detail})" if self.detail else ""
        return f"{self.name} {self.rdtype} -> {self.outcome.upper()}{extra}"

    @property
    def definite(self) -> bool:
        """An answer DNS gave (or a name no query can be made for), as opposed to a failed lookup."""
        return self.outcome in ("ok", "nodata", "nxdomain", "invalid")

    def as_dict(self) -> dict:
        return {"name": self.name, "type": self.rdtype, "outcome": self.outcome, "answers": list(self.answers),
                "detail": self.detail}


@dataclass(frozen=True)
class TermTrace:
    term: str                    # as written in the record
    matched: bool | None         # None: evaluation stopped in this term (error) or not a mechanism
    lookups: tuple[LookupTrace, ...] = ()
    note: str = ""               # "include result: fail -> no match", "void lookup", ...
    child: DomainTrace | None = None

    def as_dict(self) -> dict:
        return {"term": self.term, "matched": self.matched, "note": self.note,
                "lookups": [x.as_dict() for x in self.lookups],
                "child": self.child.as_dict() if self.child else None}


@dataclass(frozen=True)
class DomainTrace:
    domain: str
    via: str                     # "check_host", "include", "redirect"
    record: str                  # the selected record, "" when none
    lookup: LookupTrace | None   # the TXT lookup
    terms: tuple[TermTrace, ...]
    result: str                  # the result of check_host() for this domain
    note: str = ""               # why (no record, multiple records, syntax error ...)

    def as_dict(self) -> dict:
        return {"domain": self.domain, "via": self.via, "record": self.record,
                "lookup": self.lookup.as_dict() if self.lookup else None,
                "terms": [t.as_dict() for t in self.terms], "result": self.result, "note": self.note}

    def walk(self):
        """Every DomainTrace of the tree, depth first."""
        yield self
        for t in self.terms:
            if t.child is not None:
                yield from t.child.walk()

    def render(self, escape: Callable[[str], str] = str, indent: str = "  ") -> list[str]:
        """The tree as lines (text from DNS passed through `escape`)."""
        lines: list[str] = []
        self._render(lines, 0, escape, indent)
        return lines

    def _render(self, lines: list[str], depth: int, esc: Callable[[str], str], ind: str) -> None:
        pad = ind * depth
        head = f"{pad}{esc(self.domain)}"
        if self.via != "check_host":
            head = f"{pad}{self.via} {esc(self.domain)}"
        lines.append(f"{head} => {self.result}" + (f" ({esc(self.note)})" if self.note else ""))
        if self.lookup is not None and self.lookup.outcome != "ok":
            lines.append(f"{pad}{ind}lookup {esc(self.lookup.describe())}")
        if self.record:
            lines.append(f"{pad}{ind}record: {esc(self.record)}")
        for t in self.terms:
            mark = {True: "match", False: "no match", None: "-"}[t.matched]
            extra = f"; {esc(t.note)}" if t.note else ""
            lines.append(f"{pad}{ind}{esc(t.term)}: {mark}{extra}")
            for lk in t.lookups:
                lines.append(f"{pad}{ind * 2}{esc(lk.describe())}")
            if t.child is not None:
                t.child._render(lines, depth + 2, esc, ind)
