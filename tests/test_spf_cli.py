"""The `deliverck spf` command: spf_command() in the lab against the spf-*
scenarios; the real CLI against a DNS server on 127.0.0.1 (tests/test_spf_suite.py's)
with what SMTP receivers are sent (odd HELO names, empty local parts, address
literals...), resolver failures (exit 3) and bad usage (exit 2)."""

from __future__ import annotations

import json
import subprocess
import sys

import dns.rcode
import pytest
from conftest import deliverck
from test_spf_suite import SuiteDnsServer, SuiteZone

from deliverck.cli.spf_eval import SPF_SCHEMA, spf_command, validate_args
from deliverck.errors import UsageError
from deliverck.net.memdns import MemoryDns


def _mx_ip(lab, name):
    return lab.scenario(name).reverse[0].address


@pytest.mark.parametrize("scenario,result,code", [
    ("spf-pass", "pass", 0), ("spf-fail", "fail", 1), ("spf-softfail", "softfail", 1), ("spf-none", "none", 1),
    ("spf-multiple", "permerror", 1), ("spf-deep", "pass", 0), ("spf-over-limit", "permerror", 1),
    ("spf-void", "permerror", 1), ("spf-loop", "permerror", 1), ("spf-macro", "pass", 0),
    ("spf-plus-all", "pass", 0),
])
async def test_spf_command_in_the_lab(lab, scenario, result, code):
    text, rc = await spf_command(f"{scenario}.test", _mx_ip(lab, scenario), timeout=2)
    assert rc == code, text
    assert text.startswith(f"SPF {result.upper()}:"), text
    doc, rc2 = await spf_command(f"{scenario}.test", _mx_ip(lab, scenario), timeout=2, json=True)
    d = json.loads(doc)
    assert d["schema"] == SPF_SCHEMA and d["result"] == result and rc2 == code
    if scenario == "spf-loop":      # the same words as the spf check's spf.loop
        assert d["cause"] == "loop" and "the SPF record tree of spf-loop.test loops: " in d["reason"]


async def test_deep_tree_uses_ten_lookups_and_shows_the_tree(lab):
    text, rc = await spf_command("spf-deep.test", _mx_ip(lab, "spf-deep"), timeout=2)
    assert rc == 0 and "lookups: 10/10" in text
    assert "include c.spf-deep.test => fail" in text


async def test_exp_explanation(lab):
    ip = _mx_ip(lab, "spf-exp")
    text, rc = await spf_command("spf-exp.test", ip, timeout=2)
    assert rc == 1
    assert f"explanation: {ip} is not one of the designated mail servers of spf-exp.test" in text


async def test_helo_identity(lab):
    ip = _mx_ip(lab, "spf-pass")
    text, rc = await spf_command("spf-pass.test", ip, helo="mx.spf-pass.test", timeout=2)
    assert rc == 0 and "HELO identity: SPF NONE" in text


def test_typer_command_exit_codes(lab):
    from deliverck import cli

    names = {c.name or (c.callback.__name__ if c.callback else "") for c in cli.app.registered_commands}
    names |= {g.name for g in getattr(cli.app, "registered_groups", []) if g.name}
    if "spf" not in names and "spf_command" not in names:
        pytest.skip("the `deliverck spf` command is not wired into deliverck/cli.py yet")
    run = lambda *a: subprocess.run([sys.executable, "-m", "deliverck", "spf", *a],  # noqa: E731
                                    capture_output=True, text=True, timeout=60)
    assert run("spf-pass.test", "--ip", _mx_ip(lab, "spf-pass")).returncode == 0
    assert run("spf-fail.test", "--ip", _mx_ip(lab, "spf-fail")).returncode == 1
    for bad in (["spf-pass.test", "--ip", "999.1.1.1"], ["spf-pass.test", "--ip", "192.0.2.1", "--sender", "<>"],
                ["not a\ndomain", "--ip", "192.0.2.1"]):
        r = run(*bad)
        assert r.returncode == 2, (bad, r.stdout, r.stderr)
        assert len(r.stderr.strip().splitlines()) == 1


@pytest.mark.parametrize("args", [
    ("example.com", "1.2.3"), ("example.com", "example.org"), ("example.com", "fe80::1%eth0"),
    ("", "192.0.2.1"), ("exa\nmple.com", "192.0.2.1"), ("example.com", "192.0.2.1", "<>"),
    ("example.com", "192.0.2.1", "a@b\x00.example"), ("example.com", "192.0.2.1", "", "x" * 600),
])
def test_what_no_receiver_sees_is_a_usage_error(args):
    with pytest.raises(UsageError):
        validate_args(*args)


