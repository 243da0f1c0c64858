"""The machine-readable part of a bounce: RFC 3464 delivery-status fields, read into attempts."""

from __future__ import annotations

import re

from deliverck.explain.model import Attempt
from deliverck.explain.replies import MAX_ATTEMPTS, MAX_FIELD, attempt, ips, unwrap

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


def typed(value: str) -> str:
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
        fields: dict[str, str] = {}
        for name, value in block:
            fields.setdefault(name.lower(), value)
        if _recipient_block(fields):
            if len(attempts) >= MAX_ATTEMPTS:
                continue
            diag = fields.get("diagnostic-code", "") or fields.get("x-supplementary-info", "")
            a = attempt(typed((fields.get("final-recipient", "") or fields.get("original-recipient", ""))[:MAX_FIELD]), diag, "delivery-status")
            a.original_recipient = typed(fields.get("original-recipient", "")[:MAX_FIELD])
            a.action = unwrap(fields.get("action", "")[:MAX_FIELD]).lower()[:20]
            st = unwrap(fields.get("status", "")[:MAX_FIELD])
            m = _STATUS_VALUE_RE.match(st)
            field_status = ".".join(m.groups()) if m and m.start(1) == 0 else ""
            if field_status and not (a.status and field_status.endswith(".0.0") and a.status[0] == field_status[0]):
                a.status = field_status
            remote = typed(fields.get("remote-mta", "")[:MAX_FIELD])
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

