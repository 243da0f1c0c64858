"""A real sending Postfix for `deliverck listen`, in the lab (a test harness; not deliverck).

    python -m deliverck.lab.sendtest CASE RCPT      (inside a lab; CASE: good, altered, unaligned,
                                                      noptr, notls, bulk-no-post)

deliverck itself never sends mail.  `deliverck listen` receives one, and this
harness (the sibling of bounces.py) is what sends it in the tests and the
demo: a private Postfix instance on the listen-sender scenario's addresses,
started on demand, and one message per case built here, DKIM-signed with
dkimpy and the scenario's own key (generated at lab start and exported by
dkim_keys.export to <lab>/dkim/listen-sender.test/s1.pem), then handed to
Postfix's own `sendmail`.  Postfix looks up the recipient domain's MX (the
listen-rcpt scenario: 198.51.100.110) and delivers over SMTP like any MTA,
so `listen` sees a real client address, HELO, TLS handshake and message.

Each case differs from `good` in one respect (the cause a receiver would
bounce for), chosen by the envelope sender through Postfix's
sender_dependent_default_transport_maps, so any recipient works:

  good          signed (d=listen-sender.test, s=s1), aligned, STARTTLS, FCrDNS address, one-click unsubscribe
  altered       a footer appended after signing (DKIM body hash mismatch), as a list server would;
                judged with --sender-profile bulk (DMARC still passes through SPF)
  unaligned     From: a listen-other.test address (DMARC p=reject, no DKIM key there): nothing aligns
  noptr         sent from 198.51.100.102 (in SPF, no PTR), HELO noptr.listen-sender.test
  notls         the client never uses STARTTLS (smtp_tls_security_level = none)
  bulk-no-post  List-Unsubscribe without List-Unsubscribe-Post (judge it with --sender-profile bulk)

Nothing leaves the namespace: it has only `lo`, and every address is a
documentation address.  The sender tries once (maximal_queue_lifetime = 0);
if nothing listens, the bounce lands in its own Maildir, never elsewhere.
"""

from __future__ import annotations

import email.utils
import os
import pwd
import signal
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

from deliverck.lab import dkim_keys, postfix

SCENARIO = "listen-sender"
DOMAIN = "listen-sender.test"
HOST = f"mail.{DOMAIN}"
NOPTR_HOST = f"noptr.{DOMAIN}"
ADDRESS = "198.51.100.101"           # PTR mail.listen-sender.test, A back (FCrDNS)
NOPTR_ADDRESS = "198.51.100.102"     # in SPF, no PTR
SELECTOR = "s1"
OTHER_DOMAIN = "listen-other.test"   # DMARC p=reject, no DKIM key: the unaligned From
RCPT_DOMAIN = "listen-rcpt.test"     # MX 198.51.100.110, where `deliverck listen` binds in the tests
LISTEN_ADDRESS = "198.51.100.110"
CASE_HEADER = "X-Deliverck-Lab-Case"
# What the good case signs (RFC 6376 section 5.4 recommends From, Subject, Date, To, Message-ID;
# RFC 8058 section 4 requires List-Unsubscribe and List-Unsubscribe-Post to be covered).
SIGNED = ("From", "To", "Subject", "Date", "Message-ID", "MIME-Version", "Content-Type",
          "List-Unsubscribe", "List-Unsubscribe-Post")
FOOTER = "\r\n--\r\nThis footer was added after signing, as a mailing list or an outbound gateway would.\r\n"


@dataclass(frozen=True)
class Case:
    name: str
    transport: str          # the master.cf service that delivers it
    from_domain: str        # of the From header
    unsubscribe: bool       # List-Unsubscribe (https + mailto)
    one_click: bool         # List-Unsubscribe-Post: List-Unsubscribe=One-Click
    altered: bool           # body changed after signing
    profile: str            # the --sender-profile it is judged with
    cause: str

    @property
    def envelope_from(self) -> str:
        """The envelope sender, which also picks the transport (one local part per case)."""
        return f"{self.name}@{DOMAIN}"


