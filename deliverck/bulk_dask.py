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


MAX_LOCAL_WORKERS = 256
_FORMS = "use local, local:N (N worker processes) or a scheduler address such as tcp://HOST:8786"


def check_address(address: str) -> int | None:
    """Validate --dask before any input is read or output written: the extra is installed and
    the address can be used.  Returns N for local[:N], None for a scheduler address."""
    try:
        import dask.distributed  # noqa: F401
    except ImportError:
        raise UsageError("--dask needs the optional extra: pip install 'deliverck[dask]'") from None
    if address == "local" or address.startswith("local:"):
        n = address.partition(":")[2] or "2"
        if not (n.isdigit() and len(n) <= 4) or not 1 <= int(n) <= MAX_LOCAL_WORKERS:
            raise UsageError(f"--dask {address!r}: N must be 1 to {MAX_LOCAL_WORKERS}; {_FORMS}")
        return int(n)
    from distributed.comm import parse_address
    from distributed.comm.registry import get_backend

    try:
        scheme, location = parse_address(address)
        host, port = get_backend(scheme).get_address_host_port(location)
    except (ValueError, TypeError, NotImplementedError) as e:
        why = " ".join(str(e).split()) or "not a network address"
        raise UsageError(f"--dask {address!r}: {why}; {_FORMS}") from None
    if not host or not isinstance(port, int) or not 0 < port < 65536:
        raise UsageError(f"--dask {address!r}: give a host and a port from 1 to 65535; {_FORMS}")
    return None


def _client(address: str):
    workers = check_address(address)
    from dask.distributed import Client, LocalCluster

    if workers is not None:
        cluster = LocalCluster(n_workers=workers, threads_per_worker=1, processes=True,
                               dashboard_address=None, host="127.0.0.1")
        return Client(cluster), cluster
    try:
        return Client(address, timeout=10), None
    except (OSError, TimeoutError) as e:
        raise UsageError(f"--dask {address}: cannot reach the scheduler ({' '.join(str(e).split())})") from None
    except (TypeError, ValueError) as e:
        # e.g. tls:// without Dask's TLS settings (distributed.comm.tls in its config)
        raise UsageError(f"--dask {address}: {' '.join(str(e).split())}") from None


def run_on_dask(items: Iterable[Item], out: IO[str], address: str, concurrency: int,
                chunk_size: int = 100, progress: Progress | None = None) -> dict[str, int]:
    client, cluster = _client(address)
    from dask.distributed import as_completed

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
