"""`deliverck listen`'s receiver (issue 18, "deliverck listen"): a real SMTP client (aiosmtplib) talks to
the real server on 127.0.0.1 and a free port.  No lab: loopback only.  Sending DATA to our own
listener is receiving-side testing; deliverck itself never sends a message."""

from __future__ import annotations

import asyncio
import errno
import socket
import time
from pathlib import Path

import aiosmtplib
import pytest

from deliverck.errors import UsageError
from deliverck.message.listen import ListenError, ListenOptions, Ready, receive
from deliverck.message.listen_tls import self_signed

MESSAGE = (b"From: Alice <alice@sender.example>\r\nTo: t@rcpt.example\r\nSubject: test\r\n"
           b"Date: Sat, 05 Dec 2026 12:00:00 +0000\r\nMessage-ID: <1@sender.example>\r\n\r\n"
           b"..a line that starts with a dot\r\nbody\r\n")
UNSTUFFED = MESSAGE         # aiosmtplib stuffs the dots on the wire; the receiver must undo exactly that


class Run:
    """One `receive` in the background, with what it reported."""

    def __init__(self, **options):
        defaults = dict(address="127.0.0.1", port=0, rcpt="t@rcpt.example", timeout=10.0,
                        hostname="mx.listen.example")
        self.opts = ListenOptions(**{**defaults, **options})
        self.messages: list = []
        self.ready: asyncio.Future[Ready] | None = None
        self.task: asyncio.Task[int] | None = None
        self.judged = asyncio.Event()
        self.hold: asyncio.Event | None = None

    async def start(self) -> Ready:
        self.ready = asyncio.get_running_loop().create_future()

        async def on_message(message, session):
            if self.hold is not None:
                await self.hold.wait()
            self.messages.append((message, session))
            self.judged.set()

        self.task = asyncio.create_task(receive(self.opts, self.ready.set_result, on_message))
        done, _ = await asyncio.wait({self.ready, self.task}, timeout=10, return_when=asyncio.FIRST_COMPLETED)
        if self.task in done:
            self.task.result()
        return self.ready.result()

    async def result(self, within: float = 15) -> int:
        assert self.task is not None
        return await asyncio.wait_for(self.task, within)


async def client(port: int, tls: bool = False, helo: str = "mail.sender.example") -> aiosmtplib.SMTP:
    c = aiosmtplib.SMTP(hostname="127.0.0.1", port=port, start_tls=False, timeout=5)
    await c.connect()
    await c.ehlo(hostname=helo)
    if tls:
        await c.starttls(validate_certs=False)
        await c.ehlo(hostname=helo)
    return c


async def send(port: int, rcpt: str = "t@rcpt.example", mail_from: str = "bounce@sender.example",
               tls: bool = False, data: bytes = MESSAGE) -> aiosmtplib.SMTPResponse:
    c = await client(port, tls)
    try:
        await c.mail(mail_from)
        await c.rcpt(rcpt)
        reply = await c.data(data)
        await c.quit()
        return reply
    finally:
        c.close()


async def test_plain_session_and_exact_bytes():
    run = Run()
    ready = await run.start()
    reply = await send(ready.port)
    assert reply.code == 250
    assert await run.result() == 1
    (message, session), = run.messages
    assert message.raw == UNSTUFFED and message.label == "listen"
    assert session.peer_ip == "127.0.0.1" and session.peer_port > 0
    assert session.helo == "mail.sender.example" and session.esmtp
    assert session.tls_version == "" and session.tls_cipher == ""
    assert session.mail_from == "bounce@sender.example" and session.rcpt == ("t@rcpt.example",)
    assert session.local_address == f"127.0.0.1:{ready.port}"
    assert session.received_at.endswith("Z")


