"""`deliverck bulk --workers N`: every core of one machine, without a cluster (issue 16).

One Python process audits on one core.  Here the parent process reads the input (lazily,
as the single-process run does: shards, resume and bad lines are decided there), hands
each target to one of N worker processes, and writes the lines back in input order.  Each
worker runs bulk.audit_line in its own asyncio loop with its share of --concurrency
(--concurrency is the total: N workers share it, so memory and the load on the resolver
stay what the flag says, whatever N).

Order and resume.  Lines are written in input order: a line that finishes early waits in
the parent until every earlier one is written, and the parent hands out new targets only
while fewer than WINDOW x concurrency lines are unwritten, so memory stays bounded when one
target is slow.  Every line is written whole by the same Output as the single-process run,
so a kill at any moment leaves a prefix of the ordered output (plus at most one torn line),
which the next run resumes like any other.

Politeness across workers.  The per-address SMTP limit (--per-address) must hold for the
whole run.  Which addresses a target's audit will connect to is known only after its DNS
answers, inside the worker, so targets cannot be routed by address in advance.  Instead the
parent holds the one count per remote address (Permits): a worker asks it for a slot
before it connects and gives the slot back after; a permit request costs one message each
way, next to an SMTP session of several round trips.  DNS-only runs never ask.

Workers are started with the spawn method: nothing is ever forked from a process with a
running event loop or threads, each worker is a direct child (it notices when its parent is
gone, and its CPU time is the parent's children's), and no server process outlives a run.
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import multiprocessing
import os
import queue
import signal
import threading
import time
from collections import deque
from collections.abc import Iterable
from typing import Any

from deliverck.errors import DeliverckError
from deliverck.fleet.bulk import Item, LineSink, VerdictSink, audit_line, result_line, write_failure

WINDOW = 4               # unwritten lines at most: WINDOW x --concurrency
PREFETCH = 2             # targets handed to a worker at most: PREFETCH x its share of --concurrency
POLL = 0.5               # seconds between looks at the workers' health while nothing arrives
STOP_GRACE = 5.0         # seconds a worker has to stop before it is terminated


def shares(concurrency: int, workers: int) -> list[int]:
    """--concurrency split between the workers (never fewer than one audit each: at most
    `concurrency` workers are started)."""
    n = max(1, min(workers, concurrency))
    return [concurrency // n + (1 if i < concurrency % n else 0) for i in range(n)]


class Permits:
    """The per-address SMTP slots of the whole run, held in the parent.  Requests are keyed by
    (worker, request id); releasing or cancelling one twice is harmless, so a grant that crosses
    a cancel on the way is never counted twice."""

    def __init__(self, limit: int) -> None:
        self.limit = limit
        self.used: dict[str, int] = {}
        self.waiting: dict[str, deque[tuple[int, int]]] = {}
        self.held: dict[tuple[int, int], str] = {}
        self.peak: dict[str, int] = {}                     # most slots in use at once, per address
        self.granted = 0                                   # slots handed out in the run

    def acquire(self, worker: int, req: int, ip: str) -> list[tuple[int, int]]:
        if self.used.get(ip, 0) < self.limit:
            return self._grant(worker, req, ip)
        self.waiting.setdefault(ip, deque()).append((worker, req))
        return []

    def _grant(self, worker: int, req: int, ip: str) -> list[tuple[int, int]]:
        self.used[ip] = self.used.get(ip, 0) + 1
        self.granted += 1
        self.peak[ip] = max(self.peak.get(ip, 0), self.used[ip])
        self.held[(worker, req)] = ip
        return [(worker, req)]

    def release(self, worker: int, req: int) -> list[tuple[int, int]]:
        """Give back a held slot, or withdraw a waiting request; returns the grants this frees."""
        ip = self.held.pop((worker, req), None)
        if ip is None:
            for q in self.waiting.values():
                with contextlib.suppress(ValueError):
                    q.remove((worker, req))
            return []
        self.used[ip] -= 1
        granted: list[tuple[int, int]] = []
        waiting = self.waiting.get(ip)
        while waiting and self.used[ip] < self.limit:
            granted += self._grant(*waiting.popleft(), ip)
        if not waiting:
            self.waiting.pop(ip, None)
        if not self.used[ip]:
            del self.used[ip]
        return granted

    def drop_worker(self, worker: int) -> list[tuple[int, int]]:
        """A worker that ended holds nothing and waits for nothing any more."""
        for q in self.waiting.values():
            for entry in [e for e in q if e[0] == worker]:
                q.remove(entry)
        granted: list[tuple[int, int]] = []
        for key in [k for k in self.held if k[0] == worker]:
            granted += self.release(*key)
        return [g for g in granted if g[0] != worker]


# ---------------------------------------------------------------- in a worker process

class _RemoteSlot:
    """One SMTP connection's slot (context.slot_factory): the count is the parent's (Permits),
    so the limit holds across every worker."""

    def __init__(self, ip: str, link: _Link) -> None:
        self.ip = ip
        self.link = link
        self.held: dict[asyncio.Task | None, int] = {}

    async def __aenter__(self) -> None:
        req = next(self.link.ids)
        fut = asyncio.get_running_loop().create_future()
        self.link.grants[req] = fut
        self.link.send(("acquire", self.link.wid, req, self.ip))
        try:
            await fut
        except BaseException:
            self.link.grants.pop(req, None)
            self.link.send(("release", self.link.wid, req))  # withdrawn or, if granted meanwhile, given back
            raise
        self.held[asyncio.current_task()] = req

    async def __aexit__(self, *exc: object) -> None:
        req = self.held.pop(asyncio.current_task(), None)
        if req is not None:
            self.link.send(("release", self.link.wid, req))


class _Link:
    def __init__(self, wid: int, outbox: Any) -> None:
        self.wid = wid
        self.outbox = outbox
        self.ids = itertools.count(1)
        self.grants: dict[int, asyncio.Future] = {}

    def send(self, msg: tuple) -> None:
        self.outbox.put(msg)            # never blocks: the queue's feeder thread writes the pipe

    def granted(self, req: int) -> None:
        fut = self.grants.pop(req, None)
        if fut is None or fut.done():
            self.send(("release", self.wid, req))        # the asker gave up: the slot goes back
        else:
            fut.set_result(None)


def _worker_main(wid: int, inbox: Any, outbox: Any, concurrency: int, per_address: int, parent: int) -> None:
    signal.signal(signal.SIGINT, signal.SIG_IGN)        # Ctrl-C is the parent's: it stops the workers
    outbox.cancel_join_thread()                          # never hang at exit on a parent that is gone
    asyncio.run(_serve(_Link(wid, outbox), inbox, concurrency, per_address, parent))


async def _serve(link: _Link, inbox: Any, concurrency: int, per_address: int, parent: int) -> None:
    from deliverck import context
    from deliverck.net.dns import SharedCache, shared_cache

    shared_cache.set(SharedCache())          # this worker's audits share definite DNS answers
    loop = asyncio.get_running_loop()
    if per_address > 0:
        context.slot_factory.set(lambda ip, limit: _RemoteSlot(ip, link))
    work: asyncio.Queue = asyncio.Queue()
    main = asyncio.current_task()

    def deliver(msg: tuple) -> None:
        if msg[0] == "grant":
            link.granted(msg[1])
        elif msg[0] == "stop":
            if main is not None:
                main.cancel()
        else:
            work.put_nowait(msg)

    def reader() -> None:
        while True:
            try:
                msg = inbox.get(timeout=1.0)
            except queue.Empty:
                if os.getppid() == parent:
                    continue
                msg = ("stop",)                         # the parent was killed: nobody reads our lines
            except (EOFError, OSError):
                msg = ("stop",)
            loop.call_soon_threadsafe(deliver, msg)
            if msg[0] == "stop":
                return

    threading.Thread(target=reader, name="deliverck-inbox", daemon=True).start()
    sem = asyncio.Semaphore(concurrency)
    running: set[asyncio.Task] = set()

    async def one(seq: int, item: Item) -> None:
        try:
            line, verdict = await audit_line(item)
            link.send(("done", link.wid, seq, line, verdict))
        finally:
            sem.release()

    try:
        while True:
            _kind, seq, item = await work.get()
            await sem.acquire()
            task = asyncio.ensure_future(one(seq, item))
            running.add(task)
            task.add_done_callback(running.discard)
    except asyncio.CancelledError:
        for task in running:
            task.cancel()
        await asyncio.gather(*running, return_exceptions=True)


# ---------------------------------------------------------------- in the parent

class _Worker:
    def __init__(self, mp: Any, wid: int, share: int, outbox: Any, per_address: int) -> None:
        self.wid = wid
        self.share = share
        self.inbox = mp.Queue()
        self.inflight: dict[int, Item] = {}
        self.proc = mp.Process(target=_worker_main, name=f"deliverck-bulk-{wid}", daemon=True,
                               args=(wid, self.inbox, outbox, share, per_address, os.getpid()))
        self.proc.start()
        self.alive = True


def _context() -> Any:
    return multiprocessing.get_context("spawn")


class _Run:
    """The parent's side of one run: hand out targets, hold permits, write lines in order."""

    def __init__(self, items: Iterable[Item], out: LineSink, workers: int, concurrency: int, per_address: int,
                 progress: VerdictSink | None, on_bad) -> None:
        self.items = iter(items)
        self.out = out
        self.progress = progress
        self.on_bad = on_bad
        self.window = WINDOW * concurrency
        self.permits = Permits(per_address)
        self.shape = (workers, concurrency, per_address)
        self.outbox: Any = None
        self.pool: list[_Worker] = []
        self.counts = {"pass": 0, "fail": 0, "incomplete": 0, "error": 0}
        self.ready: dict[int, tuple[str, str | None, Item | None]] = {}
        self.seq = self.next = 0
        self.pending: Item | None = None
        self.exhausted = False
        self.checked = time.monotonic()

    def fill(self) -> None:
        while not self.exhausted and self.seq - self.next < self.window:
            if self.pending is None:
                self.pending = next(self.items, None)
                if self.pending is None:
                    self.exhausted = True
                    return
            item = self.pending
            if item.config is None:                         # a bad line: nothing to audit
                self.ready[self.seq] = (result_line(item), None, item)
            else:
                if self.outbox is None:
                    self.start()
                alive = [w for w in self.pool if w.alive]
                if not alive:
                    raise DeliverckError("every bulk worker process ended: run the same command again "
                                         "(with --output it resumes), or with --workers 1")
                w = min(alive, key=lambda w: len(w.inflight) / w.share)
                if len(w.inflight) >= PREFETCH * w.share:
                    return
                w.inbox.put(("item", self.seq, item))
                w.inflight[self.seq] = item
            self.seq += 1
            self.pending = None

    def start(self) -> None:
        """The processes start with the first line that has something to audit: a file of bad lines
        only is answered without a worker to start and stop."""
        workers, concurrency, per_address = self.shape
        mp = _context()
        self.outbox = mp.Queue()
        for wid, share in enumerate(shares(concurrency, workers)):
            self.pool.append(_Worker(mp, wid, share, self.outbox, per_address))

    def drain(self) -> None:
        while self.next in self.ready:
            line, verdict, bad = self.ready.pop(self.next)
            try:
                self.out.write(line)
                self.out.flush()
            except (OSError, ValueError, DeliverckError) as e:
                raise write_failure(e) from None
            self.counts[verdict or "error"] += 1
            if bad is not None and self.on_bad:
                self.on_bad(bad)
            if self.progress is not None:
                self.progress.update(verdict)
            self.next += 1

    def handle(self, msg: tuple) -> None:
        kind, wid = msg[0], msg[1]
        if kind == "done":
            _, _, seq, line, verdict = msg
            if self.pool[wid].inflight.pop(seq, None) is not None:
                self.ready[seq] = (line, verdict, None)
            return
        if kind == "acquire":
            grants = self.permits.acquire(wid, msg[2], msg[3])
        else:
            grants = self.permits.release(wid, msg[2])
        for w, req in grants:
            if self.pool[w].alive:
                self.pool[w].inbox.put(("grant", req))

    def check_health(self) -> None:
        """A worker that ended (killed, out of memory) turns its unfinished targets into error
        lines (audited again by the next run) and gives back its slots; the others go on."""
        self.checked = time.monotonic()
        for w in self.pool:
            if not w.alive or w.proc.exitcode is None:
                continue
            w.alive = False
            why = f"internal error: bulk worker process {w.wid} ended (exit code {w.proc.exitcode})"
            for seq, item in w.inflight.items():
                self.ready[seq] = (result_line(item, error=why), None, None)
            w.inflight.clear()
            for g, req in self.permits.drop_worker(w.wid):
                self.pool[g].inbox.put(("grant", req))

    def run(self) -> dict[str, int]:
        while True:
            self.fill()
            self.drain()
            if self.exhausted and self.next == self.seq:
                return self.counts
            if self.outbox is None:         # only bad lines so far: fill() goes on reading
                continue
            if time.monotonic() - self.checked > POLL:
                self.check_health()
            try:
                msg = self.outbox.get(timeout=POLL)
            except queue.Empty:
                self.check_health()
                continue
            self.handle(msg)

    def stop(self) -> None:
        for w in self.pool:
            if w.alive and w.proc.exitcode is None:
                with contextlib.suppress(OSError, ValueError):
                    w.inbox.put(("stop",))
        deadline = time.monotonic() + STOP_GRACE
        for w in self.pool:
            w.proc.join(max(0.0, deadline - time.monotonic()))
            if w.proc.exitcode is None:
                w.proc.terminate()
                w.proc.join(STOP_GRACE)
            w.inbox.cancel_join_thread()      # what a dead worker never read is dropped, not waited for
            w.inbox.close()
        if self.outbox is not None:
            self.outbox.close()


def run_workers(items: Iterable[Item], out: LineSink, workers: int, concurrency: int, per_address: int = 0,
                progress: VerdictSink | None = None, on_bad=None) -> dict[str, int]:
    """Audit every item in `workers` processes; the lines come out in input order (module docstring).

    The first item is read before any process starts: an input that is bad as a whole ("no
    target in it", unreadable) is refused before there is a worker to stop."""
    items = iter(items)
    first = next(items, None)
    if first is None:
        return {"pass": 0, "fail": 0, "incomplete": 0, "error": 0}
    run = _Run(itertools.chain((first,), items), out, workers, concurrency, per_address, progress, on_bad)
    try:
        return run.run()
    finally:
        run.stop()
