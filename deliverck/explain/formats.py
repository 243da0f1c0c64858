"""Reading failed recipients and replies out of bounce texts, one extractor per format.

RFC 3464 delivery-status fields are parsed in `dsn_fields`; the human-readable
texts of MTAs and providers (which is all that non-standard bounces have) are
read by the extractors below.  All input here is remote text: bounded before
it arrives, matched only with patterns that cannot backtrack badly.
"""

from __future__ import annotations

import re

from deliverck.explain import evidence
from deliverck.explain.model import Attempt
from deliverck.explain.status import find_status, normalise_garbled

ADDR = r"[\w.!#$%&'*+/=?^`{|}~-]+@[\w-]+(?:\.[\w-]+)+"
_ADDR_RE = re.compile(ADDR)
_WS_RE = re.compile(r"\s+")
_IP_RE = re.compile(r"(?<![\w.:])(?:\d{1,3}\.){3}\d{1,3}(?![\w.])|(?<![\w:])(?:[0-9a-f]{1,4}:){2,7}[0-9a-f]{0,4}(?![\w:])", re.I)
_REPLY_HEAD_RE = re.compile(r"^\s*#?([245]\d\d)(?:(?:[ -]+#?|-?)([245]\.\d{1,3}\.\d{1,3})(?![\d.]))?(?:[ \t:,-]+|$)")
_STATUS_HEAD_RE = re.compile(r"^\s*#?([245]\.\d{1,3}\.\d{1,3})(?![\d.])[ \t:,-]*")
_CONT_PREFIX_RE = re.compile(r"(?:^|\s)([245]\d\d)[ -]([245]\.\d{1,3}\.\d{1,3})?\s*")
_ORIGINAL_MARKERS = re.compile(
    r"^[ \t]*(?:-{2,}\s*(?:This is a copy of the message|Below this line is a copy of the message|Original message|"
    r"Unsent message below|Returned message|The header of the original message is following|"
    r"Forwarded message|Original Message)|"
    r"Original message headers:|Original Message Headers|------ This is a copy|"
    r"Content-Type: message/rfc822|\s*-{5,} ?Original message follows)",
    re.I | re.M)
MAX_DIAG = 2000


def unwrap(text: str) -> str:
    return _WS_RE.sub(" ", text).strip()


def cut_original(text: str) -> str:
    """The bounce text without the returned original message that often follows it."""
    m = _ORIGINAL_MARKERS.search(text)
    return text[:m.start()] if m else text


_TYPE_PREFIX_RE = re.compile(r"^(?:smtp|x-[\w-]+|x-unix|unix|mta|esmtp|dns)\s*;\s*", re.I)


def parse_reply(text: str) -> tuple[int, str, str]:
    """'smtp; 550-5.1.1 a\\n 550-5.1.1 b' -> (550, '5.1.1', 'a b'); text without a code -> (0, status?, text)."""
    t = text.strip()
    t = _TYPE_PREFIX_RE.sub("", t, count=1)
    t = t.strip().strip("'\"").strip()
    code, status = 0, ""
    m = _REPLY_HEAD_RE.match(t)
    if m:
        code, status = int(m.group(1)), m.group(2) or ""
        t = t[m.end():]
        # multi-line replies: drop the repeated "550-5.1.1 " prefixes of the following lines
        t = re.sub(rf"(?m)(?:^|(?<=\s)){code}[ -](?:{re.escape(status)}\s*)?" if status else rf"(?m)(?:^|(?<=\s)){code}-", " ", t)
    else:
        m2 = _STATUS_HEAD_RE.match(t)
        if m2:
            status = m2.group(1)
            t = t[m2.end():]
    t = unwrap(t)
    if status:
        t = re.sub(rf"^{re.escape(status)}\s+", "", t)
    if not status:
        found = find_status(t)
        # a status inside the reply's text, of the reply code's class ("550 ... (5.1.1)")
        status = found if found and (not code or found[0] == str(code)[0]) else ""
    return code, status, t[:MAX_DIAG]


def first_addr(text: str) -> str:
    m = _ADDR_RE.search(text)
    return m.group(0).strip(".") if m else ""


def ips(text: str) -> list[str]:
    return [m.group(0) for m in _IP_RE.finditer(text)]


