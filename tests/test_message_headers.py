"""Header parsing (deliverck/message/headers.py): Received fields of each MTA family, the envelope a
message claims (and where each part was read), From domains.  The Received samples are written
after the forms each MTA documents and publishes, with documentation names and addresses."""

from __future__ import annotations

import email
import email.policy

import pytest

from deliverck.message.headers import MAX_FIELD, MAX_HOPS, envelope_of, hops_of, info_of, parse_received, received_hop
from deliverck.message.model import Message, Session

# (name, field value, from_name, from_rdns, from_ip, by, with, tls, encrypted, date)
RECEIVED = [
    ("postfix-tls",
     "from mail.example.org (mail.example.org [203.0.113.5])\r\n\t(using TLSv1.3 with cipher TLS_AES_256_GCM_SHA384 "
     "(256/256 bits)\r\n\t key-exchange X25519 server-signature RSA-PSS (2048 bits) server-digest SHA256)\r\n\t"
     "(No client certificate requested)\r\n\tby mx.example.net (Postfix) with ESMTPS id 4Y2abc1234z\r\n\t"
     "for <user@example.net>; Tue,  3 Dec 2024 10:00:00 +0000 (UTC)",
     "mail.example.org", "mail.example.org", "203.0.113.5", "mx.example.net", "ESMTPS", "TLSv1.3", True,
     "2024-12-03T10:00:00Z"),
    ("postfix-unknown-plain",
     "from helo.example (unknown [198.51.100.9]) by mx.example.net (Postfix) with ESMTP id 4Y2; "
     "Tue, 3 Dec 2024 10:00:00 +0100",
     "helo.example", "", "198.51.100.9", "mx.example.net", "ESMTP", "", False, "2024-12-03T09:00:00Z"),
    ("exim-tls",
     "from mail.example.org ([203.0.113.5] helo=smtp.example.org)\n by mx.example.net with esmtps  (TLS1.3) tls "
     "TLS_AES_256_GCM_SHA384\n (Exim 4.96)\n (envelope-from <a@example.org>)\n id 1tXyZ-000abc-12\n for "
     "user@example.net; Tue, 03 Dec 2024 10:00:00 +0000",
     "smtp.example.org", "mail.example.org", "203.0.113.5", "mx.example.net", "ESMTPS", "TLS1.3", True,
     "2024-12-03T10:00:00Z"),
    ("exim-no-rdns",
     "from [192.0.2.1] (helo=foo.example) by mx.example.net with esmtp (Exim 4.96) id 1; "
     "Tue, 03 Dec 2024 10:00:00 +0000",
     "foo.example", "", "192.0.2.1", "mx.example.net", "ESMTP", "", False, "2024-12-03T10:00:00Z"),
    ("exim-tls12-colon-form",
     "from a.example.org ([192.0.2.2]) by mx.example.net with esmtps (TLS1.2:ECDHE-RSA-AES256-GCM-SHA384:256) "
     "(Exim 4.94) id 2; Tue, 03 Dec 2024 10:00:00 +0000",
     "a.example.org", "", "192.0.2.2", "mx.example.net", "ESMTPS", "TLS1.2", True, "2024-12-03T10:00:00Z"),
    ("sendmail-tls",
     "from mail.example.org (mail.example.org [203.0.113.5]) by mx.example.net (8.17.1/8.17.1) with ESMTPS id "
     "4B3A0xyz012345 (version=TLSv1.3 cipher=TLS_AES_256_GCM_SHA384 bits=256 verify=NOT) for <user@example.net>; "
     "Tue, 3 Dec 2024 10:00:00 -0500",
     "mail.example.org", "mail.example.org", "203.0.113.5", "mx.example.net", "ESMTPS", "TLSv1.3", True,
     "2024-12-03T15:00:00Z"),
    ("sendmail-forged",
     "from liar.example (host.example.org [192.0.2.3] (may be forged)) by mx.example.net (8.17.1/8.17.1) with ESMTP "
     "id 4B3; Tue, 3 Dec 2024 10:00:00 +0000",
     "liar.example", "host.example.org", "192.0.2.3", "mx.example.net", "ESMTP", "", False, "2024-12-03T10:00:00Z"),
    ("exchange-online-internal",
     "from AM0PR01MB1234.eurprd01.prod.exchangelabs.com (2603:10a6:208:1::12) by "
     "AM0PR01MB5678.eurprd01.prod.exchangelabs.com (2603:10a6:208:2::34) with Microsoft SMTP Server "
     "(version=TLS1_2, cipher=TLS_ECDHE_RSA_WITH_AES_256_GCM_SHA384) id 15.20.8207.17; Tue, 3 Dec 2024 10:00:00 +0000",
     "AM0PR01MB1234.eurprd01.prod.exchangelabs.com", "", "2603:10a6:208:1::12",
     "AM0PR01MB5678.eurprd01.prod.exchangelabs.com", "Microsoft SMTP Server", "TLS1_2", True, "2024-12-03T10:00:00Z"),
    ("exchange-server-tls",
     "from EX01.corp.example (192.0.2.5) by EX02.corp.example (192.0.2.6) with Microsoft SMTP Server (TLS) id "
     "15.2.1544.4; Tue, 3 Dec 2024 10:00:00 +0000",
     "EX01.corp.example", "", "192.0.2.5", "EX02.corp.example", "Microsoft SMTP Server", "", True,
     "2024-12-03T10:00:00Z"),
    ("gmail-inbound",
     "from mail-sor-f41.google.com (mail-sor-f41.google.com. [209.85.220.41]) by mx.google.com with SMTPS id "
     "a1sor1.12.2024.12.03 for <user@example.net> (Google Transport Security); Tue, 03 Dec 2024 02:00:00 -0800 (PST)",
     "mail-sor-f41.google.com", "mail-sor-f41.google.com", "209.85.220.41", "mx.google.com", "SMTPS", "", True,
     "2024-12-03T10:00:00Z"),
    ("gmail-internal",
     "by 2002:a05:6a10:1234:b0:5a1:2345:6789 with SMTP id abc; Tue, 3 Dec 2024 02:00:01 -0800 (PST)",
     "", "", "", "2002:a05:6a10:1234:b0:5a1:2345:6789", "SMTP", "", False, "2024-12-03T10:00:01Z"),
    ("yahoo-inbound",
     "from mail.example.org (EHLO smtp.example.org) (203.0.113.5) by mta4321.mail.gq1.yahoo.com with SMTPs "
     "(version=TLS1_3 cipher=TLS_AES_128_GCM_SHA256); Tue, 03 Dec 2024 10:00:00 +0000",
     "smtp.example.org", "mail.example.org", "203.0.113.5", "mta4321.mail.gq1.yahoo.com", "SMTPS", "TLS1_3", True,
     "2024-12-03T10:00:00Z"),
    ("yahoo-http",
     "from 10.197.34.16 by atlas.bf2.yahoo.com with HTTP; Tue, 3 Dec 2024 10:00:00 +0000",
     "10.197.34.16", "", "10.197.34.16", "atlas.bf2.yahoo.com", "HTTP", "", None, "2024-12-03T10:00:00Z"),
    ("ipv6-literal",
     "from [IPv6:2001:db8::7] (host.example.org [IPv6:2001:db8::7]) by mx.example.net (Postfix) with ESMTPSA id 1; "
     "Tue, 3 Dec 2024 10:00:00 +0000",
     "[IPv6:2001:db8::7]", "host.example.org", "2001:db8::7", "mx.example.net", "ESMTPSA", "", True,
     "2024-12-03T10:00:00Z"),
    ("no-date",
     "from a.example.org (a.example.org [192.0.2.9]) by mx.example.net with SMTP",
     "a.example.org", "a.example.org", "192.0.2.9", "mx.example.net", "SMTP", "", False, ""),
]


