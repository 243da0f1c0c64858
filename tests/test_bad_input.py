"""Bad input, counted (issue 13, section 7): every command, option, config file, bulk line,
zone file and bounce file that a user can get wrong, through the real CLI.

Each case asserts the documented exit code (2 for bad usage or input; explain's 1 for "not a
bounce" or an unreadable message in a directory, docs/explain.md; bulk's 3 for a bad line,
docs/bulk.md), and for exit 2: exactly one line on stderr starting with "deliverck: error:"
with the given fragment, nothing on stdout; always: no traceback and no internal error, an end
within TIMEOUT (a hang is a failure), and nothing written: no path under the case's directory
(its working directory, where all its output paths point) is created or changed, the output
paths it names do not exist afterwards, and the files it marks as kept are as they were.

SAFETY: a case that unexpectedly passes validation goes on to look things up, and to write
its outputs: every output path of the table is under the case's own directory (a FIFO plays
the device: `-o /dev/null` given to code that renames its output into place replaces the
machine's /dev/null with a file, as the code before issue 13 did).  This module is
marked `lab` and asks for the `lab` fixture, so it runs only inside the lab's network namespace
(no route out): `deliverck lab run -- python -m pytest tests/test_bad_input.py`.

Speed: every case runs once per session (`results`), four at a time, each in a process of
its own forked from a server that has imported the CLI already (tests/cli_forkserver.py),
which makes the whole table take seconds instead of minutes; each parametrized test reads its
own case's result.
"""

from __future__ import annotations

import json
import os
import stat
import subprocess
import sys
from dataclasses import dataclass, field
from pathlib import Path

import pytest
from conftest import ROOT

from deliverck.registry import all_checks

TIMEOUT = 30.0          # seconds per case; validation takes well under 2 s
MAX_LINE = 1000         # characters in an error line: long values are shortened, not echoed whole
CI = ROOT / "tests" / "ci"
MiB = 1024 * 1024


class FIFO:
    """A named pipe nobody writes to (open(2) of it blocks a naive reader forever)."""


class DIR:
    """An empty directory."""


@dataclass(frozen=True)
class Link:
    """A symlink; to /proc/self/mem it is a file that even root cannot read (EIO at offset 0)."""

    target: str


@dataclass(frozen=True)
class Sparse:
    """A file of `size` zero bytes that costs no disk."""

    size: int


UNREADABLE = Link("/proc/self/mem")


@dataclass(frozen=True)
class Case:
    id: str
    args: tuple[str, ...]          # "@D" stands for the case's own directory
    expect: str                    # in the error line (exit 2), else in stdout + stderr
    code: int = 2
    files: dict = field(default_factory=dict)     # name -> bytes | str | FIFO | DIR | Link | Sparse
    stdin: bytes = b""
    env: dict = field(default_factory=dict)
    absent: tuple[str, ...] = ()   # paths (under @D) that must not exist afterwards
    kept: tuple[str, ...] = ()     # files of `files` that must be left untouched


def C(id, *args, expect, code=2, files=None, stdin=b"", env=None, absent=(), kept=()):
    return Case(id, tuple(args), expect, code, files or {}, stdin, env or {}, tuple(absent), tuple(kept))


def toml(text: str) -> dict:
    return {"d.toml": text}


GOOD_TOML = '[[target]]\nname = "good.test"\n'
BULK_LINE = '{"schema":"deliverck.bulk/1","line":1,"input":"x.example","status":"error","report":null,"error":"x"}\n'
BINARY = bytes(range(256)) * 4
GOOD_EML = ("From: Alice <alice@example.com>\nTo: bob@example.net\nSubject: hello\n"
            "Date: Sat, 05 Dec 2026 10:00:00 +0000\nMessage-ID: <1@example.com>\n\nHi Bob.\n")
LATIN1 = "caf\xe9 r\xe9sum\xe9 de la semaine\n".encode("latin-1")
ALL_CHECKS = ",".join(c.id for c in all_checks())
# Issue 14, item 4: a file given by mistake (or through a symlink) may hold a secret; an error
# line names the file, the line and the kind of problem, never more of it than a short prefix.
SECRET = "sk_live_51HxQv9SECRETxTOKEN8f7e6d5c"
ZONE_HEAD = "$ORIGIN example.com.\n$TTL 300\n@ IN SOA ns1 host 1 2 3 4 5\n@ IN NS ns1\nns1 IN A 192.0.2.1\n"
SECRET_FILES = {
    "dotenv": f"API_KEY={SECRET}\n",
    "export": f"# deploy\nexport API_KEY={SECRET}\n",
    "spaced": f"API_KEY {SECRET}\n",
    "quoted": f'API_KEY="{SECRET}"\n',
    "json": json.dumps({"api_key": SECRET}) + "\n",
    "bare": f"{SECRET}\n",
    "pem": f"-----BEGIN PRIVATE KEY-----\n{SECRET}\n-----END PRIVATE KEY-----\n",
    "rdata": f"{ZONE_HEAD}www IN A {SECRET}\n",
    "rdatatype": f"{ZONE_HEAD}www IN {SECRET} x\n",
    "svcb": f"{ZONE_HEAD}www IN HTTPS 1 . {SECRET}=1\n",
    "trailing": f"{ZONE_HEAD}www IN A 192.0.2.1 {SECRET}\n",
    "int": f"{ZONE_HEAD}www IN CERT {SECRET} 1 1 AAAA\n",
    "idna": f"{ZONE_HEAD}www IN MX 10 \u00e9{SECRET}\n",
    "origin": f"$ORIGIN {SECRET}..\n",
    "anchor-like": f". IN DS 20326 8 2 {SECRET}\n",
}

