"""Reading failed recipients and replies out of bounce texts, one extractor per format.

RFC 3464 delivery-status fields are parsed in `dsn_fields`; the human-readable
texts of MTAs and providers (which is all that non-standard bounces have) are
read by the extractors below.

All input here is remote text, and a crafted bounce must not stall a directory
triage (issue 14: three patterns here once took 259 s on 800 KB).  Every pattern
runs in time linear in the text it sees, which these rules keep true:

- A pattern that may start anywhere begins with a literal, or with a lookbehind
  that lets it start only where its run starts ("(?<!\\S)\\S++ does not like"),
  so a long run is scanned once, not once per character.
- A run followed by something the run cannot contain is possessive (`*+`, `++`):
  failing after it never retries every shorter run.
- No two neighbouring quantifiers share characters (`[ \\t]*\\s*`, `\\s*\\n\\s*`):
  the text between them would be split every possible way before failing.
- A scan "up to the closing ']'" that could start again at every later opener is
  either bounded (`{0,255}`: an address literal is short), or done once with
  str.find: when no closer follows one opener, none follows a later one.
- A lazy scan to a terminator that begins with white space tests the terminator
  only where a run of white space starts (the `(?<!\\s)` in _EX_HASH_RE).

tests/hostile/test_regex.py feeds every pattern of this package 1 MB of repeated
prefixes of what it matches.  On top of that, the extractors read at most
MAX_TEXT characters and at most MAX_ATTEMPTS recipients.
"""

from __future__ import annotations

import bisect
import functools
import itertools
import re

from deliverck.explain import evidence
from deliverck.explain.model import Attempt
from deliverck.explain.status import find_status, normalise_garbled

_LOCAL = r"[\w.!#$%&'*+/=?^`{|}~-]"
# An address inside a larger pattern, after words that anchor it.  The domain's labels are
# possessive: what follows an address in these patterns is never a letter, digit or '-'.
_ADDR_IN = _LOCAL + r"++@[\w-]++(?:\.[\w-]++)+"
# An address searched for on its own starts where a run of local-part characters starts: the
# leftmost match is the same, and a long run without '@' is read once instead of once per character.
ADDR = rf"(?<!{_LOCAL})" + _ADDR_IN
_ADDR_RE = re.compile(ADDR)
_WS_RE = re.compile(r"\s+")
_IP_RE = re.compile(r"(?<![\w.:])(?:\d{1,3}\.){3}\d{1,3}(?![\w.])|(?<![\w:])(?:[0-9a-f]{1,4}:){2,7}[0-9a-f]{0,4}(?![\w:])", re.I)
_REPLY_HEAD_RE = re.compile(r"^\s*#?([245]\d\d)(?:(?:[ -]+#?|-?)([245]\.\d{1,3}\.\d{1,3})(?![\d.]))?(?:[ \t:,-]+|$)")
_STATUS_HEAD_RE = re.compile(r"^\s*#?([245]\.\d{1,3}\.\d{1,3})(?![\d.])[ \t:,-]*")
# The line that starts the returned original message.  "-----Original message follows" may be
# preceded by blank lines, which belong to the cut: see cut_original.
_ORIGINAL_MARKERS = re.compile(
    r"^[ \t]*+(?:-{2,}+\s*+(?:This is a copy of the message|Below this line is a copy of the message|Original message|"
    r"Unsent message below|Returned message|The header of the original message is following|"
    r"Forwarded message|Original Message)|"
    r"Original message headers:|Original Message Headers|------ This is a copy|"
    r"Content-Type: message/rfc822)",
    re.I | re.M)
_FOLLOWS_RE = re.compile(r"(?<!-)-{5,}+ ?Original message follows", re.I)
MAX_DIAG = 2000
MAX_TEXT = 256 * 1024       # characters of a bounce's human-readable text the extractors read (as mime.MAX_TEXT)
MAX_ATTEMPTS = 1000         # recipients read from one bounce (explain classifies the first 100)
MAX_FIELD = 2000            # characters kept of a field read from remote text: Reporting-MTA, Arrival-Date, a recipient, a host


def unwrap(text: str) -> str:
    return _WS_RE.sub(" ", text).strip()


