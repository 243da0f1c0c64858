"""The NDR catalog: receiver systems and the replies they give, read from catalog.toml.

The catalog is the only place that links a finding to the bounces it causes;
the engine copies each entry's `findings` into FindingSpec.ndr.  Loading is
lenient so that `Catalog.problems()` can report every defect at once instead
of stopping at the first.
"""

from __future__ import annotations

import dataclasses
import functools
import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from importlib import resources
from typing import Any

from deliverck import datacache
from deliverck.model import Direction, Likelihood, Owner
from deliverck.ndr import categories
from deliverck.ndr.catalog_problems import CONTROL_RE as _CONTROL_RE
from deliverck.ndr.catalog_problems import PROFILES as PROFILES
from deliverck.ndr.catalog_problems import STATUS_RE as _STATUS_RE
from deliverck.ndr.catalog_problems import code_problems as _code_problems
from deliverck.ndr.catalog_problems import likelihood_problems as _likelihood_problems
from deliverck.ndr.catalog_problems import value as _value

PLACEHOLDERS = ("ip", "host", "domain", "recipient", "sender", "helo", "zone", "greeting")
FAMILIES = ("ipv4", "ipv6")
ENTRY_DIRECTIONS = (Direction.INBOUND, Direction.OUTBOUND, Direction.INTERNAL)

# A qmail-style status carried in the reply text instead of after the code,
# e.g. "553 sorry, that domain isn't in my list of allowed rcpthosts (#5.7.1)".
_TEXT_STATUS_RE = re.compile(r"\(#([245]\.\d{1,3}\.\d{1,3})\)")
_FINDING_RE = re.compile(r"^[a-z0-9_]+\.[a-z0-9_]+$")
_SYSTEM_ID_RE = re.compile(r"^[a-z0-9][a-z0-9-]*$")
_PLACEHOLDER_RE = re.compile(r"\{([^{}]*)\}")


@dataclass(frozen=True)
class ReceiverSystem:
    id: str
    name: str
    description: str = ""
    default: bool = False
    fallback: bool = False


@dataclass(frozen=True)
class CatalogEntry:
    key: str
    system: str
    direction: Direction | str      # a str only when the catalog file is wrong
    code: int                       # 0: no reply code appears in the NDR
    status: str                     # "" when the system gives no enhanced status
    text: str
    meaning: str
    causes: tuple[str, ...]
    owner: Owner | str              # a str only when the catalog file is wrong
    fix: str
    findings: tuple[str, ...]
    source: str
    family: str = ""
    mixed_class: bool = False
    predict_at_info: bool = False
    # Per finding, argument values required for this entry to apply, e.g.
    # {"mx.no_usable_host": {"reason": ("unreachable",)}}: a host that cannot
    # be found and a host that cannot be reached bounce differently.
    when: Mapping[str, Mapping[str, tuple[str, ...]]] = dataclasses.field(default_factory=dict)
    category: str = ""              # an id of deliverck.ndr.categories; required in the file
    # Last code of a documented range that `status` opens, e.g. status
    # "5.7.606" with status_range_end "5.7.649" for Exchange Online's
    # "5.7.606-649"; "" for a single code.
    status_range_end: str = ""
    # How sure the prediction is: "will" when the receiver's documented rule
    # always fires on the finding's evidence, "may" when it also depends on
    # something deliverck cannot see, said in `condition`.  Required for
    # entries that findings predict; `likelihood_by_finding` overrides it
    # for single findings of the entry.
    likelihood: str = ""
    condition: str = ""
    likelihood_by_finding: Mapping[str, str] = dataclasses.field(default_factory=dict)
    # Per placeholder, what a typical receiver prints where no finding knows the value.
    examples: Mapping[str, str] = dataclasses.field(default_factory=dict)
    # "bulk": the receiver documents the rule for bulk senders; `likelihood` is then the likelihood
    # for a bulk sender, and `condition` says in words what it takes for anyone else.
    profile: str = ""

    def likelihood_for(self, finding_id: str, sender_profile: str = "") -> Likelihood:
        """A bulk-only rule is only a possibility for a sender not known to send in bulk."""
        if self.profile and sender_profile != self.profile:
            return Likelihood.MAY
        raw = self.likelihood_by_finding.get(finding_id, self.likelihood)
        return Likelihood.WILL if raw == Likelihood.WILL.value else Likelihood.MAY

    @property
    def text_status(self) -> str:
        """An enhanced status carried qmail-style in the text ("(#5.7.1)"), or ""."""
        m = _TEXT_STATUS_RE.search(self.text)
        return m.group(1) if m else ""

    @property
    def status_label(self) -> str:
        """The status as documented: "5.7.606-649" for a range, else the status."""
        if self.status and self.status_range_end:
            return f"{self.status}-{self.status_range_end.rsplit('.', 1)[-1]}"
        return self.status

    def matches_status(self, status: str) -> bool:
        """True when `status` is this entry's enhanced status, lies in its range,
        or is the qmail-style status in its text."""
        status = status.strip()
        if not _STATUS_RE.match(status):
            return False
        if status in (self.status, self.text_status):
            return True
        if self.status and self.status_range_end:
            lo, hi, got = status_key(self.status), status_key(self.status_range_end), status_key(status)
            return lo[:2] == got[:2] and lo[2] <= got[2] <= hi[2]
        return False

    def applies_to(self, finding_id: str, args: Mapping[str, Any]) -> bool:
        cond = self.when.get(finding_id, {})
        return all(str(args.get(name, "")) in values for name, values in cond.items())

    @property
    def reply(self) -> str:
        """The reply line as it appears in an NDR, placeholders unfilled."""
        return reply_line(self.code, self.status, self.text)


