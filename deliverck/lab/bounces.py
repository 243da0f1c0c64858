"""Real bounces from a real Postfix, made in the lab on request (a test harness; not deliverck).

    python -m deliverck.lab.bounces OUTDIR       (inside a lab; `deliverck lab bounces OUTDIR` makes one)

deliverck itself never sends mail.  This harness, used only by tests and by
`deliverck lab bounces`, starts a *sending* Postfix inside the lab's network
namespace, on the bounce-sender scenario's address (198.51.100.241, no PTR,
listed on the lab's zen.spamhaus.org), hands it one small test message per
case with its own `sendmail`, and lets it deliver to lab destinations that
fail for real: the Postfix receivers of the bounce-* scenarios (restrictions
in their `[peer.postfix]` tables), and existing lab scenarios (nxdomain,
smtp-refused, no-starttls, ...).  Every receiver refuses DATA (no lab peer
takes a message), so every case fails at connect, TLS, HELO, MAIL or RCPT.

The sender tries each message once (maximal_queue_lifetime = 0), so
temporary failures bounce at once too, and delivers its bounces (DSNs,
RFC 3464 multipart/report) to sender@bounce-sender.test, a Maildir in its
instance directory.  `collect()` returns {case: DSN path}.

Nothing leaves the namespace: it has only `lo`, and every address is a
documentation address.
"""

from __future__ import annotations

import email
import email.policy
import email.utils
import os
import pwd
import signal
import subprocess
import sys
import time
from dataclasses import dataclass
from email.message import EmailMessage
from pathlib import Path

from deliverck.lab import postfix

SENDER_SCENARIO = "bounce-sender"
SENDER_HOST = "sender.bounce-sender.test"
SENDER_DOMAIN = "bounce-sender.test"
ENVELOPE_FROM = f"sender@{SENDER_DOMAIN}"
CASE_HEADER = "X-Deliverck-Lab-Case"
BAD_HELO = "mail"                  # what the `badhelo` transport greets with: not fully qualified
CONNECT_TIMEOUT = 2                # seconds; the filtered case waits this long
DEADLINE = 60.0                    # for every DSN to arrive


@dataclass(frozen=True)
class Case:
    name: str               # file stem: <name>.eml
    recipient: str
    category: str           # deliverck/ndr/categories.py id: what `deliverck explain` should say
    status: str             # the DSN's Status: field (RFC 3463)
    diagnostic: str         # a piece of the DSN's Diagnostic-Code: field
    cause: str              # what the lab did to make it fail
    size: int = 0           # extra body bytes (the size case)
    transport: str = ""     # a sender transport other than smtp (master.cf below)