CASES: list[Case] = [
    # --- the default command: targets ------------------------------------------------------
    C("target-empty", "", expect="empty"),
    C("target-label-64", "a" * 64 + ".example", expect="63"),
    C("target-space", "exa mple.com", expect="valid host name"),
    C("target-url", "https://example.com", expect="URL"),
    C("target-port", "mail.example.com:25", expect="port"),
    C("target-numeric-tld", "127.0.0.1.5", expect="neither a valid IP address nor a host name"),
    C("target-open-bracket", "[192.0.2.1", expect="not a valid host name"),
    C("target-bad-literal", "[300.1.1.1]", expect="not a valid address literal"),
    C("target-underscore", "ex_ample.com", expect="letters, digits and inner hyphens"),
    C("target-bad-alabel", "xn--zz.example", expect="invalid A-label"),
    C("target-two-at", "a@b@example.com", expect="more than one '@'"),
    C("target-no-local", "@example.com", expect="not a mail address or domain"),
    C("target-single-label", "localhost", expect="single label"),
    C("target-too-long", ("a" * 60 + ".") * 5 + "example", expect="at most 253"),
    C("target-control", "exam\x01ple.com", expect="control characters"),
    C("target-empty-label", "example..com", expect="empty label"),
    C("target-missing", "check", expect="Missing argument"),
    C("target-two", "example.com", "example.org", expect="unexpected extra argument"),
    C("command-typo", "chek", "example.com", expect="did you mean `deliverck check`"),
    C("command-typo-explain", "expain", "5.7.1", expect="did you mean `deliverck explain`"),
    C("command-help-word", "help", expect="use `deliverck --help`"),
    C("kdc-ip-target-without-realm", "192.0.2.1", "--kdc", "192.0.2.2", expect="--realm"),
    # issue 14: an address no audit would probe passed with exit 0, having probed nothing
    C("target-loopback", "127.0.0.1", expect="127.0.0.1 is a loopback address, not a mail server address"),
    C("target-loopback-v6", "::1", expect="::1 is a loopback address"),
    C("target-loopback-literal", "[IPv6:::1]", expect="is a loopback address"),
    C("target-unspecified", "0.0.0.0", expect="0.0.0.0 is an unspecified address"),
    C("target-unspecified-v6", "::", expect=":: is an unspecified address"),
    C("target-unspecified-probe-private", "0.0.0.0", "--probe-private", expect="not a mail server address"),
    C("target-private", "10.1.2.3", expect="is a private address, not a mail server address on the internet"),
    C("target-link-local", "fe80::25", expect="--probe-private to probe it from here"),
    C("target-multicast", "224.0.0.25", "--probe-private", expect="is a multicast address"),
    C("target-ipv4-mapped", "::ffff:127.0.0.1", expect="give the IPv4 address 127.0.0.1 itself"),
    C("target-loopback-json", "127.0.0.1", "--json", "--only", "smtp", expect="is a loopback address"),
    # --- --help / --version forms ----------------------------------------------------------
    C("version-typo", "--versio", expect="No such option: --versio"),
    C("version-value", "--version=1", expect="does not take a value"),
    C("version-on-command", "check", "--version", expect="No such option: --version"),
    C("help-short", "-h", expect="No such option: -h"),
    C("help-value", "check", "--help=1", expect="does not take a value. (see `deliverck check --help`)"),
    C("help-value-lab", "lab", "run", "--help=1", expect="(see `deliverck lab run --help`)"),
    # --- check options ---------------------------------------------------------------------
    C("resolver-not-ip", "example.com", "--resolver", "not-an-ip", expect="--resolver"),
    C("resolver-port-high", "example.com", "--resolver", "192.0.2.1:70000", expect="--resolver"),
    C("resolver-port-zero", "example.com", "--resolver", "192.0.2.1:0", expect="--resolver"),
    C("resolver-empty", "example.com", "--resolver", "", expect="--resolver"),
    C("resolver-too-many", "example.com", *[a for i in range(101) for a in ("--resolver", f"192.0.2.{i}")],
      expect="at most 100"),
    C("format-unknown", "example.com", "--format", "xml", expect="--format"),
    C("format-empty", "example.com", "-f", "", expect="unknown --format ''"),
    C("json-value", "example.com", "--json=1", expect="does not take a value"),
    C("option-unknown", "example.com", "--no-such-option", expect="No such option"),
    C("fail-on-unknown", "example.com", "--fail-on", "sometimes", expect="--fail-on"),
    C("fail-on-empty", "example.com", "--fail-on", "", expect="--fail-on"),
    C("receivers-unknown", "example.com", "--receivers", "nosuchmta", expect="--receivers"),
    C("receivers-empty", "example.com", "--receivers", "", expect="--receivers is empty"),
    C("receivers-one-unknown", "example.com", "--receivers", "default,nosuch", expect="'nosuch'"),
    C("only-unknown", "example.com", "--only", "nosuchcheck", expect="unknown check"),
    C("only-empty", "example.com", "--only", "", expect="--only is empty"),
    C("only-commas", "example.com", "--only", " , ", expect="--only is empty"),
    C("skip-empty", "example.com", "--skip", "", expect="--skip is empty"),
    C("only-skip-none-left", "example.com", "--only", "mx", "--skip", "mx",
      expect="--only mx and --skip mx leave no check to run"),
    C("skip-all", "example.com", "--skip", ALL_CHECKS, expect="leaves no check to run"),
    C("ip-hostname", "example.com", "--ip", "mail.example.com", expect="--ip"),
    C("ip-empty", "example.com", "--ip", "", expect="--ip is empty"),
    C("ip-zone-index", "example.com", "--ip", "192.0.2.1%eth0", expect="is not an IP address"),
    C("ip-prefix", "example.com", "--ip", "192.0.2.0/24", expect="is not an IP address"),
    C("ip-too-many", "example.com", "--ip", ",".join(f"192.0.2.{i}" for i in range(101)), expect="at most 100"),
    C("dns-timeout-zero", "example.com", "--dns-timeout", "0", expect="--dns-timeout"),
    C("dns-timeout-inf", "example.com", "--dns-timeout", "inf", expect="--dns-timeout must be a positive number"),
    C("dns-timeout-overflow", "example.com", "--dns-timeout", "1e400", expect="--dns-timeout"),
    C("dns-timeout-minus-inf", "example.com", "--dns-timeout", "-inf", expect="--dns-timeout"),
    C("dns-timeout-nan", "example.com", "--dns-timeout", "nan", expect="--dns-timeout"),
    C("dns-timeout-denormal", "example.com", "--dns-timeout", "1e-320", expect="at least 0.001 and at most 86400"),
    C("dns-timeout-word", "example.com", "--dns-timeout", "abc", expect="Invalid value for '--dns-timeout'"),
    C("dns-timeout-empty", "example.com", "--dns-timeout", "", expect="Invalid value for '--dns-timeout'"),
    C("check-timeout-inf", "example.com", "--check-timeout", "inf", expect="--check-timeout"),
    C("check-timeout-negative", "example.com", "--check-timeout", "-5", expect="--check-timeout"),
    C("deadline-huge", "example.com", "--deadline", "1e300", expect="at least 0.001 and at most 86400"),
    C("deadline-zero", "example.com", "--deadline", "0", expect="--deadline"),
    C("smtp-timeout-zero", "example.com", "--smtp-timeout", "0", expect="--smtp-timeout"),
    C("smtp-timeout-nan", "example.com", "--smtp-timeout", "nan", expect="--smtp-timeout"),
    C("ehlo-name-bare", "example.com", "--ehlo-name", "bare", expect="--ehlo-name"),
    C("ehlo-name-underscore", "example.com", "--ehlo-name", "bad_name.example.com", expect="--ehlo-name"),
    C("ehlo-name-empty", "example.com", "--ehlo-name", "", expect="--ehlo-name"),
    C("ehlo-name-bad-literal", "example.com", "--ehlo-name", "[300.1.1.1]", expect="--ehlo-name"),
    C("helo-two-words", "example.com", "--helo", "two words", expect="--helo"),
    C("helo-empty", "example.com", "--helo", "", expect="--helo"),
    C("helo-too-long", "example.com", "--helo", "h" * 300, expect="--helo"),
    C("helo-tab", "example.com", "--helo", "a\tb", expect="--helo"),
    C("cert-warn-days-negative", "example.com", "--cert-warn-days", "-1", expect="--cert-warn-days"),
    C("cert-warn-days-huge", "example.com", "--cert-warn-days", "99999999999", expect="--cert-warn-days"),
    C("cert-warn-days-fraction", "example.com", "--cert-warn-days", "1.5", expect="'--cert-warn-days'"),
    C("ports-name", "example.com", "--ports", "25,smtp", expect="--ports"),
    C("ports-high", "example.com", "--ports", "70000", expect="--ports"),
    C("ports-too-many", "example.com", "--ports", ",".join(str(p) for p in range(2000, 2011)), expect="at most 10"),
    C("ports-leading-zeros", "example.com", "--ports", "0000000000000025", expect="--ports"),
    C("ports-empty", "example.com", "--ports", "", expect="--ports is empty"),
    C("ports-negative", "example.com", "--ports", "-1", expect="--ports"),
    C("sender-no-at", "example.com", "--sender", "no-at-sign", expect="--sender"),
    C("sender-bad-domain", "example.com", "--sender", "a@bad_domain", expect="--sender"),
    C("sender-empty", "example.com", "--sender", "", expect="--sender"),
    C("sender-two-at", "example.com", "--sender", "a@b@c.com", expect="--sender"),
    C("sender-profile-unknown", "example.com", "--sender-profile", "marketing", expect="--sender-profile"),
    C("sender-profile-empty", "example.com", "--sender-profile", "", expect="transactional, bulk"),
    C("dkim-selector-space", "example.com", "--dkim-selector", "bad selector", expect="--dkim-selector"),
    C("dkim-selector-underscore", "example.com", "--dkim-selector", "_bad", expect="--dkim-selector"),
    C("dkim-selector-empty", "example.com", "--dkim-selector", "", expect="--dkim-selector is empty"),
    C("dnsbl-words", "example.com", "--dnsbl", "not a list", expect="--dnsbl"),
    C("dnsbl-empty", "example.com", "--dnsbl", "", expect="--dnsbl is empty"),
    C("kerberos-value", "example.com", "--kerberos=yes", expect="does not take a value"),
    C("probe-private-value", "example.com", "--probe-private=1", expect="does not take a value"),
    C("verbose-value", "example.com", "--verbose=1", expect="does not take a value"),
    C("debug-value", "example.com", "--debug=1", expect="does not take a value"),
    C("realm-space", "example.com", "--realm", "EXAMPLE COM", expect="--realm"),
    C("realm-at", "example.com", "--realm", "user@EXAMPLE.COM", expect="--realm"),
    C("realm-empty", "example.com", "--realm", "", expect="--realm"),
    C("kdc-port-zero", "example.com", "--kdc", "dc1.example.com:0", expect="--kdc"),
    C("kdc-port-name", "example.com", "--kdc", "dc1.example.com:kerberos", expect="--kdc"),
    C("kdc-words", "example.com", "--kdc", "not a host", expect="--kdc"),
    C("kdc-open-bracket", "example.com", "--kdc", "[2001:db8::1", expect="--kdc"),
    C("kdc-no-colon", "example.com", "--kdc", "[2001:db8::1]88", expect="--kdc"),
    C("kdc-empty", "example.com", "--kdc", "", expect="--kdc is empty"),
    C("kdc-huge-port", "example.com", "--kdc", "dc1.example.com:" + "8" * 5000, expect="--kdc"),
    C("kdc-empty-port", "example.com", "--kdc", "[::1]:", expect="the port must be a number"),
    C("principal-realm", "example.com", "--principal", "alice@EXAMPLE.COM", expect="--principal"),
    C("principal-empty", "example.com", "--principal", "", expect="--principal"),
    C("max-skew-zero", "example.com", "--max-skew", "0", expect="--max-skew"),
    C("max-skew-inf", "example.com", "--max-skew", "inf", expect="--max-skew"),
    C("max-skew-nan", "example.com", "--max-skew", "nan", expect="--max-skew"),
    C("kdc-timeout-negative", "example.com", "--kdc-timeout", "-1", expect="--kdc-timeout"),
    C("kdc-timeout-inf", "example.com", "--kdc-timeout", "inf", expect="--kdc-timeout"),
    # --ca-file and $DELIVERCK_CA_FILE
    C("ca-file-missing", "example.com", "--ca-file", "/nonexistent/ca.pem", expect="--ca-file /nonexistent/ca.pem: no such file"),
    C("ca-file-directory", "example.com", "--ca-file", "/", expect="--ca-file /: is a directory"),
    C("ca-file-dev-null", "example.com", "--ca-file", "/dev/null", expect="not a regular file"),
    C("ca-file-empty-name", "example.com", "--ca-file", "", expect="--ca-file is empty"),
    C("ca-file-dev-zero", "example.com", "--ca-file", "/dev/zero", expect="not a regular file"),
    C("ca-file-fifo", "example.com", "--ca-file", "@D/fifo", files={"fifo": FIFO}, expect="not a regular file"),
    C("ca-file-binary", "example.com", "--ca-file", "@D/ca.pem", files={"ca.pem": BINARY}, expect="holds no certificate"),
    C("ca-file-empty-file", "example.com", "--ca-file", "@D/ca.pem", files={"ca.pem": b""}, expect="holds no certificate"),
    C("ca-file-unreadable", "example.com", "--ca-file", "@D/ca.pem", files={"ca.pem": UNREADABLE}, expect="cannot be read"),
    C("ca-file-huge", "example.com", "--ca-file", "@D/ca.pem", files={"ca.pem": Sparse(17 * MiB)}, expect="larger than 16 MiB"),
    C("ca-file-env", "example.com", env={"DELIVERCK_CA_FILE": "/dev/zero"},
      expect="--ca-file (from $DELIVERCK_CA_FILE) /dev/zero: is not a regular file"),
    # --trust-anchor and $DELIVERCK_TRUST_ANCHOR
    C("anchor-missing", "example.com", "--trust-anchor", "/nonexistent/anchor", expect="--trust-anchor"),
    C("anchor-dev-null", "example.com", "--trust-anchor", "/dev/null", expect="--trust-anchor"),
    C("anchor-empty-name", "example.com", "--trust-anchor", "", expect="--trust-anchor is empty"),
    C("anchor-directory", "example.com", "--trust-anchor", "/", expect="--trust-anchor /: is a directory"),
    C("anchor-dev-zero", "example.com", "--trust-anchor", "/dev/zero", expect="not a regular file"),
    C("anchor-fifo", "example.com", "--trust-anchor", "@D/fifo", files={"fifo": FIFO}, expect="not a regular file"),
    C("anchor-binary", "example.com", "--trust-anchor", "@D/a", files={"a": BINARY}, expect="not UTF-8 text"),
    C("anchor-latin1", "example.com", "--trust-anchor", "@D/a", files={"a": LATIN1}, expect="not UTF-8 text"),
    C("anchor-prose", "example.com", "--trust-anchor", "@D/a", files={"a": "the root key\n"}, expect="--trust-anchor"),
    C("anchor-env", "example.com", env={"DELIVERCK_TRUST_ANCHOR": "/nonexistent/anchor"},
      expect="--trust-anchor (from $DELIVERCK_TRUST_ANCHOR) /nonexistent/anchor: no such file"),
    # --zone-file
    C("zone-missing", "example.com", "--zone-file", "/nonexistent/example.com.zone",
      expect="--zone-file /nonexistent/example.com.zone: no such file"),
    C("zone-directory", "example.com", "--zone-file", "/", expect="--zone-file /: is a directory"),
    C("zone-syntax", "example.com", "--zone-file", str(CI / "bad-syntax.zone"), expect="bad-syntax.zone: line 5: "),
    C("zone-no-soa", "example.com", "--zone-file", str(CI / "no-soa.zone"), expect="no SOA record"),
    C("zone-bad-origin", "example.com", "--zone-file", str(CI / "overlay.example.zone") + ":bad..origin",
      expect="--zone-file"),
    C("zone-wrong-origin", "example.com", "--zone-file", str(CI / "overlay.example.zone") + ":example.org",
      expect="no SOA record at its origin example.org"),
    C("zone-empty-name", "example.com", "--zone-file", "", expect="--zone-file ''"),
    C("zone-dev-zero", "example.com", "--zone-file", "/dev/zero:example.com", expect="is a device, not a file"),
    C("zone-fifo", "example.com", "--zone-file", "@D/example.com.zone", files={"example.com.zone": FIFO},
      expect="the file is empty"),
    C("zone-binary", "example.com", "--zone-file", "@D/example.com.zone", files={"example.com.zone": BINARY},
      expect="not UTF-8 text"),
    C("zone-latin1", "example.com", "--zone-file", "@D/example.com.zone", files={"example.com.zone": LATIN1},
      expect="not UTF-8 text"),
    C("zone-empty-file", "example.com", "--zone-file", "@D/z.txt", files={"z.txt": b""}, expect="the file is empty"),
    C("zone-no-origin", "example.com", "--zone-file", "@D/z.txt", files={"z.txt": "@ 300 IN A 192.0.2.1\n"},
      expect="cannot tell the zone's origin"),
    C("zone-oversized", "example.com", "--zone-file", "@D/example.com.zone",
      files={"example.com.zone": Sparse(65 * MiB)}, expect="larger than 64 MiB"),
    C("zone-generate-bomb", "example.com", "--zone-file", "@D/example.com.zone",
      files={"example.com.zone": "$TTL 300\n$GENERATE 1-100000000 h$ A 192.0.2.1\n"}, expect="$GENERATE"),
    C("zone-include", "example.com", "--zone-file", "@D/example.com.zone",
      files={"example.com.zone": "$ORIGIN example.com.\n$INCLUDE /etc/passwd\n"}, expect="line 2:"),
    C("zone-twice", "example.com", "--zone-file", str(CI / "overlay.example.zone"), "--zone-file",
      str(CI / "overlay.example.zone"), expect="is already given by"),
    C("zone-too-many", "example.com", *[a for _ in range(101) for a in ("--zone-file", "x.zone")], expect="at most 100"),
    # issue 14: secrets in the file are never echoed (test_no_secret_is_echoed); each error names the line
    *[C(f"secret-zone-{k}", "example.com", "--zone-file", "@D/f:example.com", files={"f": v},
        expect="no SOA record" if k == "anchor-like" else "line ") for k, v in SECRET_FILES.items()],
    *[C(f"secret-anchor-{k}", "example.com", "--trust-anchor", "@D/f", files={"f": v},
        expect="line " if k != "anchor-like" else "line 1: its DS record does not parse") for k, v in SECRET_FILES.items()],
    *[C(f"secret-ca-file-{k}", "example.com", "--ca-file", "@D/f", files={"f": v}, expect="holds no certificate")
      for k, v in SECRET_FILES.items()],
    *[C(f"secret-baseline-{k}", "example.com", "--baseline", "@D/f", files={"f": v}, expect=": not ")
      for k, v in SECRET_FILES.items()],
    C("anchor-passwd", "example.com", "--trust-anchor", "/etc/passwd",
      expect="--trust-anchor /etc/passwd: line 1 is not a record of the root zone (its owner must be '.'); a trust "
             "anchor file holds DS or DNSKEY records of the root zone"),
    C("anchor-comments-only", "example.com", "--trust-anchor", "@D/a", files={"a": "; nothing\n\n"},
      expect="it holds no record"),
    C("anchor-not-root", "example.com", "--trust-anchor", "@D/a",
      files={"a": "example.com. IN DS 20326 8 2 E06D44B80B8F1D39A95C0B0D7C65D08458E880409BBB683457104237C7F8EC8D\n"},
      expect="line 1 is not a record of the root zone"),
    C("anchor-second-line", "example.com", "--trust-anchor", "@D/a",
      files={"a": ". IN DS 20326 8 2 E06D44B80B8F1D39A95C0B0D7C65D08458E880409BBB683457104237C7F8EC8D\n. IN A 192.0.2.1\n"},
      expect="line 2 is not a DS or DNSKEY record"),
    # --baseline
    C("baseline-missing", "example.com", "--baseline", "/nonexistent/baseline.json",
      expect="--baseline /nonexistent/baseline.json: no such file"),
    C("baseline-dev-null", "example.com", "--baseline", "/dev/null", expect="not JSON: line 1"),
    C("baseline-other-schema", "example.com", "--baseline", str(CI / "not-a-report.json"), expect="not a deliverck report"),
    C("baseline-empty-name", "example.com", "--baseline", "", expect="--baseline is empty"),
    C("baseline-directory", "example.com", "--baseline", "/", expect="is a directory"),
    C("baseline-dev-zero", "example.com", "--baseline", "/dev/zero", expect="is a device, not a file"),
    C("baseline-fifo", "example.com", "--baseline", "@D/b.json", files={"b.json": FIFO}, expect="not JSON"),
    C("baseline-binary", "example.com", "--baseline", "@D/b.json", files={"b.json": BINARY}, expect="not UTF-8"),
    C("baseline-nested", "example.com", "--baseline", "@D/b.json", files={"b.json": "[" * 100000 + "]" * 100000},
      expect="--baseline"),
    C("baseline-malformed", "example.com", "--baseline", "@D/b.json",
      files={"b.json": json.dumps({"schema": "deliverck.report/1", "checks": [{"findings": [{"id": 5}]}]})},
      expect="malformed report"),
    C("baseline-unreadable", "example.com", "--baseline", "@D/b.json", files={"b.json": UNREADABLE},
      expect="cannot be read"),
    # --- spf ------------------------------------------------------------------------------------
    C("spf-ip-bad", "spf", "example.com", "--ip", "300.1.1.1", expect="--ip"),
    C("spf-ip-missing", "spf", "example.com", expect="Missing option"),
    C("spf-domain-missing", "spf", expect="Missing argument"),
    C("spf-domain-empty", "spf", "", "--ip", "192.0.2.1", expect="DOMAIN is empty"),
    C("spf-ip-empty", "spf", "example.com", "--ip", "", expect="--ip"),
    C("spf-ip-zone-index", "spf", "example.com", "--ip", "fe80::1%eth0", expect="zone index"),
    C("spf-ip-prefix", "spf", "example.com", "--ip", "192.0.2.0/24", expect="--ip"),
    C("spf-null-sender-no-helo", "spf", "example.com", "--ip", "192.0.2.1", "--sender", "<>", expect="--helo"),
    C("spf-sender-control", "spf", "example.com", "--ip", "192.0.2.1", "--sender", "a\x01@example.com",
      expect="control character"),
    C("spf-helo-control", "spf", "example.com", "--ip", "192.0.2.1", "--helo", "a\x01b", expect="control character"),
    C("spf-helo-too-long", "spf", "example.com", "--ip", "192.0.2.1", "--helo", "h" * 600, expect="512"),
    C("spf-domain-too-long", "spf", "a." * 300 + "example", "--ip", "192.0.2.1", expect="512"),
    C("spf-dns-timeout-inf", "spf", "example.com", "--ip", "192.0.2.1", "--dns-timeout", "inf", expect="--dns-timeout"),
    C("spf-dns-timeout-nan", "spf", "example.com", "--ip", "192.0.2.1", "--dns-timeout", "nan", expect="--dns-timeout"),
    C("spf-dns-timeout-zero", "spf", "example.com", "--ip", "192.0.2.1", "--dns-timeout", "0", expect="at least 0.001 and at most 86400"),
    C("spf-dns-timeout-huge", "spf", "example.com", "--ip", "192.0.2.1", "--dns-timeout", "100000", expect="--dns-timeout"),
    C("spf-format", "spf", "example.com", "--ip", "192.0.2.1", "--format", "xml", expect="for spf"),
    C("spf-json-value", "spf", "example.com", "--ip", "192.0.2.1", "--json=1", expect="does not take a value"),
    C("spf-resolver-bad", "spf", "example.com", "--ip", "192.0.2.1", "--resolver", "bad", expect="--resolver"),
    C("spf-resolver-empty", "spf", "example.com", "--ip", "192.0.2.1", "--resolver", "", expect="--resolver"),
    C("spf-resolver-too-many", "spf", "example.com", "--ip", "192.0.2.1",
      *[a for i in range(101) for a in ("--resolver", f"192.0.2.{i}")], expect="at most 100"),
    # --- checks ------------------------------------------------------------------------------
    C("checks-format", "checks", "--format", "xml", expect="--format"),
    C("checks-format-empty", "checks", "--format", "", expect="--format"),
    C("checks-extra", "checks", "extra", expect="unexpected extra argument"),
    C("checks-json", "checks", "--json", expect="No such option"),
    # --- report history and HTML output (issue 19) ------------------------------------------------
    C("report-history-no-dir", "report", "history", expect="Missing argument 'DIR'"),
    C("report-history-missing", "report", "history", "@D/nope", expect="no such directory"),
    C("report-history-not-dir", "report", "history", "@D/f.json", files={"f.json": "{}"}, expect="not a directory"),
    C("report-history-empty-name", "report", "history", "", expect="DIR is empty"),
    C("report-history-no-json", "report", "history", "@D", files={"x.txt": "a"}, expect="no *.json file in it"),
    C("report-history-only-bad", "report", "history", "@D", files={"a.json": BINARY, "b.json": '{"schema": "x/1"}'},
      expect="none of its JSON files"),
    C("report-history-unreadable", "report", "history", "@D", files={"a.json": UNREADABLE},
      expect="none of its JSON files"),
    C("report-history-fifo", "report", "history", "@D", files={"a.json": FIFO}, expect="none of its JSON files"),
    C("report-history-format", "report", "history", "@D", "--format", "pdf", files={"a.json": "{}"},
      expect="unknown --format"),
    C("report-history-output-directory", "report", "history", "@D", "-o", "@D", files={"a.json": "{}"},
      expect="is a directory"),
    C("report-history-output-no-dir", "report", "history", "@D", "-o", "@D/nodir/x.html", files={"a.json": "{}"},
      expect="does not exist"),
    C("report-history-output-empty", "report", "history", "@D", "-o", "", files={"a.json": "{}"},
      expect="--output is empty"),
    C("report-history-debug-value", "report", "history", "@D", "--debug=1", files={"a.json": "{}"},
      expect="does not take a value"),
    C("audit-format-html-output-directory", "audit", "-c", "@D/d.toml", "--format", "html", "-o", "@D",
      files=toml(GOOD_TOML), expect="is a directory"),
    C("check-html-bad-target", "exa mple.com", "--format", "html", expect="is not a valid host name"),
    C("message-html-empty-dir", "message", "@D/d", "--format", "html", "--ip", "192.0.2.1",
      files={"d": DIR}, expect="no message"),
    # --- message and listen (issue 18) ----------------------------------------------------------
    C("message-nothing", "message", expect="Missing argument"),
    C("message-ip-word", "message", "@D/m.eml", "--ip", "mail.example.com", files={"m.eml": GOOD_EML},
      expect="is not an IP address"),
    C("message-ip-empty", "message", "@D/m.eml", "--ip", "", files={"m.eml": GOOD_EML}, expect="--ip"),
    C("message-helo-space", "message", "@D/m.eml", "--helo", "two words", files={"m.eml": GOOD_EML}, expect="--helo"),
    C("message-helo-control", "message", "@D/m.eml", "--helo", "mx\x1b.example", files={"m.eml": GOOD_EML},
      expect="--helo"),
    C("message-mail-from-space", "message", "@D/m.eml", "--mail-from", "a b@example.com", files={"m.eml": GOOD_EML},
      expect="is not an envelope sender"),
    C("message-mail-from-no-at", "message", "@D/m.eml", "--mail-from", "bounces", files={"m.eml": GOOD_EML},
      expect="is not an envelope sender"),
    C("message-format-unknown", "message", "@D/m.eml", "--format", "yaml", files={"m.eml": GOOD_EML},
      expect="unknown --format"),
    C("message-format-short", "message", "@D/m.eml", "-f", "xml", files={"m.eml": GOOD_EML}, expect="unknown --format"),
    C("message-json-value", "message", "@D/m.eml", "--json=1", files={"m.eml": GOOD_EML}, expect="does not take a value"),
    C("message-jsonl-value", "message", "@D/m.eml", "--jsonl=yes", files={"m.eml": GOOD_EML},
      expect="does not take a value"),
    C("message-fail-on", "message", "@D/m.eml", "--fail-on", "loud", files={"m.eml": GOOD_EML}, expect="unknown severity"),
    C("message-receivers", "message", "@D/m.eml", "--receivers", "nobody-mail", files={"m.eml": GOOD_EML},
      expect="--receivers"),
    C("message-sender-profile", "message", "@D/m.eml", "--sender-profile", "spam", files={"m.eml": GOOD_EML},
      expect="--sender-profile"),
    C("message-resolver", "message", "@D/m.eml", "--resolver", "not-an-ip", files={"m.eml": GOOD_EML},
      expect="--resolver"),
    C("message-zone-file", "message", "@D/m.eml", "--zone-file", "/nonexistent/z.zone", files={"m.eml": GOOD_EML},
      expect="--zone-file"),
    C("message-dns-timeout", "message", "@D/m.eml", "--dns-timeout", "0", files={"m.eml": GOOD_EML},
      expect="--dns-timeout"),
    C("message-check-timeout", "message", "@D/m.eml", "--check-timeout", "-3", files={"m.eml": GOOD_EML},
      expect="--check-timeout"),
    C("message-deadline", "message", "@D/m.eml", "--deadline", "nan", files={"m.eml": GOOD_EML}, expect="--deadline"),
    C("message-dnsbl", "message", "@D/m.eml", "--dnsbl", "", files={"m.eml": GOOD_EML}, expect="--dnsbl is empty"),
    C("message-verbose-value", "message", "@D/m.eml", "--verbose=1", files={"m.eml": GOOD_EML},
      expect="does not take a value"),
    C("message-debug-value", "message", "@D/m.eml", "--debug=1", files={"m.eml": GOOD_EML},
      expect="does not take a value"),
    C("message-missing-file", "message", "/nonexistent/m.eml", expect="no such file"),
    C("message-empty-file", "message", "@D/m.eml", files={"m.eml": b""}, expect="empty"),
    C("message-binary", "message", "@D/m.eml", files={"m.eml": BINARY}, expect="not a message"),
    C("message-dev-zero", "message", "/dev/zero", expect="is a device, not a file"),
    C("message-fifo", "message", "@D/m.eml", files={"m.eml": FIFO}, expect="empty"),
    C("message-empty-dir", "message", "@D/d", files={"d": DIR}, expect="no message"),
    C("listen-no-address", "listen", expect="Missing option '--address'"),
    C("listen-address-name", "listen", "--address", "localhost", expect="is not an IP address"),
    C("listen-port-zero", "listen", "--address", "127.0.0.1", "--port", "0", expect="--port 0"),
    C("listen-port-huge", "listen", "--address", "127.0.0.1", "--port", "70000", expect="--port 70000"),
    C("listen-rcpt", "listen", "--address", "127.0.0.1", "--rcpt", "nobody", expect="--rcpt"),
    C("listen-timeout", "listen", "--address", "127.0.0.1", "--timeout", "0", expect="--timeout"),
    C("listen-timeout-inf", "listen", "--address", "127.0.0.1", "--timeout", "inf", expect="--timeout"),
    C("listen-count", "listen", "--address", "127.0.0.1", "--count", "0", expect="--count 0"),
    C("listen-reply-5xx", "listen", "--address", "127.0.0.1", "--reply", "550", expect="from 400 to 499"),
    C("listen-cert-alone", "listen", "--address", "127.0.0.1", "--tls-cert", "@D/c.pem", files={"c.pem": "x"},
      expect="go together"),
    C("listen-key-alone", "listen", "--address", "127.0.0.1", "--tls-key", "@D/k.pem", files={"k.pem": "x"},
      expect="go together"),
    C("listen-cert-missing", "listen", "--address", "127.0.0.1", "--tls-cert", "/nonexistent/c.pem", "--tls-key",
      "/nonexistent/k.pem", expect="--tls-cert"),
    C("listen-hostname", "listen", "--address", "127.0.0.1", "--hostname", "two words", expect="--helo"),
    C("listen-format", "listen", "--address", "127.0.0.1", "--format", "yaml", expect="unknown --format"),
    C("listen-json-count", "listen", "--address", "127.0.0.1", "--json", "--count", "2", expect="use --jsonl"),
    C("listen-jsonl-value", "listen", "--address", "127.0.0.1", "--jsonl=1", expect="does not take a value"),
    C("listen-fail-on", "listen", "--address", "127.0.0.1", "--fail-on", "loud", expect="unknown severity"),
    C("listen-receivers", "listen", "--address", "127.0.0.1", "--receivers", "nobody-mail", expect="--receivers"),
    C("listen-sender-profile", "listen", "--address", "127.0.0.1", "--sender-profile", "x", expect="--sender-profile"),
    C("listen-resolver", "listen", "--address", "127.0.0.1", "--resolver", "x", expect="--resolver"),
    C("listen-zone-file", "listen", "--address", "127.0.0.1", "--zone-file", "/nonexistent/z", expect="--zone-file"),
    C("listen-dns-timeout", "listen", "--address", "127.0.0.1", "--dns-timeout", "0", expect="--dns-timeout"),
    C("listen-check-timeout", "listen", "--address", "127.0.0.1", "--check-timeout", "0", expect="--check-timeout"),
    C("listen-deadline", "listen", "--address", "127.0.0.1", "--deadline", "0", expect="--deadline"),
    C("listen-dnsbl", "listen", "--address", "127.0.0.1", "--dnsbl", "", expect="--dnsbl is empty"),
    C("listen-verbose-value", "listen", "--address", "127.0.0.1", "--verbose=1", expect="does not take a value"),
    C("listen-debug-value", "listen", "--address", "127.0.0.1", "--debug=1", expect="does not take a value"),
    # --- explain -----------------------------------------------------------------------------
    C("explain-nothing", "explain", expect="give a status code"),
    C("explain-empty-arg", "explain", "", expect="give a status code"),
    C("explain-json-and-jsonl", "explain", "--json", "--jsonl", "5.7.1", expect="either --json or --jsonl"),
    C("explain-missing-file", "explain", "/nonexistent/x.eml", expect="no such file or directory"),
    C("explain-max-size-inf", "explain", "--max-size", "inf", "5.7.1", expect="--max-size"),
    C("explain-max-size-huge", "explain", "--max-size", "1e308", "5.7.1", expect="at most 1024"),
    C("explain-max-size-nan", "explain", "--max-size", "nan", "5.7.1", expect="--max-size"),
    C("explain-max-size-negative", "explain", "--max-size", "-1", "5.7.1", expect="--max-size"),
    C("explain-max-size-zero", "explain", "--max-size", "0", "5.7.1", expect="--max-size"),
    C("explain-max-size-word", "explain", "--max-size", "abc", "5.7.1", expect="'--max-size'"),
    C("explain-max-size-over-cap", "explain", "--max-size", "2048", "5.7.1", expect="at most 1024"),
    C("explain-workers-zero", "explain", "5.1.1", "--workers", "0", expect="--workers must be 1"),
    C("explain-workers-negative", "explain", "5.1.1", "--workers", "-1", expect="--workers must be 1"),
    C("explain-workers-huge", "explain", "5.1.1", "--workers", "257", expect="--workers must be 1"),
    C("explain-workers-word", "explain", "5.1.1", "--workers", "two", expect="'--workers'"),
    C("explain-workers-decimal", "explain", "5.1.1", "--workers", "1.5", expect="'--workers'"),
    C("explain-workers-empty", "explain", "5.1.1", "--workers", "", expect="'--workers'"),
    C("explain-binary", "explain", "@D/b.eml", files={"b.eml": BINARY}, expect="binary data"),
    C("explain-empty-file", "explain", "@D/b.eml", files={"b.eml": b""}, expect="it is empty"),
    C("explain-dev-zero", "explain", "/dev/zero", expect="is a device, not a file"),
    C("explain-fifo", "explain", "@D/b.eml", files={"b.eml": FIFO}, expect="it is empty"),
    C("explain-unreadable", "explain", "@D/b.eml", files={"b.eml": UNREADABLE}, expect="Input/output error"),
    C("explain-archive", "explain", "@D/b.eml", files={"b.eml": b"PK\x03\x04" + BINARY}, expect="archive"),
    C("explain-two-one-missing", "explain", "@D/a.eml", "@D/b.eml", "@D/nope.eml",
      files={"a.eml": "550 5.1.1 no such user\n", "b.eml": "550 5.1.1 no such user\n"}, expect="nope.eml: no such file"),
    C("explain-file-and-directory", "explain", "@D/a.eml", "@D/sub", files={"a.eml": "550 5.1.1 x\n", "sub": DIR},
      expect="is a directory: give one directory, or files"),
    C("explain-dir-json", "explain", "--json", "@D/sub", files={"sub": DIR}, expect="use --jsonl"),
    C("explain-dir-run", "explain", "--run", "@D/sub", files={"sub": DIR}, expect="--run takes one bounce"),
    C("explain-mbox-json", "explain", "--json", "@D/m.mbox",
      files={"m.mbox": "From a@b Mon Jan  1 00:00:00 2024\nFrom: a@b\nSubject: x\n\n550 5.1.1 x\n\n"
                       "From a@b Mon Jan  1 00:00:00 2024\nFrom: a@b\nSubject: y\n\n550 5.1.1 y\n"},
      expect="holds 2 messages: use --jsonl"),
    C("explain-stdin-binary", "explain", "-", stdin=BINARY, expect="binary data"),
    C("explain-stdin-empty", "explain", "-", stdin=b"", expect="it is empty"),
    C("explain-dns-timeout-inf", "explain", "--dns-timeout", "inf", "--run", "5.7.1", expect="--dns-timeout"),
    C("explain-dns-timeout-without-run", "explain", "--dns-timeout", "0", "5.7.1", expect="--dns-timeout"),
    C("explain-deadline-zero", "explain", "--deadline", "0", "--run", "5.7.1", expect="--deadline"),
    C("explain-resolver-bad", "explain", "--resolver", "bad", "--run", "5.7.1", expect="--resolver"),
    C("explain-ca-file-missing", "explain", "--ca-file", "/nonexistent/ca.pem", "--run", "5.7.1", expect="--ca-file"),
    C("explain-anchor-fifo", "explain", "--trust-anchor", "@D/fifo", "--run", "5.7.1", files={"fifo": FIFO},
      expect="not a regular file"),
    C("explain-anchor-env-run", "explain", "--run", "5.7.1", env={"DELIVERCK_TRUST_ANCHOR": "/nonexistent/anchor"},
      expect="--trust-anchor (from $DELIVERCK_TRUST_ANCHOR)"),
    C("explain-jsonl-value", "explain", "--jsonl=1", "5.7.1", expect="does not take a value"),
    C("explain-run-value", "explain", "--run=1", "5.7.1", expect="does not take a value"),
    C("explain-verbose-value", "explain", "-v=1", "5.7.1", expect="No such option: -="),
    C("explain-debug-value", "explain", "--debug=1", "5.7.1", expect="does not take a value"),
    # explain's documented exit 1 (docs/explain.md): not a bounce, nothing readable in a directory
    C("explain-latin1-not-a-bounce", "explain", "@D/notes.txt", files={"notes.txt": LATIN1}, code=1,
      expect="not a bounce"),
    C("explain-over-max-size", "explain", "--max-size", "0.01", "@D/big.txt",
      files={"big.txt": "550 5.1.1 <jane@example.net>: Recipient address rejected: User unknown\n" + "x" * 20000},
      code=0, expect="only the first 10485 were read"),
    C("explain-dir-of-unreadable", "explain", "@D/in", files={"in": DIR, "in/a.eml": UNREADABLE, "in/b.eml": UNREADABLE},
      code=1, expect="cannot read"),
    C("explain-dir-empty", "explain", "@D/in", files={"in": DIR}, code=1, expect="no file to read in it"),
    C("explain-dir-only-special", "explain", "@D/in", files={"in": DIR, "in/f.eml": FIFO}, code=1,
      expect="no file to read in it"),
    # --- bulk: options and the input file ------------------------------------------------------
    C("bulk-missing-file", "bulk", "/nonexistent/targets", expect="no such file"),
    C("bulk-directory", "bulk", "/", expect="is a directory"),
    C("bulk-file-empty-name", "bulk", "", expect="FILE is empty"),
    C("bulk-no-file", "bulk", expect="Missing argument"),
    C("bulk-dev-zero", "bulk", "/dev/zero", expect="is a device, not a file"),
    C("bulk-fifo", "bulk", "@D/in", files={"in": FIFO}, expect="no target in it"),
    C("bulk-binary", "bulk", "@D/in", files={"in": BINARY}, expect="binary data"),
    C("bulk-nul-first-line", "bulk", "@D/in", files={"in": "good\x00.example\n"}, expect="binary data"),
    C("bulk-gzip", "bulk", "@D/in.gz", files={"in.gz": b"\x1f\x8b\x08\x00" + BINARY}, expect="decompress it first"),
    C("bulk-utf16", "bulk", "@D/in", files={"in": "good.test\n".encode("utf-16")}, expect="UTF-16"),
    C("bulk-empty-file", "bulk", "@D/in", files={"in": b""}, expect="no target in it"),
    C("bulk-comments-only", "bulk", "@D/in", files={"in": "# nothing yet\n\n   \n"}, expect="no target in it"),
    C("bulk-no-line-break", "bulk", "@D/in", files={"in": "a" * 20000}, expect="no line break"),
    C("bulk-unreadable", "bulk", "@D/in", files={"in": UNREADABLE}, expect="cannot be read"),
    C("bulk-stdin-binary", "bulk", "-", stdin=BINARY, expect="standard input: binary data"),
    C("bulk-stdin-empty", "bulk", "-", stdin=b"", expect="standard input: no target in it"),
    C("bulk-shard-high", "bulk", "-", "--shard", "3/2", expect="--shard"),
    C("bulk-shard-huge", "bulk", "/dev/null", "--shard", "1/" + "9" * 5000, expect="--shard"),
    C("bulk-shard-word", "bulk", "/dev/null", "--shard", "a/b", expect="--shard"),
    C("bulk-concurrency-zero", "bulk", "-", "--concurrency", "0", expect="--concurrency"),
    C("bulk-concurrency-huge", "bulk", "/dev/null", "--concurrency", "1000000", expect="--concurrency"),
    C("bulk-concurrency-word", "bulk", "/dev/null", "--concurrency", "abc", expect="'--concurrency'"),
    C("bulk-workers-zero", "bulk", "/dev/null", "--workers", "0", expect="--workers must be 1"),
    C("bulk-workers-negative", "bulk", "/dev/null", "--workers", "-1", expect="--workers must be 1"),
    C("bulk-workers-word", "bulk", "/dev/null", "--workers", "abc", expect="'--workers'"),
    C("bulk-workers-huge", "bulk", "/dev/null", "--workers", "100000", expect="--workers must be 1"),
    C("bulk-workers-enormous", "bulk", "/dev/null", "--workers", "9" * 40, expect="--workers"),
    C("bulk-workers-with-dask", "bulk", "/dev/null", "--workers", "2", "--dask", "local:2",
      expect="--workers is for one machine"),
    C("bulk-sender-profile-unknown", "bulk", "/dev/null", "--sender-profile", "marketing", expect="--sender-profile"),
    C("bulk-per-address-negative", "bulk", "/dev/null", "--per-address", "-1", expect="--per-address"),
    # issue 14, items 6-8: --no-retry, an output that is the input, corrupt audit state
    C("bulk-no-retry-value", "bulk", "/dev/null", "--no-retry=1", expect="does not take a value"),
    C("bulk-no-retry-without-output", "bulk", "@D/in", "--no-retry", files={"in": "good.test\n"},
      expect="--no-retry needs --output"),
    C("bulk-output-is-input", "bulk", "@D/out.jsonl", "-o", "@D/out.jsonl", files={"out.jsonl": BULK_LINE},
      expect="is the input", kept=("out.jsonl",)),
    C("audit-target-loopback", "audit", "-c", "@D/d.toml", files=toml('[[target]]\nname = "127.0.0.1"\n'),
      expect="not a mail server address"),
    C("audit-state-finding-short", "audit", "-c", "@D/d.toml", "--state", "@D/s.json",
      files={**toml(GOOD_TOML), "s.json": json.dumps({"schema": "deliverck.state/1", "targets": {"good.test":
             {"verdict": "fail", "findings": [["ptr.missing", "192.0.2.1"]]}}})},
      expect='"findings" item 1 must be', kept=("s.json",)),
    C("audit-state-last-success-inf", "audit", "-c", "@D/d.toml", "--state", "@D/s.json",
      files={**toml(GOOD_TOML), "s.json": '{"schema": "deliverck.state/1", "targets": {"good.test": '
             '{"verdict": "pass", "findings": [], "last_success": 1e400}}}'},
      expect='"last_success" must be a Unix time', kept=("s.json",)),
    C("audit-state-missing-verdict", "audit", "-c", "@D/d.toml", "--state", "@D/s.json",
      files={**toml(GOOD_TOML), "s.json": '{"schema": "deliverck.state/1", "targets": {"good.test": {"findings": []}}}'},
      expect='has no "verdict"', kept=("s.json",)),
    C("bulk-only-unknown", "bulk", "-", "--only", "nosuchcheck", expect="unknown check"),
    C("bulk-only-empty", "bulk", "/dev/null", "--only", "", expect="--only is empty"),
    C("bulk-skip-empty", "bulk", "/dev/null", "--skip", "", expect="--skip is empty"),
    C("bulk-none-left", "bulk", "/dev/null", "--only", "mx", "--skip", "mx", expect="leave no check to run"),
    C("bulk-receivers-empty", "bulk", "/dev/null", "--receivers", "", expect="--receivers is empty"),
    C("bulk-fail-on", "bulk", "/dev/null", "--fail-on", "x", expect="--fail-on"),
    C("bulk-dns-timeout-inf", "bulk", "/dev/null", "--dns-timeout", "inf", expect="--dns-timeout"),
    C("bulk-check-timeout", "bulk", "/dev/null", "--check-timeout", "-1", expect="--check-timeout"),
    C("bulk-deadline", "bulk", "/dev/null", "--deadline", "0", expect="--deadline"),
    C("bulk-smtp-timeout", "bulk", "/dev/null", "--smtp-timeout", "nan", expect="--smtp-timeout"),
    C("bulk-ehlo-name", "bulk", "/dev/null", "--ehlo-name", "bare", expect="--ehlo-name"),
    C("bulk-resolver", "bulk", "/dev/null", "--resolver", "bad", expect="--resolver"),
    C("bulk-dnsbl-empty", "bulk", "/dev/null", "--dnsbl", "", expect="--dnsbl is empty"),
    C("bulk-ca-file", "bulk", "/dev/null", "--ca-file", "/dev/zero", expect="not a regular file"),
    C("bulk-trust-anchor", "bulk", "/dev/null", "--trust-anchor", "@D/fifo", files={"fifo": FIFO},
      expect="not a regular file"),
    C("bulk-probe-private-value", "bulk", "/dev/null", "--probe-private=1", expect="does not take a value"),
    C("bulk-progress-value", "bulk", "/dev/null", "--progress=1", expect="does not take a value"),
    C("bulk-dask-word", "bulk", "-", "--dask", "local:x", expect="--dask"),
    C("bulk-dask-scheme", "bulk", "/dev/null", "--dask", "bogus://x", expect="--dask 'bogus://x': unknown address scheme"),
    C("bulk-dask-no-host", "bulk", "/dev/null", "--dask", "tcp://", expect="--dask"),
    C("bulk-dask-many-workers", "bulk", "/dev/null", "--dask", "local:100000", expect="--dask"),
    # issue 14: a plain scheduler runs what it is sent (pickle); tls:// needs Dask's TLS settings
    C("bulk-dask-plain-remote", "bulk", "/dev/null", "--dask", "tcp://192.0.2.10:8786",
      expect="a plain tcp:// scheduler is neither authenticated nor encrypted"),
    C("bulk-dask-plain-no-scheme", "bulk", "/dev/null", "--dask", "192.0.2.10:8786", expect="--dask-insecure"),
    C("bulk-dask-plain-name", "bulk", "/dev/null", "--dask", "tcp://scheduler.example:8786", expect="--dask-insecure"),
    C("bulk-dask-plain-ws", "bulk", "/dev/null", "--dask", "ws://[2001:db8::7]:8786", expect="a plain ws:// scheduler"),
    C("bulk-dask-tls-no-settings", "bulk", "/dev/null", "--dask", "tls://192.0.2.10:8786",
      expect="Dask's TLS settings name no distributed.comm.tls.ca-file"),
    C("bulk-dask-tls-missing-files", "bulk", "/dev/null", "--dask", "tls://192.0.2.10:8786",
      env={"DASK_DISTRIBUTED__COMM__TLS__CA_FILE": "/nonexistent/ca.pem",
           "DASK_DISTRIBUTED__COMM__TLS__CLIENT__CERT": "/nonexistent/client.pem"},
      expect="distributed.comm.tls.ca-file /nonexistent/ca.pem: no such file"),
    C("bulk-dask-tls-ca-dev-zero", "bulk", "/dev/null", "--dask", "wss://192.0.2.10:8786",
      env={"DASK_DISTRIBUTED__COMM__TLS__CA_FILE": "/dev/zero", "DASK_DISTRIBUTED__COMM__TLS__CLIENT__CERT": "/dev/zero"},
      expect="not a regular file"),
    C("bulk-dask-insecure-local", "bulk", "/dev/null", "--dask", "local:2", "--dask-insecure",
      expect="a local cluster always uses TLS"),
    C("bulk-dask-insecure-tls", "bulk", "/dev/null", "--dask", "tls://192.0.2.10:8786", "--dask-insecure",
      expect="not tls://"),
    C("bulk-dask-insecure-alone", "bulk", "/dev/null", "--dask-insecure", expect="--dask-insecure goes with --dask"),
    C("bulk-dask-insecure-value", "bulk", "/dev/null", "--dask", "tcp://192.0.2.10:8786", "--dask-insecure=1",
      expect="does not take a value"),
    # bulk --output: checked before anything is read, written or looked up
    C("bulk-output-directory", "bulk", "@D/in", "-o", "@D", files={"in": "good.test\n"}, expect="is a directory"),
    C("bulk-output-no-dir", "bulk", "@D/in", "-o", "@D/nodir/out.jsonl", files={"in": "good.test\n"},
      expect="does not exist", absent=("nodir",)),
    C("bulk-output-fifo", "bulk", "@D/in", "-o", "@D/out", files={"in": "good.test\n", "out": FIFO},
      expect="not a regular file"),
    C("bulk-output-empty-name", "bulk", "@D/in", "-o", "", files={"in": "good.test\n"}, expect="--output is empty"),
    C("bulk-output-not-bulk", "bulk", "@D/in", "-o", "@D/targets.txt",
      files={"in": "good.test\n", "targets.txt": "example.com\nexample.org"}, expect="not a deliverck bulk output",
      kept=("targets.txt",)),
    C("bulk-output-kept-on-bad-option", "bulk", "@D/in", "-o", "@D/out.jsonl", "--only", "",
      files={"in": "good.test\n", "out.jsonl": BULK_LINE + '{"schema":"deliverck.bulk/1","torn'},
      expect="--only is empty", kept=("out.jsonl",)),
    C("bulk-output-kept-on-empty-input", "bulk", "@D/in", "-o", "@D/out.jsonl",
      files={"in": "# nothing\n", "out.jsonl": BULK_LINE + '{"schema":"deliverck.bulk/1","torn'},
      expect="no target in it", kept=("out.jsonl",)),
    C("bulk-output-not-created", "bulk", "@D/in", "-o", "@D/new.jsonl", files={"in": b"\x00" * 100},
      expect="binary data", absent=("new.jsonl",)),
    # --- bulk lines: an error line each, the run goes on, exit 3 (docs/bulk.md) ---------------
    *[C(f"bulk-line-{name}", "bulk", "@D/in", files={"in": line}, code=3, expect=frag, absent=()) for name, line, frag in [
        ("empty-label", "bad..example\n", "empty label"),
        ("loopback", "127.0.0.1\n", "not a mail server address"),
        ("loopback-json", '{"target": "::1"}\n', "not a mail server address"),
        ("url", "https://example.com/\n", "looks like a URL"),
        ("target-not-string", '{"target": 5}\n', 'needs a \\"target\\" string'),
        ("not-json", "{not json\n", "not valid JSON"),
        ("unknown-key", '{"target": "a.example", "only": ["mx"]}\n', "unknown keys"),
        ("ips-not-list", '{"target": "a.example", "ips": "192.0.2.1"}\n', "must be a list"),
        ("ips-bad", '{"target": "a.example", "ips": ["not-an-ip"]}\n', "is not an IP address"),
        ("ips-too-many", json.dumps({"target": "a.example", "ips": [f"192.0.2.{i}" for i in range(101)]}) + "\n",
         "at most 100"),
        ("helo-empty", '{"target": "a.example", "helo": ""}\n', "--helo"),
        ("helo-not-string", '{"target": "a.example", "helo": 5}\n', "must be a string"),
        ("sender-bad", '{"target": "a.example", "sender": "nobody"}\n', "--sender"),
        ("sender-profile-bad", '{"target": "a.example", "sender_profile": "newsletter"}\n', '\\"sender_profile\\"'),
        ("sender-profile-not-string", '{"target": "a.example", "sender_profile": 5}\n', "must be a string"),
        ("selector-bad", '{"target": "a.example", "dkim_selectors": ["_bad"]}\n', "_bad"),
        ("too-long", "a" * 5000 + "\n", "line longer than 4096 bytes"),
        ("nul", "# a comment line to push the next one past the first 8 KB\n" * 200 + "good\x00.example\n",
         "control characters"),
        ("json-nul", '{"target": "a\\u0000.example"}\n', "control characters"),
        ("non-utf8", b"caf\xe9.example\n", "not UTF-8 text"),
        ("single-label", "localhost\n", "single label"),
    ]],
    # --- audit: the command's options ------------------------------------------------------------
    C("audit-no-config", "audit", expect="Missing option '--config'"),
    C("audit-config-empty-name", "audit", "--config", "", expect="--config is empty"),
    C("audit-config-missing", "audit", "--config", "/nonexistent/deliverck.toml", expect="no such file"),
    C("audit-config-directory", "audit", "--config", "/", expect="is a directory"),
    C("audit-config-dev-zero", "audit", "--config", "/dev/zero", expect="is a device, not a file"),
    C("audit-config-fifo", "audit", "--config", "@D/d.toml", files={"d.toml": FIFO}, expect="no [[target]] table"),
    C("audit-config-binary", "audit", "--config", "@D/d.toml", files={"d.toml": BINARY}, expect="binary data"),
    C("audit-config-latin1", "audit", "--config", "@D/d.toml", files={"d.toml": LATIN1}, expect="not UTF-8 text"),
    C("audit-config-unreadable", "audit", "--config", "@D/d.toml", files={"d.toml": UNREADABLE}, expect="cannot be read"),
    C("audit-config-oversized", "audit", "--config", "@D/d.toml", files={"d.toml": Sparse(5 * MiB)},
      expect="larger than 4 MiB"),
    C("audit-format", "audit", "-c", "@D/d.toml", "--format", "xml", files=toml(GOOD_TOML), expect="--format"),
    C("audit-json-value", "audit", "-c", "@D/d.toml", "--json=1", files=toml(GOOD_TOML), expect="does not take a value"),
    C("audit-concurrency", "audit", "-c", "@D/d.toml", "--concurrency", "0", files=toml(GOOD_TOML), expect="--concurrency"),
    C("audit-changes-only", "audit", "-c", "@D/d.toml", "--changes-only", files=toml(GOOD_TOML), expect="needs --state"),
    C("audit-check-config-value", "audit", "-c", "@D/d.toml", "--check-config=1", files=toml(GOOD_TOML),
      expect="does not take a value"),
    C("audit-verbose-value", "audit", "-c", "@D/d.toml", "-v=1", files=toml(GOOD_TOML), expect="No such option: -="),
    C("audit-debug-value", "audit", "-c", "@D/d.toml", "--debug=1", files=toml(GOOD_TOML), expect="does not take a value"),
    C("audit-output-directory", "audit", "-c", "@D/d.toml", "-o", "@D", files=toml(GOOD_TOML), expect="is a directory"),
    C("audit-output-no-dir", "audit", "-c", "@D/d.toml", "-o", "@D/nodir/out.json", files=toml(GOOD_TOML),
      expect="does not exist", absent=("nodir",)),
    C("audit-output-fifo", "audit", "-c", "@D/d.toml", "-o", "@D/out", files={**toml(GOOD_TOML), "out": FIFO},
      expect="not a regular file"),
    C("audit-output-empty-name", "audit", "-c", "@D/d.toml", "-o", "", files=toml(GOOD_TOML), expect="--output is empty"),
    C("audit-output-kept-on-bad-config", "audit", "-c", "@D/d.toml", "-o", "@D/out.prom", "--state", "@D/state.json",
      files={"d.toml": "[[target]]\nname = 5\n", "out.prom": "# the last good run\n"}, expect="name must be a string",
      kept=("out.prom",), absent=("state.json",)),
    C("audit-state-directory", "audit", "-c", "@D/d.toml", "--state", "@D", files=toml(GOOD_TOML), expect="is a directory"),
    C("audit-state-empty-name", "audit", "-c", "@D/d.toml", "--state", "", files=toml(GOOD_TOML), expect="--state is empty"),
    C("audit-state-huge", "audit", "-c", "@D/d.toml", "--state", "@D/s.json",
      files={**toml(GOOD_TOML), "s.json": Sparse(257 * MiB)}, expect="larger than 256 MiB"),
    C("audit-state-fifo", "audit", "-c", "@D/d.toml", "--state", "@D/s", files={**toml(GOOD_TOML), "s": FIFO},
      expect="not a regular file"),
    C("audit-state-other-json", "audit", "-c", "@D/d.toml", "--state", "@D/s.json", "-o", "@D/out.json",
      files={**toml(GOOD_TOML), "s.json": '{"schema": "x"}'}, expect="not a deliverck.state/1 document",
      kept=("s.json",), absent=("out.json",)),
    C("audit-state-binary", "audit", "-c", "@D/d.toml", "--state", "@D/s.json",
      files={**toml(GOOD_TOML), "s.json": BINARY}, expect="--state", kept=("s.json",)),
    C("audit-state-bad-entry", "audit", "-c", "@D/d.toml", "--state", "@D/s.json",
      files={**toml(GOOD_TOML), "s.json": json.dumps({"schema": "deliverck.state/1",
                                                       "targets": {"good.test": {"findings": 5}}})},
      expect="not a deliverck.state/1 document", kept=("s.json",)),
    C("audit-state-is-output", "audit", "-c", "@D/d.toml", "--state", "@D/x.json", "-o", "@D/x.json",
      files=toml(GOOD_TOML), expect="the same file", absent=("x.json",)),
    # --- audit: the config file ----------------------------------------------------------------
    *[C(f"config-{name}", "audit", "-c", "@D/d.toml", files=toml(text), expect=frag) for name, text, frag in [
        ("syntax", '[[target]]\nname = "good.test\n', "d.toml:2: "),
        ("unknown-key", '[[target]]\nname = "good.test"\ndkim_selector = ["s1"]\n', 'unknown key "dkim_selector"'),
        ("unknown-top-level", '[[target]]\nname = "good.test"\n[severity]\n"ptr.generic" = "warning"\n',
         'unknown top-level key "severity"'),
        ("defaults-not-table", 'defaults = 5\n[[target]]\nname = "good.test"\n', "defaults must be a table"),
        ("target-not-array", 'target = "good.test"\n', "target must be an array of tables"),
        ("no-target", '[defaults]\ndns_timeout = 2\n', "no [[target]] table"),
        ("wrong-type", '[[target]]\nname = "good.test"\ndeadline = "30"\n', "deadline must be a number, not a string"),
        ("bool-as-number", '[[target]]\nname = "good.test"\ndeadline = true\n', "deadline must be a number"),
        ("list-as-string", '[[target]]\nname = "good.test"\nips = "192.0.2.1"\n', "ips must be a list"),
        ("bad-ip", '[[target]]\nname = "good.test"\nips = ["mail.good.test"]\n', "is not an IP address"),
        ("name-missing", '[[target]]\nips = ["192.0.2.1"]\n', 'missing required key "name"'),
        ("name-not-string", '[[target]]\nname = 5\n', "name must be a string"),
        ("name-empty", '[[target]]\nname = ""\n', "the target is empty"),
        ("name-url", '[[target]]\nname = "https://good.test/"\n', "looks like a URL"),
        ("duplicate-target", '[[target]]\nname = "good.test"\n[[target]]\nname = "GOOD.test."\n',
         "the same target as line 2"),
        ("unknown-check", '[[target]]\nname = "good.test"\nonly = ["mx", "ptrr"]\n', "unknown check 'ptrr'"),
        ("only-empty", '[[target]]\nname = "good.test"\nonly = []\n', "only is empty"),
        ("none-left", '[defaults]\nonly = ["mx"]\n[[target]]\nname = "good.test"\nskip = ["mx"]\n',
         "leave no check to run"),
        ("dnsbl-empty", '[[target]]\nname = "good.test"\ndnsbl = []\n', "dnsbl is empty"),
        ("receivers-unknown", '[[target]]\nname = "good.test"\nreceivers = "nosuch"\n', "receivers"),
        ("resolvers-bad", '[[target]]\nname = "good.test"\nresolvers = ["x"]\n', "is not an IP address"),
        ("fail-on-bad", '[[target]]\nname = "good.test"\nfail_on = "x"\n', "fail_on"),
        ("helo-empty", '[[target]]\nname = "good.test"\nhelo = ""\n', "helo"),
        ("sender-bad", '[[target]]\nname = "good.test"\nsender = "x"\n', "sender"),
        ("sender-profile-bad", '[[target]]\nname = "good.test"\nsender_profile = "bulky"\n',
         "sender_profile 'bulky': give one of transactional, bulk"),
        ("timeout-inf", '[[target]]\nname = "good.test"\ndns_timeout = inf\n', "dns_timeout must be a positive number"),
        ("timeout-nan", '[[target]]\nname = "good.test"\nkdc_timeout = nan\n', "kdc_timeout"),
        ("timeout-huge", '[[target]]\nname = "good.test"\nsmtp_timeout = 9223372036854775807\n', "at least 0.001 and at most 86400"),
        ("cert-days-fraction", '[[target]]\nname = "good.test"\ncert_warn_days = 1.5\n', "cert_warn_days must be an integer"),
        ("cert-days-huge", '[[target]]\nname = "good.test"\ncert_warn_days = 9223372036854775807\n', "cert_warn_days"),
        ("port-zero", '[[target]]\nname = "good.test"\nports = [0]\n', "ports"),
        ("too-many-ports", '[[target]]\nname = "good.test"\nports = [' + ", ".join(str(p) for p in range(2000, 2011))
         + "]\n", "at most 10"),
        ("bool-as-string", '[[target]]\nname = "good.test"\nprobe_private = "yes"\n', "probe_private must be true or false"),
        ("kdcs-bad", '[[target]]\nname = "good.test"\nkdcs = ["bad host"]\n', "kdcs"),
        ("ca-file-missing", '[[target]]\nname = "good.test"\nca_file = "missing.pem"\n', "missing.pem: no such file"),
        ("anchor-dev-zero", '[[target]]\nname = "good.test"\ntrust_anchor = "/dev/zero"\n', "not a regular file"),
        ("severity-unknown-id", '[[target]]\nname = "good.test"\nseverity = { "ptr.nope" = "info" }\n',
         'unknown finding id "ptr.nope"'),
        ("severity-bad-name", '[[target]]\nname = "good.test"\n[target.severity]\n"ptr.generic" = "warn"\n',
         "unknown severity 'warn'"),
        ("severity-not-table", '[[target]]\nname = "good.test"\nseverity = "info"\n', "severity must be a table"),
        ("ignore-not-array", '[[target]]\nname = "good.test"\nignore = "ptr.missing"\n', "ignore must be an array"),
        ("ignore-bad-date", '[[target]]\nname = "good.test"\n[[target.ignore]]\nfinding = "ptr.missing"\n'
         'reason = "x"\nexpires = 2026-13-01\n', "expires = 2026-10-01"),
        ("ignore-date-string", '[[target]]\nname = "good.test"\n[[target.ignore]]\nfinding = "ptr.missing"\n'
         'reason = "x"\nexpires = "2026-10-01"\n', "expires must be a TOML date"),
        ("ignore-datetime", '[[target]]\nname = "good.test"\n[[target.ignore]]\nfinding = "ptr.missing"\n'
         'reason = "x"\nexpires = 2026-10-01T10:00:00\n', "not a date-time"),
        ("ignore-no-reason", '[[target]]\nname = "good.test"\n[[target.ignore]]\nfinding = "ptr.missing"\n'
         'expires = 2099-01-01\n', 'missing required key "reason"'),
        ("ignore-blank-reason", '[[target]]\nname = "good.test"\n[[target.ignore]]\nfinding = "ptr.missing"\n'
         'reason = "  "\nexpires = 2099-01-01\n', "reason is empty"),
        ("ignore-unknown-finding", '[[target]]\nname = "good.test"\n[[target.ignore]]\nfinding = "ptr.generik"\n'
         'reason = "x"\nexpires = 2099-01-01\n', 'unknown finding id "ptr.generik"'),
        ("ignore-unknown-key", '[[target]]\nname = "good.test"\n[[target.ignore]]\nfinding = "ptr.missing"\n'
         'reason = "x"\nexpires = 2099-01-01\nuntil = 2099-01-01\n', 'ignore: unknown key "until"'),
        ("ignore-subject-number", '[[target]]\nname = "good.test"\n[[target.ignore]]\nfinding = "ptr.missing"\n'
         'reason = "x"\nexpires = 2099-01-01\nsubject = 5\n', "subject must be a string"),
        ("defaults-ignore-no-reason", '[[defaults.ignore]]\nfinding = "ptr.generic"\nexpires = 2099-01-01\n'
         '[[target]]\nname = "good.test"\n', '[defaults]: ignore: missing required key "reason"'),
    ]],
    # An expired ignore is not an error (docs/config.md): --check-config says it, exit 0.
    C("config-expired-ignore-check", "audit", "-c", "@D/d.toml", "--check-config",
      files=toml('[[target]]\nname = "good.test"\n[[target.ignore]]\nfinding = "ptr.missing"\nreason = "ticket 7"\n'
                 'expires = 2001-01-01\n'), code=0, expect="expired on 2001-01-01"),
    # --- lab ----------------------------------------------------------------------------------
    C("lab-run-no-command", "lab", "run", expect="give the command to run after --"),
    C("lab-run-latency-negative", "lab", "run", "--dns-latency", "-1", "--", "true", expect="--dns-latency"),
    C("lab-run-latency-word", "lab", "run", "--dns-latency", "abc", "--", "true",
      expect="(see `deliverck lab run --help`)"),
    C("lab-run-zone-dir-missing", "lab", "run", "--zone-dir", "/nonexistent", "--", "true", expect="no such directory"),
    C("lab-run-zone-dir-file", "lab", "run", "--zone-dir", "@D/f", "--", "true", files={"f": "x"},
      expect="is a file; give a directory"),
    C("lab-run-zone-dir-empty-dir", "lab", "run", "--zone-dir", "@D/z", "--", "true", files={"z": DIR},
      expect="holds no <origin>.zone file"),
    C("lab-run-zone-dir-fifo", "lab", "run", "--zone-dir", "@D/z", "--", "true", files={"z": DIR, "z/x.test.zone": FIFO},
      expect="x.test.zone is not a regular file"),
    C("lab-run-zone-dir-subdir", "lab", "run", "--zone-dir", "@D/z", "--", "true", files={"z": DIR, "z/x.test.zone": DIR},
      expect="x.test.zone is a directory"),
    C("lab-run-zone-dir-empty-name", "lab", "run", "--zone-dir", "", "--", "true", expect="--zone-dir is empty"),
    C("lab-run-quiet-value", "lab", "run", "--quiet=1", "--", "true", expect="does not take a value"),
    C("secret-lab-zone-dir", "lab", "run", "--zone-dir", "@D/z", "--", "true",
      files={"z": DIR, "z/x.test.zone": f"$TTL 300\n@ IN SOA ns1 host 1 2 3 4 5\n@ IN NS ns1\nwww IN {SECRET} x\n"},
      expect="x.test.zone:4: unknown rdatatype 'sk_l…'"),
    C("lab-up-latency-huge", "lab", "up", "--dns-latency", "99999999", expect="--dns-latency"),
    C("lab-up-zone-dir-missing", "lab", "up", "--zone-dir", "/nonexistent", expect="no such directory"),
    C("lab-up-quiet-value", "lab", "up", "-q=1", expect="unexpected extra argument(s) (-=1)"),
    C("lab-exec-no-command", "lab", "exec", expect="give the command to run after --"),
    C("lab-down-extra", "lab", "down", "extra", expect="(see `deliverck lab down --help`)"),
    C("lab-scenarios-extra", "lab", "scenarios", "extra", expect="(see `deliverck lab scenarios --help`)"),
    C("lab-scenarios-option", "lab", "scenarios", "--format", "json", expect="No such option"),
    C("lab-bounces-missing", "lab", "bounces", expect="Missing argument"),
    C("lab-bounces-empty", "lab", "bounces", "", expect="OUTDIR is empty"),
    C("lab-bounces-file", "lab", "bounces", "@D/f", files={"f": "keep me\n"}, expect="is a file, not a directory",
      kept=("f",)),
    C("lab-bounces-under-file", "lab", "bounces", "@D/f/sub", files={"f": "keep me\n"}, expect="cannot be made",
      kept=("f",)),
    C("lab-unknown", "lab", "nosuch", expect="No such command 'nosuch'"),
]


