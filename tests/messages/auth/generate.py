"""Generate the DKIM/ARC/DMARC corpus of tests/messages/auth/: .eml files and keys.zone.

    .venv/bin/python tests/messages/auth/generate.py

Writes *.eml (signed with dkimpy) and keys.zone (origin `test.`: the public keys, SPF and DMARC
records of the domains the messages use).  The private keys in keys/ are test-only keys made for
this corpus (see README.md): the script creates them when they are missing and reuses them
otherwise, and freezes the clock at SIGNED, so reruns give the same files.  The committed .eml
files are this script's output; the tests read them and never regenerate.

Every address is a documentation address (RFC 5737) and every domain is under .test (RFC 2606).
The Authentication-Results styles follow what the providers write: Gmail ("mx.google.com;
dkim=pass header.i=@d header.s=s header.b=..; spf=pass (google.com: domain of ...) ...; dmarc=pass
(p=REJECT sp=REJECT dis=NONE) header.from=d"), Microsoft 365 (no authserv-id; "dkim=pass
(signature was verified) header.d=..;dmarc=pass action=none header.from=..;compauth=pass
reason=100") and Yahoo ("atlas...yahoo.com; dkim=pass header.i=@d header.s=s; spf=pass
smtp.mailfrom=d; dmarc=pass(p=REJECT) header.from=d;").
"""

from __future__ import annotations

import base64
import subprocess
import time
import zlib
from pathlib import Path

import dkim
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa
from dkim.canonicalization import CanonicalizationPolicy
from dkim.crypto import parse_pem_private_key

HERE = Path(__file__).resolve().parent
KEYS = HERE / "keys"
SIGNED = 1796119140             # 2026-12-01T09:59:00Z: every signature's t=
RECEIVED = "Tue, 01 Dec 2026 10:00:00 +0000"
GOOD_IP, BAD_IP, ESP_IP, LIST_IP, FWD_IP = "203.0.113.10", "203.0.113.99", "203.0.113.20", "203.0.113.30", \
    "203.0.113.40"

# (file stem, domain, selector, bits); the selector's public key is published unless listed in UNPUBLISHED.
KEYSPECS = (("sender-2048", "sender.test", "s2048", 2048), ("sender-1024", "sender.test", "s1024", 1024),
            ("sender-512", "sender.test", "s512", 512), ("esp", "esp.test", "esp", 2048),
            ("list", "list.test", "arc", 2048), ("fwd", "fwd.test", "arc", 2048))


def key(stem: str, bits: int) -> bytes:
    path = KEYS / f"{stem}.pem"
    if not path.exists():
        KEYS.mkdir(exist_ok=True)
        if bits < 1024:     # cryptography refuses to make keys this short; openssl still does
            pem = subprocess.run(["openssl", "genrsa", "-traditional", str(bits)], check=True,
                                 capture_output=True).stdout
        else:
            pem = rsa.generate_private_key(public_exponent=65537, key_size=bits).private_bytes(
                serialization.Encoding.PEM, serialization.PrivateFormat.TraditionalOpenSSL,
                serialization.NoEncryption())
        path.write_bytes(pem)
    return path.read_bytes()


def public_b64(pem: bytes) -> str:
    k = serialization.load_pem_private_key(pem, None)
    der = k.public_key().public_bytes(serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo)
    return base64.b64encode(der).decode()


def txt(text: str) -> str:
    """A TXT record's text split into strings of at most 255 characters (RFC 1035 3.3.14)."""
    return " ".join(f'"{text[i:i + 255]}"' for i in range(0, len(text), 255))


