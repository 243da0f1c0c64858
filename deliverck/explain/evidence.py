"""Is this a bounce at all?  The evidence that a text or a message reports a failed delivery.

explain must not turn a README, a licence or a config file into a category:
rules.toml holds generic phrases ("SPF", "spam", "Kerberos") and an enhanced
status code has the shape of any version number ("2.9.2").  So a code or a
phrase counts only where a bounce puts it (docs/explain.md, "Is it a bounce?"):

- an SMTP reply (RFC 5321 section 4.2: a 4xx/5xx code, with an enhanced status
  of the same class, RFC 3463 section 2) at the start of a line, or a reply
  after the words MTAs quote replies with ("said:", "returned '...'",
  "<<<", "(reason: ...)", "The response was:", "SMTP error from remote mail
  server after ...:", a Diagnostic-Code field);
- an enhanced status after "#" (Exchange "#5.1.1", qmail "(#5.1.1)") or as the
  value of a Status field (RFC 3464 section 2.3.4);
- the framing sentences of the reporting MTA ("could not be delivered",
  "Undelivered Mail Returned to Sender", "Mail delivery failed", ...) near the
  start of the text, where bounces put them.

Files that quote replies as examples or data are recognised first and are never
bounces: data and configs (JSON, TOML, INI, YAML), program source and patches,
Markdown/HTML/XML documents and RFCs.  Anything else without evidence is not a
bounce either, and the reason says what it looks like (a log, a CSV file, a
text).  All patterns are compiled once at import, each runs at most once over a
bounded text, and none can backtrack badly: the cost per input is linear in its
size and does not depend on the number of rules.
"""

from __future__ import annotations

import csv
import io
import json
import re
import tomllib
from dataclasses import dataclass

# Kinds of input that are not bounces (JSON "not_a_bounce.kind"; docs/explain.md).
KINDS = {   # kind: (one, several)
    "text": ("text without a bounce", "texts without a bounce"),
    "data": ("data or config file", "data or config files"),
    "source": ("source file or patch", "source files or patches"),
    "log": ("log without a failure reply", "logs without a failure reply"),
    "document": ("document (Markdown, HTML, XML, RFC)", "documents (Markdown, HTML, XML, RFC)"),
    "message": ("ordinary message", "ordinary messages"),
    "auto_reply": ("automatic reply", "automatic replies"),
    "read_receipt": ("read receipt", "read receipts"),
    "delivered": ("delivery report without a failure", "delivery reports without a failure"),
    "success_reply": ("success reply", "success replies"),
}

_GAP = r"[ \t'\"(\[\r\n]{0,12}(?:(?:smtp|esmtp|x-[\w-]{1,30}|unix)[ \t]*;[ \t]*)?"
_REPLY_CODE = r"#?(?P<code>[2-5]\d\d)(?:[ -]#?(?P<st>[2-5]\.\d{1,3}\.\d{1,3}))?(?![\d.])"
_REPLY_STATUS = r"#?(?P<st2>[2-5]\.\d{1,3}\.\d{1,3})(?![\d.])[ \t:,-]"
# The words MTAs put in front of a remote server's reply (Postfix bounce(8) "host X said:",
# qmail "Remote host said:", Exchange "Remote Server returned '...'" and "responded with:",
# Sendmail "<<< " transcripts and "(reason: ...)", Gmail "The response was:", Exim "SMTP error
# from remote mail server after RCPT TO:<x>:", RFC 3464 Diagnostic-Code, Exchange "Status code:").
# The lookahead names the first characters of the markers: the engine then tries the 13 of them
# only there, not at every character (a case-insensitive alternation gets no such shortcut).
_MARKER = (r"(?=[srt<(\u56DE])(?:\bsaid:|\breturned[ \t]*+(?=')|\breturned was:|\bresponded with:|<<<|\(reason:|\breason:|"
           r"\bThe response (?:from the remote server )?was:|\bserver returned was:|"
           r"\bSMTP error from remote (?:mail server|mailer) after [^\n]{0,300}?:|"
           r"\bStatus code[ \t]*+:|\bremote server reply:|\u56DE\u590D[:\uFF1A])")