async def test_starttls_version_and_cipher_recorded_and_no_auth():
    run = Run()
    ready = await run.start()
    assert ready.tls.startswith("self-signed for mx.listen.example")
    c = await client(ready.port)
    assert c.supports_extension("starttls") and not c.supports_extension("auth")
    assert c.supports_extension("size") and c.esmtp_extensions["size"] == str(run.opts.max_size)
    await c.starttls(validate_certs=False)
    ehlo = await c.ehlo(hostname="mail.sender.example")
    assert "STARTTLS" not in ehlo.message.upper() and "AUTH" not in ehlo.message.upper()
    for verb in ("VRFY t", "EXPN list", "AUTH PLAIN AGFhAGI="):
        assert (await c.execute_command(verb.encode())).code == 502
    await c.mail("bounce@sender.example")
    await c.rcpt("t@rcpt.example")
    assert (await c.data(MESSAGE)).code == 250
    await c.quit()
    await run.result()
    session = run.messages[0][1]
    assert session.tls_version in ("TLSv1.2", "TLSv1.3")
    assert session.tls_cipher


async def test_tls_version_is_the_negotiated_one():
    """A sender limited to TLS 1.2 is recorded as TLS 1.2, with a TLS 1.2 cipher: the session reads the
    real handshake, not a constant."""
    import ssl

    run = Run()
    ready = await run.start()
    ctx = ssl.create_default_context()
    ctx.check_hostname = False
    ctx.verify_mode = ssl.CERT_NONE
    ctx.maximum_version = ssl.TLSVersion.TLSv1_2
    c = await client(ready.port)
    await c.starttls(tls_context=ctx)
    await c.ehlo(hostname="[192.0.2.7]")
    await c.sendmail("", ["t@rcpt.example"], MESSAGE)
    await c.quit()
    await run.result()
    session = run.messages[0][1]
    assert session.tls_version == "TLSv1.2" and not session.tls_cipher.startswith("TLS_AES")
    assert session.helo == "[192.0.2.7]" and session.mail_from == ""


async def test_ipv6_bind_and_token_literal():
    run = Run(address="::1", rcpt=None, hostname="localhost")
    try:
        ready = await run.start()
    except OSError:
        pytest.skip("no IPv6 loopback here")
    assert ready.rcpt.endswith("@[IPv6:::1]")
    c = aiosmtplib.SMTP(hostname="::1", port=ready.port, start_tls=False, timeout=5)
    await c.connect()
    await c.sendmail("a@sender.example", [ready.rcpt.replace("[IPv6:::1]", "any.example")], MESSAGE)
    await c.quit()
    assert await run.result() == 1
    session = run.messages[0][1]
    assert session.peer_ip == "::1" and session.local_address == f"[::1]:{ready.port}"


async def test_given_certificate(tmp_path: Path):
    cert, key = self_signed("given.listen.example")
    (tmp_path / "c.pem").write_bytes(cert)
    (tmp_path / "k.pem").write_bytes(key)
    run = Run(tls_cert=tmp_path / "c.pem", tls_key=tmp_path / "k.pem")
    ready = await run.start()
    assert ready.tls == f"given certificate {tmp_path / 'c.pem'}"
    c = await client(ready.port, tls=True)
    der = c.transport.get_extra_info("ssl_object").getpeercert(binary_form=True)
    from cryptography import x509
    assert "given.listen.example" in x509.load_der_x509_certificate(der).subject.rfc4514_string()
    await c.quit()
    run.task.cancel()


async def test_wrong_recipient_and_relay_refused():
    run = Run(timeout=3)
    ready = await run.start()
    c = await client(ready.port)
    await c.mail("")                            # the null sender is accepted
    codes = {}
    for rcpt in ("T@rcpt.example", "other@rcpt.example", "someone@gmail.com", "t@rcpt.example.net"):
        try:
            await c.rcpt(rcpt)
            codes[rcpt] = "250"
        except aiosmtplib.SMTPRecipientRefused as e:
            codes[rcpt] = f"{e.code} {e.message[:5]}"
    assert codes == {"T@rcpt.example": "550 5.1.1", "other@rcpt.example": "550 5.1.1",
                     "someone@gmail.com": "550 5.7.1", "t@rcpt.example.net": "550 5.7.1"}
    reply = await c.execute_command(b"DATA")
    assert reply.code == 503                    # no recipient was accepted: nothing to take
    await c.rcpt("t@RCPT.Example")              # the domain is case-insensitive
    assert (await c.data(MESSAGE)).code == 250
    await c.quit()
    assert await run.result() == 1
    session = run.messages[0][1]
    assert session.mail_from == "" and session.rcpt == ("t@RCPT.Example",)


