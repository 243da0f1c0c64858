"""Real Postfix peers: one private instance per address, configured entirely in the lab dir.

Postfix drops privileges to the `postfix` user, which a user namespace mapping
only uid 0 cannot do; so Postfix peers run only when the lab runs as real root
without a user namespace.  Otherwise `unavailable()` says why, the manifest
records it, and the Postfix scenarios are marked unavailable.

Postfix writes no JSON session log; `sessions()` rebuilds the same records
from its own log (debug_peer_level 2 logs every command it reads).
"""

from __future__ import annotations

import datetime
import os
import pwd
import re
import shutil
import subprocess
from pathlib import Path

PACKAGE = "postfix"
REJECT_DATA = "reject"        # 554 to DATA, like every lab peer

# The services a Postfix with no local delivery still starts; no chroot (nothing to copy in).
# The services every lab Postfix starts (order does not matter in master.cf); no chroot.
COMMON_SERVICES = """\
pickup    unix  n       -       n       60      1       pickup
cleanup   unix  n       -       n       -       0       cleanup
qmgr      unix  n       -       n       300     1       qmgr
tlsmgr    unix  -       -       n       1000?   1       tlsmgr
rewrite   unix  -       -       n       -       -       trivial-rewrite
bounce    unix  -       -       n       -       0       bounce
defer     unix  -       -       n       -       0       bounce
trace     unix  -       -       n       -       0       bounce
verify    unix  -       -       n       -       1       verify
flush     unix  n       -       n       1000?   0       flush
proxymap  unix  -       -       n       -       -       proxymap
smtp      unix  -       -       n       -       -       smtp
relay     unix  -       -       n       -       -       smtp
error     unix  -       -       n       -       -       error
retry     unix  -       -       n       -       -       error
discard   unix  -       -       n       -       -       discard
anvil     unix  -       -       n       -       1       anvil
scache    unix  -       -       n       -       1       scache
postlog   unix-dgram n  -       n       -       1       postlogd
"""

MASTER_CF = ("smtp      inet  n       -       n       -       -       smtpd\n" + COMMON_SERVICES
             + "local     unix  -       n       n       -       -       local\n")


def tool(name: str) -> str | None:
    return shutil.which(name, path=os.environ.get("PATH", "") + ":/usr/sbin:/sbin:/usr/bin")


def unavailable(namespace_flags: list[str]) -> str | None:
    """None if Postfix peers can run in a lab started with these unshare flags, else why not."""
    if tool("postfix") is None or tool("postconf") is None:
        return f"Postfix is not installed (apt-get install {PACKAGE})"
    try:
        pwd.getpwnam("postfix")
    except KeyError:
        return "the postfix user does not exist (reinstall the postfix package)"
    if os.geteuid() != 0 or any(f.startswith("-") and not f.startswith("--") and "r" in f for f in namespace_flags):
        return "Postfix must drop privileges to the postfix user, which needs the lab to run as real root"
    return None


def version() -> str | None:
    try:
        r = subprocess.run([tool("postconf") or "postconf", "-d", "-h", "mail_version"], capture_output=True, text=True,
                           timeout=10)
    except (OSError, subprocess.TimeoutExpired, TypeError):
        return None
    return r.stdout.strip() or None


def instance_dir(lab_dir: Path, address: str) -> Path:
    return lab_dir / "postfix" / address.replace(":", "_")


# main.cf parameters a scenario's `[peer] postfix = {...}` table may not set: where the instance
# lives and listens, who it runs as, and the refusal of DATA (no lab peer ever takes a message).
PROTECTED = frozenset({
    "queue_directory", "data_directory", "command_directory", "daemon_directory", "meta_directory",
    "mail_owner", "setgid_group", "inet_interfaces", "inet_protocols", "smtpd_data_restrictions",
    "maillog_file", "maillog_file_prefixes", "multi_instance_directories", "import_environment",
    "smtpd_end_of_data_restrictions", "mynetworks", "relayhost", "default_transport", "relay_transport",
    "local_transport", "virtual_transport", "mailbox_command", "mailbox_transport", "transport_maps",
})
PARAMETER = re.compile(r"[a-z][a-z0-9_]*\Z")

