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

These rules hold for the format families' own modules too (formats_mta.py, formats_provider.py,
replies.py, dsn.py).  tests/hostile/test_regex.py feeds every pattern of this package 1 MB of repeated
prefixes of what it matches.  On top of that, the extractors read at most
MAX_TEXT characters and at most MAX_ATTEMPTS recipients.
"""

from __future__ import annotations

import functools
import re

from deliverck.explain import evidence
from deliverck.explain.formats_mta import exim, postfix, postfix_log, qmail, sendmail
from deliverck.explain.formats_other import (
    courier,
    dma,
    imail,
    interscan,
    james,
    mailfoundry,
    mailmarshal,
    mfilter,
    opensmtpd,
    sun_messaging,
)
from deliverck.explain.formats_provider import chinese, exchange, gmail, musemail
from deliverck.explain.model import Attempt
from deliverck.explain.replies import MAX_DIAG, MAX_TEXT, first_addr, parse_reply, smtp_code, unwrap
from deliverck.explain.status import find_status

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



def generic(text: str) -> tuple[list[Attempt], str]:
    """No known format: a Postfix log line of a failed delivery, the first failure reply in reply
    context (evidence.py), else an enhanced status where bounces put one; ([], "") when the text
    holds none.  A status code or a reply code anywhere else (a version, a date, a section
    number) is not read."""
    a = postfix_log(text)
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
        if a is not None and (b is None or a.start() < b.start()):
            m = a
        else:
            assert b is not None, "the loop runs while one of them is not None"
            m = b
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
                            r"Delivery is delayed to these recipients", re.I), exchange),
    ("gmail", re.compile(r"The response (?:from the remote server )?was:|Technical details of (?:permanent|temporary) failure|\*\* (?:Address not found|Message not delivered|"
                         r"Message blocked|Delivery incomplete) \*\*|Google tried to deliver your message|The error that the other server returned was", re.I), gmail),
    ("courier", re.compile(r"running the Courier mail server|Your message to the following recipients cannot be delivered", re.I), courier),
    ("sun-messaging", re.compile(r"This report relates to a message you sent with the following header fields", re.I), sun_messaging),
    ("james", re.compile(r"This is the James mail server|Failed recipient\(s\):", re.I), james),
    ("mailmarshal", re.compile(r"Could not be delivered because of", re.I), mailmarshal),
    ("dma", re.compile(r"This is the DragonFly Mail Agent|There was an error delivering your mail to <", re.I), dma),
    ("opensmtpd", re.compile(r"This is the MAILER-DAEMON, please DO NOT REPLY|the following list of recipients:", re.I), opensmtpd),
    ("mailfoundry", re.compile(r"Unable to deliver message to:", re.I), mailfoundry),
    ("interscan", re.compile(r"Sent <<< (?:RCPT TO|MAIL FROM):|InterScan Messaging Security", re.I), interscan),
    ("mfilter", re.compile(r"-{3}server message-{3}|m-FILTER", re.I), mfilter),
    ("imail", re.compile(r"^[ \t]*+(?:Unknown user|Delivery failed \d{1,4} attempts)[ \t]*+:", re.I | re.M), imail),
    ("postfix", re.compile(r"This is the (?:mail system|Postfix program) at host|^<[^<>\n]+>(?: \(expanded from <[^<>\n]*>\))?: (?:host \S+\[|Host or domain name not found|connect to )", re.I | re.M), postfix),
    ("qmail", re.compile(r"qmail-send program|wasn'?t able to deliver your message to the following addresses|unable to deliver your message to the following address", re.I), qmail),
    ("exim", re.compile(r"This message was created automatically by mail delivery software|could not be delivered to one or more of its\s+recipients|"
                        r"following address\(es\) failed|address\(es\) have not yet been delivered", re.I), exim),
    ("sendmail", re.compile(r"Transcript of session follows|The following addresses had (?:permanent fatal|transient non-fatal) errors|The original message was received at", re.I), sendmail),
    ("musemail", re.compile(r"is bounced because\s*:|MuseMail", re.I), musemail),
    ("chinese", re.compile(r"\u9000\u4FE1|\u9000\u56DE|\u6295\u9012\u5931\u8D25|\u672A\u80FD\u6210\u529F\u9001\u8FBE|Remote host said:", re.I), chinese),
)


@functools.cache
def _detector_words() -> tuple[tuple[frozenset[str] | None, ...], frozenset[str], re.Pattern | None]:
    """Each detector's words one of which any of its matches contains (rules._needs), and the scan
    that finds them: the rule table's word prefilter, so that a text is scanned once for all the
    words instead of once per case-insensitive detector (issue 16)."""
    from deliverck.explain.rules import _needs, _trie

    needs = tuple(_needs(detector) for _, detector, _ in EXTRACTORS)
    words = frozenset(w for n in needs if n is not None for w in n)
    return needs, words, re.compile(_trie(words)) if words else None


def _detected(text: str):
    """(name, extractor) of every detector that fires on text, in EXTRACTORS order, lazily."""
    from deliverck.explain.rules import _present

    needs, words, words_re = _detector_words()
    present = _present(words_re, words, text)
    for (name, detector, fn), need in zip(EXTRACTORS, needs, strict=True):
        if present is not None and need is not None and need.isdisjoint(present):
            continue        # none of its words is in the text: it cannot match
        if detector.search(text):
            yield name, fn


def extract(text: str) -> tuple[str, list[Attempt], dict]:
    """(format name, attempts, info) from a bounce's human-readable text (its first MAX_TEXT
    characters); ("", [], {}) when no format fits."""
    for name, fn in _detected(text[:MAX_TEXT]):
        attempts, info = fn(text[:MAX_TEXT])
        if attempts:
            return name, attempts, info
    return "", [], {}


def detected_format(text: str) -> str:
    return next((name for name, _ in _detected(text[:MAX_TEXT])), "")
