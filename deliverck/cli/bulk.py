"""`deliverck bulk FILE`: the command; the engine is deliverck/fleet/bulk.py, the files deliverck/fleet/output.py."""

from __future__ import annotations

import os
import sys
from typing import TYPE_CHECKING, Any

import typer

from deliverck.cli import flags
from deliverck.cli.flags import table_flags
from deliverck.errors import UsageError
from deliverck.inputfile import ReadError, output_path
from deliverck.options import build_config
from deliverck.target import Target

if TYPE_CHECKING:
    from deliverck.fleet.output import FdOut

# Audits in flight (and SMTP connections per address): far above what one machine's
# file descriptors and a polite run allow; a bigger number is a typo.
MAX_CONCURRENCY = 10000
# Each line names its own target; the flags make the Config every line starts from.
_NO_TARGET = Target(input="-", name="invalid")


def _check_output(output: str | None, no_retry: bool) -> None:
    if no_retry and output is None:
        raise UsageError("--no-retry needs --output FILE (it says which lines of an earlier run's output "
                         "are audited again)")
    if output is not None:
        try:
            output_path(os.path.realpath(output) if output else output)
        except ReadError as e:
            raise UsageError(f"--output {output}: {e}" if output else f"--output {e}") from None
    elif sys.stdout is None:
        raise UsageError("standard output is closed: give --output FILE")


def _open_output(file: str, output: str | None, stream, retry: bool) -> FdOut:
    from deliverck.fleet.output import FdOut, Output, not_the_input

    try:
        if output is not None:
            not_the_input(file, output)
            return Output(output, retry=retry)
        sys.stdout.flush()
        return FdOut(sys.stdout.fileno(), "the results to standard output")
    except BaseException:
        if stream is not sys.stdin.buffer:
            stream.close()
        raise


def _summary(counts: dict[str, int], out: FdOut, output: str | None) -> int:
    """The closing line on stderr; the exit code speaks for every target in the file, not only this run's."""
    from deliverck.fleet.output import Output

    summary = (f"deliverck: bulk: {sum(counts.values())} targets: {counts['pass']} pass, {counts['fail']} fail, "
               f"{counts['incomplete']} incomplete, {counts['error']} error")
    total = counts
    if isinstance(out, Output) and out.scan.last:
        earlier = out.scan.counts(besides=out.retried)
        total = {k: counts[k] + earlier[k] for k in counts}
        skipped = sum(earlier.values())
        summary += (f", {skipped} already done" + (f", {len(out.retried)} retried" if out.retried else "")
                    + f"; {output} holds {sum(total.values())} targets: {total['pass']} pass, {total['fail']} fail, "
                      f"{total['incomplete']} incomplete, {total['error']} error")
    sys.stderr.write(summary + "\n")
    return 1 if total["fail"] else 3 if (total["incomplete"] or total["error"]) else 0


def _run(items, out: FdOut, dask: str | None, dask_insecure: bool, concurrency: int, workers: int,
         per_address: int, meter, bad) -> dict[str, int]:
    import asyncio  # with the engine, not at start-up (issue 16)

    from deliverck.fleet import bulk

    if dask is not None:
        from deliverck.fleet.dask import run_on_dask

        return run_on_dask(items, out, dask, concurrency, progress=meter, insecure=dask_insecure)
    if workers > 1 and concurrency > 1:
        from deliverck.fleet.workers import run_workers

        return run_workers(items, out, workers, concurrency, per_address, meter, on_bad=bad)
    return asyncio.run(bulk.run_items(items, out, concurrency, meter, on_bad=bad))


def _workers(workers: int | None, dask: str | None) -> int:
    if dask is None:
        return flags.workers(workers)
    if workers is not None:
        raise UsageError("--workers is for one machine; with --dask the cluster has the workers (local:N)")
    return 1


@table_flags("file", "output", "concurrency", "workers", "per_address", "shard", "dask", "dask_insecure", "progress",
             "resolvers", "only", "skip", "fail_on", "receivers", "sender_profile", "dns_timeout", "check_timeout", "deadline",
             "smtp_timeout", "ehlo_name", "ca_file", "trust_anchor", "dnsbl_lists", "probe_private", "no_retry",
             resolvers="DNS resolver (repeatable).", fail_on="Severity that makes a target fail.",
             receivers="Receiver systems to predict NDRs for.", deadline="Time limit per target.",
             smtp_timeout="Time limit per SMTP step.", ehlo_name="Name deliverck gives in EHLO.",
             ca_file="Extra trusted CA certificates.", trust_anchor="DNSSEC root trust anchor.",
             dnsbl_lists="DNSBLs to query (repeatable).", probe_private="Also connect to private addresses.")
