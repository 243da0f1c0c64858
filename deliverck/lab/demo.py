"""`make demo`: real reports for a healthy and some broken lab domains.

Runs inside the lab (`deliverck lab run -- python -m deliverck.lab.demo`).
The lab's certificates come from its own CA, given with --ca-file as a
private CA would be, and its DNS root is signed with its own key, given with
--trust-anchor; the system trust store is never touched.
Exits non-zero only if a report does not end the way its scenario expects.
"""

from __future__ import annotations

import subprocess
import sys

from deliverck.lab.manifest import current

SHOWN = ("good", "no-ptr", "expired-cert", "helo-bare", "slow")
EXIT = {"pass": 0, "fail": 1, "incomplete": 3}


def main() -> int:
    lab = current()
    wrong = []
    for name in SHOWN:
        sc = lab.scenario(name)
        args = [sc.domain] + (["--dns-timeout", "2"] if name == "slow" else [])
        print(f"$ deliverck {' '.join(args)} --ca-file LAB-CA --trust-anchor LAB-ROOT    # {sc.description}",
              flush=True)
        args += ["--ca-file", lab.ca_file, "--trust-anchor", lab.trust_anchor]
        rc = subprocess.run([sys.executable, "-m", "deliverck", *args]).returncode
        print(f"[exit {rc}]\n", flush=True)
        if rc != EXIT[sc.expect.verdict]:
            wrong.append(f"{sc.domain}: exit {rc}, expected {EXIT[sc.expect.verdict]}")
    print("Try your own: deliverck lab run -- deliverck <scenario>.test   "
          "(scenarios: deliverck lab scenarios)")
    if wrong:
        print("demo: unexpected results: " + "; ".join(wrong), file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
