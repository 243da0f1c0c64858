"""The human-readable bounces of further MTAs and filters, each read by its own extractor: Courier,
Oracle/Sun Messaging Server, Ipswitch IMail, Apache James, MailMarshal, DragonFly Mail Agent,
OpenSMTPD, MailFoundry, Trend Micro InterScan and m-FILTER.

Most of these name the failed recipient in a layout of their own and quote the remote reply
after a label; without an extractor, a reply that quotes the *sender's* address ("<alice@...>
sender rejected") would be read as naming the recipient.  Layouts as the products write them:
Courier's courierdsn ("Your message to the following recipients cannot be delivered"), Sun/Oracle
Messaging Server ("Recipient address: / Reason: / Diagnostic code:"), IMail ("Unknown user:",
"Delivery failed N attempts:"), James's bounce mailet ("Failed recipient(s):" / "Error message:"),
MailMarshal ("Could not be delivered because of ... The following recipients were affected"),
dma's bounce.c ("There was an error delivering your mail to <r>."), OpenSMTPD's bounce.c ("r:
reason" after "the following list of recipients"), MailFoundry ("Unable to deliver message to:"),
InterScan ("Sent <<< RCPT TO:" / "Received >>>") and m-FILTER ("-------server message-------").

Every pattern here runs in time linear in the text it sees: formats.py's docstring says how.
"""

from __future__ import annotations

import itertools
import re

from deliverck.explain.model import Attempt
from deliverck.explain.replies import ADDR, MAX_ATTEMPTS, attempt, unwrap

# Courier: "<rcpt>:\n    host [ip]:\n>>> COMMAND\n<<< reply" (reply lines may repeat "<<< ").
_COURIER_BLOCK_RE = re.compile(r"(?m)^<(" + ADDR + r")>:[ \t]*+\n((?:[^\S\n]*+(?:\S[^\n]*+)?\n){0,3}?)((?:<<<[^\n]*+\n?){1,20})")
_COURIER_HOST_RE = re.compile(r"^[ \t]*+([\w.-]++) \[([^\]\n]{1,255}+)\]:", re.M)
_COURIER_CMD_RE = re.compile(r">>> ([A-Z][A-Z ]{1,12}+)")


def courier(text: str) -> tuple[list[Attempt], dict]:
    out = []
    for b in itertools.islice(_COURIER_BLOCK_RE.finditer(text), MAX_ATTEMPTS):
        kw: dict = {}
        h = _COURIER_HOST_RE.search(b.group(2))
        if h:
            kw = dict(remote_mta=h.group(1), remote_ip=h.group(2))
        c = _COURIER_CMD_RE.search(b.group(2))
        if c:
            kw["command"] = c.group(1).strip()
        reply = " ".join(ln[3:].strip() for ln in b.group(3).splitlines())
        out.append(attempt(b.group(1), reply, "courier", **kw))
    return out, {}


# Sun/Oracle: "Recipient address: r" then "Reason:", "Diagnostic code: smtp;reply", "Remote system: dns;host (...)".
_SUN_BLOCK_RE = re.compile(r"(?m)^[ \t]*+Recipient address:[ \t]*+(\S++)[ \t]*+\n((?:[ \t]++(?!Recipient address:)\S[^\n]*+\n?){0,12})")
_SUN_FIELD_RE = re.compile(r"(?m)^[ \t]*+(Original address|Reason|Diagnostic code|Remote system):[ \t]*+([^\n]*+)")


def sun_messaging(text: str) -> tuple[list[Attempt], dict]:
    out = []
    for b in itertools.islice(_SUN_BLOCK_RE.finditer(text), MAX_ATTEMPTS):
        fields = {k.lower(): v.strip() for k, v in _SUN_FIELD_RE.findall(b.group(2))}
        diag = fields.get("diagnostic code", "") or fields.get("reason", "")
        kw: dict = {}
        remote = fields.get("remote system", "")
        if remote:
            kw["remote_mta"] = remote.split(";", 1)[-1].split(" ", 1)[0].strip()
        out.append(attempt(b.group(1).strip("<>"), diag, "sun-messaging", **kw))
    return out, {}


# IMail: "Unknown user: r", "Delivery failed N attempts: r" (then "Last error: reply", if any).
_IMAIL_RE = re.compile(r"(?m)^[ \t]*+(Unknown user|Delivery failed \d{1,4} attempts|User mailbox exceeds allowed size|"
                       r"Requested action not taken: mailbox unavailable)[ \t]*+:[ \t]*+<?(" + ADDR + ")")
_IMAIL_LAST_RE = re.compile(r"(?m)^[ \t]*+(?:Last error|SMTP error|Error)[ \t]*+:[ \t]*+([^\n]{3,600}+)")


def imail(text: str) -> tuple[list[Attempt], dict]:
    last = _IMAIL_LAST_RE.search(text)
    out = []
    for m in itertools.islice(_IMAIL_RE.finditer(text), MAX_ATTEMPTS):
        diag = last.group(1) if last else m.group(1)
        out.append(attempt(m.group(2), diag, "imail"))
    return out, {}


# Apache James: "Failed recipient(s):\nr\n[r...]\n\nError message:\nreply".
_JAMES_RCPT_RE = re.compile(r"Failed recipient\(s\):[ \t]*+\n((?:[ \t]*+\S[^\n]*+\n){1,50})")
_JAMES_ERROR_RE = re.compile(r"Error message:[ \t]*+\n((?:[ \t]*+\S[^\n]*+\n?){1,12})")