def _attempt(recipient: str, diag: str, source: str, **kw) -> Attempt:
    code, status, rest = parse_reply(normalise_garbled(diag))
    return Attempt(recipient=recipient.strip().strip("<>").strip("."), code=code, status=status,
                   diagnostic=rest, source=source, **kw)


# ------------------------------------------------------------------ RFC 3464 fields

def field_blocks(text: str) -> list[list[tuple[str, str]]]:
    """'Name: value' blocks separated by blank lines, continuation lines unfolded."""
    blocks: list[list[tuple[str, str]]] = []
    cur: list[tuple[str, str]] = []
    for line in text.splitlines():
        if not line.strip():
            if cur:
                blocks.append(cur)
                cur = []
            continue
        if line[:1] in " \t" and cur:
            name, value = cur[-1]
            cur[-1] = (name, value + "\n" + line)
            continue
        m = re.match(r"^([!-9;-~]{1,60}):[ \t]*(.*)$", line)
        if m:
            cur.append((m.group(1), m.group(2)))
        elif cur:  # a broken fold: keep it with the field before
            name, value = cur[-1]
            cur[-1] = (name, value + "\n" + line)
    if cur:
        blocks.append(cur)
    return blocks


def _typed(value: str) -> str:
    """'rfc822; a@b' -> 'a@b', 'dns; mx.example.com' -> 'mx.example.com'."""
    v = unwrap(value)
    if ";" in v:
        v = v.split(";", 1)[1]
    return v.strip().strip("<>").strip()


ACTIONS = ("failed", "delayed", "delivered", "relayed", "expanded")   # RFC 3464 section 2.3.3


def _recipient_block(fields: dict[str, str]) -> bool:
    """A per-recipient block of a delivery-status report (RFC 3464 section 2.3): a recipient
    field naming an address, or an Action of RFC 3464 with a Status code.  YAML or config
    lines that happen to be called "action:" or "status:" are not one."""
    rcpt = fields.get("final-recipient", "") or fields.get("original-recipient", "")
    if rcpt and ("@" in rcpt or ";" in rcpt):
        return True
    action = unwrap(fields.get("action", "")).lower().split(" ")[0]
    return action in ACTIONS and bool(re.match(r"\s*[245]\.\d{1,3}\.\d{1,3}", fields.get("status", "")))


def has_dsn_fields(blocks: list[list[tuple[str, str]]]) -> bool:
    for block in blocks:
        fields: dict[str, str] = {}
        for name, value in block:
            fields.setdefault(name.lower(), value)
        if _recipient_block(fields):
            return True
    return False


def dsn_attempts(blocks: list[list[tuple[str, str]]]) -> tuple[dict[str, str], list[Attempt]]:
    """Per-message fields (lowercase names) and one Attempt per recipient block."""
    per_message: dict[str, str] = {}
    attempts: list[Attempt] = []
    for block in blocks:
        fields = {}
        for name, value in block:
            fields.setdefault(name.lower(), value)
        if _recipient_block(fields):
            diag = fields.get("diagnostic-code", "") or fields.get("x-supplementary-info", "")
            a = _attempt(_typed(fields.get("final-recipient", "") or fields.get("original-recipient", "")), diag, "delivery-status")
            a.original_recipient = _typed(fields.get("original-recipient", ""))
            a.action = unwrap(fields.get("action", "")).lower()[:20]
            st = unwrap(fields.get("status", ""))
            m = re.match(r"([245])\.(\d{1,3})\.(\d{1,3})", st)
            field_status = ".".join(m.groups()) if m else ""
            if field_status and not (a.status and field_status.endswith(".0.0") and a.status[0] == field_status[0]):
                a.status = field_status
            remote = _typed(fields.get("remote-mta", ""))
            if remote:
                ip_in = re.search(r"\[([^\]]+)\]", remote)
                if ip_in:
                    a.remote_ip = ip_in.group(1)
                    remote = remote[:ip_in.start()].strip()
                if ips(remote) and remote == ips(remote)[0]:
                    a.remote_ip, remote = remote, ""
                a.remote_mta = remote
            a.last_attempt = unwrap(fields.get("last-attempt-date", ""))
            attempts.append(a)
        else:
            for k, v in fields.items():
                per_message.setdefault(k, unwrap(v))
    return per_message, attempts


