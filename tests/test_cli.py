"""The command line as users meet it: bad input, exit codes, listings."""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest
from conftest import ROOT, deliverck

from deliverck import __version__
from deliverck.registry import all_checks

# The bad-input table of every command (issue 13, section 7) is tests/test_bad_input.py: it
# runs in the lab, where a case that passes validation by mistake cannot reach the internet.


def test_version():
    r = deliverck("--version")
    assert (r.returncode, r.stdout.strip()) == (0, f"deliverck {__version__}")


@pytest.mark.slow
def test_checks_lists_every_finding_with_severity_and_ndr():
    r = deliverck("checks", "--format", "json")
    assert r.returncode == 0
    data = json.loads(r.stdout)
    ids = {f["id"] for c in data["checks"] for f in c["findings"]}
    for c in all_checks():
        for f in c.spec.findings:
            assert f.id in ids
    ptr_missing = next(f for c in data["checks"] for f in c["findings"] if f["id"] == "ptr.missing")
    assert ptr_missing["severity"] == "error" and ptr_missing["ndr"]
    table = deliverck("checks").stdout
    assert "ptr.missing" in table and "mx.null" in table


def test_no_args_shows_help():
    r = deliverck()
    assert r.returncode in (0, 2) and "check" in (r.stdout + r.stderr)


# --- issue 13: $DELIVERCK_CA_FILE and $DELIVERCK_TRUST_ANCHOR -------------------------------

def _cli(*args: str, **env: str):
    import os
    import subprocess
    import sys

    base = {k: v for k, v in os.environ.items() if k not in ("DELIVERCK_CA_FILE", "DELIVERCK_TRUST_ANCHOR")}
    return subprocess.run([sys.executable, "-m", "deliverck", *args], capture_output=True, text=True,
                          timeout=60, env={**base, "COLUMNS": "200", **env})


def _ca_pem(path):
    """A throwaway self-signed CA certificate (a valid --ca-file)."""
    import datetime as dt

    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import NameOID

    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "test CA")])
    now = dt.datetime.now(dt.UTC)
    cert = (x509.CertificateBuilder().subject_name(name).issuer_name(name).public_key(key.public_key())
            .serial_number(1).not_valid_before(now).not_valid_after(now + dt.timedelta(days=1))
            .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
            .sign(key, hashes.SHA256()))
    path.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    return path


@pytest.mark.parametrize("var,option", [("DELIVERCK_CA_FILE", "--ca-file"),
                                        ("DELIVERCK_TRUST_ANCHOR", "--trust-anchor")])
@pytest.mark.slow
def test_environment_gives_the_default_and_the_option_wins(tmp_path, var, option):
    # A broken variable is bad input that names the variable...
    r = _cli("example.com", **{var: "/nonexistent/file"})
    assert r.returncode == 2 and r.stdout == ""
    assert r.stderr.strip().splitlines() == [r.stderr.strip()]
    assert r.stderr.startswith(f"deliverck: error: {option} (from ${var}) /nonexistent/file")
    # ... and the same for bulk (one validator)
    r = _cli("bulk", "/dev/null", **{var: "/nonexistent/file"})
    assert r.returncode == 2 and f"(from ${var})" in r.stderr
    # An explicit option wins over the variable: the broken variable is never read, and the run
    # goes on to the next check (here: an empty selection of checks, exit 2 with its own line).
    good = _ca_pem(tmp_path / "ca.pem") if option == "--ca-file" else tmp_path / "root.ds"
    if option == "--trust-anchor":
        from deliverck.net.dnssec import ROOT_ANCHORS

        good.write_text("\n".join(ROOT_ANCHORS) + "\n")
    r = _cli("example.com", option, str(good), "--only", "mx", "--skip", "mx", **{var: "/nonexistent/file"})
    assert r.returncode == 2 and "leave no check to run" in r.stderr, r.stderr


@pytest.mark.slow
def test_help_shows_environment_variables_formats_and_per_address():
    check = _cli("check", "--help").stdout
    for word in ("DELIVERCK_CA_FILE", "DELIVERCK_TRUST_ANCHOR", "prometheus", "junit", "markdown", "github"):
        assert word in check, word
    bulk = " ".join(_cli("bulk", "--help").stdout.split())
    assert "DELIVERCK_CA_FILE" in bulk and "DELIVERCK_TRUST_ANCHOR" in bulk
    assert "0: no limit" in bulk
    lab_run = " ".join(_cli("lab", "run", "--help").stdout.split())
    assert "DELIVERCK_CA_FILE" in lab_run and "DELIVERCK_TRUST_ANCHOR" in lab_run
    # issue 13: explain --run takes the same variables, and says so
    explain = " ".join(_cli("explain", "--help").stdout.split())
    assert "env var: DELIVERCK_CA_FILE" in explain and "env var: DELIVERCK_TRUST_ANCHOR" in explain


