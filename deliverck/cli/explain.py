"""`deliverck explain INPUT...`: a bounce explained; with --run, the checks of its cause run too."""

from __future__ import annotations

import json
import os
import sys
from collections.abc import Iterator
from typing import TYPE_CHECKING, Any

import typer

from deliverck.cli.flags import table_flags
from deliverck.config import Config
from deliverck.errors import UsageError
from deliverck.options import MAX_EXPLAIN_MB, build_config, megabytes
from deliverck.report import FORMATS, RenderOptions
from deliverck.target import Target, parse_target, refuse_unprobeable

if TYPE_CHECKING:
    from deliverck.explain.model import Explanation

_EXPLAIN_PATHLIKE = (".eml", ".msg", ".txt", ".mbox", ".mbx", ".dsn", ".json", ".log")
# The options of --run are judged before the bounce names its target.
_NO_TARGET = Target(input="-", name="invalid")


def explain_inputs(inputs: list[str]) -> tuple[str, list[str]]:
    """('stdin'|'dir'|'files'|'text', items) from the INPUT arguments."""
    items = [x for x in inputs]
    if not items or not any(x.strip() for x in items):
        raise UsageError("explain: give a status code (5.7.506), a reply line, pasted text, a bounce file, "
                         "a directory, or - for standard input")
    if items == ["-"]:
        return "stdin", items
    exists = [os.path.exists(x) for x in items]
    if len(items) == 1 and os.path.isdir(items[0]):
        return "dir", items
    if all(exists):
        for x in items:
            if os.path.isdir(x):
                raise UsageError(f"explain: {x} is a directory: give one directory, or files")
        return "files", items
    if any(exists) and len(items) > 1 and sum(exists) > 1:
        missing = next(x for x, e in zip(items, exists) if not e)
        raise UsageError(f"explain: {missing}: no such file")
    if len(items) == 1:
        x = items[0].strip()
        if " " not in x and (x.lower().endswith(_EXPLAIN_PATHLIKE) or x.startswith(("/", "./", "../", "~"))):
            raise UsageError(f"explain: {x}: no such file or directory")
    return "text", [" ".join(items)]


def _write_json(doc: dict) -> None:
    sys.stdout.write(json.dumps(doc, indent=2, ensure_ascii=False) + "\n")


def _run_audit(e: Explanation, base: Config, as_json: bool, verbose: bool, debug: bool) -> int:
    """The checks of the bounce's cause against the host it names; its exit code."""
    import asyncio  # with the engine, not at start-up (issue 16)

    from deliverck.explain.render import render_table
    from deliverck.explain.run import plan
    from deliverck.registry import check_ids
    from deliverck.report.json import report_dict
    from deliverck.runner import run_audit

    rp = plan(e)
    known = set(check_ids())
    checks = tuple(c for c in rp.checks if c in known)
    why = ""
    if checks and rp.target:
        try:
            target = parse_target(rp.target)
            refuse_unprobeable(target, False, option=f"`deliverck {rp.target} --probe-private`")
        except UsageError as ex:
            why = f"cannot audit {rp.target!r}: {ex}"
    if not checks or not rp.target or why:
        why = why or (rp.why if not rp.target or not rp.checks else "none of its checks is installed")
        if as_json:
            _write_json({**e.to_json(), "run": {"ran": False, "reason": why}})
        else:
            sys.stdout.write(render_table(e, verbose=verbose) + f"\nrun: nothing to run: {why}\n")
        return e.exit_code
    config = build_config(target, {"helo_name": rp.helo or None, "sender": rp.sender or None}, base=base,
                          outbound_ips=rp.outbound_ips, only=checks, kerberos=rp.kerberos, debug=debug)
    report = asyncio.run(run_audit(config))
    if as_json:
        run = {"ran": True, "target": rp.target, "why": rp.why, "checks": list(checks), "exit_code": report.exit_code}
        _write_json({**e.to_json(), "run": run, "audit": report_dict(report, debug)})
    else:
        sys.stdout.write(render_table(e, verbose=verbose))
        sys.stdout.write(f"\nrun: {', '.join(checks)} against {rp.target} ({rp.why})\n\n")
        sys.stdout.write(FORMATS["table"](report, RenderOptions(verbose=verbose, debug=debug)))
    return report.exit_code