# ------------------------------------------------------------------ human-readable formats

def _postfix(text: str) -> tuple[list[Attempt], dict]:
    info: dict = {}
    m = re.search(r"This is the (?:mail system|Postfix program) at host (\S+?)\.?\s*$", text, re.M | re.I)
    if m:
        info["reporting_mta"] = m.group(1)
    if "THIS IS A WARNING ONLY" in text:
        info["action"] = "delayed"
    out = []
    for b in re.finditer(r"(?m)^<([^<>\n]{1,320})>(?: \(expanded from <([^<>\n]*)>\))?:[ \t]*(.*(?:\n[ \t]+\S.*)*)", text):
        body = unwrap(b.group(3))
        kw: dict = {}
        h = re.search(r"host (\S+?)\[([^\]]*)\] said: (.*?)(?: \(in reply to (.+?) command\))?$", body)
        if h:
            kw = dict(remote_mta=h.group(1), remote_ip=h.group(2), command=h.group(4) or "")
            diag = h.group(3)
        else:
            diag = body
            r = re.search(r"host (\S+?)\[([^\]]*)\]", body) or re.search(r"connect to (\S+?)\[([^\]]*)\]", body)
            if r:
                kw = dict(remote_mta=r.group(1), remote_ip=r.group(2))
        a = _attempt(b.group(1), diag, "postfix", **kw)
        a.original_recipient = b.group(2) or ""
        if not a.code and "said:" not in body:
            a.diagnostic = unwrap(body)[:MAX_DIAG]
        out.append(a)
    return out, info


def _qmail(text: str) -> tuple[list[Attempt], dict]:
    info: dict = {}
    m = re.search(r"qmail-send program at (\S+?)\.?\s*$", text, re.M | re.I)
    if m:
        info["reporting_mta"] = m.group(1)
    out = []
    for b in re.finditer(r"(?m)^<([^<>\n]{1,320})>:[ \t]*\n((?:[^\n]*\S[^\n]*\n?){1,40})", text):
        body = b.group(2)
        kw: dict = {}
        said = re.search(r"Remote host said:\s*(.*)", body, re.S)
        r = re.search(r"(\S+) does not like recipient", body) or re.search(r"Connected to (\S+) but", body)
        if r:
            kw["remote_ip" if ips(r.group(1)) else "remote_mta"] = r.group(1)
        diag = said.group(1) if said else body
        diag = re.sub(r"(?m)^Giving up on \S+\.?\s*$", "", diag)
        diag = re.sub(r"(?m)^I'm not going to try again; this message has been in the queue too long\.", "\\g<0>", diag)
        out.append(_attempt(b.group(1), diag, "qmail", **kw))
    return out, info


def _exim(text: str) -> tuple[list[Attempt], dict]:
    info: dict = {}
    if re.search(r"has not yet been delivered|have not yet been delivered|delayed|is still in the queue", text, re.I):
        info["action"] = "delayed"
    if re.search(r"This is a permanent error|following address\(es\) failed", text, re.I):
        info["action"] = "failed"
    start = re.search(r"(?:address\(es\) failed|addresses failed|have not yet been delivered|not yet been delivered to one or more)[^\n]*\n", text, re.I)
    section = text[start.end():] if start else text
    out = []
    for b in re.finditer(r"(?m)^[ \t]{1,4}(\S+@\S+|\S*@\S*|[^\s@]+@?[^\s]*)[ \t]*\n((?:^[ \t]{3,}.*\n?){1,30})", section):
        rcpt = b.group(1).strip("<>:")
        if "@" not in rcpt:
            continue
        body = b.group(2)
        kw: dict = {}
        h = re.search(r"host (\S+) \[([^\]]+)\]", body)
        if h:
            kw = dict(remote_mta=h.group(1), remote_ip=h.group(2))
        c = re.search(r"SMTP error from remote (?:mail server|mailer) after (?:pipelined )?([A-Z ]+?)(?:[:<]|$)", body, re.M)
        if c:
            kw["command"] = c.group(1).strip()
        diag = body
        diag = re.sub(r"\(generated from [^)]*\)", " ", diag)
        diag = re.sub(r"SMTP error from remote (?:mail server|mailer) after [^\n]*?:\s*(?:\n|$)", " ", diag)
        diag = re.sub(r"host \S+ \[[^\]]+\]:?", " ", diag)
        out.append(_attempt(rcpt, diag, "exim", **kw))
    return out, info


