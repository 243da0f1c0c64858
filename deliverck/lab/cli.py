"""`deliverck lab ...`: run a command in the lab, keep a lab up, list scenarios."""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import List, Optional

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


def _zone_dirs(dirs: Optional[List[Path]]) -> list[Path]:
    """Check --zone-dir before anything is built: a missing directory or a zone file that
    does not parse is bad input (exit 2), said at once rather than after seconds of setup."""
    from deliverck.lab import zones

    out = [Path(d) for d in dirs or []]
    for d in out:
        if not d.is_dir():
            raise UsageError(f"--zone-dir {d}: no such directory (give a directory of <origin>.zone files)")
        if not os.access(d, os.R_OK | os.X_OK):
            raise UsageError(f"--zone-dir {d}: cannot read the directory")
        if not any(d.glob("*.zone")):
            raise UsageError(f"--zone-dir {d}: holds no <origin>.zone file (e.g. example.com.zone)")
    try:
        for path in zones.user_zone_files(out):
            if zones.read_user_zone(path).origin == zones.ROOT:
                raise UsageError(f"--zone-dir: {path}: the lab root cannot be replaced; serve a zone below it")
    except LabUnavailable as e:
        raise UsageError(f"--zone-dir: {e}") from None
    return out


def _dns_latency(ms: int) -> int:
    if not 0 <= ms <= MAX_DNS_LATENCY_MS:
        raise UsageError(f"--dns-latency must be 0 to {MAX_DNS_LATENCY_MS} milliseconds (not {ms})")
    return ms


def _command(command: Optional[List[str]]) -> list[str]:
    command = [c for c in (command or [])]
    if command[:1] == ["--"]:
        command = command[1:]
    if not command:
        raise UsageError("give the command to run after --, e.g. `deliverck lab run -- deliverck good.test`")
    return command


@lab_app.command("run", context_settings=_PASSTHROUGH)
def run_cmd(
    command: Optional[List[str]] = typer.Argument(None, help="The command (after --) to run inside the lab."),
    zone_dir: Optional[List[Path]] = typer.Option(
        None, "--zone-dir", help="Serve every <origin>.zone file in DIR too (repeatable)."),
    dns_latency: int = typer.Option(0, "--dns-latency", metavar="MS",
                                    help=f"Delay every DNS answer by MS milliseconds (0 to {MAX_DNS_LATENCY_MS})."),
    quiet: bool = typer.Option(False, "--quiet", "-q", help="No progress lines on stderr while the lab starts."),
) -> None:
    """Build a lab, run COMMAND inside it, tear the lab down; exit with COMMAND's status.

    COMMAND gets $DELIVERCK_CA_FILE and $DELIVERCK_TRUST_ANCHOR (the lab's CA and DNS
    root anchor), which deliverck uses as --ca-file and --trust-anchor."""
    from deliverck.lab import run

    argv = _command(command)
    dirs, latency = _zone_dirs(zone_dir), _dns_latency(dns_latency)
    raise typer.Exit(run(argv, zone_dirs=dirs, dns_latency_ms=latency, progress=not quiet))


@lab_app.command("bounces")
def bounces_cmd(
    outdir: Path = typer.Argument(..., help="Directory for the DSN .eml files and labels.toml."),
) -> None:
    """Make real bounces in a fresh lab: a sending Postfix delivers test messages to lab servers that
    fail on purpose; write each DSN as OUTDIR/<case>.eml plus OUTDIR/labels.toml.  Lab-only: the
    test messages never leave the lab's network namespace (deliverck itself never sends mail)."""
    from deliverck.lab import run

    raise typer.Exit(run([sys.executable, "-m", "deliverck.lab.bounces", str(outdir.resolve())]))


@lab_app.command("scenarios")
def scenarios_cmd() -> None:
    """List the built-in scenarios: domain and what it exhibits."""
    from deliverck.lab.scenarios import load_all

    scenarios = load_all()
    width = max(len(s.domain) for s in scenarios)
    for s in scenarios:
        typer.echo(f"{s.domain:<{width}}  {s.description}")


