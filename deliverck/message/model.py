"""The data of a message audit.  Frozen dataclasses, like deliverck.model.

Everything the envelope says is a *claim* with the place it was read from: only `deliverck
listen` sees the real connection (source "SMTP session"); a command-line option is the user's
statement; a header (Return-Path, Received) is what some server wrote, not a proof.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

# Sources of a claim, as the report names them (JSON `message.envelope.*.source` starts with one of these).
FROM_SESSION = "SMTP session"           # listen: seen on the connection itself
FROM_OPTION = "option"                  # --ip / --helo / --mail-from ("option --ip")
FROM_HEADER = "header"                  # "header Return-Path", "header Received #1 (by mx.example.net)"

MAX_MESSAGE_BYTES = 25 * 1024 * 1024    # one message, as read from a file or received by listen


@dataclass(frozen=True)
class Claim:
    value: str
    source: str             # "SMTP session", "option --ip", "header Return-Path", "header Received #1 (by mx.example.net)"
    proven: bool = False    # True only for what deliverck itself saw (listen) or the user stated (an option)


@dataclass(frozen=True)
class Envelope:
    """What the receiving server saw, or what the message claims it saw.  None: nobody says."""

    ip: Claim | None = None
    helo: Claim | None = None
    mail_from: Claim | None = None      # value "" is the null sender <>
    rcpt: tuple[str, ...] = ()


@dataclass(frozen=True)
class Session:
    """The real SMTP session `deliverck listen` took the message from."""

    peer_ip: str
    peer_port: int
    helo: str                   # the name in HELO/EHLO, exactly as sent (may be a literal or odd)
    esmtp: bool                 # EHLO (True) or HELO
    tls_version: str            # "TLSv1.3", or "" when STARTTLS was not used
    tls_cipher: str             # "TLS_AES_256_GCM_SHA384", or ""
    mail_from: str              # "" for the null sender
    rcpt: tuple[str, ...]
    received_at: str            # RFC 3339 UTC
    local_address: str = ""     # where listen was bound ("192.0.2.25:25")
    smtputf8: bool = False      # MAIL FROM carried SMTPUTF8 (RFC 6531): UTF-8 header fields are allowed


@dataclass(frozen=True)
class Message:
    """One message as bytes, exactly as read or received (DKIM needs the exact bytes)."""

    raw: bytes
    label: str                              # "FILE", "-" (stdin), "MBOX#3", "DIR/NAME", "listen"
    notes: tuple[str, ...] = ()             # what reading noticed (truncated, CRLF converted, ...)
    truncated: bool = False                 # only the first MAX_MESSAGE_BYTES were kept


@dataclass(frozen=True)
class Hop:
    """One Received header field, parsed (RFC 5321 4.4; the clauses real MTAs write)."""

    index: int                  # 1 = topmost (the last hop, added by the final receiver)
    from_name: str = ""         # the name the client gave (HELO), "" when absent
    from_rdns: str = ""         # the name the receiver looked up, when written
    from_ip: str = ""           # the client's address, when written
    by: str = ""
    with_: str = ""             # "ESMTPS", "ESMTPSA", "SMTP", "LMTP", "HTTP", ...
    tls: str = ""               # "TLSv1.3", "TLS1_3", ... when the header says; "" when it does not
    encrypted: bool | None = None   # True: ESMTPS/TLS stated; False: plain (E)SMTP stated; None: unknown
    date: str = ""              # RFC 3339 UTC of the header's date, "" when it has none or cannot be parsed
    raw: str = ""               # the field's value, unfolded


@dataclass(frozen=True)
class MessageInfo:
    """The `message` member of a report (JSON schema: docs/report.schema.json, `message`)."""

    label: str
    size: int
    from_: tuple[str, ...] = ()         # the addresses of the From field(s), as written
    from_domain: str = ""               # the RFC5322.From domain deliverck judged, "" when none
    subject: str = ""
    message_id: str = ""
    date: str = ""
    envelope: Envelope = field(default_factory=Envelope)
    session: Session | None = None
    hops: tuple[Hop, ...] = ()
    notes: tuple[str, ...] = ()
    # DKIM per signature, ARC, SPF and DMARC under both rule sets, as plain data (message.auth.summary);
    # None when authentication could not be computed (its checks then report why).
    authentication: Mapping[str, Any] | None = None


@dataclass(frozen=True)
class DkimSignature:
    """One DKIM-Signature field, verified (auth.py).  The message checks read these."""

    index: int                          # 0 = topmost DKIM-Signature field
    domain: str                         # d=, lower-case, "" when unreadable
    selector: str                       # s=
    algorithm: str                      # a=, e.g. "rsa-sha256"
    result: str                         # RFC 8601 words: "pass", "fail", "neutral", "policy", "temperror", "permerror"
    problem: str = ""                   # machine word when not pass: "body_hash", "signature", "no_key", "revoked",
                                        # "key_syntax", "expired", "future", "sha1", "key_too_short", "syntax",
                                        # "temperror", "from_not_signed"
    reason: str = ""                    # one line for a person
    signed_headers: tuple[str, ...] = ()    # h=, lower-case, in order (duplicates kept)
    length_limit: int | None = None     # l=, None when absent
    key_bits: int = 0                   # RSA modulus size (0: ed25519 or unknown)
    aligned: str = ""                   # "strict" or "relaxed" when d= aligns with the From domain, else ""
    key_record: str = ""                # the TXT record used (evidence)
    body_unsigned: int = 0              # l= in use: canonical body bytes after the signed length (appended)
