"""Process 1 of the lab's namespaces: bring the lab up, run the command, tear down.

    python -m deliverck.lab.inside <lab dir> -- CMD...   run CMD, exit with its status
    python -m deliverck.lab.inside <lab dir> --hold      stay up until SIGTERM (`lab up`)

A failure to start writes one line to <lab dir>/error and exits 125; the
caller turns it into LabUnavailable.  Everything started here dies with this
process, because it is the init of a pid namespace.
"""

from __future__ import annotations

import json
import os
import select
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import dns.exception
import dns.flags
import dns.message
import dns.query
import dns.rcode

from deliverck.lab import zones

START_TIMEOUT = 10.0
ERROR_STATUS = 125


class StartFailed(Exception):
    pass


def _tool(name: str, packages: str = "unbound nsd iproute2") -> str:
    for d in os.environ.get("PATH", "").split(os.pathsep) + ["/usr/sbin", "/sbin", "/usr/bin"]:
        p = Path(d) / name
        if d and p.is_file() and os.access(p, os.X_OK):
            return str(p)
    raise StartFailed(f"{name} is not installed: apt-get install {packages}")


def _run(argv: list[str], what: str, stdin: str | None = None) -> None:
    r = subprocess.run(argv, input=stdin, capture_output=True, text=True)
    if r.returncode != 0:
        err = (r.stderr or r.stdout).strip().replace("\n", "; ")
        raise StartFailed(f"{what} failed ({' '.join(argv[:3])}...: {err})")


def network(lab_dir: Path, addresses: list[str]) -> None:
    batch = ["link set lo up"]
    for a in addresses:
        batch.append(f"addr add {a}/128 dev lo nodad" if ":" in a else f"addr add {a}/32 dev lo")
    _run([_tool("ip"), "-batch", "-"], "adding the lab addresses to lo", "\n".join(batch) + "\n")
    target = os.path.realpath("/etc/resolv.conf")
    if not os.path.isfile(target):
        raise StartFailed(f"/etc/resolv.conf ({target}) does not exist, so the lab cannot bind its own over it")
    _run([_tool("mount"), "--bind", str(lab_dir / "resolv.conf"), target], "bind-mounting the lab resolv.conf")


def _spawn(argv: list[str], log: Path, **kw) -> subprocess.Popen:
    with open(log, "ab") as out:
        return subprocess.Popen(argv, stdin=subprocess.DEVNULL, stdout=kw.pop("stdout", out), stderr=out,
                                start_new_session=True, **kw)


def _answers(server: str, name: str, rdtype: str, recursive: bool, timeout: float = 0.2) -> bool:
    q = dns.message.make_query(name, rdtype)
    if not recursive:
        q.flags &= ~dns.flags.RD
    try:
        r = dns.query.udp(q, server, timeout=timeout)
    except (OSError, dns.exception.DNSException):
        return False
    return r.rcode() == dns.rcode.NOERROR and bool(r.answer)


def _wait(what: str, proc: subprocess.Popen, log: Path, ready, deadline: float) -> None:
    while not ready():
        if proc.poll() is not None:
            raise StartFailed(f"{what} exited at start (status {proc.returncode}); its log is {log}")
        if time.monotonic() > deadline:
            raise StartFailed(f"{what} did not become ready within {START_TIMEOUT:.0f}s; its log is {log}")
        time.sleep(0.01)


def _services_ready(proc: subprocess.Popen) -> bool:
    assert proc.stdout is not None, "started with stdout=PIPE"
    r, _, _ = select.select([proc.stdout], [], [], 0.01)
    return bool(r) and proc.stdout.readline().strip() == b"ready"


