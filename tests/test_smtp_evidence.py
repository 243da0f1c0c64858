"""Issue 13: evidence and arguments a mail administrator recognises, each thing said once.

- A greeting finding carries the greeting exactly as the server sent it (`greeting`), and a
  server that closes before greeting is told apart (reason/outcome "closed_before_greeting"),
  so the NDR catalog can quote what Postfix would say.
- No library text (aiosmtplib's "Malformed SMTP response line", OpenSSL's "[SSL: ...]") in a
  summary or an argument: plain words there, the raw text kept in the evidence.
- The SMTP transcript is attached once per address (to the smtp check's finding), not to every
  finding of every check that reads the shared session.
- One cause, one finding: a weak signature that makes a chain untrusted is one error; an IPv6
  address refused while IPv4 works is one finding.

The probe-level tests use small real servers on loopback; the rest run the CLI in the lab.
"""

from __future__ import annotations

import asyncio
import json
import ssl

import pytest
from conftest import deliverck, validate_report

from deliverck.net.smtp import Outcome, ProbeOptions, probe

LIBRARY_WORDS = ("Malformed SMTP response line", "[SSL:", "_ssl.c", "Errno", "SMTPServerDisconnected")


def opts(**kw) -> ProbeOptions:
    return ProbeOptions(ehlo_name="probe.deliverck.invalid", timeout=kw.pop("timeout", 2), relay_test=False, **kw)


async def _serve(script):
    async def handle(reader, writer):
        try:
            await script(reader, writer)
        except (ConnectionError, asyncio.IncompleteReadError):
            pass
        finally:
            writer.close()

    server = await asyncio.start_server(handle, "127.0.0.1", 0)
    return server, server.sockets[0].getsockname()[1]


async def test_a_line_that_is_not_smtp_is_said_in_plain_words():
    async def http(reader, writer):
        writer.write(b"HTTP/1.1 400 Bad Request\r\nContent-Length: 0\r\n\r\n")
        await writer.drain()
        await asyncio.sleep(1)

    server, port = await _serve(http)
    async with server:
        s = await probe("127.0.0.1", "mx.example.test", port, opts())
    assert s.outcome is Outcome.NOT_SMTP
    assert s.detail == "the server sent a line that is not an SMTP reply: 'HTTP/1.1 400 Bad Request'"
    assert s.first_line == "HTTP/1.1 400 Bad Request"
    assert any("Malformed SMTP response line" in line for line in s.transcript)      # the raw text stays


async def test_closed_before_greeting_is_its_own_outcome():
    async def close(reader, writer):
        return

    server, port = await _serve(close)
    async with server:
        s = await probe("127.0.0.1", "", port, opts())
    assert s.outcome is Outcome.CLOSED
    assert s.detail == "the server closed the connection before sending a greeting"


async def test_a_greeting_is_quoted_as_sent():
    async def multi(reader, writer):
        writer.write(b"554-mx.example.test No SMTP service here\r\n554 5.3.2 Go away\r\n")
        await writer.drain()
        await reader.read(100)

    server, port = await _serve(multi)
    async with server:
        s = await probe("127.0.0.1", "", port, opts())
    assert s.outcome is Outcome.GREETING_REJECTED
    assert s.greeting.wire() == "554-mx.example.test No SMTP service here 554 5.3.2 Go away"


async def test_a_tls_handshake_failure_is_said_in_plain_words():
    """The server accepts STARTTLS and then answers in clear text: OpenSSL's WRONG_VERSION_NUMBER."""
    async def fake_tls(reader, writer):
        writer.write(b"220 mx.example.test ESMTP\r\n")
        await writer.drain()
        while line := await reader.readline():
            verb = line.split(b" ", 1)[0].strip().upper()
            if verb == b"EHLO":
                writer.write(b"250-mx.example.test\r\n250 STARTTLS\r\n")
            elif verb == b"STARTTLS":
                writer.write(b"220 2.0.0 Ready\r\n")
                await writer.drain()
                await reader.read(4096)                   # the ClientHello
                writer.write(b"HTTP/1.1 400 Bad Request\r\n\r\n" * 4)
                await writer.drain()
                await asyncio.sleep(0.5)
                return
            else:
                writer.write(b"250 OK\r\n")
            await writer.drain()

    server, port = await _serve(fake_tls)
    async with server:
        s = await probe("127.0.0.1", "mx.example.test", port, opts())
    assert s.outcome is Outcome.OK and s.tls is not None
    assert s.tls.error in ("the server's answer to the handshake was not TLS",
                           "the server closed the connection during the TLS handshake"), s.tls.error
    assert not any(w in s.tls.error for w in LIBRARY_WORDS)
    assert any("TLS handshake failed" in line for line in s.transcript)


def test_in_words_never_shows_the_exception_text():
    from deliverck.net.smtp import in_words

    e = ssl.SSLError(1, "[SSL: UNSUPPORTED_PROTOCOL] unsupported protocol (_ssl.c:1000)")
    e.reason = "UNSUPPORTED_PROTOCOL"
    assert in_words(e) == "the server and deliverck have no TLS version in common"
    assert in_words(ConnectionResetError(104, "Connection reset by peer")) == "the server closed the connection"
    assert in_words(OSError(113, "No route to host")) == "no route to host"
    assert "RuntimeError" in in_words(RuntimeError("internal detail xyz"))
    assert "internal detail" not in in_words(RuntimeError("internal detail xyz"))