# --- running every case once, four at a time --------------------------------------------------

@dataclass
class Result:
    returncode: int | None          # None: did not end within TIMEOUT
    stdout: str
    stderr: str
    seconds: float
    absent_found: list[str]
    kept_changed: list[str]
    dir: str                        # the case's directory (@D)


def _make(d: Path, files: dict) -> dict[str, tuple[bytes, int]]:
    before = {}
    for name, spec in sorted(files.items()):
        p = d / name
        p.parent.mkdir(parents=True, exist_ok=True)
        if spec is FIFO:
            os.mkfifo(p)
        elif spec is DIR:
            p.mkdir(exist_ok=True)
        elif isinstance(spec, Link):
            p.symlink_to(spec.target)
        elif isinstance(spec, Sparse):
            with open(p, "wb") as f:
                f.truncate(spec.size)
        else:
            p.write_bytes(spec.encode() if isinstance(spec, str) else spec)
        if isinstance(spec, (bytes, str)):
            before[name] = (p.read_bytes(), p.stat().st_mtime_ns)
    return before


def _args(case: Case, d: Path) -> list[str]:
    return [a.replace("@D", str(d)) for a in case.args]


def _env(case: Case) -> dict[str, str]:
    return {**os.environ, "COLUMNS": "160", **case.env}