CASES: tuple[Case, ...] = (
    Case("user-unknown", "nobody@bounce-rcpt.test", "user_unknown", "5.1.1",
         "550 5.1.1 <nobody@bounce-rcpt.test>: Recipient address rejected: User unknown in local recipient table",
         "the receiving Postfix (bounce-rcpt) has local_recipient_maps with postmaster only"),
    Case("relay-denied", "someone@elsewhere.bounce-rcpt.test", "relay_denied", "5.7.1",
         "554 5.7.1 <someone@elsewhere.bounce-rcpt.test>: Relay access denied",
         "elsewhere.bounce-rcpt.test's MX is a Postfix that is not its destination (reject_unauth_destination)"),
    Case("message-too-large", "postmaster@bounce-rcpt.test", "message_too_large", "5.3.4",
         "message size", "the receiving Postfix announces SIZE 20000 (message_size_limit); the message is "
         "about 60 kB, so the sending Postfix gives up before MAIL FROM", size=60_000),
    Case("mailbox-full", "full@bounce-rcpt.test", "mailbox_full", "5.2.2",
         "552 5.2.2 <full@bounce-rcpt.test>: Recipient address rejected: Mailbox full",
         "an access map on the receiving Postfix answers 552 5.2.2 Mailbox full for this recipient "
         "(configured reply text; Postfix itself has no quotas)"),
    Case("mailbox-disabled", "disabled@bounce-rcpt.test", "mailbox_disabled", "5.2.1",
         "550 5.2.1 <disabled@bounce-rcpt.test>: Recipient address rejected: Mailbox disabled",
         "an access map on the receiving Postfix answers 550 5.2.1 Mailbox disabled (configured reply text)"),
    Case("rate-limited", "busy@bounce-rcpt.test", "rate_limited", "4.7.1",
         "450 4.7.1 <busy@bounce-rcpt.test>: Recipient address rejected: Too many messages",
         "an access map on the receiving Postfix answers 450 4.7.1 Too many messages (configured reply text); "
         "temporary, but the sender tries once (maximal_queue_lifetime = 0), so it bounced at once"),
    Case("reverse-dns", "postmaster@bounce-client.test", "reverse_dns", "5.7.25",
         "550 5.7.25 Client host rejected: cannot find your hostname",
         "the receiving Postfix (bounce-client) has reject_unknown_client_hostname; the sender's address "
         "198.51.100.241 has no PTR"),
    Case("bad-helo", "postmaster@bounce-helo.test", "bad_helo", "5.5.2",
         "504 5.5.2 <mail>: Helo command rejected: need fully-qualified hostname",
         f"the sender greets with EHLO {BAD_HELO}; the receiving Postfix (bounce-helo) has "
         "reject_non_fqdn_helo_hostname", transport="badhelo"),
    Case("blocked-ip", "postmaster@bounce-rbl.test", "blocked_ip", "5.7.1",
         "blocked using zen.spamhaus.org",
         "the receiving Postfix (bounce-rbl) has reject_rbl_client zen.spamhaus.org; the lab's copy of the "
         "zone lists the sender's address 198.51.100.241"),
    Case("host-unknown", "postmaster@nxdomain.test", "host_unknown", "5.4.4",
         "Host or domain name not found",
         "the recipient domain does not exist (NXDOMAIN from test.; scenario nxdomain)"),
    Case("null-mx", "postmaster@null-mx.test", "no_mail_accepted", "5.1.0",
         "Domain null-mx.test does not accept mail (nullMX)",
         "the recipient domain publishes a null MX (MX 0 .; RFC 7505; scenario null-mx)"),
    Case("greeting-554", "postmaster@greeting-554.test", "no_mail_accepted", "4.0.0",
         "smtp; 554 No SMTP service here",
         "the MX greets with 554 No SMTP service here (scenario greeting-554); Postfix treats a 5xx "
         "greeting as temporary (smtp_skip_5xx_greeting) and tried once"),
    Case("connection-refused", "postmaster@smtp-refused.test", "network", "4.4.1",
         "Connection refused",
         "nothing listens on port 25 of the MX address (scenario smtp-refused); temporary, tried once"),
    Case("connection-timeout", "postmaster@filtered.test", "network", "4.4.1",
         "Connection timed out",
         f"the MX address drops connection attempts (scenario filtered); the sender waits "
         f"{CONNECT_TIMEOUT} s (smtp_connect_timeout); temporary, tried once"),
    Case("tls-not-offered", "postmaster@no-starttls.test", "tls", "4.7.4",
         "TLS is required, but was not offered",
         "the sender's TLS policy for no-starttls.test is encrypt; its MX offers no STARTTLS; temporary, "
         "tried once"),
    Case("tls-cert-expired", "postmaster@expired-cert.test", "tls", "4.7.5",
         "Server certificate not verified",
         "the sender's TLS policy for expired-cert.test is secure (lab CA trusted); the MX's certificate has "
         "expired; temporary, tried once"),
)

# The sender's services: no inet listener (an SMTP peer owns port 25 of its address), local
# pickup from `sendmail`, the smtp client, virtual(8) for the bounces, and `badhelo`: the smtp
# client greeting with a name that is not fully qualified.
SENDER_MASTER_CF = (postfix.COMMON_SERVICES
                    + "virtual   unix  -       n       n       -       -       virtual\n"
                    + "badhelo   unix  -       -       n       -       -       smtp\n"
                    + f"  -o smtp_helo_name={BAD_HELO}\n")


def sender_main_cf(d: Path, address: str, ca_file: str | None) -> str:
    transports = ", ".join(f"{c.recipient.split('@')[1]}={c.transport}:" for c in CASES if c.transport)
    policies = "{no-starttls.test=encrypt}, {expired-cert.test=secure match=nexthop:dot-nexthop}"
    # one attempt: temporary failures bounce at once (no retry, no delay warnings); the bounces go to
    # a Maildir for sender@bounce-sender.test
    lines = postfix.sender_settings(d, SENDER_HOST, SENDER_DOMAIN, address, ENVELOPE_FROM)
    lines.update({
        "smtp_connect_timeout": f"{CONNECT_TIMEOUT}s",
        "bounce_size_limit": "4096",           # larger messages come back as headers only
        "transport_maps": f"inline:{{{transports}}}",
        "smtp_tls_policy_maps": f"inline:{{{policies}}}",
    })
    if ca_file:
        lines["smtp_tls_CAfile"] = ca_file
    return "".join(f"{k} = {v}\n" for k, v in lines.items())


