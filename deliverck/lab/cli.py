"""`deliverck lab ...`: run a command in the lab, keep a lab up, list scenarios."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import typer

from deliverck.errors import UsageError
from deliverck.lab.errors import LabUnavailable

lab_app = typer.Typer(
    help="The hermetic lab: DNS, resolver and SMTP peers on documentation addresses in a namespace.",
    no_args_is_help=True,
    add_completion=False,
)
_PASSTHROUGH = {"allow_interspersed_args": False, "ignore_unknown_options": True}
UP_TIMEOUT = 15.0
# Delay added to every DNS answer: beyond a few seconds every resolver times out,
# so a larger value tests nothing.
MAX_DNS_LATENCY_MS = 10000
MAX_ZONE_BYTES = 64 * 1024 * 1024      # as --zone-file (deliverck.net.overlay)


def _zone_dirs(dirs: list[str] | None) -> list[Path]:
    """Check --zone-dir before anything is built: a missing directory or a zone file that
    does not parse is bad input (exit 2), said at once rather than after seconds of setup."""
    from deliverck.lab import zones

    if any(not str(d).strip() for d in dirs or []):
        raise UsageError("--zone-dir is empty: give a directory of <origin>.zone files")
    out = [Path(d) for d in dirs or []]
    for d in out:
        if d.exists() and not d.is_dir():
            raise UsageError(f"--zone-dir {d}: no such directory ({d} is a file; give a directory of <origin>.zone "
                             "files)")
        if not d.is_dir():
            raise UsageError(f"--zone-dir {d}: no such directory (give a directory of <origin>.zone files)")
        if not os.access(d, os.R_OK | os.X_OK):
            raise UsageError(f"--zone-dir {d}: cannot read the directory")
        if not any(d.glob("*.zone")):
            raise UsageError(f"--zone-dir {d}: holds no <origin>.zone file (e.g. example.com.zone)")
    from deliverck.inputfile import ReadError, regular_file

    try:
        for path in zones.user_zone_files(out):
            try:
                # zones reads the file by name: a FIFO would block in open(), a directory raise
                regular_file(path, MAX_ZONE_BYTES)
            except ReadError as e:
                raise UsageError(f"--zone-dir: {path} {e}") from None
            try:
                origin = zones.read_user_zone(path).origin
            except LabUnavailable as e:
                raise UsageError(f"--zone-dir: {_redacted(str(e), path)}") from None
            if origin == zones.ROOT:
                raise UsageError(f"--zone-dir: {path}: the lab root cannot be replaced; serve a zone below it")
    except LabUnavailable as e:
        raise UsageError(f"--zone-dir: {e}") from None
    return out


def _redacted(message: str, path: Path) -> str:
    """A zone file's parse error without the file's tokens (dnspython quotes them whole): the file,
    the line and the kind of problem only (deliverck.net.overlay.redact)."""
    from deliverck.inputfile import ReadError, read_limited
    from deliverck.net.overlay import redact

    try:
        text = read_limited(path, MAX_ZONE_BYTES)[0].decode("utf-8", "replace")
    except ReadError:
        text = ""
    mark = "\0path\0"
    return redact(message.replace(str(path), mark), text).replace(mark, str(path))


def _outdir(text: str) -> Path:
    """OUTDIR before the lab is built (a lab and its Postfix take seconds): a directory, or a
    path whose existing parent is a writable directory (it is created then)."""
    if not text.strip():
        raise UsageError("OUTDIR is empty: give a directory for the bounce files")
    outdir = Path(text)
    if outdir.exists() and not outdir.is_dir():
        raise UsageError(f"OUTDIR {outdir}: is a file, not a directory (give a directory for the bounce files)")
    parent = outdir.resolve()
    while not parent.exists():
        parent = parent.parent
    if not parent.is_dir():
        raise UsageError(f"OUTDIR {outdir}: {parent} is a file, so the directory cannot be made")
    if not os.access(parent, os.W_OK | os.X_OK):
        raise UsageError(f"OUTDIR {outdir}: cannot write in {parent}")
    return outdir


def _dns_latency(ms: int) -> int:
    if not 0 <= ms <= MAX_DNS_LATENCY_MS:
        raise UsageError(f"--dns-latency must be 0 to {MAX_DNS_LATENCY_MS} milliseconds (not {ms})")
    return ms


def _command(command: list[str] | None) -> list[str]:
    command = [c for c in (command or [])]
    if command[:1] == ["--"]:
        command = command[1:]
    if not command:
        raise UsageError("give the command to run after --, e.g. `deliverck lab run -- deliverck good.test`")
    return command


@lab_app.command("run", context_settings=_PASSTHROUGH)
def run_cmd(
    command: list[str] | None = typer.Argument(None, help="The command (after --) to run inside the lab."),
    zone_dir: list[str] | None = typer.Option(
        None, "--zone-dir", metavar="DIR", help="Serve every <origin>.zone file in DIR too (repeatable)."),
    dns_latency: int = typer.Option(0, "--dns-latency", metavar="MS",
                                    help=f"Delay every DNS answer by MS milliseconds (0 to {MAX_DNS_LATENCY_MS})."),
    quiet: bool = typer.Option(False, "--quiet", "-q", help="No progress lines on stderr while the lab starts."),
) -> None:
    """Build a lab, run COMMAND inside it, tear the lab down; exit with COMMAND's status.

    COMMAND gets $DELIVERCK_CA_FILE and $DELIVERCK_TRUST_ANCHOR (the lab's CA and DNS
    root anchor), which deliverck uses as --ca-file and --trust-anchor, and the lab's
    fixture block lists in $DELIVERCK_DNSBL_LISTS (beside any lists files you named there)."""
    from deliverck.lab import run

    argv = _command(command)
    dirs, latency = _zone_dirs(zone_dir), _dns_latency(dns_latency)
    raise typer.Exit(run(argv, zone_dirs=dirs, dns_latency_ms=latency, progress=not quiet))


@lab_app.command("bounces")
def bounces_cmd(
    outdir: str = typer.Argument(..., help="Directory for the DSN .eml files and labels.toml."),
) -> None:
    """Make real bounces in a fresh lab: a sending Postfix delivers test messages to lab servers that
    fail on purpose; write each DSN as OUTDIR/<case>.eml plus OUTDIR/labels.toml.  Lab-only: the
    test messages never leave the lab's network namespace (deliverck itself never sends mail)."""
    from deliverck.lab import run

    target = _outdir(outdir)
    raise typer.Exit(run([sys.executable, "-m", "deliverck.lab.bounces", str(target.resolve())]))


