import pytest

from deliverck.errors import UsageError
from deliverck.net.addresses import Scope, scope
from deliverck.net.dns import ResolverAddress, parse_resolver
from deliverck.target import parse_target


@pytest.mark.parametrize("text,name,ip", [
    ("example.com", "example.com", ""),
    ("Example.COM.", "example.com", ""),
    ("  mail.example.com  ", "mail.example.com", ""),
    ("bücher.example", "xn--bcher-kva.example", ""),
    ("BÜCHER.example", "xn--bcher-kva.example", ""),
    ("xn--bcher-kva.example", "xn--bcher-kva.example", ""),
    ("192.0.2.1", "", "192.0.2.1"),
    ("[192.0.2.1]", "", "192.0.2.1"),
    ("2001:DB8::1", "", "2001:db8::1"),
    ("[IPv6:2001:db8::1]", "", "2001:db8::1"),
])
def test_valid_targets(text, name, ip):
    t = parse_target(text)
    assert (t.name, t.ip) == (name, ip)


def test_mail_address_means_its_domain():
    t = parse_target("user@Example.com")
    assert t.name == "example.com"
    assert t.notes and "example.com" in t.notes[0]


@pytest.mark.parametrize("text,fragment", [
    ("", "empty"),
    ("   ", "empty"),
    ("a" * 64 + ".example", "at most 63"),
    (".".join(["abcdefghij"] * 26), "at most 253"),
    ("exa mple.com", "valid host name"),
    ("ex_ample.com", "valid host name"),
    ("-bad.example.com", "valid host name"),
    ("https://example.com/", "URL"),
    ("example.com/path", "URL"),
    ("mail.example.com:25", "port"),
    ("192.0.2.1:25", "port"),
    ("localhost", "single label"),
    ("a..example.com", "empty label"),
    ("a@b@c", "more than one"),
    ("@example.com", "not a mail address"),
    ("1.2.3.999", "neither"),
    ("[not-an-ip]", "address literal"),
    ("ex\x1bample.com", "control"),
])
def test_bad_targets(text, fragment):
    with pytest.raises(UsageError) as e:
        parse_target(text)
    assert fragment in str(e.value)
    assert "\n" not in str(e.value)


@pytest.mark.parametrize("text,expect", [
    ("192.0.2.53", ResolverAddress("192.0.2.53", 53)),
    ("192.0.2.53:5353", ResolverAddress("192.0.2.53", 5353)),
    ("2001:db8::53", ResolverAddress("2001:db8::53", 53)),
    ("[2001:db8::53]:5353", ResolverAddress("2001:db8::53", 5353)),
])
def test_parse_resolver(text, expect):
    assert parse_resolver(text) == expect


@pytest.mark.parametrize("text", ["", "dns.example", "192.0.2.1:0", "192.0.2.1:99999", "[2001:db8::1", "1.2.3"])
def test_parse_resolver_rejects(text):
    with pytest.raises(UsageError):
        parse_resolver(text)


@pytest.mark.parametrize("ip,expected", [
    ("192.0.2.1", Scope.PUBLIC),          # documentation ranges count as public: the labs live there
    ("2001:db8::1", Scope.PUBLIC),
    ("8.8.8.8", Scope.PUBLIC),
    ("10.1.2.3", Scope.PRIVATE),
    ("172.16.0.1", Scope.PRIVATE),
    ("172.32.0.1", Scope.PUBLIC),
    ("192.168.1.1", Scope.PRIVATE),
    ("100.64.0.1", Scope.SHARED),
    ("127.0.0.1", Scope.LOOPBACK),
    ("169.254.1.1", Scope.LINK_LOCAL),
    ("fe80::1", Scope.LINK_LOCAL),
    ("fd00::1", Scope.PRIVATE),
    ("::1", Scope.LOOPBACK),
    ("0.1.2.3", Scope.UNSPECIFIED),
    ("224.0.0.1", Scope.MULTICAST),
    ("255.255.255.255", Scope.RESERVED),
])
def test_address_scope(ip, expected):
    assert scope(ip) is expected


# --- issue 14: an address no audit would probe is not a target -----------------------------

@pytest.mark.parametrize("text,fragment", [
    ("127.0.0.1", "127.0.0.1 is a loopback address, not a mail server address"),
    ("[127.0.0.1]", "is a loopback address"),
    ("127.0.0.53", "is a loopback address"),
    ("::1", "::1 is a loopback address"),
    ("[IPv6:::1]", "is a loopback address"),
    ("0.0.0.0", "0.0.0.0 is an unspecified address"),
    ("::", ":: is an unspecified address"),
    ("10.1.2.3", "is a private address"),
    ("192.168.1.1", "is a private address"),
    ("fd00::25", "is a private address"),
    ("100.64.0.1", "is a shared (CGNAT) address"),
    ("169.254.1.1", "is a link-local address"),
    ("fe80::1", "is a link-local address"),
    ("240.0.0.1", "is a reserved address"),
    ("224.0.0.25", "is a multicast address"),
    ("::ffff:127.0.0.1", "give the IPv4 address 127.0.0.1 itself"),
])
def test_addresses_nothing_would_probe_are_refused(text, fragment):
    from deliverck.target import refuse_unprobeable

    with pytest.raises(UsageError) as e:
        refuse_unprobeable(parse_target(text), probe_private=False)
    assert fragment in str(e.value) and "\n" not in str(e.value)


@pytest.mark.parametrize("text", ["192.0.2.1", "198.51.100.25", "203.0.113.9", "2001:db8::25", "[IPv6:2001:db8::1]",
                                  "9.9.9.9", "2a00:1450:4001::1b", "mail.example.com", "localhost.example"])
def test_documentation_public_addresses_and_names_stay_targets(text):
    from deliverck.target import refuse_unprobeable

    refuse_unprobeable(parse_target(text), probe_private=False)


@pytest.mark.parametrize("text,allowed", [("127.0.0.1", True), ("::1", True), ("10.0.0.25", True),
                                          ("0.0.0.0", False), ("::", False), ("224.0.0.25", False)])
def test_probe_private_allows_what_it_can_probe(text, allowed):
    """--probe-private probes loopback and private addresses; the unspecified address and
    multicast are never probed (deliverck/context.py), so they stay refused."""
    from deliverck.target import refuse_unprobeable

    if allowed:
        refuse_unprobeable(parse_target(text), probe_private=True)
    else:
        with pytest.raises(UsageError):
            refuse_unprobeable(parse_target(text), probe_private=True)


@pytest.mark.parametrize("args", [["127.0.0.1", "--probe-private"], ["::1", "--probe-private"], ["192.0.2.1"],
                                  ["2001:db8::1"]])
def test_probeable_addresses_are_audited(lab, args):
    """Through the CLI: loopback with --probe-private, and documentation addresses, are audited (the
    smtp check ran against them), not refused."""
    import json

    from conftest import deliverck

    r = deliverck(*args, "--only", "smtp", "--json", "--smtp-timeout", "2", "--deadline", "10")
    assert r.returncode in (0, 1, 3), r.stderr
    doc = json.loads(r.stdout)
    assert doc["target"]["input"] == args[0]
    assert [c["id"] for c in doc["checks"]] == ["smtp"]
    assert "was not probed" not in r.stdout