def cut_original(text: str) -> str:
    """The bounce text without the returned original message that often follows it."""
    m = _ORIGINAL_MARKERS.search(text)
    end = m.start() if m else len(text)
    for f in _FOLLOWS_RE.finditer(text):
        # "-----Original message follows" after nothing but white space since a line start: the
        # cut starts at the first line start in that white space, however many lines it spans
        ws = f.start()
        while ws > 0 and text[ws - 1].isspace():
            ws -= 1
        nl = text.find("\n", ws, f.start())
        if ws == 0 or nl >= 0:
            end = min(end, 0 if ws == 0 else nl + 1)
            break
        if f.start() >= end:
            break
    return text[:end]


_TYPE_PREFIX_RE = re.compile(r"^(?:smtp|x-[\w-]++|x-unix|unix|mta|esmtp|dns)\s*+;\s*", re.I)


@functools.lru_cache(maxsize=256)
def _repeated_prefix_re(code: int, status: str) -> re.Pattern:
    """The "550-5.1.1 " that starts every line of a multi-line reply after the first (RFC 5321
    section 4.2.1), wherever unfolding left it."""
    if status:
        return re.compile(rf"(?m)(?:^|(?<=\s)){code}[ -](?:{re.escape(status)}\s*+)?")
    return re.compile(rf"(?m)(?:^|(?<=\s)){code}-")


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
        t = _repeated_prefix_re(code, status).sub(" ", t)
    else:
        m2 = _STATUS_HEAD_RE.match(t)
        if m2:
            status = m2.group(1)
            t = t[m2.end():]
    t = unwrap(t)
    if status and t.startswith(status) and t[len(status):len(status) + 1].isspace():
        t = t[len(status):].lstrip()
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
    """The fields read from remote text are cut to MAX_FIELD characters: no address, host or
    command is longer, and the patterns that read them later (systems.toml) see a bounded text."""
    code, status, rest = parse_reply(normalise_garbled(diag))
    return Attempt(recipient=recipient[:MAX_FIELD].strip().strip("<>").strip("."), code=code, status=status,
                   diagnostic=rest, source=source, **{k: v[:MAX_FIELD] for k, v in kw.items()})


# ------------------------------------------------------------------ RFC 3464 fields

_FIELD_RE = re.compile(r"\A([!-9;-~]{1,60}):[ \t]*+(.*)")


def field_blocks(text: str) -> list[list[tuple[str, str]]]:
    """'Name: value' blocks separated by blank lines, continuation lines unfolded.

    A value's lines are joined once at the end of its block: appending each fold to the
    string would copy the value again per line (quadratic in a field folded 100,000 times)."""
    blocks: list[list[tuple[str, str]]] = []
    cur: list[tuple[str, list[str]]] = []

    def close() -> None:
        blocks.append([(name, "\n".join(parts)) for name, parts in cur])
        cur.clear()

    for line in text.splitlines():
        if not line.strip():
            if cur:
                close()
            continue
        if line[:1] in " \t" and cur:
            cur[-1][1].append(line)
            continue
        m = _FIELD_RE.fullmatch(line)
        if m:
            cur.append((m.group(1), [m.group(2)]))
        elif cur:  # a broken fold: keep it with the field before
            cur[-1][1].append(line)
    if cur:
        close()
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
    action = unwrap(fields.get("action", "")[:MAX_FIELD]).lower().split(" ")[0]
    return action in ACTIONS and bool(_STATUS_VALUE_RE.match(fields.get("status", "")))


