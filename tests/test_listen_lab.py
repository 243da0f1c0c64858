"""`deliverck listen` against a real sending Postfix in the lab (issue 18, "Real components in the tests").

The lab tests run inside the lab (`deliverck lab run -- python -m pytest tests/test_listen_lab.py`):
deliverck/lab/sendtest.py starts a Postfix on the listen-sender scenario's addresses, builds each
case's message, signs it with dkimpy and the scenario's own DKIM key (exported at lab start), and
hands it to Postfix, which looks up the listen-rcpt MX (198.51.100.110) and delivers over SMTP.
`deliverck listen` binds that address, takes the message and prints its report.

deliverck itself never sends mail; the sender is test tooling, and nothing leaves the lab's namespace.
"""

from __future__ import annotations

import base64
import json
import os
import queue
import ssl
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest

from deliverck.lab import dkim_keys, sendtest

LISTEN = sendtest.LISTEN_ADDRESS
SEND_TIMEOUT = 30.0           # Postfix hands a message to a local listener in well under a second


# --- the export of private keys (no lab needed) ---------------------------------------------------

def test_dkim_keys_export_writes_private_keys_0600(tmp_path):
    """Issue 18 (lab sender): the keys of {dkim:...} placeholders can sign; only the owner reads them."""
    import dns.zone
    from cryptography.hazmat.primitives.serialization import Encoding, PublicFormat, load_pem_private_key

    zone = dns.zone.from_text('$TTL 300\ns1._domainkey TXT "{dkim:rsa2048}"\ned._domainkey.sub TXT "{dkim:ed25519}"\n'
                              'gone._domainkey TXT "{dkim:revoked}"\n', origin="export.test.", relativize=False,
                              check_origin=False)
    assert dkim_keys.fill(zone) == 3
    keys = {k: v for k, v in dkim_keys.PRIVATE.items() if k[0].endswith("export.test")}
    written = dkim_keys.export(tmp_path, keys)
    assert sorted(p.relative_to(tmp_path).as_posix() for p in written) == [
        "dkim/export.test/s1.pem", "dkim/sub.export.test/ed.pem"]        # a revoked key has no private half
    for path in written:
        assert path.stat().st_mode & 0o777 == 0o600 and path.parent.stat().st_mode & 0o777 == 0o700
    txt = b"".join(zone.find_rdataset("s1._domainkey.export.test.", "TXT")[0].strings).decode()
    private = load_pem_private_key(dkim_keys.exported(tmp_path, "export.test", "s1").read_bytes(), None)
    der = private.public_key().public_bytes(Encoding.DER, PublicFormat.SubjectPublicKeyInfo)
    assert txt.endswith("p=" + base64.b64encode(der).decode())


def test_sign_with_exported_key_verifies(tmp_path):
    """The harness's message passes dkimpy with the published key, and its altered twin fails."""
    import dkim
    import dns.zone

    zone = dns.zone.from_text('$TTL 300\ns1._domainkey TXT "{dkim:rsa2048}"\n', origin=f"{sendtest.DOMAIN}.",
                              relativize=False, check_origin=False)
    dkim_keys.fill(zone)
    key = dkim_keys.PRIVATE[(sendtest.DOMAIN, "s1")]
    record = b"".join(zone.find_rdataset(f"s1._domainkey.{sendtest.DOMAIN}.", "TXT")[0].strings)

    def dnsfunc(name, timeout=5):
        return record if name == f"s1._domainkey.{sendtest.DOMAIN}.".encode() else None

    good = sendtest.build(sendtest.CASES["good"], "t@good.listen-rcpt.test", key)
    assert dkim.verify(good, dnsfunc=dnsfunc)
    signature = good.split(b"\r\n\r\n", 1)[0].decode()
    assert "list-unsubscribe-post" in signature.lower() and "d=listen-sender.test" in signature
    assert not dkim.verify(sendtest.build(sendtest.CASES["altered"], "t@x.test", key), dnsfunc=dnsfunc)
    bulk = sendtest.build(sendtest.CASES["bulk-no-post"], "t@x.test", key).split(b"\r\n\r\n", 1)[0]
    assert b"\r\nList-Unsubscribe: <https://" in bulk and b"List-Unsubscribe-Post:" not in bulk


def test_sendtest_usage(capsys):
    """The harness's command line: a bad case is a one-line usage error (exit 2), before any lab is needed."""
    assert sendtest.main(["nosuchcase", "a@b.test"]) == 2
    assert sendtest.main([]) == 2
    err = capsys.readouterr().err
    assert "usage: python -m deliverck.lab.sendtest CASE RCPT" in err and "bulk-no-post" in err


# --- the lab ------------------------------------------------------------------------------------------

