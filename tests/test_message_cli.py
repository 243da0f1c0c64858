"""`deliverck message` and `deliverck listen` through the real CLI, in the lab (issue 18).

The checks themselves are tested on their corpora (test_message_auth.py, test_message_format.py)
and the receiver on loopback (test_listen.py); here: the report a user gets.  The envelope names
its sources, the audit's ptr/helo/dnsbl checks judge the sending address, the verdict and the
predicted NDRs tell one story, directories and stdin give one report per message, remote text is
escaped in the table and exact in JSON, and `listen` judges the session it really saw.
"""

from __future__ import annotations

import json
import smtplib
import socket
import ssl
import subprocess
import sys
import time

import pytest
from conftest import deliverck, validate_report

# good.test (lab scenario "good"): MX hosts mx1/mx2 with forward-confirmed PTRs, SPF "mx -all",
# DMARC p=reject, no signer in this test: DMARC passes through SPF alone.
MX1 = "198.51.100.10"
OUTSIDER = "203.0.113.99"           # in no SPF record of the lab


def message(subject: str = "hello", received: str = "", extra: str = "") -> str:
    return (f"{received}Return-Path: <alice@good.test>\nFrom: Alice <alice@good.test>\nTo: bob@example.net\n"
            f"Subject: {subject}\nDate: Sat, 05 Dec 2026 10:00:00 +0000\nMessage-ID: <1@good.test>\n{extra}"
            "\nHi Bob.\n")


def ids(doc: dict) -> set[str]:
    return {f["id"] for c in doc["checks"] for f in c["findings"]}


def test_stated_envelope_passes_and_the_report_follows_the_schema(lab, tmp_path):
    (tmp_path / "m.eml").write_text(message())
    r = deliverck("message", str(tmp_path / "m.eml"), "--ip", MX1, "--helo", "mx1.good.test",
                  "--mail-from", "alice@good.test", "--json")
    assert r.returncode == 0, r.stderr + r.stdout
    doc = json.loads(r.stdout)
    validate_report(doc)
    assert doc["verdict"] == "pass" and doc["target"]["roles"] == ["message"]
    m = doc["message"]
    assert m["from_domain"] == "good.test" and m["session"] is None
    assert m["envelope"]["ip"] == {"value": MX1, "source": "option --ip", "proven": True}
    assert m["envelope"]["mail_from"]["source"] == "option --mail-from"
    assert {"ptr.confirmed", "message_spf.pass", "message_dmarc.pass"} <= ids(doc)
    assert {c["id"] for c in doc["checks"]} >= {"ptr", "helo", "dnsbl", "message_dkim", "message_format"}
    auth = m["authentication"]
    assert auth["dkim"] == [] and auth["spf"]["mailfrom"]["result"] == "pass"
    assert auth["dmarc"]["rfc7489"]["result"] == "pass" and auth["dmarc"]["rfc7489"]["spf_aligned"]


def test_a_received_field_is_a_claim_and_the_report_says_so(lab, tmp_path):
    received = (f"Received: from mx1.good.test (mx1.good.test [{MX1}])\n\tby mx.example.net (Postfix) with ESMTPS "
                "id 4ABC\n\tfor <bob@example.net>; Sat, 05 Dec 2026 10:00:05 +0000 (UTC)\n")
    (tmp_path / "m.eml").write_text(message(received=received))
    r = deliverck("message", str(tmp_path / "m.eml"), "--json")
    doc = json.loads(r.stdout)
    ip = doc["message"]["envelope"]["ip"]
    assert ip["value"] == MX1 and not ip["proven"] and ip["source"].startswith("header Received #1")
    assert doc["message"]["envelope"]["helo"]["value"] == "mx1.good.test"
    assert any("a claim, not a proof" in n for n in doc["target"]["notes"])
    helo = next(f for c in doc["checks"] for f in c["findings"] if f["id"] == "helo.names")
    assert "Received #1" in helo["summary"]          # the source of the name, not "--helo"


def test_dmarc_reject_is_a_certain_bounce_and_the_verdict_says_fail(lab, tmp_path):
    (tmp_path / "m.eml").write_text(message())
    r = deliverck("message", str(tmp_path / "m.eml"), "--ip", OUTSIDER, "--mail-from", "alice@good.test", "--json")
    assert r.returncode == 1, r.stderr
    doc = json.loads(r.stdout)
    assert {"message_spf.fail", "message_dmarc.fail_reject"} <= ids(doc)
    gmail = [p for p in doc["predicted_ndrs"] if p["key"] == "gmail.dmarc-reject"]
    assert gmail and gmail[0]["likelihood"] == "will" and "message_dmarc.fail_reject" in gmail[0]["caused_by"]
    dmarc = next(c for c in doc["checks"] if c["id"] == "message_dmarc")
    assert dmarc["status"] == "fail" and doc["verdict"] == "fail"


