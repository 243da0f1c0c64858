"""Issue 14, item 3: `bulk --dask` and who may run code through it.

Dask sends pickles both ways: whoever can submit to a scheduler runs code on its workers, and
whoever answers at a --dask address runs code in deliverck.  Before issue 14 `local:N` opened a
plain tcp:// scheduler on 127.0.0.1 that any local user could submit to, and `--dask tcp://HOST`
sent work to whatever answered there.

Every cluster here listens on 127.0.0.1 or on a documentation address of the lab's `lo`
(inside the lab's network namespace): nothing is sent outside loopback.
"""

from __future__ import annotations

import json
import os
import socket
import ssl
import subprocess
import sys
import time
from pathlib import Path

import pytest

pytest.importorskip("distributed")

TARGETS = ["good.test", "no-ptr.test", "good.test"]


def _cli(*args: str, env: dict | None = None, timeout: float = 180) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "deliverck", *args], capture_output=True, text=True,
                          timeout=timeout, env={**os.environ, **(env or {})})


def _input(tmp_path: Path) -> Path:
    src = tmp_path / "in.txt"
    src.write_text("\n".join(TARGETS) + "\n")
    return src


def _free_port(host: str) -> int:
    with socket.socket(socket.AF_INET6 if ":" in host else socket.AF_INET) as s:
        s.bind((host, 0))
        return s.getsockname()[1]


# --- local:N -------------------------------------------------------------------------------------

def test_a_local_cluster_admits_only_its_own_client(lab):
    """local:N: TLS with certificates made for the run; a plain client and a TLS client without
    the run's certificate cannot connect (so cannot submit); the key is on no command line; no
    unauthenticated HTTP pages."""
    import urllib.error
    import urllib.request

    from dask.distributed import Client

    from deliverck.fleet.dask import _client

    client, cluster = _client("local:1")
    try:
        address = cluster.scheduler_address
        assert address.startswith("tls://127.0.0.1:"), address
        assert all(w.startswith("tls://127.0.0.1:") for w in client.scheduler_info()["workers"])
        host, port = address.removeprefix("tls://").rsplit(":", 1)
        # A local user's plain Dask client (what `Client("tcp://127.0.0.1:PORT")` did before).
        with pytest.raises(Exception):  # noqa: B017 - any failure to connect; CommClosedError, OSError, TimeoutError
            Client(f"tcp://{host}:{port}", timeout=3)
        # TLS without the run's client certificate: the scheduler demands one.
        ctx = ssl.create_default_context()
        ctx.check_hostname, ctx.verify_mode = False, ssl.CERT_NONE
        with socket.create_connection((host, int(port)), timeout=3) as raw:
            with pytest.raises(OSError):      # ssl.SSLError (certificate required) or the connection closed
                with ctx.wrap_socket(raw) as tls:
                    tls.sendall(b"\0" * 8)
                    tls.recv(16)
        for pid in client.run(os.getpid).values():
            assert b"PRIVATE KEY" not in Path(f"/proc/{pid}/cmdline").read_bytes()
        http = cluster.scheduler.http_server
        if http is not None:
            for path in ("/info/main/workers.html", "/json/counts.json", "/metrics", "/health"):
                with pytest.raises(urllib.error.HTTPError) as e:
                    urllib.request.urlopen(f"http://127.0.0.1:{http.port}{path}", timeout=3)
                assert e.value.code == 404
    finally:
        client.close()
        cluster.close()


# --- scheduler addresses ---------------------------------------------------------------------------

@pytest.mark.parametrize("address", ["tcp://192.0.2.10:8786", "192.0.2.10:8786", "tcp://scheduler.example:8786",
                                     "tcp://[2001:db8::10]:8786", "ws://198.51.100.7:8786"])
def test_a_plain_scheduler_beyond_loopback_is_refused(lab, tmp_path, address):
    """Said before any input is read, any output made or any connection tried."""
    out = tmp_path / "out.jsonl"
    t0 = time.monotonic()
    r = _cli("bulk", str(_input(tmp_path)), "--only", "mx", "--dask", address, "-o", str(out))
    assert r.returncode == 2, r.stderr
    assert r.stderr.count("\n") == 1 and "--dask-insecure" in r.stderr and "pickle" in r.stderr, r.stderr
    assert not out.exists() and time.monotonic() - t0 < 10


@pytest.mark.parametrize("address", ["tcp://127.0.0.1:8786", "tcp://[::1]:8786", "localhost:8786",
                                     "tcp://127.3.4.5:1"])
