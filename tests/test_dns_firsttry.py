"""The first UDP try of net/dnsresolve.py (issue 16, CPU per bulk audit: building queries and
walking answers outside dnspython's `_Resolution`) gives every lookup the answer dnspython's
resolver gives, and builds no dnspython query Message for it."""

from __future__ import annotations

import dataclasses

import dns.message
import dns.name
import dns.rdatatype
import pytest

from deliverck.net import dns as dnsnet
from deliverck.net import dnsresolve, udp
from deliverck.net.dns import DnsClient, parse_resolver


@pytest.mark.parametrize("name,rdtype", [("A.Example.COM", "MX"), ("_dmarc.d1.solo.example", "TXT"), (".", "NS"),
                                          ("1.2.0.192.in-addr.arpa", "PTR")])
def test_plain_query_is_the_wire_dnspython_writes(name, rdtype):
    q = udp.PlainQuery(dns.name.from_text(name), dns.rdatatype.from_text(rdtype), dns.flags.RD | dns.flags.AD,
                       dnsresolve.EDNS_PAYLOAD)
    m = dns.message.make_query(name, rdtype, use_edns=0, payload=dnsresolve.EDNS_PAYLOAD,
                               flags=dns.flags.RD | dns.flags.AD)
    m.id = q.id
    assert q.to_wire() == m.to_wire()
    reply = dns.message.make_response(m)
    assert q.is_response(reply)
    reply.id ^= 1
    assert not q.is_response(reply)


def _questions(lab):
    m365 = lab.scenario("dkim-m365").domain
    return [("good.test", "MX"), ("good.test", "TXT"), ("good.test", "CAA"), (f"_dmarc.{'good.test'}", "TXT"),
            (f"nothing-here.{m365}", "TXT"), (f"selector1._domainkey.{m365}", "TXT"), (".", "NS"),
            ("good.test", "RRSIG"), ("good.test", "ANY")]


async def test_every_outcome_is_the_one_of_dnspythons_resolver(lab, monkeypatch):
    fast = DnsClient((parse_resolver(lab.unbound),), timeout=5.0)
    made = []
    real = dns.message.make_query
    monkeypatch.setattr(dns.message, "make_query", lambda *a, **k: made.append(a) or real(*a, **k))
    got = [await fast._network_query(dnsnet._norm(n), t) for n, t in _questions(lab)]
    plain_types = {"MX", "TXT", "CAA", "NS"}
    assert not [a for a in made if str(a[1]) in plain_types], "a dnspython Message was built for a plain question"

    async def dnspython_only(r, servers, name, rdtype, start):
        return await dnsresolve._resolve_rest(r, servers, name, rdtype, start, (), rotate=0)

    monkeypatch.setattr(dnsnet, "first_try", dnspython_only)
    ref = DnsClient((parse_resolver(lab.unbound),), timeout=5.0)
    want = [await ref._network_query(dnsnet._norm(n), t) for n, t in _questions(lab)]
    for g, w in zip(got, want, strict=True):   # unbound rotates RRset order: compared sorted
        g, w = dataclasses.replace(g, elapsed_ms=0), dataclasses.replace(w, elapsed_ms=0)
        assert (g.outcome, g.canonical_name, g.ttl <= w.ttl + 1, sorted(g.texts()), g.authenticated, g.server, g.detail,
                g.recursion_available) == (w.outcome, w.canonical_name, True, sorted(w.texts()), w.authenticated, w.server,
                                           w.detail, w.recursion_available), (g.qname, g.rdtype)
    await dnsnet.close(fast)
    await dnsnet.close(ref)
