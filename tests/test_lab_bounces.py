"""Real bounces from a real Postfix in the lab (deliverck/lab/bounces.py), and the fixed corpus
made from them (tests/bounces/lab-postfix/, consumed by the explain tests).

The live tests run inside the lab (`deliverck lab run -- python -m pytest tests/test_lab_bounces.py`):
a sending Postfix on the bounce-sender address hands one test message per case to lab servers
that fail on purpose and returns a DSN for each.  deliverck itself never sends mail; this harness
is test tooling, and nothing leaves the lab's network namespace."""

from __future__ import annotations

import email
import email.policy
import json
import os
import subprocess
import sys
import tomllib
from pathlib import Path

import pytest
from conftest import ROOT

from deliverck.lab import bounces
from deliverck.ndr.categories import CATEGORIES

CORPUS = ROOT / "tests" / "bounces" / "lab-postfix"
CATEGORY_IDS = {c.id for c in CATEGORIES}


def _explain_available() -> str | None:
    """None if `deliverck explain` exists, else why the explain assertions are skipped."""
    r = subprocess.run([sys.executable, "-m", "deliverck", "explain", "--help"], capture_output=True, text=True,
                       timeout=60, env={**os.environ, "COLUMNS": "200"})
    # Before `explain` exists, `deliverck explain --help` is the default command's help (exit 0).
    if r.returncode != 0 or "deliverck explain" not in r.stdout:
        return "`deliverck explain` does not exist yet (issue 8); only the DSNs themselves are checked"
    return None


def _categories(doc) -> list[str]:
    """Every "category" value in explain's JSON, in document order."""
    found = []
    if isinstance(doc, dict):
        for k, v in doc.items():
            if k == "category" and isinstance(v, str):
                found.append(v)
            else:
                found += _categories(v)
    elif isinstance(doc, list):
        for v in doc:
            found += _categories(v)
    return found


def explain_category(path: Path) -> list[str]:
    r = subprocess.run([sys.executable, "-m", "deliverck", "explain", str(path), "--json"], capture_output=True,
                       text=True, timeout=60)
    assert r.stdout.strip(), f"explain {path.name}: no output ({r.returncode}): {r.stderr[-500:]}"
    return _categories(json.loads(r.stdout))


def check_dsn(path: Path, case: bounces.Case) -> dict[str, str]:
    """A real RFC 3464 report from the lab's Postfix, for the case's recipient, with its Status and
    Diagnostic-Code."""
    msg = email.message_from_bytes(path.read_bytes(), policy=email.policy.compat32)
    assert msg.get_content_type() == "multipart/report", path
    assert msg.get_param("report-type") == "delivery-status", path
    assert msg["From"].startswith("Mail Delivery System <MAILER-DAEMON@"), msg["From"]
    assert msg["Auto-Submitted"] == "auto-replied"
    parts = [p.get_content_type() for p in msg.get_payload()]
    assert parts[:2] == ["text/plain", "message/delivery-status"], parts
    assert parts[2] in ("message/rfc822", "text/rfc822-headers"), parts
    report = msg.get_payload()[1].get_payload()
    per_message = report[0]
    assert per_message["Reporting-MTA"] == f"dns; {bounces.SENDER_HOST}"
    assert per_message["X-Postfix-Queue-ID"], "not a Postfix DSN"
    fields = bounces.dsn_fields(path)
    assert fields["final-recipient"] == f"rfc822; {case.recipient}"
    assert fields["action"] == "failed"
    assert fields["status"] == case.status, (case.name, fields)
    assert case.diagnostic in fields["diagnostic-code"], (case.name, fields["diagnostic-code"])
    assert fields["diagnostic-code"].split(";")[0] in ("smtp", "X-Postfix")
    assert bounces.case_of(path) == case.name
    return fields


def test_cases_are_labelled():
    names = [c.name for c in bounces.CASES]
    assert len(names) == len(set(names))
    for c in bounces.CASES:
        assert c.category in CATEGORY_IDS, c
        assert c.recipient.split("@")[1].endswith(".test"), c        # lab domains only
        assert c.status[0] in "45" and c.cause


