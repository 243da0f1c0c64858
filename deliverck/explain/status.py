"""Enhanced status codes (RFC 3463): parsing, the garbled forms of the seeds, and meanings.

The seeds were machine-rewritten ("four.three.ii" is 4.3.2, "v.7.one" is
5.7.1): `normalise_garbled` turns such tokens back into digits before any
other parsing.  `default_category` gives the category an enhanced status
implies on its own (RFC 3463 subject/detail), with a confidence; codes that
need the reply text to say anything (X.7.1, X.5.x, ...) give undetermined.
"""

from __future__ import annotations

import re

_WORDS = {
    "zero": 0, "one": 1, "two": 2, "three": 3, "four": 4, "five": 5, "six": 6, "seven": 7,
    "eight": 8, "nine": 9, "ten": 10, "eleven": 11, "twelve": 12, "thirteen": 13,
    "fourteen": 14, "fifteen": 15, "sixteen": 16, "seventeen": 17, "eighteen": 18,
    "nineteen": 19, "twenty": 20, "xx": 20, "thirty": 30, "forty": 40, "fifty": 50,
    "sixty": 60, "seventy": 70, "eighty": 80, "ninety": 90, "hundred": 100,
}
_ROMAN = {"i": 1, "ii": 2, "iii": 3, "iv": 4, "v": 5, "vi": 6, "vii": 7, "viii": 8, "ix": 9, "x": 10,
          "xi": 11, "xii": 12, "xiii": 13, "xiv": 14, "xv": 15, "xvi": 16, "xvii": 17, "xviii": 18,
          "xix": 19}
_TOKEN = r"(?:\d{1,3}|" + "|".join(sorted(list(_WORDS) + list(_ROMAN), key=len, reverse=True)) + r")"
# The lookahead (every token is at most 9 word characters) lets the alternation of 70 tokens be
# tried only where three dotted words start, not at the start of every word.
_GARBLED_RE = re.compile(rf"(?<![\w.])(?=\w{{1,9}}\.\w{{1,9}}\.\w)({_TOKEN})\.({_TOKEN})\.({_TOKEN})(?![\w]|\.\w)", re.I)
_LETTER_RE = re.compile(r"[^\W\d_]")
# Reply codes garbled the same way in front of a status: "432 four.three.ii".
_STATUS_RE = re.compile(r"(?<![\d.])([245])\.(\d{1,3})\.(\d{1,3})(?![\d]|\.\d)")


def _num(tok: str) -> int | None:
    t = tok.lower()
    if t.isdigit():
        return int(t)
    if t in _WORDS:
        return _WORDS[t]
    return _ROMAN.get(t)


def normalise_garbled(text: str) -> str:
    """'four.three.ii' -> '4.3.2', 'v.7.one' -> '5.7.1'; plain text is left alone."""

    def fix(m: re.Match) -> str:
        parts = [_num(g) for g in m.groups()]
        if any(p is None for p in parts) or parts[0] not in (2, 4, 5):
            return m.group(0)
        if all(g.isdigit() for g in m.groups()):
            return m.group(0)
        return ".".join(str(p) for p in parts)

    if not _LETTER_RE.search(text):     # digits only: nothing garbled (a quick test, not a loop per character)
        return text
    return _GARBLED_RE.sub(fix, text)


def find_status(text: str) -> str:
    """The first enhanced status code in text ("5.1.1"), or ""."""
    m = _STATUS_RE.search(text)
    return ".".join(m.groups()) if m else ""


def is_status(text: str) -> bool:
    return bool(re.fullmatch(r"[245]\.\d{1,3}\.\d{1,3}", text))


CLASSES = {"2": "success", "4": "temporary failure", "5": "permanent failure"}