@pytest.mark.parametrize("row", RECEIVED, ids=[r[0] for r in RECEIVED])
def test_received_forms(row) -> None:
    _, value, helo, rdns, ip, by, with_, tls, encrypted, date = row
    h = parse_received(value, 1)
    assert (h.from_name, h.from_rdns, h.from_ip, h.by, h.with_, h.tls, h.encrypted, h.date) == \
        (helo, rdns, ip, by, with_, tls, encrypted, date)
    assert "\n" not in h.raw and "\r" not in h.raw


def test_received_is_bounded() -> None:
    hop = parse_received("from a.example.org (a.example.org [192.0.2.9]) " + "(x " * 20000 + ")", 1)
    assert len(hop.raw) <= MAX_FIELD
    many = "".join(f"Received: from h{i}.example.org by mx.example.net with SMTP; Tue, 3 Dec 2024 10:00:00 +0000\n"
                   for i in range(MAX_HOPS + 50))
    parsed = email.message_from_string(many + "From: a@example.org\n\nx\n", policy=email.policy.compat32)
    hops = hops_of(parsed)
    assert len(hops) == MAX_HOPS and hops[0].index == 1 and hops[0].from_name == "h0.example.org"


def _parsed(text: str) -> email.message.Message:
    return email.message_from_string(text, policy=email.policy.compat32)


