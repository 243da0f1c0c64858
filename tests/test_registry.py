"""Checks are discovered, never listed by hand; third parties join by entry point."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap

from deliverck.model import Severity
from deliverck.ndr.catalog import load
from deliverck.registry import all_checks, finding_specs

THIRD_PARTY = textwrap.dedent('''
    from deliverck.model import CheckSpec, Direction, FindingSpec, Owner, Severity

    CHECK = CheckSpec(id="acme", title="ACME policy", cause="a third-party check", findings=(
        FindingSpec("acme.bad", Severity.WARNING, "bad {subject}", "fix", Owner.MAIL_ADMIN, Direction.OUTBOUND),
    ))

    async def run(ctx):
        return [CHECK.finding("bad", ctx.target.label)]
''')


def test_builtin_checks_are_discovered_with_runner_findings():
    ids = [c.id for c in all_checks()]
    assert ids[:2] == ["mx", "ptr"]
    specs = finding_specs()
    for cid in ids:
        assert f"{cid}.crashed" in specs and f"{cid}.timeout" in specs
        assert specs[f"{cid}.crashed"].inconclusive


def test_catalog_and_findings_agree():
    specs = finding_specs()
    catalog = load()
    for e in catalog.entries:
        for fid in e.findings:
            assert fid in specs, f"catalog entry {e.key} names unknown finding {fid}"
    keys = {e.key for e in catalog.entries}
    for f in specs.values():
        assert set(f.ndr) <= keys, f.id
    # every definite failure that endangers delivery predicts at least one NDR
    for f in specs.values():
        if f.severity >= Severity.CRITICAL and not f.inconclusive:
            assert f.ndr, f"{f.id} is critical but predicts no NDR"


def test_entry_point_check_joins(tmp_path):
    (tmp_path / "acme_check.py").write_text(THIRD_PARTY)
    dist = tmp_path / "acme_check-1.0.dist-info"
    dist.mkdir()
    (dist / "METADATA").write_text("Metadata-Version: 2.1\nName: acme-check\nVersion: 1.0\n")
    (dist / "entry_points.txt").write_text("[deliverck.checks]\nacme = acme_check\n")
    env = {**os.environ, "PYTHONPATH": str(tmp_path)}
    r = subprocess.run([sys.executable, "-m", "deliverck", "checks", "--format", "json"],
                       capture_output=True, text=True, env=env, timeout=60)
    assert r.returncode == 0, r.stderr
    ids = [c["id"] for c in json.loads(r.stdout)["checks"]]
    assert "acme" in ids and "mx" in ids
    acme = next(c for c in json.loads(r.stdout)["checks"] if c["id"] == "acme")
    assert [f["id"] for f in acme["findings"]] == ["acme.bad", "acme.crashed", "acme.timeout"]