# RFC 3463 (and the codes added later: RFC 3886, 4468, 4865, 4954, 5248, 6710,
# 7293, 7372, 7505, 8098): subject.detail -> description.
DETAILS = {
    "0.0": "other undefined status",
    "1.0": "other address status", "1.1": "bad destination mailbox address",
    "1.2": "bad destination system address", "1.3": "bad destination mailbox address syntax",
    "1.4": "destination mailbox address ambiguous", "1.5": "destination address valid",
    "1.6": "destination mailbox has moved, no forwarding address",
    "1.7": "bad sender's mailbox address syntax", "1.8": "bad sender's system address",
    "1.9": "message relayed to non-compliant mailer", "1.10": "recipient address has null MX",
    "2.0": "other or undefined mailbox status", "2.1": "mailbox disabled, not accepting messages",
    "2.2": "mailbox full", "2.3": "message length exceeds administrative limit",
    "2.4": "mailing list expansion problem",
    "3.0": "other or undefined mail system status", "3.1": "mail system full",
    "3.2": "system not accepting network messages", "3.3": "system not capable of selected features",
    "3.4": "message too big for system", "3.5": "system incorrectly configured",
    "3.6": "requested priority was changed",
    "4.0": "other or undefined network or routing status", "4.1": "no answer from host",
    "4.2": "bad connection", "4.3": "directory server failure", "4.4": "unable to route",
    "4.5": "mail system congestion", "4.6": "routing loop detected", "4.7": "delivery time expired",
    "5.0": "other or undefined protocol status", "5.1": "invalid command", "5.2": "syntax error",
    "5.3": "too many recipients", "5.4": "invalid command arguments", "5.5": "wrong protocol version",
    "5.6": "authentication exchange line is too long",
    "6.0": "other or undefined media error", "6.1": "media not supported",
    "6.2": "conversion required and prohibited", "6.3": "conversion required but not supported",
    "6.4": "conversion with loss performed", "6.5": "conversion failed",
    "6.6": "message content not available", "6.7": "non-ASCII addresses not permitted",
    "6.8": "UTF-8 string reply is required", "6.9": "UTF-8 header message cannot be transferred",
    "7.0": "other or undefined security status", "7.1": "delivery not authorized, message refused",
    "7.2": "mailing list expansion prohibited", "7.3": "security conversion required but not possible",
    "7.4": "security features not supported", "7.5": "cryptographic failure",
    "7.6": "cryptographic algorithm not supported", "7.7": "message integrity failure",
    "7.8": "authentication credentials invalid", "7.9": "authentication mechanism is too weak",
    "7.10": "encryption needed", "7.11": "encryption required for requested authentication mechanism",
    "7.12": "a password transition is needed", "7.13": "user account disabled",
    "7.14": "trust relationship required", "7.15": "priority level is too low",
    "7.16": "message is too big for the specified priority", "7.17": "mailbox owner has changed",
    "7.18": "domain owner has changed", "7.19": "RRVS test cannot be completed",
    "7.20": "no passing DKIM signature found", "7.21": "no acceptable DKIM signature found",
    "7.22": "no valid author-matched DKIM signature found", "7.23": "SPF validation failed",
    "7.24": "SPF validation error", "7.25": "reverse DNS validation failed",
    "7.26": "multiple authentication checks failed", "7.27": "sender address has null MX",
    "7.28": "mail flood detected", "7.29": "ARC validation failure", "7.30": "REQUIRETLS support required",
}

# subject.detail -> (category, confidence) implied by the code alone.
DEFAULTS: dict[str, tuple[str, str]] = {
    "1.1": ("user_unknown", "high"), "1.2": ("host_unknown", "high"), "1.3": ("user_unknown", "medium"),
    "1.4": ("user_unknown", "low"), "1.6": ("user_unknown", "medium"), "1.7": ("sender_rejected", "medium"), "1.8": ("sender_rejected", "medium"),
    "1.10": ("no_mail_accepted", "high"),
    "2.1": ("mailbox_disabled", "high"), "2.2": ("mailbox_full", "high"), "2.3": ("message_too_large", "high"),
    "3.1": ("mailbox_full", "low"), "3.2": ("no_mail_accepted", "medium"), "3.4": ("message_too_large", "high"),
    "4.0": ("network", "low"), "4.1": ("network", "medium"), "4.2": ("network", "medium"),
    "4.3": ("host_unknown", "low"), "4.4": ("host_unknown", "medium"), "4.5": ("rate_limited", "medium"),
    "4.6": ("network", "medium"), "4.7": ("expired", "high"),
    "5.3": ("rate_limited", "medium"),
    "6.0": ("content_rejected", "low"), "6.1": ("content_rejected", "medium"),
    "6.2": ("content_rejected", "medium"), "6.3": ("content_rejected", "medium"),
    "6.5": ("content_rejected", "low"), "6.6": ("content_rejected", "low"),
    "6.7": ("content_rejected", "medium"), "6.9": ("content_rejected", "medium"),
    "7.4": ("tls", "medium"), "7.5": ("tls", "medium"), "7.6": ("tls", "medium"), "7.7": ("content_rejected", "low"),
    "7.10": ("tls", "medium"), "7.11": ("tls", "medium"), "7.13": ("mailbox_disabled", "medium"),
    "7.16": ("message_too_large", "medium"), "7.17": ("user_unknown", "medium"), "7.18": ("user_unknown", "medium"),
    "7.20": ("auth_dmarc", "high"), "7.21": ("auth_dmarc", "high"), "7.22": ("auth_dmarc", "high"),
    "7.23": ("auth_spf", "high"), "7.24": ("auth_spf", "high"), "7.25": ("reverse_dns", "high"),
    "7.26": ("auth_dmarc", "high"), "7.28": ("rate_limited", "medium"), "7.29": ("auth_dmarc", "medium"),
    "7.30": ("tls", "medium"),
}