_MARKED_RE = re.compile(_MARKER + _GAP + r"(?:" + _REPLY_CODE + r"|" + _REPLY_STATUS + r")", re.I | re.M)
# RFC 3464 Diagnostic-Code at the start of a line, a marker of its own: a match of one of the two
# patterns never overlaps a match of the other, so together they find what one alternation would.
_DIAGNOSTIC_RE = re.compile(r"^[ \t]*+Diagnostic[- ]Code[ \t]*+:" + _GAP + r"(?:" + _REPLY_CODE + r"|" + _REPLY_STATUS + r")", re.I | re.M)
# "550 5.1.1 ..." or "550-5.1.1 ..." at the start of a line: a reply with its enhanced status.
_LINE_RE = re.compile(r"^[ \t]*#?(?P<code>[45]\d\d)[ -]#?(?P<st>[45]\.\d{1,3}\.\d{1,3})(?![\d.])", re.M)
# Exchange "#550 5.1.1", "#5.1.1 smtp;550 ...", "#< #5.1.1", qmail "(#5.1.1)".  The '#' comes first
# and what may not precede it is looked behind from after it: a pattern that starts with a
# character is searched for that character, one that starts with a lookbehind at every position.
_HASH_RE = re.compile(r"#(?<![\w&#/]#)(?:< ?#)?(?:(?P<code>[45]\d\d)[ -](?P<st>[45]\.\d{1,3}\.\d{1,3})|(?P<st2>[45]\.\d{1,3}\.\d{1,3}))(?![\d.])")
# RFC 3464 Status field on a line of its own: "Status: 5.1.1" (a comment may follow).
_STATUS_FIELD_RE = re.compile(r"^[ \t]*+Status[ \t]*+:[ \t]*+(?P<st>[45]\.\d{1,3}\.\d{1,3})[ \t]*+(?:\([^)\n]{0,200}\)[ \t]*+)?$", re.I | re.M)
_CONTINUATION_RE = re.compile(r"(?:\n[ \t]*[2-5]\d\d[ -][^\n]*){1,30}")

# The reporting MTA's own sentences (Postfix bounce(8) templates, Exim, qmail-send, Sendmail,
# Exchange/Exchange Online NDRs, Gmail, Chinese providers, seeds 002 and 004, FML, Japanese carriers).
_WORDING_RE = re.compile(
    r"(?=[umecdrfnptiy*\u9000\u6295\u672A\u65E0\u90AE\u914D\u9001\u5C4A])"     # the first characters of the sentences below
    r"(?:undeliver(?:able|ed mail)|"
    r"\b(?:message|mail|e-?mail)\b[^\n.]{0,80}?\b(?:could ?n[o']t|was ?n[o']t|has ?n[o']t|have ?n[o']t|is ?n[o']t)"
    r"[ \t]+(?:yet[ \t]+)?(?:been[ \t]+|be[ \t]+)?(?:yet[ \t]+)?delivered|"
    r"\bcould ?n[o']t be delivered to\b|\bdelivery (?:has )?failed to these recipients|"
    r"\bdelivery to the following recipients? (?:failed|has been delayed)|\bdelivery is delayed to\b|"
    r"\bmail delivery (?:failed|system|subsystem)\b|\breturned mail\b|\breturning message to sender\b|"
    r"\bfailure notice\b|\bnon-?delivery (?:report|notification)\b|\bdelivery status notification \((?:failure|delay)\)|"
    r"\bpermanent fatal errors\b|\bfailed permanently\b|\bThis is a permanent error\b|"
    r"\*\* ?(?:address not found|message not delivered|message blocked|delivery incomplete) ?\*\*|"
    r"\bThis is the (?:mail system|Postfix program|qmail-send program) at\b|"
    r"\bcreated automatically by mail delivery software\b|\b(?:could ?n[o']t|unable to) deliver (?:your |the |this )?(?:message|mail)\b|"
    r"\bI'?m sorry to (?:have to )?inform you that your message\b|"
    r"\byou are not a member of this (?:mailing )?list\b|"                                   # FML's refusal of a post
    r"\u9000\u4FE1|\u6295\u9012\u5931\u8D25|\u672A\u80FD\u6210\u529F\u9001\u8FBE|\u65E0\u6CD5\u9001\u8FBE|\u90AE\u4EF6\u53D1\u9001\u5931\u8D25|"
    r"\u914D\u4FE1\u3067\u304D\u307E\u305B\u3093\u3067\u3057\u305F|\u9001\u4FE1\u3067\u304D\u307E\u305B\u3093\u3067\u3057\u305F|"  # Japanese: could not be delivered / sent
    r"\u5C4A\u3051\u3089\u308C\u307E\u305B\u3093\u3067\u3057\u305F)",
    re.I)