async def test_token_address_any_domain():
    run = Run(rcpt=None)
    ready = await run.start()
    local, _, domain = ready.rcpt.rpartition("@")
    assert local.startswith("deliverck-") and len(local) > len("deliverck-") + 8
    assert domain == "mx.listen.example" and ready.any_domain
    with pytest.raises(aiosmtplib.SMTPRecipientRefused):
        await send(ready.port, rcpt="deliverck-0000000000@test.example.org")
    assert (await send(ready.port, rcpt=f"{local}@test.example.org")).code == 250
    assert await run.result() == 1


async def test_reply_451_answered_and_message_still_judged():
    run = Run(reply="451")
    ready = await run.start()
    with pytest.raises(aiosmtplib.SMTPDataError) as e:
        await send(ready.port)
    assert e.value.code == 451 and e.value.message.startswith("4.")
    assert await run.result() == 1 and run.messages[0][0].raw == UNSTUFFED


async def test_on_message_awaited_after_the_reply():
    run = Run()
    run.hold = asyncio.Event()                 # the judgement blocks until the sender has its 250
    ready = await run.start()
    reply = await asyncio.wait_for(send(ready.port), 5)
    assert reply.code == 250 and not run.messages
    run.hold.set()
    assert await run.result() == 1


async def test_count_honoured():
    run = Run(count=2)
    ready = await run.start()
    await send(ready.port)
    await send(ready.port, tls=True)
    assert await run.result() == 2
    assert [s.tls_version != "" for _, s in run.messages] == [False, True]
    with pytest.raises((OSError, aiosmtplib.SMTPException)):   # the server is gone: nothing more taken
        await send(ready.port)


async def test_timeout_honoured_from_start():
    run = Run(timeout=1.0)
    started = time.monotonic()
    ready = await run.start()
    c = await client(ready.port)               # an open, idle session does not keep it alive
    assert await run.result(within=6) == 0
    assert time.monotonic() - started < 1.0 + 2.5
    with pytest.raises((aiosmtplib.SMTPException, OSError)):
        await c.noop()


async def test_one_data_at_a_time():
    """Memory holds one message being received: a second DATA meanwhile gets 451 4.3.2 and retries."""
    run = Run()
    ready = await run.start()
    first, second = await client(ready.port), await client(ready.port)
    for c in (first, second):
        await c.mail("bounce@sender.example")
        await c.rcpt("t@rcpt.example")
    assert (await first.execute_command(b"DATA")).code == 354
    first.transport.write(b"Subject: half\r\n")           # the first message is still arriving
    busy = await second.execute_command(b"DATA")
    assert busy.code == 451 and busy.message.startswith("4.3.2")
    first.transport.write(b"\r\nbody\r\n.\r\n")
    done = await first.protocol.read_response(timeout=5)
    assert done.code == 250 and done.message.startswith("2.0.0")
    await first.quit()
    second.close()
    assert await run.result() == 1 and run.messages[0][0].raw == b"Subject: half\r\n\r\nbody\r\n"


async def test_size_announced_and_enforced_then_usable():
    run = Run(max_size=4096)
    ready = await run.start()
    c = await client(ready.port)
    with pytest.raises(aiosmtplib.SMTPResponseException) as e:
        await c.mail("bounce@sender.example", options=["SIZE=5000"])
    assert e.value.code == 552
    await c.mail("bounce@sender.example")
    await c.rcpt("t@rcpt.example")
    with pytest.raises(aiosmtplib.SMTPDataError) as e:
        await c.data(MESSAGE + b"x" * 70 + b"\r\n" * 60 + (b"y" * 70 + b"\r\n") * 60)
    assert e.value.code == 552 and e.value.message.startswith("5.3.4")
    assert (await c.noop()).code == 250         # the connection is still in a sane state
    await c.mail("bounce@sender.example")
    await c.rcpt("t@rcpt.example")
    assert (await c.data(MESSAGE)).code == 250
    await c.quit()
    assert await run.result() == 1 and run.messages[0][0].raw == UNSTUFFED


