"""`deliverck bulk FILE`: the command; the engine is deliverck/bulk.py."""

from __future__ import annotations

import asyncio
import os
import sys
from typing import List, Optional

import typer

from deliverck.cli import (CA_FILE_ENV, TRUST_ANCHOR_ENV, _ca_file, _check_names, _dnsbl, _ehlo_name, _positive,
                           _receivers, _resolvers, _severity, _trust_anchor, app)
from deliverck.config import Config
from deliverck.errors import UsageError
from deliverck.inputfile import sync_directory
from deliverck.target import Target

# Audits in flight (and SMTP connections per address): far above what one machine's
# file descriptors and a polite run allow; a bigger number is a typo.
MAX_CONCURRENCY = 10000


_WHAT = "give a file with one target per line, or - for standard input"


def _open_input(path: str):
    """The input as a binary stream, after a look at its first bytes (bulk.looks_binary): bad
    input is said before any output file is touched.  A FIFO without a writer reads as empty
    (deliverck.inputfile) instead of blocking."""
    from deliverck import bulk
    from deliverck.inputfile import ReadError, open_stream

    if path == "-":
        if sys.stdin is None:
            raise UsageError(f"standard input is closed: {_WHAT}")
        stream = sys.stdin.buffer
        shown = "standard input"
    else:
        if not path:
            raise UsageError(f"FILE is empty: {_WHAT}")
        try:
            stream = open_stream(path)
        except ReadError as e:
            raise UsageError(f"{path}: {e}: {_WHAT}") from None
        shown = path
    try:
        why = bulk.looks_binary(stream.peek(bulk.SNIFF)[:bulk.SNIFF])
    except OSError as e:
        raise UsageError(f"{shown}: cannot be read ({e.strerror or e}): {_WHAT}") from None
    if why:
        if stream is not sys.stdin.buffer:
            stream.close()
        raise UsageError(f"{shown}: {why}")
    return stream


class _FdOut:
    """Lines to a file descriptor, each written whole with os.write (no buffer of Python's that
    would try again, and fail again, at exit).  A failure is an OutputError (exit 3)."""

    def __init__(self, fd: int, shown: str) -> None:
        self.fd = fd
        self.shown = shown
        self.lines = 0
        self.failed = False

    def _fail(self, e: OSError) -> None:
        from deliverck.audit import OutputError

        self.failed = True
        why = "broken pipe: the reader stopped reading" if isinstance(e, BrokenPipeError) else (e.strerror or str(e))
        n = self.lines
        raise OutputError(f"cannot write {self.shown} ({why}) after {n} line{'s' if n != 1 else ''}"
                          f"{self.resume_hint()}") from None

    def resume_hint(self) -> str:
        return ""

    def write(self, text: str) -> int:
        if self.failed:
            raise OSError(5, "an earlier write failed")
        view = memoryview(text.encode("utf-8"))
        try:
            while view:
                view = view[os.write(self.fd, view):]
        except OSError as e:
            self._fail(e)
        self.lines += text.count("\n")
        return len(text)

    def flush(self) -> None:
        pass


def _holder(st: os.stat_result) -> str:
    """Who holds the lock on the file of ST: ' (pid N: command line)' from /proc/locks, where
    the kernel lists every flock(2) lock with the pid that took it; '' when it cannot be told.
    A lock dies with its process, so a run killed with kill -9 never blocks the next one."""
    from deliverck.inputfile import ReadError, read_limited
    from deliverck.report.escape import safe

    try:
        text = read_limited("/proc/locks", 1 << 20)[0].decode("ascii", "replace")
    except ReadError:
        return ""
    want = (os.major(st.st_dev), os.minor(st.st_dev), st.st_ino)
    for line in text.splitlines():
        f = line.split()
        if len(f) < 6 or f[1] != "FLOCK" or f[2] == "->":
            continue
        try:
            major, minor, inode = f[5].split(":")
            key = (int(major, 16), int(minor, 16), int(inode))
            pid = int(f[4])
        except ValueError:
            continue
        if key != want or pid <= 0:
            continue
        try:
            cmd = read_limited(f"/proc/{pid}/cmdline", 4096)[0]
        except ReadError:
            return f" (pid {pid})"
        words = " ".join(w.decode("utf-8", "replace") for w in cmd.split(b"\0") if w)
        words = words if len(words) <= 160 else words[:157] + "..."
        return f" (pid {pid}: {safe(words)})" if words else f" (pid {pid})"
    return ""


