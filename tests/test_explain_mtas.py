"""`deliverck explain` on the classes of bounces issue 17 names: sender refusals, dynamic or
residential sending addresses, expiry wordings of more MTAs, and the layouts of more MTAs and
providers (their samples are labelled in tests/bounces/expected-mtas.toml and checked by
tests/test_explain.py; here, the class rules as reply lines and what each layout gives).

Real over fake: the CLI runs in a subprocess on the replies and files."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from conftest import ROOT, deliverck

CORPUS = ROOT / "tests" / "bounces"


def _jsonl(*args: str) -> dict[str, dict]:
    r = deliverck("explain", *args, "--jsonl", timeout=120)
    assert r.returncode in (0, 1), r.stderr
    assert "Traceback" not in r.stderr
    out: dict[str, dict] = {}
    for line in r.stdout.splitlines():
        doc = json.loads(line)
        out.setdefault(Path(doc["source"]).name, doc)
    return out


# (reply, category, owner): envelope-sender and From refusals, owner by sub-cause.
SENDER = [
    ("450 4.1.8 <news@gone.example>: Sender address rejected: Domain not found", "dns_admin"),
    ("553 5.1.8 <list@gone.example>... Domain of sender address list@gone.example does not exist", "dns_admin"),
    ("550 5.7.27 <a@nomail.example>: Sender address rejected: Domain nomail.example does not accept mail (nullMX)", "dns_admin"),
    ("451 <a@gone.example>... Sender domain must resolve", "dns_admin"),
    ("550 Sender verify failed", "dns_admin"),
    ("553 sorry, your envelope sender domain must exist (#5.7.1)", "dns_admin"),
    ("554 5.7.1 can't determine Purported Responsible Address", "dns_admin"),
    ("550 5.1.0 <alice@example.org> sender rejected", "mail_admin"),
    ("501 5.1.7 Bad sender address syntax", "mail_admin"),
    ("553 5.7.1 <alice@example.org>: Sender address rejected: not owned by user bob@example.net", "mail_admin"),
    ("554 5.1.0 cox.net rejected sender alice@example.org - AUP#CXSNDR", "mail_admin"),
    ("550 Envelope blocked - User Entry - https://community.mimecast.com/docs/DOC-1369#550", "mail_admin"),
]

# Dynamic or residential sending addresses: blocked_ip or reverse_dns, and a fix naming a smarthost.
DYNAMIC = [
    ("550 5.7.1 Please use the smtp server of your ISP", "blocked_ip"),
    ("554 5.7.1 Client host rejected: dynamic IP address, relay through your ISP", "blocked_ip"),
    ("550 5.7.1 Connection from dialup address 198.51.100.45 refused", "blocked_ip"),
    ("550 Mail from residential IP addresses is not accepted", "blocked_ip"),
    ("554 5.7.1 Service unavailable; Client host [198.51.100.44] blocked using dul.dnsbl.sorbs.net; Dynamic IP Addresses", "blocked_ip"),
    ("554 5.7.1 <dsl-198-51-100-23.isp.example>: Client host rejected: Your host name looks generic", "reverse_dns"),
    ("550 5.7.1 Client host rejected: Access denied, generic rDNS", "reverse_dns"),
]


@pytest.fixture(scope="module")
def replies(tmp_path_factory) -> dict[str, dict]:
    d = tmp_path_factory.mktemp("replies")
    for i, (line, _) in enumerate(SENDER + DYNAMIC):
        (d / f"{i:03d}.txt").write_text(line + "\n")
    return _jsonl(str(d))


@pytest.mark.parametrize("i", range(len(SENDER)), ids=[s[0][:50] for s in SENDER])
def test_sender_refusals_are_sender_rejected(replies, i):
    """Issue 17: 5.1.7, 5.1.8, 5.1.0 'sender rejected', 'Domain not found', PRA, Cox AUP ... -> sender_rejected."""
    line, owner = SENDER[i]
    r = replies[f"{i:03d}.txt"]["results"][0]
    assert r["category"] == "sender_rejected", (line, r["evidence"])
    assert r["owner"] == owner, line


@pytest.mark.parametrize("i", range(len(DYNAMIC)), ids=[d[0][:50] for d in DYNAMIC])
def test_dynamic_addresses_say_to_use_a_smarthost(replies, i):
    """Issue 17: dynamic / dial-up / residential / generic-rDNS refusals -> blocked_ip or reverse_dns,
    with a fix that says to relay through a smarthost with a static, named address."""
    line, want = DYNAMIC[i]
    r = replies[f"{len(SENDER) + i:03d}.txt"]["results"][0]
    assert r["category"] == want, (line, r["evidence"])
    assert "smarthost" in r["fix"] and "static" in r["fix"], r["fix"]


# Expired bounces of more MTAs: expired, with the last attempt's cause as `underlying`.
EXPIRED = {
    "opensmtpd-envelope-expired.eml": "",
    "dma-expired.eml": "",
    "imail-delivery-failed-attempts.eml": "network",
    "exim-retry-timeout-rate.eml": "rate_limited",
    "qmail-queue-too-long-refused.eml": "mailbox_full",
    "postfix-expired-text-only.eml": "network",
    "exchange-2019-queue-expired.eml": "network",
    "domino-delivery-time-expired.eml": "",
}


def test_expiry_wordings_of_more_mtas():
    got = _jsonl(*(str(CORPUS / f) for f in EXPIRED))
    wrong = {f: (got[f]["category"], got[f]["results"][0]["underlying"]) for f, u in EXPIRED.items()
             if (got[f]["category"], got[f]["results"][0]["underlying"] or "") != ("expired", u)}
    assert not wrong


# Layouts that name the recipient their own way: the address a reply quotes (often the sender's)
# is not the failed recipient, and the remote host comes from the layout.
LAYOUTS = {
    "courier-sender-rejected.eml": ("yuri@example.net", "mx.example.net"),
    "sun-messaging-sender.eml": ("jan@example.net", "mx.example.net"),
    "james-sender-rejected.eml": ("nora@example.net", ""),
    "mailmarshal-user-unknown.eml": ("sara@example.net", ""),
    "imail-delivery-failed-attempts.eml": ("lars@example.net", ""),
    "dma-user-unknown.eml": ("bert@example.net", "mx.example.net"),
    "mailfoundry-no-such-user.eml": ("rick@example.net", "mx.example.net"),
    "interscan-user-unknown.eml": ("pia@example.net", ""),
    "mfilter-unknown-user.eml": ("toru@example.jp", ""),
    "google-workspace-no-ptr.eml": ("xavier@example.net", ""),
}


def test_layouts_name_the_failed_recipient():
    got = _jsonl(*(str(CORPUS / f) for f in LAYOUTS))
    for f, (rcpt, host) in LAYOUTS.items():
        doc = got[f]
        assert doc["recipient"] == rcpt, (f, doc["recipient"])
        if host:
            assert doc["receiving"]["host"] == host, (f, doc["receiving"])


def test_japanese_carriers_are_decoded():
    """ISO-2022-JP and Shift_JIS bounces: the Japanese wording itself decides the category."""
    got = _jsonl(*(str(CORPUS / f) for f in ("docomo-receive-refusal-sjis.eml", "softbank-no-address-sjis.eml",
                                               "mfilter-unknown-user.eml")))
    assert got["docomo-receive-refusal-sjis.eml"]["category"] == "sender_rejected"
    assert got["softbank-no-address-sjis.eml"]["category"] == "user_unknown"
    # the reply is the decoded text, exact ("the mail server of docomo.ne.jp sends this automatically")
    assert "docomo.ne.jp \u306E\u30E1\u30FC\u30EB\u30B5\u30FC\u30D0\u30FC" in got["docomo-receive-refusal-sjis.eml"]["reply"]
    assert got["mfilter-unknown-user.eml"]["status"] == "5.1.1"
