"""The command line as users meet it: bad input, exit codes, listings."""

from __future__ import annotations

import json

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
    (["spf", "example.com", "--ip", "192.0.2.1", "--sender", "nobody"], "--sender"),
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