def zone() -> str:
    rows = ["$ORIGIN test.", "$TTL 300",
            "@ IN SOA ns.test. hostmaster.test. 1 3600 600 86400 300", "@ IN NS ns.test.",
            "ns IN A 192.0.2.53"]
    for stem, domain, sel, bits in KEYSPECS:
        rows.append(f"{sel}._domainkey.{domain}. IN TXT {txt('v=DKIM1; k=rsa; p=' + public_b64(key(stem, bits)))}")
    rows += [
        f"old._domainkey.sender.test. IN TXT {txt('v=DKIM1; k=rsa; p=')}",
        f"sender.test. IN TXT {txt(f'v=spf1 ip4:{GOOD_IP} -all')}",
        f"_dmarc.sender.test. IN TXT {txt('v=DMARC1; p=reject; rua=mailto:dmarc@sender.test')}",
        "sender.test. IN MX 10 mx.sender.test.", "mx.sender.test. IN A 192.0.2.10",
        f"quarantine.test. IN TXT {txt(f'v=spf1 ip4:{GOOD_IP} -all')}",
        f"_dmarc.quarantine.test. IN TXT {txt('v=DMARC1; p=quarantine')}",
        f"monitor.test. IN TXT {txt(f'v=spf1 ip4:{GOOD_IP} -all')}",
        f"_dmarc.monitor.test. IN TXT {txt('v=DMARC1; p=none')}",
        f"spfonly.test. IN TXT {txt(f'v=spf1 ip4:{GOOD_IP} -all')}",
        f"_dmarc.spfonly.test. IN TXT {txt('v=DMARC1; p=reject')}",
        f"esp.test. IN TXT {txt(f'v=spf1 ip4:{ESP_IP} -all')}",
        f"list.test. IN TXT {txt(f'v=spf1 ip4:{LIST_IP} -all')}",
        f"fwd.test. IN TXT {txt(f'v=spf1 ip4:{FWD_IP} -all')}",
    ]
    return "\n".join(rows) + "\n"


def base(from_addr: str, subject: str, body: str = "Hello,\r\n\r\nthis is a test message.\r\n") -> bytes:
    return (f"From: Sender <{from_addr}>\r\nTo: user@receiver.test\r\nSubject: {subject}\r\n"
            f"Date: Tue, 01 Dec 2026 09:59:00 +0000\r\nMessage-ID: <{zlib.crc32(subject.encode())}.{SIGNED}@corpus.test>\r\n"
            f"MIME-Version: 1.0\r\nContent-Type: text/plain; charset=us-ascii\r\n\r\n{body}").encode()


def sign(msg: bytes, stem: str, domain: str, sel: str, **kw) -> bytes:
    bits = dict((s, b) for s, _d, _sel, b in KEYSPECS)[stem]
    return dkim.sign(msg, sel.encode(), domain.encode(), key(stem, bits),
                     include_headers=[b"from", b"to", b"subject", b"date", b"message-id"], **kw) + msg


def sign_custom(msg: bytes, stem: str, domain: str, sel: str, include: list[bytes], extra: list[tuple[bytes, bytes]],
                t: int = SIGNED) -> bytes:
    """A signature dkimpy's sign() refuses to make (x=, From not signed): fields built here, signed by dkimpy."""
    d = dkim.DKIM(msg)
    canon = CanonicalizationPolicy.from_c_value(b"relaxed/simple")
    d.hasher = dkim.HASH_ALGORITHMS[b"rsa-sha256"]
    bh = base64.b64encode(d.hasher(canon.canonicalize_body(d.body)).digest())
    fields = [(b"v", b"1"), (b"a", b"rsa-sha256"), (b"c", b"relaxed/simple"), (b"d", domain.encode()),
              (b"s", sel.encode()), (b"t", str(t).encode()), *extra, (b"h", b" : ".join(include)),
              (b"bh", bh), (b"b", b"0" * 60)]
    pk = parse_pem_private_key(key(stem, 2048))
    return b"DKIM-Signature: " + d.gen_header(fields, include, canon, b"DKIM-Signature", pk) + msg


def received(helo: str, ip: str, by: str = "mx.receiver.test", date: str = RECEIVED) -> bytes:
    return (f"Received: from {helo} ({helo} [{ip}])\r\n\tby {by} with ESMTPS id 4Zx1;\r\n\t{date}\r\n").encode()


def ar(value: str, name: str = "Authentication-Results") -> bytes:
    return f"{name}: {value}\r\n".encode()


def return_path(addr: str) -> bytes:
    return f"Return-Path: <{addr}>\r\n".encode()


def arrive(msg: bytes, mail_from: str, helo: str, ip: str, *results: str) -> bytes:
    """The final receiver's fields above the message: Return-Path, its Authentication-Results, Received."""
    return return_path(mail_from) + b"".join(ar(r) for r in results) + received(helo, ip) + msg


def good() -> bytes:
    return sign(base("news@sender.test", "good"), "sender-2048", "sender.test", "s2048")


