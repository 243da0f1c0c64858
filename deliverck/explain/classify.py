"""One failed recipient -> a category, with meaning, owner, fix, checks, confidence and evidence.

Order (docs/explain.md): a specific text rule (rules.toml) > an entry of the
NDR catalog (same status, same wording) > the enhanced status code alone
(RFC 3463) > undetermined.  A message that failed for good after temporary
errors (Action: failed with a 4.x.x status, or an expiry text) is `expired`,
with the last attempt's reply classified as its `underlying` cause.
"""

from __future__ import annotations

import functools
import re

from deliverck.explain import receiver as rcv
from deliverck.explain import rules as rules_mod
from deliverck.explain import status as st
from deliverck.explain.model import Attempt, Result
from deliverck.explain.replies import parse_reply
from deliverck.ndr import categories

_LOWER = {"high": "medium", "medium": "low", "low": "low"}
_TOKEN_RE = re.compile(r"[a-z0-9][a-z0-9'-]*[a-z0-9]", re.I)
# The reply of the last attempt inside an expiry text.  Every part is bounded: "(last attempt" is
# followed by at most 300 characters before its first ':' (a date and a host), not by the rest of
# the text, and only that first ':' is tried.
_INNER_RE = re.compile(r"\[Message=(.{3,600}?)\](?:\s*\[|\s*$)|responded with: \"(.{3,600}?)\"|last error(?: was)?:?\s*(.{3,600})|"
                       r"\(last attempt[^):]{0,300}:\s*+(.{3,600}?)\)|said:\s*(.{3,600})", re.I)
_CODE_MEANING = {
    421: "service not available, closing the channel", 450: "mailbox unavailable (temporary)", 451: "local error in processing",
    452: "insufficient system storage", 454: "temporary authentication failure / TLS not available",
    500: "syntax error, command unrecognised", 501: "syntax error in parameters", 502: "command not implemented",
    503: "bad sequence of commands", 504: "parameter not implemented", 521: "host does not accept mail (RFC 7504)",
    530: "authentication required", 535: "authentication credentials invalid", 550: "mailbox unavailable / not taken",
    551: "user not local", 552: "exceeded storage allocation", 553: "mailbox name not allowed", 554: "transaction failed",
    556: "domain does not accept mail (RFC 7504)",
}
_CODE_DEFAULTS = {521: ("no_mail_accepted", "medium"), 556: ("no_mail_accepted", "medium")}
MAX_RULE_TEXT = 4000
MAX_HUMAN_TEXT = 20000   # characters of a bounce's own text the rules read


def _tokens(text: str) -> frozenset[str]:
    return frozenset(t.lower() for t in _TOKEN_RE.findall(text) if len(t) >= 3)


@functools.cache
def _catalog():
    try:
        from deliverck.ndr.catalog import load

        cat = load()
    except Exception:  # noqa: BLE001 - explain works without the catalog
        return None, ()
    index = []
    for e in cat.entries:
        text = re.sub(r"\{[^{}]*\}", " ", e.text)
        text = re.sub(r"\((?:DNSBL zone|its greeting reply)\)", " ", text)
        index.append((e, _tokens(text)))
    return cat, tuple(index)


@functools.cache
def _by_token() -> dict[str, tuple[int, ...]]:
    """token -> positions in the catalog index of the entries whose wording has it: a reply is
    compared only with the entries it shares a word with (an entry sharing none scores 0)."""
    out: dict[str, list[int]] = {}
    for i, (_, et) in enumerate(_catalog()[1]):
        for t in et:
            out.setdefault(t, []).append(i)
    return {t: tuple(v) for t, v in out.items()}


def _entry_status_ok(e, status: str) -> bool:
    fn = getattr(e, "matches_status", None)
    if fn is not None:
        return bool(fn(status))
    return e.status == status


def _primary_bonus(e) -> float:
    """Among equal wordings, prefer the entry of the check that tests the category's main cause."""
    cid = getattr(e, "category", "")
    if cid not in categories.IDS or not e.findings:
        return 0.0
    checks = categories.get(cid).checks
    first = e.findings[0].split(".")[0]
    return 0.0005 if checks and first == checks[0] else 0.0


