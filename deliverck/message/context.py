"""What a message check sees: the message, its envelope claims, the session (listen), DNS.

A message check is a module of deliverck.message.checks with CHECK (a CheckSpec) and
`async def run(mctx: MessageContext) -> list[Finding]`, run by the same runner attempt as the
audit's checks (deadline, crash -> finding).  DNS goes through the audit's Context (`mctx.ctx`), so
--resolver, --zone-file, the DNS cache and the timeouts apply; the authentication results (DKIM,
ARC, SPF, DMARC) are computed once per message by `await mctx.auth()` and shared by the checks.
"""

from __future__ import annotations

import email
import email.message
import email.policy
from typing import TYPE_CHECKING, Any

from deliverck.config import Config
from deliverck.context import Context
from deliverck.message.model import Envelope, Message, MessageInfo, Session

if TYPE_CHECKING:
    from deliverck.message.auth import AuthResults


class MessageContext:
    def __init__(self, ctx: Context, message: Message, info: MessageInfo,
                 parsed: email.message.Message | None = None) -> None:
        self.ctx = ctx
        self.config: Config = ctx.config
        self.target = ctx.target
        self.message = message
        self.info = info
        self._parsed = parsed           # the runner's parse, which read the header for `info`

    @property
    def envelope(self) -> Envelope:
        return self.info.envelope

    @property
    def session(self) -> Session | None:
        return self.info.session

    @property
    def from_domain(self) -> str:
        return self.info.from_domain

    @property
    def parsed(self) -> email.message.Message:
        """The message parsed leniently (compat32: header values exactly as written), once."""
        if self._parsed is None:
            self._parsed = email.message_from_bytes(self.message.raw, policy=email.policy.compat32)
        return self._parsed

    async def auth(self) -> AuthResults:
        """DKIM, ARC, SPF and DMARC of this message, computed once (deliverck.message.auth)."""
        from deliverck.message import auth

        async def compute() -> Any:
            return await auth.authenticate(self)

        return await self.ctx.fact(("message-auth", id(self.message)), compute)
