"""Authentication of real messages (issue 18, "DKIM", "ARC", "SPF ... DMARC", "Authentication-Results").

The corpus in tests/messages/auth/ (made by its generate.py, keys published in keys.zone) is judged
by the five message checks with DNS answered from keys.zone through deliverck's --zone-file overlay;
expected.toml says what each message must and must not produce.  The resolver is a closed loopback
port: a name outside the zone gets a failed lookup, never a packet to the internet.
"""

from __future__ import annotations

import asyncio
import email
import email.policy
import importlib.util
import sys
import time
import tomllib
from pathlib import Path

import dkim
import pytest

from deliverck.config import Config
from deliverck.context import Context
from deliverck.message import headers
from deliverck.message.auth import AuthResults
from deliverck.message.checks import arc as arc_check
from deliverck.message.checks import authres as authres_check
from deliverck.message.checks import dkim as dkim_check
from deliverck.message.checks import dmarc as dmarc_check
from deliverck.message.checks import spf as spf_check
from deliverck.message.context import MessageContext
from deliverck.message.model import Message
from deliverck.model import Finding, Skip
from deliverck.net import dns as dnsnet
from deliverck.net.dnsanswer import ResolverAddress
from deliverck.net.overlay import ZoneFileSpec, load_overlay
from deliverck.target import parse_target

CORPUS = Path(__file__).parent / "messages" / "auth"
EXPECTED = tomllib.loads((CORPUS / "expected.toml").read_text())
CHECKS = (dkim_check, arc_check, spf_check, dmarc_check, authres_check)
CLOSED = ResolverAddress("127.0.0.1", 9)     # discard port: nothing answers, nothing leaves the host


async def judge(raw: bytes, **envelope: str) -> tuple[AuthResults, list[Finding]]:
    cfg = Config(target=parse_target("sender.test"), resolvers=(CLOSED,), dns_timeout=1.0,
                 zone_files=(ZoneFileSpec(str(CORPUS / "keys.zone"), "test"),))
    ctx = Context(cfg, dnsnet.DnsClient(cfg.resolvers, timeout=1.0, overlay=load_overlay(cfg.zone_files)))
    try:
        msg = Message(raw, "test")
        parsed = email.message_from_bytes(raw, policy=email.policy.compat32)
        mctx = MessageContext(ctx, msg, headers.info_of(msg, parsed, **envelope))
        findings: list[Finding] = []
        for check in CHECKS:
            try:
                got = await check.run(mctx)
            except Skip:
                continue
            for f in got:
                check.CHECK.spec(f.id)      # declared
            findings += got
        return await mctx.auth(), findings
    finally:
        await ctx.close()


def run(raw: bytes, **envelope: str) -> tuple[AuthResults, list[Finding]]:
    return asyncio.run(judge(raw, **envelope))


@pytest.mark.parametrize("name", sorted(EXPECTED))
def test_corpus(name):
    want = EXPECTED[name]
    auth, findings = run((CORPUS / f"{name}.eml").read_bytes())
    ids = {f.id for f in findings}
    assert set(want.get("present", ())) <= ids, (sorted(ids), [f.summary for f in findings])
    assert not set(want.get("absent", ())) & ids, [f.summary for f in findings if f.id in want["absent"]]
    if "dkim" in want:
        assert [f"d={s.domain} s={s.selector} {s.result} {s.problem or '-'}" for s in auth.dkim] == want["dkim"]
    if "dmarc" in want:
        assert auth.dmarc is not None
        assert [auth.dmarc.rfc7489.result, auth.dmarc.dmarcbis.result] == want["dmarc"]
    if "arc" in want:
        assert auth.arc.result == want["arc"], auth.arc.reason
    if "sealers" in want:
        assert list(auth.arc.sealers) == want["sealers"]
    if "authserv_id" in want:
        assert auth.authres.receiver is not None and auth.authres.receiver.authserv_id == want["authserv_id"]
    if "disagreements" in want:
        assert [d.method for d in auth.disagreements] == want["disagreements"]
    if want.get("unsigned_tail"):
        assert auth.dkim[0].length_limit is not None and auth.dkim[0].body_unsigned > 0


def test_every_message_has_expectations():
    assert {p.stem for p in CORPUS.glob("*.eml")} == set(EXPECTED)


def test_the_corpus_is_the_generators_output(tmp_path):
    spec = importlib.util.spec_from_file_location("auth_corpus_generate", CORPUS / "generate.py")
    assert spec and spec.loader
    mod = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = mod
    try:
        spec.loader.exec_module(mod)
        mod.main(tmp_path)
    finally:
        sys.modules.pop(spec.name, None)
    made = sorted(p.name for p in tmp_path.iterdir())
    assert made == sorted(p.name for p in CORPUS.iterdir() if p.suffix in (".eml", ".zone"))
    for name in made:
        assert (tmp_path / name).read_bytes() == (CORPUS / name).read_bytes(), name


def _signed_elsewhere() -> bytes:
    """A message signed for a domain outside keys.zone: its key lookup goes to the closed resolver."""
    msg = (b"From: a@sender.example\r\nTo: b@receiver.test\r\nSubject: x\r\nDate: Tue, 01 Dec 2026 09:59:00 +0000\r\n"
           b"Message-ID: <1@sender.example>\r\n\r\nbody\r\n")
    pem = (CORPUS / "keys" / "sender-2048.pem").read_bytes()
    return dkim.sign(msg, b"s1", b"sender.example", pem, include_headers=[b"from", b"subject"]) + msg


