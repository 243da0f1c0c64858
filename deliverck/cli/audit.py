"""`deliverck audit --config deliverck.toml`: every target of a config file, one combined report.

The work lives in deliverck.fleet.configfile (the file, whose options are built through
deliverck.options like the check command's flags), deliverck.fleet.audit (runs, ignores,
state) and deliverck.fleet.output (the files); report/fleet.py renders the combined
documents.  This is only the command line.
"""

from __future__ import annotations

import datetime as dt
import json
import sys
from pathlib import Path
from typing import TYPE_CHECKING

import typer

from deliverck.errors import UsageError
from deliverck.model import EXIT_PASS
from deliverck.report import RenderOptions

if TYPE_CHECKING:
    from deliverck.fleet import audit as au
    from deliverck.fleet import configfile

AUDIT_FORMATS = ("table", "json", "prometheus", "html")
MAX_CONCURRENCY = 1000       # targets of one config file audited at once; more is a typo


def _check_usage(fmt: str, as_json: bool, output: str | None, changes_only: bool, state: str | None,
                 concurrency: int) -> str:
    out_format = "json" if as_json else fmt
    if out_format not in AUDIT_FORMATS:
        raise UsageError(f"unknown --format {fmt!r} (use one of: {', '.join(AUDIT_FORMATS)})")
    if changes_only and state is None:
        raise UsageError("--changes-only needs --state FILE (where the last run's findings are kept)")
    if not 1 <= concurrency <= MAX_CONCURRENCY:
        raise UsageError(f"--concurrency must be 1 to {MAX_CONCURRENCY}")
    if sys.stdout is None and (output is None or changes_only):
        raise UsageError("standard output is closed: the report (or the change list) has nowhere to go; "
                         "give --output FILE, and open standard output for --changes-only")
    return out_format


def _validate_only(config: str, cfg: configfile.AuditConfig) -> None:
    """--check-config: validating the file includes saying which ignores have expired (a run would say it too)."""
    from deliverck.report.fleet import expired_line

    today = dt.datetime.now(dt.UTC).date()
    for t in cfg.targets:
        for ig in t.ignores:
            if ig.expired(today):
                sys.stderr.write(f"deliverck: warning: {config}:{ig.line}: {expired_line(t.name, ig)}\n")
    sys.stdout.write(f"{config}: {len(cfg.targets)} targets: {', '.join(t.name for t in cfg.targets)}\n")


def _write(text: str, changes: dict, output: str | None, state: str | None, changes_only: bool) -> None:
    """Every output first, flushed; the state last (deliverck.fleet.output: "outputs first"), so
    that a report that did not reach its reader is never recorded as reported."""
    from deliverck.fleet.output import write_atomic, write_stdout
    from deliverck.report.fleet import render_changes

    if output:
        write_atomic(output, text, state=state)
    if not output:
        if not (changes_only and not changes):
            write_stdout(text, state)
    elif changes_only and changes:
        write_stdout(render_changes(changes), state)


def _save_state(state_path: Path, result: au.Audit, old: dict) -> None:
    from deliverck.fleet import audit as au
    from deliverck.fleet.output import OutputError, write_atomic

    try:
        write_atomic(state_path, json.dumps(au.new_state(result, old), indent=1, sort_keys=True) + "\n",
                     "--state")
    except OutputError as e:
        raise OutputError(f"{e}; the report was written, so the next run reports the same changes "
                             "again") from None


def _render(out_format: str, result: au.Audit, old: dict | None, opts: RenderOptions) -> str:
    """html is the fleet dashboard (report/dashboard.py), drawn from the audit's JSON document and
    compared with the state file read before this run; the others are report/fleet.py's."""
    from deliverck.report.fleet import RENDERERS, audit_dict

    if out_format == "html":
        from deliverck.report.dashboard import render_audit

        return render_audit(audit_dict(result, opts), old)
    return RENDERERS[out_format](result, opts)


def audit_cmd(
    config: str = typer.Option(..., "--config", "-c", metavar="FILE",
                               help="The config file (deliverck.toml; see docs/config.md)."),
    fmt: str = typer.Option("table", "--format", "-f",
                            help="Output format: table, json, prometheus or html (the fleet dashboard, one "
                                 "self-contained page; with --state it shows new and fixed findings)."),
    as_json: bool = typer.Option(False, "--json", help="Same as --format json."),
    output: str | None = typer.Option(None, "--output", "-o", metavar="FILE",
                                         help="Write the report to FILE atomically (temporary file, fsync, rename) "
                                              "instead of standard output; a symbolic link is written through, "
                                              "an existing file keeps its mode."),
    changes_only: bool = typer.Option(False, "--changes-only",
                                      help="Print nothing when no target changed since the last run (needs --state)."),
    state: str | None = typer.Option(None, "--state", metavar="FILE",
                                        help="State file: the last run's findings per target (written atomically)."),
    concurrency: int = typer.Option(4, "--concurrency", metavar="N",
                                    help=f"Audit at most N targets at a time (1 to {MAX_CONCURRENCY})."),
    check_only: bool = typer.Option(False, "--check-config", help="Only validate the config file, then exit."),
    verbose: bool = typer.Option(False, "--verbose", "-v", help="Show informational findings and the evidence."),
    debug: bool = typer.Option(False, "--debug", help="Show tracebacks of internal errors."),
) -> None:
    """Audit every target of a config file; one combined report (for cron and monitoring).

    Exit 0: every target passes; 1: a target fails; 3: a target could not be
    audited completely and none fails; 2: bad config or usage.  With
    --changes-only, an unchanged run prints nothing and exits 0.

    A target without ca_file or trust_anchor in the file uses $DELIVERCK_CA_FILE
    and $DELIVERCK_TRUST_ANCHOR when they are set (as the check command does)."""
    # The engine is imported when the command runs: `--help` and bad usage stay fast.
    import asyncio  # with the engine, not at start-up (issue 16)

    from deliverck.fleet import audit as au
    from deliverck.fleet import configfile
    from deliverck.report.fleet import expired_line

    out_format = _check_usage(fmt, as_json, output, changes_only, state, concurrency)
    cfg = configfile.load(config)
    au.check_paths(output, state)            # before any lookup: bad usage writes nothing
    state_path = Path(state) if state is not None else None
    old = au.read_state(state_path) if state_path else {}
    if check_only:
        _validate_only(config, cfg)
        raise typer.Exit(EXIT_PASS)
    result = asyncio.run(au.run_targets(cfg.targets, concurrency))
    au.with_last_success(result, old)
    # Expired ignores are said on stderr on every run, --changes-only or not, until the file is fixed.
    for t in result.targets:
        for ig in t.expired:
            sys.stderr.write(f"deliverck: warning: {config}:{ig.line}: {expired_line(t.name, ig)}\n")
    changes = au.compare(result, old) if state_path else {}
    if changes_only:
        result.changes = changes
    text = _render(out_format, result, old if state_path else None, RenderOptions(verbose=verbose, debug=debug))
    _write(text, changes, output, state, changes_only)
    if state_path:
        _save_state(state_path, result, old)
    if changes_only and not changes:
        raise typer.Exit(EXIT_PASS)
    raise typer.Exit(result.exit_code)