def test_a_plain_scheduler_on_loopback_needs_no_flag(address):
    from deliverck.fleet.dask import check_address

    assert check_address(address) is None


@pytest.mark.parametrize("address,insecure,fragment", [
    ("tcp://192.0.2.10:8786", True, None),
    ("local:2", True, "a local cluster always uses TLS"),
    ("tls://192.0.2.10:8786", True, "not tls://"),
])
def test_dask_insecure_is_for_plain_schedulers_only(address, insecure, fragment):
    from deliverck.errors import UsageError
    from deliverck.fleet.dask import check_address

    if fragment is None:
        assert check_address(address, insecure) is None
    else:
        with pytest.raises(UsageError, match=fragment):
            check_address(address, insecure)


def test_dask_insecure_runs_on_a_plain_scheduler_the_user_trusts(lab, tmp_path):
    """A plain tcp:// scheduler on a non-loopback address (a documentation address on the lab's
    lo): refused without --dask-insecure (the scheduler sees no client), used with it."""
    from dask.distributed import LocalCluster

    host = next(a for a in lab.lo_addresses if ":" not in a and not a.startswith("127."))
    port = _free_port(host)
    address = f"tcp://{host}:{port}"
    cluster = LocalCluster(n_workers=1, threads_per_worker=1, processes=False, dashboard_address=None,
                           host=host, scheduler_port=port, protocol="tcp://")
    try:
        assert cluster.scheduler_address == address
        src = _input(tmp_path)
        r = _cli("bulk", str(src), "--only", "mx,ptr", "--dask", address)
        assert r.returncode == 2 and "--dask-insecure" in r.stderr, r.stderr
        assert not [c for c in cluster.scheduler.clients if c != "fire-and-forget"], "a client connected"
        r = _cli("bulk", str(src), "--only", "mx,ptr", "--dask", address, "--dask-insecure")
        assert r.returncode == 1, r.stderr
        verdicts = {d["input"]: d["report"]["verdict"] for d in map(json.loads, r.stdout.splitlines())}
        assert verdicts == {"good.test": "pass", "no-ptr.test": "fail"}
    finally:
        cluster.close()


# --- tls:// with Dask's own TLS settings -------------------------------------------------------------

def test_a_tls_scheduler_is_used_with_dask_tls_settings(lab, tmp_path):
    """tls:// takes Dask's TLS settings (here from the environment, as Dask documents them):
    without them bulk says so before anything is read (exit 2); with them the run goes through
    the scheduler, which demands the client's certificate."""
    from dask.distributed import LocalCluster
    from distributed.security import Security

    sec = Security.temporary()
    files = {}
    for name, pem in (("ca.pem", sec.tls_ca_file), ("client.pem", sec.tls_client_cert),
                      ("client.key", sec.tls_client_key)):
        files[name] = tmp_path / name
        files[name].write_text(pem)
        files[name].chmod(0o600)
    cluster = LocalCluster(n_workers=1, threads_per_worker=1, processes=False, dashboard_address=None,
                           host="127.0.0.1", protocol="tls://", security=sec)
    try:
        address = cluster.scheduler_address
        assert address.startswith("tls://")
        src, out = _input(tmp_path), tmp_path / "out.jsonl"
        r = _cli("bulk", str(src), "--only", "mx,ptr", "--dask", address, "-o", str(out))
        assert r.returncode == 2 and "Dask's TLS settings name no distributed.comm.tls.ca-file" in r.stderr, r.stderr
        assert not out.exists()
        env = {"DASK_DISTRIBUTED__COMM__TLS__CA_FILE": str(files["ca.pem"]),
               "DASK_DISTRIBUTED__COMM__TLS__CLIENT__CERT": str(files["client.pem"]),
               "DASK_DISTRIBUTED__COMM__TLS__CLIENT__KEY": str(files["client.key"])}
        bad = {**env, "DASK_DISTRIBUTED__COMM__TLS__CLIENT__KEY": str(tmp_path / "missing.key")}
        r = _cli("bulk", str(src), "--only", "mx,ptr", "--dask", address, env=bad)
        assert r.returncode == 2 and "distributed.comm.tls.client.key" in r.stderr and "no such file" in r.stderr
        r = _cli("bulk", str(src), "--only", "mx,ptr", "--dask", address, "-o", str(out), env=env)
        assert r.returncode == 1, r.stderr
        verdicts = {d["input"]: d["report"]["verdict"] for d in map(json.loads, out.read_text().splitlines())}
        assert verdicts == {"good.test": "pass", "no-ptr.test": "fail"}
    finally:
        cluster.close()