def _snapshot(d: Path) -> dict[str, tuple[int, int, int]]:
    """Every path under the case's directory: (mode, size, mtime), symlinks not followed."""
    out = {}
    for root, dirs, files in os.walk(d):
        for name in dirs + files:
            st = os.lstat(os.path.join(root, name))
            out[os.path.relpath(os.path.join(root, name), d)] = (st.st_mode, st.st_size, st.st_mtime_ns)
    return out


def _check(case: Case, d: Path, before: dict, tree: dict) -> tuple[list[str], list[str]]:
    absent = [n for n in case.absent if (d / n).exists()]
    changed = [n for n in case.kept if (d / n).read_bytes() != before[n][0] or (d / n).stat().st_mtime_ns != before[n][1]]
    now = _snapshot(d)
    # Nothing written anywhere in the case's directory (the working directory of the command, and
    # where every output path of the table points): no new path, no changed one.
    changed += sorted(n for n in set(now) | set(tree) if now.get(n) != tree.get(n))
    return absent, changed


@pytest.fixture(scope="session")
def results(lab, tmp_path_factory) -> dict[str, Result]:
    """Every case once, four at a time, each a process of its own forked from a server that has
    imported the CLI (tests/cli_forkserver.py; `python -m deliverck` would spend most of the
    time importing, see test_the_fork_server_runs_what_python_m_deliverck_runs)."""
    assert stat.S_ISCHR(os.stat("/dev/null").st_mode), "/dev/null is not a device: restore it (mknod -m 666 /dev/null c 1 3)"
    base = tmp_path_factory.mktemp("bad-input")
    io_dir = base / ".io"
    io_dir.mkdir()
    dirs, before, trees, requests = {}, {}, {}, []
    for c in CASES:
        d = dirs[c.id] = base / c.id
        d.mkdir()
        before[c.id] = _make(d, c.files)
        trees[c.id] = _snapshot(d)
        (io_dir / f"{c.id}.in").write_bytes(c.stdin)
        requests.append({"id": c.id, "args": _args(c, d), "env": _env(c), "cwd": str(d),
                         "stdin": str(io_dir / f"{c.id}.in"), "stdout": str(io_dir / f"{c.id}.out"),
                         "stderr": str(io_dir / f"{c.id}.err")})
    server = subprocess.run([sys.executable, str(ROOT / "tests" / "cli_forkserver.py"), "--timeout", str(TIMEOUT),
                             "--jobs", "4"], input="".join(json.dumps(r) + "\n" for r in requests),
                            capture_output=True, text=True, timeout=TIMEOUT * len(CASES) / 4 + 120)
    assert server.returncode == 0, server.stderr
    assert stat.S_ISCHR(os.stat("/dev/null").st_mode), "a case replaced /dev/null (restore it: mknod -m 666 /dev/null c 1 3)"
    replies = {r["id"]: r for r in map(json.loads, server.stdout.splitlines())}
    out = {}
    for c in CASES:
        absent, changed = _check(c, dirs[c.id], before[c.id], trees[c.id])
        text = [(io_dir / f"{c.id}.{ext}").read_bytes().decode("utf-8", "replace") for ext in ("out", "err")]
        out[c.id] = Result(replies[c.id]["code"], *text, replies[c.id]["seconds"], absent, changed, str(dirs[c.id]))
    if os.environ.get("DELIVERCK_BAD_INPUT_DUMP"):      # for counting by hand: every result as JSON
        Path(os.environ["DELIVERCK_BAD_INPUT_DUMP"]).write_text(json.dumps(
            {k: {"code": v.returncode, "seconds": round(v.seconds, 3), "stdout": v.stdout[:300],
                 "stderr": v.stderr[-600:], "absent": v.absent_found, "kept": v.kept_changed}
             for k, v in out.items()}, indent=1))
    return out


