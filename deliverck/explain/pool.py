"""`explain --workers N`: many files, or the messages of one large mbox, explained by worker processes.

Explaining a bounce is pure CPU (the stdlib email parser, the rule and catalog regexes), so one
process uses one core (issue 16).  The results come back in the order --workers 1 gives them,
with the same content: each task runs the very functions of engine.py that the single process
runs, and for directory triage the records come back rendered (render.Triaged): pickling whole
Explanation trees cost about a fifth of the CPU of explaining them.

What a worker is sent is small: paths for a directory or a list of files, and for an mbox the
byte offsets of its messages (reader.mbox_spans), so each worker reads its own bytes from the file.

Workers start by forkserver (spawn where there is none), never by a bare fork of a process that
may run threads.  Starting them costs a few tenths of a second, so small inputs stay in this
process (MIN_FOR_WORKERS).  If the pool breaks (a worker killed), what is left is explained in
this process, so the output is still whole.
"""

from __future__ import annotations

import codecs
import collections
import itertools
import os
import stat
from collections.abc import Callable, Iterable, Iterator
from typing import TYPE_CHECKING, Any

from deliverck.explain import engine, reader
from deliverck.explain.model import Attempt, Explanation

if TYPE_CHECKING:
    from concurrent.futures import Future

MIN_FOR_WORKERS = 200      # files, or messages of one mbox, below which starting workers costs more than it saves
FILES_PER_TASK = 32        # files handed to a worker at once
MESSAGES_PER_TASK = 64     # messages of an mbox handed to a worker at once
IN_FLIGHT = 4              # tasks queued per worker: enough to keep it busy, few results held for ordering

Task = tuple[Callable[..., list[Any]], tuple[Any, ...]]


View = tuple[bool, bool, bool]     # render.triage's (jsonl, verbose, directory)


def _rendered(out: list[Explanation], view: View | None) -> list[Any]:
    """The task's results as they travel back: Explanations, or with a view the records already
    rendered (render.Triaged), which cost far less to pickle and to load than the dataclass trees."""
    if view is None:
        return out
    from deliverck.explain.render import triage

    return [triage(e, *view) for e in out]


def _files_task(paths: list[str], limit: int, explicit: bool, view: View | None = None) -> list[Any]:
    out: list[Explanation] = []
    for p in paths:
        out.extend(engine.explain_path(p, limit, explicit) if explicit else engine.explain_guarded(p, limit))
    return _rendered(out, view)


def _mbox_task(path: str, spans: list[tuple[int, int]], first: int, notes: list[str], view: View | None = None) -> list[Any]:
    out: list[Explanation] = []
    with open(path, "rb") as f:
        for i, (start, end) in enumerate(spans, first):
            f.seek(start)
            out.append(engine.explain_message(f.read(end - start), path, i, notes, True))
    return _rendered(out, view)


def _start_worker() -> None:
    """Ctrl-C is the main process's to handle (it stops handing out work and waits for the tasks
    under way): a worker ignores it instead of printing a traceback of its own.  The data comes
    ready from the fork server (preload.py); a spawned worker loads it here."""
    import signal

    signal.signal(signal.SIGINT, signal.SIG_IGN)
    warm()


def warm() -> None:
    """The rule table, the systems and the catalog loaded (each cached once per process)."""
    from deliverck.explain import classify, rules, systems

    rules.load()
    for attr in ("hosts", "text", "from_"):
        systems._index(attr)
    classify.catalog_match(Attempt(diagnostic="550 5.1.1 user unknown"))


def _context() -> Any:
    import multiprocessing

    methods = multiprocessing.get_all_start_methods()
    ctx = multiprocessing.get_context("forkserver" if "forkserver" in methods else "spawn")
    if ctx.get_start_method() == "forkserver":
        ctx.set_forkserver_preload(["deliverck.explain.preload"])     # workers start with the data loaded
    return ctx


