"""The message checks that need no keys (message_format, message_bulk, message_transport) over the
corpus tests/messages/format/*.eml, with the findings each message must and must not give
(tests/messages/format/expected.toml).

The checks run as the runner runs them: a MessageContext over a real Context whose resolver is
never asked (these checks read only the message).  The bulk check reads the DKIM results of
auth.py; here they are stated per message in expected.toml, so that the judgement of those results
is tested without keys in DNS (the lab's signed messages test the verification itself)."""

from __future__ import annotations

import asyncio
import email
import email.policy
import tomllib
import types
from pathlib import Path

import pytest

from deliverck.context import Context
from deliverck.message.checks import bulk, transport
from deliverck.message.checks import format as fmt
from deliverck.message.context import MessageContext
from deliverck.message.headers import info_of
from deliverck.message.model import DkimSignature, Message, Session
from deliverck.model import Severity, Skip
from deliverck.net.dns import DnsClient
from deliverck.options import build_config

CORPUS = Path(__file__).parent / "messages" / "format"
EXPECTED = tomllib.loads((CORPUS / "expected.toml").read_text())["files"]
CHECKS = (fmt, bulk, transport)


def _signatures(rows: list[dict]) -> tuple[DkimSignature, ...]:
    return tuple(DkimSignature(index=i, domain=r["domain"], selector=r.get("selector", "s1"),
                               algorithm="rsa-sha256", result=r["result"], aligned=r.get("aligned", ""),
                               signed_headers=tuple(r.get("signed_headers", ())))
                 for i, r in enumerate(rows))


def judge(raw: bytes, *, profile: str = "transactional", dkim: tuple[DkimSignature, ...] = (),
          session: Session | None = None, label: str = "test.eml") -> dict[str, list]:
    """{check id: findings, or the Skip reason} for one message."""
    config = build_config("example.org", {"sender_profile": profile})
    message = Message(raw=raw, label=label)
    parsed = email.message_from_bytes(raw, policy=email.policy.compat32)
    info = info_of(message, parsed, session=session)

    async def go() -> dict[str, list]:
        ctx = Context(config, DnsClient([], timeout=0.1))
        mctx = MessageContext(ctx, message, info)

        async def auth() -> object:
            return types.SimpleNamespace(dkim=dkim)

        mctx.auth = auth  # type: ignore[method-assign]
        out: dict[str, list] = {}
        for check in CHECKS:
            try:
                out[check.CHECK.id] = await check.run(mctx)
            except Skip as e:
                out[check.CHECK.id] = [f"skipped: {e}"]
        return out

    return asyncio.run(go())


def _ids(results: dict[str, list]) -> dict[str, object]:
    return {f.id: f for fs in results.values() for f in fs if not isinstance(f, str)}


@pytest.mark.parametrize("case", sorted(EXPECTED))
def test_corpus(case: str) -> None:
    spec = EXPECTED[case]
    raw = (CORPUS / spec.get("file", case)).read_bytes()
    results = judge(raw, profile=spec.get("profile", "transactional"), dkim=_signatures(spec.get("dkim", [])))
    found = _ids(results)
    for fid in spec.get("present", []):
        assert fid in found, f"{case}: {fid} missing; got {sorted(found)}"
    for fid in spec.get("absent", []):
        assert fid not in found, f"{case}: {fid} should not appear: {found[fid].summary}"
    for fid, sev in spec.get("severity", {}).items():
        assert found[fid].severity is Severity.from_text(sev), f"{case}: {fid} is {found[fid].severity}"
    for fid, subject in spec.get("subject", {}).items():
        assert found[fid].subject == subject
    for check_id in spec.get("skipped", []):
        assert str(results[check_id][0]).startswith("skipped"), results[check_id]


def test_every_corpus_file_is_expected() -> None:
    named = {spec.get("file", case) for case, spec in EXPECTED.items()}
    assert {p.name for p in CORPUS.glob("*.eml")} == named


