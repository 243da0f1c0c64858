"""The human-readable bounces of mail server software: Postfix (bounces and log lines), qmail,
Exim and Sendmail, each read by its own extractor into attempts.

Every pattern here runs in time linear in the text it sees: formats.py's docstring says how.
"""

from __future__ import annotations

import bisect
import itertools
import re

from deliverck.explain.model import Attempt
from deliverck.explain.replies import (
    ADDR,
    MAX_ATTEMPTS,
    MAX_DIAG,
    MAX_FIELD,
    attempt,
    drop_spans,
    first_addr,
    ips,
    unwrap,
)

_IN_REPLY, _COMMAND = " (in reply to ", " command)"


def _reply_and_command(s: str) -> tuple[str, str]:
    """'550 5.1.1 No such user (in reply to RCPT TO command)' -> ('550 5.1.1 No such user', 'RCPT TO'):
    the SMTP command Postfix names at the end of a reply (bounce(8), smtp(8))."""
    if s.endswith(_COMMAND):
        p = s.find(_IN_REPLY)
        if 0 <= p and p + len(_IN_REPLY) < len(s) - len(_COMMAND):
            return s[:p], s[p + len(_IN_REPLY):-len(_COMMAND)]
    return s, ""


_PF_REPORTER_RE = re.compile(r"This is the (?:mail system|Postfix program) at host (\S+?)\.?\s*$", re.M | re.I)
_PF_BLOCK_RE = re.compile(r"(?m)^<([^<>\n]{1,320})>(?: \(expanded from <([^<>\n]*)>\))?:[ \t]*(.*(?:\n[ \t]+\S.*)*)")
# "host mx.example.com[192.0.2.1] said: " and the reply after it; "host X[Y]" and "connect to X[Y]"
# without a reply (connection failures).  Y is an address literal, or a socket path for LMTP.
_PF_SAID_RE = re.compile(r"host ([^\s\[]++)\[([^\]]{0,255}+)\] said: ")
_PF_HOST_RE = re.compile(r"host ([^\s\[]++)\[([^\]]{0,255}+)\]")
_PF_CONNECT_RE = re.compile(r"connect to ([^\s\[]++)\[([^\]]{0,255}+)\]")


def _postfix_said(text: str) -> tuple[str, dict] | None:
    """(reply, remote host fields) from "host X[Y] said: reply (in reply to C command)"."""
    h = _PF_SAID_RE.search(text)
    if h is None:
        return None
    diag, command = _reply_and_command(text[h.end():])
    return diag, dict(remote_mta=h.group(1), remote_ip=h.group(2), command=command)


def postfix(text: str) -> tuple[list[Attempt], dict]:
    info: dict = {}
    m = _PF_REPORTER_RE.search(text)
    if m:
        info["reporting_mta"] = m.group(1)[:MAX_FIELD]
    if "THIS IS A WARNING ONLY" in text:
        info["action"] = "delayed"
    out = []
    for b in itertools.islice(_PF_BLOCK_RE.finditer(text), MAX_ATTEMPTS):
        body = unwrap(b.group(3))
        kw: dict = {}
        said = _postfix_said(body)
        if said:
            diag, kw = said
        else:
            diag = body
            r = _PF_HOST_RE.search(body) or _PF_CONNECT_RE.search(body)
            if r:
                kw = dict(remote_mta=r.group(1), remote_ip=r.group(2))
        a = attempt(b.group(1), diag, "postfix", **kw)
        a.original_recipient = (b.group(2) or "")[:MAX_FIELD]
        if not a.code and "said:" not in body:
            a.diagnostic = unwrap(body)[:MAX_DIAG]
        out.append(a)
    return out, info