WORDING_HEAD = 3000      # characters from the start of a text in which the bounce's framing counts
# The From field of the reporting MTA (RFC 3464 section 2 has no rule for it; every MTA uses one of these).
_FROM_RE = re.compile(r"\bmailer-daemon\b|\bmail delivery (?:system|subsystem)\b", re.I)

_AUTO_SUBJECT_RE = re.compile(r"^\s*(?:auto(?:matic)?[ -]?(?:reply|response|antwort)|out of (?:the )?office|abwesen|absence|"
                              r"r[ée]ponse automatique|respuesta autom[áa]tica|risposta automatica|vacation|on leave|away from)"
                              r"|\u81EA\u52A8\u56DE\u590D", re.I)
_YAML_LINE_RE = re.compile(r"^(?:---|\.\.\.|[ \t]*#.*|[ \t]*-(?:[ \t].*)?|[ \t]*[\w.\"'-][\w .\"'/-]{0,60}:(?:[ \t].*)?|[ \t]+\S.*)$")
_YAML_KEY_RE = re.compile(r"^[ \t]*(?:- )?[\w.\"'-][\w .\"'/-]{0,60}:(?:[ \t]|$)")
_INI_SECTION_RE = re.compile(r"^\[[^\]\n]{1,100}\]$")
_INI_LINE_RE = re.compile(r"^(?:[;#].*|\[[^\]\n]{1,100}\]|[^=:\s][^=:\n]{0,100}[=:].*|[ \t]+\S.*)$")
DATA_SNIFF = 1024 * 1024  # characters parsed to recognise a data file


@dataclass(frozen=True)
class Reply:
    code: int
    status: str
    text: str        # the reply from its code to the end of its line (multi-line replies joined)
    where: str       # what made it a reply: the marker words, "line start", "#"
    start: int       # offset of the reply in the text


def _codes(m: re.Match) -> tuple[str | None, str | None]:
    g = m.groupdict()
    return g.get("code"), g.get("st") or g.get("st2")


def _reply_at(text: str, m: re.Match, where: str) -> Reply | None:
    code, st = _codes(m)
    if code and st and code[0] != st[0]:
        return None      # "550 4.2.1": reply code and status of different classes is no reply (RFC 3463 section 2)
    g = m.groupdict()
    start = m.start("code") if code else m.start("st2" if g.get("st2") else "st")
    end = text.find("\n", m.end())
    end = len(text) if end < 0 else end
    cont = _CONTINUATION_RE.match(text, end) if code else None
    if cont:
        end = cont.end()
    marker = where or " ".join(text[m.start():start].split()).rstrip(" '\"([;") or "a marker"
    return Reply(int(code) if code else 0, st or "", text[start:end], marker, start)


def _first(text: str, failure: bool) -> Reply | None:
    """The earliest reply in reply context (a 4xx/5xx one if failure); each pattern stops at its
    first hit, so the work is one linear scan per pattern whatever the text.  A hit that is passed
    over costs nothing more: its line is read only for the hit that is kept (reading the line of
    every success reply on a line repeating "said: 250" would be quadratic)."""
    best: Reply | None = None
    for rx, where in ((_MARKED_RE, ""), (_DIAGNOSTIC_RE, ""), (_LINE_RE, "line start"), (_HASH_RE, "#")):
        for m in rx.finditer(text):
            code, st = _codes(m)
            if code and st and code[0] != st[0]:
                continue
            if failure and not is_failure(int(code) if code else 0, st or ""):
                continue
            if best is not None and m.start() >= best.start:
                break
            r = _reply_at(text, m, where)
            assert r is not None, "_reply_at gives None only for the class mismatch skipped above"
            if best is None or r.start < best.start:
                best = r
            break
    return best


def first_failure(text: str) -> Reply | None:
    """The first 4xx/5xx reply in reply context, or None."""
    return _first(text, True)


def first_reply(text: str) -> Reply | None:
    """The first reply in reply context, success replies (2xx) included, or None."""
    return _first(text, False)


def is_failure(code: int, status: str) -> bool:
    c = status[:1] if status else str(code)[:1] if code else ""
    return c in ("4", "5")