_STATUS_VALUE_RE = re.compile(r"\A\s*+([245])\.(\d{1,3})\.(\d{1,3})")


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
            if len(attempts) >= MAX_ATTEMPTS:
                continue
            diag = fields.get("diagnostic-code", "") or fields.get("x-supplementary-info", "")
            a = _attempt(_typed((fields.get("final-recipient", "") or fields.get("original-recipient", ""))[:MAX_FIELD]), diag, "delivery-status")
            a.original_recipient = _typed(fields.get("original-recipient", "")[:MAX_FIELD])
            a.action = unwrap(fields.get("action", "")[:MAX_FIELD]).lower()[:20]
            st = unwrap(fields.get("status", "")[:MAX_FIELD])
            m = _STATUS_VALUE_RE.match(st)
            field_status = ".".join(m.groups()) if m and m.start(1) == 0 else ""
            if field_status and not (a.status and field_status.endswith(".0.0") and a.status[0] == field_status[0]):
                a.status = field_status
            remote = _typed(fields.get("remote-mta", "")[:MAX_FIELD])
            if remote:
                ip_in = _bracketed(remote)
                if ip_in:
                    a.remote_ip = remote[ip_in[0] + 1:ip_in[1]]
                    remote = remote[:ip_in[0]].strip()
                if ips(remote) and remote == ips(remote)[0]:
                    a.remote_ip, remote = remote, ""
                a.remote_mta = remote
            a.last_attempt = unwrap(fields.get("last-attempt-date", "")[:MAX_FIELD])
            attempts.append(a)
        else:
            for k, v in fields.items():
                per_message.setdefault(k, unwrap(v[:MAX_FIELD]))
    return per_message, attempts


def _bracketed(s: str) -> tuple[int, int] | None:
    """Where the first "[...]" with something inside is (as a search for r"\\[([^\\]]+)\\]"), in
    one pass: when no ']' follows one '[', none follows a later one."""
    i = s.find("[")
    while i >= 0:
        j = s.find("]", i + 1)
        if j < 0:
            return None
        if j > i + 1:
            return i, j
        i = s.find("[", j)
    return None


# ------------------------------------------------------------------ human-readable formats

def _drop_spans(s: str, opener: str, closer: str, repl: str = " ") -> str:
    """s with every span from opener to the next closer replaced (re.sub of opener, "[^closer]*",
    closer), in one pass: when no closer follows one opener, none follows a later one."""
    out: list[str] = []
    pos = 0
    while True:
        i = s.find(opener, pos)
        j = s.find(closer, i + len(opener)) if i >= 0 else -1
        if j < 0:
            break
        out += (s[pos:i], repl)
        pos = j + len(closer)
    return "".join(out) + s[pos:] if out else s


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


def _postfix(text: str) -> tuple[list[Attempt], dict]:
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
        a = _attempt(b.group(1), diag, "postfix", **kw)
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


def _qmail(text: str) -> tuple[list[Attempt], dict]:
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
        out.append(_attempt(b.group(1), diag, "qmail", **kw))
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


def _exim(text: str) -> tuple[list[Attempt], dict]:
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
        diag = _drop_spans(body, "(generated from ", ")")
        diag = _EXIM_ERROR_LINE_RE.sub(" ", diag)
        diag = _EXIM_HOST_SUB_RE.sub(" ", diag)
        out.append(_attempt(rcpt, diag, "exim", **kw))
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


def _sendmail(text: str) -> tuple[list[Attempt], dict]:
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
            out.append(_attempt(b.group(1), diag, "sendmail", **kw))
    if not out and "Transcript of session follows" in text:
        own = _SM_TRANSCRIPT_RE.search(text.split("Transcript of session follows", 1)[1])
        diag = (replies[-1] if replies else "") or (own.group(1) if own else "")
        if diag:
            kw = {"remote_mta": talk.group(1)} if talk else {}
            out.append(_attempt(first_addr(diag) or first_addr(text), diag, "sendmail", **kw))
    return out, info


_EX_GENERATOR_RE = re.compile(r"(?:Generating server|DSN generated by)\s*+:\s*+(\S+)", re.I)
_EX_DELAYED_RE = re.compile(r"Delivery is delayed|delayed to these recipients|hasn't been delivered yet", re.I)
# "Remote Server returned '550 5.1.1 ...'" (Exchange 2007-2016): the reply is 1 to 1500 characters
# up to a quote that ends its line or comes before "<"; the quotes that can end one are listed once.
_EX_RETURNED_RE = re.compile(r"Remote Server (?:at (\S+?) \(([^)]{0,255}+)\) )?returned '", re.I)
_EX_QUOTE_END_RE = re.compile(r"'(?=[^\S\n]*+(?:\n|$|<))")
_EX_MAX_REPLY = 1500
# "user@example.com\n#550 5.1.1 RESOLVER.ADR.RecipNotFound; not found ##" (Exchange 2010+ text
# NDRs) and "#< #5.1.1 smtp;550 ...>".  The reply runs lazily to "##", "#SMTP#", ">" or the line
# end, after optional white space: the end is tried after the reply's first character and where
# a run of white space starts, never again inside a run, where it cannot succeed first.
_REPLY_TO_END = r".(?:.{0,599}?(?<!\s))??"
_EX_HASH_RE = re.compile(r"(?m)^[ \t]*+(?:([^\s<#]\S*+) )?#(?:< ?#)?([245]\d\d[ -]" + _REPLY_TO_END +
                         r"|[245]\.\d++\.\d++ " + _REPLY_TO_END + r")\s*(?:##|#SMTP#|>|$)")