def reply_line(code: int, status: str, text: str) -> str:
    return " ".join(p for p in (str(code) if code else "", status, text) if p)


def status_key(status: str) -> tuple[int, ...]:
    """Numeric sort key for an enhanced status; entries without one sort last."""
    m = _STATUS_RE.match(status)
    if not m:
        return (9, 999, 999)
    return tuple(int(g) for g in m.groups())


class Catalog:
    def __init__(
        self,
        systems: Iterable[ReceiverSystem],
        entries: Iterable[CatalogEntry],
        load_problems: Iterable[str] = (),
    ) -> None:
        self.systems: tuple[ReceiverSystem, ...] = tuple(systems)
        self.entries: tuple[CatalogEntry, ...] = tuple(entries)
        self._load_problems = tuple(load_problems)
        self._system_by_id = {s.id: s for s in self.systems}
        self._entry_by_key = {e.key: e for e in self.entries}
        by_finding: dict[str, list[CatalogEntry]] = {}
        for e in self.entries:
            for fid in dict.fromkeys(e.findings):
                by_finding.setdefault(fid, []).append(e)
        self._by_finding = {k: tuple(v) for k, v in by_finding.items()}

    # -- lookups

    def system(self, system_id: str) -> ReceiverSystem:
        return self._system_by_id[system_id]

    def entry(self, key: str) -> CatalogEntry:
        return self._entry_by_key[key]

    def has_entry(self, key: str) -> bool:
        return key in self._entry_by_key

    def system_ids(self) -> tuple[str, ...]:
        return tuple(s.id for s in self.systems)

    def system_order(self, system_id: str) -> int:
        ids = self.system_ids()
        return ids.index(system_id) if system_id in ids else len(ids)

    def by_finding(self, finding_id: str) -> tuple[CatalogEntry, ...]:
        return self._by_finding.get(finding_id, ())

    def finding_ids(self) -> tuple[str, ...]:
        """Every finding id some entry lists, sorted."""
        return tuple(sorted(self._by_finding))

    def default_receivers(self) -> tuple[str, ...]:
        return tuple(s.id for s in self.systems if s.default)

    def fallback_receivers(self) -> tuple[str, ...]:
        return tuple(s.id for s in self.systems if s.fallback)

    def entries_for(self, system_id: str) -> tuple[CatalogEntry, ...]:
        return tuple(e for e in self.entries if e.system == system_id)

    def by_status(self, status: str) -> tuple[CatalogEntry, ...]:
        """Every entry, of any system, for an enhanced status such as "5.7.1".

        Exact match on `status`; a code inside a documented range matches the
        range's entry ("5.7.620" finds Exchange Online's 5.7.606-649), and a
        qmail-style "(#5.7.1)" in the text counts as the entry's status.  No
        class or subject wildcards: "4.7.1" does not find "5.7.1" entries.
        """
        return tuple(e for e in self.entries if e.matches_status(status))

    def by_code(self, code: int) -> tuple[CatalogEntry, ...]:
        """Every entry, of any system, whose reply code is `code` (e.g. 550)."""
        if isinstance(code, bool) or not isinstance(code, int) or code == 0:
            return ()
        return tuple(e for e in self.entries if e.code == code)

    def statuses(self) -> tuple[str, ...]:
        """Every enhanced status the catalog documents (ranges by their label,
        statuses in texts included), in numeric order."""
        seen = {e.status_label for e in self.entries if e.status} | {
            e.text_status for e in self.entries if e.text_status and not e.status}
        return tuple(sorted(seen, key=lambda s: (status_key(s.split("-")[0]), s)))

    # -- validation

    def problems(self) -> list[str]:
        out = list(self._load_problems)
        seen_sys: set[str] = set()
        for s in self.systems:
            if s.id in seen_sys:
                out.append(f"duplicate system id {s.id!r}")
            seen_sys.add(s.id)
            if not _SYSTEM_ID_RE.match(s.id):
                out.append(f"system id {s.id!r}: use lowercase letters, digits and '-'")
            if not s.name:
                out.append(f"system {s.id!r}: missing name")
        if not any(s.default for s in self.systems):
            out.append("no system is in the default receiver set")
        seen_keys: set[str] = set()
        for e in self.entries:
            where = f"entry {e.key!r}"
            if e.key in seen_keys:
                out.append(f"duplicate entry key {e.key!r}")
            seen_keys.add(e.key)
            if e.system not in self._system_by_id:
                out.append(f"{where}: unknown system {e.system!r}")
            elif not e.key.startswith(e.system + "."):
                out.append(f"{where}: key must start with its system id {e.system + '.'!r}")
            if not isinstance(e.direction, Direction) or e.direction not in ENTRY_DIRECTIONS:
                names = ", ".join(d.value for d in ENTRY_DIRECTIONS)
                out.append(f"{where}: unknown direction {_value(e.direction)!r} (use one of: {names})")
            if not isinstance(e.owner, Owner):
                names = ", ".join(o.value for o in Owner)
                out.append(f"{where}: unknown owner {e.owner!r} (use one of: {names})")
            out.extend(_code_problems(e))
            for fid in e.findings:
                if not _FINDING_RE.match(fid):
                    out.append(f"{where}: malformed finding id {fid!r} (use '<check>.<slug>')")
            if len(set(e.findings)) != len(e.findings):
                out.append(f"{where}: a finding id is listed twice")
            for fid in e.when:
                if fid not in e.findings:
                    out.append(f"{where}: 'when' names {fid!r}, which is not in its findings")
            out.extend(_likelihood_problems(e))
            for field_name in ("text", "meaning", "fix", "source"):
                if not getattr(e, field_name).strip():
                    out.append(f"{where}: missing {field_name}")
            if not e.causes:
                out.append(f"{where}: missing causes")
            if not e.category:
                out.append(f"{where}: missing category (use one of: {', '.join(categories.IDS)})")
            elif e.category not in categories.IDS:
                out.append(f"{where}: unknown category {e.category!r} (use one of: {', '.join(categories.IDS)})")
            for name in _PLACEHOLDER_RE.findall(e.text):
                if name not in PLACEHOLDERS:
                    out.append(f"{where}: unknown placeholder {{{name}}} in text")
            if e.family and e.family not in FAMILIES:
                out.append(f"{where}: unknown family {e.family!r} (use ipv4 or ipv6)")
            for field_name in ("text", "meaning", "fix", "source"):
                if _CONTROL_RE.search(getattr(e, field_name)):
                    out.append(f"{where}: control character in {field_name}")
        return out