class Sender:
    """The sending Postfix: a private instance in <lab>/bounce-sender/, started on request."""

    def __init__(self, lab_dir: Path, address: str, ca_file: str | None):
        self.dir = lab_dir / "bounce-sender"
        self.address = address
        self.ca_file = ca_file
        self.proc: subprocess.Popen | None = None
        self.delivered: tuple[Path, ...] = ()

    @property
    def maildir(self) -> Path:
        return self.dir / "mail" / "sender"

    def write(self) -> None:
        d = self.dir
        d.mkdir(parents=True, exist_ok=True)
        (d / "main.cf").write_text(sender_main_cf(d, self.address, self.ca_file))
        (d / "master.cf").write_text(SENDER_MASTER_CF)
        postfix.make_queue(d / "queue")
        owner = pwd.getpwnam("postfix")
        for sub in ("data", "mail"):
            (d / sub).mkdir(exist_ok=True)
            os.chown(d / sub, owner.pw_uid, owner.pw_gid)
        # Postfix daemons run as the postfix user and reach their directories by absolute path.
        for parent in (d, d.parent):
            parent.chmod(0o711)

    def start(self) -> None:
        self.write()
        new = self.maildir / "new"
        self.delivered = tuple(new.iterdir()) if new.is_dir() else ()
        with open(self.dir / "postfix.out", "ab") as out:
            self.proc = subprocess.Popen(postfix.start_argv(self.dir), stdin=subprocess.DEVNULL, stdout=out,
                                         stderr=out, start_new_session=True)
        deadline = time.monotonic() + 10
        while not (self.dir / "queue" / "public" / "pickup").exists():
            if self.proc.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError(f"the bounce sender's Postfix did not start; see {self.dir / 'postfix.out'} "
                                   f"and {self.dir / 'maillog'}")
            time.sleep(0.05)

    def stop(self) -> None:
        if self.proc and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(5)
            except subprocess.TimeoutExpired:
                self.proc.kill()

    def send(self, case: Case) -> None:
        """Hands one message to the sender with its own sendmail (postdrop into its maildrop)."""
        msg = EmailMessage()
        msg["From"] = f"Lab sender <{ENVELOPE_FROM}>"
        msg["To"] = case.recipient
        msg["Subject"] = f"deliverck lab bounce case {case.name}"
        msg["Date"] = email.utils.formatdate(localtime=False)
        msg["Message-ID"] = email.utils.make_msgid(case.name, domain=SENDER_DOMAIN)
        msg[CASE_HEADER] = case.name
        body = f"A test message of the deliverck lab (case {case.name}); it is meant to bounce.\n"
        if case.size:
            line = "x" * 76 + "\n"
            body += line * (case.size // len(line))
        msg.set_content(body)
        sendmail = postfix.tool("sendmail") or "/usr/sbin/sendmail"
        r = subprocess.run([sendmail, "-C", str(self.dir), "-f", ENVELOPE_FROM, "-i", "--", case.recipient],
                           input=msg.as_bytes(), capture_output=True, timeout=30)
        if r.returncode != 0:
            raise RuntimeError(f"sendmail failed for case {case.name}: {r.stderr.decode(errors='replace').strip()}")


def case_of(path: Path) -> str | None:
    """The case a DSN belongs to: the X-Deliverck-Lab-Case header of the returned message."""
    msg = email.message_from_bytes(path.read_bytes(), policy=email.policy.compat32)
    for part in msg.walk():
        ctype = part.get_content_type()
        if ctype in ("message/rfc822", "text/rfc822-headers"):
            payload = part.get_payload()
            inner = payload[0] if isinstance(payload, list) else payload
            if not isinstance(inner, email.message.Message):
                inner = email.message_from_string(inner if isinstance(inner, str) else "")
            if inner.get(CASE_HEADER):
                return str(inner[CASE_HEADER]).strip()
    return None


def collect(sender: Sender, cases: tuple[Case, ...], deadline: float = DEADLINE) -> dict[str, Path]:
    """Waits for one DSN per case in the sender's Maildir; returns {case: path} (missing ones absent)."""
    wanted = {c.name for c in cases}
    found: dict[str, Path] = {}
    seen: set[Path] = set(sender.delivered)      # DSNs of an earlier run in the same lab
    end = time.monotonic() + deadline
    while wanted - set(found) and time.monotonic() < end:
        new = sender.maildir / "new"
        for path in sorted(new.iterdir()) if new.is_dir() else ():
            if path in seen:
                continue
            seen.add(path)
            name = case_of(path)
            if name in wanted:
                found[name] = path
        time.sleep(0.1)
    return found


def run(lab_dir: Path, sender_address: str, ca_file: str | None, cases: tuple[Case, ...] = CASES,
        deadline: float = DEADLINE) -> dict[str, Path]:
    """Start the sender, send every case, wait for the DSNs; the sender stays up for inspection until
    the lab stops (its DSNs stay in <lab>/bounce-sender/mail/sender/new/)."""
    sender = Sender(lab_dir, sender_address, ca_file)
    sender.start()
    try:
        for case in cases:
            sender.send(case)
        return collect(sender, cases, deadline)
    finally:
        sender.stop()


def run_in_lab(cases: tuple[Case, ...] = CASES, deadline: float = DEADLINE) -> dict[str, Path]:
    """run() with the current lab's sender address, CA and directory."""
    from deliverck.lab import manifest

    m = manifest.current()
    if m.postfix is None:
        raise RuntimeError(f"Postfix is unavailable in this lab: {m.postfix_unavailable}")
    address = m.scenario(SENDER_SCENARIO).addresses[0]
    return run(Path(m.lab_dir), address, m.ca_file, cases, deadline)


def dsn_fields(path: Path) -> dict[str, str]:
    """The per-recipient fields of a DSN's message/delivery-status part (lower-case names)."""
    msg = email.message_from_bytes(path.read_bytes(), policy=email.policy.compat32)
    for part in msg.walk():
        if part.get_content_type() == "message/delivery-status":
            blocks = part.get_payload()
            fields: dict[str, str] = {}
            for block in blocks[1:] if isinstance(blocks, list) else ():
                if not isinstance(block, email.message.Message):
                    continue
                for k, v in block.items():
                    fields.setdefault(k.lower(), " ".join(str(v).split()))
            return fields
    return {}


def _toml_str(s: str) -> str:
    return '"' + s.replace("\\", "\\\\").replace('"', '\\"') + '"'


def write_corpus(found: dict[str, Path], outdir: Path, cases: tuple[Case, ...] = CASES) -> list[str]:
    """Copies each DSN to OUTDIR/<case>.eml and writes OUTDIR/labels.toml; returns the missing cases."""
    outdir.mkdir(parents=True, exist_ok=True)
    lines = [
        "# Real DSNs from a real Postfix in the deliverck lab (`deliverck lab bounces OUTDIR`;",
        "# deliverck/lab/bounces.py).  One table per file: the expected explain category, the DSN's",
        "# Status and Diagnostic-Code, the recipient and what the lab did to make delivery fail.",
        "# Lab-only documentation addresses; deliverck itself never sends mail.",
        "",
    ]
    missing = []
    for c in cases:
        path = found.get(c.name)
        if path is None:
            missing.append(c.name)
            continue
        data = path.read_bytes()
        (outdir / f"{c.name}.eml").write_bytes(data)
        fields = dsn_fields(path)
        lines += [
            f'["{c.name}.eml"]',
            f"category = {_toml_str(c.category)}",
            f"status = {_toml_str(fields.get('status', ''))}",
            f"action = {_toml_str(fields.get('action', ''))}",
            f"diagnostic_code = {_toml_str(fields.get('diagnostic-code', ''))}",
            f"recipient = {_toml_str(c.recipient)}",
            f"temporary = {'true' if fields.get('status', '').startswith('4') else 'false'}",
            f"cause = {_toml_str(c.cause)}",
            "",
        ]
    (outdir / "labels.toml").write_text("\n".join(lines), encoding="utf-8")
    return missing


def main(argv: list[str]) -> int:
    if len(argv) != 1:
        print("usage: python -m deliverck.lab.bounces OUTDIR   (inside a lab)", file=sys.stderr)
        return 2
    outdir = Path(argv[0])
    try:
        found = run_in_lab()
    except Exception as e:  # noqa: BLE001 - one line for the user
        print(f"deliverck lab bounces: {e}", file=sys.stderr)
        return 1
    missing = write_corpus(found, outdir)
    for c in CASES:
        if c.name in found:
            f = dsn_fields(found[c.name])
            print(f"{c.name + '.eml':<26} {f.get('status', '?'):<7} {f.get('diagnostic-code', '')[:100]}")
    if missing:
        print(f"deliverck lab bounces: no DSN within {DEADLINE:.0f}s for {', '.join(missing)}", file=sys.stderr)
        return 1
    print(f"{len(found)} DSNs and labels.toml in {outdir}")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