@pytest.mark.parametrize("case", CASES, ids=[c.id for c in CASES])
def test_bad_input(results, case):
    r = results[case.id]
    where = f"{case.args!r}\nstdout: {r.stdout[:2000]}\nstderr: {r.stderr[:2000]}"
    assert r.returncode is not None, f"no end within {TIMEOUT:.0f} s (a hang): {where}"
    assert "Traceback" not in r.stderr and "internal error" not in r.stderr, where
    assert r.returncode == case.code, where
    if case.code == 2:
        lines = r.stderr.splitlines()
        assert r.stdout == "", where
        assert len(lines) == 1 and r.stderr.endswith("\n"), where
        assert lines[0].startswith("deliverck: error: "), where
        assert case.expect in lines[0], where
        assert len(lines[0]) <= MAX_LINE, f"a line a person can read, not the value echoed whole: {where}"
    else:
        assert case.expect in r.stdout + r.stderr, where
    assert not r.absent_found, f"written although bad input: {r.absent_found}; {where}"
    assert not r.kept_changed, f"changed although bad input: {r.kept_changed}; {where}"


def _echoes_secret(text: str) -> bool:
    """Any 8 characters of SECRET in a row, in any case (IDNA lower-cases what it quotes)."""
    low = text.lower()
    return any(SECRET[i:i + 8].lower() in low for i in range(len(SECRET) - 7))


