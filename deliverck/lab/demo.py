"""`make demo`: real reports for a healthy and some broken lab domains.

Runs inside the lab (`deliverck lab run -- python -m deliverck.lab.demo`).
The lab's certificates come from its own CA and its DNS root is signed with
its own key: `lab run` hands both to every command through
$DELIVERCK_CA_FILE and $DELIVERCK_TRUST_ANCHOR, which deliverck reads as
--ca-file and --trust-anchor (a private CA and a private root, as a user
would pass them); the system trust store is never touched.  So the commands
shown are exactly the ones run, and the same a user types after the demo.
Then the broken domains again as pages (issue 19): one `--format html` report each,
and the fleet dashboard of all of them from `deliverck audit --config`; the demo
prints where they are, for a browser (they open from file://, offline).
Last, `deliverck listen` receives real messages from the lab's sending Postfix
(sendtest.py): a healthy one and one whose From domain is not aligned.
Exits non-zero only if a report does not end the way its scenario expects.
"""

from __future__ import annotations

import os
import subprocess
import sys
import time
from pathlib import Path

from deliverck.lab.manifest import current

SHOWN = ("good", "no-ptr", "expired-cert", "helo-bare", "kerberos-skew", "slow")
# A bounce as an admin receives it, explained (exit 0: explained).
BOUNCE = ("550 5.7.25 [203.0.113.7] The IP address sending this message does not have a PTR record "
          "setup, or the corresponding forward DNS entry does not point to the sending IP.")
EXIT = {"pass": 0, "fail": 1, "incomplete": 3}
# The HTML pages (issue 19): the broken domains shown above, and one whose SPF include tree goes
# over the 10-lookup limit, so the page's pictures have something to show.  Written under
# $DELIVERCK_DEMO_DIR, by default build/demo of the directory `make demo` runs in.
HTML_SHOWN = tuple(n for n in SHOWN if n != "good") + ("spf-over-limit",)
DEMO_DIR_ENV = "DELIVERCK_DEMO_DIR"
# `deliverck listen` receiving from the lab's sending Postfix (deliverck/lab/sendtest.py): the good
# case, then one broken one.  (case, expected exit)
LISTENED = (("good", 0), ("unaligned", 1))


def listen_step(lab, case: str, expected: int) -> str | None:
    """Run `deliverck listen` on the listen-rcpt MX address, let the lab's Postfix send `case` to it,
    show the report; returns what went wrong, or None."""
    from deliverck.lab import sendtest

    rcpt = f"postmaster@{case}.{sendtest.RCPT_DOMAIN}"
    args = ["listen", "--address", sendtest.LISTEN_ADDRESS, "--port", "25", "--rcpt", rcpt, "--timeout", "30"]
    print(f"$ deliverck {' '.join(args)}    # then the lab's Postfix ({sendtest.HOST}) sends case {case!r}: "
          f"{sendtest.CASES[case].cause}", flush=True)
    proc = subprocess.Popen([sys.executable, "-m", "deliverck", *args], stderr=subprocess.PIPE, text=True)
    assert proc.stderr is not None
    end = time.monotonic() + 30
    listening = False
    for line in proc.stderr:                  # what listen says while it waits, shown as it comes
        sys.stdout.write(line)
        sys.stdout.flush()
        listening = "listening on" in line
        if listening or time.monotonic() > end:
            break
    if not listening:
        proc.kill()
        rc = proc.wait()
        print(f"[exit {rc}]\n", flush=True)
        return f"listen {case}: exit {rc} before it listened, expected {expected}"
    try:
        sendtest.send_case(case, rcpt, lab_dir=None)
    except Exception as e:  # noqa: BLE001 - the demo goes on with the next step
        proc.kill()
        proc.wait()
        return f"listen {case}: the lab's Postfix could not send ({e})"
    for line in proc.stderr:
        sys.stdout.write(line)
    rc = proc.wait(60)
    print(f"[exit {rc}]\n", flush=True)
    return None if rc == expected else f"listen {case}: exit {rc}, expected {expected}"


def _timeout_args(name: str) -> list[str]:
    return ["--dns-timeout", "2"] if name == "slow" else []


