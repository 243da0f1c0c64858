"""Receiver context: which receiver gave a reply, and so whose meaning of its enhanced status applies.

Large receivers give some status codes meanings of their own (status.RECEIVER_DETAILS): Gmail's 5.7.29
is "not sent over TLS" where the IANA registry says "ARC validation failure".  A reply read with the
registry's meaning then sends the admin to the wrong fix, so the receiver, when the reply shows it,
decides; when nothing shows it, every meaning is listed and the reply's words pick one.
"""

from __future__ import annotations

import functools
import re
from dataclasses import dataclass

from deliverck.explain import status as st
from deliverck.explain import systems
from deliverck.explain.model import Attempt

_WORD_RE = re.compile(r"[a-z0-9]{3,}", re.I)
_DOMAIN_RE = re.compile(r"@([\w.-]+\.[a-z]{2,})", re.I)
# Words of a meaning that say nothing about which meaning it is.
_STOP = frozenset({"the", "for", "not", "and", "from", "with", "its", "this", "that", "does", "did", "was",
                   "message", "mail", "sender", "sending", "required", "record", "failure", "gmail", "yahoo",
                   "outlook", "com"})


@dataclass(frozen=True)
class Receiver:
    system: str        # a system id of deliverck/ndr/catalog.toml (gmail, yahoo, outlook-com, ...)
    name: str
    evidence: str      # what identified it, in words


@functools.cache
def _catalog_systems() -> frozenset[str]:
    try:
        from deliverck.ndr.catalog import load

        return frozenset(load().system_ids())
    except Exception:  # noqa: BLE001 - explain works without the catalog
        return frozenset()


def identify(a: Attempt, wording_system: str = "", wording_key: str = "") -> Receiver | None:
    """The receiver that gave the reply: the remote host's name, the reply's own words (`gsmtp`,
    `[TSS04]`, Outlook.com's hosts), a catalog wording of one receiver (wording_system), and, only
    when no remote host is named, the recipient's mailbox provider."""
    known = _catalog_systems()
    if a.remote_mta:
        s = systems.by_host(a.remote_mta)
        if s is not None and s.id in known:
            return Receiver(s.id, s.name, f"remote MTA {a.remote_mta}")
    hit = systems.by_text(a.diagnostic, kinds=("provider",)) if a.diagnostic else None
    if hit is not None and hit[0].id in known:
        return Receiver(hit[0].id, hit[0].name, f"{hit[1]!r} in the reply")
    if wording_system and wording_system in st.RECEIVER_DETAILS:
        s = systems.by_id(wording_system)
        return Receiver(wording_system, s.name if s else wording_system, f"the reply's wording (catalog {wording_key})")
    if not a.remote_mta:
        m = _DOMAIN_RE.search(a.recipient or "")
        s = systems.by_host(m.group(1)) if m else None
        if s is not None and s.kind == "provider" and s.id in known:
            return Receiver(s.id, s.name, f"the recipient's domain {m.group(1) if m else ''}")
    return None


@functools.lru_cache(maxsize=1024)
def own_entries(receiver: str, status: str) -> tuple:
    """The receiver's catalog entries for exactly this status, when it gives the status a meaning of its own.
    Cached: the catalog is loaded once per process and never changes, and a scan of it for a status
    cost about 2 ms, paid again by every bounce with that status (issue 16)."""
    if not status or not st.receiver_detail(status, receiver):
        return ()
    try:
        from deliverck.ndr.catalog import load

        return tuple(e for e in load().by_status(status) if e.system == receiver and e.status == status)
    except Exception:  # noqa: BLE001
        return ()


def _words(text: str) -> frozenset[str]:
    return frozenset(w.lower() for w in _WORD_RE.findall(text)) - _STOP


def pick_by_text(status: str, text: str) -> str | None:
    """With no receiver known: the receiver whose own meaning of the status the reply's words match
    better than the registry's meaning; "" when the words match the registry's better; None when the
    words match no meaning at all (nothing decides)."""
    said = _words(text)
    best, best_score = "", len(said & _words(st.describe(status)))
    for r in st.receivers_with_own_meaning(status):
        meaning = st.receiver_detail(status, r) + " " + " ".join(e.text for e in own_entries(r, status))
        score = len(said & _words(meaning))
        if score > best_score:
            best, best_score = r, score
    return best if best_score else None