@pytest.mark.parametrize("case", [c for c in CASES if c.id.startswith("secret-")], ids=lambda c: c.id)
def test_no_secret_is_echoed(results, case):
    r = results[case.id]
    assert not _echoes_secret(r.stdout + r.stderr), r.stderr


# --- the table covers every command and every option ------------------------------------------

def _commands():
    """{("check",): {"--dns-timeout", ...}, ("lab", "run"): {...}, ...} from the CLI itself."""
    import typer

    from deliverck.cli import app

    out: dict[tuple[str, ...], set[str]] = {}

    def walk(cmd, path):
        subs = getattr(cmd, "commands", None)
        if subs:
            for name, sub in subs.items():
                walk(sub, path + (name,))
            return
        opts = set()
        for p in cmd.params:
            if getattr(p, "param_type_name", "") == "option" and "--help" not in p.opts:
                opts.add(max(p.opts, key=len))
        out[path] = opts

    walk(typer.main.get_command(app), ())
    return out


def _command_of(args: tuple[str, ...], commands) -> tuple[str, ...]:
    if args and args[0] in ("lab", "report") and len(args) > 1 and (args[0], args[1]) in commands:
        return (args[0], args[1])
    if args and (args[0],) in commands:
        return (args[0],)
    return ("check",)


def test_the_table_covers_every_command_and_option():
    commands = _commands()
    short = {"-v": "--verbose", "-f": "--format", "-o": "--output", "-c": "--config", "-q": "--quiet"}
    seen: dict[tuple[str, ...], set[str]] = {k: set() for k in commands}
    for c in CASES:
        cmd = _command_of(c.args, commands)
        for a in c.args:
            a = a.split("=", 1)[0]
            seen[cmd].add(short.get(a, a))
    for cmd, opts in commands.items():
        assert any(_command_of(c.args, commands) == cmd for c in CASES), f"no case for `deliverck {' '.join(cmd)}`"
        missing = sorted(opts - seen[cmd])
        assert not missing, f"`deliverck {' '.join(cmd)}`: no bad-input case for {missing}"