CASES: dict[str, Case] = {c.name: c for c in (
    Case("good", "smtp", DOMAIN, True, True, False, "transactional",
         "nothing: signed, aligned, TLS, forward-confirmed PTR, one-click unsubscribe"),
    # judged as a bulk sender: Gmail's bulk rule wants DKIM to pass (transactional mail still passes
    # DMARC here through aligned SPF, so the altered body alone would bounce nowhere)
    Case("altered", "smtp", DOMAIN, True, True, True, "bulk",
         "a footer appended to the body after signing: the DKIM body hash no longer matches"),
    Case("unaligned", "smtp", OTHER_DOMAIN, True, True, False, "transactional",
         f"From: {OTHER_DOMAIN} (DMARC p=reject) while SPF and DKIM pass for {DOMAIN}: DMARC fails"),
    Case("noptr", "noptr", DOMAIN, True, True, False, "transactional",
         f"sent from {NOPTR_ADDRESS}, which has no PTR record"),
    Case("notls", "notls", DOMAIN, True, True, False, "transactional",
         "the sending Postfix never uses STARTTLS (smtp_tls_security_level = none)"),
    Case("bulk-no-post", "smtp", DOMAIN, True, False, False, "bulk",
         "List-Unsubscribe without List-Unsubscribe-Post: List-Unsubscribe=One-Click (RFC 8058), bulk sender"),
)}

# No inet listener (a lab SMTP peer owns port 25 of both addresses): local pickup from `sendmail`,
# the smtp client (the good path), its two variants, and virtual(8) for bounces to the sender.
MASTER_CF = (postfix.COMMON_SERVICES
             + "virtual   unix  -       n       n       -       -       virtual\n"
             + "notls     unix  -       -       n       -       -       smtp\n"
             + "  -o smtp_tls_security_level=none\n"
             + "noptr     unix  -       -       n       -       -       smtp\n"
             + f"  -o smtp_bind_address={NOPTR_ADDRESS}\n"
             + f"  -o smtp_helo_name={NOPTR_HOST}\n")


def main_cf(d: Path) -> str:
    by_sender = ", ".join(f"{c.envelope_from}={c.transport}:" for c in CASES.values() if c.transport != "smtp")
    lines = postfix.sender_settings(d, HOST, DOMAIN, ADDRESS, f"@{DOMAIN}")   # bounces (if nothing listened) stay
    lines.update({
        "smtp_connect_timeout": "5s",
        "sender_dependent_default_transport_maps": f"inline:{{{by_sender}}}",
    })
    return "".join(f"{k} = {v}\n" for k, v in lines.items())


class Sender:
    """The sending Postfix: a private instance in <lab>/listen-sender/, started once and reused
    (its master runs in its own session, so it outlives a `python -m` call) until stop()."""

    def __init__(self, lab_dir: Path):
        self.lab_dir = Path(lab_dir)
        self.dir = self.lab_dir / "listen-sender"

    @property
    def pid_file(self) -> Path:
        return self.dir / "queue" / "pid" / "master.pid"

    def running_pid(self) -> int | None:
        try:
            pid = int(self.pid_file.read_text().split()[0])
            os.kill(pid, 0)
        except (OSError, ValueError, IndexError):
            return None
        return pid

    def write(self) -> None:
        d = self.dir
        d.mkdir(parents=True, exist_ok=True)
        (d / "main.cf").write_text(main_cf(d))
        (d / "master.cf").write_text(MASTER_CF)
        postfix.make_queue(d / "queue")
        owner = pwd.getpwnam("postfix")
        for sub in ("data", "mail"):
            (d / sub).mkdir(exist_ok=True)
            os.chown(d / sub, owner.pw_uid, owner.pw_gid)
        for parent in (d, d.parent):         # Postfix daemons reach their directories by absolute path
            parent.chmod(0o711)

    def start(self) -> None:
        if self.running_pid() is not None:
            return
        self.write()
        with open(self.dir / "postfix.out", "ab") as out:
            proc = subprocess.Popen(postfix.start_argv(self.dir), stdin=subprocess.DEVNULL, stdout=out,
                                    stderr=out, start_new_session=True)
        deadline = time.monotonic() + 10
        while not (self.dir / "queue" / "public" / "pickup").exists() or self.running_pid() is None:
            if proc.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError(f"the listen sender's Postfix did not start; see {self.dir / 'postfix.out'} "
                                   f"and {self.dir / 'maillog'}")
            time.sleep(0.05)

    def stop(self) -> None:
        pid = self.running_pid()
        if pid is None:
            return
        os.kill(pid, signal.SIGTERM)
        deadline = time.monotonic() + 5
        while self.running_pid() == pid and time.monotonic() < deadline:
            time.sleep(0.05)

    def submit(self, envelope_from: str, rcpt: str, data: bytes) -> None:
        """Hands the message to this instance's own sendmail (postdrop into its maildrop)."""
        sendmail = postfix.tool("sendmail") or "/usr/sbin/sendmail"
        r = subprocess.run([sendmail, "-C", str(self.dir), "-f", envelope_from, "-i", "--", rcpt],
                           input=data, capture_output=True, timeout=30)
        if r.returncode != 0:
            raise RuntimeError(f"sendmail failed: {r.stderr.decode(errors='replace').strip()}")

    def log(self) -> str:
        try:
            return (self.dir / "maillog").read_text(encoding="utf-8", errors="replace")
        except FileNotFoundError:
            return ""


