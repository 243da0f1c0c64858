"""Cron audits: `deliverck audit --config deliverck.toml`, the config file's
errors (file:line), ignores with expiry dates, --changes-only with a state
file, atomic --output and the Prometheus textfile format, through the real CLI
in the lab (good.test passes; no-ptr.test fails on ptr.missing only)."""

from __future__ import annotations

import json
import math
import re
import textwrap

import pytest
from conftest import ROOT, deliverck, validate_report

AUDIT_SCHEMA = json.loads((ROOT / "docs" / "audit.schema.json").read_text())


def lab_defaults(lab) -> str:
    return textwrap.dedent(f"""\
        [defaults]
        ca_file = "{lab.ca_file}"
        trust_anchor = "{lab.trust_anchor}"
        smtp_timeout = 3
        dns_timeout = 2
        deadline = 30
        """)


def write(tmp_path, text: str, name: str = "deliverck.toml"):
    p = tmp_path / name
    p.write_text(textwrap.dedent(text))
    return p


def validate_audit(doc: dict) -> None:
    import jsonschema

    jsonschema.validate(doc, AUDIT_SCHEMA)
    for t in doc["targets"]:
        validate_report(t["report"])


def finding_ids(report: dict) -> list[str]:
    return [f["id"] for c in report["checks"] for f in c["findings"]]


# --- config errors: one line, file:line, exit 2 (no lab needed) ------------------------

BAD = [
    ("unknown key", """\
        [[target]]
        name = "good.test"
        dkim_selector = ["s1"]
        """, 3, 'target "good.test": unknown key "dkim_selector" (known: '),
    ("unknown key in defaults", """\
        [defaults]
        fail_on = "error"
        timeout = 3

        [[target]]
        name = "good.test"
        """, 3, '[defaults]: unknown key "timeout"'),
    ("unknown top-level key", """\
        [[target]]
        name = "good.test"

        [severity]
        "ptr.generic" = "warning"
        """, 4, 'unknown top-level key "severity"'),
    ("wrong type", """\
        [[target]]
        name = "a.test"

        [[target]]
        name = "good.test"
        deadline = "30"
        """, 6, 'target "good.test": deadline must be a number, not a string'),
    ("wrong type list", """\
        [[target]]
        name = "good.test"
        ips = "192.0.2.1"
        """, 3, "ips must be a list of strings, not a string"),
    ("bad value", """\
        [[target]]
        name = "good.test"
        ips = ["192.0.2.1", "mail.good.test"]
        """, 3, "ips: 'mail.good.test' is not an IP address"),
    ("bad date", """\
        [[target]]
        name = "good.test"

        [[target.ignore]]
        finding = "ptr.missing"
        reason = "ticket 1"
        expires = 2026-13-01
        """, 7, "expires = 2026-10-01"),
    ("date as a string", """\
        [[target]]
        name = "good.test"

        [[target.ignore]]
        finding = "ptr.missing"
        reason = "ticket 1"
        expires = "2026-10-01"
        """, 7, "expires must be a TOML date such as 2026-10-01 (no quotes, no time), not a string"),
    ("missing reason", """\
        [[target]]
        name = "good.test"

        [[target.ignore]]
        finding = "ptr.missing"
        expires = 2099-01-01

        [[target.ignore]]
        finding = "ptr.generic"
        expires = 2099-01-01
        """, 4, 'ignore: missing required key "reason"'),
    ("missing reason second ignore", """\
        [[target]]
        name = "good.test"

        [[target.ignore]]
        finding = "ptr.missing"
        reason = "ticket 1"
        expires = 2099-01-01

        [[target.ignore]]
        finding = "ptr.generic"
        expires = 2099-01-01
        """, 9, 'ignore: missing required key "reason"'),
    ("unknown finding id in an ignore", """\
        [[target]]
        name = "good.test"
        [[target.ignore]]
        finding = "ptr.generik"
        reason = "x"
        expires = 2099-01-01
        """, 4, 'ignore: unknown finding id "ptr.generik"'),
    ("unknown finding id in severity", """\
        [[target]]
        name = "good.test"
        severity = { "ptr.generic" = "warning", "ptr.nope" = "info" }
        """, 3, 'severity: unknown finding id "ptr.nope"'),
    ("bad severity name", """\
        [[target]]
        name = "good.test"

        [target.severity]
        "ptr.generic" = "warn"
        """, 5, "unknown severity 'warn'"),
    ("ignore in defaults without reason", """\
        [defaults]
        dns_timeout = 2

        [[defaults.ignore]]
        finding = "ptr.generic"
        expires = 2099-01-01

        [[target]]
        name = "good.test"
        """, 4, '[defaults]: ignore: missing required key "reason"'),
    ("missing name", """\
        [[target]]
        name = "good.test"

        [[target]]
        ips = ["192.0.2.1"]
        """, 4, 'target #2: missing required key "name"'),
    ("unknown check", """\
        [[target]]
        name = "good.test"
        only = ["mx", "ptrr"]
        """, 3, "unknown check 'ptrr'"),
    ("not toml", """\
        [[target]]
        name = "good.test
        """, 2, ""),
    # issue 13: the same validators as the check command's flags
    ("only and skip leave no check", """\
        [[target]]
        name = "good.test"
        only = ["mx", "ptr"]
        skip = ["ptr", "mx"]
        """, 4, "only mx,ptr and skip ptr,mx leave no check to run"),
    ("defaults and target leave no check", """\
        [defaults]
        only = ["mx"]

        [[target]]
        name = "good.test"
        skip = ["mx"]
        """, 6, "only mx and skip mx leave no check to run"),
    ("empty only", """\
        [[target]]
        name = "good.test"
        only = []
        """, 3, "only is empty"),
    ("empty dnsbl", """\
        [[target]]
        name = "good.test"
        dnsbl = []
        """, 3, "dnsbl is empty"),
    ("empty receivers", """\
        [[target]]
        name = "good.test"
        receivers = []
        """, 3, "receivers is empty"),
    ("inf timeout", """\
        [[target]]
        name = "good.test"
        dns_timeout = inf
        """, 3, "dns_timeout must be a positive number of seconds"),
    ("huge timeout", """\
        [[target]]
        name = "good.test"
        smtp_timeout = 9223372036854775807
        """, 3, "at most 86400"),
    ("huge cert_warn_days", """\
        [[target]]
        name = "good.test"
        cert_warn_days = 9223372036854775807
        """, 3, "cert_warn_days must be 0 or more days"),
    ("too many ports", """\
        [[target]]
        name = "good.test"
        ports = [2000, 2001, 2002, 2003, 2004, 2005, 2006, 2007, 2008, 2009, 2010]
        """, 3, "at most 10"),
]


