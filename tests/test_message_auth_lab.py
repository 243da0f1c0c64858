"""DKIM keys of real lab zones, fetched through the system resolver (issue 18: "keys fetched through
deliverck's own DNS layer, so --resolver, --zone-file and the lab apply").

The messages are signed here with the corpus's test key (tests/messages/auth/keys/), not with the
lab's private keys: the lab publishes its own keys, so a signature with another key must fail on
the signature, and a revoked lab selector must be reported as revoked, both read from the lab's DNS.
"""

from __future__ import annotations

import asyncio
import email
import email.policy
import email.utils
from pathlib import Path

import dkim

from deliverck.config import Config
from deliverck.context import Context
from deliverck.message import headers
from deliverck.message.checks import dkim as dkim_check
from deliverck.message.checks import dmarc as dmarc_check
from deliverck.message.checks import spf as spf_check
from deliverck.message.context import MessageContext
from deliverck.message.model import Message
from deliverck.net import dns as dnsnet
from deliverck.target import parse_target

KEY = (Path(__file__).parent / "messages" / "auth" / "keys" / "sender-2048.pem").read_bytes()


def _message(domain: str, selector: str, ip: str) -> bytes:
    body = (f"From: a@{domain}\r\nTo: b@receiver.test\r\nSubject: lab key\r\nDate: Tue, 01 Dec 2026 09:59:00 +0000\r\n"
            f"Message-ID: <1@{domain}>\r\n\r\nhello\r\n").encode()
    signed = dkim.sign(body, selector.encode(), domain.encode(), KEY, include_headers=[b"from", b"subject"]) + body
    return (f"Return-Path: <bounce@{domain}>\r\nReceived: from mx.{domain} (mx.{domain} [{ip}])\r\n\tby "
            f"mx.receiver.test with ESMTPS; {email.utils.formatdate(usegmt=True)}\r\n").encode() + signed


async def _judge(raw: bytes):
    cfg = Config(target=parse_target("receiver.test"), dns_timeout=3.0)
    ctx = Context(cfg, dnsnet.DnsClient(cfg.resolvers, timeout=3.0))
    try:
        msg = Message(raw, "lab")
        mctx = MessageContext(ctx, msg, headers.info_of(msg, email.message_from_bytes(raw, policy=email.policy.compat32)))
        findings = [f for c in (dkim_check, spf_check, dmarc_check) for f in await c.run(mctx)]
        return await mctx.auth(), {f.id for f in findings}
    finally:
        await ctx.close()


def test_a_revoked_lab_selector_is_revoked(lab):
    auth, ids = asyncio.run(_judge(_message("dkim-revoked.test", "mail", "198.51.100.185")))
    assert [(s.result, s.problem) for s in auth.dkim] == [("permerror", "revoked")]
    assert "message_dkim.revoked" in ids
    # SPF "mx -all" authorizes the address the Received field claims; no DMARC record: none.
    assert auth.spf_mailfrom.result == "pass" and auth.spf_mailfrom.claimed
    assert "message_dmarc.none" in ids


def test_a_signature_with_another_key_fails_against_the_lab_key(lab):
    auth, ids = asyncio.run(_judge(_message("dkim-good.test", "s1", "192.0.2.1")))
    assert [(s.result, s.problem, s.key_bits) for s in auth.dkim] == [("fail", "signature", 2048)]
    assert "message_dkim.signature" in ids and "message_dkim.pass" not in ids
