"""Send queued newsletters and record what the receiving servers answered.

A reply such as 550 5.1.1 means the address is gone; 4xx replies are retried.
Receivers that answer "Undelivered Mail Returned to Sender" style bounces later
are matched by Message-ID in bounces.py.
"""

import smtplib
from dataclasses import dataclass

PERMANENT = {"5.1.1": "no such user", "5.2.2": "mailbox full", "5.7.1": "refused by policy"}
RETRY_AFTER = 900  # seconds; version 4.4.7 of the queue format


@dataclass
class Outcome:
    code: int
    status: str
    text: str


def deliver(host: str, sender: str, rcpt: str, body: bytes) -> Outcome:
    with smtplib.SMTP(host, 25, timeout=30) as s:
        s.ehlo("mail.example.org")
        code, text = s.mail(sender)
        if code >= 400:
            return Outcome(code, "", text.decode())
        code, text = s.rcpt(rcpt)
        # e.g. said: 550 5.1.1 <jane@example.net>: Recipient address rejected
        return Outcome(code, text.decode()[:5], text.decode())


def classify(o: Outcome) -> str:
    if o.code >= 500:
        return PERMANENT.get(o.status, "permanent")
    return "retry" if o.code >= 400 else "ok"


if __name__ == "__main__":
    print(classify(Outcome(550, "5.1.1", "550 5.1.1 User unknown")))