def cases() -> dict[str, bytes]:
    rcv = "mx.receiver.test"
    out: dict[str, bytes] = {}
    out["good"] = arrive(good(), "bounce@sender.test", "mail.sender.test", GOOD_IP)
    signed = sign(base("news@sender.test", "body altered"), "sender-2048", "sender.test", "s2048")
    out["body-altered"] = arrive(signed.replace(b"test message", b"TEST message"), "bounce@sender.test",
                                 "mail.sender.test", GOOD_IP)
    signed = sign(base("news@sender.test", "header altered"), "sender-2048", "sender.test", "s2048")
    out["header-altered"] = arrive(signed.replace(b"Subject: header altered", b"Subject: header ALTERED"),
                                   "bounce@sender.test", "mail.sender.test", GOOD_IP)
    out["key-missing"] = arrive(sign(base("news@sender.test", "key missing"), "sender-2048", "sender.test", "missing"),
                                "bounce@sender.test", "mail.sender.test", GOOD_IP)
    out["key-revoked"] = arrive(sign(base("news@sender.test", "key revoked"), "sender-2048", "sender.test", "old"),
                                "bounce@sender.test", "mail.sender.test", GOOD_IP)
    hdrs = [b"from", b"to", b"subject", b"date"]
    out["expired"] = arrive(sign_custom(base("news@sender.test", "expired"), "sender-2048", "sender.test", "s2048",
                                        hdrs, [(b"x", str(SIGNED - 86400).encode())]),
                            "bounce@sender.test", "mail.sender.test", GOOD_IP)
    out["future"] = arrive(sign_custom(base("news@sender.test", "future"), "sender-2048", "sender.test", "s2048",
                                       hdrs, [], t=SIGNED + 2 * 86400),
                           "bounce@sender.test", "mail.sender.test", GOOD_IP)
    out["from-not-signed"] = arrive(sign_custom(base("news@sender.test", "from not signed"), "sender-2048",
                                                "sender.test", "s2048", [b"to", b"subject", b"date"], []),
                                    "bounce@sender.test", "mail.sender.test", GOOD_IP)
    signed = sign(base("news@sender.test", "length"), "sender-2048", "sender.test", "s2048", length=True)
    out["length-appended"] = arrive(signed + b"\r\nBuy now at https://appended.example/ !\r\n",
                                    "bounce@sender.test", "mail.sender.test", GOOD_IP)
    out["sha1"] = arrive(sign(base("news@sender.test", "sha1"), "sender-2048", "sender.test", "s2048",
                              signature_algorithm=b"rsa-sha1"), "bounce@sender.test", "mail.sender.test", GOOD_IP)
    out["key-1024"] = arrive(sign(base("news@sender.test", "key 1024"), "sender-1024", "sender.test", "s1024"),
                             "bounce@sender.test", "mail.sender.test", GOOD_IP)
    out["key-512"] = arrive(sign(base("news@sender.test", "key 512"), "sender-512", "sender.test", "s512"),
                            "bounce@sender.test", "mail.sender.test", GOOD_IP)
    out["third-party"] = arrive(sign(base("news@sender.test", "third party"), "esp", "esp.test", "esp"),
                                "bounce@esp.test", "out.esp.test", ESP_IP)
    out["spf-only"] = arrive(base("news@spfonly.test", "spf only"), "bounce@spfonly.test", "mail.spfonly.test",
                             GOOD_IP)
    out["dmarc-reject"] = arrive(base("news@sender.test", "dmarc reject"), "bounce@sender.test", "bad.example.test",
                                 BAD_IP)
    out["dmarc-quarantine"] = arrive(base("news@quarantine.test", "dmarc quarantine"), "bounce@quarantine.test",
                                     "bad.example.test", BAD_IP)
    out["dmarc-none"] = arrive(base("news@monitor.test", "dmarc none"), "bounce@monitor.test", "bad.example.test",
                               BAD_IP)
    out.update(styled(rcv))
    out["arc-list"] = arc_list()
    # The same, changed once more after the last seal: the newest ARC-Message-Signature fails.
    out["arc-broken"] = arc_list().replace(b"list footer", b"LIST footer")
    out["forged-ar"] = (return_path("bounce@sender.test")
                        + ar(f"{rcv}; spf=fail smtp.mailfrom=sender.test; dkim=none; dmarc=fail header.from=sender.test")
                        + received("bad.example.test", BAD_IP)
                        + ar(f"{rcv}; spf=pass smtp.mailfrom=sender.test; dkim=pass header.d=sender.test; "
                             "dmarc=pass header.from=sender.test")
                        + base("news@sender.test", "forged authentication results"))
    return out


