"""The command line as users meet it: bad input, exit codes, listings."""

from __future__ import annotations

import json
import re

import pytest

from conftest import ROOT, deliverck
from deliverck import __version__
from deliverck.registry import all_checks

BAD = [
    ([""], "empty"),
    (["a" * 64 + ".example"], "63"),
    (["exa mple.com"], "valid host name"),
    (["https://example.com"], "URL"),
    (["mail.example.com:25"], "port"),
    (["example.com", "--resolver", "not-an-ip"], "--resolver"),
    (["example.com", "--resolver", "192.0.2.1:70000"], "--resolver"),
    (["example.com", "--format", "xml"], "--format"),
    (["example.com", "--fail-on", "sometimes"], "--fail-on"),
    (["example.com", "--receivers", "nosuchmta"], "--receivers"),
    (["example.com", "--only", "nosuchcheck"], "unknown check"),
    (["example.com", "--ip", "mail.example.com"], "--ip"),
    (["example.com", "--dns-timeout", "0"], "--dns-timeout"),
    (["example.com", "--no-such-option"], "No such option"),
    (["check"], "Missing argument"),
    (["example.com", "--ehlo-name", "bare"], "--ehlo-name"),
    (["example.com", "--ehlo-name", "bad_name.example.com"], "--ehlo-name"),
    (["example.com", "--ports", "25,smtp"], "--ports"),
    (["example.com", "--ports", "70000"], "--ports"),
    (["example.com", "--ca-file", "/nonexistent/ca.pem"], "--ca-file"),
    (["example.com", "--ca-file", "/"], "--ca-file"),
    (["example.com", "--ca-file", "/dev/null"], "--ca-file"),
    (["example.com", "--helo", "two words"], "--helo"),
    (["example.com", "--cert-warn-days", "-1"], "--cert-warn-days"),
    (["example.com", "--smtp-timeout", "0"], "--smtp-timeout"),
    (["example.com", "--sender", "no-at-sign"], "--sender"),
    (["example.com", "--sender", "a@bad_domain"], "--sender"),
    (["example.com", "--dkim-selector", "bad selector"], "--dkim-selector"),
    (["example.com", "--dkim-selector", "_bad"], "--dkim-selector"),
    (["example.com", "--dnsbl", "not a list"], "--dnsbl"),
    (["spf", "example.com", "--ip", "300.1.1.1"], "--ip"),
    (["spf", "example.com"], "Missing option"),
    (["example.com", "--trust-anchor", "/nonexistent/anchor"], "--trust-anchor"),
    (["example.com", "--trust-anchor", "/dev/null"], "--trust-anchor"),
    (["example.com", "--kdc", "dc1.example.com:0"], "--kdc"),
    (["example.com", "--kdc", "dc1.example.com:kerberos"], "--kdc"),
    (["example.com", "--kdc", "not a host"], "--kdc"),
    (["example.com", "--kdc", "[2001:db8::1"], "--kdc"),
    (["example.com", "--kdc", "[2001:db8::1]88"], "--kdc"),
    (["example.com", "--realm", "EXAMPLE COM"], "--realm"),
    (["example.com", "--realm", "user@EXAMPLE.COM"], "--realm"),
    (["example.com", "--principal", "alice@EXAMPLE.COM"], "--principal"),
    (["example.com", "--max-skew", "0"], "--max-skew"),
    (["example.com", "--kdc-timeout", "-1"], "--kdc-timeout"),
    (["192.0.2.1", "--kdc", "192.0.2.2"], "--realm"),
    (["example.com", "--zone-file", "/nonexistent/example.com.zone"], "--zone-file /nonexistent/example.com.zone: cannot be read"),
    (["example.com", "--zone-file", "/"], "--zone-file /: is a directory"),
    (["example.com", "--zone-file", str(ROOT / "tests" / "ci" / "bad-syntax.zone")], "bad-syntax.zone: line 5: "),
    (["example.com", "--zone-file", str(ROOT / "tests" / "ci" / "no-soa.zone")], "no SOA record"),
    (["example.com", "--zone-file", str(ROOT / "tests" / "ci" / "overlay.example.zone") + ":bad..origin"], "--zone-file"),
    (["example.com", "--baseline", "/nonexistent/baseline.json"], "--baseline /nonexistent/baseline.json: cannot be read"),
    (["example.com", "--baseline", "/dev/null"], "not JSON: line 1"),
    (["example.com", "--baseline", str(ROOT / "tests" / "ci" / "not-a-report.json")], "not a deliverck report"),
    # issue 13: an empty set of checks is bad usage, not an internal error
    (["example.com", "--only", "mx", "--skip", "mx"], "--only mx and --skip mx leave no check to run"),
    (["example.com", "--skip", ",".join(c.id for c in all_checks())], "leaves no check to run"),
    # issue 13: values that were accepted silently (or hung: --dns-timeout inf)
    (["example.com", "--only", ""], "--only is empty"),
    (["example.com", "--skip", ""], "--skip is empty"),
    (["example.com", "--only", " , "], "--only is empty"),
    (["example.com", "--ip", ""], "--ip is empty"),
    (["example.com", "--dkim-selector", ""], "--dkim-selector is empty"),
    (["example.com", "--dnsbl", ""], "--dnsbl is empty"),
    (["example.com", "--kdc", ""], "--kdc is empty"),
    (["example.com", "--receivers", ""], "--receivers is empty"),
    (["example.com", "--ca-file", ""], "--ca-file is empty"),
    (["example.com", "--trust-anchor", ""], "--trust-anchor is empty"),
    (["example.com", "--trust-anchor", "/"], "--trust-anchor /: is a directory"),
    (["example.com", "--dns-timeout", "inf"], "--dns-timeout must be a positive number of seconds"),
    (["example.com", "--dns-timeout", "1e400"], "--dns-timeout"),
    (["example.com", "--check-timeout", "inf"], "--check-timeout"),
    (["example.com", "--deadline", "1e300"], "at most 86400"),
    (["example.com", "--max-skew", "inf"], "--max-skew"),
    (["example.com", "--kdc-timeout", "inf"], "--kdc-timeout"),
    (["example.com", "--cert-warn-days", "99999999999"], "--cert-warn-days"),
    (["example.com", "--ports", ",".join(str(p) for p in range(2000, 2011))], "at most 10"),
    (["example.com", "--ports", "0000000000000025"], "--ports"),
    (["example.com", "--kdc", "dc1.example.com:" + "8" * 5000], "--kdc"),
    (["example.com", "--ip", ",".join(f"192.0.2.{i}" for i in range(101))], "at most 100"),
    (["spf", "example.com", "--ip", "192.0.2.1", "--dns-timeout", "inf"], "--dns-timeout"),
]


@pytest.mark.parametrize("args,fragment", BAD)
def test_bad_input_one_line_exit_2(args, fragment):
    r = deliverck(*args)
    assert r.returncode == 2, (r.stdout, r.stderr)
    assert r.stdout == ""
    lines = r.stderr.strip().splitlines()
    assert len(lines) == 1, r.stderr
    assert fragment in lines[0]
    assert lines[0].startswith("deliverck: error:")
    assert "Traceback" not in r.stderr


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


def test_readme_lists_every_user_document():
    readme = (ROOT / "README.md").read_text()
    listed = set(re.findall(r"^- (docs/[\w.]+):", readme, re.M))
    shipped = {f"docs/{p.name}" for p in (ROOT / "docs").glob("*.md")}
    assert shipped <= listed, f"add to README's Documentation list: {sorted(shipped - listed)}"