async def test_overlong_line_refused_not_buffered():
    run = Run(timeout=1)
    ready = await run.start()
    c = await client(ready.port)
    await c.mail("bounce@sender.example")
    await c.rcpt("t@rcpt.example")
    with pytest.raises(aiosmtplib.SMTPDataError) as e:
        await c.data(MESSAGE + b"z" * 5000 + b"\r\n")
    assert e.value.code == 500 and e.value.message.startswith("5.5.2")
    await c.quit()
    assert await run.result() == 0


@pytest.mark.parametrize("options, words", [
    (dict(address="mail.example.org"), "--address"),
    (dict(address="0.0.0.0", port=70000), "--port"),
    (dict(reply="550"), "--reply"),
    (dict(reply="250 ok"), "--reply"),
    (dict(rcpt="no-at-sign"), "--rcpt"),
    (dict(rcpt="a b@example.org"), "--rcpt"),
    (dict(timeout=0), "--timeout"),
    (dict(count=0), "--count"),
    (dict(tls_cert=Path("/nonexistent.pem")), "--tls-key"),
    (dict(tls_cert=Path("/nonexistent.pem"), tls_key=Path("/nonexistent.key")), "no such file"),
])
async def test_bad_options_one_line(options, words):
    with pytest.raises(UsageError) as e:
        await receive(ListenOptions(**{"address": "127.0.0.1", "port": 0, **options}), print, _never)
    assert words in str(e.value) and "\n" not in str(e.value)


async def test_key_not_matching_certificate(tmp_path: Path):
    cert, _ = self_signed("a.example")
    _, key = self_signed("b.example")
    (tmp_path / "c.pem").write_bytes(cert)
    (tmp_path / "k.pem").write_bytes(key)
    with pytest.raises(UsageError) as e:
        await receive(ListenOptions(address="127.0.0.1", port=0, tls_cert=tmp_path / "c.pem",
                                    tls_key=tmp_path / "k.pem"), print, _never)
    assert "key matches" in str(e.value) and "\n" not in str(e.value)


async def test_address_in_use_is_one_line_oserror():
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        with pytest.raises(ListenError) as e:
            await receive(ListenOptions(address="127.0.0.1", port=port), print, _never)
    assert isinstance(e.value, OSError) and e.value.errno == errno.EADDRINUSE
    assert str(e.value).startswith(f"127.0.0.1 port {port} is already in use") and "\n" not in str(e.value)


async def _never(message, session):
    raise AssertionError("no message expected")


def test_recipient_matching_and_client_key():
    from deliverck.message.listen_smtp import Recipient, client_key, peer_ip

    exact = Recipient("Test.User", "rcpt.example", frozenset({"rcpt.example"}))
    assert exact.matches("Test.User@RCPT.example") and not exact.matches("test.user@rcpt.example")
    assert not exact.matches("Test.User@rcpt.example.org") and not exact.matches("Test.User")
    assert exact.ours("x@Rcpt.Example") and not exact.ours("x@gmail.com")
    token = Recipient("deliverck-abc", None)
    assert token.matches("deliverck-abc@any.example") and not token.matches("deliverck-abc@")
    assert client_key("2001:db8:1:2::5") == client_key("2001:db8:1:2:ffff::9") == "2001:db8:1:2::/64"
    assert client_key("192.0.2.1") != client_key("192.0.2.2")
    assert peer_ip(("::ffff:192.0.2.9", 25, 0, 0)) == ("192.0.2.9", 25)


async def test_helo_not_ehlo_recorded():
    run = Run()
    ready = await run.start()
    c = aiosmtplib.SMTP(hostname="127.0.0.1", port=ready.port, start_tls=False, timeout=5)
    await c.connect()
    await c.helo(hostname="old-mta")
    await c.mail("bounce@sender.example")
    await c.rcpt("t@rcpt.example")
    assert (await c.data(MESSAGE)).code == 250
    await c.quit()
    await run.result()
    session = run.messages[0][1]
    assert session.helo == "old-mta" and session.esmtp is False and session.tls_version == ""
