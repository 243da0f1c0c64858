"""When each network step of an audit ran, who asked for it, and which steps decided the run's length.

The HTML report draws a waterfall of the audit (issue 19): every DNS question, SMTP session, TLS
handshake, HTTPS fetch and Kerberos exchange on one time axis.  The Context and the DNS client
note each step as it ends; the runner turns the notes into `model.Step`s relative to the audit's
start and marks the critical path.

Which check asked: `runner.attempt` sets `current_check` for the task of each check.  A fact is
computed in a task started by its first asker (`Context.fact`, `DnsClient.lookup`), and asyncio
copies the context into that task when it is created, so the step is credited to the first asker
even when other checks wait for the same answer.  Steps the run itself starts (the resolver's
sanity questions) carry "".

Bounded: a run keeps at most MAX_STEPS steps (the earliest to start); the rest are only counted
(`Report.timings_dropped`).  A normal audit takes 30 to 200 steps; a domain whose SPF includes
fan out, or a bulk target with many MX addresses, stays well under the bound.

Cost: noting a step is a tuple append and a context variable read; the critical path is one sort
and a binary search per step on the path, so a report with MAX_STEPS steps costs a few ms.
"""

from __future__ import annotations

import bisect
import contextlib
import contextvars
import time
from collections.abc import Awaitable, Iterable, Iterator, Sequence
from typing import Any, TypeVar

from deliverck.model import Step

MAX_STEPS = 2000
KINDS = ("dns", "smtp", "tls", "http", "kerberos")

# The id of the check whose attempt is running in this task ("" outside any check).
current_check: contextvars.ContextVar[str] = contextvars.ContextVar("deliverck_current_check", default="")

T = TypeVar("T")

# (kind, label, check, start, end): start and end in time.monotonic() seconds.
Raw = tuple[str, str, str, float, float]


class Timeline:
    """The non-DNS steps of one run (DNS steps come from the DnsClient's own log)."""

    def __init__(self, t0: float | None = None, limit: int = MAX_STEPS) -> None:
        self.t0 = time.monotonic() if t0 is None else t0
        self.limit = limit
        self.raw: list[Raw] = []
        self.dropped = 0

    def add(self, kind: str, label: str, start: float, end: float, check: str | None = None) -> None:
        if len(self.raw) >= self.limit:
            self.dropped += 1
            return
        self.raw.append((kind, label, current_check.get() if check is None else check, start, max(end, start)))

    @contextlib.contextmanager
    def step(self, kind: str, label: str) -> Iterator[None]:
        """Note the step around the block, also when it ends by an exception or a cancellation:
        the time it took until then is what the run waited."""
        start = time.monotonic()
        try:
            yield
        finally:
            self.add(kind, label, start, time.monotonic())


    async def timed(self, kind: str, label: str, work: Awaitable[T]) -> T:
        """Await `work` as one step."""
        with self.step(kind, label):
            return await work

    async def smtp(self, ip: str, port: int, host: str, probe: Awaitable[T]) -> T:
        """Await one SMTP probe and note its phases as steps: the TCP connection, the greeting
        and EHLO, STARTTLS with the TLS handshake, and the rest (EHLO again, the relay test,
        QUIT).  The phases are laid end to end from the durations the session measured
        (net/smtp.py: connect_ms and each reply's elapsed_ms), each cut at the session's end."""
        start = time.monotonic()
        try:
            session = await probe
        except BaseException:
            self.add("smtp", f"SMTP {where(ip, port)}", start, time.monotonic())
            raise
        self.add_session(session, ip, port, host, start, time.monotonic())
        return session

    def add_session(self, session: Any, ip: str, port: int, host: str, start: float, end: float) -> None:
        at = where(ip, port)
        connected = getattr(session, "greeting", None) is not None or getattr(session, "ehlo", None) is not None
        if not connected:
            self.add("smtp", f"connect {at}", start, end)
            return
        t = min(start + getattr(session, "connect_ms", 0) / 1000, end)
        self.add("smtp", f"connect {at}", start, t)
        dialogue = sum(r.elapsed_ms for r in (session.greeting, session.ehlo, session.helo) if r is not None)
        t1 = min(t + dialogue / 1000, end)
        self.add("smtp", f"greeting, EHLO {at}", t, t1)
        if session.starttls is not None:
            t2 = min(t1 + session.starttls.elapsed_ms / 1000, end)
            self.add("tls", f"STARTTLS {host or ip} ({at})", t1, t2)
            t1 = t2
        if end - t1 > 0.0005:
            self.add("smtp", f"SMTP {at}", t1, end)


def where(ip: str, port: int) -> str:
    return f"[{ip}]:{port}" if ":" in ip else f"{ip}:{port}"


def _ms(seconds: float) -> float:
    return round(seconds * 1000, 1)


def collect(timeline: Timeline, dns_log: Iterable[Sequence], dns_t0: float,
            dns_dropped: int = 0, limit: int = MAX_STEPS) -> tuple[tuple[Step, ...], int]:
    """(steps in start order with the critical path marked, steps left out past `limit`).

    `dns_log` holds the DnsClient's entries (qname, rdtype, start, end[, check]) in seconds
    since `dns_t0`; the timeline's steps are in monotonic seconds."""
    rows: list[tuple[float, float, str, str, str]] = []
    shift = dns_t0 - timeline.t0
    for entry in dns_log:
        qname, rdtype, start, end = entry[0], entry[1], entry[2], entry[3]
        check = entry[4] if len(entry) > 4 else ""
        rows.append((start + shift, end + shift, "dns", f"{rdtype} {qname or '.'}", check))
    for kind, label, check, start, end in timeline.raw:
        rows.append((start - timeline.t0, end - timeline.t0, kind, label, check))
    rows.sort(key=lambda r: (r[0], r[1]))
    dropped = dns_dropped + timeline.dropped + max(len(rows) - limit, 0)
    rows = rows[:limit]
    critical = critical_path([(s, e, c) for s, e, _, _, c in rows])
    steps = tuple(Step(kind, label, check, _ms(max(s, 0.0)), _ms(max(e, s, 0.0)), i in critical)
                  for i, (s, e, kind, label, check) in enumerate(rows))
    return steps, dropped


def critical_path(spans: Sequence[tuple[float, float, str]]) -> set[int]:
    """Indices of the steps on the chain that decided when the run finished.

    Start at the step that ended last; the step before it on the path is the latest-ending
    step that ended before it started, taken from the same check when that check has one
    (its own previous question is what it waited for), else from any check.  `spans` are
    (start, end, check).  Each step of the path moves strictly back in end order, so the
    walk ends; it costs O(n log n)."""
    if not spans:
        return set()
    order = sorted(range(len(spans)), key=lambda i: (spans[i][1], spans[i][0], i))
    ends = [spans[i][1] for i in order]
    by_check: dict[str, list[int]] = {}          # check -> positions in `order`, ascending
    for pos, i in enumerate(order):
        by_check.setdefault(spans[i][2], []).append(pos)
    path: set[int] = set()
    pos = len(order) - 1
    while True:
        i = order[pos]
        path.add(i)
        start, _, check = spans[i]
        # Candidates: positions before `pos` whose step ended at or before this one started.
        k = min(bisect.bisect_right(ends, start), pos)
        if k <= 0:
            return path
        prev = k - 1
        if check:
            mine = by_check[check]
            j = bisect.bisect_left(mine, k) - 1
            if j >= 0:
                prev = mine[j]
        pos = prev