def _sendmail(text: str) -> tuple[list[Attempt], dict]:
    info: dict = {}
    if re.search(r"transient non-fatal errors|Warning: could not send message for past", text, re.I):
        info["action"] = "delayed"
    m = re.search(r"The original message was received at [^\n]*\n\s*from ([^\n]+)", text)
    if m:
        info["received_from"] = m.group(1).strip()
    talk = re.search(r"while talking to ([\w.-]+?)\.?:", text)
    replies = [unwrap(x) for x in re.findall(r"(?m)^<<< ([245]\d\d[ -].*)$", text)]
    out = []
    sec = re.search(r"-{3,}\s*The following addresses had (?:permanent fatal|transient non-fatal) errors\s*-{3,}\s*\n(.*?)(?:\n\s*\n|\Z)", text, re.S | re.I)
    if sec:
        for b in re.finditer(r"(?m)^\s*<?(" + ADDR + r")>?[ \t]*\n((?:[ \t]+\(.*\)[ \t]*\n?)*)", sec.group(1)):
            reason = re.search(r"\(reason: (.*?)\)\s*$", b.group(2), re.M | re.S)
            diag = reason.group(1) if reason else ""
            if not diag:
                own = re.search(rf"(?m)^([245]\d\d[ -].*{re.escape(b.group(1))}.*)$", text)
                diag = own.group(1) if own else (replies[-1] if replies else "")
            kw = {"remote_mta": talk.group(1)} if talk else {}
            out.append(_attempt(b.group(1), diag, "sendmail", **kw))
    if not out and "Transcript of session follows" in text:
        own = re.search(r"(?m)^([245]\d\d[ -]\d\.\d+\.\d+ .*)$", text.split("Transcript of session follows", 1)[1])
        diag = (replies[-1] if replies else "") or (own.group(1) if own else "")
        if diag:
            kw = {"remote_mta": talk.group(1)} if talk else {}
            out.append(_attempt(first_addr(diag) or first_addr(text), diag, "sendmail", **kw))
    return out, info


def _exchange(text: str) -> tuple[list[Attempt], dict]:
    info: dict = {}
    g = re.search(r"(?:Generating server|DSN generated by)\s*:\s*(\S+)", text, re.I)
    if g:
        info["reporting_mta"] = g.group(1).strip(".")
    if re.search(r"Delivery is delayed|delayed to these recipients|hasn't been delivered yet", text, re.I):
        info["action"] = "delayed"
    out: list[Attempt] = []
    lines = text.splitlines()

    def rcpt_before(pos: int) -> tuple[str, str]:
        before = text[:pos].splitlines()[-4:]
        host = ""
        for ln in reversed(before):
            s = re.sub(r"<mailto:[^>]*>", "", ln).strip()
            if not s:
                continue
            if re.fullmatch(ADDR, s.strip("<>")):
                return s.strip("<>"), host
            if re.fullmatch(r"[\w.-]+\.[a-z]{2,}", s, re.I) and not host:
                host = s
        return "", host

    for m in re.finditer(r"Remote Server (?:at (\S+?) \(([^)]*)\) )?returned '(.{1,1500}?)'(?=\s*(?:\n|$|<))", text, re.I | re.S):
        rcpt, host = rcpt_before(m.start())
        kw = {"remote_mta": m.group(1) or host, "remote_ip": m.group(2) or ""}
        out.append(_attempt(rcpt, m.group(3), "exchange", **kw))
    if not out:
        for m in re.finditer(r"(?m)^[ \t]*(?:([^\s<#]\S*) )?#(?:< ?#)?([245]\d\d[ -].{1,600}?|[245]\.\d+\.\d+ .{1,600}?)\s*(?:##|#SMTP#|>|$)", text):
            rcpt, host = rcpt_before(m.start())
            kw = {"remote_mta": (m.group(1) or host or "").strip(".")}
            out.append(_attempt(rcpt, m.group(2), "exchange", **kw))
    if not out:
        for m in re.finditer(r"<([\w.-]+) #([245]\.\d+\.\d+)(?: (?:smtp|x-\w+);(.*?))?>", text, re.S):
            r = None
            for r in re.finditer(r"(?m)^\s*(" + ADDR + r") on ", text[:m.start()]):
                pass
            diag = m.group(3) or m.group(2)
            a = _attempt(r.group(1) if r else "", diag, "exchange")
            if not a.status:
                a.status = m.group(2)
            out.append(a)
    if not out:
        rep = re.search(r"Reported error\s*:\s*(.+)", text, re.I)
        if rep:
            r = re.search(r"Recipient Address\s*:\s*(\S+)", text, re.I)
            s = re.search(r"Remote server\s*:\s*(\S+)", text, re.I)
            out.append(_attempt(r.group(1) if r else "", rep.group(1), "exchange",
                                remote_mta=s.group(1).strip(".") if s else ""))
    if not out:
        sc = re.search(r"Status code\s*:\s*([245]\d\d [245]\.\d+\.\d+)", text, re.I)
        if sc:
            r = re.search(r"Your message to (" + ADDR + r") couldn", text)
            out.append(_attempt(r.group(1) if r else "", sc.group(1), "exchange"))
    del lines
    return out, info


