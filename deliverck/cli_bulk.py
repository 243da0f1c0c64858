"""`deliverck bulk FILE`: the command; the engine is deliverck/bulk.py."""

from __future__ import annotations

import asyncio
import os
import sys
from pathlib import Path
from typing import List, Optional

import typer

from deliverck.cli import (CA_FILE_ENV, TRUST_ANCHOR_ENV, _ca_file, _check_names, _dnsbl, _ehlo_name, _positive,
                           _receivers, _resolvers, _severity, _trust_anchor, app)
from deliverck.config import Config
from deliverck.errors import UsageError
from deliverck.target import Target

# Audits in flight (and SMTP connections per address): far above what one machine's
# file descriptors and a polite run allow; a bigger number is a typo.
MAX_CONCURRENCY = 10000


def _open_input(path: str):
    if path == "-":
        return sys.stdin
    p = Path(path)
    if p.is_dir():
        raise UsageError(f"{path} is a directory: give a file with one target per line (or - for stdin)")
    try:
        return p.open("r", encoding="utf-8", errors="replace", newline=None)
    except OSError as e:
        raise UsageError(f"cannot read {path}: {e.strerror or e}") from None


@app.command("bulk")
def bulk_cmd(
    file: str = typer.Argument(..., help="Targets, one per line (domain, host or address) or JSON lines; - for stdin."),
    output: Optional[str] = typer.Option(None, "--output", "-o", metavar="FILE",
                                         help="Append JSON lines here; targets already in FILE are skipped (resume)."),
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

        check_address(dask)                # the extra and the address: before any input or output
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
    stream = _open_input(file)
    done: set[str] = set()
    if output:
        out_path = Path(output)
        if out_path.is_dir():
            raise UsageError(f"--output {output} is a directory: give a file")
        done = bulk.done_inputs(out_path)
        bulk.trim_torn_line(out_path)
        try:
            out = out_path.open("a", encoding="utf-8")
        except OSError as e:
            raise UsageError(f"cannot write --output {output}: {e.strerror or e}") from None
    else:
        out = sys.stdout
    show = sys.stderr.isatty() if progress is None else progress
    meter = bulk.Progress(show)

    def bad(item) -> None:
        if not show:
            sys.stderr.write(f"deliverck: bulk: line {item.line}: {item.error}\n")

    items = bulk.read_items(stream, base, shard_k_n, done)
    try:
        if dask is not None:
            from deliverck.bulk_dask import run_on_dask

            counts = run_on_dask(items, out, dask, concurrency, progress=meter)
        else:
            counts = asyncio.run(bulk.run_items(items, out, concurrency, meter, on_bad=bad))
    finally:
        meter.close()
        if out is not sys.stdout:
            out.flush()
            os.fsync(out.fileno())
            out.close()
        if stream is not sys.stdin:
            stream.close()
    skipped = f", {len(done)} already done" if done else ""
    sys.stderr.write(f"deliverck: bulk: {sum(counts.values())} targets: {counts['pass']} pass, {counts['fail']} fail, "
                     f"{counts['incomplete']} incomplete, {counts['error']} error{skipped}\n")
    code = 1 if counts["fail"] else 3 if (counts["incomplete"] or counts["error"]) else 0
    raise typer.Exit(code)