@functools.cache
def _stated() -> tuple[bool, ...]:
    """Per catalog index position: the entry states a status (its own or qmail-style in its
    text, a regex search each time it is asked)."""
    return tuple(bool(e.status or getattr(e, "text_status", "")) for e, _ in _catalog()[1])


@functools.lru_cache(maxsize=4096)
def _indexed_status_ok(i: int, status: str) -> bool:
    return _entry_status_ok(_catalog()[1][i][0], status)


def catalog_match(a: Attempt):
    """The catalog entry whose wording (and status, when both have one) the reply carries, or None."""
    cat, index = _catalog()
    if cat is None:
        return None
    if not a.diagnostic.strip():
        return None
    dt = _tokens(a.diagnostic[:MAX_RULE_TEXT])
    by_token = _by_token()
    hits: dict[int, int] = {}
    for t in dt:
        for i in by_token.get(t, ()):
            hits[i] = hits.get(i, 0) + 1
    best, best_score = None, 0.0
    stated = _stated()
    for i in sorted(hits):          # catalog order: the first of equal scores wins, as before
        e, et = index[i]
        hit = hits[i]
        if hit < 2 and len(et) > 1:
            continue
        overlap = hit / len(et)
        same_status = bool(a.status) and stated[i] and _indexed_status_ok(i, a.status)
        if a.status and stated[i] and not same_status:
            if overlap < 0.9 or a.status[0] != (e.status or "x")[0]:
                continue
        need = 0.5 if same_status else 0.75
        if overlap < need:
            continue
        score = overlap + (0.3 if same_status else 0) + (0.05 if a.code and a.code == e.code else 0) + len(et) / 1000 + _primary_bonus(e)
        if score > best_score:
            best, best_score = e, score
    return best


def catalog_by_status(status: str):
    """Entries documenting this exact status; their category when they all agree."""
    cat, _ = _catalog()
    if cat is None or not status:
        return None, ()
    fn = getattr(cat, "by_status", None)
    entries = tuple(fn(status)) if fn else tuple(e for e in cat.entries if e.status == status)
    cats = {getattr(e, "category", None) for e in entries}
    cats.discard(None)
    cats.discard("")
    return (cats.pop() if len(cats) == 1 else None), entries


def _owner_value(o) -> str:
    return getattr(o, "value", str(o))


RETRY_EXPIRY = 3600.0   # seconds of retrying after which a final 4.x.x failure counts as an expiry


@functools.lru_cache(maxsize=8)
def _bounce_text(human: str, normalised: bool) -> tuple[str, dict[int, str | None]]:
    """The bounce's own text as the rules read it, with what each rule found in it so far: the
    same for each of a bounce's recipients (up to 100), so each rule runs on it once."""
    text = human[:MAX_HUMAN_TEXT]
    return (st.normalise_garbled(text) if normalised else text), {}


