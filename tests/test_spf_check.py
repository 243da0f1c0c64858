"""The spf check and the SPF lint, on an in-memory DNS (no lab)."""

from __future__ import annotations

import dataclasses

import pytest

from deliverck.config import Config
from deliverck.context import Context
from deliverck.model import Severity
from deliverck.spf.lint import lint_domain
from deliverck.spf.memdns import MemoryDns
from deliverck.target import parse_target

IP = "192.0.2.10"


def zone(record=None, **more):
    z = {"example.com": [("MX", "10 mx.example.com.")], "mx.example.com": [("A", IP)]}
    if record is not None:
        z["example.com"].append(("TXT", record))
    for k, v in more.items():
        z[k.replace("_", ".")] = v
    return z


async def run_check(z, **cfg):
    from deliverck.checks import spf

    config = dataclasses.replace(Config(target=parse_target("example.com")), **cfg)
    ctx = Context(config, MemoryDns(z))  # type: ignore[arg-type]
    try:
        findings = await spf.run(ctx)
    finally:
        await ctx.close()
    return {f.id: f for f in findings}


async def test_pass_and_record():
    f = await run_check(zone("v=spf1 mx -all"))
    assert "spf.record" in f and "spf.pass" in f
    assert f["spf.pass"].args["mechanism"] == "mx"


async def test_fail_carries_the_trace():
    f = await run_check(zone("v=spf1 ip4:198.51.100.1 -all"))
    fail = f["spf.fail"]
    assert fail.severity == Severity.ERROR
    assert any("-all: match" in line for line in fail.evidence)


async def test_missing_record():
    f = await run_check(zone())
    # spf.missing says it once; no per-address spf.none repeats it
    assert "spf.missing" in f and "spf.none" not in f and "spf.record" not in f


@pytest.mark.parametrize("record,fid", [
    ("v=spf1 mx +all", "spf.plus_all"), ("v=spf1 mx ?all", "spf.neutral_all"), ("v=spf1 mx", "spf.no_all"),
    ("v=spf1 ptr mx -all", "spf.ptr"), ("v=spf1 include:nowhere.example.net mx -all", "spf.include_missing"),
    ("v=spf1 mx bogus -all", "spf.syntax"),
])
async def test_record_problems(record, fid):
    assert fid in await run_check(zone(record))


async def test_multiple_records():
    z = zone("v=spf1 mx -all")
    z["example.com"].append(("TXT", "v=spf1 -all"))
    f = await run_check(z)
    assert "spf.multiple" in f and "spf.permerror" in f


async def test_helo_identity():
    z = zone("v=spf1 mx -all")
    z["mx.example.com"].append(("TXT", "v=spf1 a -all"))
    f = await run_check(z, helo_name="mx.example.com")
    assert "spf.helo_pass" in f
    z["mx.example.com"] = [("A", IP), ("TXT", "v=spf1 ip4:198.51.100.1 -all")]
    f = await run_check(z, helo_name="mx.example.com")
    assert f["spf.helo_fail"].severity == Severity.ERROR
    z["mx.example.com"] = [("A", IP)]
    assert "spf.helo_none" in await run_check(z, helo_name="mx.example.com")


async def test_timeout_is_inconclusive():
    f = await run_check({"example.com": [("MX", "10 mx.example.com."), ("TXT", "TIMEOUT")],
                         "mx.example.com": [("A", IP)]})
    assert f["spf.lookup_failed"].inconclusive and f["spf.temperror"].inconclusive


async def test_lint_counts_the_whole_tree():
    z = {"example.com": [("TXT", "v=spf1 include:a.example.com include:b.example.com a:n1.example.com -all")],
         "a.example.com": [("TXT", "v=spf1 " + " ".join(f"a:h{i}.example.com" for i in range(5)) + " -all")],
         "b.example.com": [("TXT", "v=spf1 " + " ".join(f"a:h{i}.example.com" for i in range(5)) + " -all")],
         **{f"h{i}.example.com": [("A", IP)] for i in range(5)}}
    lint = await lint_domain("example.com", MemoryDns(z))
    assert lint.total_lookups == 13 and lint.over_limit
    assert lint.void_lookups == 1


async def test_lint_finds_loops():
    z = {"example.com": [("TXT", "v=spf1 include:x.example.com -all")],
         "x.example.com": [("TXT", "v=spf1 include:example.com -all")]}
    lint = await lint_domain("example.com", MemoryDns(z))
    assert [i.code for i in lint.issues] == ["loop"]