@pytest.mark.parametrize("case,text,line,message", BAD, ids=[b[0] for b in BAD])
@pytest.mark.slow
def test_config_errors_name_file_and_line(tmp_path, case, text, line, message):
    path = write(tmp_path, text)
    r = deliverck("audit", "--config", str(path))
    assert r.returncode == 2, (r.stdout, r.stderr)
    assert r.stdout == ""
    assert r.stderr.count("\n") == 1, r.stderr
    assert r.stderr.startswith(f"deliverck: error: {path}:{line}: "), r.stderr
    assert message in r.stderr


def test_config_check_only_and_missing_file(tmp_path):
    path = write(tmp_path, """\
        [defaults]
        dkim_selectors = ["s1"]
        [[target]]
        name = "good.test"
        [[target]]
        name = "no-ptr.test"
        ips = ["198.51.100.70"]
        """)
    r = deliverck("audit", "--config", str(path), "--check-config")
    assert (r.returncode, r.stderr) == (0, "")
    assert "2 targets: good.test, no-ptr.test" in r.stdout
    r = deliverck("audit", "--config", str(tmp_path / "nope.toml"))
    assert r.returncode == 2 and r.stderr.count("\n") == 1 and "nope.toml" in r.stderr


@pytest.mark.slow
def test_ca_file_and_trust_anchor_default_to_the_environment(tmp_path):
    """As for the check command: $DELIVERCK_CA_FILE / $DELIVERCK_TRUST_ANCHOR when the file has no key."""
    import os
    import subprocess
    import sys

    def audit(path, **env):
        base = {k: v for k, v in os.environ.items() if not k.startswith("DELIVERCK_")}
        return subprocess.run([sys.executable, "-m", "deliverck", "audit", "--config", str(path), "--check-config"],
                              capture_output=True, text=True, timeout=60, env={**base, **env})

    plain = write(tmp_path, """\
        [[target]]
        name = "good.test"
        """)
    for var, option in (("DELIVERCK_CA_FILE", "--ca-file"), ("DELIVERCK_TRUST_ANCHOR", "--trust-anchor")):
        r = audit(plain, **{var: str(tmp_path / "missing")})
        assert r.returncode == 2, r.stderr
        assert r.stderr.startswith(f"deliverck: error: {option} (from ${var}) {tmp_path / 'missing'}"), r.stderr
        assert r.stderr.count("\n") == 1
    # A key in the file wins: the variable is not even read.
    (tmp_path / "root.ds").write_text(". IN DS 20326 8 2 "
                                      "E06D44B80B8F1D39A95C0B0D7C65D08458E880409BBB683457104237C7F8EC8D\n")
    keyed = write(tmp_path, """\
        [defaults]
        trust_anchor = "root.ds"
        [[target]]
        name = "good.test"
        """, "keyed.toml")
    r = audit(keyed, DELIVERCK_TRUST_ANCHOR=str(tmp_path / "missing"))
    assert r.returncode == 0, r.stderr


