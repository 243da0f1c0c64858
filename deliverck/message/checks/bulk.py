"""Bulk-mail rules: one-click unsubscribe (RFC 8058) and the markers of bulk and automatic mail.

Since February 2024 Gmail and Yahoo require of bulk senders (5,000 or more messages a day to their
users) a one-click unsubscribe for marketing and subscribed mail: a List-Unsubscribe field with an
https URI, a List-Unsubscribe-Post field that reads exactly "List-Unsubscribe=One-Click" (RFC 8058
3.1), and both fields covered by a DKIM signature that verifies (RFC 8058 4) and whose d= aligns
with the From domain (Google "Email sender guidelines", support.google.com/a/answer/81126; Yahoo
"Sender Requirements & Recommendations", senders.yahooinc.com).  A mailto: URI alone is the old
RFC 2369 way: receivers may show it, but it is not one-click.

Whether the rule applies depends on volume, which a message does not show: with
--sender-profile bulk a missing or broken one-click unsubscribe is an error; with the default
(transactional) it is said quietly (a receipt or a password reset needs no unsubscribe), and a
message without any List-Unsubscribe is not judged at all.  Precedence (RFC 2076 3.9, RFC 3834 5)
and Auto-Submitted (RFC 3834 5) are reported as what they are.
"""

from __future__ import annotations

import re
from typing import TYPE_CHECKING

from deliverck.message.headers import values
from deliverck.model import CheckSpec, Direction, Finding, FindingSpec, Owner, Severity

if TYPE_CHECKING:
    from deliverck.message.context import MessageContext
    from deliverck.message.model import DkimSignature

OUT, NONE = Direction.OUTBOUND, Direction.NONE
ADM = Owner.MAIL_ADMIN
RULES = ("RFC 8058", "Google Email sender guidelines (bulk senders: one-click unsubscribe)",
         "Yahoo Sender Requirements (2024)")
ONE_CLICK = "List-Unsubscribe=One-Click"
_URI = re.compile(r"<([^<>]*)>")

CHECK = CheckSpec(
    id="message_bulk",
    title="Bulk-mail rules (one-click unsubscribe)",
    cause="Bulk mail without a working one-click unsubscribe (RFC 8058) covered by an aligned DKIM signature is "
          "refused or throttled by Gmail and Yahoo.",
    order=30,
    findings=(
        FindingSpec("message_bulk.one_click", Severity.INFO,
                    "one-click unsubscribe: {uri}, List-Unsubscribe-Post set, both signed by d={domain} ({aligned})",
                    "Nothing to fix.", Owner.NOBODY, NONE, refs=RULES),
        FindingSpec("message_bulk.no_unsubscribe", Severity.ERROR,
                    "no List-Unsubscribe field: bulk mail to Gmail and Yahoo needs a one-click unsubscribe",
                    "Add List-Unsubscribe: <https://.../unsubscribe?id=...> and List-Unsubscribe-Post: "
                    "List-Unsubscribe=One-Click, and sign both with DKIM (d= your From domain).",
                    ADM, OUT, refs=RULES),
        FindingSpec("message_bulk.no_https_uri", Severity.WARNING,
                    "List-Unsubscribe has no https URI ({uris}): not a one-click unsubscribe",
                    "Add an https URI that unsubscribes on a POST (RFC 8058 3.1) to List-Unsubscribe; keep the "
                    "mailto: URI beside it if you like.", ADM, OUT, refs=RULES),
        FindingSpec("message_bulk.unsubscribe_malformed", Severity.WARNING,
                    "List-Unsubscribe {value!r} holds no URI in angle brackets",
                    "Write List-Unsubscribe as a list of URIs in angle brackets (RFC 2369 3.1), e.g. "
                    "<https://example.com/u?id=1>, <mailto:u@example.com>.", ADM, OUT, refs=("RFC 2369 3.1",)),
        FindingSpec("message_bulk.no_post", Severity.ERROR,
                    "List-Unsubscribe has an https URI but there is no List-Unsubscribe-Post field: not one-click",
                    "Add List-Unsubscribe-Post: List-Unsubscribe=One-Click and sign it with DKIM.", ADM, OUT,
                    refs=RULES),
        FindingSpec("message_bulk.post_malformed", Severity.ERROR,
                    "List-Unsubscribe-Post is {value!r}, not exactly {one_click!r}",
                    "Write List-Unsubscribe-Post: List-Unsubscribe=One-Click (RFC 8058 3.1), one field, nothing "
                    "else in it.", ADM, OUT, refs=RULES),
        FindingSpec("message_bulk.not_signed", Severity.ERROR,
                    "the unsubscribe fields are not covered by a valid DKIM signature aligned with {from_domain}: "
                    "{why}",
                    "Sign with d={from_domain} (or its organizational domain) and list List-Unsubscribe and "
                    "List-Unsubscribe-Post in h= (RFC 8058 4).", ADM, OUT, refs=RULES + ("RFC 6376 5.4",)),
        FindingSpec("message_bulk.signature_unknown", Severity.ERROR,
                    "whether DKIM covers the unsubscribe fields is unknown: {why}",
                    "See the message DKIM results; retry when the key lookups answer.", Owner.NOBODY, NONE,
                    inconclusive=True),
        FindingSpec("message_bulk.precedence", Severity.INFO, "Precedence: {value} (marks {what})",
                    "Nothing to fix.", Owner.NOBODY, NONE, refs=("RFC 2076 3.9", "RFC 3834 5")),
        FindingSpec("message_bulk.auto_submitted", Severity.INFO,
                    "Auto-Submitted: {value} (an automatic message{note})",
                    "Nothing to fix.", Owner.NOBODY, NONE, refs=("RFC 3834 5",)),
    ),
)