def _gmail(text: str) -> tuple[list[Attempt], dict]:
    info: dict = {}
    if re.search(r"Delivery incomplete|temporary problem delivering|will retry for|Technical details of temporary failure", text, re.I):
        info["action"] = "delayed"
    rc = (re.search(r"wasn'?t delivered to (" + ADDR + ")", text) or re.search(r"delivering your message to (" + ADDR + ")", text)
          or re.search(r"Your message to (" + ADDR + ") has been blocked", text)
          or re.search(r"Delivery to the following recipients? failed (?:permanently|temporarily):\s*\n\s*(" + ADDR + ")", text)
          or re.search(r"Delivery to the following recipients? (?:has been delayed|failed):\s*\n\s*(" + ADDR + ")", text))
    d = (re.search(r"The response (?:from the remote server )?was:[ \t]*\n+((?:[^\n]*\S[^\n]*\n?){1,12})", text)
         or re.search(r"The error that the other server returned was:[ \t]*\n+((?:[^\n]*\S[^\n]*\n?){1,12})", text))
    out = []
    if d or rc:
        kw: dict = {}
        r = re.search(r"by ([\w.-]+?)\.? \[([0-9a-f.:]+)\]", text, re.I)
        if r:
            kw = dict(remote_mta=r.group(1), remote_ip=r.group(2))
        out.append(_attempt(rc.group(1) if rc else "", d.group(1) if d else "", "gmail", **kw))
        if not d:
            out[-1].diagnostic = ""
    return out, info


def _musemail(text: str) -> tuple[list[Attempt], dict]:
    out = []
    for m in re.finditer(r"The message to (\S+?) is bounced because\s*:\s*(.+)", text):
        out.append(_attempt(m.group(1), m.group(2), "musemail"))
    return out, {}


def _chinese(text: str) -> tuple[list[Attempt], dict]:
    rc = re.search(r"(?:\u6536\u4EF6\u4EBA|\u6536\u4FE1\u4EBA|Rcpt to|Recipient)\s*[:\uFF1A]?\s*<?(" + ADDR + ")", text, re.I)
    said = re.search(r"(?:Remote host said|host \S+ said|said)\s*[:\uFF1A]\s*(.+)", text, re.I)
    why = re.search(r"(?:\u9000\u4FE1\u539F\u56E0|\u5931\u8D25\u539F\u56E0|\u9519\u8BEF\u539F\u56E0|\u539F\u56E0)\s*[:\uFF1A]?\s*([^\n]+)", text)
    if not (said or why):
        return [], {}
    diag = said.group(1) if said else why.group(1)
    a = _attempt(rc.group(1) if rc else first_addr(diag), diag, "chinese")
    if said and why and not (a.code or a.status):
        a.diagnostic = unwrap(why.group(1) + " " + a.diagnostic)[:MAX_DIAG]
    return [a], {}