def test_duplicate_target(tmp_path):
    path = write(tmp_path, """\
        [[target]]
        name = "good.test"
        [[target]]
        name = "GOOD.test."
        """)
    r = deliverck("audit", "--config", str(path))
    assert r.returncode == 2 and r.stderr.startswith(f"deliverck: error: {path}:4: ")


def test_example_in_docs_is_valid(tmp_path):
    text = (ROOT / "docs" / "config.md").read_text()
    example = re.search(r"```toml\n(.*?)```", text, re.S).group(1)
    path = write(tmp_path, example)
    r = deliverck("audit", "--config", str(path), "--check-config")
    assert r.returncode == 0, r.stderr


# --- audits in the lab ----------------------------------------------------------------


def test_combined_json_report_and_exit_code(lab, tmp_path):
    path = write(tmp_path, lab_defaults(lab) + textwrap.dedent("""
        [[target]]
        name = "good.test"

        [[target]]
        name = "no-ptr.test"
        """))
    r = deliverck("audit", "--config", str(path), "--format", "json")
    assert r.stderr == ""
    doc = json.loads(r.stdout)
    validate_audit(doc)
    assert [t["name"] for t in doc["targets"]] == ["good.test", "no-ptr.test"]
    assert [t["verdict"] for t in doc["targets"]] == ["pass", "fail"]
    assert r.returncode == doc["exit_code"] == 1
    assert doc["summary"] == {"targets": 2, "pass": 1, "fail": 1, "incomplete": 0, "ignored": 0,
                              "expired_ignores": 0}
    assert "ptr.missing" in finding_ids(doc["targets"][1]["report"])

    r = deliverck("audit", "--config", str(path))  # table: reports one after another, then the summary
    assert r.returncode == 1
    assert r.stdout.index("good.test (domain)") < r.stdout.index("no-ptr.test (domain)")
    assert r.stdout.rstrip().splitlines()[-1].startswith("AUDIT: 2 targets: 1 pass, 1 fail, 0 incomplete")


def test_active_ignore_hides_a_failing_finding(lab, tmp_path):
    path = write(tmp_path, lab_defaults(lab) + textwrap.dedent("""
        [[target]]
        name = "no-ptr.test"

        [[target.ignore]]
        finding = "ptr.missing"
        reason = "ISP ticket 4711: PTR requested"
        expires = 2099-12-31
        """))
    r = deliverck("audit", "--config", str(path), "--json")
    assert (r.returncode, r.stderr) == (0, "")
    doc = json.loads(r.stdout)
    validate_audit(doc)
    t = doc["targets"][0]
    assert t["verdict"] == "pass" and "ptr.missing" not in finding_ids(t["report"])
    assert [(g["finding"]["id"], g["reason"], g["expires"]) for g in t["ignored"]] == \
        [("ptr.missing", "ISP ticket 4711: PTR requested", "2099-12-31")] * len(t["ignored"])
    assert t["ignored"]
    assert not any("ptr.missing" in p["caused_by"] for p in t["report"]["predicted_ndrs"])
    r = deliverck("audit", "--config", str(path))
    assert r.returncode == 0
    assert "ignored: ptr.missing" in r.stdout and "ISP ticket 4711" in r.stdout


