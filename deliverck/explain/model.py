"""What explain finds in a bounce (Attempt, Bounce) and what it concludes (Result, Explanation)."""

from __future__ import annotations

from dataclasses import dataclass, field

SCHEMA = "deliverck.explain/1"
NOT_A_BOUNCE = "not_a_bounce"     # the "category" of an input that reports no failed delivery (never a cause)


@dataclass
class Attempt:
    """One recipient's delivery failure as the bounce states it (all of it remote text)."""

    recipient: str = ""
    original_recipient: str = ""
    action: str = ""               # failed, delayed, ... (RFC 3464), "" when not stated
    status: str = ""               # enhanced status code, "" when none
    code: int = 0                  # SMTP reply code, 0 when none
    diagnostic: str = ""           # the reply text (or the reporting MTA's own reason), unfolded
    remote_mta: str = ""           # host that gave the reply, when named
    remote_ip: str = ""
    command: str = ""              # SMTP command the reply answered (RCPT TO, DATA, ...)
    last_attempt: str = ""
    source: str = ""               # where this was read: delivery-status, postfix, exim, ...

    @property
    def reply(self) -> str:
        return " ".join(p for p in (str(self.code) if self.code else "", self.status, self.diagnostic) if p)


@dataclass
class Bounce:
    """Everything read from one input message or pasted text."""

    kind: str = "text"             # status, reply, text, message
    format: str = ""               # rfc3464, postfix, exim, sendmail, qmail, exchange, gmail, ...
    formats: list[str] = field(default_factory=list)
    attempts: list[Attempt] = field(default_factory=list)
    reporting_mta: str = ""        # from Reporting-MTA, "This is the mail system at host X", ...
    received_from_mta: str = ""
    from_: str = ""                # From of the bounce
    to: str = ""                   # To of the bounce (the original sender)
    subject: str = ""
    date: str = ""
    arrival_date: str = ""         # Arrival-Date of the DSN
    envelope_sender: str = ""      # X-Postfix-Sender, Return-Path of the original, ...
    original_from: str = ""
    original_to: str = ""
    original_subject: str = ""
    received: list[str] = field(default_factory=list)            # the bounce's own Received fields
    original_received: list[str] = field(default_factory=list)   # Received fields of the returned message
    text: str = ""                 # the human-readable text of the bounce (bounded)
    notes: list[str] = field(default_factory=list)               # parsing notes: truncated, nested, ...
    headers: dict[str, str] = field(default_factory=dict)        # selected headers (lowercase names)
    evidence: str = ""             # what shows it is a bounce ("" for a non-bounce)
    not_bounce: str = ""           # one line: why this input is not a bounce ("" when it is one)
    not_bounce_kind: str = ""      # evidence.KINDS key: text, data, message, auto_reply, ...

    def reject(self, kind: str, reason: str) -> Bounce:
        """Mark the input as not a bounce: no attempt is classified, so no category is given."""
        self.not_bounce_kind, self.not_bounce = kind, reason
        self.attempts = []
        return self


@dataclass
class Party:
    """The reporting or receiving system."""

    system: str = ""               # id (gmail, exchange-online, postfix, ...) or ""
    name: str = ""                 # display name
    host: str = ""
    ip: str = ""
    evidence: str = ""             # what identified it

    def to_json(self) -> dict:
        return {"system": self.system or None, "name": self.name or None, "host": self.host or None,
                "ip": self.ip or None, "evidence": self.evidence or None}


@dataclass
class Result:
    """The explanation of one recipient's failure."""

    attempt: Attempt
    category: str
    title: str
    meaning: str
    owner: str
    fix: str
    checks: tuple[str, ...]
    confidence: str                # high, medium, low
    evidence: list[str]
    rule: str = ""                 # id of the rule that decided, "" if none
    catalog_key: str = ""          # catalog entry that matched, "" if none
    underlying: str = ""           # for expired: the category of the last attempt's reply
    status_meaning: str = ""

    def to_json(self) -> dict:
        a = self.attempt
        return {
            "recipient": a.recipient or None,
            "action": a.action or None,
            "reply_code": a.code or None,
            "status": a.status or None,
            "status_meaning": self.status_meaning or None,
            "reply": a.reply or None,
            "remote_mta": a.remote_mta or None,
            "remote_ip": a.remote_ip or None,
            "command": a.command or None,
            "category": self.category,
            "title": self.title,
            "meaning": self.meaning,
            "owner": self.owner,
            "fix": self.fix,
            "checks": list(self.checks),
            "confidence": self.confidence,
            "underlying": self.underlying or None,
            "rule": self.rule or None,
            "catalog_key": self.catalog_key or None,
            "evidence": list(self.evidence),
            "source": a.source or None,
        }


@dataclass
class Explanation:
    """One message (or one piece of pasted text) explained."""

    source: str                    # the path, "argument" or "stdin"
    index: int = 0                 # message number within the source (mbox), from 0
    bounce: Bounce | None = None
    results: list[Result] = field(default_factory=list)
    reporting: Party = field(default_factory=Party)
    receiving: Party = field(default_factory=Party)
    sending: Party = field(default_factory=Party)     # the server that sent the bounced message
    error: str = ""                # one line: why the input could not be read ("" when it could)

    @property
    def primary(self) -> Result | None:
        return self.results[0] if self.results else None

    @property
    def is_bounce(self) -> bool:
        return not (self.bounce is not None and self.bounce.not_bounce)

    @property
    def category(self) -> str:
        if not self.is_bounce:
            return NOT_A_BOUNCE
        return self.primary.category if self.primary else "undetermined"

    @property
    def final(self) -> bool | None:
        """False for a delivery warning (Action: delayed, RFC 3464 section 2.3.3): the sender still retries."""
        p = self.primary
        if p is None:
            return None
        return {"failed": True, "delayed": False}.get(p.attempt.action)

    @property
    def exit_code(self) -> int:
        if self.error:
            return 2
        return 1 if self.category in ("undetermined", NOT_A_BOUNCE) else 0

    def to_json(self) -> dict:
        b = self.bounce or Bounce()
        p = self.primary
        doc = {
            "schema": SCHEMA,
            "source": self.source,
            "index": self.index,
            "error": self.error or None,
            "input_kind": b.kind if not self.error else None,
            "format": b.format or None,
            "category": self.category,
            "confidence": p.confidence if p else ("low" if not self.is_bounce else None),
            "recipient": p.attempt.recipient or None if p else None,
            "status": p.attempt.status or None if p else None,
            "reply": p.attempt.reply or None if p else None,
            "reporting": self.reporting.to_json(),
            "receiving": self.receiving.to_json(),
            "sending": self.sending.to_json(),
            "sender": b.envelope_sender or b.to or None,
            "subject": b.subject or None,
            "results": [r.to_json() for r in self.results],
            "notes": list(b.notes),
            "exit_code": self.exit_code,
            # added within deliverck.explain/1 (issue 13): whether it is a bounce at all
            "not_a_bounce": {"kind": b.not_bounce_kind, "reason": b.not_bounce} if not self.is_bounce and not self.error else None,
            "bounce_evidence": b.evidence or None,
            "final": self.final,
        }
        return doc