def classify(a: Attempt, human: str = "", _inner: bool = False, retried: float | None = None) -> Result:
    """retried: seconds between the message's arrival and the last attempt, when the bounce dates them."""
    table = rules_mod.load()
    evidence: list[str] = []
    text = st.normalise_garbled(a.diagnostic[:MAX_RULE_TEXT])
    skip = ("expired",) if (a.action == "delayed" or _inner) else ()
    category, confidence, rule, entry = "", "", None, None
    hit = table.first(text, a.status, a.code, skip) if (text or a.status) else None
    where = "the reply"
    if hit is None and human.strip():
        own, memo = _bounce_text(human, True)
        hit = table.first(own, a.status, a.code, skip, memo=memo)
        where = "the bounce's own text"
    if hit:
        rule, frag = hit
        category, confidence = rule.category, rule.confidence
        if rule.status and a.status and rule.status_ok(a.status):
            confidence = "high"
        if where != "the reply":
            confidence = _LOWER[confidence]
        what = f"status {a.status}" if not rule.patterns else f"{frag.strip()[:120]!r} in {where}"
        evidence.append(f"rule {rule.id}: {what} (source: {rule.source})")
    entry = catalog_match(a)
    if entry is not None:
        ecat = getattr(entry, "category", "") or ""
        evidence.append(f"catalog {entry.key}: {entry.reply}" + (f" [{ecat}]" if ecat else ""))
        if not category and ecat:
            category = ecat
            confidence = "high" if a.status and _entry_status_ok(entry, a.status) else "medium"
    if not category and a.status and not text:
        ccat, entries = catalog_by_status(a.status)
        if ccat:
            sd = st.default_category(a.status)
            category, confidence = ccat, "high" if sd and sd[0] == ccat else "medium"
            evidence.append(f"catalog: status {a.status} is documented as {ccat} by " + ", ".join(e.key for e in entries[:4]))
            entry = entries[0] if len(entries) == 1 else None
    ctx = _receiver_context(a, text, (category, confidence, rule, entry), evidence)
    category, confidence, entry, own_meaning, status_meaning = ctx
    sdef = None if own_meaning else st.default_category(a.status)
    if a.status:
        evidence.append(f"status {a.status}: {status_meaning}")
    if a.code and a.code in _CODE_MEANING:
        evidence.append(f"reply code {a.code}: {_CODE_MEANING[a.code]}")
    if not category and sdef:
        category, confidence = sdef
    elif category and sdef and sdef[0] != category and sdef[1] == "high" and rule is not None and not rule.status and not rule.system:
        confidence = _LOWER[confidence]
        evidence.append(f"the status suggests {sdef[0]} instead")
    if not category and a.code in _CODE_DEFAULTS:
        category, confidence = _CODE_DEFAULTS[a.code]
    if not own_meaning and sdef and category == sdef[0] and st.receivers_with_own_meaning(a.status) and not (rule or entry):
        confidence = "low"      # the registry's meaning, while a receiver's own could be meant
    if not category:
        category, confidence = "undetermined", "low"
        if not (text or a.status or a.code):
            evidence.append("no reply, status code or known wording found")
        else:
            evidence.append("no rule, catalog entry or status code says what the cause is")
    underlying = ""
    if not _inner:
        category, confidence, rule, underlying = _expiry(a, human, retried, (category, confidence, rule), evidence, table)
    return _result(a, category, confidence, evidence, rule, entry, underlying, table, status_meaning)


def _receiver_context(a: Attempt, text: str, found: tuple, evidence: list[str]) -> tuple:
    """The receiver's own meaning of the status wins over the registry's and over generic wording
    (a rule or catalog entry of that same receiver stands).  Returns (category, confidence, entry,
    whether a receiver's own meaning applies, the status meaning to show)."""
    category, confidence, rule, entry = found
    if not a.status:
        return category, confidence, entry, False, ""
    same_status = bool(text) and entry is not None and _entry_status_ok(entry, a.status)   # a wording, not a bare code
    recv = rcv.identify(a, entry.system if same_status else "", entry.key if same_status else "")
    rid = recv.system if recv else ""
    candidates = st.receivers_with_own_meaning(a.status)
    if not rid and candidates:
        picked = rcv.pick_by_text(a.status, text)
        rid = picked or ""
        others = "; ".join(st.receiver_detail(a.status, r) for r in candidates)
        if picked:
            evidence.append(f"no receiver is named; the reply's words match {rid}'s own meaning of {a.status} "
                            f"({st.receiver_detail(a.status, rid)}), not the registry's ({st.describe(a.status)})")
        elif picked == "":
            evidence.append(f"no receiver is named; the reply's words match the registry's meaning of {a.status}, "
                            f"not a receiver's own ({others})")
        else:
            evidence.append(f"no receiver is named: {a.status} means {st.describe(a.status)} in the IANA registry, but "
                            f"{others}; nothing in the reply says which")
            if rule is None and not same_status:     # the category rests on the code alone
                confidence = "low" if category else confidence
                entry = None                         # no one receiver's entry speaks for a bare code
    meaning = st.describe_for(a.status, rid, () if rid else candidates)
    if not st.receiver_detail(a.status, rid):
        return category, confidence, entry, False, meaning
    if recv is not None:
        evidence.append(f"receiver {recv.name} ({recv.evidence}): its meaning of {a.status} applies")
    own = rcv.own_entries(rid, a.status)
    cats = {getattr(e, "category", "") for e in own} - {""}
    if len(cats) != 1:
        return category, confidence, entry, True, meaning
    rcat = cats.pop()
    kept = (rule is not None and rule.system == rid and rule.category == category) or \
           (entry is not None and entry.system == rid and getattr(entry, "category", "") == category)
    if category != rcat and not kept:
        if category:
            evidence.append(f"{rid} documents {a.status} as {rcat}, which wins over {category} from generic wording")
        words = _tokens(text)
        best = max(own, key=lambda e: len(words & _tokens(e.text)) + (1 if e.code == a.code else 0))
        category, confidence, entry = rcat, "high" if recv is not None else "medium", best
        evidence.append(f"catalog {best.key}: {best.reply} [{rcat}]")
    return category, confidence, entry, True, meaning