def html_step(lab, out_dir: Path) -> list[str]:
    """Write each broken domain's report as a page and the fleet dashboard of them all; print the paths.
    Returns what went wrong (an exit the scenario does not expect, or output that is not a page)."""
    wrong = []
    out_dir.mkdir(parents=True, exist_ok=True)
    pages = []
    for name in HTML_SHOWN:
        sc = lab.scenario(name)
        path = out_dir / f"{name}.html"
        args = [sc.domain, "--format", "html", *_timeout_args(name)]
        print(f"$ deliverck {' '.join(args)} > {path}", flush=True)
        proc = subprocess.run([sys.executable, "-m", "deliverck", *args], stdout=subprocess.PIPE, text=True)
        if not proc.stdout.lstrip().startswith("<!DOCTYPE html>"):
            wrong.append(f"{sc.domain} --format html: no page written (exit {proc.returncode})")
            continue
        path.write_text(proc.stdout, encoding="utf-8")
        pages.append(path)
        if proc.returncode != EXIT[sc.expect.verdict]:
            wrong.append(f"{sc.domain} --format html: exit {proc.returncode}, expected {EXIT[sc.expect.verdict]}")
    config = out_dir / "deliverck.toml"
    config.write_text("# The demo's broken lab domains, audited as one fleet.\n" + "".join(
        f'\n[[target]]\nname = "{lab.scenario(n).domain}"\n' + ("dns_timeout = 2\n" if n == "slow" else "")
        for n in HTML_SHOWN), encoding="utf-8")
    fleet = out_dir / "fleet.html"
    args = ["audit", "--config", str(config), "--format", "html", "-o", str(fleet)]
    print(f"$ deliverck {' '.join(args)}", flush=True)
    rc = subprocess.run([sys.executable, "-m", "deliverck", *args]).returncode
    if rc not in (0, 1, 3) or not fleet.is_file():
        wrong.append(f"audit --format html: exit {rc}, no dashboard written")
    else:
        pages.append(fleet)
    print("\nThe reports as pages (open them in a browser; they fetch nothing):", flush=True)
    for path in pages:
        print(f"  {path.resolve().as_uri()}", flush=True)
    print(flush=True)
    return wrong


def main() -> int:
    from deliverck.options import CA_FILE_ENV, TRUST_ANCHOR_ENV

    lab = current()
    wrong = []
    if os.environ.get(CA_FILE_ENV) != lab.ca_file or os.environ.get(TRUST_ANCHOR_ENV) != lab.trust_anchor:
        print(f"demo: run it with `deliverck lab run -- python -m deliverck.lab.demo` "
              f"(${CA_FILE_ENV} and ${TRUST_ANCHOR_ENV} must name the lab's CA and root key)", file=sys.stderr)
        return 2
    print(f"# In the lab, ${CA_FILE_ENV} and ${TRUST_ANCHOR_ENV} name its private CA and DNS root key.\n",
          flush=True)
    for name in SHOWN:
        sc = lab.scenario(name)
        args = [sc.domain, *_timeout_args(name)]
        print(f"$ deliverck {' '.join(args)}    # {sc.description}", flush=True)
        rc = subprocess.run([sys.executable, "-m", "deliverck", *args]).returncode
        print(f"[exit {rc}]\n", flush=True)
        if rc != EXIT[sc.expect.verdict]:
            wrong.append(f"{sc.domain}: exit {rc}, expected {EXIT[sc.expect.verdict]}")
    print(f"$ deliverck explain '{BOUNCE}'", flush=True)
    rc = subprocess.run([sys.executable, "-m", "deliverck", "explain", BOUNCE]).returncode
    print(f"[exit {rc}]\n", flush=True)
    if rc != 0:
        wrong.append(f"explain: exit {rc}, expected 0")
    wrong += html_step(lab, Path(os.environ.get(DEMO_DIR_ENV) or "build/demo"))
    if lab.postfix is None:
        print(f"(`deliverck listen` with the lab's Postfix is not shown: {lab.postfix_unavailable})\n", flush=True)
    else:
        from deliverck.lab import sendtest

        try:
            for case, expected in LISTENED:
                problem = listen_step(lab, case, expected)
                if problem:
                    wrong.append(problem)
        finally:
            sendtest.stop()
    print("Try your own: deliverck lab run -- deliverck <scenario>.test   "
          "(scenarios: deliverck lab scenarios)")
    if wrong:
        print("demo: unexpected results: " + "; ".join(wrong), file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