class _Output(_FdOut):
    """--output: an earlier run's output (resumed), an empty file or a new one, opened and
    locked for the whole run (flock, exclusive, non-blocking: a second run on the same file
    stops at once with exit 2 and the pid of the first).  A symbolic link is written through.
    The file is changed only from the first line written: a run that writes no line leaves it
    as it was (and does not leave a new empty file behind)."""

    def __init__(self, path: str, retry: bool) -> None:
        from deliverck import bulk

        self.path = path
        self.real = os.path.realpath(path)
        fd, self.created = self._open_locked()
        super().__init__(fd, f"--output {path}")
        try:
            head = os.pread(fd, 64, 0)
            if not bulk.is_bulk_output(head):
                raise UsageError(f"--output {path}: exists and is not a deliverck bulk output "
                                 f"({bulk.SCHEMA} lines): give a new file, or an earlier run's output to resume")
            with os.fdopen(os.dup(fd), "rb") as f:
                self.scan = bulk.scan_output(f)
        except OSError as e:
            os.close(fd)
            raise UsageError(f"--output {path}: cannot be read ({e.strerror or e})") from None
        except BaseException:
            os.close(fd)
            raise
        self.done = self.scan.done(retry)
        self.retried: set[str] = set()            # inputs whose retried line this run replaces
        self.started = False

    def _open_locked(self) -> tuple[int, bool]:
        import fcntl

        flags = os.O_RDWR | os.O_APPEND | getattr(os, "O_CLOEXEC", 0)
        for _ in range(5):
            created = False
            try:
                fd = os.open(self.real, flags)
            except FileNotFoundError:
                try:
                    fd = os.open(self.real, flags | os.O_CREAT | os.O_EXCL, 0o666)
                    created = True
                except FileExistsError:
                    continue                      # another run created it just now: open that one
                except OSError as e:
                    raise UsageError(f"--output {self.path}: cannot be created ({e.strerror or e})") from None
            except OSError as e:
                raise UsageError(f"--output {self.path}: cannot be opened ({e.strerror or e})") from None
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                st = os.fstat(fd)
                os.close(fd)
                raise UsageError(f"--output {self.path}: another run is writing it{_holder(st)}: wait for it "
                                 "to end, or give another file") from None
            except OSError as e:
                os.close(fd)
                raise UsageError(f"--output {self.path}: cannot be locked ({e.strerror or e})") from None
            # A run that ended just now may have renamed a new file over the one we locked.
            try:
                same = os.path.samestat(os.fstat(fd), os.stat(self.real))
            except OSError:
                same = False
            if same:
                return fd, created
            os.close(fd)
        raise UsageError(f"--output {self.path}: keeps being replaced by another process: give another file")

    def resume_hint(self) -> str:
        return ": make room and run the same command again; it resumes where this run stopped"

    def items(self, items):
        """The items of the input, less those whose bad-line error is already in the file (a
        bad line stays bad: it is not written again at every resume); notes what is retried."""
        for item in items:
            if item.input in self.scan.pending:
                if item.config is None and self.scan.last.get(item.input) == "error":
                    continue
                self.retried.add(item.input)
            yield item

    def write(self, text: str) -> int:
        if not self.started:
            self.started = True
            if self.scan.size > self.scan.end:
                try:
                    os.ftruncate(self.fd, self.scan.end)      # the torn last line of a killed run
                except OSError as e:
                    self._fail(e)
        return super().write(text)

    def finish(self) -> None:
        """After a complete run: remove the lines that later lines superseded (retried targets),
        by writing the file anew next to it and renaming it over the old one, locked before
        the rename so that no other run gets in between."""
        import fcntl
        import tempfile

        from deliverck.audit import _keep_mode

        drop = list(self.scan.superseded) + [self.scan.pending[k] for k in self.retried if k in self.scan.pending]
        if not self.lines or not drop:
            return
        directory = os.path.dirname(self.real)
        try:
            size = os.fstat(self.fd).st_size
            tfd, tmp = tempfile.mkstemp(prefix=f".{os.path.basename(self.real)}.", suffix=".tmp", dir=directory)
        except OSError as e:
            self._fail_compact(e)
        try:
            fcntl.flock(tfd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            from deliverck import bulk

            bulk.copy_without(self.fd, tfd, size, drop)
            _keep_mode(tfd, os.fstat(self.fd))
            os.fsync(tfd)
            os.replace(tmp, self.real)
        except OSError as e:
            os.close(tfd)
            try:
                os.unlink(tmp)
            except OSError:
                pass
            self._fail_compact(e)
        os.close(self.fd)                          # the old file and its lock; the new one is locked
        self.fd = tfd
        sync_directory(directory)

    def _fail_compact(self, e: OSError) -> None:
        from deliverck.audit import OutputError

        self.failed = True
        raise OutputError(f"cannot rewrite --output {self.path} without the lines that were audited again "
                          f"({e.strerror or e}): every target is in it, and where one has two lines the last "
                          "one counts") from None

    def close(self) -> None:
        try:
            if self.lines and not self.failed:
                os.fsync(self.fd)
            elif self.created and not self.lines and os.fstat(self.fd).st_size == 0:
                os.unlink(self.real)              # still locked by us: nobody else has used it
        except OSError:
            pass
        finally:
            os.close(self.fd)


@app.command("bulk")
def bulk_cmd(
    file: str = typer.Argument(..., help="Targets, one per line (domain, host or address) or JSON lines; - for stdin."),
    output: Optional[str] = typer.Option(None, "--output", "-o", metavar="FILE",
                                         help="Append JSON lines here (locked while the run lasts); targets that "
                                              "passed or failed in FILE are skipped, errors and incomplete ones "
                                              "audited again (resume)."),
    concurrency: int = typer.Option(50, "--concurrency", metavar="N",
                                    help=f"Audits in flight at once (1 to {MAX_CONCURRENCY})."),
    per_address: int = typer.Option(2, "--per-address", metavar="N",
                                    help="SMTP connections to one remote address at once, across all audits "
                                         "(0: no limit across audits; each audit still opens one at a time)."),
    shard: Optional[str] = typer.Option(None, "--shard", metavar="K/N",
                                        help="Audit only the K-th of N shards (stable hash of the target)."),
    dask: Optional[str] = typer.Option(None, "--dask", metavar="ADDRESS",
                                       help="Run on a Dask cluster: a scheduler address, or local[:N] for N local "
                                            "workers (optional extra deliverck[dask])."),
    dask_insecure: bool = typer.Option(False, "--dask-insecure",
                                       help="Allow a plain tcp:// scheduler beyond loopback: no authentication, no "
                                            "encryption, and Dask runs what it is sent (a network you trust only)."),
    progress: Optional[bool] = typer.Option(None, "--progress/--no-progress",
                                            help="Progress line on stderr (default: only when stderr is a terminal)."),
    resolver: Optional[List[str]] = typer.Option(None, "--resolver", metavar="IP[:PORT]", help="DNS resolver (repeatable)."),
    only: Optional[List[str]] = typer.Option(None, "--only", metavar="CHECK[,CHECK]", help="Run only these checks."),
    skip: Optional[List[str]] = typer.Option(None, "--skip", metavar="CHECK[,CHECK]", help="Do not run these checks."),
    fail_on: str = typer.Option("error", "--fail-on", metavar="LEVEL", help="Severity that makes a target fail."),
    receivers: Optional[str] = typer.Option(None, "--receivers", metavar="SYSTEM[,SYSTEM]",
                                            help="Receiver systems to predict NDRs for."),
    dns_timeout: float = typer.Option(5.0, "--dns-timeout", metavar="SECONDS", help="Time limit per DNS question."),
    check_timeout: float = typer.Option(30.0, "--check-timeout", metavar="SECONDS", help="Time limit per check."),
    deadline: float = typer.Option(60.0, "--deadline", metavar="SECONDS", help="Time limit per target."),
    smtp_timeout: float = typer.Option(10.0, "--smtp-timeout", metavar="SECONDS", help="Time limit per SMTP step."),
    ehlo_name: Optional[str] = typer.Option(None, "--ehlo-name", metavar="NAME", help="Name deliverck gives in EHLO."),
    ca_file: Optional[str] = typer.Option(None, "--ca-file", metavar="PEM", envvar=CA_FILE_ENV,
                                          help="Extra trusted CA certificates."),
    trust_anchor: Optional[str] = typer.Option(None, "--trust-anchor", metavar="FILE", envvar=TRUST_ANCHOR_ENV,
                                               help="DNSSEC root trust anchor."),
    dnsbl: Optional[List[str]] = typer.Option(None, "--dnsbl", metavar="LIST", help="DNSBLs to query (repeatable)."),
    probe_private: bool = typer.Option(False, "--probe-private", help="Also connect to private addresses."),
    no_retry: bool = typer.Option(False, "--no-retry",
                                  help="With --output: keep the targets whose earlier line is an error or "
                                       "incomplete as they are (default: audit them again)."),
) -> None:
    """Audit many targets; one JSON line per target on stdout or --output (schema deliverck.bulk/1)."""
    from deliverck import bulk
    from deliverck.runner import select_checks

    if not 1 <= concurrency <= MAX_CONCURRENCY:
        raise UsageError(f"--concurrency must be 1 to {MAX_CONCURRENCY}")
    if not 0 <= per_address <= MAX_CONCURRENCY:
        raise UsageError(f"--per-address must be 0 (no limit across audits) to {MAX_CONCURRENCY}")
    shard_k_n = bulk.parse_shard(shard)
    if dask is not None:
        from deliverck.bulk_dask import check_address

        check_address(dask, dask_insecure)     # the extra, the address, its safety: before any input or output
    elif dask_insecure:
        raise UsageError("--dask-insecure goes with --dask tcp://HOST:PORT")
    base = Config(
        target=Target(input="-", name="invalid"),
        resolvers=_resolvers(resolver),
        only=_check_names(only, "--only"), skip=_check_names(skip, "--skip"), receivers=_receivers(receivers),
        fail_on=_severity(fail_on, "--fail-on"),
        dns_timeout=_positive(dns_timeout, "--dns-timeout"),
        check_timeout=_positive(check_timeout, "--check-timeout"),
        deadline=_positive(deadline, "--deadline"),
        smtp_timeout=_positive(smtp_timeout, "--smtp-timeout"),
        ehlo_name=_ehlo_name(ehlo_name), ca_file=_ca_file(ca_file), trust_anchor=_trust_anchor(trust_anchor),
        dnsbl_lists=_dnsbl(dnsbl), probe_private=probe_private, per_address=per_address,
    )
    select_checks(base)                    # unknown check names, or none left: bad usage before any work
    if no_retry and output is None:
        raise UsageError("--no-retry needs --output FILE (it says which lines of an earlier run's output "
                         "are audited again)")
    if output is not None:
        from deliverck.inputfile import ReadError, output_path

        try:
            output_path(os.path.realpath(output) if output else output)
        except ReadError as e:
            raise UsageError(f"--output {output}: {e}" if output else f"--output {e}") from None
    elif sys.stdout is None:
        raise UsageError("standard output is closed: give --output FILE")
    stream = _open_input(file)
    out: _FdOut
    try:
        if output is not None:
            _not_the_input(file, output)
            out = _Output(output, retry=not no_retry)
        else:
            sys.stdout.flush()
            out = _FdOut(sys.stdout.fileno(), "the results to standard output")
    except BaseException:
        if stream is not sys.stdin.buffer:
            stream.close()
        raise
    done = out.done if isinstance(out, _Output) else set()
    show = sys.stderr.isatty() if progress is None else progress
    meter = bulk.Progress(show)

    def bad(item) -> None:
        if not show:
            sys.stderr.write(f"deliverck: bulk: line {item.line}: {item.error}\n")

    stats = bulk.ReadStats()
    items = bulk.read_items(stream, base, shard_k_n, done, stats)
    if isinstance(out, _Output):
        items = out.items(items)
    try:
        if dask is not None:
            from deliverck.bulk_dask import run_on_dask

            counts = run_on_dask(items, out, dask, concurrency, progress=meter, insecure=dask_insecure)
        else:
            counts = asyncio.run(bulk.run_items(items, out, concurrency, meter, on_bad=bad))
        if isinstance(out, _Output):
            out.finish()
    finally:
        meter.close()
        if isinstance(out, _Output):
            out.close()
        if stream is not sys.stdin.buffer:
            stream.close()
    if not stats.lines:
        # An empty list (a failed export, a FIFO nobody wrote to) is not "every target passed".
        raise UsageError(f"{'standard input' if file == '-' else file}: no target in it "
                         "(one domain, host or address per line; # starts a comment)")
    summary = (f"deliverck: bulk: {sum(counts.values())} targets: {counts['pass']} pass, {counts['fail']} fail, "
               f"{counts['incomplete']} incomplete, {counts['error']} error")
    total = counts
    if isinstance(out, _Output) and out.scan.last:
        # The exit code speaks for every target in the file, not only for this run's.
        earlier = out.scan.counts(besides=out.retried)
        total = {k: counts[k] + earlier[k] for k in counts}
        skipped = sum(earlier.values())
        summary += (f", {skipped} already done" + (f", {len(out.retried)} retried" if out.retried else "")
                    + f"; {output} holds {sum(total.values())} targets: {total['pass']} pass, {total['fail']} fail, "
                      f"{total['incomplete']} incomplete, {total['error']} error")
    sys.stderr.write(summary + "\n")
    code = 1 if total["fail"] else 3 if (total["incomplete"] or total["error"]) else 0
    raise typer.Exit(code)


def _not_the_input(file: str, output: str) -> None:
    """Appending results to the file being read would read them back as targets, without end."""
    try:
        out = os.stat(output)
    except OSError:
        return
    try:
        src = os.fstat(sys.stdin.fileno()) if file == "-" else os.stat(file)
    except (OSError, ValueError, AttributeError):
        return
    if os.path.samestat(src, out):
        shown = "standard input" if file == "-" else file
        raise UsageError(f"--output {output} is the input ({shown}): give another file for the results")
