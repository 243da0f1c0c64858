"""`make demo`: real reports for a healthy and some broken lab domains.

Runs inside the lab (`deliverck lab run -- python -m deliverck.lab.demo`).
The lab's certificates come from its own CA and its DNS root is signed with
its own key: `lab run` hands both to every command through
$DELIVERCK_CA_FILE and $DELIVERCK_TRUST_ANCHOR, which deliverck reads as
--ca-file and --trust-anchor (a private CA and a private root, as a user
would pass them); the system trust store is never touched.  So the commands
shown are exactly the ones run, and the same a user types after the demo.
Exits non-zero only if a report does not end the way its scenario expects.
"""

from __future__ import annotations

import os
import subprocess
import sys

from deliverck.lab.manifest import current

SHOWN = ("good", "no-ptr", "expired-cert", "helo-bare", "kerberos-skew", "slow")
# A bounce as an admin receives it, explained (exit 0: explained).
BOUNCE = ("550 5.7.25 [203.0.113.7] The IP address sending this message does not have a PTR record "
          "setup, or the corresponding forward DNS entry does not point to the sending IP.")
EXIT = {"pass": 0, "fail": 1, "incomplete": 3}


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
        args = [sc.domain] + (["--dns-timeout", "2"] if name == "slow" else [])
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
    print("Try your own: deliverck lab run -- deliverck <scenario>.test   "
          "(scenarios: deliverck lab scenarios)")
    if wrong:
        print("demo: unexpected results: " + "; ".join(wrong), file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