def context_status(text: str) -> str:
    """An enhanced status where only a bounce puts one: after '#' or as a Status field's value."""
    m = _STATUS_FIELD_RE.search(text) or _HASH_RE.search(text)
    if not m:
        return ""
    return m.group("st") or (m.groupdict().get("st2") or "")


def wording(text: str, head: int = WORDING_HEAD) -> str:
    """The first bounce sentence near the start of text ('' if none)."""
    m = _WORDING_RE.search(text, 0, min(len(text), head))
    return m.group(0) if m else ""


def from_daemon(from_: str) -> str:
    """The From of a bounce: MAILER-DAEMON, "Mail Delivery System/Subsystem" ('' if not)."""
    m = _FROM_RE.search(from_ or "")
    return m.group(0) if m else ""


def auto_reply(subject: str, headers: dict[str, str]) -> str:
    """Why a message is an automatic reply (RFC 3834 and the headers autoresponders add), or ''."""
    auto = headers.get("auto-submitted", "").split(";")[0].strip().lower()
    if headers.get("x-autoreply") or headers.get("x-autorespond"):
        return "it carries an X-Autoreply/X-Autorespond field"
    if headers.get("precedence", "").strip().lower() == "auto_reply":
        return "Precedence: auto_reply"
    if _AUTO_SUBJECT_RE.search(subject or ""):
        return f"its subject says so ({subject[:60]!r})"
    if auto == "auto-replied":
        return "Auto-Submitted: auto-replied (RFC 3834)"
    return ""


# ------------------------------------------------------------------ data files, source, documents

# A Markdown heading: "# Title" with a blank line after it (a "# comment" in code or a config
# file runs straight into the next line).
_MD_HEADING_RE = re.compile(r"^#{1,6}[ \t]+\S[^\n]*\n[ \t]*\n", re.M)
# A patch (unified diff) or a version-control log: the text of changes, not of a delivery.
_PATCH_RE = re.compile(r"^(?:diff --git |--- a/\S|\+\+\+ b/\S|@@ -\d+(?:,\d+)? \+\d+(?:,\d+)? @@|commit [0-9a-f]{7,64}$)", re.M)
_MD_FENCE_RE = re.compile(r"^[ \t]*(?:```|~~~)", re.M)
# An RFC or Internet-Draft: its examples (DSNs, replies) are not bounces.
_RFC_RE = re.compile(r"^(?:Request for Comments|Internet-Draft|Network Working Group)\b", re.M)
_MARKUP_RE = re.compile(r"\A\s*(?:<!DOCTYPE\s+html|<html\b|<\?xml\b|<svg\b)", re.I)
# Lines only program text has: definitions, imports, control flow, declarations (Python, JavaScript/
# TypeScript, Go, C/C++, Java/C#, Rust, shell).  Bounce texts have none of them.
_CODE_LINE_RE = re.compile(r"""^[ \t]*+(?:
    (?:async[ \t]+)?def[ \t]+\w+[ \t]*\(|class[ \t]+\w+[^\n]*[:{][ \t]*$|import[ \t]+[\w.{*"']|from[ \t]+[\w.]+[ \t]+import\b|
    return\b|raise\b|elif\b|else[ \t]*[:{]|try[ \t]*[:{]|except\b|finally[ \t]*[:{]|(?:with|for|while|if)[ \t][^\n]*:[ \t]*$|
    @\w[\w.]*(?:\(|[ \t]*$)|
    (?:export[ \t]+)?(?:default[ \t]+)?(?:async[ \t]+)?function\b|(?:const|let|var)[ \t]+\w+[ \t]*[=:]|module\.exports|
    package[ \t]+[\w.]+;?[ \t]*$|func[ \t]+[\w(]|type[ \t]+\w+[ \t]+(?:struct|interface)\b|\#include[ \t]*[<"]|\#define[ \t]|
    (?:public|private|protected|internal)[ \t]+(?:static[ \t]+)?[\w<>\[\],. ]+\(|
    (?:pub[ \t]+)?fn[ \t]+\w+|use[ \t]+[\w:]+[^\n]*;[ \t]*$|impl\b|
    \}[ \t]*(?:else|catch|finally)?[^\n]*\{?[ \t]*$|[\w.\[\]"']+[ \t]*(?:=|\+=|:=)[^\n]*[;{][ \t]*$|
    (?:echo|local|set[ \t]+-[euxo])\b|(?:fi|done|esac|then)[ \t]*$
)""", re.X | re.M)


