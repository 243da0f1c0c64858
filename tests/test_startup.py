"""Start-up (issue 16): `deliverck --version` and `--help` import only what they print.

A user feels the start-up of every command, and `--version` used to load dnspython's resolver
(with its DNS-over-HTTPS stack: httpx, anyio), cryptography and every check: 0.29 s, nine times a
bare interpreter.  These tests read what a real process imports (`python -X importtime`, the
interpreter's own list) rather than timing it: timings belong in `make bench`, where they are
compared with `python -c pass` measured in the same run.
"""

from __future__ import annotations

import os
import subprocess
import sys

import pytest

from deliverck import __version__

# What `deliverck --version` may import beyond a bare `python -c pass`: the package, the command
# line package (the console script's module) and what `-m` and the `typing` names of cli/ need.
VERSION_ALLOWED = {"deliverck", "deliverck.cli", "deliverck.__main__", "runpy", "typing", "_typing",
                   "collections.abc", "errno"}

# Never on the way to printing help: the network stack, the checks and the engine, the parsers of
# records, and the libraries that only a running command needs.
HELP_DENIED = ("dns", "httpx", "httpx2", "httpcore", "httpcore2", "anyio", "cryptography", "aiosmtplib",
               "idna", "publicsuffixlist", "deliverck.checks", "deliverck.net", "deliverck.records",
               "deliverck.ndr", "deliverck.explain", "deliverck.fleet", "deliverck.context",
               "deliverck.registry", "deliverck.runner", "deliverck.verdict", "deliverck.baseline",
               "deliverck.report.table", "deliverck.report.json")

# A command judges its flags before it loads the engine; the validators may load what they judge
# with (the NDR catalog for --receivers, deliverck.net.addresses for an address).
ENGINE_DENIED = ("dns", "httpx", "httpx2", "httpcore", "httpcore2", "anyio", "cryptography", "aiosmtplib",
                 "deliverck.checks", "deliverck.context", "deliverck.registry", "deliverck.runner")

COMMANDS = ("check", "spf", "checks", "explain", "bulk", "audit", "lab")


def _imports(*args: str) -> tuple[subprocess.CompletedProcess[str], set[str]]:
    """Run `python -X importtime ARGS`; the process and the names of the modules it imported."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("PYTHON")}
    r = subprocess.run([sys.executable, "-X", "importtime", *args], capture_output=True, text=True,
                       env=env, timeout=60)
    names = {line.rpartition("|")[2].strip() for line in r.stderr.splitlines()
             if line.startswith("import time:") and "imported package" not in line}
    return r, names


def _denied(names: set[str], denied: tuple[str, ...] = HELP_DENIED) -> list[str]:
    return sorted(n for n in names if any(n == d or n.startswith(d + ".") for d in denied))


def test_version_imports_only_the_short_list():
    _, bare = _imports("-c", "pass")
    r, names = _imports("-m", "deliverck", "--version")
    assert (r.returncode, r.stdout) == (0, f"deliverck {__version__}\n"), r.stderr[-2000:]
    assert sorted(names - bare - VERSION_ALLOWED) == []


def test_version_through_typer_still_answers():
    """Only `--version` alone takes the fast path; with more words typer parses them as before."""
    r, _ = _imports("-m", "deliverck", "--version", "check")
    assert (r.returncode, r.stdout) == (0, f"deliverck {__version__}\n"), r.stderr[-2000:]


@pytest.mark.parametrize("args", [("--help",), *((c, "--help") for c in COMMANDS)],
                         ids=lambda a: " ".join(a))
def test_help_imports_no_check_no_network_library(args):
    r, names = _imports("-m", "deliverck", *args)
    assert r.returncode == 0 and "Usage" in r.stdout, r.stderr[-2000:]
    assert _denied(names) == []


def test_bad_usage_of_check_imports_no_engine():
    """A flag refused by its validator is said before the engine and the checks are loaded."""
    r, names = _imports("-m", "deliverck", "check", "example.com", "--dns-timeout", "-1")
    assert r.returncode == 2 and r.stderr.splitlines()[-1].startswith("deliverck: error: --dns-timeout")
    assert _denied(names, ENGINE_DENIED) == []
