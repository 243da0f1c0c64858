"""Bulk audits on a Dask cluster (optional extra: pip install 'deliverck[dask]').

The engine stays the same: each Dask task audits a chunk of targets with
bulk.run_items inside its own asyncio loop (network-bound work: one worker
thread keeps `concurrency` audits in flight), and returns the chunk's JSON
lines.  The client reads the input lazily, keeps at most two chunks per
worker thread in flight, and writes lines as chunks complete, so memory stays
flat on the client as on the workers.  Dask does the scheduling, retries of
lost workers and placement; deliverck adds nothing of its own.

Security (issue 14).  Dask sends pickles both ways: a scheduler runs what a
client submits, and a client unpickles what comes back.  So whoever can reach a
scheduler can run code as every worker (as root, for a cron job), and whoever
answers at the address given to --dask can run code in deliverck.  Hence:

- `local[:N]` starts its scheduler and workers with TLS and mutual
  certificates generated for the run (distributed.security.Security.temporary,
  which uses `cryptography`; the key stays in memory and reaches the workers
  through the nanny's pipe, not their command line), on 127.0.0.1: another local
  user can connect to the port but not complete the handshake.
- `tls://` and `wss://` use Dask's own TLS settings (its configuration:
  distributed.comm.tls.ca-file, .client.cert, .client.key, e.g. through
  $DASK_DISTRIBUTED__COMM__TLS__CA_FILE), checked before any input is read.
- a plain `tcp://` (or `ws://`) scheduler is accepted on a loopback address only,
  or with --dask-insecure (a network the user trusts); anything else is bad usage.
"""

from __future__ import annotations

import asyncio
import io
import itertools
import os
from collections.abc import Iterable

from deliverck.errors import UsageError
from deliverck.fleet.bulk import Item, LineSink, Progress, run_items
from deliverck.target import _show


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
MAX_TLS_FILE_BYTES = 1024 * 1024
_FORMS = "use local, local:N (N worker processes) or a scheduler address such as tls://HOST:8786"
_ENCRYPTED = ("tls", "wss")
# Where Dask reads its TLS settings (dask config keys; $DASK_DISTRIBUTED__COMM__TLS__CA_FILE and so on).
_TLS_KEYS = {"ca": "distributed.comm.tls.ca-file", "cert": "distributed.comm.tls.client.cert",
             "key": "distributed.comm.tls.client.key"}


def _is_loopback(host: str) -> bool:
    import ipaddress

    if host.lower().rstrip(".") == "localhost":         # RFC 6761 6.3: always the loopback interface
        return True
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return False


def _tls_settings(address: str) -> dict[str, str]:
    """Dask's TLS settings for a client, checked: a CA file and a client certificate (and key,
    unless the certificate file holds it), each a readable regular file."""
    import dask

    from deliverck.inputfile import ReadError, regular_file

    # Collected now, from the environment and Dask's configuration files as they are at this call
    # (dask reads them once, at its import).
    config = dask.config.collect(env=dict(os.environ))
    found = {k: dask.config.get(key, None, config=config) for k, key in _TLS_KEYS.items()}
    missing = [_TLS_KEYS[k] for k in ("ca", "cert") if not found[k]]
    if missing:
        env = ", ".join("$DASK_" + k.upper().replace(".", "__").replace("-", "_") for k in missing)
        raise UsageError(f"--dask {_show(address)}: Dask's TLS settings name no {' and no '.join(missing)} "
                         f"(set {env}, or Dask's configuration file; docs/bulk.md)")
    for k, path in found.items():
        if not path:
            continue
        try:
            regular_file(path, MAX_TLS_FILE_BYTES)
        except ReadError as e:
            raise UsageError(f"--dask {_show(address)}: {_TLS_KEYS[k]} {path}: {e}") from None
    return {k: v for k, v in found.items() if v}


