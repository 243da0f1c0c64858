"""The CPU shortcuts of net/dns.py (issue 16, bulk CPU per domain) give what dnspython's slow
paths give: the same Name for a question, the same canonical name for an NXDOMAIN, the same
resolvers from /etc/resolv.conf."""

import dns.name
import pytest

from deliverck.net import dns as dnsnet
from deliverck.net.dns import DnsClient, Outcome, parse_resolver

NAMES = ["", ".", "a", "a.", "A.Example.COM", "_dmarc.d1.solo.example", "selector1._domainkey.example.org",
         "1.0.0.127.zen.spamhaus.org", "x" * 63 + ".com", "*.example", "-x-.com", "a b.com", "a;b", "a/b",
         "a\\.b.com", "a\\065.com", "@", "bücher.de", "xn--bcher-kva.de", "a.\t", "\x00a",
         # errors must be the same errors
         "a..b", "a..", "..", ".a", "x" * 64 + ".com", ".".join(["abcdefg"] * 40),
         ".".join(["x" * 63] * 3) + "." + "w" * 61, ".".join(["x" * 63] * 3) + "." + "w" * 62]


def _outcome(fn, text):
    try:
        name = fn(text)
    except Exception as e:
        return "error", type(e)
    return "ok", name.labels, name.is_absolute()


@pytest.mark.parametrize("text", NAMES)
def test_question_name_is_the_one_from_text_builds(text):
    assert _outcome(dnsnet._wire_name, text) == _outcome(dns.name.from_text, text)


def test_resolv_conf_is_parsed_once_while_it_does_not_change(monkeypatch, tmp_path):
    calls = []
    real = dnsnet._read_system_resolvers

    def counting():
        calls.append(1)
        return real()

    conf = tmp_path / "resolv.conf"
    conf.write_text("nameserver 192.0.2.53\n")
    monkeypatch.setattr(dnsnet, "RESOLV_CONF", str(conf))
    monkeypatch.setattr(dnsnet, "_system_seen", None)
    monkeypatch.setattr(dnsnet, "_read_system_resolvers", counting)
    first = dnsnet.system_resolvers()
    assert dnsnet.system_resolvers() == first and len(calls) == 1
    conf.write_text("nameserver 192.0.2.54\nnameserver 192.0.2.55\n")   # another size: read again
    dnsnet.system_resolvers()
    assert len(calls) == 2


async def test_nxdomain_canonical_name_follows_a_cname_and_is_the_name_without_one(lab):
    client = DnsClient((parse_resolver(lab.unbound),), timeout=5.0)
    domain = lab.scenario("dkim-m365").domain
    via = await client.lookup(f"selector1._domainkey.{domain}", "TXT")
    assert via.outcome is Outcome.NXDOMAIN
    assert via.canonical_name == "selector1-dkim-m365-test._domainkey.deliverck-lab.onmicrosoft.com"
    plain = await client.lookup(f"nothing-here.{domain}", "TXT")
    assert plain.outcome is Outcome.NXDOMAIN and plain.canonical_name == f"nothing-here.{domain}"
    await dnsnet.close(client)
