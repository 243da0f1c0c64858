"""Issue 14, item 4: a file given to deliverck may hold a secret; errors never repeat it.

A path can point at anything: a dotenv file through a symlink, /etc/passwd.  dnspython's
messages quote the token they stumble on whole ("unknown rdatatype 'TOKEN'"), and deliverck
used to print them as they were.  Here every record shape of a zone file (and of a trust
anchor file) carries a secret-looking token where the parser will trip on it; the error must
name the line and the kind of problem and show at most a short prefix of the token.  In
process (the parsers only): the CLI cases are in tests/test_bad_input.py ("secret-*").
"""

from __future__ import annotations

import pytest

from deliverck.errors import UsageError
from deliverck.net.dnssec import parse_anchors
from deliverck.net.overlay import ZoneFileSpec, load_zone_file

S = "sk_live_51HxQv9SECRETxTOKEN8f7e6d5c"
HEAD = "$ORIGIN example.com.\n$TTL 300\n@ IN SOA ns1 host 1 2 3 4 5\n@ IN NS ns1\nns1 IN A 192.0.2.1\n"
LINES = [
    f"{S}", f"{S} {S}", f"export K={S}", f"K={S} x", f"x IN {S} y", f"x {S} IN A 192.0.2.1", f"x IN A {S}",
    f"x IN AAAA {S}", f"x IN MX {S} mx", f"x IN MX 10 {S}..", f'x IN TXT "{S}', f"x IN CAA 0 issue {S}",
    f"x IN SSHFP 1 1 {S}", f"x IN TLSA 3 1 1 {S}", f"x IN DS 1 8 2 {S}", f"x IN DNSKEY 257 3 8 {S}",
    f"x IN SRV 1 1 {S} y", f"x IN CNAME {S}\\", f"{S}.. IN A 192.0.2.1", f"$ORIGIN {S}..", f"$TTL {S}",
    f"${S}", f"$INCLUDE {S}", f"$GENERATE {S}", f"$GENERATE 1-2 {S}", f"x {S}", f"x IN {S}", f"x CH {S}",
    f"x IN NAPTR {S}", f"x IN LOC {S}", f"x IN TYPE65534 {S}", f"x IN TYPE65534 \\# 4 {S}", f'x IN HINFO "{S}',
    f"x IN A 192.0.2.1 {S}", f"x IN NSEC {S} {S}", f"x IN RRSIG A 8 2 300 {S} {S} 1 x y", f"x IN URI 1 1 {S}",
    f"x IN HTTPS 1 . {S}", f"x IN SVCB 1 . alpn={S}", f"x IN SVCB 1 . {S}={S}", f"x IN CERT {S} 1 1 x",
    f"x IN IPSECKEY 1 2 3 {S} x", f"x IN APL {S}", f"x IN WKS 192.0.2.1 {S} smtp", f"x IN NSEC3 1 1 1 {S} x A",
    f"x IN NSEC3PARAM 1 1 1 {S}", f"x IN A \\{S}", "x IN MX 10 \u00e9\u0301" + S, f"x.{S}\u00df IN A 192.0.2.1",
    f"x IN CAA 0 {S} x", f"x IN CAA {S} issue x", f"x IN OPENPGPKEY {S}", f"x IN AMTRELAY 1 0 {S}",
    f"x IN GPOS {S} 1 1", f"x IN ISDN {S} {S}", f"x IN EUI48 {S}", f"x IN L32 1 {S}", f"x IN NID 1 {S}",
    f"x IN HIP 2 {S} x", f"x IN SMIMEA 3 1 1 {S}", f"x IN ZONEMD 1 1 1 {S}", f"x IN CSYNC 1 1 {S}",
    f"x IN RP {S}.. x", f"x IN NSAP {S}", f"x IN DHCID {S}", f"x IN PX 1 {S}.. x", f"x IN KX 1 {S}..",
    f"x IN SPF \"{S}", f"x IN A 192.0.2.1 '{S}'", f"x IN TXT \"a\" {S}'b",
]


def echoes(text: str) -> bool:
    """Any 8 characters of the secret in a row, in any case."""
    low = text.lower()
    return any(S[i:i + 8].lower() in low for i in range(len(S) - 7))


@pytest.mark.parametrize("line", LINES)
@pytest.mark.parametrize("header", [True, False], ids=["in-a-zone", "alone"])
def test_a_zone_file_error_never_echoes_the_file(line, header):
    text = (HEAD if header else "") + line + "\n"
    try:
        load_zone_file(ZoneFileSpec("z.zone", "example.com", text))
    except UsageError as e:
        message = str(e)
        assert not echoes(message), message
        assert message.startswith("--zone-file z.zone: ") and "\n" not in message
    # (a line that parses is no error: nothing is printed about it)


@pytest.mark.parametrize("line", [f". IN DS 20326 8 2 {S}", f". IN DNSKEY 257 3 8 {S}", f"{S}", f"API_KEY={S}",
                                  f". IN {S} 1", f". {S} DS 1 8 2 AA", f"root:x:0:0:{S}:/root:/bin/bash",
                                  f". IN DS 20326 8 {S} E06D44B8"])
def test_a_trust_anchor_error_names_the_line_and_never_echoes_it(line):
    with pytest.raises(ValueError) as e:
        parse_anchors("; the root's key\n" + line + "\n")
    assert str(e.value).startswith("line 2") and not echoes(str(e.value)), str(e.value)


def test_what_an_error_line_may_show_of_a_token():
    from deliverck.net.overlay import redact, token_hint

    assert token_hint(S) == "'sk_l…'"
    assert token_hint("MXX") == "'M…'"
    assert token_hint("x") == "'x'"
    assert token_hint("\x1b[31mred") == "'\\x1b[31…'"
    assert redact("unknown rdatatype 'sk_live_abcdef'", "x sk_live_abcdef") == "unknown rdatatype 'sk_l…'"
    assert redact('expected EOL or EOF, got 3 "tok3n123"', "tok3n123") == "expected EOL or EOF, got 3 'tok3…'"
    assert redact("zone file directive '$INCLUDE' is not allowed", "$INCLUDE x") == \
        "zone file directive '$INCLUDE' is not allowed"
    # Unquoted, but in the file: cut too; words of the message that are not in the file stay.
    assert redact("bad value hunter2pass here", "pw hunter2pass") == "bad value 'hunt…' here"