def test_a_directory_gives_one_line_per_message_and_json_refuses_several(lab, tmp_path):
    d = tmp_path / "mail"
    d.mkdir()
    (d / "a.eml").write_text(message("first"))
    (d / "b.eml").write_text(message("second"))
    r = deliverck("message", str(d), "--ip", MX1, "--jsonl")
    lines = [json.loads(x) for x in r.stdout.splitlines()]
    assert [x["message"]["subject"] for x in lines] == ["first", "second"], r.stderr
    assert r.returncode == 0
    r = deliverck("message", str(d), "--ip", MX1, "--json")
    assert r.returncode == 2 and r.stdout == ""
    assert r.stderr.startswith("deliverck: error:") and "--jsonl" in r.stderr


def test_standard_input_is_one_message(lab):
    r = subprocess.run([sys.executable, "-m", "deliverck", "message", "-", "--ip", MX1, "--json"],
                       input=message("from stdin"), capture_output=True, text=True, timeout=120)
    doc = json.loads(r.stdout)
    assert doc["message"]["label"] == "-" and doc["message"]["subject"] == "from stdin"


def test_remote_text_is_escaped_in_the_table_and_exact_in_json(lab, tmp_path):
    hostile = "hi \x1b[2J\x1b]0;pwned\x07 \u202etxt.exe"
    (tmp_path / "m.eml").write_bytes(message(hostile).encode("utf-8"))
    table = deliverck("message", str(tmp_path / "m.eml"), "--ip", MX1, "-v")
    assert "\x1b" not in table.stdout and "\u202e" not in table.stdout and "\x07" not in table.stdout
    assert "Subject hi" in table.stdout
    doc = json.loads(deliverck("message", str(tmp_path / "m.eml"), "--ip", MX1, "--json").stdout)
    assert doc["message"]["subject"] == hostile


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_listen_judges_the_session_it_saw(lab, tmp_path):
    """A real client on loopback: STARTTLS, EHLO name, MAIL FROM, DATA; listen answers 250, then the
    report shows the peer, the HELO name as sent and the TLS version negotiated."""
    port = _free_port()
    proc = subprocess.Popen([sys.executable, "-m", "deliverck", "listen", "--address", "127.0.0.1", "--port",
                             str(port), "--rcpt", "test@example.net", "--timeout", "60", "--json"],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        assert proc.stderr is not None
        line = proc.stderr.readline()
        assert line.startswith("deliverck listen: listening on 127.0.0.1"), line
        client = smtplib.SMTP("127.0.0.1", port, local_hostname="odd_name.invalid", timeout=10)
        client.ehlo()
        tls = ssl.create_default_context()
        tls.check_hostname, tls.verify_mode = False, ssl.CERT_NONE
        client.starttls(context=tls)
        client.ehlo()
        with pytest.raises(smtplib.SMTPRecipientsRefused):
            client.sendmail("alice@good.test", ["someone@elsewhere.example"], message())
        client.rset()
        refused = client.sendmail("alice@good.test", ["test@example.net"], message())
        assert refused == {}
        client.quit()
        out, err = proc.communicate(timeout=90)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    doc = json.loads(out)
    validate_report(doc)
    s = doc["message"]["session"]
    assert s["peer_ip"] == "127.0.0.1" and s["helo"] == "odd_name.invalid" and s["esmtp"]
    assert s["tls_version"] in ("TLSv1.3", "TLSv1.2") and s["mail_from"] == "alice@good.test"
    env = doc["message"]["envelope"]
    assert env["ip"] == {"value": "127.0.0.1", "source": "SMTP session", "proven": True}
    assert env["helo"]["value"] == "odd_name.invalid"
    assert "message_transport.session_tls" in ids(doc)
    # 127.0.0.1 is in no SPF record: the real session fails SPF, and DMARC (p=reject) with it.
    assert "message_dmarc.fail_reject" in ids(doc) and proc.returncode == 1


def test_listen_gives_up_at_its_timeout_with_exit_3(lab):
    start = time.monotonic()
    r = deliverck("listen", "--address", "127.0.0.1", "--port", str(_free_port()), "--timeout", "1.5", timeout=30)
    assert r.returncode == 3 and r.stdout == ""
    assert "no message arrived within 1.5s" in r.stderr.splitlines()[-1]
    assert time.monotonic() - start < 20