# The queue layout `postfix check` (post-install create-missing) makes, made here directly: the
# script forks ~40 processes (about 2 s per instance here), which a lab start cannot afford.
QUEUE_LAYOUT = (    # (subdirectory, owner, group, mode)
    ("active", "postfix", "root", 0o700), ("bounce", "postfix", "root", 0o700),
    ("corrupt", "postfix", "root", 0o700), ("defer", "postfix", "root", 0o700),
    ("deferred", "postfix", "root", 0o700), ("flush", "postfix", "root", 0o700),
    ("hold", "postfix", "root", 0o700), ("incoming", "postfix", "root", 0o700),
    ("private", "postfix", "root", 0o700), ("saved", "postfix", "root", 0o700),
    ("trace", "postfix", "root", 0o700), ("maildrop", "postfix", "postdrop", 0o730),
    ("public", "postfix", "postdrop", 0o710), ("pid", "root", "root", 0o755),
)


def make_queue(queue: Path) -> None:
    """Create the queue directory tree with the ownership and modes Postfix wants."""
    import grp

    queue.mkdir(parents=True, exist_ok=True)
    queue.chmod(0o755)
    for name, user, group, mode in QUEUE_LAYOUT:
        sub = queue / name
        sub.mkdir(exist_ok=True)
        os.chown(sub, pwd.getpwnam(user).pw_uid, grp.getgrnam(group).gr_gid)
        sub.chmod(mode)


def _instance(d: Path, hostname: str, domain: str, address: str) -> dict[str, str]:
    """What every lab Postfix instance sets: its own directories and log, its names, one address, no
    local delivery, no aliases, nothing trusted but the loopback."""
    return {
        "compatibility_level": "3.6",
        "queue_directory": str(d / "queue"),
        "data_directory": str(d / "data"),
        "mail_owner": "postfix",
        "setgid_group": "postdrop",
        "myhostname": hostname,
        "mydomain": domain,
        "myorigin": "$mydomain",
        "inet_interfaces": address,
        "inet_protocols": "ipv6" if ":" in address else "ipv4",
        "mynetworks": "127.0.0.1/32",           # a probe connects from a lab address: never trusted
        "relay_domains": "",
        "local_recipient_maps": "",
        "alias_maps": "",
        "alias_database": "",
        "biff": "no",
        "append_dot_mydomain": "no",
        "maillog_file": str(d / "maillog"),
        "maillog_file_prefixes": str(d),
        "smtputf8_enable": "no",
        "multi_instance_directories": "",
    }


def sender_settings(d: Path, hostname: str, domain: str, address: str, mailbox: str) -> dict[str, str]:
    """main.cf of a lab *sending* Postfix (bounces.py, sendtest.py): sends from `address` only, tries
    each message once (maximal_queue_lifetime = 0: no retry outlives a test), keeps what comes back for
    MAILBOX (an inline virtual_mailbox_maps key) in a Maildir under D/mail/sender/, logs to D/maillog."""
    owner = pwd.getpwnam("postfix")
    return {
        **_instance(d, hostname, domain, address),
        "mydestination": "",
        "smtp_bind_address": address,
        "relayhost": "",
        "maximal_queue_lifetime": "0",
        "bounce_queue_lifetime": "0",
        "delay_warning_time": "0",
        "smtp_tls_security_level": "may",
        "smtp_tls_loglevel": "1",
        "virtual_mailbox_domains": domain,
        "virtual_mailbox_base": str(d / "mail"),
        "virtual_mailbox_maps": f"inline:{{{mailbox}=sender/}}",
        "virtual_uid_maps": f"static:{owner.pw_uid}",
        "virtual_gid_maps": f"static:{owner.pw_gid}",
    }


def main_cf(d: Path, address: str, hostname: str, domain: str, starttls: bool,
            cert_file: str | None, key_file: str | None, options: dict[str, str] | None = None) -> str:
    """options: extra main.cf parameters (a scenario's `postfix` table); PROTECTED ones are refused."""
    bad = sorted(k for k in (options or {}) if k in PROTECTED or not PARAMETER.match(k))
    if bad:
        raise ValueError(f"a lab Postfix peer cannot set {bad}")
    lines = {
        **_instance(d, hostname, domain, address),
        "mydestination": domain,
        "smtpd_relay_restrictions": "reject_unauth_destination",
        "smtpd_recipient_restrictions": "reject_unauth_destination",
        "smtpd_data_restrictions": REJECT_DATA,
        "smtpd_banner": "$myhostname ESMTP Postfix",
        "smtpd_client_port_logging": "yes",
        "debug_peer_list": address if ":" not in address else f"[{address}]",
        "debug_peer_level": "2",
    }
    if starttls and cert_file and key_file:
        lines.update({
            "smtpd_tls_security_level": "may",
            "smtpd_tls_cert_file": cert_file,
            "smtpd_tls_key_file": key_file,
            "smtpd_tls_protocols": ">=TLSv1.2",
            "smtpd_tls_loglevel": "1",
        })
    else:
        lines["smtpd_tls_security_level"] = "none"
    lines.update(options or {})
    return "".join(f"{k} = {v}\n" for k, v in lines.items())