# A Postfix log line of a failed delivery (postfix/smtp, local, virtual... : "to=<r>, ... dsn=5.1.1,
# status=bounced (reason)"): dsn= is the DSN status and the parentheses hold the reason, often
# "host X said: 550 ...".  Lines with status=sent are not failures.
_POSTFIX_LOG_RE = re.compile(r"\bto=<([^<>\s]{1,320})>[^\n]{0,600}?\bdsn=([45]\.\d{1,3}\.\d{1,3}),[ \t]*"
                             r"status=(bounced|deferred|expired|undeliverable)[ \t]*\(([^\n]{1,2000})\)[ \t]*$", re.M)


def _postfix_log(text: str) -> Attempt | None:
    m = _POSTFIX_LOG_RE.search(text)
    if m is None:
        return None
    reason = m.group(4)
    h = re.search(r"host (\S+?)\[([^\]]*)\] said: (.*?)(?: \(in reply to (.+?) command\))?$", reason)
    a = _attempt(m.group(1), h.group(3) if h else reason, "postfix-log",
                 **(dict(remote_mta=h.group(1), remote_ip=h.group(2), command=h.group(4) or "") if h else {}))
    if not a.status or a.status[0] != m.group(2)[0]:
        a.status = m.group(2)
    if m.group(3) == "deferred":
        a.action = "delayed"
    elif m.group(3) in ("bounced", "expired", "undeliverable"):
        a.action = "failed"
    return a


def generic(text: str) -> tuple[list[Attempt], str]:
    """No known format: a Postfix log line of a failed delivery, the first failure reply in reply
    context (evidence.py), else an enhanced status where bounces put one; ([], "") when the text
    holds none.  A status code or a reply code anywhere else (a version, a date, a section
    number) is not read."""
    a = _postfix_log(text)
    if a is not None:
        return [a], "a Postfix log line of a failed delivery (dsn=, status=)"
    r = evidence.first_failure(text)
    if r is not None:
        code, status, rest = parse_reply(r.text)
        code, status = code or r.code, status or r.status
        if code and not status and len(rest) < 3:
            r = None
        else:
            where = f"an SMTP reply after {r.where!r}" if r.where not in ("line start", "#") else (
                "an SMTP reply at the start of a line" if r.where == "line start" else "an enhanced status after '#'")
            return [Attempt(recipient=first_addr(rest), code=code, status=status, diagnostic=rest, source="text")], where
    st = evidence.context_status(text)
    if st:
        diag = unwrap(text)[:MAX_DIAG]
        return ([Attempt(recipient=first_addr(diag), status=st, diagnostic=diag, source="text")],
                "an enhanced status code in a Status field or after '#'")
    return [], ""


# Once the wording shows that a text is a bounce, a reply is looked for more loosely: a code at
# the start of a line even without a status, or after "error:", "with", "reply:", "response:".
_LOOSE_REPLY_RE = re.compile(
    r"(?im)(?:^|said:|returned|was:|reason:|<<<|error:|because:|\bwith\b|\breply:|\bresponse:|\u56DE\u590D[:\uFF1A]?)[ \t'\"(]*"
    r"(#?[45]\d\d(?:[ -]#?[45]\.\d{1,3}\.\d{1,3})?(?:[ \t:,-][^\n]*)?$(?:\n[ \t]*[45]\d\d[ -][^\n]*)*)")


def text_attempt(text: str) -> Attempt:
    """For a text that is a bounce by its wording: its first reply found loosely, else the whole
    (bounded) text as the reason, with a status the text carries."""
    for m in _LOOSE_REPLY_RE.finditer(text):
        code, status, rest = parse_reply(m.group(1))
        if code and smtp_code(code) and (status or len(rest) >= 3) and evidence.is_failure(code, status):
            return Attempt(recipient=first_addr(rest), code=code, status=status, diagnostic=rest, source="text")
    diag = unwrap(text)[:MAX_DIAG]
    found = evidence.context_status(text) or find_status(text)
    return Attempt(recipient=first_addr(diag), diagnostic=diag, status=found if evidence.is_failure(0, found) else "",
                   source="text")