@pytest.mark.slow
def test_explain_reads_the_variables_only_for_run():
    """The lab sets both variables for every command: explaining a code reads no file, so a
    variable naming a missing file is no error without --run (and one line, exit 2, with it;
    tests/test_bad_input.py)."""
    r = _cli("explain", "5.7.506", DELIVERCK_CA_FILE="/nonexistent/ca.pem", DELIVERCK_TRUST_ANCHOR="/nonexistent/a")
    assert (r.returncode, r.stderr) == (0, ""), r.stderr
    r = _cli("explain", "5.7.506", "--ca-file", "/nonexistent/ca.pem")      # given by hand: checked
    assert r.returncode == 2 and r.stderr.startswith("deliverck: error: --ca-file /nonexistent/ca.pem: no such file")


def test_readme_lists_every_user_document():
    readme = (ROOT / "README.md").read_text()
    listed = set(re.findall(r"^- (docs/[\w.]+):", readme, re.M))
    shipped = {f"docs/{p.name}" for p in (ROOT / "docs").glob("*.md")}
    assert shipped <= listed, f"add to README's Documentation list: {sorted(shipped - listed)}"


# --- options in one place, the CLI as a package (issue 15) ------------------------------------

_OWN = ("deliverck.cli", "deliverck.options", "deliverck.config", "deliverck.fleet.configfile",
        "deliverck.fleet.bulk", "deliverck.fleet.dask", "deliverck.fleet.output")


def _modules() -> dict[str, Path]:
    out = {}
    for p in (ROOT / "deliverck").rglob("*.py"):
        parts = list(p.relative_to(ROOT).with_suffix("").parts)
        out[".".join(parts[:-1] if parts[-1] == "__init__" else parts)] = p
    for p in (ROOT / "checks").glob("*.py"):
        out["deliverck.checks" + ("" if p.stem == "__init__" else "." + p.stem)] = p
    return out


def _import_graph() -> dict[str, set[str]]:
    """Module -> the deliverck modules it imports, at the top or inside functions (ast, no import)."""
    import ast

    mods = _modules()

    def known(name: str) -> str:
        while name and name not in mods:
            name = name.rpartition(".")[0]
        return name

    graph = {}
    for m, p in mods.items():
        pkg = m if p.name == "__init__.py" else m.rpartition(".")[0]
        deps = set()
        for n in ast.walk(ast.parse(p.read_text(encoding="utf-8"))):
            if isinstance(n, ast.Import):
                deps |= {known(a.name) for a in n.names if a.name.startswith("deliverck")}
            elif isinstance(n, ast.ImportFrom):
                base = n.module or ""
                if n.level:
                    up = pkg.split(".")[: len(pkg.split(".")) - n.level + 1]
                    base = ".".join(up + ([base] if base else []))
                if base.startswith("deliverck"):
                    deps |= {known(f"{base}.{a.name}") if f"{base}.{a.name}" in mods else known(base)
                             for a in n.names}
        graph[m] = deps - {m, ""}
    return graph


def _reaches(graph: dict[str, set[str]], start: str) -> set[str]:
    seen, todo = set(), list(graph.get(start, ()))
    while todo:
        m = todo.pop()
        if m not in seen:
            seen.add(m)
            todo += graph.get(m, ())
    return seen


@pytest.mark.slow
def test_no_import_cycle_through_the_cli_or_the_options():
    """Issue 15: validators borrowed from cli.py and commands registered by imports at its bottom
    made one cycle of 9 modules; every module of the command line and of the options is now in
    no cycle at all (function-local imports included)."""
    graph = _import_graph()
    ours = [m for m in graph if m in _OWN or m.startswith("deliverck.cli.") or m.startswith("deliverck.cli_")]
    cycles = {m: sorted(k for k in _reaches(graph, m) if m in _reaches(graph, k)) for m in ours}
    assert {m: c for m, c in cycles.items() if c} == {}


def test_commands_are_registered_in_the_cli_package_only():
    """No command module imports the app (registration by side effect); only cli/__init__ registers."""
    graph = _import_graph()
    importers = {m for m, deps in graph.items() if "deliverck.cli" in deps}
    assert importers <= {"deliverck.__main__"}, importers
    text = (ROOT / "deliverck" / "cli" / "__init__.py").read_text()
    for name in ("check", "spf", "explain", "bulk", "audit", "checks"):
        assert f'app.command("{name}")' in text