@pytest.fixture(scope="module")
def sender(lab):
    if lab.postfix is None:
        pytest.fail(f"Postfix is unavailable in this lab: {lab.postfix_unavailable}", pytrace=False)
    yield sendtest.Sender(Path(lab.lab_dir))
    sendtest.stop(Path(lab.lab_dir))


def test_lab_exports_the_sender_key(lab):
    """The lab writes listen-sender.test's s1 key (0600) and it matches the published record."""
    import dns.resolver
    from cryptography.hazmat.primitives.serialization import Encoding, PublicFormat, load_pem_private_key

    path = dkim_keys.exported(lab.lab_dir, sendtest.DOMAIN, sendtest.SELECTOR)
    assert path.exists(), "the lab did not export its DKIM keys: plan.prepare() must call dkim_keys.export(d)"
    assert path.stat().st_mode & 0o777 == 0o600
    answer = dns.resolver.resolve(f"s1._domainkey.{sendtest.DOMAIN}", "TXT", lifetime=10)
    txt = b"".join(answer[0].strings).decode()
    der = load_pem_private_key(path.read_bytes(), None).public_key().public_bytes(
        Encoding.DER, PublicFormat.SubjectPublicKeyInfo)
    assert txt.endswith("p=" + base64.b64encode(der).decode())


class _Receiver:
    """A bare aiosmtpd receiver on the listen address: checks the harness without deliverck's listener."""

    def __init__(self, tmp: Path):
        from aiosmtpd.controller import Controller

        from deliverck.lab import certs

        ca = certs.make_ca(tmp)
        certs.issue(ca, ("mx.listen-rcpt.test",), tmp / "c.pem", tmp / "c.key")
        tls = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
        tls.load_cert_chain(tmp / "c.pem", tmp / "c.key")
        self.got: queue.Queue = queue.Queue()
        receiver = self

        class Handler:
            async def handle_DATA(self, server, session, envelope):
                receiver.got.put((session.peer[0], session.host_name, session.ssl is not None,
                                  envelope.mail_from, bytes(envelope.original_content or envelope.content)))
                return "250 2.0.0 taken"

        self.controller = Controller(Handler(), hostname=LISTEN, port=25, tls_context=tls, require_starttls=False,
                                     server_hostname="mx.listen-rcpt.test", ready_timeout=10)

    def __enter__(self):
        self.controller.start()
        return self

    def __exit__(self, *exc):
        self.controller.stop()


@pytest.mark.parametrize("case, peer, helo, tls, verifies", [
    ("good", "198.51.100.101", "mail.listen-sender.test", True, True),
    ("altered", "198.51.100.101", "mail.listen-sender.test", True, False),
    ("noptr", "198.51.100.102", "noptr.listen-sender.test", True, True),
    ("notls", "198.51.100.101", "mail.listen-sender.test", False, True),
])
def test_harness_delivers_each_case(lab, sender, tmp_path, case, peer, helo, tls, verifies):
    """The sending side itself: the real address, HELO and TLS of each transport, and a signature that
    verifies after Postfix relayed it (or does not, for the altered body)."""
    import dkim

    rcpt = f"postmaster@{case}.{sendtest.RCPT_DOMAIN}"
    with _Receiver(tmp_path) as r:
        sendtest.send_case(case, rcpt)
        try:
            got = r.got.get(timeout=SEND_TIMEOUT)
        except queue.Empty:
            pytest.fail(f"nothing arrived from the sending Postfix; its log:\n{sender.log()[-2000:]}")
    ip, ehlo, used_tls, mail_from, data = got
    assert (ip, ehlo, used_tls, mail_from) == (peer, helo, tls, f"{case}@{sendtest.DOMAIN}")
    assert bool(dkim.verify(data)) is verifies


# --- deliverck listen ---------------------------------------------------------------------------------

def _listen(rcpt: str, *extra: str) -> tuple[subprocess.Popen, queue.Queue]:
    proc = subprocess.Popen([sys.executable, "-m", "deliverck", "listen", "--address", LISTEN, "--port", "25",
                             "--rcpt", rcpt, "--timeout", "60", "--json", *extra],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                            env={**os.environ, "COLUMNS": "160"})
    lines: queue.Queue = queue.Queue()

    def pump():
        assert proc.stderr is not None
        for line in proc.stderr:
            lines.put(line)
        lines.put(None)

    threading.Thread(target=pump, daemon=True).start()
    return proc, lines


def _wait_listening(proc: subprocess.Popen, lines: queue.Queue, deadline: float = 30) -> str:
    seen = []
    end = time.monotonic() + deadline
    while time.monotonic() < end:
        try:
            line = lines.get(timeout=0.2)
        except queue.Empty:
            continue
        if line is None:
            break
        seen.append(line)
        if "listening on" in line:
            return "".join(seen)
    proc.kill()
    pytest.fail(f"`deliverck listen` did not say it was listening (exit {proc.wait()}): {''.join(seen)[-1500:]}")