# subject.detail -> meaning, per receiver (catalog system id), where a large receiver gives a code a
# meaning of its own: a detail the IANA registry assigns to something else (Gmail's X.7.27-X.7.30,
# Yahoo's X.7.9) or one it does not register (Gmail's X.7.40, Outlook.com's X.7.515).  When the reply
# shows the receiver, its meaning wins (deliverck/explain/classify.py).  Sources: Google Workspace Admin
# Help "Gmail SMTP errors and codes" (support.google.com/a/answer/3726730); Yahoo Sender Hub "SMTP error
# codes" (senders.yahooinc.com/error-codes); support.microsoft.com "Fix NDR error 550 5.7.515 in
# Outlook.com"; gathered in the project's reference on receiver rules since 2024.
RECEIVER_DETAILS: dict[str, dict[str, str]] = {
    "gmail": {
        "7.23": "no PTR record for the sending IP, or it does not resolve back to it (Gmail)",
        "7.25": "no PTR record for the sending IP, or it does not resolve back to it (Gmail)",
        "7.26": "unauthenticated: neither SPF nor DKIM passes, or the DMARC policy rejects (Gmail)",
        "7.27": "SPF did not pass (Gmail's sender requirements)",
        "7.28": "rate limited: the sender does not meet Gmail's sender requirements (Gmail)",
        "7.29": "message not sent over TLS (Gmail)",
        "7.30": "DKIM did not pass (Gmail's sender requirements)",
        "7.31": "no DMARC record for the sender's domain (Gmail, older code)",
        "7.40": "no usable DMARC record for the sender's domain (Gmail)",
        "7.32": "From domain not aligned with the SPF or DKIM domain (Gmail)",
    },
    "yahoo": {
        "7.9": "not accepted for policy reasons; DMARC policy rejection or unauthenticated sender (Yahoo)",
    },
    "outlook-com": {
        "7.515": "sending domain does not meet the required authentication level: SPF, DKIM, DMARC (Outlook.com)",
    },
}


def receiver_detail(status: str, receiver: str) -> str:
    """The receiver's own meaning of a status, or "" when it has none of its own."""
    return RECEIVER_DETAILS.get(receiver, {}).get(split(status)[1], "") if status else ""


def receivers_with_own_meaning(status: str) -> tuple[str, ...]:
    """Receivers that give this status a meaning of their own (an ambiguity when no receiver is known)."""
    sd = split(status)[1] if status else ""
    return tuple(r for r, table in RECEIVER_DETAILS.items() if sd in table)


def describe_for(status: str, receiver: str = "", candidates: tuple[str, ...] = ()) -> str:
    """The meaning of a status as the receiver uses it: its own meaning first with the registry's
    beside it, or, when no receiver is known, every meaning it can have."""
    base = describe(status)
    own = receiver_detail(status, receiver)
    cls = CLASSES.get(split(status)[0], "")
    if own:
        return f"{cls}: {own}; the IANA registry: {base.split(': ', 1)[-1]}"
    others = [receiver_detail(status, r) for r in candidates if receiver_detail(status, r)]
    if others:
        return f"{base} (IANA registry); or, from a receiver with its own meaning: " + "; ".join(others)
    return base


def split(status: str) -> tuple[str, str]:
    """'5.1.10' -> ('5', '1.10')."""
    cls, _, rest = status.partition(".")
    return cls, rest


def describe(status: str) -> str:
    """'5.1.1' -> 'permanent failure: bad destination mailbox address'."""
    if not status:
        return ""
    cls, sd = split(status)
    what = CLASSES.get(cls, "")
    detail = DETAILS.get(sd)
    if detail is None:
        subject = sd.split(".")[0]
        base = DETAILS.get(f"{subject}.0", "")
        detail = f"{base}; detail {sd.split('.')[-1]} is system-specific" if base else "unregistered code"
    return f"{what}: {detail}" if what else detail


def default_category(status: str) -> tuple[str, str] | None:
    if not status:
        return None
    _, sd = split(status)
    return DEFAULTS.get(sd)