# -- parsing


def _enum(cls: type, raw: Any) -> Any:
    return cls(raw) if raw in {m.value for m in cls} else str(raw)  # type: ignore[attr-defined]


def _strs(raw: Any) -> tuple[str, ...]:
    if isinstance(raw, str):
        return (raw,)
    return tuple(str(x) for x in (raw or ()))


_SYSTEM_FIELDS = {"id", "name", "description", "default", "fallback"}
_ENTRY_FIELDS = {
    "key", "system", "direction", "code", "status", "text", "meaning", "causes",
    "owner", "fix", "findings", "source", "family", "mixed_class", "predict_at_info", "when",
    "category", "status_range_end", "likelihood", "condition", "likelihood_by_finding", "examples", "profile",
}
_ENTRY_REQUIRED = {
    "key", "system", "direction", "code", "status", "text", "meaning", "owner", "fix", "findings", "source",
    "category",
}


def from_mapping(data: Mapping[str, Any]) -> Catalog:
    problems: list[str] = []
    if data.get("schema") != 1:
        problems.append(f"unsupported catalog schema {data.get('schema')!r} (want 1)")
    systems = []
    for i, raw in enumerate(data.get("system", [])):
        unknown = set(raw) - _SYSTEM_FIELDS
        if unknown:
            problems.append(f"system #{i + 1}: unknown fields {sorted(unknown)}")
        if "id" not in raw:
            problems.append(f"system #{i + 1}: missing id")
        systems.append(ReceiverSystem(
            id=str(raw.get("id", "")),
            name=str(raw.get("name", "")),
            description=str(raw.get("description", "")),
            default=bool(raw.get("default", False)),
            fallback=bool(raw.get("fallback", False)),
        ))
    entries = []
    for i, raw in enumerate(data.get("entry", [])):
        label = raw.get("key", f"#{i + 1}")
        unknown = set(raw) - _ENTRY_FIELDS
        if unknown:
            problems.append(f"entry {label!r}: unknown fields {sorted(unknown)}")
        missing = _ENTRY_REQUIRED - set(raw)
        if missing:
            problems.append(f"entry {label!r}: missing fields {sorted(missing)}")
        entries.append(CatalogEntry(
            key=str(raw.get("key", "")),
            system=str(raw.get("system", "")),
            direction=_enum(Direction, raw.get("direction", "")),
            code=raw.get("code", 0),
            status=str(raw.get("status", "")),
            text=str(raw.get("text", "")),
            meaning=str(raw.get("meaning", "")),
            causes=_strs(raw.get("causes")),
            owner=_enum(Owner, raw.get("owner", "")),
            fix=str(raw.get("fix", "")),
            findings=_strs(raw.get("findings")),
            source=str(raw.get("source", "")),
            family=str(raw.get("family", "")),
            mixed_class=bool(raw.get("mixed_class", False)),
            predict_at_info=bool(raw.get("predict_at_info", False)),
            when=_when(raw.get("when", {}), label, problems),
            category=str(raw.get("category", "")),
            status_range_end=str(raw.get("status_range_end", "")),
            likelihood=str(raw.get("likelihood", "")),
            condition=str(raw.get("condition", "")),
            likelihood_by_finding=_likelihood_map(raw.get("likelihood_by_finding", {}), label, problems),
            examples=_examples(raw.get("examples", {}), label, problems),
            profile=str(raw.get("profile", "")),
        ))
    return Catalog(systems, entries, problems)