def _run_options(ctx: typer.Context, run: bool, values: dict[str, Any]) -> Config:
    """The --run options, validated before any input is read, with or without --run: a value that
    is wrong is wrong either way.  A file named only by $DELIVERCK_CA_FILE/$DELIVERCK_TRUST_ANCHOR
    is read only for --run (the lab sets them for every command; explaining a code reads no file)."""
    def given(name: str) -> bool:
        # By name: typer vendors click in some releases (see cli._usage_error).
        return run or getattr(ctx.get_parameter_source(name), "name", "DEFAULT") not in ("ENVIRONMENT", "DEFAULT")

    return build_config(_NO_TARGET, {k: v for k, v in values.items() if k not in ("ca_file", "trust_anchor")
                                     or given(k)})


def _workers(workers: int | None) -> int:
    """--workers: worker processes for a directory, several files or a large mbox (default: the cores)."""
    from deliverck.cli.flags import workers as check

    return check(workers)


def _results(mode: str, items: list[str], limit: int, workers: int = 1,
             view: tuple[bool, bool, bool] | None = None) -> Iterator[Any]:
    from deliverck.explain import engine

    if mode == "text":
        return iter([engine.explain_text(items[0])])
    if mode == "stdin":
        data = sys.stdin.buffer.read(limit + 1)
        notes = [f"input over {limit} bytes: only the first {limit} were read"] if len(data) > limit else []
        return iter(engine.explain_bytes(data[:limit], "stdin", notes))
    if mode == "dir":
        if not os.access(items[0], os.R_OK | os.X_OK):
            raise UsageError(f"explain: cannot read the directory {items[0]}")
        if workers > 1:
            from deliverck.explain.pool import explain_files

            return explain_files(engine.iter_files(items[0]), limit, workers, explicit=False, view=view)
        return engine.iter_directory(items[0], limit)
    if workers > 1:
        from deliverck.explain.pool import explain_files

        return explain_files(items, limit, workers, explicit=True, view=view)
    return (e for path in items for e in engine.explain_path(path, limit))


def _one_input(results: Iterator[Explanation], items: list[str], as_json: bool, verbose: bool,
               run: tuple[Config, bool] | None) -> int:
    """One file or text: its messages in full (one of them, with --run, audited too)."""
    from deliverck.explain import reader
    from deliverck.explain.render import render_json, render_table

    found = list(x for _, x in zip(range(reader.MAX_MESSAGES + 1), results))
    if len(found) == 1 and found[0].error:
        raise UsageError(f"explain: {found[0].error}")
    if len(found) > 1 and as_json:
        raise UsageError(f"explain: {items[0]} holds {len(found)} messages: use --jsonl for one line per message")
    if len(found) == 1 and run is not None and found[0].is_bounce:
        return _run_audit(found[0], run[0], as_json, verbose, run[1])
    code = 0
    for i, e in enumerate(found):
        if as_json:
            sys.stdout.write(render_json(e))
        else:
            sys.stdout.write(("\n" if i else "") + render_table(e, verbose=verbose, header=len(found) > 1))
        code = max(code, 1 if e.exit_code else 0) if len(found) > 1 else e.exit_code
    sys.stdout.flush()
    return code