def start(lab_dir: Path) -> list[subprocess.Popen]:
    manifest = json.loads((lab_dir / "manifest.json").read_text(encoding="utf-8"))
    config = json.loads((lab_dir / "services.json").read_text(encoding="utf-8"))
    network(lab_dir, list(manifest["lo_addresses"]))
    deadline = time.monotonic() + START_TIMEOUT
    procs = []
    nsd_log = lab_dir / "nsd.log"
    nsd = _spawn([_tool("nsd"), "-d", "-c", str(lab_dir / "nsd.conf")], nsd_log)
    procs.append(nsd)
    services_log = lab_dir / "services.log"
    services = _spawn([sys.executable, "-m", "deliverck.lab.services", str(lab_dir)], services_log,
                      stdout=subprocess.PIPE)
    procs.append(services)
    kdcs = start_kdcs([k for k in config.get("kdc", []) if k["behaviour"] == "mit"])
    procs += [proc for _what, proc, _log, _address, _port in kdcs]
    auth = zones.SERVERS["nsd"][1][0]
    _wait("nsd (the lab's authoritative server)", nsd, nsd_log,
          lambda: _answers(auth, ".", "SOA", recursive=False), deadline)
    unbound_log = lab_dir / "unbound.log"
    unbound = _spawn([_tool("unbound"), "-d", "-c", str(lab_dir / "unbound.conf")], unbound_log)
    procs.append(unbound)
    second = _unsigned_root_resolver(lab_dir)
    procs += [p for p, _log, _address in second]
    resolver = manifest["unbound"]
    _wait("unbound (the lab's resolver)", unbound, unbound_log,
          lambda: _answers(resolver, zones.AUTH_NAME.to_text(), "A", recursive=True), deadline)
    for proc, log, address in second:
        _wait(f"unbound on {address} (the unsigned-root resolver)", proc, log,
              lambda a=address: _answers(a, zones.AUTH_NAME.to_text(), "A", recursive=True), deadline)
    postfixes = start_postfix(lab_dir, config.get("postfix", []))
    procs += [p for _i, p, _l in postfixes]
    _wait("the lab's Python servers (SMTP peers, misbehaving DNS, latency proxy)", services, services_log,
          lambda: _services_ready(services), deadline)
    for inst, proc, log in postfixes:
        _wait(f"Postfix on {inst['address']}", proc, log, lambda a=inst["address"]: _greets(a), deadline)
    for what, proc, log, address, port in kdcs:
        _wait(what, proc, log, lambda a=address, p=port: _accepts(a, p), deadline)
    if manifest["dns_latency_ms"] > 0:
        _wait("the DNS latency proxy", services, services_log,
              lambda: _answers(manifest["resolver"], zones.AUTH_NAME.to_text(), "A", recursive=True,
                               timeout=0.5 + manifest["dns_latency_ms"] / 1000), deadline)
    return procs


def _unsigned_root_resolver(lab_dir: Path) -> list[tuple[subprocess.Popen, Path, str]]:
    """The second unbound (plan.UNSIGNED_ROOT_CONF), started beside the first: the lab start
    waits for both at once."""
    from deliverck.lab import plan

    conf = lab_dir / plan.UNSIGNED_ROOT_CONF
    if not conf.is_file():
        return []
    log = lab_dir / "unbound-unsigned-root.log"
    proc = _spawn([_tool("unbound"), "-d", "-c", str(conf)], log)
    return [(proc, log, zones.RESOLVERS["unsigned-root"][1][0])]


def _greets(address: str, port: int = 25) -> bool:
    import socket
    try:
        with socket.create_connection((address, port), timeout=0.5) as s:
            s.settimeout(2.0)
            return s.recv(512).startswith(b"220 ")
    except OSError:
        return False


def _accepts(address: str, port: int) -> bool:
    try:
        with socket.create_connection((address, port), timeout=0.2):
            return True
    except OSError:
        return False