def test_the_table_counts_at_least_150_distinct_cases():
    ids = [c.id for c in CASES]
    assert len(set(ids)) == len(ids), "case ids must be unique"
    distinct = {(c.args, tuple(sorted((k, repr(v)) for k, v in c.files.items())), c.stdin,
                 tuple(sorted(c.env.items()))) for c in CASES}
    assert len(distinct) == len(CASES) >= 150
    kinds = {"config": 0, "bulk-line": 0, "zone": 0, "explain": 0}
    for c in CASES:
        for k in kinds:
            kinds[k] += c.id.startswith(k)
    assert min(kinds.values()) >= 10, kinds


# A few cases again as users run them, `python -m deliverck` in a fresh process: the fork
# server must give the same exit code, output and error line (paths aside: each run has its
# own directory).
SAME_AS_FORKED = ("target-url", "ca-file-env", "explain-stdin-binary", "explain-fifo", "bulk-line-nul",
                  "audit-config-dev-zero", "help-value-lab", "explain-dir-of-unreadable")


@pytest.mark.parametrize("case_id", SAME_AS_FORKED)
def test_the_fork_server_runs_what_python_m_deliverck_runs(results, tmp_path, case_id):
    case = next(c for c in CASES if c.id == case_id)
    _make(tmp_path, case.files)
    r = subprocess.run([sys.executable, "-m", "deliverck", *_args(case, tmp_path)], input=case.stdin,
                       capture_output=True, env=_env(case), cwd=tmp_path, timeout=TIMEOUT)
    forked = results[case_id]
    fresh = [x.decode("utf-8", "replace").replace(str(tmp_path), "@D") for x in (r.stdout, r.stderr)]
    assert r.returncode == forked.returncode
    assert fresh == [x.replace(forked.dir, "@D") for x in (forked.stdout, forked.stderr)]