# Exchange 2003: "<mx.example.com #5.1.1 smtp;550 ...>", the recipient on an earlier "user@x on date" line.
_EX_2003_RE = re.compile(r"<([\w.-]++) #([245]\.\d++\.\d++)( (?:smtp|x-\w++);)?")
_EX_ON_RE = re.compile(r"(?m)^[^\S\n]*+(" + ADDR + r") on ")
_EX_REPORTED_RE = re.compile(r"Reported error\s*:\s*(.+)", re.I)
_EX_RCPT_FIELD_RE = re.compile(r"Recipient Address\s*:\s*(\S+)", re.I)
_EX_SERVER_FIELD_RE = re.compile(r"Remote server\s*:\s*(\S+)", re.I)
_EX_STATUS_CODE_RE = re.compile(r"Status code\s*:\s*([245]\d\d [245]\.\d+\.\d+)", re.I)
_EX_COULDNT_RE = re.compile(r"Your message to (" + ADDR + r") couldn")
_HOSTNAME_RE = re.compile(r"\A[\w.-]+\.[a-z]{2,}", re.I)
_BEFORE = 4096        # characters before a reply searched for the recipient's lines


def _exchange(text: str) -> tuple[list[Attempt], dict]:
    info: dict = {}
    g = _EX_GENERATOR_RE.search(text)
    if g:
        info["reporting_mta"] = g.group(1)[:MAX_FIELD].strip(".")
    if _EX_DELAYED_RE.search(text):
        info["action"] = "delayed"
    out: list[Attempt] = []

    def rcpt_before(pos: int) -> tuple[str, str]:
        """The recipient (or the remote host) on one of the 4 lines before pos: a line longer than
        _BEFORE is neither."""
        before = text[max(0, pos - _BEFORE):pos].splitlines()
        if pos > _BEFORE:
            before = before[1:]          # the first line may be cut
        host = ""
        for ln in reversed(before[-4:]):
            s = _drop_spans(ln, "<mailto:", ">", "").strip()
            if not s:
                continue
            if _ADDR_RE.fullmatch(s.strip("<>")):
                return s.strip("<>"), host
            if _HOSTNAME_RE.fullmatch(s) and not host:
                host = s
        return "", host

    quotes: list[int] | None = None
    pos = 0
    while len(out) < MAX_ATTEMPTS:
        m = _EX_RETURNED_RE.search(text, pos)
        if m is None:
            break
        if quotes is None:
            quotes = [q.start() for q in _EX_QUOTE_END_RE.finditer(text)]
        k = bisect.bisect_left(quotes, m.end() + 1)
        if k == len(quotes):
            break                        # no closing quote after this reply, nor after any later one
        if quotes[k] - m.end() > _EX_MAX_REPLY:
            pos = m.start() + 1
            continue
        rcpt, host = rcpt_before(m.start())
        kw = {"remote_mta": m.group(1) or host, "remote_ip": m.group(2) or ""}
        out.append(_attempt(rcpt, text[m.end():quotes[k]], "exchange", **kw))
        pos = quotes[k] + 1
    if not out:
        for m in itertools.islice(_EX_HASH_RE.finditer(text), MAX_ATTEMPTS):
            rcpt, host = rcpt_before(m.start())
            kw = {"remote_mta": (m.group(1) or host or "").strip(".")}
            out.append(_attempt(rcpt, m.group(2), "exchange", **kw))
    if not out:
        ons: list[tuple[int, str]] | None = None
        on_ends: list[int] = []
        pos = 0
        while len(out) < MAX_ATTEMPTS:
            m = _EX_2003_RE.search(text, pos)
            if m is None:
                break
            if m.group(3):               # "smtp;reply>": the reply runs to the next '>'
                gt = text.find(">", m.end())
                if gt < 0:
                    break                # no '>' after it: no later one can end either
                diag, pos = text[m.end():gt], gt + 1
            elif text.startswith(">", m.end()):
                diag, pos = None, m.end() + 1
            else:
                pos = m.start() + 1
                continue
            if ons is None:              # the "user@example.com on <date>" lines, found once
                ons = [(x.end(), x.group(1)) for x in _EX_ON_RE.finditer(text)]
                on_ends = [e for e, _ in ons]
            i = bisect.bisect_right(on_ends, m.start()) - 1   # the last one before the reply
            a = _attempt(ons[i][1] if i >= 0 else "", diag or m.group(2), "exchange")
            if not a.status:
                a.status = m.group(2)
            out.append(a)
    if not out:
        rep = _EX_REPORTED_RE.search(text)
        if rep:
            r = _EX_RCPT_FIELD_RE.search(text)
            s = _EX_SERVER_FIELD_RE.search(text)
            out.append(_attempt(r.group(1) if r else "", rep.group(1), "exchange",
                                remote_mta=s.group(1).strip(".") if s else ""))
    if not out:
        sc = _EX_STATUS_CODE_RE.search(text)
        if sc:
            r = _EX_COULDNT_RE.search(text)
            out.append(_attempt(r.group(1) if r else "", sc.group(1), "exchange"))
    return out, info