def _ordered(tasks: Iterable[Task], workers: int) -> Iterator[Any]:
    """The tasks' results in task order, at most workers x IN_FLIGHT tasks ahead of the reader."""
    # Imported here: explaining one code or file never loads the process machinery.
    from concurrent.futures import ProcessPoolExecutor
    from concurrent.futures.process import BrokenProcessPool

    pending: collections.deque[tuple[Task, Future | None]] = collections.deque()
    broken = False

    def take() -> list[Any]:
        nonlocal broken
        task, fut = pending.popleft()
        if fut is not None:
            try:
                return fut.result()
            except BrokenProcessPool:
                broken = True
        return task[0](*task[1])

    with ProcessPoolExecutor(max_workers=workers, mp_context=_context(), initializer=_start_worker) as pool:
        try:
            for task in tasks:
                fut = None
                if not broken:
                    try:
                        fut = pool.submit(task[0], *task[1])
                    except (BrokenProcessPool, RuntimeError):
                        broken = True
                pending.append((task, fut))
                if len(pending) >= workers * IN_FLIGHT:
                    yield from take()
            while pending:
                yield from take()
        finally:
            for _, fut in pending:
                if fut is not None:
                    fut.cancel()


def _chunks(items: Iterable[Any], n: int) -> Iterator[list[Any]]:
    it = iter(items)
    while chunk := list(itertools.islice(it, n)):
        yield chunk


def explain_files(paths: Iterable[str], limit: int, workers: int, explicit: bool,
                  view: View | None = None) -> Iterator[Any]:
    """The files in order, as engine.iter_directory (explicit False: directory triage) or
    engine.explain_path over files the user named (explicit True) give them.  With a view, what
    the workers explain comes back rendered (render.Triaged); what this process explains itself
    comes as Explanations either way."""
    it = iter(paths)
    head = list(itertools.islice(it, MIN_FOR_WORKERS))
    if workers > 1 and len(head) == MIN_FOR_WORKERS:
        tasks = ((_files_task, (chunk, limit, explicit, view)) for chunk in _chunks(itertools.chain(head, it), FILES_PER_TASK))
        yield from _ordered(tasks, workers)
        return
    for p in itertools.chain(head, it):
        # A directory's mbox stays whole in one process: an error in any of its messages replaces
        # the whole file's results there (engine.explain_guarded).
        yield from _explain_named(p, limit, workers, view) if explicit else engine.explain_guarded(p, limit)


def _explain_named(path: str, limit: int, workers: int, view: View | None = None) -> Iterator[Any]:
    """A file the user named, as engine.explain_path explains it; an mbox of MIN_FOR_WORKERS
    messages or more is split among the workers by the offsets of its messages."""
    try:
        regular = workers > 1 and stat.S_ISREG(os.stat(path).st_mode)
    except OSError:
        regular = False
    if not regular:
        yield from engine.explain_path(path, limit)
        return
    try:
        raw, notes = reader.read_file(path, limit)
    except reader.InputError as ex:
        yield Explanation(source=path, error=str(ex))
        return
    spans, more = _spans(raw)
    if len(spans) < MIN_FOR_WORKERS:
        yield from engine.explain_bytes(raw, path, notes)
        return
    notes = notes + more
    tasks = ((_mbox_task, (path, chunk, i * MESSAGES_PER_TASK, notes, view))
             for i, chunk in enumerate(_chunks(spans, MESSAGES_PER_TASK)))
    yield from _ordered(tasks, workers)


def _spans(raw: bytes) -> tuple[list[tuple[int, int]], list[str]]:
    """The file offsets of the messages in raw and the notes sniffing adds, or no spans when
    explain_bytes would not read raw as messages at these offsets (binary, re-encoded, text)."""
    try:
        data, more = reader.sniff(raw)
    except reader.InputError:
        return [], []
    if data is raw or data == raw:
        base = 0
    elif raw.startswith(codecs.BOM_UTF8) and data == raw[3:]:
        base = 3
    else:
        return [], []           # decoded from UTF-16/32: offsets of the file no longer apply
    if not reader.looks_like_message(data):
        return [], []
    return [(s + base, e + base) for s, e in reader.mbox_spans(data)], more