@lab_app.command("scenarios")
def scenarios_cmd() -> None:
    """List the built-in scenarios: domain and what it exhibits."""
    from deliverck.lab.scenarios import load_all

    scenarios = load_all()
    width = max(len(s.domain) for s in scenarios)
    for s in scenarios:
        typer.echo(f"{s.domain:<{width}}  {s.description}")


def state_file() -> Path:
    """Where `lab up` records the lab it leaves running (deliverck.lab.state)."""
    from deliverck.lab.state import STATE_NAME, state_dir_path

    return state_dir_path() / STATE_NAME


def _lab_status(sd, state) -> str:
    from deliverck.lab.state import lab_status

    return lab_status(state, sd.file)


def _forget(sd, state) -> None:
    """The lab is stopped: remove its directory (only if it is the lab's) and the state file."""
    from deliverck.lab.state import remove_lab_dir

    remove_lab_dir(state, sd.file)
    sd.remove()


@lab_app.command("up", context_settings=_PASSTHROUGH)
def up_cmd(
    zone_dir: list[str] | None = typer.Option(None, "--zone-dir", metavar="DIR", help="Serve every <origin>.zone file in DIR too."),
    dns_latency: int = typer.Option(0, "--dns-latency", metavar="MS",
                                    help=f"Delay every DNS answer by MS milliseconds (0 to {MAX_DNS_LATENCY_MS})."),
    quiet: bool = typer.Option(False, "--quiet", "-q", help="No progress lines on stderr while the lab starts."),
) -> None:
    """Start a lab in the background; use `lab exec -- CMD` to work in it, `lab down` to stop it."""
    from deliverck.lab import describe, inner_pid, make_lab_dir, namespace_flags, say, start_error, unshare_argv
    from deliverck.lab.state import State, identity, manifest_digest, open_state_dir

    dirs, latency = _zone_dirs(zone_dir), _dns_latency(dns_latency)
    sd = open_state_dir(create=True)
    assert sd is not None, "create=True never answers None"
    with sd:
        sd.lock()                          # one `lab up` or `lab down` at a time
        state = sd.read()
        if state is not None:
            if _lab_status(sd, state) == "up":
                typer.echo(f"the lab is already up (pid {state.lab.pid}); `deliverck lab down` stops it")
                return
            _forget(sd, state)
        namespace_flags()                  # the lab can run here: said before seconds of preparation
        t0 = time.monotonic()
        if not quiet:
            say("preparing zones, DNSSEC keys, certificates and server configurations ...")
        lab_dir, manifest = make_lab_dir(dirs, latency)
        if not quiet:
            say(f"starting {describe(manifest)} ...")
        with open(lab_dir / "holder.log", "ab") as log:
            proc = subprocess.Popen(unshare_argv(lab_dir, ["--hold"]), stdin=subprocess.DEVNULL, stdout=log,
                                    stderr=log, start_new_session=True)
        deadline = time.monotonic() + UP_TIMEOUT
        while not (lab_dir / "ready").exists():
            error = start_error(lab_dir)
            if error or proc.poll() is not None or time.monotonic() > deadline:
                if proc.poll() is None:
                    proc.terminate()
                raise LabUnavailable((error or f"the lab did not come up; see {lab_dir / 'holder.log'}")
                                     + f" (lab files kept in {lab_dir})")
            time.sleep(0.02)
        # What `lab exec` and `lab down` will check before they enter or signal (deliverck.lab.state).
        pid = inner_pid(proc.pid)
        lab, unshare = (identity(pid) if pid else None), identity(proc.pid)
        if lab is None or unshare is None or min(lab.start, unshare.start) < 0:
            proc.terminate()
            raise LabUnavailable(f"the lab's processes cannot be identified in /proc (lab files kept in {lab_dir})")
        sd.write(State(str(lab_dir), manifest_digest(lab_dir), "-rnm" in namespace_flags(), lab, unshare))
    if not quiet:
        say(f"ready in {time.monotonic() - t0:.1f} s")
    typer.echo(f"the lab is up (manifest {lab_dir / 'manifest.json'}); "
               "`deliverck lab exec -- CMD` runs CMD in it, `deliverck lab down` stops it")