@pytest.mark.parametrize("table, words", [
    ('behaviour = "postfix"\n[peer.postfix]\ninet_interfaces = "all"', "cannot set ['inet_interfaces']"),
    ('behaviour = "postfix"\n[peer.postfix]\nsmtpd_data_restrictions = "permit"', "cannot set"),
    ('behaviour = "postfix"\n[peer.postfix]\nmessage_size_limit = 20000', "table of main.cf"),
    ('postfix = {smtpd_helo_required = "yes"}', "postfix\" peers only"),
])
def test_postfix_options_schema_errors(table, words):
    from deliverck.lab import LabUnavailable, scenarios

    text = (f'name = "x"\ndescription = "d"\nrecords = "mx A 198.51.100.252"\nsmtp = "all"\n[peer]\n{table}\n'
            '[expect]\nverdict = "pass"\n')
    with pytest.raises(LabUnavailable) as e:
        scenarios.parse(text, "x.toml")
    assert words in str(e.value) and "\n" not in str(e.value)


def test_postfix_options_reach_main_cf(tmp_path):
    from deliverck.lab import postfix, scenarios

    s = {x.name: x for x in scenarios.load_all()}["bounce-client"]
    options = dict(s.peer("198.51.100.243").postfix)
    assert options == {"smtpd_client_restrictions": "reject_unknown_client_hostname",
                       "unknown_client_reject_code": "550"}
    text = postfix.main_cf(tmp_path, "198.51.100.243", "mx.bounce-client.test", "bounce-client.test", False,
                           None, None, options)
    assert "smtpd_client_restrictions = reject_unknown_client_hostname\n" in text
    assert f"smtpd_data_restrictions = {postfix.REJECT_DATA}\n" in text
    with pytest.raises(ValueError):
        postfix.main_cf(tmp_path, "198.51.100.243", "h", "d", False, None, None, {"inet_interfaces": "all"})


def test_sender_config_stays_in_the_lab(tmp_path):
    text = bounces.sender_main_cf(tmp_path, "198.51.100.241", None)
    conf = dict(line.split(" = ", 1) for line in text.splitlines())
    assert conf["smtp_bind_address"] == conf["inet_interfaces"] == "198.51.100.241"
    assert conf["relayhost"] == "" and conf["maximal_queue_lifetime"] == "0"
    assert "badhelo:" in conf["transport_maps"] and "inet" not in bounces.SENDER_MASTER_CF


# --- live: a real Postfix makes the bounces --------------------------------------------

@pytest.fixture(scope="module")
def dsns(lab):
    if lab.postfix is None:
        pytest.skip(f"Postfix is unavailable in this lab: {lab.postfix_unavailable}")
    return bounces.run_in_lab()


@pytest.mark.parametrize("case", bounces.CASES, ids=lambda c: c.name)
def test_lab_bounce(dsns, case):
    assert case.name in dsns, f"no DSN for {case.name} within {bounces.DEADLINE:.0f}s"
    check_dsn(dsns[case.name], case)


def test_lab_bounces_stay_in_the_lab(lab, dsns):
    """The sender connected only to lab addresses (its log names every relay it tried)."""
    import re

    from deliverck.lab.scenarios import is_documentation

    log = (Path(lab.lab_dir) / "bounce-sender" / "maillog").read_text()
    relays = re.findall(r"\[(\d+\.\d+\.\d+\.\d+)\]:25", log)
    assert relays
    assert all(is_documentation(a) for a in relays), relays


@pytest.mark.parametrize("case", bounces.CASES, ids=lambda c: c.name)
def test_explain_lab_bounce(dsns, case):
    why = _explain_available()
    if why:
        pytest.skip(why)
    assert case.category in explain_category(dsns[case.name])[:1], case.name


# --- the fixed corpus: tests/bounces/lab-postfix/ -----------------------------------------

def corpus_labels() -> dict:
    return tomllib.loads((CORPUS / "labels.toml").read_text(encoding="utf-8"))


def test_corpus_is_complete_and_consistent():
    labels = corpus_labels()
    assert set(labels) == {f"{c.name}.eml" for c in bounces.CASES}
    assert sorted(p.name for p in CORPUS.glob("*.eml")) == sorted(labels)
    by_file = {f"{c.name}.eml": c for c in bounces.CASES}
    for name, label in labels.items():
        case = by_file[name]
        assert label["category"] == case.category and label["recipient"] == case.recipient
        fields = check_dsn(CORPUS / name, case)
        assert label["status"] == fields["status"] and label["diagnostic_code"] == fields["diagnostic-code"]
        assert label["temporary"] == label["status"].startswith("4")


@pytest.mark.parametrize("name", sorted(p.name for p in CORPUS.glob("*.eml")))
@pytest.mark.slow
def test_explain_corpus(name):
    why = _explain_available()
    if why:
        pytest.skip(why)
    assert corpus_labels()[name]["category"] in explain_category(CORPUS / name)[:1], name
