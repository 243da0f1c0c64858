"""Bulk audits on a Dask cluster (optional extra: pip install 'deliverck[dask]').

The engine stays the same: each Dask task audits a chunk of targets with
bulk.run_items inside its own asyncio loop (network-bound work: one worker
thread keeps `concurrency` audits in flight), and returns the chunk's JSON
lines.  The client reads the input lazily, keeps at most two chunks per
worker thread in flight, and writes lines as chunks complete, so memory stays
flat on the client as on the workers.  Dask does the scheduling, retries of
lost workers and placement; deliverck adds nothing of its own.
"""

from __future__ import annotations

import asyncio
import io
import itertools
from typing import IO, Iterable

from deliverck.bulk import Item, Progress, run_items
from deliverck.errors import UsageError


class _Verdicts:
    """Collects each target's verdict (None: error) in the shape of Progress.update."""

    def __init__(self) -> None:
        self.seen: list[str | None] = []

    def update(self, verdict: str | None) -> None:
        self.seen.append(verdict)


def audit_chunk(items: list[Item], concurrency: int) -> tuple[str, list[str | None]]:
    """Runs on a worker: audit the chunk, return its JSON lines and their verdicts."""
    buf = io.StringIO()
    verdicts = _Verdicts()
    asyncio.run(run_items(items, buf, concurrency, verdicts))
    return buf.getvalue(), verdicts.seen


def _client(address: str):
    try:
        from dask.distributed import Client, LocalCluster
    except ImportError:
        raise UsageError("--dask needs the optional extra: pip install 'deliverck[dask]'") from None
    if address == "local" or address.startswith("local:"):
        n = address.partition(":")[2] or "2"
        if not n.isdigit() or int(n) < 1:
            raise UsageError(f"--dask {address!r}: use local, local:N (N workers) or a scheduler address")
        cluster = LocalCluster(n_workers=int(n), threads_per_worker=1, processes=True,
                               dashboard_address=None, host="127.0.0.1")
        return Client(cluster), cluster
    try:
        return Client(address, timeout=10), None
    except (OSError, TimeoutError) as e:
        raise UsageError(f"--dask {address}: cannot reach the scheduler ({e})") from None


def run_on_dask(items: Iterable[Item], out: IO[str], address: str, concurrency: int,
                chunk_size: int = 100, progress: Progress | None = None) -> dict[str, int]:
    from dask.distributed import as_completed

    client, cluster = _client(address)
    counts = {"pass": 0, "fail": 0, "incomplete": 0, "error": 0}
    try:
        threads = max(sum(client.nthreads().values()), 1)
        chunks = iter(lambda it=iter(items): list(itertools.islice(it, chunk_size)), [])
        running = as_completed()
        for chunk in itertools.islice(chunks, 2 * threads):
            running.add(client.submit(audit_chunk, chunk, concurrency, pure=False))
        for future in running:
            text, verdicts = future.result()
            future.release()
            out.write(text)
            out.flush()
            for verdict in verdicts:
                counts[verdict or "error"] += 1
                if progress is not None:
                    progress.update(verdict)
            nxt = next(chunks, None)
            if nxt:
                running.add(client.submit(audit_chunk, nxt, concurrency, pure=False))
    finally:
        client.close()
        if cluster is not None:
            cluster.close()
    return counts
