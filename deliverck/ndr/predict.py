"""Findings -> the NDRs receivers would return, for a chosen set of receiver systems.

Which finding predicts which reply is decided by the catalog alone (each
entry's `findings`, plus any catalog keys a finding carries in `ndr`).
Inconclusive findings take part: a lookup that timed out for deliverck times
out for senders too, and that means deferrals and, later, expiry NDRs.
"""

from __future__ import annotations

import dataclasses
import ipaddress
import re
from collections.abc import Iterable, Mapping, Sequence
from typing import Any

from deliverck.model import Direction, Finding, Likelihood, NdrPrediction, Owner, Severity
from deliverck.ndr.catalog import ENTRY_DIRECTIONS, Catalog, CatalogEntry, load, reply_line, status_key
from deliverck.text import safe as clean

_PLACEHOLDER_RE = re.compile(r"\{([a-z_]+)\}")
_IP_ARGS = ("ip", "address", "addresses", "addr")
_HOST_ARGS = ("host", "ptr_name", "target", "ptr", "name")
# Shown for a placeholder that neither the causing finding nor the entry's
# examples fill: words a reader takes as a description, never a template.
_STAND_INS = {"ip": "its address", "host": "the mail host", "helo": "its HELO name",
              "zone": "the block list", "greeting": "its greeting reply"}
# Placeholders filled verbatim from the causing finding's argument of that name.
_ARG_PLACEHOLDERS = ("helo", "zone", "greeting")
_DIRECTION_ORDER = {d: i for i, d in enumerate(ENTRY_DIRECTIONS)}


def predict(
    findings: Iterable[Finding],
    receivers: Sequence[str],
    *,
    domain: str,
    sender: str | None = None,
    catalog: Catalog | None = None,
    sender_profile: str = "",
) -> tuple[NdrPrediction, ...]:
    """One prediction per reply a receiver would give; see `predict_links`."""
    return predict_links(list(findings), receivers, domain=domain, sender=sender, catalog=catalog,
                         sender_profile=sender_profile)[0]


def predict_links(
    findings: Sequence[Finding],
    receivers: Sequence[str],
    *,
    domain: str,
    sender: str | None = None,
    catalog: Catalog | None = None,
    sender_profile: str = "",
) -> tuple[tuple[NdrPrediction, ...], list[tuple[str, ...]]]:
    """The predictions, and for each finding (same order) the keys of the
    predictions it causes, so that a finding and its NDRs can be shown together.

    Entries of the selected receivers are used; entries of fallback systems
    (generic RFC classes) are used too when selected, or for a (finding,
    direction) that no selected system covers.  A prediction names the owner
    of the finding that causes it, so the two never disagree on who must act;
    findings of different owners or likelihoods give separate rows.

    sender_profile ("transactional", "bulk"; "" = not known): an entry the receiver documents for
    bulk senders only (`profile = "bulk"`) keeps its likelihood for a bulk sender and is `may`,
    with the entry's condition in words, for anyone else: volume is what deliverck cannot see.
    """
    cat = catalog or load()
    known = set(cat.system_ids())
    for r in receivers:
        if r not in known:
            raise ValueError(f"unknown receiver system {r!r} (known: {', '.join(cat.system_ids())})")
    selected = set(receivers)
    fallback = set(cat.fallback_receivers()) - selected

    groups: dict[tuple[str, Owner, Likelihood], list[int]] = {}
    for i, f in enumerate(findings):
        for e in _entries_for(cat, f, selected, fallback):
            group = groups.setdefault((e.key, f.owner, _likelihood(e, f, sender_profile)), [])
            if all(findings[j] is not f for j in group):
                group.append(i)

    rows: dict[tuple, NdrPrediction] = {}
    row_of: dict[tuple[str, Owner, Likelihood], tuple] = {}
    for gkey in sorted(groups, key=lambda g: (g[0], g[1].value, g[2].value)):
        key, owner, likely = gkey
        fs = [findings[j] for j in groups[gkey]]
        p = _prediction(cat, cat.entry(key), fs, owner, likely, domain, sender, sender_profile)
        # One row per reply a user would see: entries that render to the same
        # reply from the same system (an open relay and the listing it caused) merge.
        rkey = (p.system, p.direction, p.code, p.status, p.reply, p.owner, p.likelihood, p.condition)
        q = rows.get(rkey)
        rows[rkey] = p if q is None else dataclasses.replace(
            q,
            caused_by=tuple(dict.fromkeys(q.caused_by + p.caused_by)),
            subjects=tuple(dict.fromkeys(q.subjects + p.subjects)),
        )
        row_of[gkey] = rkey

    links: list[list[str]] = [[] for _ in findings]
    for gkey, members in groups.items():
        final = rows[row_of[gkey]].key
        for j in members:
            if final not in links[j]:
                links[j].append(final)

    out = list(rows.values())
    out.sort(key=lambda p: (
        _DIRECTION_ORDER.get(p.direction, len(_DIRECTION_ORDER)),
        cat.system_order(p.system),
        status_key(p.status),
        p.code,
        p.key,
        p.likelihood != Likelihood.WILL,
        p.owner.value,
    ))
    order = {p.key: i for i, p in enumerate(out)}
    return tuple(out), [tuple(sorted(ks, key=lambda k: order.get(k, 0))) for ks in links]