_GM_DELAYED_RE = re.compile(r"Delivery incomplete|temporary problem delivering|will retry for|Technical details of temporary failure", re.I)
_GM_RCPT_RES = (re.compile(r"wasn'?t delivered to (" + ADDR + ")"), re.compile(r"delivering your message to (" + ADDR + ")"),
                re.compile(r"Your message to (" + ADDR + ") has been blocked"),
                re.compile(r"Delivery to the following recipients? failed (?:permanently|temporarily):[^\S\n]*+\n\s*+(" + ADDR + ")"),
                re.compile(r"Delivery to the following recipients? (?:has been delayed|failed):[^\S\n]*+\n\s*+(" + ADDR + ")"))
_GM_REPLY_RES = (re.compile(r"The response (?:from the remote server )?was:[ \t]*+\n++((?:[^\S\n]*+\S[^\n]*+\n?){1,12})"),
                 re.compile(r"The error that the other server returned was:[ \t]*+\n++((?:[^\S\n]*+\S[^\n]*+\n?){1,12})"))
_GM_REMOTE_RE = re.compile(r"by ([\w.-]+?)\.? \[([0-9a-f.:]++)\]", re.I)


def _gmail(text: str) -> tuple[list[Attempt], dict]:
    info: dict = {}
    if _GM_DELAYED_RE.search(text):
        info["action"] = "delayed"
    rc = next((m for m in (rx.search(text) for rx in _GM_RCPT_RES) if m), None)
    d = next((m for m in (rx.search(text) for rx in _GM_REPLY_RES) if m), None)
    out = []
    if d or rc:
        kw: dict = {}
        r = _GM_REMOTE_RE.search(text)
        if r:
            kw = dict(remote_mta=r.group(1), remote_ip=r.group(2))
        out.append(_attempt(rc.group(1) if rc else "", d.group(1) if d else "", "gmail", **kw))
        if not d:
            out[-1].diagnostic = ""
    return out, info


_MUSE_RE = re.compile(r"The message to (\S+?) is bounced because\s*:\s*(.+)")


def _musemail(text: str) -> tuple[list[Attempt], dict]:
    out = []
    for m in itertools.islice(_MUSE_RE.finditer(text), MAX_ATTEMPTS):
        out.append(_attempt(m.group(1), m.group(2), "musemail"))
    return out, {}


# 收件人/收信人 (recipient), 退信原因/失败原因/错误原因/原因 (reason for the bounce / failure / error).
# The address may follow the word without a separator, and the word's characters are local-part
# characters too ("收件人收件人..."): the local part is read up to RFC 5321's limit of 64 (section
# 4.5.3.1.1), so each occurrence of the word costs at most that.
_CN_RCPT_RE = re.compile(r"(?:\u6536\u4EF6\u4EBA|\u6536\u4FE1\u4EBA|Rcpt to|Recipient)\s*+[:\uFF1A]?\s*+<?("
                         + _LOCAL + r"{1,64}+@[\w-]++(?:\.[\w-]++)+)", re.I)