def write_instance(lab_dir: Path, address: str, hostname: str, domain: str, starttls: bool,
                   cert_file: str | None, key_file: str | None, options: dict[str, str] | None = None) -> Path:
    d = instance_dir(lab_dir, address)
    d.mkdir(parents=True, exist_ok=True)
    (d / "main.cf").write_text(main_cf(d, address, hostname, domain, starttls, cert_file, key_file, options))
    (d / "master.cf").write_text(MASTER_CF)
    make_queue(d / "queue")
    (d / "data").mkdir(exist_ok=True)
    owner = pwd.getpwnam("postfix")
    os.chown(d / "data", owner.pw_uid, owner.pw_gid)
    # Postfix daemons run as the postfix user and reach their directories by absolute path.
    lab_dir.chmod(0o711)
    (lab_dir / "postfix").chmod(0o711)
    return d


def start_argv(d: Path) -> list[str]:
    """The master daemon in the foreground (-d), so the lab can stop it with SIGTERM."""
    daemon_dir = subprocess.run([tool("postconf") or "postconf", "-c", str(d), "-h", "daemon_directory"],
                                capture_output=True, text=True).stdout.strip() or "/usr/lib/postfix/sbin"
    return [str(Path(daemon_dir) / "master"), "-c", str(d), "-d"]


_LINE = re.compile(r"^(?P<stamp>\S+(?: +\S+ +\S+)?) \S+ postfix/smtpd\[(?P<pid>\d+)\]: (?P<text>.*)$")
_CONNECT = re.compile(r"^connect from \S*?\[(?P<ip>[^\]]+)\](?::(?P<port>\d+))?")
_COMMAND = re.compile(r"^< \S*?\[[^\]]+\](?::\d+)?: (?P<line>.*)$")
_TLS = re.compile(r"^(?:Anonymous|Untrusted|Trusted|Verified) TLS connection established from .*?: (?P<v>TLSv[\d.]+)")


def _stamp(text: str) -> float:
    """Postfix's log time: RFC 3339 (newer) or syslog's 'Mon dd hh:mm:ss' in local time (this year)."""
    try:
        return datetime.datetime.fromisoformat(text.replace("Z", "+00:00")).timestamp()
    except ValueError:
        pass
    try:
        year = datetime.datetime.now().year
        return datetime.datetime.strptime(f"{year} {text}", "%Y %b %d %H:%M:%S").timestamp()
    except ValueError:
        return 0.0


def sessions(lab_dir: Path, address: str) -> list[dict]:
    """The finished smtpd sessions of the Postfix peer on `address`, as SMTP-log records."""
    try:
        text = (instance_dir(lab_dir, address) / "maillog").read_text(encoding="utf-8", errors="replace")
    except FileNotFoundError:
        return []
    open_: dict[str, dict] = {}
    done: list[dict] = []
    for raw in text.splitlines():
        m = _LINE.match(raw)
        if not m:
            continue
        pid, body = m["pid"], m["text"]
        c = _CONNECT.match(body)
        if c:
            open_[pid] = {"address": address, "port": 25, "peer": f"{c['ip']} {c['port'] or 0}",
                          "time": _stamp(m["stamp"]), "end": None, "behaviour": "postfix", "tls": None,
                          "commands": []}
            continue
        session = open_.get(pid)
        if session is None:
            continue
        cmd = _COMMAND.match(body)
        if cmd:
            session["commands"].append(cmd["line"].split(" ", 1)[0].upper()[:16])
            continue
        t = _TLS.match(body)
        if t:
            session["tls"] = t["v"]
            continue
        if body.startswith("disconnect from "):
            session["end"] = _stamp(m["stamp"])
            done.append(open_.pop(pid))
    return done