def run_case(sender, case: str) -> tuple[int, dict, str]:
    """Start `deliverck listen`, send `case` through the lab's Postfix, return (exit, report, stderr)."""
    rcpt = f"postmaster@{case}.{sendtest.RCPT_DOMAIN}"
    proc, lines = _listen(rcpt, "--sender-profile", sendtest.CASES[case].profile)
    _wait_listening(proc, lines)
    sendtest.send_case(case, rcpt)
    try:
        out, _ = proc.communicate(timeout=90)
    except subprocess.TimeoutExpired:
        proc.kill()
        out, _ = proc.communicate()
    err = []
    while not lines.empty():
        line = lines.get()
        err.append(line or "")
    stderr = "".join(err)
    assert out.strip(), f"no report (exit {proc.returncode}): {stderr[-1500:]}\nPostfix: {sender.log()[-1500:]}"
    return proc.returncode, json.loads(out), stderr


def finding_ids(report: dict) -> set[str]:
    return {f["id"] for c in report["checks"] for f in c["findings"]}


def predictions(report: dict, finding: str) -> list[dict]:
    return [p for p in report["predicted_ndrs"] if finding in p["caused_by"]]


def test_listen_good_path(lab, sender):
    """Issue 18: the report shows Postfix's address, HELO, TLS version and DKIM pass; verdict pass."""
    rc, report, stderr = run_case(sender, "good")
    session = report["message"]["session"]
    assert session["peer_ip"] == "198.51.100.101" and session["helo"] == "mail.listen-sender.test", session
    assert session["tls_version"] in ("TLSv1.3", "TLSv1.2") and session["esmtp"]
    assert session["mail_from"] == "good@listen-sender.test"
    assert report["message"]["from_domain"] == "listen-sender.test"
    ids = finding_ids(report)
    assert GOOD_PRESENT <= ids, (GOOD_PRESENT - ids, sorted(ids))
    assert not ids & {f for _peer, findings, _st in FAILURES.values() for f in findings}, sorted(ids)
    assert (rc, report["verdict"]) == (0, "pass"), (rc, report["verdict"], sorted(ids), stderr[-800:])
    assert not [p for p in report["predicted_ndrs"] if p["likelihood"] == "will"]


# What each broken case must show: its findings (all present; one at error or worse, so the verdict
# fails), and the enhanced status code(s) of the receiver reply predicted for them (any one of them).
# The profile each case is judged with is sendtest.CASES[case].profile.
FAILURES: dict[str, tuple[str, tuple[str, ...], tuple[str, ...]]] = {    # case: (peer, findings, statuses)
    # bulk: Gmail wants a passing DKIM signature (DMARC itself still passes through aligned SPF)
    "altered": ("198.51.100.101", ("message_dkim.body_hash", "message_dkim.no_pass"), ("5.7.30", "4.7.30")),
    "unaligned": ("198.51.100.101", ("message_dmarc.fail_reject",), ("5.7.26",)),          # DMARC p=reject
    "noptr": ("198.51.100.102", ("ptr.missing",), ("5.7.25",)),
    "notls": ("198.51.100.101", ("message_transport.session_no_tls",), ("5.7.29", "4.7.29")),
    "bulk-no-post": ("198.51.100.101", ("message_bulk.no_post",), ("4.7.28",)),
}
# What the good path must show (and every failure id above must be absent from it).
GOOD_PRESENT = {"ptr.confirmed", "message_bulk.one_click", "message_dkim.pass", "message_spf.pass", "message_dmarc.pass",
                "message_transport.session_tls"}


@pytest.mark.parametrize("case", list(FAILURES))
def test_listen_failure(lab, sender, case):
    """Issue 18: each failure scenario on the real path gives its finding and the receiver's code."""
    from test_scenarios import assert_one_story

    peer, wanted, statuses = FAILURES[case]
    rc, report, stderr = run_case(sender, case)
    assert report["message"]["session"]["peer_ip"] == peer
    assert_one_story(report)
    ids = finding_ids(report)
    assert set(wanted) <= ids, (set(wanted) - ids, sorted(ids))
    found = [f for c in report["checks"] for f in c["findings"] if f["id"] in wanted]
    assert any(f["severity"] in ("error", "critical") for f in found), found
    predicted = [p for finding in wanted for p in predictions(report, finding)]
    assert {p["status"] for p in predicted} & set(statuses), (wanted, [(p["key"], p["status"]) for p in predicted])
    assert (rc, report["verdict"]) == (1, "fail"), (rc, report["verdict"], stderr[-800:])


def test_declared_finding_ids():
    """The ids these tests assert on are declared by a check (a renamed id fails here first)."""
    from deliverck.registry import finding_specs

    declared = set(finding_specs())
    wanted = GOOD_PRESENT | {finding for _peer, findings, _st in FAILURES.values() for finding in findings}
    assert wanted <= declared, sorted(wanted - declared)