_CN_SAID_RE = re.compile(r"(?:Remote host said|host \S++ said|said)\s*[:\uFF1A]\s*(.+)", re.I)
_CN_WHY_RE = re.compile(r"(?:\u9000\u4FE1\u539F\u56E0|\u5931\u8D25\u539F\u56E0|\u9519\u8BEF\u539F\u56E0|\u539F\u56E0)\s*+(?:[:\uFF1A]\s*+)?+([^\n]+)")


def _chinese(text: str) -> tuple[list[Attempt], dict]:
    rc = _CN_RCPT_RE.search(text)
    said = _CN_SAID_RE.search(text)
    why = _CN_WHY_RE.search(text)
    if not (said or why):
        return [], {}
    diag = said.group(1) if said else why.group(1)
    a = _attempt(rc.group(1) if rc else first_addr(diag), diag, "chinese")
    if said and why and not (a.code or a.status):
        a.diagnostic = unwrap(why.group(1) + " " + a.diagnostic)[:MAX_DIAG]
    return [a], {}


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


def _postfix_log(text: str) -> Attempt | None:
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
    a = _attempt(t.group(1), diag, "postfix-log", **kw)
    if not a.status or a.status[0] != d.group(1)[0]:
        a.status = d.group(1)
    if d.group(2) == "deferred":
        a.action = "delayed"
    elif d.group(2) in ("bounced", "expired", "undeliverable"):
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
# One alternation of both would be tried at every character; split in two, the first is tried at
# line starts and the second (after a lookahead naming the markers' first characters) at those
# characters.  _loose_replies reads them as that one alternation would.
_LOOSE_REPLY = r"""[ \t'"(]*+(#?[45]\d\d(?:[ -]#?[45]\.\d{1,3}\.\d{1,3})?(?:[ \t:,-][^\n]*)?$(?:\n[ \t]*[45]\d\d[ -][^\n]*)*)"""
_LOOSE_LINE_RE = re.compile(r"(?im)^" + _LOOSE_REPLY)
_LOOSE_MARKED_RE = re.compile(r"(?im)(?=[srwe<b\u56DE])(?:said:|returned|was:|reason:|<<<|error:|because:|\bwith\b|\breply:|"
                              r"\bresponse:|\u56DE\u590D[:\uFF1A]?)" + _LOOSE_REPLY)


def _loose_replies(text: str):
    """The matches of the two patterns in text order, each search starting after the match before,
    as finditer of their alternation gives them (a match of one never starts where the other's does)."""
    pos = 0
    a, b = _LOOSE_LINE_RE.search(text), _LOOSE_MARKED_RE.search(text)
    while a is not None or b is not None:
        m = a if b is None or (a is not None and a.start() < b.start()) else b
        yield m
        pos = m.end()
        if a is not None and a.start() < pos:       # passed: search again after the match
            a = _LOOSE_LINE_RE.search(text, pos)
        if b is not None and b.start() < pos:
            b = _LOOSE_MARKED_RE.search(text, pos)


def text_attempt(text: str) -> Attempt:
    """For a text that is a bounce by its wording: its first reply found loosely, else the whole
    (bounded) text as the reason, with a status the text carries."""
    for m in _loose_replies(text):
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
    ("exchange", re.compile(r"Diagnostic information for administrators|Remote Server (?:at \S++ \([^)]{0,255}+\) )?returned|Delivery has failed to these recipients|"
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
    """(format name, attempts, info) from a bounce's human-readable text (its first MAX_TEXT
    characters); ("", [], {}) when no format fits."""
    text = text[:MAX_TEXT]
    for name, detector, fn in EXTRACTORS:
        if detector.search(text):
            attempts, info = fn(text)
            if attempts:
                return name, attempts, info
    return "", [], {}


def detected_format(text: str) -> str:
    text = text[:MAX_TEXT]
    for name, detector, _ in EXTRACTORS:
        if detector.search(text):
            return name
    return ""