def test_ignore_for_another_subject_hides_nothing(lab, tmp_path):
    path = write(tmp_path, lab_defaults(lab) + textwrap.dedent("""
        [[target]]
        name = "no-ptr.test"

        [[target.ignore]]
        finding = "ptr.missing"
        subject = "192.0.2.99"
        reason = "another address"
        expires = 2099-12-31
        """))
    r = deliverck("audit", "--config", str(path), "--json")
    assert r.returncode == 1
    assert json.loads(r.stdout)["targets"][0]["ignored"] == []


def test_expired_ignore_stops_ignoring_loudly(lab, tmp_path):
    path = write(tmp_path, lab_defaults(lab) + textwrap.dedent("""
        [[target]]
        name = "no-ptr.test"

        [[target.ignore]]
        finding = "ptr.missing"
        reason = "ISP ticket 4711"
        expires = 2020-01-01
        """))
    r = deliverck("audit", "--config", str(path))
    assert r.returncode == 1
    loud = "ignore for ptr.missing on no-ptr.test expired on 2020-01-01: ISP ticket 4711"
    assert f"deliverck: warning: {path}:" in r.stderr and loud in r.stderr
    assert "EXPIRED IGNORE" in r.stdout and loud in r.stdout
    assert "ptr.missing" in r.stdout.split("EXPIRED IGNORE")[0]
    r = deliverck("audit", "--config", str(path), "--json")
    doc = json.loads(r.stdout)
    validate_audit(doc)
    t = doc["targets"][0]
    assert t["verdict"] == "fail" and "ptr.missing" in finding_ids(t["report"]) and t["ignored"] == []
    assert t["expired_ignores"][0]["finding"] == "ptr.missing" and doc["summary"]["expired_ignores"] == 1


def test_severity_override_from_the_config(lab, tmp_path):
    path = write(tmp_path, lab_defaults(lab) + textwrap.dedent("""
        [[target]]
        name = "no-ptr.test"
        severity = { "ptr.missing" = "warning" }
        """))
    r = deliverck("audit", "--config", str(path), "--json")
    assert r.returncode == 0, r.stdout[-2000:]
    sev = [f["severity"] for c in json.loads(r.stdout)["targets"][0]["report"]["checks"]
           for f in c["findings"] if f["id"] == "ptr.missing"]
    assert sev and set(sev) == {"warning"}


def test_changes_only(lab, tmp_path):
    path = write(tmp_path, lab_defaults(lab) + textwrap.dedent("""
        [[target]]
        name = "good.test"

        [[target]]
        name = "no-ptr.test"
        """))
    state = tmp_path / "state.json"
    args = ("audit", "--config", str(path), "--changes-only", "--state", str(state))
    first = deliverck(*args)
    assert first.returncode == 1 and "no-ptr.test" in first.stdout and "Changes since the last run" in first.stdout
    assert state.exists()
    again = deliverck(*args)
    assert (again.returncode, again.stdout, again.stderr) == (0, "", "")
    # A finding the stored state did not have is "fixed" now, so the run reports a change.
    doc = json.loads(state.read_text())
    doc["targets"]["good.test"]["findings"].append(["ptr.generic", "198.51.100.10", "warning"])
    doc["targets"]["no-ptr.test"]["findings"] = [x for x in doc["targets"]["no-ptr.test"]["findings"]
                                                 if x[0] != "ptr.missing"]
    doc["targets"]["no-ptr.test"]["verdict"] = "pass"
    state.write_text(json.dumps(doc))
    changed = deliverck(*args)
    assert changed.returncode == 1
    out = changed.stdout
    assert "Changes since the last run" in out
    assert "no-ptr.test: verdict pass -> fail" in out and "+ error ptr.missing" in out
    assert "- warning ptr.generic 198.51.100.10 (gone)" in out
    assert "deliverck 0.1.0" in out or "VERDICT" in out  # the full report follows the changes
    quiet = deliverck(*args)
    assert (quiet.returncode, quiet.stdout) == (0, "")
    assert not list(tmp_path.glob("*.tmp"))


