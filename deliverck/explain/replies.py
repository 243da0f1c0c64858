"""SMTP replies and addresses as bounces quote them: the pieces every bounce format's reader shares.

Every pattern here runs on remote text in time linear in its length; formats.py's docstring
gives the rules that keep it so, and tests/hostile/test_regex.py checks each pattern.
"""

from __future__ import annotations

import functools
import re

from deliverck.explain.model import Attempt
from deliverck.explain.status import find_status, normalise_garbled

LOCAL = r"[\w.!#$%&'*+/=?^`{|}~-]"
# An address inside a larger pattern, after words that anchor it.  The domain's labels are
# possessive: what follows an address in these patterns is never a letter, digit or '-'.
_ADDR_IN = LOCAL + r"++@[\w-]++(?:\.[\w-]++)+"
# An address searched for on its own starts where a run of local-part characters starts: the
# leftmost match is the same, and a long run without '@' is read once instead of once per character.
ADDR = rf"(?<!{LOCAL})" + _ADDR_IN
ADDR_RE = re.compile(ADDR)
_WS_RE = re.compile(r"\s+")
_IP_RE = re.compile(r"(?<![\w.:])(?:\d{1,3}\.){3}\d{1,3}(?![\w.])|(?<![\w:])(?:[0-9a-f]{1,4}:){2,7}[0-9a-f]{0,4}(?![\w:])", re.I)
_REPLY_HEAD_RE = re.compile(r"^\s*#?([245]\d\d)(?:(?:[ -]+#?|-?)([245]\.\d{1,3}\.\d{1,3})(?![\d.]))?(?:[ \t:,-]+|$)")
_STATUS_HEAD_RE = re.compile(r"^\s*#?([245]\.\d{1,3}\.\d{1,3})(?![\d.])[ \t:,-]*")
MAX_DIAG = 2000
MAX_TEXT = 256 * 1024       # characters of a bounce's human-readable text the extractors read (as mime.MAX_TEXT)
MAX_ATTEMPTS = 1000         # recipients read from one bounce (explain classifies the first 100)
MAX_FIELD = 2000            # characters kept of a field read from remote text: Reporting-MTA, Arrival-Date, a recipient, a host


def unwrap(text: str) -> str:
    if text.isascii() and text.isprintable() and "  " not in text:
        return text.strip()     # its only white space is single spaces: the substitution changes nothing
    return _WS_RE.sub(" ", text).strip()



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
    m = ADDR_RE.search(text)
    return m.group(0).strip(".") if m else ""


def ips(text: str) -> list[str]:
    return [m.group(0) for m in _IP_RE.finditer(text)]


def attempt(recipient: str, diag: str, source: str, **kw) -> Attempt:
    """The fields read from remote text are cut to MAX_FIELD characters: no address, host or
    command is longer, and the patterns that read them later (systems.toml) see a bounded text."""
    code, status, rest = parse_reply(normalise_garbled(diag))
    return Attempt(recipient=recipient[:MAX_FIELD].strip().strip("<>").strip("."), code=code, status=status,
                   diagnostic=rest, source=source, **{k: v[:MAX_FIELD] for k, v in kw.items()})



def drop_spans(s: str, opener: str, closer: str, repl: str = " ") -> str:
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