def state_file() -> Path:
    base = os.environ.get("XDG_RUNTIME_DIR") or f"/tmp/deliverck-lab-{os.getuid()}"
    return Path(base) / "deliverck-lab" / "state.json"


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def _read_state() -> dict | None:
    try:
        state = json.loads(state_file().read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    if not _alive(state.get("pid", 0)):
        shutil.rmtree(state.get("lab_dir", "/nonexistent"), ignore_errors=True)
        state_file().unlink(missing_ok=True)
        return None
    return state


@lab_app.command("up", context_settings=_PASSTHROUGH)
def up_cmd(
    zone_dir: Optional[List[Path]] = typer.Option(None, "--zone-dir", help="Serve every <origin>.zone file in DIR too."),
    dns_latency: int = typer.Option(0, "--dns-latency", metavar="MS",
                                    help=f"Delay every DNS answer by MS milliseconds (0 to {MAX_DNS_LATENCY_MS})."),
    quiet: bool = typer.Option(False, "--quiet", "-q", help="No progress lines on stderr while the lab starts."),
) -> None:
    """Start a lab in the background; use `lab exec -- CMD` to work in it, `lab down` to stop it."""
    from deliverck.lab import describe, inner_pid, make_lab_dir, say, start_error, unshare_argv

    dirs, latency = _zone_dirs(zone_dir), _dns_latency(dns_latency)
    state = _read_state()
    if state:
        typer.echo(f"the lab is already up (pid {state['pid']}); `deliverck lab down` stops it")
        return
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
    pid = inner_pid(proc.pid)
    state_file().parent.mkdir(parents=True, exist_ok=True)
    state_file().write_text(json.dumps({
        "pid": pid, "unshare_pid": proc.pid, "lab_dir": str(lab_dir),
        "userns": "-rnm" in unshare_argv(lab_dir, [])}), encoding="utf-8")
    if not quiet:
        say(f"ready in {time.monotonic() - t0:.1f} s")
    typer.echo(f"the lab is up (manifest {lab_dir / 'manifest.json'}); "
               "`deliverck lab exec -- CMD` runs CMD in it, `deliverck lab down` stops it")


@lab_app.command("exec", context_settings=_PASSTHROUGH)
def exec_cmd(
    command: Optional[List[str]] = typer.Argument(None, help="The command (after --) to run inside the lab."),
) -> None:
    """Run COMMAND inside the lab started by `lab up`; exit with its status.

    COMMAND gets $DELIVERCK_CA_FILE and $DELIVERCK_TRUST_ANCHOR as with `lab run`."""
    from deliverck.lab import command_env, find_tool

    command = _command(command)
    state = _read_state()
    if not state:
        raise LabUnavailable("no lab is up: start one with `deliverck lab up` (or use `deliverck lab run -- CMD`)")
    flags = ["-U", "--preserve-credentials"] if state.get("userns") else []
    argv = [find_tool("nsenter"), "-t", str(state["pid"]), *flags, "-n", "-m", "-p", f"--wd={os.getcwd()}",
            *command]
    try:
        env = command_env(Path(state["lab_dir"]) / "manifest.json")
    except OSError as e:
        raise LabUnavailable(f"the lab's manifest cannot be read ({e.strerror}): `deliverck lab down`, then "
                             "`deliverck lab up`") from None
    try:
        status = subprocess.call(argv, env=env)
    except KeyboardInterrupt:
        status = 130
    raise typer.Exit(status if status >= 0 else 128 - status)


@lab_app.command("down")
def down_cmd() -> None:
    """Stop the lab started by `lab up` and remove its files."""
    state = _read_state()
    if not state:
        typer.echo("no lab is up")
        return
    for pid in (state["pid"], state["unshare_pid"]):
        try:
            os.kill(pid, signal.SIGTERM)
        except ProcessLookupError:
            pass
    deadline = time.monotonic() + 5
    while _alive(state["unshare_pid"]) and time.monotonic() < deadline:
        time.sleep(0.02)
    shutil.rmtree(state["lab_dir"], ignore_errors=True)
    state_file().unlink(missing_ok=True)
    typer.echo("the lab is down")


def main() -> None:
    """`python -m deliverck.lab`: the lab commands on their own (as the main CLI runs them)."""
    try:
        rc = lab_app(standalone_mode=False)
    except (UsageError, LabUnavailable) as e:
        print(f"deliverck lab: {e}", file=sys.stderr)
        sys.exit(e.exit_code)
    sys.exit(rc if isinstance(rc, int) else 0)
