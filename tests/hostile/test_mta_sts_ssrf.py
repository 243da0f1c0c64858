"""Issue 14, item 2: the MTA-STS fetch never reaches an address deliverck did not resolve and vet itself.

The policy host of hostile-mta-sts-loopback.test has one public address (nothing
answers HTTPS there) and the loopback addresses 127.0.0.1 and ::1, where this
test listens on port 443 and serves a policy.  Before the fix, the check only
required one public address and let the HTTP library resolve the name again
(through the system resolver, ignoring --resolver and --zone-file): it connected
to loopback and quoted the body back.  Now the fetch goes only to the public
address the run resolved; loopback sees no connection and the policy is "not
checked" (or a failed fetch), never read.
"""

from __future__ import annotations

import json
import socket
import threading

import pytest
from conftest import deliverck

DOMAIN = "hostile-mta-sts-loopback.test"
SECRET = b"version: STSv1\nmode: enforce\nmx: loopback-secret.invalid\nmax_age: 86400\n"


class _Listener:
    """Accepts on loopback port 443, counts connections, answers with a policy-looking body."""

    def __init__(self, family: int, address: str):
        self.sock = socket.socket(family, socket.SOCK_STREAM)
        self.sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self.sock.bind((address, 443))
        self.sock.listen(16)
        self.sock.settimeout(0.2)
        self.accepted = 0
        self.stop = threading.Event()
        self.thread = threading.Thread(target=self._serve, daemon=True)
        self.thread.start()

    def _serve(self) -> None:
        while not self.stop.is_set():
            try:
                conn, _ = self.sock.accept()
            except (TimeoutError, OSError):
                continue
            self.accepted += 1
            try:
                conn.sendall(b"HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\n\r\n" + SECRET)
            except OSError:
                pass
            conn.close()

    def close(self) -> None:
        self.stop.set()
        self.thread.join(2)
        self.sock.close()


@pytest.fixture
def loopback_listeners(lab):
    listeners = [_Listener(socket.AF_INET, "127.0.0.1"), _Listener(socket.AF_INET6, "::1")]
    yield listeners
    for x in listeners:
        x.close()


def test_policy_is_never_fetched_from_loopback(loopback_listeners):
    r = deliverck(DOMAIN, "--only", "mta_sts", "--json", "--smtp-timeout", "3")
    assert r.returncode in (0, 1, 3), r.stderr
    assert "Traceback" not in r.stderr
    doc = json.loads(r.stdout)
    ids = [f["id"] for c in doc["checks"] for f in c["findings"]]
    assert "mta_sts.record_ok" in ids
    assert "mta_sts.policy_ok" not in ids and "mta_sts.policy_syntax" not in ids, ids
    assert "loopback-secret" not in r.stdout
    assert sum(x.accepted for x in loopback_listeners) == 0
    # the fetch names the public address it used, not loopback
    fetch = [e for c in doc["checks"] for f in c["findings"] for e in f["evidence"] if e.startswith("GET ")]
    assert all("127.0.0.1" not in e and "::1" not in e for e in fetch), fetch


def test_probe_private_is_the_only_way_to_loopback(loopback_listeners):
    """--probe-private lifts the guard on purpose (a lab of one's own): then loopback is fetched."""
    r = deliverck(DOMAIN, "--only", "mta_sts", "--json", "--smtp-timeout", "3", "--probe-private")
    assert "Traceback" not in r.stderr
    assert sum(x.accepted for x in loopback_listeners) >= 1