@pytest.mark.parametrize("args", [
    ("exa mple.com", "192.0.2.1"), ("OEMCOMPUTER", "192.0.2.1"), ("[192.0.2.1]", "192.0.2.1"),
    ("x" * 64 + ".example.com", "192.0.2.1"), ("example.com", "192.0.2.1", "nobody"),
    ("example.com", "192.0.2.1", "@example.com"), ("example.com", "192.0.2.1", '"john smith"@example.com'),
    ("example.com", "192.0.2.1", "", "bad helo!"), ("example.com", "192.0.2.1", "", "[192.0.2.1]"),
    ("example.com", "[IPv6:2001:db8::1]"),
])
def test_what_receivers_see_is_evaluated(args):
    validate_args(*args)      # no UsageError: RFC 7208 gives each a result


def test_validate_keeps_what_the_client_sent():
    # The domain is compared case-insensitively anyway; the sender, the HELO name and the
    # address keep their case: %{l}, %{h} and %{i} of an IPv6 address show it (RFC 7208 7.3).
    assert validate_args("Example.COM.", "[2001:DB8::1]", "Bob@Example.com", "MX.example.com") == (
        "example.com", "2001:DB8::1", "Bob@Example.com", "MX.example.com")
    assert validate_args("example.com", "192.0.2.1", "<>", "mx.example.com")[2] == "postmaster@mx.example.com"


async def test_output_is_escaped():
    z = MemoryDns({"example.com": [("TXT", "v=spf1 -all exp=why.example.com")],
                   "why.example.com": [("TXT", "bad \x1b[2J text")],
                   "x.example.com": [("TXT", "v=spf1 a:\x1b[31m.example.com -all")]})
    text, rc = await spf_command("example.com", "192.0.2.1", dns=z)
    assert rc == 1 and "\x1b" not in text and "\\x1b" in text


# ---- the real CLI against a DNS server on loopback ---------------------------------------------

ZONE = {
    "example.net": [{"TXT": "v=spf1 exists:%{l}._spf.%{o} a:%{H}.bar -all exp=exp.example.net"}],
    "exp.example.net": [{"TXT": "%{l} from %{h} is not allowed"}],
    '"john smith"._spf.example.net': [{"A": "127.0.0.2"}],
    "mail.example.net": [{"A": "192.0.2.1"}, {"TXT": "v=spf1 a -all"}],
    "example.org": [{"TXT": "v=spf1 include:loop.example.org -all"}],
    "loop.example.org": [{"TXT": "v=spf1 include:example.org -all"}],
    "slow.example.com": ["TIMEOUT"],
}


@pytest.fixture(scope="module")
def port():
    with SuiteDnsServer([SuiteZone(ZONE)]) as server:
        yield server.ports[0]


def spf(port, *args):
    r = deliverck("spf", "--resolver", f"127.0.0.1:{port}", "--dns-timeout", "2", "--json", *args, timeout=60)
    assert r.stderr == "", r.stderr
    doc = json.loads(r.stdout)
    assert r.returncode == doc["exit_code"] == (0 if doc["result"] == "pass" else 1)
    return doc


def test_single_label_domain_is_none(port):
    doc = spf(port, "--ip", "192.0.2.9", "--", "OEMCOMPUTER")
    assert (doc["result"], doc["cause"]) == ("none", "invalid_domain")
    assert "single label" in doc["reason"] and "RFC 7208 4.3" in doc["reason"]


def test_long_label_is_none(port):
    doc = spf(port, "--ip", "192.0.2.9", "--", "x" * 64 + ".example.net")
    assert doc["result"] == "none" and "64 octets" in doc["reason"]


def test_empty_local_part_and_address_literal_helo(port):
    doc = spf(port, "--ip", "192.0.2.9", "--helo", "[192.0.2.1]", "--sender", "@example.net", "--", "example.net")
    assert doc["result"] == "fail"
    assert doc["explanation"] == "postmaster from [192.0.2.1] is not allowed"   # %{l} = postmaster (4.3)
    assert any("no local part" in n for n in doc["notes"])
    h = doc["helo_result"]
    assert h["result"] == "none" and "address literal" in h["reason"] and "RFC 7208 2.3" in h["reason"]


def test_quoted_local_part_with_a_space(port):
    doc = spf(port, "--ip", "192.0.2.9", "--sender", '"john smith"@example.net', "--", "example.net")
    assert doc["result"] == "pass" and doc["mechanism"] == "exists:%{l}._spf.%{o}"


