"""Run many `deliverck` command lines fast: import the CLI once, fork one process per command.

`python -m deliverck ARGS` spends ~0.4 s of CPU importing Python, typer, dnspython and the
checks before it reads its first argument; for a table of hundreds of bad inputs on a
two-core machine that is minutes of imports.  This server imports what `python -m
deliverck` imports, once, then runs each command in a forked child, exactly as
deliverck/__main__.py does (`deliverck.cli.main()` with the arguments in sys.argv), with its
own standard input, output and error files, environment, working directory and process group.
What it does not exercise is the import itself (every other test does).

Protocol, one JSON object per line: requests on stdin {"id", "args", "env", "cwd", "stdin",
"stdout", "stderr"} (the last three are file paths); replies on stdout {"id", "code",
"seconds"}, code null when the command did not end within --timeout seconds (its process
group is killed).  At most --jobs commands run at once.  The server ends at end of input once
every command has ended.
"""

from __future__ import annotations

import argparse
import io
import json
import os
import select
import signal
import sys
import time


def _preload() -> None:
    """What commands import on their way (lazily, inside functions), so that no child pays for it."""
    import importlib

    import deliverck.cli
    from deliverck.registry import all_checks

    all_checks()
    make = getattr(deliverck.cli, "_click_command", None)
    group = make() if make else __import__("typer").main.get_command(deliverck.cli.app)
    # typer converts option values with code it imports on first use: parse (without running) once.
    for name, args in (("check", ["example.com", "--dns-timeout", "5", "--only", "mx", "--cert-warn-days", "3",
                                  "--kerberos"]),
                       ("explain", ["--max-size", "1", "5.7.1"]), ("bulk", ["-", "--concurrency", "2"])):
        try:
            group.commands[name].make_context(name, list(args))
        except Exception:  # noqa: BLE001 - a warm-up only
            pass
    for name in ("deliverck.fleet.audit", "deliverck.fleet.bulk", "deliverck.fleet.dask", "deliverck.baseline",
                 "deliverck.fleet.configfile", "deliverck.fleet.output", "deliverck.report.fleet",
                 "deliverck.inputfile", "deliverck.runner", "deliverck.net.tls", "deliverck.net.dnssec",
                 "deliverck.net.overlay", "deliverck.records.dnsbl", "deliverck.ndr.catalog", "deliverck.cli.spf_eval",
                 "deliverck.explain.engine", "deliverck.explain.render", "deliverck.explain.run",
                 "deliverck.report.checklist", "deliverck.lab.scenarios", "dask.distributed", "distributed.comm"):
        try:
            importlib.import_module(name)
        except ImportError:
            pass


def _child(req: dict) -> None:
    """In the forked process: become the command and never return."""
    code = 70
    try:
        os.setsid()
        for fd, path, flags in ((0, req["stdin"], os.O_RDONLY),
                                (1, req["stdout"], os.O_WRONLY | os.O_CREAT | os.O_TRUNC),
                                (2, req["stderr"], os.O_WRONLY | os.O_CREAT | os.O_TRUNC)):
            f = os.open(path, flags, 0o600)
            os.dup2(f, fd)
            os.close(f)
        # Fresh text streams on the new descriptors: the server's own stdin buffer holds requests.
        sys.stdin = io.TextIOWrapper(io.BufferedReader(io.FileIO(0, "r", closefd=False)))
        sys.stdout = io.TextIOWrapper(io.BufferedWriter(io.FileIO(1, "w", closefd=False)), line_buffering=False)
        sys.stderr = io.TextIOWrapper(io.BufferedWriter(io.FileIO(2, "w", closefd=False)), line_buffering=True)
        os.chdir(req["cwd"])
        os.environ.clear()
        os.environ.update(req["env"])
        signal.signal(signal.SIGINT, signal.default_int_handler)
        sys.argv = ["deliverck", *req["args"]]
        from deliverck.cli import main

        try:
            main()
            code = 0
        except SystemExit as e:
            code = e.code if isinstance(e.code, int) else (0 if e.code is None else 1)
    except BaseException:  # noqa: BLE001 - a crash of the CLI itself, shown as a traceback
        import traceback

        traceback.print_exc()
        code = 71
    finally:
        for stream in (sys.stdout, sys.stderr):
            try:
                stream.flush()
            except Exception:  # noqa: BLE001
                pass
        os._exit(code)


def serve(timeout: float, jobs: int) -> None:
    _preload()
    pending: list[dict] = []
    running: dict[int, tuple[dict, float]] = {}
    stdin_open = True
    buf = b""

    def reply(req: dict, code, started: float) -> None:
        sys.stdout.write(json.dumps({"id": req["id"], "code": code, "seconds": time.monotonic() - started}) + "\n")
        sys.stdout.flush()

    while stdin_open or pending or running:
        while pending and len(running) < jobs:
            req = pending.pop(0)
            pid = os.fork()
            if pid == 0:
                _child(req)
            running[pid] = (req, time.monotonic())
        if stdin_open:
            ready, _, _ = select.select([0], [], [], 0.01)
            if ready:
                chunk = os.read(0, 1 << 16)
                if not chunk:
                    stdin_open = False
                buf += chunk
                *lines, buf = buf.split(b"\n")
                pending += [json.loads(x) for x in lines if x.strip()]
        else:
            time.sleep(0.01)
        for pid in list(running):
            req, started = running[pid]
            done, status = os.waitpid(pid, os.WNOHANG)
            if done:
                del running[pid]
                reply(req, os.waitstatus_to_exitcode(status), started)
            elif time.monotonic() - started > timeout:
                try:
                    os.killpg(pid, signal.SIGKILL)
                except ProcessLookupError:
                    pass
                os.waitpid(pid, 0)
                del running[pid]
                reply(req, None, started)


if __name__ == "__main__":
    ap = argparse.ArgumentParser()
    ap.add_argument("--timeout", type=float, default=30.0)
    ap.add_argument("--jobs", type=int, default=4)
    a = ap.parse_args()
    serve(a.timeout, a.jobs)
