"""The command line as users meet it: bad input, exit codes, listings."""

from __future__ import annotations

import json
import re

import pytest

from conftest import ROOT, deliverck
from deliverck import __version__
from deliverck.registry import all_checks

# The bad-input table of every command (issue 13, section 7) is tests/test_bad_input.py: it
# runs in the lab, where a case that passes validation by mistake cannot reach the internet.


def test_version():
    r = deliverck("--version")
    assert (r.returncode, r.stdout.strip()) == (0, f"deliverck {__version__}")


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
    now = dt.datetime.now(dt.timezone.utc)
    cert = (x509.CertificateBuilder().subject_name(name).issuer_name(name).public_key(key.public_key())
            .serial_number(1).not_valid_before(now).not_valid_after(now + dt.timedelta(days=1))
            .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
            .sign(key, hashes.SHA256()))
    path.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    return path


@pytest.mark.parametrize("var,option", [("DELIVERCK_CA_FILE", "--ca-file"),
                                        ("DELIVERCK_TRUST_ANCHOR", "--trust-anchor")])
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
