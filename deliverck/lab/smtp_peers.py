"""SMTP peers: greet, answer EHLO, and refuse DATA, so nothing is ever delivered."""

from __future__ import annotations

import asyncio

from aiosmtpd.smtp import SMTP

IDENT = "ESMTP deliverck-lab"


class _Handler:
    """No handle_DATA: DATA never gets that far."""


class LabSMTP(SMTP):
    async def smtp_DATA(self, arg: str) -> None:
        await self.push("554 5.7.1 deliverck lab: this peer never accepts a message")


async def serve(address: str, hostname: str, port: int = 25):
    loop = asyncio.get_running_loop()
    return await loop.create_server(
        lambda: LabSMTP(_Handler(), hostname=hostname, ident=IDENT, timeout=60),
        host=address, port=port)