def bulk_cmd(
    file: str = typer.Argument(..., help="Targets, one per line (domain, host or address) or JSON lines; - for stdin."),
    output: str | None = typer.Option(None, "--output", "-o", metavar="FILE",
                                         help="Append JSON lines here (locked while the run lasts); targets that "
                                              "passed or failed in FILE are skipped, errors and incomplete ones "
                                              "audited again (resume)."),
    concurrency: int = typer.Option(50, "--concurrency", metavar="N",
                                    help=f"Audits in flight at once (1 to {MAX_CONCURRENCY})."),
    workers: int | None = typer.Option(None, "--workers", metavar="N",
                                          help="Worker processes on this machine (default: one per core; 1: "
                                               "one process). They share --concurrency, the output order "
                                               "(input order) and --per-address."),
    per_address: int = typer.Option(2, "--per-address", metavar="N",
                                    help="SMTP connections to one remote address at once, across all audits "
                                         "(0: no limit across audits; each audit still opens one at a time)."),
    shard: str | None = typer.Option(None, "--shard", metavar="K/N",
                                        help="Audit only the K-th of N shards (stable hash of the target)."),
    dask: str | None = typer.Option(None, "--dask", metavar="ADDRESS",
                                       help="Run on a Dask cluster: a scheduler address, or local[:N] for N local "
                                            "workers (optional extra deliverck[dask])."),
    dask_insecure: bool = typer.Option(False, "--dask-insecure",
                                       help="Allow a plain tcp:// scheduler beyond loopback: no authentication, no "
                                            "encryption, and Dask runs what it is sent (a network you trust only)."),
    progress: bool | None = typer.Option(None, "--progress/--no-progress",
                                            help="Progress line on stderr (default: only when stderr is a terminal)."),
    no_retry: bool = typer.Option(False, "--no-retry",
                                  help="With --output: keep the targets whose earlier line is an error or "
                                       "incomplete as they are (default: audit them again)."),
    **values: Any,
) -> None:
    """Audit many targets; one JSON line per target on stdout or --output (schema deliverck.bulk/1)."""
    # The engine is imported when the command runs: `--help` and bad usage stay fast.
    from deliverck.fleet import bulk
    from deliverck.fleet.dask import check_address
    from deliverck.fleet.output import Output, open_input
    from deliverck.runner import select_checks

    if not 1 <= concurrency <= MAX_CONCURRENCY:
        raise UsageError(f"--concurrency must be 1 to {MAX_CONCURRENCY}")
    if not 0 <= per_address <= MAX_CONCURRENCY:
        raise UsageError(f"--per-address must be 0 (no limit across audits) to {MAX_CONCURRENCY}")
    shard_k_n = bulk.parse_shard(shard)
    n_workers = _workers(workers, dask)
    if dask is not None:
        check_address(dask, dask_insecure)     # the extra, the address, its safety: before any input or output
    elif dask_insecure:
        raise UsageError("--dask-insecure goes with --dask tcp://HOST:PORT")
    base = build_config(_NO_TARGET, values, per_address=per_address)
    select_checks(base)                    # unknown check names, or none left: bad usage before any work
    _check_output(output, no_retry)
    stream = open_input(file)
    out = _open_output(file, output, stream, retry=not no_retry)
    show = sys.stderr.isatty() if progress is None else progress
    meter = bulk.Progress(show)

    def bad(item) -> None:
        if not show:
            sys.stderr.write(f"deliverck: bulk: line {item.line}: {item.error}\n")

    stats = bulk.ReadStats()
    items = bulk.read_items(stream, base, shard_k_n, out.done if isinstance(out, Output) else set(), stats)
    if isinstance(out, Output):
        items = out.items(items)
    try:
        counts = _run(items, out, dask, dask_insecure, concurrency, n_workers, per_address, meter, bad)
        if isinstance(out, Output):
            out.finish()
    finally:
        meter.close()
        if isinstance(out, Output):
            out.close()
        if stream is not sys.stdin.buffer:
            stream.close()
    if not stats.lines:
        # An empty list (a failed export, a FIFO nobody wrote to) is not "every target passed".
        raise UsageError(f"{'standard input' if file == '-' else file}: no target in it "
                         "(one domain, host or address per line; # starts a comment)")
    raise typer.Exit(_summary(counts, out, output))