# ---------------------------------------------------------------- the CLI in the lab

def audit(lab, domain: str, *args: str) -> dict:
    r = deliverck("--ca-file", lab.ca_file, "--trust-anchor", lab.trust_anchor, "--smtp-timeout", "3",
                  "--dns-timeout", "2", domain, "--json", *args)
    assert r.returncode in (0, 1, 3), r.stderr
    doc = json.loads(r.stdout)
    validate_report(doc)
    return doc


def every(doc: dict, fid: str | None = None) -> list[dict]:
    return [f for c in doc["checks"] for f in c["findings"] if fid is None or f["id"] == fid]


def test_rejecting_greeting_carries_the_exact_line(lab):
    doc = audit(lab, lab.scenario("greeting-554").domain)
    peer = lab.scenario("greeting-554").smtp[0]
    (f,) = every(doc, "smtp.greeting_rejected")
    assert f["args"]["greeting"] == peer.greeting == "554 No SMTP service here"
    (n,) = every(doc, "smtp.no_host_accepts")
    assert (n["args"]["greeting"], n["args"]["outcome"], n["args"]["ip"]) == (peer.greeting, "greeting_rejected",
                                                                              peer.address)


def test_closing_before_the_greeting_is_distinguishable(lab):
    doc = audit(lab, lab.scenario("closed").domain)
    (f,) = every(doc, "smtp.closed")
    assert f["args"]["reason"] == "closed_before_greeting"
    (n,) = every(doc, "smtp.no_host_accepts")
    assert n["args"]["outcome"] == "closed_before_greeting" and n["args"]["greeting"] == ""


def test_no_library_text_in_summaries_or_arguments(lab):
    doc = audit(lab, lab.scenario("not-smtp").domain)
    for f in every(doc):
        shown = f["summary"] + json.dumps(f["args"])
        assert not any(w in shown for w in LIBRARY_WORDS), f
    (f,) = every(doc, "smtp.not_smtp")
    assert f["args"]["greeting"] == "HTTP/1.1 400 Bad Request"
    assert "not an SMTP reply: 'HTTP/1.1 400 Bad Request'" in f["summary"]
    assert any("Malformed SMTP response line" in e for e in f["evidence"])    # raw text kept as evidence
    for p in doc["predicted_ndrs"]:
        assert not any(w in p["reply"] for w in LIBRARY_WORDS), p


@pytest.mark.parametrize("name", ["good", "smtp-good"])
def test_the_transcript_is_attached_once_per_address(lab, name):
    sc = lab.scenario(name)
    doc = audit(lab, sc.domain)
    probed = {p.address for p in sc.smtp}
    with_transcript = [f for f in every(doc) if "C: QUIT" in f["evidence"]]
    assert sorted(f["subject"] for f in with_transcript) == sorted(probed)
    assert {f["id"] for f in with_transcript} == {"smtp.greeting"}
    # the followers keep the lines that bear on them
    for f in every(doc, "starttls.ok"):
        assert f["evidence"][0] == "C: STARTTLS" and any(e.startswith("-- TLS established") for e in f["evidence"])
    for f in every(doc, "relay.closed"):
        assert [e for e in f["evidence"] if e.startswith("C: ")] == [
            "C: MAIL FROM:<deliverck-relay-test@example.org>", "C: RCPT TO:<deliverck-relay-test@example.net>"]


def test_the_table_shows_each_transcript_once_under_verbose(lab):
    sc = lab.scenario("smtp-good")
    r = deliverck("--ca-file", lab.ca_file, "--trust-anchor", lab.trust_anchor, "--smtp-timeout", "3",
                  sc.domain, "-v")
    assert r.returncode == 0, r.stdout[-2000:]
    assert r.stdout.count("C: QUIT") == len(sc.smtp), r.stdout


def test_weak_signature_and_the_untrust_it_causes_are_one_error(lab):
    doc = audit(lab, lab.scenario("weak-signature").domain)
    errors = [f for f in every(doc) if f["id"].startswith("starttls.") and f["severity"] == "error"]
    assert [f["id"] for f in errors] == ["starttls.weak_signature"]
    assert any("not trusted" in e for e in errors[0]["evidence"])
    assert any(e.startswith("certificate: ") and "sha1WithRSAEncryption" in e for e in errors[0]["evidence"])


def test_ipv6_refused_while_ipv4_works_is_one_finding(lab):
    sc = lab.scenario("ipv6-down")
    doc = audit(lab, sc.domain)
    v6 = [f for f in every(doc) if f["subject"].startswith("2001:db8:") and f["id"].startswith("smtp.")]
    assert [f["id"] for f in v6] == ["smtp.ipv6_unreachable"]
    assert any(e.startswith("-- connect to") for e in v6[0]["evidence"])