HEADERS = ("Received: from mx.example.net (localhost [127.0.0.1]) by box.example.net with LMTP id 1; "
           "Tue, 3 Dec 2024 10:00:04 +0000\n"
           "Received: from smtp.example.org (smtp.example.org [198.51.100.25]) by mx.example.net (Postfix) with "
           "ESMTPS id 2; Tue, 3 Dec 2024 10:00:03 +0000\n"
           "Return-Path: <bounces@example.org>\nFrom: a@example.org\n\nbody\n")


def test_envelope_from_the_header_names_its_source() -> None:
    p = _parsed(HEADERS)
    env, notes = envelope_of(p, hops_of(p))
    assert (env.ip.value, env.ip.source, env.ip.proven) == \
        ("198.51.100.25", "header Received #2 (by mx.example.net)", False)
    assert (env.helo.value, env.helo.source) == ("smtp.example.org", "header Received #2 (by mx.example.net)")
    assert (env.mail_from.value, env.mail_from.source) == ("bounces@example.org", "header Return-Path")
    assert notes and "Received #1" in notes[0]


def test_options_win_then_the_session() -> None:
    p = _parsed(HEADERS)
    session = Session(peer_ip="192.0.2.25", peer_port=1, helo="out.example.org", esmtp=True, tls_version="",
                      tls_cipher="", mail_from="", rcpt=("t@listen.example",), received_at="2024-12-03T10:00:05Z")
    env, _ = envelope_of(p, hops_of(p), ip="192.0.2.99", session=session)
    assert (env.ip.value, env.ip.source, env.ip.proven) == ("192.0.2.99", "option --ip", True)
    assert (env.helo.value, env.helo.source, env.helo.proven) == ("out.example.org", "SMTP session", True)
    assert (env.mail_from.value, env.mail_from.source) == ("", "SMTP session")     # the null sender
    assert env.rcpt == ("t@listen.example",)
    env2, _ = envelope_of(p, hops_of(p), helo="given.example.org", mail_from="x@example.org")
    assert env2.helo.source == "option --helo" and env2.mail_from.source == "option --mail-from"


def test_nothing_is_guessed_without_a_header() -> None:
    env, _ = envelope_of(_parsed("From: a@example.org\n\nx\n"), ())
    assert env.ip is None and env.helo is None and env.mail_from is None
    p = _parsed("Received: from box (localhost [127.0.0.1]) by box with LMTP; Tue, 3 Dec 2024 10:00:00 +0000\n"
                "Return-Path: <>\nFrom: a@example.org\n\nx\n")
    env, _ = envelope_of(p, hops_of(p))
    assert env.ip is None and env.mail_from is not None and env.mail_from.value == ""


def test_internal_hops_of_one_system_are_passed_over() -> None:
    p = _parsed("Received: from DM6PR11MB1234.namprd11.prod.outlook.com (2603:10b6:5:1c0::18) by "
                "DM6PR11MB5678.namprd11.prod.outlook.com with HTTPS; Tue, 3 Dec 2024 10:00:05 +0000\n"
                "Received: from smtp.example.org (198.51.100.25) by BN9PR03CA0123.mail.protection.outlook.com "
                "(10.167.8.140) with Microsoft SMTP Server (version=TLS1_3, cipher=TLS_AES_256_GCM_SHA384) id 15.20; "
                "Tue, 3 Dec 2024 10:00:03 +0000\nFrom: a@example.org\n\nx\n")
    hop, _ = received_hop(hops_of(p))
    assert hop is not None and hop.index == 2 and hop.from_ip == "198.51.100.25"


def test_info_from_domain_is_an_a_label_and_several_froms_are_noted() -> None:
    raw = "From: Jörg <joerg@Bücher.Example>, b@example.org\nSubject: =?UTF-8?B?R3LDvMOfZQ==?=\n\nx\n".encode()
    info = info_of(Message(raw=raw, label="m.eml"), email.message_from_bytes(raw, policy=email.policy.compat32))
    assert info.from_domain == "xn--bcher-kva.example"
    assert info.from_ == ("joerg@Bücher.Example", "b@example.org")
    assert info.subject == "Grüße"
    assert any("2 From addresses" in n for n in info.notes)
    assert info.size == len(raw) and info.label == "m.eml"


def test_info_of_raw_utf8_from() -> None:
    raw = "From: Jörg <jörg@bücher.example>\n\nx\n".encode()
    info = info_of(Message(raw=raw, label="m"), email.message_from_bytes(raw, policy=email.policy.compat32))
    assert info.from_domain == "xn--bcher-kva.example"