_QMAIL_REPORTER_RE = re.compile(r"qmail-send program at (\S+?)\.?\s*$", re.M | re.I)
_QMAIL_BLOCK_RE = re.compile(r"(?m)^<([^<>\n]{1,320})>:[ \t]*\n((?:[^\S\n]*+\S[^\n]*+\n?){1,40})")
_QMAIL_SAID_RE = re.compile(r"Remote host said:\s*+(.*)", re.S)
_QMAIL_REFUSED_BY_RE = re.compile(r"(?<!\S)(\S++) does not like recipient")
_QMAIL_CONNECTED_RE = re.compile(r"Connected to (\S++) but")
_QMAIL_GIVING_UP_RE = re.compile(r"(?m)^Giving up on \S+\.?\s*$")
# qmail-send's closing sentence of an expired message: the bounce's own words, not the remote reply
# (the reply before it is the last attempt's, so the expiry and its cause are read apart).
_QMAIL_TOO_LONG = "I'm not going to try again; this message has been in the queue too long."



def qmail(text: str) -> tuple[list[Attempt], dict]:
    info: dict = {}
    m = _QMAIL_REPORTER_RE.search(text)
    if m:
        info["reporting_mta"] = m.group(1)[:MAX_FIELD]
    out = []
    for b in itertools.islice(_QMAIL_BLOCK_RE.finditer(text), MAX_ATTEMPTS):
        body = b.group(2)
        kw: dict = {}
        said = _QMAIL_SAID_RE.search(body)
        r = _QMAIL_REFUSED_BY_RE.search(body) or _QMAIL_CONNECTED_RE.search(body)
        if r:
            kw["remote_ip" if ips(r.group(1)) else "remote_mta"] = r.group(1)
        diag = said.group(1) if said else body
        diag = _QMAIL_GIVING_UP_RE.sub("", diag)
        if said and _QMAIL_TOO_LONG in diag:
            diag = diag.replace(_QMAIL_TOO_LONG, " ")
        out.append(attempt(b.group(1), diag, "qmail", **kw))
    return out, info


_EXIM_DELAYED_RE = re.compile(r"has not yet been delivered|have not yet been delivered|delayed|is still in the queue", re.I)
_EXIM_FAILED_RE = re.compile(r"This is a permanent error|following address\(es\) failed", re.I)
# The sentence before the recipient blocks; they start on the line after it.
_EXIM_START_RE = re.compile(r"address\(es\) failed|addresses failed|have not yet been delivered|not yet been delivered to one or more", re.I)
# "  user@example.com\n    host mx.example.com [192.0.2.1]\n    SMTP error from ...": a line with one
# word indented 1-4 columns, then the lines indented 3 or more under it.
_EXIM_BLOCK_RE = re.compile(r"(?m)^[ \t]{1,4}(\S++)[ \t]*\n((?:^[ \t]{3,}.*\n?){1,30})")
_EXIM_HOST_RE = re.compile(r"host (\S++) \[([^\]]{1,255}+)\]")
_EXIM_COMMAND_RE = re.compile(r"SMTP error from remote (?:mail server|mailer) after (?:pipelined )?([A-Z ]+?)(?:[:<]|$)", re.M)
# "SMTP error from remote mail server after RCPT TO:<user@example.com>:" up to its last ':'.
_EXIM_ERROR_LINE_RE = re.compile(r"SMTP error from remote (?:mail server|mailer) after [^\n]{0,600}?:\s*(?:\n|$)")
_EXIM_HOST_SUB_RE = re.compile(r"host \S++ \[[^\]]{1,255}+\]:?")
_EXIM_RETRY_RE = re.compile(r"retry timeout exceeded|all hosts have been failing for a long time(?: \(and retry time not reached\))?")