# Said of a prediction whose cause deliverck could not settle (a lookup failed
# for it): the reply follows only if senders meet the same failure.
_UNSETTLED = "only if senders meet the failure deliverck met (it could not finish this check)"


def _likelihood(e: CatalogEntry, f: Finding, profile: str) -> Likelihood:
    return Likelihood.MAY if f.inconclusive else e.likelihood_for(f.id, profile)


def _condition(e: CatalogEntry, fs: Sequence[Finding], likely: Likelihood, profile: str) -> str:
    if likely is Likelihood.WILL:
        return ""
    if all(f.inconclusive for f in fs):
        own = e.condition if e.likelihood_for(fs[0].id, profile) is Likelihood.MAY else ""
        return f"{own}; and {_UNSETTLED}" if own else _UNSETTLED
    return e.condition or _UNSETTLED


def _entries_for(cat: Catalog, f: Finding, selected: set[str], fallback: set[str]) -> list[CatalogEntry]:
    candidates = list(cat.by_finding(f.id))
    for key in f.ndr:
        if cat.has_entry(key):
            e = cat.entry(key)
            if e not in candidates:
                candidates.append(e)
    if f.severity == Severity.INFO:
        candidates = [e for e in candidates if e.predict_at_info]
    candidates = [e for e in candidates if e.applies_to(f.id, f.args)]
    family = _family(_ip_of(f))
    candidates = [e for e in candidates if not e.family or e.family == family]
    chosen = [e for e in candidates if e.system in selected]
    covered = {e.direction for e in chosen}
    chosen += [e for e in candidates if e.system in fallback and e.direction not in covered]
    return chosen


def _prediction(
    cat: Catalog, e: CatalogEntry, fs: list[Finding], owner: Owner, likely: Likelihood,
    domain: str, sender: str | None, profile: str,
) -> NdrPrediction:
    first = fs[0]
    values = {
        **_STAND_INS,
        **e.examples,
        "domain": domain,
        "recipient": f"postmaster@{domain}",
        "sender": sender or f"postmaster@{domain}",
    }
    ip = _ip_of(first)
    if ip:
        values["ip"] = ip
    host = _host_of(first, domain)
    if host:
        values["host"] = host
    for name in _ARG_PLACEHOLDERS:
        if first.args.get(name):
            values[name] = str(first.args[name])
    return NdrPrediction(
        key=e.key,
        system=e.system,
        system_name=cat.system(e.system).name,
        code=e.code,
        status=e.status,
        reply=render(reply_line(e.code, e.status, e.text), values),
        text=e.meaning,
        direction=e.direction if isinstance(e.direction, Direction) else Direction.NONE,
        owner=owner,
        fix=e.fix,
        caused_by=tuple(dict.fromkeys(f.id for f in fs)),
        subjects=tuple(dict.fromkeys(clean(f.subject) for f in fs)),
        source=e.source,
        likelihood=likely,
        condition=_condition(e, fs, likely, profile),
    )


def render(template: str, values: Mapping[str, Any]) -> str:
    """Fill {name} placeholders; a placeholder without a value stays as written."""

    def sub(m: re.Match[str]) -> str:
        name = m.group(1)
        return clean(str(values[name])) if name in values else m.group(0)

    return clean(_PLACEHOLDER_RE.sub(sub, template))


def _arg(f: Finding, names: Sequence[str]) -> str:
    for n in names:
        v = f.args.get(n)
        if isinstance(v, (list, tuple)):
            v = v[0] if v else None
        if isinstance(v, str) and "," in v:
            v = v.split(",", 1)[0].strip()
        if v not in (None, ""):
            return str(v).rstrip(".") if n in _HOST_ARGS else str(v)
    return ""


def _ip_of(f: Finding) -> str:
    ip = _arg(f, _IP_ARGS)
    if ip:
        return ip
    return f.subject if _family(f.subject) else ""


def _host_of(f: Finding, domain: str) -> str:
    """The host a finding is about; a finding about the domain itself names none."""
    host = _arg(f, _HOST_ARGS)
    if host:
        return host
    subject = f.subject.rstrip(".")
    if not subject or _family(subject) or subject.lower() == domain.rstrip(".").lower():
        return ""
    return subject


def _family(text: str) -> str:
    try:
        return "ipv6" if ipaddress.ip_address(text.strip("[]")).version == 6 else "ipv4"
    except ValueError:
        return ""