def start_kdcs(instances: list[dict]) -> list[tuple[str, subprocess.Popen, Path, str, int]]:
    """Each mit KDC: a fresh database, then krb5kdc (and kadmind for kpasswd), under libfaketime when
    its clock is off.  Returns (what, process, log, address, port it must accept on)."""
    from deliverck.lab import kdc

    if not instances:
        return []
    tools = {name: _tool(name, kdc.PACKAGES) for name in ("krb5kdc", "kadmind", "kdb5_util", "kadmin.local")}
    if any(i["clock_offset"] for i in instances) and kdc.faketime_library() is None:
        raise StartFailed("libfaketime is not installed (a lab KDC runs with its clock off): "
                          f"apt-get install {kdc.PACKAGES}")
    try:
        kdc.create_databases(instances, tools)
    except (RuntimeError, OSError, subprocess.TimeoutExpired) as e:
        raise StartFailed(f"creating a lab Kerberos database: {e}") from None
    started = []
    for i in instances:
        d, address, offset = Path(i["dir"]), i["address"], i["clock_offset"]
        clock = f" (clock {offset:+d} s)" if offset else ""
        log = d / "kdc.log"
        proc = _spawn(kdc.krb5kdc_argv(tools["krb5kdc"], d, i["realm"]), log, env=kdc.env(d, offset))
        started.append((f"krb5kdc for {i['realm']} on {address}{clock}", proc, log, address, kdc.KDC_PORT))
        if i["kpasswd"]:
            log = d / "kadmind.log"
            proc = _spawn(kdc.kadmind_argv(tools["kadmind"], d, i["realm"]), log, env=kdc.env(d, offset))
            started.append((f"kadmind (kpasswd) for {i['realm']} on {address}{clock}", proc, log, address,
                            kdc.KPASSWD_PORT))
    return started


def start_postfix(lab_dir: Path, instances: list[dict]) -> list[tuple[dict, subprocess.Popen, Path]]:
    from deliverck.lab import postfix

    started = []
    for inst in instances:
        d = Path(inst["dir"])
        log = d / "postfix.out"
        # The queue tree was made by plan.py (postfix.make_queue): no `postfix check` here, which
        # costs about 2 s of process forks per instance.
        started.append((inst, _spawn(postfix.start_argv(d), log), log))
    return started


def stop(procs: list[subprocess.Popen]) -> None:
    for p in procs:
        if p.poll() is None:
            p.terminate()
    deadline = time.monotonic() + 1.0
    for p in procs:
        try:
            p.wait(max(0.0, deadline - time.monotonic()))
        except subprocess.TimeoutExpired:
            p.kill()


def main(argv: list[str]) -> int:
    lab_dir = Path(argv[0])
    hold = argv[1:2] == ["--hold"]
    command = argv[2:] if argv[1:2] == ["--"] else []
    child: list[subprocess.Popen] = []

    def on_signal(signum, _frame):
        if child:
            if signum != signal.SIGINT:       # a terminal's SIGINT reaches the command directly
                child[0].send_signal(signum)
        else:
            raise SystemExit(128 + signum)

    # As pid 1 we get no default signal handling: SIGTERM and SIGHUP must be caught
    # explicitly.  SIGINT from a terminal reaches the command directly.
    signal.signal(signal.SIGTERM, on_signal)
    signal.signal(signal.SIGHUP, on_signal)
    signal.signal(signal.SIGINT, on_signal)
    procs: list[subprocess.Popen] = []
    try:
        try:
            procs = start(lab_dir)
        except StartFailed as e:
            (lab_dir / "error").write_text(str(e) + "\n", encoding="utf-8")
            return ERROR_STATUS
        if hold:
            (lab_dir / "ready").write_text(str(os.getpid()) + "\n")
            signal.signal(signal.SIGTERM, lambda *_: (_ for _ in ()).throw(SystemExit(0)))
            signal.signal(signal.SIGINT, lambda *_: (_ for _ in ()).throw(SystemExit(0)))
            while True:
                signal.pause()
        if not command:
            return 0
        try:
            child.append(subprocess.Popen(command, restore_signals=True))
        except OSError as e:
            (lab_dir / "error").write_text(f"cannot run {command[0]!r} inside the lab: {e.strerror}\n")
            return ERROR_STATUS
        status = child[0].wait()
        return status if status >= 0 else 128 - status
    finally:
        stop(procs)


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