def test_macro_expanding_into_an_invalid_name(port):
    doc = spf(port, "--ip", "192.0.2.9", "--helo", "%" * 22, "--sender", "a@example.net", "--", "example.net")
    assert doc["result"] == "fail"
    lk = doc["trace"]["terms"][1]["lookups"][0]
    assert lk["outcome"] == "invalid" and "66 octets" in lk["detail"]
    assert doc["helo_result"]["result"] == "none"


def test_null_sender_is_postmaster_at_the_helo_name(port):
    doc = spf(port, "--ip", "192.0.2.1", "--helo", "mail.example.net", "--sender", "<>", "--", "mail.example.net")
    assert doc["result"] == "pass" and doc["sender"] == "postmaster@mail.example.net"
    assert any("null" in n and "RFC 7208 2.4" in n for n in doc["notes"])


def test_ipv6_address_literal_as_ip(port):
    assert spf(port, "--ip", "[IPv6:2001:DB8::1]", "--", "example.net")["ip"] == "2001:db8::1"


async def test_loop_reads_as_the_check_says_it(port):
    from deliverck.checks import spf as spf_check
    from deliverck.config import Config
    from deliverck.context import Context
    from deliverck.target import parse_target

    doc = spf(port, "--ip", "192.0.2.9", "--", "example.org")
    assert doc["result"] == "permerror" and doc["cause"] == "loop"
    mem = MemoryDns({"example.org": [("TXT", "v=spf1 include:loop.example.org -all"), ("MX", "10 mx.example.org.")],
                     "loop.example.org": [("TXT", "v=spf1 include:example.org -all")],
                     "mx.example.org": [("A", "192.0.2.9")]})
    ctx = Context(Config(target=parse_target("example.org")), mem)  # type: ignore[arg-type]
    try:
        findings = {f.id: f for f in await spf_check.run(ctx)}
    finally:
        await ctx.close()
    assert findings["spf.loop"].summary in doc["reason"]
    assert "loops back to example.org" in findings["spf.permerror"].summary


@pytest.mark.slow
def test_zone_that_does_not_answer_is_temperror(port):
    doc = spf(port, "--ip", "192.0.2.9", "--", "slow.example.com")
    assert doc["result"] == "temperror" and doc["cause"] == "dns_failure"
    assert doc["failed_lookup"]["name"] == "slow.example.com" and "timeout" in doc["reason"]
    # the resolver answered the control questions: the zone's fault, which receivers meet too
    assert any("answers for the root and for com" in n and "the fault is in that zone" in n for n in doc["notes"])


class _Every(SuiteZone):
    """A resolver that answers every question with one rcode."""

    def __init__(self, rcode):
        super().__init__({})
        self.rcode = rcode

    def lookup(self, key, rdtype, seen=()):
        return self.rcode, []


@pytest.mark.parametrize("zone,said", [
    (_Every(dns.rcode.SERVFAIL), "SERVFAIL"), (_Every(dns.rcode.REFUSED), "REFUSED"), (SuiteZone({}, apexes=False), "NXDOMAIN"),
])
@pytest.mark.slow
def test_a_broken_resolver_is_could_not_check(zone, said):
    with SuiteDnsServer([zone]) as server:
        p = server.ports[0]
        r = deliverck("spf", "--resolver", f"127.0.0.1:{p}", "--dns-timeout", "2", "--ip", "192.0.2.9",
                      "--json", "--", "example.net", timeout=60)
    assert r.returncode == 3 and r.stdout == "", r.stdout
    lines = r.stderr.strip().splitlines()
    assert len(lines) == 1 and f"127.0.0.1:{p}" in lines[0] and said in lines[0], r.stderr
    assert "could not check SPF for example.net" in lines[0] and "Traceback" not in r.stderr


@pytest.mark.parametrize("args", [
    ["--ip", "999.1.1.1", "--", "example.net"], ["--ip", "example.org", "--", "example.net"],
    ["--ip", "192.0.2.1", "--sender", "<>", "--", "example.net"], ["--ip", "192.0.2.1", "--", "exa\nmple.net"],
    ["--ip", "192.0.2.1", "--", ""], ["--ip", "192.0.2.1", "--dns-timeout", "inf", "--", "example.net"],
    ["--ip", "192.0.2.1", "--format", "xml", "--", "example.net"], ["--ip", "192.0.2.1", "--", "a" * 600],
])
@pytest.mark.slow
def test_bad_usage_is_exit_2_and_one_line(args):
    r = deliverck("spf", "--resolver", "127.0.0.1:9", *args, timeout=60)
    assert r.returncode == 2 and r.stdout == "", (args, r.stdout)
    assert len(r.stderr.strip().splitlines()) == 1 and "Traceback" not in r.stderr, r.stderr
