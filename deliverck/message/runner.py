"""One message -> one Report, with the same engine as an audit.

The message checks (deliverck.message.checks) judge the message; when the sending address is
known (listen's real session, --ip, or the topmost Received field's claim) the audit's own ptr,
dnsbl and helo checks judge that address and HELO name, exactly as `deliverck ADDRESS --helo NAME`
would.  Both sets run through runner.attempt (a deadline each, a crash becomes a finding) and are
judged together by verdict.judge, so the findings, the verdict and the predicted NDRs tell one story.
"""

from __future__ import annotations

import asyncio
import dataclasses
import email
import email.message
import email.policy
import ipaddress
import time
from collections.abc import AsyncIterator, Iterable

from deliverck import __version__
from deliverck.config import Config
from deliverck.context import Context
from deliverck.errors import IncompleteError
from deliverck.message.context import MessageContext
from deliverck.message.model import Message, MessageInfo, Session
from deliverck.model import CheckResult, Report, TargetInfo
from deliverck.net import dns as dnsnet
from deliverck.net.overlay import load_overlay
from deliverck.registry import Check, all_checks, message_checks
from deliverck.runner import _now, attempt
from deliverck.target import Target
from deliverck.verdict import judge

# The audit's checks that judge the sending side of a session: the address and the HELO name.
CONNECTION_CHECKS = ("ptr", "dnsbl", "helo")


@dataclasses.dataclass(frozen=True)
class Given:
    """The envelope the user stated (options) or the session showed (listen); None: not given."""

    ip: str | None = None
    helo: str | None = None
    mail_from: str | None = None
    session: Session | None = None


def info_of(message: Message, given: Given) -> tuple[MessageInfo, email.message.Message]:
    """The report's facts of MESSAGE, and the message parsed (compat32), which the checks read too."""
    from deliverck.message import headers

    parsed = email.message_from_bytes(message.raw, policy=email.policy.compat32)
    return headers.info_of(message, parsed, ip=given.ip, helo=given.helo, mail_from=given.mail_from,
                           session=given.session), parsed


def _connection_checks(config: Config) -> tuple[Check, ...]:
    return tuple(c for c in all_checks() if c.id in CONNECTION_CHECKS and config.selects(c.id))


def _is_ip(text: str) -> bool:
    try:
        ipaddress.ip_address(text)
    except ValueError:
        return False
    return True


async def _judge_one(config: Config, client: dnsnet.DnsClient, message: Message, info: MessageInfo,
                     parsed: email.message.Message) -> Report:
    started, t0 = _now(), time.monotonic()
    env = info.envelope
    ip = env.ip.value if env.ip is not None and _is_ip(env.ip.value) else ""
    helo = env.helo.value if env.helo is not None else ""
    mail_from = env.mail_from.value if env.mail_from is not None else ""
    notes = [f"{part} {claim.value or '<>'}: from the {claim.source}" + ("" if claim.proven else " (a claim, not a proof)")
             for part, claim in (("sending address", env.ip), ("HELO name", env.helo), ("envelope sender", env.mail_from))
             if claim is not None]
    msg_config = dataclasses.replace(config, target=Target(input=message.label, name=info.from_domain),
                                     outbound_ips=(ip,) if ip else (), helo_name=helo, sender=mail_from,
                                     helo_source=env.helo.source if env.helo is not None else "")
    contexts = [Context(msg_config, client)]
    mctx = MessageContext(contexts[0], message, info, parsed)
    jobs = [attempt(c, mctx) for c in message_checks() if config.selects(c.id)]
    if ip:
        conn_config = dataclasses.replace(msg_config, target=Target(input=ip, ip=ip))
        contexts.append(Context(conn_config, client))
        jobs += [attempt(c, contexts[1]) for c in _connection_checks(config) if c.id != "helo" or helo]
    try:
        results: list[CheckResult] = list(await asyncio.gather(*jobs))
        info = dataclasses.replace(info, authentication=await _authentication(mctx))
    finally:
        for ctx in contexts:
            await ctx.close()
    from deliverck.ndr.catalog import load as load_catalog

    receivers = config.receivers or load_catalog().default_receivers()
    j = judge(results, fail_on=config.fail_on, receivers=receivers, domain=info.from_domain or ip,
              sender=mail_from or None, overrides=config.severity_overrides, sender_profile=config.sender_profile)
    target = TargetInfo(input=message.label, name=info.from_domain, ip=ip, roles=("message",),
                        notes=tuple(notes) + info.notes)
    return Report(target=target, started=started, finished=_now(), duration_ms=int((time.monotonic() - t0) * 1000),
                  verdict=j.verdict, exit_code=j.exit_code, fail_on=config.fail_on, checks=j.checks,
                  predicted_ndrs=j.predicted_ndrs, resolvers=tuple(str(r) for r in client.resolvers),
                  receivers=tuple(receivers), tool_version=__version__, message=info,
                  zone_files=tuple((z["path"], z["origin"]) for z in client.overlay.describe())
                  if client.overlay is not None else ())


async def _authentication(mctx: MessageContext) -> dict | None:
    """The shared results the checks read, for the report; None when they could not be computed (a
    crash is reported by the checks that asked, as `<check>.crashed`)."""
    from deliverck.message import auth

    try:
        async with asyncio.timeout(mctx.config.check_timeout):
            return auth.summary(await mctx.auth())
    except (Exception, TimeoutError):
        return None


class MessageRun:
    """A DNS client shared by the messages of one command (a directory or mbox asks the same keys and
    policies again and again); the resolver is checked once, before the first message."""

    def __init__(self, config: Config) -> None:
        self.config = config
        overlay = load_overlay(config.zone_files) if config.zone_files else None
        self.client = dnsnet.DnsClient(config.resolvers, timeout=config.dns_timeout, overlay=overlay)
        self._checked = False

    async def judge(self, message: Message, given: Given = Given()) -> Report:
        info, parsed = info_of(message, given)
        if not self._checked:
            # Once per command, named after the first message's From domain: with --zone-file holding
            # that domain, a run without a usable resolver still judges what the file answers.
            ok, why = await self.client.reachable(info.from_domain)
            if not ok:
                raise IncompleteError(why)
            self._checked = True
        async with asyncio.timeout(self.config.deadline):
            return await _judge_one(self.config, self.client, message, info, parsed)

    async def close(self) -> None:
        await dnsnet.close(self.client)


async def run_messages(config: Config, messages: Iterable[Message], given: Given = Given()) -> AsyncIterator[Report]:
    run = MessageRun(config)
    try:
        for m in messages:
            yield await run.judge(m, given)
    finally:
        await run.close()


async def run_message(config: Config, message: Message, *, ip: str | None = None, helo: str | None = None,
                      mail_from: str | None = None, session: Session | None = None) -> Report:
    run = MessageRun(config)
    try:
        return await run.judge(message, Given(ip, helo, mail_from, session))
    finally:
        await run.close()