def test_changes_only_needs_state(lab, tmp_path):
    path = write(tmp_path, '[[target]]\nname = "good.test"\n')
    r = deliverck("audit", "--config", str(path), "--changes-only")
    assert r.returncode == 2 and "--state" in r.stderr


def test_output_is_written_atomically(lab, tmp_path):
    path = write(tmp_path, lab_defaults(lab) + '\n[[target]]\nname = "good.test"\n')
    out = tmp_path / "out" / "audit.json"
    out.parent.mkdir()
    out.write_text("old")
    inode = out.stat().st_ino
    r = deliverck("audit", "--config", str(path), "--json", "--output", str(out))
    assert (r.returncode, r.stdout, r.stderr) == (0, "", "")
    assert out.stat().st_ino != inode  # replaced by rename, never truncated in place
    validate_audit(json.loads(out.read_text()))
    assert sorted(p.name for p in out.parent.iterdir()) == ["audit.json"]
    assert oct(out.stat().st_mode & 0o044) != "0o0"  # readable by the collector
    r = deliverck("audit", "--config", str(path), "--output", str(tmp_path / "missing" / "x.prom"))
    assert r.returncode == 2 and r.stderr.count("\n") == 1 and "does not exist" in r.stderr


# --- Prometheus textfile format -------------------------------------------------------

_NAME = r"[a-zA-Z_:][a-zA-Z0-9_:]*"
_LABEL = r'[a-zA-Z_][a-zA-Z0-9_]*="(?:[^"\\\n]|\\[\\"n])*"'
_SAMPLE = re.compile(rf"^({_NAME})(\{{(?:{_LABEL})(?:,{_LABEL})*\}})? (\S+)$")
_LABELS = re.compile(r'([a-zA-Z_][a-zA-Z0-9_]*)="((?:[^"\\\n]|\\[\\"n])*)"')


def parse_prometheus(text: str) -> dict[str, list[tuple[dict, float]]]:
    """A strict reader of the text exposition format (what node_exporter's textfile collector accepts)."""
    assert text.endswith("\n")
    series: dict[str, list[tuple[dict, float]]] = {}
    types: dict[str, str] = {}
    helps: set[str] = set()
    seen: set[tuple] = set()
    for line in text.splitlines():
        assert line, "no empty lines"
        if line.startswith("# HELP "):
            name = line.split(" ", 3)[2]
            assert re.fullmatch(_NAME, name) and name not in helps
            helps.add(name)
            continue
        if line.startswith("# TYPE "):
            _, _, name, kind = line.split(" ")
            assert kind in ("gauge", "counter", "untyped") and name not in types and name not in series
            types[name] = kind
            continue
        m = _SAMPLE.match(line)
        assert m, f"not a sample line: {line!r}"
        name, labels, value = m.group(1), m.group(2) or "", m.group(3)
        assert name in types and name in helps, f"{name} has no TYPE/HELP before its samples"
        lab = {k: v.replace("\\n", "\n").replace('\\"', '"').replace("\\\\", "\\")
               for k, v in _LABELS.findall(labels)}
        key = (name, tuple(sorted(lab.items())))
        assert key not in seen, f"duplicate series {line}"
        seen.add(key)
        v = float(value)
        assert not math.isnan(v)
        series.setdefault(name, []).append((lab, v))
    return series


def value(series, name, **labels) -> float:
    found = [v for lab, v in series.get(name, []) if all(lab.get(k) == x for k, x in labels.items())]
    assert len(found) == 1, (name, labels, found)
    return found[0]


def test_label_escaping():
    from deliverck.report.prometheus import _labels, escape_label

    assert escape_label('a"b\\c\nd') == 'a\\"b\\\\c\\nd'
    raw = 'q"\\\n'
    text = "# HELP x_y h\n# TYPE x_y gauge\nx_y" + _labels(a=raw) + " 1\n"
    assert parse_prometheus(text)["x_y"] == [({"a": raw}, 1.0)]