def document_kind(text: str) -> str:
    """'source' for program text, 'document' for Markdown or HTML/XML, else ''.

    Such files quote replies and bounce sentences as examples or test data (this project's
    own sources and docs do); what they quote is not a bounce that happened.  A shebang, or
    at least 3 lines that only code has making up a fifth of the text, or a patch or
    version-control log, is source; two Markdown headings (or one and a code fence), an
    HTML/XML start, or an RFC's header is a document."""
    head = text[:200_000]
    if head.startswith("#!") or _MARKUP_RE.match(head):
        return "source" if head.startswith("#!") else "document"
    if len(_PATCH_RE.findall(head, 0, 20_000)) >= 2:
        return "source"
    lines = [ln for ln in head.splitlines()[:2000] if ln.strip()]
    if not lines:
        return ""
    code = sum(1 for ln in lines if _CODE_LINE_RE.match(ln))
    if code >= 3 and code * 5 >= len(lines):
        return "source"
    if _RFC_RE.search(head, 0, 4000):
        return "document"
    headings = len(_MD_HEADING_RE.findall(head))
    if headings >= 2 or (headings and _MD_FENCE_RE.search(head)):
        return "document"
    return ""



def data_format(text: str, loose: bool = False) -> str:
    """'JSON', 'JSON lines', 'TOML', 'INI' or 'YAML' when text is such a document, else ''.

    Those are parsed (or matched line by line) strictly: no bounce text is one.  loose also
    recognises CSV (every row with the same number of fields), which a short text can look
    like by chance: ask it only of a text with no evidence of a bounce."""
    t = text[:DATA_SNIFF].strip()
    lines = [ln for ln in t.splitlines() if ln.strip()]
    if not lines:
        return ""
    if t[:1] in "{[":
        try:
            json.loads(t)
            return "JSON"
        except json.JSONDecodeError as e:
            if len(text) >= DATA_SNIFF and e.pos >= len(t) - 1000:
                return "JSON"      # valid up to where the sniffed part was cut
        except ValueError:
            pass
        if all(ln.strip()[:1] in "{[" for ln in lines[:50]):
            try:
                for ln in lines[:50]:
                    json.loads(ln)
                return "JSON lines"
            except ValueError:
                pass
    if len(lines) >= 2 and ("=" in t or t.lstrip().startswith("[")):
        try:
            if tomllib.loads(t):
                return "TOML"
        except (tomllib.TOMLDecodeError, ValueError, RecursionError):
            pass
    meaningful = [ln for ln in lines if not ln.lstrip().startswith(("#", ";"))]
    if len(meaningful) >= 2 and _INI_SECTION_RE.match(meaningful[0].strip()) and all(_INI_LINE_RE.match(ln) for ln in lines[:2000]):
        return "INI"
    if (len(meaningful) >= 3 and all(_YAML_LINE_RE.match(ln) for ln in lines[:2000])
            and sum(1 for ln in meaningful if _YAML_KEY_RE.match(ln)) * 2 >= len(meaningful)
            and (lines[0].strip() == "---" or any(ln[:1] in " \t-" for ln in meaningful))):
        return "YAML"
    if loose and len(lines) >= 3:
        try:
            dialect = csv.Sniffer().sniff("\n".join(lines[:20]), delimiters=",;\t|")
            rows = list(csv.reader(io.StringIO("\n".join(lines[:200])), dialect))
        except csv.Error:
            rows = []
        prose = sum(1 for r in rows for f in r if len(f.split()) > 3)
        if rows and len(rows[0]) >= 2 and all(len(r) == len(rows[0]) for r in rows) and prose * 4 <= sum(map(len, rows)):
            return "CSV"
    return ""


_LOG_LINE_RE = re.compile(r"^(?:[A-Z][a-z]{2} [ \d]\d \d\d:\d\d:\d\d|\d{4}-\d\d-\d\d[T ]\d\d:\d\d|\[\d{4}-\d\d-\d\d|"
                          r"\S+ \S+ \S+ \[\d\d/[A-Z][a-z]{2}/\d{4}:|<\d{1,3}>\d? ?\S)")


def is_log(text: str) -> bool:
    """Most lines start with a time stamp (syslog, ISO 8601, common log format)."""
    lines = [ln for ln in text[:200_000].splitlines()[:500] if ln.strip()]
    return len(lines) >= 3 and sum(1 for ln in lines if _LOG_LINE_RE.match(ln)) * 10 >= len(lines) * 7