# Runs inside the lab's namespaces before the command: enters the caller's working directory
# *there*.  (nsenter --wd opens the directory before it enters the mount namespace, so the
# command's cwd stayed on the caller's mount while absolute paths resolved in the lab's:
# renaming `tmp` to a relative `out.prom` in the same directory failed with EXDEV, "Invalid
# cross-device link", issue 14.)  Only the standard library (python -S).
_ENTER = """\
import os, sys
cwd, argv = sys.argv[1], sys.argv[2:]
try:
    os.chdir(cwd)
except OSError as e:
    sys.stderr.write(f"deliverck: error: lab exec: the working directory {cwd} cannot be entered inside the lab "
                     f"({e.strerror}); run the command from a directory that existed when the lab came up\\n")
    sys.exit(3)
os.environ["PWD"] = cwd
try:
    os.execvp(argv[0], argv)
except OSError as e:
    sys.stderr.write(f"deliverck: error: lab exec: cannot run {argv[0]!r} inside the lab: {e.strerror}\\n")
    sys.exit(3)
"""


def _namespace_fds(state) -> dict[str, int]:
    """The lab's namespaces, opened from /proc/PID/ns before PID is checked: if PID is the lab's
    process 1 after they are open, they are its (it has held that pid since `lab up`)."""
    from deliverck.lab.state import is_ours

    kinds = (["user"] if state.userns else []) + ["net", "mnt", "pid"]
    fds: dict[str, int] = {}
    try:
        for kind in kinds:
            fds[kind] = os.open(f"/proc/{state.lab.pid}/ns/{kind}", os.O_RDONLY | os.O_CLOEXEC)
    except OSError:
        for fd in fds.values():
            os.close(fd)
        return {}
    if is_ours(state.lab) != "ours":
        for fd in fds.values():
            os.close(fd)
        return {}
    return fds