def exim(text: str) -> tuple[list[Attempt], dict]:
    info: dict = {}
    if _EXIM_DELAYED_RE.search(text):
        info["action"] = "delayed"
    if _EXIM_FAILED_RE.search(text):
        info["action"] = "failed"
    start = _EXIM_START_RE.search(text)
    nl = text.find("\n", start.end()) if start else -1
    section = text[nl + 1:] if nl >= 0 else text
    out = []
    for b in _EXIM_BLOCK_RE.finditer(section):
        rcpt = b.group(1).strip("<>:")
        if "@" not in rcpt:
            continue
        body = b.group(2)
        kw: dict = {}
        h = _EXIM_HOST_RE.search(body)
        if h:
            kw = dict(remote_mta=h.group(1), remote_ip=h.group(2))
        c = _EXIM_COMMAND_RE.search(body)
        if c:
            kw["command"] = c.group(1).strip()
        diag = drop_spans(body, "(generated from ", ")")
        diag = _EXIM_ERROR_LINE_RE.sub(" ", diag)
        diag = _EXIM_HOST_SUB_RE.sub(" ", diag)
        if _EXIM_RETRY_RE.search(diag) and _EXIM_ERROR_LINE_RE.search(body):
            # "retry timeout exceeded" is Exim's own verdict; the SMTP error under it is the last
            # attempt's reply (the expiry is read from the bounce's text, the cause from the reply)
            diag = _EXIM_RETRY_RE.sub(" ", diag)
        out.append(attempt(rcpt, diag, "exim", **kw))
        if len(out) >= MAX_ATTEMPTS:
            break
    return out, info


_SM_DELAYED_RE = re.compile(r"transient non-fatal errors|Warning: could not send message for past", re.I)
# The rest of the line is the date; the host is on the next line.  The line is read up to a
# second occurrence of the sentence, so a line repeating it is read once, not once per repetition.
_SM_RECEIVED_RE = re.compile(r"The original message was received at (?:(?!The original message was received at)[^\n])*+\n"
                             r"\s*+from ([^\n]+)")
_SM_TALKING_RE = re.compile(r"while talking to ([\w.-]+?)\.?:")
_SM_REPLY_RE = re.compile(r"(?m)^<<< ([245]\d\d[ -].*)$")
_SM_SECTION_RE = re.compile(r"(?<!-)-{3,}+\s*+The following addresses had (?:permanent fatal|transient non-fatal) errors"
                            r"\s*+-{3,}+\s*\n(.*?)(?:\n\s*\n|\Z)", re.S | re.I)
# "<user@example.com>" on a line of its own, then its "    (reason: ...)" lines.
_SM_RCPT_RE = re.compile(r"(?m)^[^\S\n]*+<?(" + ADDR + r")>?[ \t]*\n((?:[ \t]+\(.*\)[ \t]*\n?)*)")
_SM_REASON_END_RE = re.compile(r"\)[^\S\n]*+(?:\n|\Z)")
_SM_CODE_LINE_RE = re.compile(r"(?m)^[245]\d\d[ -][^\n]*")
_SM_TRANSCRIPT_RE = re.compile(r"(?m)^([245]\d\d[ -]\d\.\d+\.\d+ .*)$")


def _sendmail_reason(block: str) -> str:
    """The text of "(reason: ...)" up to the ')' that ends its line."""
    i = block.find("(reason: ")
    end = _SM_REASON_END_RE.search(block, i + 9) if i >= 0 else None
    return block[i + 9:end.start()] if end else ""


def _line_with(lines: str, needle: str) -> str:
    """The first of the newline-ended reply lines that has needle after its reply code ("550 ")."""
    i = lines.find(needle)
    while i >= 0:
        start = lines.rfind("\n", 0, i) + 1
        if i - start >= 4:
            return lines[start:lines.find("\n", i)]
        i = lines.find(needle, i + 1)
    return ""