def _many(results: Iterator[Any], mode: str, items: list[str], jsonl: bool, verbose: bool) -> int:
    """Directory triage skips what is not a bounce (docs/explain.md): the table says how many and
    why in one closing line (-v: one line per skipped input); --jsonl keeps one record per input,
    the skipped ones with category "not_a_bounce".  Skipped inputs do not make the exit code 1,
    unless nothing at all was a bounce.  Results come as Explanations, or already rendered by the
    worker processes (render.Triaged, see _view)."""
    from deliverck.explain.render import Triaged, skipped_summary, triage

    code = printed = total = 0
    skipped: dict[str, int] = {}
    directory = mode == "dir"
    for x in results:
        t = x if isinstance(x, Triaged) else triage(x, jsonl, verbose, directory)
        total += 1
        if t.skipped:
            skipped[t.kind] = skipped.get(t.kind, 0) + 1
        if t.table:
            sys.stdout.write(("\n" if printed else "") + t.text)
            printed += 1
        elif t.text:
            sys.stdout.write(t.text)
        sys.stdout.flush()
        if t.exit_code and not t.skipped:
            code = 1
    if mode == "dir" and total and sum(skipped.values()) == total:
        code = 1
    if mode == "dir" and not total:
        # Nothing to read is not a bounce explained (docs/explain.md: exit 1 when nothing in it was a bounce).
        note = f"{items[0]}: no file to read in it (hidden names and special files are skipped)\n"
        (sys.stderr if jsonl else sys.stdout).write(("deliverck: explain: " if jsonl else "") + note)
        code = 1
    if skipped and not jsonl:
        sys.stdout.write(("\n" if printed else "") + skipped_summary(skipped, total))
    return code


@table_flags("ctx", "inputs", "as_json", "jsonl", "run", "max_size", "workers", "resolvers", "dns_timeout", "deadline",
             "ca_file", "trust_anchor", "verbose", "debug",
             resolvers="--run: DNS resolver (repeatable).", dns_timeout="--run: time limit per DNS question.",
             deadline="--run: time limit for the audit.", ca_file="--run: extra trusted CA certificates.",
             trust_anchor="--run: DNSSEC trust anchor for the root.")
def explain_cmd(
    ctx: typer.Context,
    inputs: list[str] | None = typer.Argument(None, metavar="INPUT...",
                                                 help="An enhanced status code (5.7.506), a reply line, a pasted diagnostic block, "
                                                      "a bounce file (.eml, mbox), a directory of them, or - for standard input."),
    as_json: bool = typer.Option(False, "--json", help="One JSON document (schema deliverck.explain/1)."),
    jsonl: bool = typer.Option(False, "--jsonl", help="One JSON line per message, written as each is read (for directories)."),
    run: bool = typer.Option(False, "--run", help="Run the checks that test the cause against the host/IP/domain the bounce names."),
    max_size: float = typer.Option(10.0, "--max-size", metavar="MB",
                                   help=f"Read at most this many MB of each file (above 0, at most {MAX_EXPLAIN_MB})."),
    workers: int | None = typer.Option(None, "--workers", metavar="N",
                                       help="Worker processes for a directory, many files or a large mbox (default: one "
                                            "per core; 1: one process). Same output, same order."),
    verbose: bool = typer.Option(False, "--verbose", "-v", help="Show all the evidence."),
    debug: bool = typer.Option(False, "--debug", help="Show tracebacks of internal errors."),
    **values: Any,
) -> None:
    """Explain a bounce: the reply, the systems, a category, meaning, owner, fix and the checks that test the cause.

    An input with no SMTP reply, no delivery-status report and no bounce wording is "not a bounce" (one line, no category); a directory skips such inputs and counts them in its last line.

    Exit 0: explained; 1: undetermined or not a bounce (in a directory: some message undetermined or unreadable, or nothing a bounce); 2: bad usage or input.  With --run, the audit's exit code."""
    if as_json and jsonl:
        raise UsageError("explain: use either --json or --jsonl")
    limit = megabytes(max_size)
    n_workers = _workers(workers)
    base = _run_options(ctx, run, values)
    mode, items = explain_inputs(inputs or [])
    if mode in ("dir", "files") and (run and (mode == "dir" or len(items) > 1)):
        raise UsageError("explain: --run takes one bounce, not a directory or several files")
    if mode == "dir" and as_json:
        raise UsageError("explain: a directory gives one result per message: use --jsonl")
    if mode != "dir" and len(items) == 1 and not jsonl:
        results = _results(mode, items, limit, 1 if run else n_workers)
        raise typer.Exit(_one_input(results, items, as_json, verbose, (base, debug) if run else None))
    # Directory triage: the workers render each record themselves (render.triage).
    results = _results(mode, items, limit, 1 if run else n_workers, view=(jsonl, verbose, mode == "dir"))
    raise typer.Exit(_many(results, mode, items, jsonl, verbose))
