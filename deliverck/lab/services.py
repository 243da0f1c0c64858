"""The lab's Python servers in one process: misbehaving DNS, SMTP peers, latency proxy,
MTA-STS policy servers, filtered KDCs.

Run inside the namespace as `python -m deliverck.lab.services <lab dir>`; it
prints "ready" on stdout once every socket is bound, then serves until killed.
"""

from __future__ import annotations

import asyncio
import json
import signal
import sys
from pathlib import Path

from deliverck.lab import badns, https_peer, kdc, latency, smtp_peers


async def main(lab_dir: Path) -> None:
    config = json.loads((lab_dir / "services.json").read_text(encoding="utf-8"))
    held = []
    for s in config["badns"]:
        held += await badns.serve(s["address"], s["behaviour"])
    log = smtp_peers.SessionLog(Path(config["smtp_log"]))
    for p in config["smtp"]:
        held += await smtp_peers.serve(smtp_peers.Peer.from_config(p), log)
    held += await https_peer.serve_all(lab_dir)        # MTA-STS policy servers ([https] scenarios)
    for k in config.get("kdc", []):
        if k["behaviour"] == "filtered":                 # mit KDCs are krb5kdc processes (inside.py)
            held += await kdc.serve_filtered(k["address"])
    if config.get("latency"):
        lat = config["latency"]
        for address in lat["listen"]:
            held += await latency.serve(address, lat["upstream"], lat["delay_ms"])
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    print("ready", flush=True)
    await stop.wait()


if __name__ == "__main__":
    asyncio.run(main(Path(sys.argv[1])))