@lab_app.command("exec", context_settings=_PASSTHROUGH)
def exec_cmd(
    command: list[str] | None = typer.Argument(None, help="The command (after --) to run inside the lab."),
) -> None:
    """Run COMMAND inside the lab started by `lab up`, in the caller's working directory; exit with its status.

    COMMAND gets $DELIVERCK_CA_FILE and $DELIVERCK_TRUST_ANCHOR as with `lab run`."""
    from deliverck.lab import command_env, find_tool
    from deliverck.lab.state import check_lab_dir, open_state_dir

    command = _command(command)
    try:
        cwd = os.getcwd()
    except OSError as e:
        raise LabUnavailable(f"the working directory cannot be used ({e.strerror}): cd to a directory first") from None
    none_up = LabUnavailable("no lab is up: start one with `deliverck lab up` (or use `deliverck lab run -- CMD`)")
    sd = open_state_dir(create=False)
    if sd is None:
        raise none_up
    with sd:
        sd.lock()                          # not while `lab up` or `lab down` is at work (released before CMD runs)
        state = sd.read()
        if state is None:
            raise none_up
        if _lab_status(sd, state) == "gone":
            _forget(sd, state)
            raise none_up
        if not check_lab_dir(state, sd.file):
            raise LabUnavailable(f"the lab's directory {state.lab_dir} is gone: `deliverck lab down`, then "
                                 "`deliverck lab up`")
        fds = _namespace_fds(state)
        if not fds:
            raise none_up
    try:
        flags = [f"--{'mount' if k == 'mnt' else k}=/proc/self/fd/{fd}" for k, fd in fds.items()]
        if state.userns:
            flags.append("--preserve-credentials")
        argv = [find_tool("nsenter") or "nsenter", *flags, "--", sys.executable, "-S", "-c", _ENTER, cwd, *command]
        try:
            env = command_env(Path(state.lab_dir) / "manifest.json")
        except OSError as e:
            raise LabUnavailable(f"the lab's manifest cannot be read ({e.strerror}): `deliverck lab down`, then "
                                 "`deliverck lab up`") from None
        try:
            status = subprocess.call(argv, env=env, pass_fds=tuple(fds.values()))
        except KeyboardInterrupt:
            status = 130
    finally:
        for fd in fds.values():
            os.close(fd)
    raise typer.Exit(status if status >= 0 else 128 - status)


STOP_WAIT = 5.0


@lab_app.command("down")
def down_cmd() -> None:
    """Stop the lab started by `lab up` and remove its files."""
    from deliverck.lab.state import check_lab_dir, is_ours, open_state_dir, signal_process

    sd = open_state_dir(create=False)
    if sd is None:
        typer.echo("no lab is up")
        return
    with sd:
        sd.lock()
        state = sd.read()
        if state is None:
            typer.echo("no lab is up")
            return
        up = _lab_status(sd, state) == "up"
        check_lab_dir(state, sd.file)      # a stranger's directory: exit 2 before anything is signalled
        if up:
            def running() -> bool:
                return any(is_ours(p) == "ours" for p in (state.lab, state.unshare))

            for p in (state.lab, state.unshare):
                signal_process(p, signal.SIGTERM)
            deadline = time.monotonic() + STOP_WAIT
            while running() and time.monotonic() < deadline:
                time.sleep(0.02)
            if is_ours(state.lab) == "ours":
                signal_process(state.lab, signal.SIGKILL)      # process 1: its whole pid namespace goes
                deadline = time.monotonic() + STOP_WAIT
                while running() and time.monotonic() < deadline:
                    time.sleep(0.02)
        _forget(sd, state)
    typer.echo("the lab is down" if up else "no lab is up")


def main() -> None:
    """`python -m deliverck.lab`: the lab commands on their own (as the main CLI runs them)."""
    try:
        rc = lab_app(standalone_mode=False)
    except (UsageError, LabUnavailable) as e:
        print(f"deliverck lab: {e}", file=sys.stderr)
        sys.exit(e.exit_code)
    sys.exit(rc if isinstance(rc, int) else 0)