def reply_head(text: str) -> bool:
    """text starts with an SMTP reply code or an enhanced status (after an optional 'smtp;')."""
    t = _TYPE_PREFIX_RE.sub("", text.strip(), count=1).strip().strip("'\"").strip()
    m = _REPLY_HEAD_RE.match(t)
    if m:
        return bool(m.group(2)) or smtp_code(int(m.group(1)))
    return bool(_STATUS_HEAD_RE.match(t))


def smtp_code(code: int) -> bool:
    """A reply code SMTP servers use (RFC 5321 section 4.2: second digit 0-5).  No SMTP server
    sends 40x or 41x (those are HTTP's "404 Not Found", "403 Forbidden"), so a text starting
    with one is not taken for a reply."""
    first, second = code // 100, code // 10 % 10
    return first in (2, 4, 5) and second <= 5 and not (first == 4 and second in (0, 1))


def all_reply_lines(text: str, code: int) -> bool:
    """Every line is '<code>-' or '<code> ': one multi-line reply (RFC 5321 section 4.2.1)."""
    prefix = (f"{code}-", f"{code} ")
    return all(ln.strip().startswith(prefix) for ln in text.strip().splitlines() if ln.strip())


def failed(a: Attempt) -> bool:
    """A recipient the report says was not delivered (RFC 3464 section 2.3.3: Action failed or
    delayed, or a 4xx/5xx); delivered, relayed and expanded recipients are not failures."""
    if a.action in ("delivered", "relayed", "expanded"):
        return False
    return a.action in ("failed", "delayed") or not (a.code or a.status) or evidence.is_failure(a.code, a.status)


def substantive(a: Attempt) -> bool:
    """An attempt that reports a failure: a 4xx/5xx reply or status, or a recipient or reason
    without any code (success lines of a report, 2xx, are not failures)."""
    if a.code or a.status:
        return evidence.is_failure(a.code, a.status)
    return bool(a.diagnostic.strip() or "@" in a.recipient)


# name, detector, extractor: tried in this order; the first detector that fires and yields recipients wins.
EXTRACTORS = (
    ("exchange", re.compile(r"Diagnostic information for administrators|Remote Server (?:at \S+ \([^)]*\) )?returned|Delivery has failed to these recipients|"
                            r"did not reach some or all of the intended recipients|Generating server:|Reported error:|#SMTP#|couldn'?t be delivered|"
                            r"Delivery is delayed to these recipients", re.I), _exchange),
    ("gmail", re.compile(r"The response (?:from the remote server )?was:|Technical details of (?:permanent|temporary) failure|\*\* (?:Address not found|Message not delivered|"
                         r"Message blocked|Delivery incomplete) \*\*|Google tried to deliver your message|The error that the other server returned was", re.I), _gmail),
    ("postfix", re.compile(r"This is the (?:mail system|Postfix program) at host|^<[^<>\n]+>(?: \(expanded from <[^<>\n]*>\))?: (?:host \S+\[|Host or domain name not found|connect to )", re.I | re.M), _postfix),
    ("qmail", re.compile(r"qmail-send program|wasn'?t able to deliver your message to the following addresses|unable to deliver your message to the following address", re.I), _qmail),
    ("exim", re.compile(r"This message was created automatically by mail delivery software|could not be delivered to one or more of its\s+recipients|"
                        r"following address\(es\) failed|address\(es\) have not yet been delivered", re.I), _exim),
    ("sendmail", re.compile(r"Transcript of session follows|The following addresses had (?:permanent fatal|transient non-fatal) errors|The original message was received at", re.I), _sendmail),
    ("musemail", re.compile(r"is bounced because\s*:|MuseMail", re.I), _musemail),
    ("chinese", re.compile(r"\u9000\u4FE1|\u9000\u56DE|\u6295\u9012\u5931\u8D25|\u672A\u80FD\u6210\u529F\u9001\u8FBE|Remote host said:", re.I), _chinese),
)


def extract(text: str) -> tuple[str, list[Attempt], dict]:
    """(format name, attempts, info) from a bounce's human-readable text; ("", [], {}) when no format fits."""
    for name, detector, fn in EXTRACTORS:
        if detector.search(text):
            attempts, info = fn(text)
            if attempts:
                return name, attempts, info
    return "", [], {}


def detected_format(text: str) -> str:
    for name, detector, _ in EXTRACTORS:
        if detector.search(text):
            return name
    return ""