def _when(raw: Any, label: str, problems: list[str]) -> dict[str, dict[str, tuple[str, ...]]]:
    if not isinstance(raw, Mapping) or not all(isinstance(v, Mapping) for v in raw.values()):
        problems.append(f"entry {label!r}: 'when' must map finding ids to {{argument = values}} tables")
        return {}
    return {fid: {arg: _strs(vals) for arg, vals in cond.items()} for fid, cond in raw.items()}


def _likelihood_map(raw: Any, label: str, problems: list[str]) -> dict[str, str]:
    if not isinstance(raw, Mapping) or not all(isinstance(v, str) for v in raw.values()):
        problems.append(f"entry {label!r}: 'likelihood_by_finding' must map finding ids to \"will\" or \"may\"")
        return {}
    return {str(k): v for k, v in raw.items()}


def _examples(raw: Any, label: str, problems: list[str]) -> dict[str, str]:
    if not isinstance(raw, Mapping) or not all(isinstance(v, str) for v in raw.values()):
        problems.append(f"entry {label!r}: 'examples' must map placeholder names to strings")
        return {}
    for name in raw:
        if name not in PLACEHOLDERS:
            problems.append(f"entry {label!r}: 'examples' names unknown placeholder {name!r}")
    return {str(k): v for k, v in raw.items()}