def styled(rcv: str) -> dict[str, bytes]:
    out = {}
    msg = sign(base("news@sender.test", "gmail style"), "sender-2048", "sender.test", "s2048")
    b = msg.split(b" b=", 1)[1][:8].decode()
    out["gmail-ar"] = (return_path("bounce@sender.test")
                       + ar(f"mx.google.com;\r\n       dkim=pass header.i=@sender.test header.s=s2048 header.b={b};\r\n"
                            f"       spf=pass (google.com: domain of bounce@sender.test designates {GOOD_IP} as "
                            "permitted sender) smtp.mailfrom=bounce@sender.test;\r\n"
                            "       dmarc=pass (p=REJECT sp=REJECT dis=NONE) header.from=sender.test")
                       + received("mail.sender.test", GOOD_IP, by="mx.google.com") + msg)
    msg = sign(base("news@sender.test", "outlook style"), "sender-2048", "sender.test", "s2048")
    out["outlook-ar"] = (return_path("bounce@sender.test")
                         + ar(f"spf=pass (sender IP is {GOOD_IP})\r\n smtp.mailfrom=sender.test; dkim=pass (signature "
                              "was verified)\r\n header.d=sender.test;dmarc=pass action=none\r\n header.from=sender.test;"
                              "compauth=pass reason=100")
                         + received("mail.sender.test", GOOD_IP, by="AM0PR01MB1234.eurprd01.prod.outlook.test") + msg)
    # Yahoo recorded a pass; the copy on disk was changed afterwards (a client re-encoded the body).
    msg = sign(base("news@sender.test", "yahoo style"), "sender-2048", "sender.test", "s2048")
    out["yahoo-ar"] = (return_path("bounce@sender.test")
                       + ar("atlas-production.v2.mail.yahoo.test; dkim=pass header.i=@sender.test header.s=s2048; "
                            "spf=pass smtp.mailfrom=sender.test; dmarc=pass(p=REJECT) header.from=sender.test;")
                       + received("mail.sender.test", GOOD_IP, by="mta1.mail.yahoo.test")
                       + msg.replace(b"this is a test", b"this is  a test"))
    return out


def arc_list() -> bytes:
    """A list (list.test) receives a signed message, adds a footer (breaking DKIM) and seals it (cv=none);
    a forwarder (fwd.test) seals again (cv=pass); the final receiver records dkim=fail, arc=pass."""
    original = sign(base("news@sender.test", "[list] weekly"), "sender-2048", "sender.test", "s2048")
    at_list = (ar("list.test; dkim=pass header.d=sender.test header.s=s2048; spf=pass smtp.mailfrom=sender.test; "
                  "dmarc=pass header.from=sender.test")
               + received("mail.sender.test", GOOD_IP, by="mx.list.test", date="Tue, 01 Dec 2026 09:59:20 +0000")
               + original + b"-- \r\nlist footer: unsubscribe at https://list.test/u\r\n")
    sealed = b"".join(dkim.arc_sign(at_list, b"arc", b"list.test", key("list", 2048), b"list.test")) + at_list
    at_fwd = (ar("fwd.test; arc=pass; dkim=fail header.d=sender.test; spf=pass smtp.mailfrom=list.test")
              + received("mx.list.test", LIST_IP, by="mx.fwd.test", date="Tue, 01 Dec 2026 09:59:40 +0000") + sealed)
    sealed = b"".join(dkim.arc_sign(at_fwd, b"arc", b"fwd.test", key("fwd", 2048), b"fwd.test")) + at_fwd
    return arrive(sealed, "list-bounces@list.test", "mx.fwd.test", FWD_IP,
                  "mx.receiver.test; dkim=fail (body hash mismatch) header.d=sender.test; arc=pass; "
                  "spf=fail smtp.mailfrom=list.test; dmarc=fail header.from=sender.test")


def main(out: Path = HERE) -> None:
    """Write the corpus into `out` (tests/test_message_auth.py writes it to a temporary directory and
    compares it with the committed files)."""
    real_time = time.time
    time.time = lambda: float(SIGNED)      # dkimpy stamps t= (and ARC t=) from time.time()
    try:
        (out / "keys.zone").write_text(zone())
        for stem, raw in cases().items():
            (out / f"{stem}.eml").write_bytes(raw)
    finally:
        time.time = real_time


if __name__ == "__main__":
    main()
