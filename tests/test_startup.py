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
               "deliverck.report.table", "deliverck.report.json",
               # help through click's formatter, not rich's; no flag coerced through pydantic
               "rich", "markdown_it", "pydantic", "pydantic_core", "typer._adapters", "typer.rich_utils")

# A command judges its flags before it loads the engine; the validators may load what they judge
# with (the NDR catalog for --receivers, deliverck.net.addresses for an address).
ENGINE_DENIED = ("dns", "httpx", "httpx2", "httpcore", "httpcore2", "anyio", "cryptography", "aiosmtplib",
                 "deliverck.checks", "deliverck.context", "deliverck.registry", "deliverck.runner")

COMMANDS = ("check", "spf", "checks", "explain", "bulk", "audit", "lab", "message", "listen", "report")


def _imports(*args: str, env: dict[str, str] | None = None) -> tuple[subprocess.CompletedProcess[str], set[str]]:
    """Run `python -X importtime ARGS`; the process and the names of the modules it imported."""
    env = {**{k: v for k, v in os.environ.items() if not k.startswith("PYTHON")}, **(env or {})}
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


# --- a run's own start-up: typer's flag coercion without pydantic (deliverck/cli/coerce.py) ---

def test_an_audit_run_imports_no_pydantic_and_no_rich():
    """A whole `deliverck DOMAIN` run, every flag parsed and the engine started, against a
    resolver on loopback that never answers (nothing leaves the machine): typer would coerce the
    flags through pydantic (80-150 ms per run) and nothing else needs it."""
    import socket

    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as silent:
        silent.bind(("127.0.0.1", 0))
        resolver = f"127.0.0.1:{silent.getsockname()[1]}"
        r, names = _imports("-m", "deliverck", "example.com", "--resolver", resolver, "--dns-timeout", "0.3",
                            "--deadline", "2", "--cert-warn-days", "30", "--only", "mx,spf")
    assert r.returncode == 3 and "did not answer" in r.stderr.splitlines()[-1], r.stderr[-2000:]
    assert "deliverck.runner" in names        # the audit did start
    assert _denied(names, ("pydantic", "pydantic_core", "typer._adapters", "rich")) == []
    # dnspython's DNS-over-HTTPS stack (deliverck/net/dns.py turns it off): 130-220 ms of every run
    assert _denied(names, ("httpx", "httpx2", "httpcore", "httpcore2", "h2", "anyio")) == []


def test_a_refused_number_still_gets_typers_message():
    r, _ = _imports("-m", "deliverck", "example.com", "--cert-warn-days", "1.5")
    assert r.returncode == 2, r.stderr
    assert r.stderr.splitlines()[-1].startswith("deliverck: error: Invalid value for '--cert-warn-days': ")


CORPUS = {
    "str": ["example.com", "", " a ", "x\udcff", "1", "ÿ.example"],
    "int": ["0", "12", "012", "-3", "999999999999999999", 7, "+1", " 3", "1_0", "1.5", "abc", ""],
    "float": ["0", "5", "0.5", "05.50", "-1", "-0.001", "86400.000001", "123456789012345.123456789012345",
              5.0, 3, "1e3", ".5", "inf", "nan", "1_0.5", " 2", "x"],
    "bool": [True, False, "true", "1", ""],
    "list": [("a", "b"), ["x"], (), ("a", 1)],
}


@pytest.mark.parametrize("kind", sorted(CORPUS))
def test_quick_coercion_gives_what_typer_gives(kind):
    """Every value the quick coercer answers is the value, of the same type, that typer's own
    (pydantic) coercion gives; the rest it leaves to typer."""
    pytest.importorskip("typer._adapters")
    from typer._adapters import try_build_adapter
    from typer.models import OptionInfo

    from deliverck.cli.coerce import _KINDS, _MISS, quick

    annotation = next(a for a, k in _KINDS.items() if k == kind)
    adapter = try_build_adapter(annotation, OptionInfo())
    answered = 0
    for value in CORPUS[kind]:
        got = quick(kind, value)
        if got is _MISS:
            continue
        answered += 1
        want = adapter.validate_python(value)
        assert (got, type(got)) == (want, type(want)), value
        if kind == "list":
            assert [type(x) for x in got] == [type(x) for x in want]
    assert answered >= 2


def test_the_plain_audit_form_imports_no_other_command_and_no_toml_parser(tmp_path):
    """`deliverck DOMAIN` runs `check` alone: the other commands (bulk's worker pool, the lab,
    explain) and, once the bundled data is cached, the TOML parser are never imported (~20-30 ms
    of every audit's start-up).  A resolver on loopback that never answers: nothing leaves."""
    import socket

    env = {"DELIVERCK_CACHE_DIR": str(tmp_path / "cache")}
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as silent:
        silent.bind(("127.0.0.1", 0))
        resolver = f"127.0.0.1:{silent.getsockname()[1]}"
        argv = ("-m", "deliverck", "example.com", "--resolver", resolver, "--dns-timeout", "0.3",
                "--deadline", "2", "--only", "mx,dnsbl")
        for _ in range(2):          # the first run fills the data cache, the second reads it
            r, names = _imports(*argv, env=env)
    assert r.returncode == 3 and "did not answer" in r.stderr.splitlines()[-1], r.stderr[-2000:]
    assert "deliverck.runner" in names and "deliverck.records.dnsbl" in names
    assert _denied(names, ("deliverck.cli.bulk", "deliverck.cli.explain", "deliverck.cli.audit",
                           "deliverck.cli.spf", "deliverck.cli.checks", "deliverck.lab", "deliverck.fleet",
                           "tomllib")) == []


def test_the_check_only_app_has_the_full_apps_check_command():
    """The plain form's app (check alone) parses and helps exactly as the full app's `check`."""
    from deliverck.cli import _click_command

    full, alone = _click_command(), _click_command(only_check=True)
    assert list(alone.commands) == ["check"]
    assert [p.opts for p in alone.commands["check"].params] == [p.opts for p in full.commands["check"].params]