def _expiry(a: Attempt, human: str, retried: float | None, found: tuple, evidence: list[str], table) -> tuple:
    """A message that expired says so in its own text or by failing on a temporary status after
    long retries; the cause found so far then becomes the underlying one (and for an expiry read
    from the status alone, the last attempt's reply gives it).  Returns (category, confidence,
    rule, underlying)."""
    category, confidence, rule = found
    underlying = ""
    said_expired = None
    if category != "expired" and a.action != "delayed" and human.strip():
        own, memo = _bounce_text(human, False)
        said_expired = table.first(own, only=("expired",), memo=memo)
    if said_expired is not None:
        underlying = category if category != "undetermined" else ""
        evidence.append(f"rule {said_expired[0].id}: {said_expired[1].strip()[:120]!r} in the bounce's own text")
        category, confidence, rule = "expired", "high", said_expired[0]
    elif category != "expired" and a.action == "failed" and a.status.startswith("4."):
        if retried is not None and retried >= RETRY_EXPIRY:
            underlying = category if category != "undetermined" else ""
            evidence.append(f"Action: failed with the temporary status {a.status} after {retried / 3600:.0f} h of retries: "
                            "the message expired")
            category, confidence = "expired", "high" if underlying else "medium"
        else:
            span = "without retrying for long" if retried is not None else "(how long it retried is not stated)"
            evidence.append(f"Action: failed with the temporary status {a.status}: the sender gave up {span}; "
                            "the cause is the last reply's")
    elif category == "expired":
        inner = _inner_reply(a)
        if inner is not None:
            r = classify(inner, _inner=True)
            if r.category != "undetermined":
                underlying = r.category
                evidence.append(f"last attempt: {inner.reply[:200]!r} -> {r.category}")
    return category, confidence, rule, underlying


def _inner_reply(a: Attempt) -> Attempt | None:
    for m in _INNER_RE.finditer(a.diagnostic):
        frag = next(g for g in m.groups() if g)
        code, status, rest = parse_reply(frag)
        if rest and (code or status or len(rest) > 8) and "expired" not in rest.lower()[:40]:
            return Attempt(code=code, status=status, diagnostic=rest)
    return None


def _result(a, category, confidence, evidence, rule, entry, underlying, table, status_meaning: str = "") -> Result:
    cat = categories.get(category)
    agree = entry is not None and getattr(entry, "category", category) in (category, "", None)
    meaning = (rule.meaning if rule and rule.category == category and rule.meaning else "") or \
              (entry.meaning if agree else "") or cat.meaning
    fix = (rule.fix if rule and rule.category == category and rule.fix else "") or \
          (entry.fix if agree else "") or str(table.fixes.get(category, ""))
    owner = (rule.owner if rule and rule.category == category and rule.owner else "") or \
            (_owner_value(entry.owner) if agree else "") or _owner_value(cat.owner)
    checks = tuple(cat.checks)
    if underlying:
        u = categories.get(underlying)
        meaning = f"{cat.meaning} The last attempt failed with: {u.title.lower()} ({underlying})."
        fix = f"{str(table.fixes.get(underlying, ''))} Then send the message again."
        owner = _owner_value(u.owner)
        checks = tuple(dict.fromkeys(u.checks + cat.checks))
    return Result(
        attempt=a, category=category, title=cat.title, meaning=meaning, owner=owner, fix=fix, checks=checks,
        confidence=confidence, evidence=evidence, rule=rule.id if rule and rule.category == category else "",
        catalog_key=entry.key if entry is not None and agree else "", underlying=underlying,
        status_meaning=status_meaning or st.describe(a.status),
    )