def test_no_function_over_80_lines_in_the_command_line():
    import ast

    files = [*(ROOT / "deliverck").glob("cli*.py"), *(ROOT / "deliverck" / "cli").glob("*.py"),
             *(ROOT / "deliverck").glob("options.py")]
    long = [f"{p.name}:{n.name} {n.end_lineno - n.lineno + 1}" for p in files
            for n in ast.walk(ast.parse(p.read_text())) if isinstance(n, (ast.FunctionDef, ast.AsyncFunctionDef))
            and n.end_lineno - n.lineno + 1 > 80]
    assert long == []


@pytest.mark.slow
def test_each_default_is_written_once():
    """A default lives in the Config field; the option table, the flags, the config file and bulk
    lines read it from there: no literal copy of it next to an option's name anywhere else."""
    import ast
    import dataclasses

    from deliverck.config import Config
    from deliverck.options import OPTIONS

    defaults = {f.name: f.default for f in dataclasses.fields(Config)
                if isinstance(f.default, (int, float)) and not isinstance(f.default, bool) and f.default}
    names = {}
    for o in OPTIONS:
        if o.name in defaults:
            for n in (o.flag, o.config_key, o.bulk_key, o.name):
                if n:
                    names[n] = defaults[o.name]
    copies = []
    for m, p in _modules().items():
        if m == "deliverck.config" or m.startswith("deliverck.lab"):
            continue
        for call in ast.walk(ast.parse(p.read_text(encoding="utf-8"))):
            if not isinstance(call, ast.Call):
                continue
            consts = [a.value for a in [*call.args, *(k.value for k in call.keywords)] if isinstance(a, ast.Constant)]
            for s in (c for c in consts if isinstance(c, str) and c in names):
                if any(type(c) in (int, float) and c == names[s] for c in consts):
                    copies.append(f"{p.relative_to(ROOT)}:{call.lineno} {s}")
    assert copies == []
    for command in ("check", "bulk", "explain"):
        params = {p.name: p.default for p in _click(command).params}
        for o in OPTIONS:
            if o.name in params:
                assert params[o.name] == o.flag_default, (command, o.name)


def _click(name: str):
    from deliverck.cli import _click_command

    return _click_command().commands[name]


def test_flag_file_and_bulk_line_build_the_same_config(tmp_path):
    """One rule for every source: the same values as flags, as a config file and as a bulk line
    give the same Config; a bad value is refused by each, naming the option as its source writes it."""
    import io

    from deliverck.errors import UsageError
    from deliverck.fleet import bulk, configfile
    from deliverck.options import build_config

    flags = build_config("example.com", {"outbound_ips": ["192.0.2.1,2001:db8::1"], "helo_name": "mx.example.com",
                                         "sender": "b@Example.COM", "dkim_selectors": ["s1", "S2"],
                                         "dns_timeout": 2.5, "realm": "EXAMPLE.COM"})
    toml = tmp_path / "deliverck.toml"
    toml.write_text('[[target]]\nname = "example.com"\nips = ["192.0.2.1", "2001:db8::1"]\nhelo = "mx.example.com"\n'
                    'sender = "b@Example.COM"\ndkim_selectors = ["s1", "S2"]\ndns_timeout = 2.5\n'
                    'realm = "EXAMPLE.COM"\n')
    from_file = configfile.load(toml).targets[0].config
    base = build_config("invalid.example", {"dns_timeout": 2.5, "realm": "EXAMPLE.COM"})
    line = json.dumps({"target": "example.com", "ips": ["192.0.2.1", "2001:db8::1"], "helo": "mx.example.com",
                       "sender": "b@Example.COM", "dkim_selectors": ["s1", "S2"]})
    from_line = next(bulk.read_items(io.BytesIO(line.encode() + b"\n"), base)).config
    assert flags.kerberos and flags.outbound_ips == ("192.0.2.1", "2001:db8::1")
    assert flags.sender == "b@example.com" and flags.dkim_selectors == ("s1", "s2")
    fields = ("outbound_ips", "helo_name", "sender", "dkim_selectors", "dns_timeout", "realm", "kerberos")
    for f in fields:
        assert getattr(flags, f) == getattr(from_file, f) == getattr(from_line, f), f
    with pytest.raises(UsageError, match=r"^--ip: 'x' is not an IP address"):
        build_config("example.com", {"outbound_ips": ["x"]})
    toml.write_text('[[target]]\nname = "example.com"\n\nips = ["x"]\n')
    with pytest.raises(UsageError, match=r"deliverck.toml:4: target \"example.com\": ips: 'x' is not an IP"):
        configfile.load(toml)
    bad = next(bulk.read_items(io.BytesIO(b'{"target": "example.com", "ips": ["x"]}\n'), base))
    assert bad.config is None and bad.error.startswith('"ips": \'x\' is not an IP address')