def _values(mctx: MessageContext, name: str) -> list[str]:
    return values(mctx.parsed, name)


def _markers(mctx: MessageContext) -> list[Finding]:
    out = []
    for value in _values(mctx, "Precedence")[:1]:
        word = value.strip().lower()
        what = {"bulk": "bulk mail", "list": "mailing-list mail",
                "junk": "unimportant mail"}.get(word, "nothing standard")
        out.append(CHECK.finding("precedence", "Precedence", [f"Precedence: {value}"], value=value, what=what))
    for value in _values(mctx, "Auto-Submitted")[:1]:
        word = value.split(";")[0].strip().lower()
        if word == "no":
            continue
        note = ("; it also carries List-Unsubscribe, which automatic replies do not need"
                if word == "auto-replied" and mctx.parsed.get("List-Unsubscribe") else "")
        out.append(CHECK.finding("auto_submitted", "Auto-Submitted", [f"Auto-Submitted: {value}"], value=value,
                                 note=note))
    return out


def _covering(signatures: tuple[DkimSignature, ...]) -> tuple[DkimSignature | None, str]:
    """The passing, aligned signature whose h= lists both fields, or why there is none."""
    passing = [s for s in signatures if s.result == "pass"]
    if not signatures:
        return None, "the message has no DKIM signature"
    if not passing:
        reasons = "; ".join(f"d={s.domain} {s.result}" + (f" ({s.problem})" if s.problem else "")
                            for s in signatures[:3])
        return None, f"no DKIM signature verifies ({reasons})"
    aligned = [s for s in passing if s.aligned]
    if not aligned:
        return None, "the signatures that verify are not aligned with the From domain (d=" + \
            ", ".join(s.domain for s in passing[:3]) + ")"
    for s in aligned:
        if {"list-unsubscribe", "list-unsubscribe-post"} <= set(s.signed_headers):
            return s, ""
    missing = sorted({"list-unsubscribe", "list-unsubscribe-post"} - set(aligned[0].signed_headers))
    return None, f"the aligned signature d={aligned[0].domain} does not sign {', '.join(missing)} (h=)"


async def _one_click(mctx: MessageContext, https: str, bulk: bool) -> list[Finding]:
    auth = await mctx.auth()
    signatures: tuple[DkimSignature, ...] = tuple(auth.dkim)
    if any(s.result == "temperror" for s in signatures) and not any(s.result == "pass" and s.aligned
                                                                     for s in signatures):
        return [CHECK.finding("signature_unknown", "List-Unsubscribe", why="a DKIM key lookup failed")]
    sig, why = _covering(signatures)
    if sig is None:
        return [CHECK.finding("not_signed", "List-Unsubscribe", from_domain=mctx.from_domain or "(no From domain)",
                              why=why, severity=None if bulk else Severity.INFO)]
    return [CHECK.finding("one_click", "List-Unsubscribe", [f"DKIM-Signature d={sig.domain} s={sig.selector} "
                                                            f"h={':'.join(sig.signed_headers)}"],
                          uri=https, domain=sig.domain, aligned=f"{sig.aligned} alignment")]


async def run(mctx: MessageContext) -> list[Finding]:
    bulk = mctx.config.sender_profile == "bulk"
    quiet = None if bulk else Severity.INFO
    out = _markers(mctx)
    unsub = _values(mctx, "List-Unsubscribe")
    if not unsub:
        return out + ([CHECK.finding("no_unsubscribe", "List-Unsubscribe")] if bulk else [])
    uris = [u.strip() for v in unsub for u in _URI.findall(v)]
    if not uris:
        return out + [CHECK.finding("unsubscribe_malformed", "List-Unsubscribe", [f"List-Unsubscribe: {unsub[0]}"],
                                    value=unsub[0], severity=None if bulk else Severity.INFO)]
    https = next((u for u in uris if u.lower().startswith("https://")), "")
    if not https:
        return out + [CHECK.finding("no_https_uri", "List-Unsubscribe", [f"List-Unsubscribe: {unsub[0]}"],
                                    uris=", ".join(uris), severity=Severity.ERROR if bulk else quiet)]
    post = _values(mctx, "List-Unsubscribe-Post")
    if not post:
        return out + [CHECK.finding("no_post", "List-Unsubscribe-Post", [f"List-Unsubscribe: {unsub[0]}"],
                                    severity=quiet)]
    if len(post) > 1 or post[0].strip() != ONE_CLICK:
        return out + [CHECK.finding("post_malformed", "List-Unsubscribe-Post",
                                    [f"List-Unsubscribe-Post: {p}" for p in post], value=" / ".join(post),
                                    one_click=ONE_CLICK, severity=quiet)]
    return out + await _one_click(mctx, https, bulk)