def james(text: str) -> tuple[list[Attempt], dict]:
    r = _JAMES_RCPT_RE.search(text)
    e = _JAMES_ERROR_RE.search(text)
    if r is None:
        return [], {}
    diag = unwrap(e.group(1)) if e else ""
    rcpts = [x for x in (ln.strip().strip("<>") for ln in r.group(1).splitlines()) if "@" in x]
    return [attempt(x, diag, "james") for x in rcpts[:MAX_ATTEMPTS]], {}


# MailMarshal: "Could not be delivered because of\n\nreply\n\nThe following recipients were affected:\n    r".
_MM_REASON_RE = re.compile(r"Could not be delivered because of[ \t]*+\n\s*+((?:[ \t]*+\S[^\n]*+\n?){1,12})", re.I)
_MM_RCPT_RE = re.compile(r"The following recipients were affected:[ \t]*+\n((?:[ \t]*+\S[^\n]*+\n?){1,50})", re.I)


def mailmarshal(text: str) -> tuple[list[Attempt], dict]:
    why = _MM_REASON_RE.search(text)
    who = _MM_RCPT_RE.search(text)
    if why is None or who is None:
        return [], {}
    rcpts = [x for x in (ln.strip().strip("<>") for ln in who.group(1).splitlines()) if "@" in x]
    return [attempt(x, unwrap(why.group(1)), "mailmarshal") for x in rcpts[:MAX_ATTEMPTS]], {}


# dma: "There was an error delivering your mail to <r>.\n\nreason (one or more lines)".
_DMA_RE = re.compile(r"There was an error delivering your mail to <(" + ADDR + r")>\.[ \t]*+\n\s*+((?:[ \t]*+\S[^\n]*+\n?){1,12})")
_DMA_HOST_RE = re.compile(r"^([\w.-]++) \[([^\]\n]{1,255}+)\] did not like our ([A-Z][A-Z ]{1,12}+):", re.M)


def dma(text: str) -> tuple[list[Attempt], dict]:
    m = _DMA_RE.search(text)
    if m is None:
        return [], {}
    body = m.group(2)
    kw: dict = {}
    h = _DMA_HOST_RE.search(body)
    if h:
        kw = dict(remote_mta=h.group(1), remote_ip=h.group(2), command=h.group(3).strip())
        body = body[h.end():]
    return [attempt(m.group(1), unwrap(body), "dma", **kw)], {}


# OpenSMTPD: "the following list of recipients:\n\nr: reason" lines.
_SMTPD_START = "the following list of recipients:"
_SMTPD_LINE_RE = re.compile(r"(?m)^(" + ADDR + r"):[ \t]++([^\n]{1,1000}+)")


def opensmtpd(text: str) -> tuple[list[Attempt], dict]:
    i = text.find(_SMTPD_START)
    if i < 0:
        return [], {}
    end = text.find("Below is a copy of the original message", i)
    section = text[i:end if end > 0 else len(text)]
    out = [attempt(m.group(1), m.group(2), "opensmtpd") for m in itertools.islice(_SMTPD_LINE_RE.finditer(section), MAX_ATTEMPTS)]
    return out, {}


# MailFoundry: "Unable to deliver message to: <r>\nDelivery failed for the following reason:\nServer h[ip] failed with: reply".
_MF_RE = re.compile(r"Unable to deliver message to:[ \t]*+<?(" + ADDR + r")>?[ \t]*+\n(?:[ \t]*+Delivery failed for the following reason:[ \t]*+\n)?"
                    r"[ \t]*+(?:Server ([\w.-]++)\[([^\]\n]{1,255}+)\] failed with:[ \t]*+)?([^\n]{3,1000}+)")


def mailfoundry(text: str) -> tuple[list[Attempt], dict]:
    out = []
    for m in itertools.islice(_MF_RE.finditer(text), MAX_ATTEMPTS):
        kw = dict(remote_mta=m.group(2), remote_ip=m.group(3)) if m.group(2) else {}
        out.append(attempt(m.group(1), m.group(4), "mailfoundry", **kw))
    return out, {}


# InterScan MSS: "Sent <<< RCPT TO:<r>\nReceived >>> reply".
_IS_RE = re.compile(r"Sent <<< (?:RCPT TO|MAIL FROM):[ \t]*+<?(" + ADDR + r")?>?[^\n]{0,200}+\n[ \t]*+Received >>> ([^\n]{3,1000}+)")
_IS_RCPT_RE = re.compile(r"Unable to deliver message to <(" + ADDR + ")>")


def interscan(text: str) -> tuple[list[Attempt], dict]:
    out = []
    for m in itertools.islice(_IS_RE.finditer(text), MAX_ATTEMPTS):
        rcpt = m.group(1) or ""
        if not rcpt or m.group(0).startswith("Sent <<< MAIL"):
            r = _IS_RCPT_RE.search(text)
            rcpt = r.group(1) if r else ""
        out.append(attempt(rcpt, m.group(2), "interscan"))
    return out, {}


# m-FILTER: "r\n-------server message-------\nreply".
_MF_FILTER_RE = re.compile(r"(?m)^<?(" + ADDR + r")>?[ \t]*+\n-{3,}+server message-{3,}+[ \t]*+\n((?:[ \t]*+\S[^\n]*+\n?){1,12})")


def mfilter(text: str) -> tuple[list[Attempt], dict]:
    out = [attempt(m.group(1), unwrap(m.group(2)), "mfilter") for m in itertools.islice(_MF_FILTER_RE.finditer(text), MAX_ATTEMPTS)]
    return out, {}