def test_prometheus_audit_output(lab, tmp_path):
    path = write(tmp_path, lab_defaults(lab) + textwrap.dedent("""
        [[target]]
        name = "good.test"

        [[target]]
        name = "cert-expiring.test"

        [[target]]
        name = "dnsbl-listed-zen.test"
        """))
    out = tmp_path / "deliverck.prom"
    r = deliverck("audit", "--config", str(path), "--format", "prometheus", "--output", str(out))
    assert r.returncode == 1 and r.stdout == "" and r.stderr == ""
    s = parse_prometheus(out.read_text())
    assert not list(tmp_path.glob("*.tmp")) and not list(tmp_path.glob(".*.tmp"))
    assert value(s, "deliverck_check_status", target="good.test", check="mx", status="pass") == 1
    assert value(s, "deliverck_check_status", target="good.test", check="mx", status="fail") == 0
    assert value(s, "deliverck_verdict", target="dnsbl-listed-zen.test", verdict="fail") == 1
    assert value(s, "deliverck_exit_code", target="good.test") == 0
    assert value(s, "deliverck_findings", target="good.test", check="ptr", severity="error") == 0
    assert value(s, "deliverck_findings", target="dnsbl-listed-zen.test", check="dnsbl", severity="error") >= 1
    days = [v for lab_, v in s["deliverck_certificate_days_left"] if lab_["target"] == "cert-expiring.test"]
    assert days and all(0 <= d < 21 for d in days)
    assert all(v > 21 for lab_, v in s["deliverck_certificate_days_left"] if lab_["target"] == "good.test")
    listed = {(lab_["ip"], lab_["list"]): v for lab_, v in s["deliverck_dnsbl_listed"]
              if lab_["target"] == "dnsbl-listed-zen.test"}
    assert listed[("192.0.2.211", "spamhaus-zen")] == 1
    assert {v for (ip, lst), v in listed.items() if lst == "spamhaus-zen"} == {1}
    assert 0 in {v for lab_, v in s["deliverck_dnsbl_listed"] if lab_["target"] == "good.test"}
    import time

    for t in ("good.test", "cert-expiring.test", "dnsbl-listed-zen.test"):
        assert abs(value(s, "deliverck_last_success_timestamp_seconds", target=t) - time.time()) < 300
        assert value(s, "deliverck_audit_duration_seconds", target=t) > 0
    assert s["deliverck_audit_run_duration_seconds"][0][1] > 0


def test_last_success_carries_over_in_the_state(lab, tmp_path):
    """An incomplete run reports the last completed run's time from --state, not its own."""
    good = write(tmp_path, lab_defaults(lab) + '\n[[target]]\nname = "good.test"\n')
    state = tmp_path / "state.json"
    r = deliverck("audit", "--config", str(good), "--format", "prometheus", "--state", str(state))
    assert r.returncode == 0
    first = value(parse_prometheus(r.stdout), "deliverck_last_success_timestamp_seconds", target="good.test")
    # The same target, unreachable resolver: the run cannot complete.
    broken = write(tmp_path, lab_defaults(lab) + textwrap.dedent("""
        [[target]]
        name = "good.test"
        resolvers = ["127.0.0.1:9"]
        dns_timeout = 0.5
        """), "broken.toml")
    r = deliverck("audit", "--config", str(broken), "--format", "prometheus", "--state", str(state))
    assert r.returncode == 3, r.stderr
    s = parse_prometheus(r.stdout)
    assert value(s, "deliverck_verdict", target="good.test", verdict="incomplete") == 1
    assert value(s, "deliverck_last_success_timestamp_seconds", target="good.test") == first


def test_check_command_prometheus_format(lab):
    r = deliverck("--ca-file", lab.ca_file, "--trust-anchor", lab.trust_anchor, "--smtp-timeout", "3",
                  "--dns-timeout", "2", "no-ptr.test", "--format", "prometheus")
    assert r.returncode == 1 and r.stderr == ""
    s = parse_prometheus(r.stdout)
    assert value(s, "deliverck_check_status", target="no-ptr.test", check="ptr", status="fail") == 1
    assert value(s, "deliverck_findings", target="no-ptr.test", check="ptr", severity="error") >= 1
    assert "deliverck_audit_run_duration_seconds" not in s