def check_address(address: str, insecure: bool = False) -> int | None:
    """Validate --dask (and --dask-insecure) before any input is read or output written: the extra
    is installed, the address can be used, and it is safe to send work to (the module docstring).
    Returns N for local[:N], None for a scheduler address."""
    try:
        import dask.distributed  # noqa: F401
    except ImportError:
        raise UsageError("--dask needs the optional extra: pip install 'deliverck[dask]'") from None
    if address == "local" or address.startswith("local:"):
        n = address.partition(":")[2] or "2"
        if not (n.isdigit() and len(n) <= 4) or not 1 <= int(n) <= MAX_LOCAL_WORKERS:
            raise UsageError(f"--dask {_show(address)}: N must be 1 to {MAX_LOCAL_WORKERS}; {_FORMS}")
        if insecure:
            raise UsageError("--dask-insecure is for a plain tcp:// scheduler; a local cluster always uses TLS")
        return int(n)
    from distributed.comm import parse_address
    from distributed.comm.registry import get_backend

    try:
        scheme, location = parse_address(address)
        host, port = get_backend(scheme).get_address_host_port(location)
    except (ValueError, TypeError, NotImplementedError) as e:
        why = " ".join(str(e).split()) or "not a network address"
        raise UsageError(f"--dask {_show(address)}: {why}; {_FORMS}") from None
    if not host or not isinstance(port, int) or not 0 < port < 65536:
        raise UsageError(f"--dask {_show(address)}: give a host and a port from 1 to 65535; {_FORMS}")
    if scheme in _ENCRYPTED:
        if insecure:
            raise UsageError(f"--dask-insecure is for a plain tcp:// scheduler, not {scheme}://")
        _tls_settings(address)
    elif not (insecure or _is_loopback(host)):
        raise UsageError(f"--dask {_show(address)}: a plain {scheme}:// scheduler is neither authenticated nor "
                         "encrypted, and Dask runs what it is sent (pickle): use tls:// with Dask's TLS settings "
                         "(docs/bulk.md), or give --dask-insecure for a network you trust")
    return None


def _client(address: str, insecure: bool = False):
    workers = check_address(address, insecure)
    from dask.distributed import Client, LocalCluster
    from distributed.security import Security

    if workers is not None:
        import dask

        # Certificates made for this run only: nobody else can join the cluster or submit to it.  No
        # HTTP routes: Dask's info pages and metrics have no authentication, and nothing here reads them.
        with dask.config.set({"distributed.scheduler.http.routes": [], "distributed.worker.http.routes": []}):
            cluster = LocalCluster(n_workers=workers, threads_per_worker=1, processes=True, dashboard_address=None,
                                   host="127.0.0.1", protocol="tls://", security=Security.temporary())
        return Client(cluster), cluster
    scheme = address.split("://", 1)[0] if "://" in address else "tcp"
    security = None
    if scheme in _ENCRYPTED:
        tls = _tls_settings(address)
        security = Security(require_encryption=True, tls_ca_file=tls["ca"], tls_client_cert=tls["cert"],
                            tls_client_key=tls.get("key"))
    try:
        return Client(address, timeout=10, security=security), None
    except (OSError, TimeoutError) as e:
        raise UsageError(f"--dask {_show(address)}: cannot reach the scheduler ({' '.join(str(e).split())})") from None
    except (TypeError, ValueError) as e:
        raise UsageError(f"--dask {_show(address)}: {' '.join(str(e).split())}") from None


def run_on_dask(items: Iterable[Item], out: LineSink, address: str, concurrency: int,
                chunk_size: int = 100, progress: Progress | None = None, insecure: bool = False) -> dict[str, int]:
    client, cluster = _client(address, insecure)
    from dask.distributed import as_completed

    counts = {"pass": 0, "fail": 0, "incomplete": 0, "error": 0}
    try:
        threads = max(sum(client.nthreads().values()), 1)
        pending = iter(items)
        chunks = iter(lambda: list(itertools.islice(pending, chunk_size)), [])
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