def from_toml(text: str) -> Catalog:
    import tomllib

    return from_mapping(tomllib.loads(text))


@functools.cache
def load() -> Catalog:
    """The catalog shipped with deliverck (read as package data, so wheels work).

    catalog.toml holds the receiver systems and the first entries; each file in catalog/ adds
    the entries of one area (`[[entry]]` tables only), so the knowledge for a check lives in a
    file of its own.  The TOML parse was most of the cost (~0.1 s): its plain result is cached
    by content hash (deliverck/datacache.py)."""
    root = resources.files("deliverck.ndr")
    extra = root.joinpath("catalog")
    more = sorted((p for p in extra.iterdir() if p.name.endswith(".toml")), key=lambda p: p.name) \
        if extra.is_dir() else []
    parts = [(p.name, p.read_text(encoding="utf-8")) for p in [root.joinpath("catalog.toml"), *more]]
    source = "\0".join(f"{name}\0{text}" for name, text in parts).encode("utf-8")
    data = datacache.load("ndr-catalog", source, lambda _: _merge(parts))
    problems = data.pop("_problems", [])
    catalog = from_mapping(data)
    catalog._load_problems = catalog._load_problems + tuple(problems)
    return catalog


def _merge(parts: list[tuple[str, str]]) -> dict[str, Any]:
    """catalog.toml with the [[entry]] tables of every catalog/*.toml appended, as plain data."""
    # Only on a cache miss: most runs load the cached parse (deliverck/datacache.py).
    import tomllib

    data = tomllib.loads(parts[0][1])
    for name, text in parts[1:]:
        more = tomllib.loads(text)
        data.setdefault("entry", []).extend(more.pop("entry", []))
        if more:
            data.setdefault("_problems", []).append(f"{name}: only [[entry]] tables belong in catalog/ (found {sorted(more)})")
    return data


def parse_receivers(text: str | None, catalog: Catalog | None = None) -> tuple[str, ...]:
    """Parse a --receivers value: system ids separated by commas or spaces.

    `default` (or an empty value) stands for the default set, `all` for every
    system.  Order is kept and duplicates dropped.
    """
    cat = catalog or load()
    known = cat.system_ids()
    if text is None or not text.strip():
        return cat.default_receivers()
    out: list[str] = []
    for item in re.split(r"[\s,]+", text.strip()):
        name = item.strip().lower()
        if not name:
            continue
        if name == "default":
            out.extend(cat.default_receivers())
        elif name == "all":
            out.extend(known)
        elif name in known:
            out.append(name)
        else:
            shown = item if not _CONTROL_RE.search(item) else item.encode("unicode_escape").decode("ascii")
            raise ValueError(
                f"unknown receiver system {shown!r} (known: {', '.join(known)}; or 'default', 'all')"
            )
    return tuple(dict.fromkeys(out))