def test_declared_findings_only_and_evidence_is_exact() -> None:
    """Every finding is declared (CHECK.finding raises otherwise), and evidence quotes the header
    exactly, control characters included: the renderers escape, JSON keeps them."""
    raw = (CORPUS / "handoff-plain.eml").read_bytes().replace(b"by mx.example.net", b"by mx.example.net\x1b[31m", 1)
    found = _ids(judge(raw))
    assert "\x1b[31m" in "".join(found["message_transport.handoff_plain"].evidence)


def test_bulk_temperror_is_unknown_not_a_failure() -> None:
    raw = (CORPUS / "good.eml").read_bytes()
    sig = _signatures([{"domain": "example.org", "result": "temperror"}])
    found = _ids(judge(raw, profile="bulk", dkim=sig))
    assert "message_bulk.signature_unknown" in found and found["message_bulk.signature_unknown"].inconclusive
    assert "message_bulk.not_signed" not in found and "message_bulk.one_click" not in found


def _session(tls: str) -> Session:
    return Session(peer_ip="192.0.2.25", peer_port=40000, helo="smtp.example.org", esmtp=True, tls_version=tls,
                   tls_cipher="TLS_AES_256_GCM_SHA384" if tls else "", mail_from="bounces@example.org",
                   rcpt=("t@listen.example",), received_at="2024-12-03T10:00:05Z")


def test_session_without_starttls_is_an_error() -> None:
    raw = (CORPUS / "good.eml").read_bytes()
    found = _ids(judge(raw, session=_session("")))
    assert found["message_transport.session_no_tls"].severity is Severity.ERROR
    assert found["message_transport.session_no_tls"].subject == "192.0.2.25"
    assert "message_transport.session_tls" not in found


@pytest.mark.parametrize(("version", "old"), [("TLSv1.3", False), ("TLSv1.2", False), ("TLSv1.1", True),
                                              ("TLSv1", True)])
def test_session_tls_version(version: str, old: bool) -> None:
    found = _ids(judge((CORPUS / "good.eml").read_bytes(), session=_session(version)))
    assert "message_transport.session_tls" in found
    assert ("message_transport.session_old_tls" in found) is old


def test_session_hops_are_all_the_senders() -> None:
    """Under listen the header's hops are the sender's own: a plain hop there is the sender's, not
    a receiver's hand-off."""
    raw = (CORPUS / "handoff-plain.eml").read_bytes()
    found = _ids(judge(raw, session=_session("TLSv1.3")))
    assert "message_transport.handoff_plain" not in found
    lost = found["message_transport.tls_lost"]
    assert lost.owner.value == "mail_admin" and lost.severity is Severity.WARNING


def test_receiver_side_tls_loss_is_not_the_senders() -> None:
    """TLS that stops inside the receiving system (above the hand-off) is the receiver's, a notice."""
    raw = (CORPUS / "good.eml").read_bytes()
    inner = (b"Received: from mx.example.net (mx.example.net [198.51.100.80])\n\tby store.example.net (Postfix) "
             b"with ESMTP id 9; Tue,  3 Dec 2024 10:00:04 +0000\n")
    found = _ids(judge(inner + raw.split(b"\n", 3)[3]))
    lost = found["message_transport.tls_lost"]
    assert lost.owner.value == "receiver" and lost.severity is Severity.NOTICE


def test_summary_names_the_fields() -> None:
    found = _ids(judge((CORPUS / "good.eml").read_bytes()))
    f = found["message_format.fields"]
    assert "news@example.org" in f.summary and "<20241203100000.12345@example.org>" in f.summary


def test_the_registry_runs_these_checks() -> None:
    """The runner finds the checks by the registry (every module of deliverck.message.checks), with
    the NDR links of the catalog: a check missing there would never run."""
    from deliverck.registry import message_checks

    found = {c.id: c for c in message_checks()}
    for check in CHECKS:
        assert check.CHECK.id in found
        declared = {f.id for f in found[check.CHECK.id].spec.findings}
        assert {f.id for f in check.CHECK.findings} <= declared