def sendmail(text: str) -> tuple[list[Attempt], dict]:
    info: dict = {}
    if _SM_DELAYED_RE.search(text):
        info["action"] = "delayed"
    m = _SM_RECEIVED_RE.search(text)
    if m:
        info["received_from"] = m.group(1)[:MAX_FIELD].strip()
    talk = _SM_TALKING_RE.search(text)
    replies = [unwrap(x) for x in _SM_REPLY_RE.findall(text)]
    out = []
    sec = _SM_SECTION_RE.search(text)
    if sec:
        code_lines = None
        for b in itertools.islice(_SM_RCPT_RE.finditer(sec.group(1)), MAX_ATTEMPTS):
            diag = _sendmail_reason(b.group(2))
            if not diag:
                if code_lines is None:     # the reply lines of the transcript, gathered once
                    code_lines = "".join(x.group(0) + "\n" for x in _SM_CODE_LINE_RE.finditer(text))
                diag = _line_with(code_lines, b.group(1)) or (replies[-1] if replies else "")
            kw = {"remote_mta": talk.group(1)} if talk else {}
            out.append(attempt(b.group(1), diag, "sendmail", **kw))
    if not out and "Transcript of session follows" in text:
        own = _SM_TRANSCRIPT_RE.search(text.split("Transcript of session follows", 1)[1])
        diag = (replies[-1] if replies else "") or (own.group(1) if own else "")
        if diag:
            kw = {"remote_mta": talk.group(1)} if talk else {}
            out.append(attempt(first_addr(diag) or first_addr(text), diag, "sendmail", **kw))
    return out, info




# A Postfix log line of a failed delivery (postfix/smtp, local, virtual... : "to=<r>, ... dsn=5.1.1,
# status=bounced (reason)"): dsn= is the DSN status and the parentheses hold the reason, often
# "host X said: 550 ...".  Lines with status=sent are not failures.  The recipient comes at most
# 600 characters before dsn=, on the same line, and the reason ends the line.  (The word boundary
# is looked behind from after "to=<" and "dsn=", so that each is searched for as a string.)
_PFLOG_TO_RE = re.compile(r"to=<(?<=\bto=<)([^<>\s]{1,320}+)>")
_PFLOG_DSN_RE = re.compile(r"dsn=(?<=\bdsn=)([45]\.\d{1,3}\.\d{1,3}),[ \t]*+status=(bounced|deferred|expired|undeliverable)[ \t]*+\(")
_PFLOG_GAP, _PFLOG_REASON = 600, 2000


def _postfix_log_dsns(text: str) -> list[tuple[int, re.Match, str]]:
    """(offset, match, reason) of every "dsn=X, status=Y (reason)" whose reason ends its line."""
    out = []
    line_end, last = -1, -1
    for d in _PFLOG_DSN_RE.finditer(text):
        if d.end() > line_end:           # a new line: where it ends, and its last non-blank character
            line_end = text.find("\n", d.end())
            line_end = len(text) if line_end < 0 else line_end
            last = d.end() + len(text[d.end():line_end].rstrip(" \t")) - 1
        if last > d.end() and text[last] == ")" and last - d.end() <= _PFLOG_REASON:
            out.append((d.start(), d, text[d.end():last]))
    return out


def postfix_log(text: str) -> Attempt | None:
    """The first failed delivery of a Postfix log: a recipient "to=<r>" with a failure after it."""
    dsns: list[tuple[int, re.Match, str]] | None = None
    for t in _PFLOG_TO_RE.finditer(text):
        if dsns is None:
            dsns = _postfix_log_dsns(text)
            starts = [x[0] for x in dsns]
        k = bisect.bisect_left(starts, t.end())
        if k == len(dsns):
            return None                  # no failure after this recipient, nor after a later one
        start, d, reason = dsns[k]
        if start - t.end() <= _PFLOG_GAP and text.find("\n", t.end(), start) < 0:
            break
    else:
        return None
    said = _postfix_said(reason)
    diag, kw = said if said else (reason, {})
    a = attempt(t.group(1), diag, "postfix-log", **kw)
    if not a.status or a.status[0] != d.group(1)[0]:
        a.status = d.group(1)
    if d.group(2) == "deferred":
        a.action = "delayed"
    elif d.group(2) in ("bounced", "expired", "undeliverable"):
        a.action = "failed"
    return a