def test_a_failed_key_lookup_is_temperror_never_a_verdict():
    t0 = time.monotonic()
    auth, findings = run(_signed_elsewhere())
    assert [(s.result, s.problem) for s in auth.dkim] == [("temperror", "temperror")]
    ids = {f.id for f in findings}
    assert "message_dkim.temperror" in ids and not ids & {"message_dkim.pass", "message_dkim.no_key"}
    assert all(f.inconclusive for f in findings if f.id == "message_dkim.temperror")
    # The From domain's DMARC lookup failed too: temperror, not fail and not none.
    assert auth.dmarc is not None and auth.dmarc.rfc7489.result == "temperror"
    assert "message_dmarc.temperror" in ids and "message_dmarc.none" not in ids
    assert time.monotonic() - t0 < 15


def _without_trace(raw: bytes) -> bytes:
    """The message as the author wrote it: no Return-Path, Received or Authentication-Results."""
    head, body = raw.split(b"\r\n\r\n", 1)
    keep, skip = [], False
    for line in head.split(b"\r\n"):
        if line[:1] in (b" ", b"\t"):
            if not skip:
                keep.append(line)
            continue
        skip = line.split(b":", 1)[0].lower() in (b"return-path", b"received", b"authentication-results")
        if not skip:
            keep.append(line)
    return b"\r\n".join(keep) + b"\r\n\r\n" + body


def test_without_an_address_spf_is_not_evaluated_and_dmarc_is_unknown():
    auth, findings = run(_without_trace((CORPUS / "spf-only.eml").read_bytes()))
    ids = {f.id for f in findings}
    assert auth.spf_mailfrom.result == "" and "message_spf.not_evaluated" in ids
    assert auth.dmarc is not None and auth.dmarc.rfc7489.result == "unknown"
    assert "message_dmarc.unknown" in ids and not ids & {"message_dmarc.fail_reject", "message_dmarc.pass"}


def test_options_make_the_envelope_proven_and_the_wording_says_so():
    raw = _without_trace((CORPUS / "spf-only.eml").read_bytes())
    auth, findings = run(raw, ip="203.0.113.10", mail_from="bounce@spfonly.test", helo="mail.spfonly.test")
    assert auth.spf_mailfrom.result == "pass" and not auth.spf_mailfrom.claimed
    spf = [f for f in findings if f.id == "message_spf.pass"]
    assert spf and "header claims" not in spf[0].summary and "option --ip" in spf[0].summary
    assert auth.dmarc is not None and auth.dmarc.rfc7489.result == "pass"
    claimed = run((CORPUS / "spf-only.eml").read_bytes())[1]
    assert any("the address the header claims" in f.summary for f in claimed if f.id == "message_spf.pass")


def test_garbage_authentication_results_is_a_note_not_a_crash():
    raw = (CORPUS / "good.eml").read_bytes()
    raw = b"Authentication-Results: mx.receiver.test; ((( =; \x01garbage\r\n" + raw
    auth, findings = run(raw)
    ids = {f.id for f in findings}
    assert "message_authres.unparseable" in ids
    assert "message_dkim.pass" in ids and "message_dmarc.pass" in ids


def test_repaired_fields_keep_their_results():
    from deliverck.message import auth_ar
    fields = auth_ar.read([
        ("Authentication-Results", "spf=pass (sender IP is 203.0.113.10) smtp.mailfrom=sender.test; dkim=pass "
                                   "(signature was verified) header.d=sender.test;dmarc=pass action=none "
                                   "header.from=sender.test;compauth=pass reason=100"),
        ("Received", "from a (a [203.0.113.10]) by mx.receiver.test; Tue, 01 Dec 2026 10:00:00 +0000"),
        ("Authentication-Results", "mta1.mail.yahoo.test; dkim=pass header.i=@sender.test header.s=s2048; "
                                   "dmarc=pass(p=REJECT) header.from=sender.test;"),
    ])
    ms, yahoo = fields.fields
    assert ms.authserv_id == "" and ms.repaired and [(m.method, m.result) for m in ms.methods][:3] == \
        [("spf", "pass"), ("dkim", "pass"), ("dmarc", "pass")]
    assert ms.results("dkim")[0].prop("header.d") == "sender.test"
    assert yahoo.authserv_id == "mta1.mail.yahoo.test" and yahoo.repaired and not yahoo.error
    # The second field lies below every Received field: no receiver wrote it.
    assert [f.index for f, _why in fields.forged] == [1]


def test_signatures_and_lookups_are_bounded_and_garbage_is_a_finding():
    raw = (CORPUS / "good.eml").read_bytes()
    head, rest = raw.split(b"DKIM-Signature:", 1)
    sig = b"DKIM-Signature:" + rest.split(b"\r\nFrom:", 1)[0] + b"\r\n"
    # Twelve selectors that do not exist: each would cost a lookup if the bound did not hold.
    extra = b"".join(sig.replace(b"s=s2048", b"s=x%d" % i) for i in range(11))
    garbage = b"DKIM-Signature: v=1; ;;; a==\x7f; this is not a tag list\r\n"
    from deliverck.message import auth_dkim
    hdrs = auth_dkim.message_headers(garbage + extra + raw)[0]
    assert len(auth_dkim.wanted_keys(hdrs)) <= auth_dkim.MAX_SIGNATURES
    auth, findings = run(head + garbage + extra + b"DKIM-Signature:" + rest)
    assert auth.dkim_count == 13 and len(auth.dkim) == auth_dkim.MAX_SIGNATURES
    assert (auth.dkim[0].result, auth.dkim[0].problem) == ("permerror", "syntax")
    assert all(s.problem == "no_key" for s in auth.dkim[1:])
    ids = {f.id for f in findings}
    assert {"message_dkim.syntax", "message_dkim.too_many", "message_dkim.no_key"} <= ids