def signing_key(lab_dir: Path) -> bytes:
    """The private key of s1._domainkey.listen-sender.test, as exported at lab start."""
    path = dkim_keys.exported(lab_dir, DOMAIN, SELECTOR)
    try:
        return path.read_bytes()
    except FileNotFoundError:
        raise RuntimeError(f"no exported DKIM key {path}: the lab must call dkim_keys.export(lab_dir) after "
                           "building its zones (deliverck/lab/plan.py prepare())") from None


def build(case: Case, rcpt: str, key: bytes, now: float | None = None) -> bytes:
    """The message of `case` to `rcpt`, DKIM-signed (CRLF line ends, as on the wire)."""
    import dkim

    token = email.utils.make_msgid(case.name, domain=DOMAIN)
    headers = [
        ("From", f"Lab sender <news@{case.from_domain}>"),
        ("To", rcpt),
        ("Subject", f"deliverck listen lab case {case.name}"),
        ("Date", email.utils.formatdate(now, localtime=False)),
        ("Message-ID", token),
        ("MIME-Version", "1.0"),
        ("Content-Type", "text/plain; charset=us-ascii"),
        ("Content-Transfer-Encoding", "7bit"),
    ]
    if case.unsubscribe:
        headers.append(("List-Unsubscribe",
                        f"<https://{DOMAIN}/unsubscribe?id={token.strip('<>').split('@')[0]}>, "
                        f"<mailto:unsubscribe@{DOMAIN}?subject=unsubscribe>"))
    if case.one_click:
        headers.append(("List-Unsubscribe-Post", "List-Unsubscribe=One-Click"))
    headers.append((CASE_HEADER, case.name))
    body = (f"A test message of the deliverck lab (case {case.name}).\r\n"
            f"What differs from the good case: {case.cause}.\r\n")
    raw = "".join(f"{k}: {v}\r\n" for k, v in headers).encode("ascii") + b"\r\n" + body.encode("ascii")
    signed = [h.lower().encode() for h in SIGNED if any(k == h for k, _v in headers)]
    signature = dkim.sign(raw, SELECTOR.encode(), DOMAIN.encode(), key, include_headers=signed,
                          canonicalize=(b"relaxed", b"relaxed"))
    message = signature + raw
    if case.altered:
        message += FOOTER.encode("ascii")
    return message


def send_case(name: str, rcpt: str, lab_dir: Path | None = None) -> None:
    """Send case `name` to `rcpt` through the lab's sending Postfix (started if it is not running)."""
    case = CASES.get(name)
    if case is None:
        raise ValueError(f"unknown case {name!r}; one of {', '.join(CASES)}")
    if lab_dir is None:
        from deliverck.lab import manifest

        m = manifest.current()
        if m.postfix is None:
            raise RuntimeError(f"Postfix is unavailable in this lab: {m.postfix_unavailable}")
        lab_dir = Path(m.lab_dir)
    sender = Sender(lab_dir)
    data = build(case, rcpt, signing_key(lab_dir))
    sender.start()
    sender.submit(case.envelope_from, rcpt, data)


def stop(lab_dir: Path | None = None) -> None:
    """Stop the sending Postfix if it runs (the lab's end stops it too)."""
    if lab_dir is None:
        from deliverck.lab import manifest

        lab_dir = Path(manifest.current().lab_dir)
    Sender(lab_dir).stop()


def main(argv: list[str]) -> int:
    if len(argv) == 1 and argv[0] == "stop":
        stop()
        return 0
    if len(argv) != 2 or argv[0] not in CASES:
        print(f"usage: python -m deliverck.lab.sendtest CASE RCPT   (inside a lab; CASE: {', '.join(CASES)})\n"
              "       python -m deliverck.lab.sendtest stop", file=sys.stderr)
        return 2
    try:
        send_case(argv[0], argv[1])
    except Exception as e:  # noqa: BLE001 - one line for the user
        print(f"deliverck.lab.sendtest: {e}", file=sys.stderr)
        return 1
    print(f"case {argv[0]} handed to the sending Postfix for {argv[1]}; its log: "
          f"{Sender(Path(_lab_dir())).dir / 'maillog'}")
    return 0


def _lab_dir() -> str:
    from deliverck.lab import manifest

    return manifest.current().lab_dir


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
