"""The first UDP try of a lookup, outside dnspython's `_Resolution` (issue 16, CPU per bulk audit).

dnspython's resolver builds a Message per query and its `Answer` walks the answer section with
`find_rrset` several times: about half the CPU of a question in a bulk run of domains that share
nothing.  `first_try` does the first try itself (the same question bytes but the ID, the first
resolver, the per-try timeout, TCP on truncation) and judges it by dnspython's rules
(resolver.py `_Resolution.query_result`); anything else continues in dnspython's resolver.
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from typing import Any

import dns.asyncbackend
import dns.asyncresolver
import dns.exception
import dns.message
import dns.name
import dns.nameserver
import dns.rcode
import dns.rdataclass
import dns.rdatatype
import dns.resolver

from deliverck.net.udp import PlainQuery
from deliverck.net.udp import exchange as udp_exchange

EDNS_PAYLOAD = 1232  # the DNS flag day 2020 size: avoids fragmentation, TCP on TC


# Asked types whose RRsets `find_rrset` matches by more than name and type (RRSIG and SIG by the
# type they cover), or that a CNAME in the answer is itself the answer to: dnspython's Answer.
_CHAINED_TYPES = frozenset((dns.rdatatype.RRSIG, dns.rdatatype.SIG, dns.rdatatype.ANY, dns.rdatatype.CNAME,
                            dns.rdatatype.DNAME))


class _PlainAnswer:
    """What `_network_query` reads of a dnspython `Answer`, for an answer section without a CNAME."""
    __slots__ = ("response", "rrset", "canonical_name", "nameserver", "port")

    def __init__(self, response, rrset, canonical_name, nameserver, port) -> None:
        self.response, self.rrset, self.canonical_name = response, rrset, canonical_name
        self.nameserver, self.port = nameserver, port


def _plain_answer(name: dns.name.Name, rdtype: int, resp: dns.message.Message, server: str,
                  port: int) -> _PlainAnswer | None:
    """The answer to a NOERROR response in one walk of its answer section, when no CNAME is in it
    (None otherwise: dnspython's `Answer` follows the chain).  Without a CNAME,
    `Message.resolve_chaining` finds the RRset of the question's name, class and type, or none
    (NODATA), and the canonical name is the question's; its checks (a response, one question)
    are `is_response`'s, already passed."""
    if rdtype in _CHAINED_TYPES:
        return None
    found = None
    for rrset in resp.answer:
        if rrset.rdtype == dns.rdatatype.CNAME or rrset.rdtype == dns.rdatatype.DNAME and rdtype != dns.rdatatype.DNAME:
            return None
        if (found is None and rrset.rdtype == rdtype and rrset.covers == dns.rdatatype.NONE
                and rrset.rdclass == dns.rdataclass.IN and rrset.name == name):
            found = rrset
    if len(resp.question) != 1:
        return None
    return _PlainAnswer(resp, found, resp.question[0].name, server, port)



async def first_try(r: dns.asyncresolver.Resolver, servers: Sequence[dns.nameserver.Do53Nameserver],
                    name: dns.name.Name, rdtype: str, start: float) -> Any:
    """dnspython's `Resolver.resolve`, with its first UDP try done here (issue 16).

    Its `_Resolution` builds a Message per query and `Answer` walks the answer section with
    `find_rrset` several times: about half the CPU of a question.  The first try is the
    same exchange as its first try (the first resolver, the per-try timeout, the same
    query bytes but the ID) and its outcome is judged by the same rules (resolver.py
    `_Resolution.query_result`); whatever this does not settle itself (a timeout, an
    unusable datagram, a truncated answer, an rcode other than NOERROR/NXDOMAIN with
    another resolver left, a malformed chain) continues in dnspython's resolver with the
    rest of the lifetime and the resolvers it would try next, and the error of the first
    try is kept in front of its errors, as dnspython would have kept it."""
    rdt = dns.rdatatype.from_text(rdtype)
    if dns.rdatatype.is_metatype(rdt):
        return await _resolve_rest(r, servers, name, rdtype, start, (), rotate=0)   # dnspython refuses those
    first = servers[0]
    port = first.port
    request = PlainQuery(name, rdt, r.flags or 0, EDNS_PAYLOAD)
    errors: tuple = ()
    tcp = False
    try:
        resp: Any = await udp_exchange(request, first.address, port, min(r.timeout, r.lifetime))
    except dns.message.Truncated as e:
        # dnspython asks the same server again over TCP (RFC 7766), with its own TCP code.
        errors, tcp = ((str(first), False, port, e, None),), True
        query = dns.message.make_query(name, rdt, use_edns=0, payload=EDNS_PAYLOAD, flags=r.flags or 0)
        left = r.lifetime - (time.monotonic() - start)
        try:
            if left <= 0:
                raise dns.resolver.LifetimeTimeout(timeout=r.lifetime, errors=list(errors))
            resp = await first.async_query(query, min(r.timeout, left), None, 0, True,
                                              dns.asyncbackend.get_default_backend())
        except dns.resolver.LifetimeTimeout:
            raise
        except Exception as e2:
            drop = isinstance(e2, (dns.exception.FormError, EOFError, OSError, NotImplementedError,
                                   dns.message.Truncated))
            return await _resolve_rest(r, servers, name, rdtype, start, (*errors, (str(first), True, port, e2, None)),
                                            rotate=1, drop_first=drop)
    except Exception as e:          # a Timeout, OSError: the try dnspython would record
        entry: tuple = (str(first), False, port, e, None)
        drop = isinstance(e, (dns.exception.FormError, EOFError, OSError, NotImplementedError))
        return await _resolve_rest(r, servers, name, rdtype, start, (entry,), rotate=1, drop_first=drop)
    rcode = resp.rcode()
    if rcode == dns.rcode.NOERROR:
        answer: Any = None if tcp else _plain_answer(name, rdt, resp, first.address, port)
        if answer is None:
            try:
                answer = dns.resolver.Answer(name, rdt, dns.rdataclass.IN, resp, first.address, port)
            except Exception as e:
                return await _resolve_rest(r, servers, name, rdtype, start,
                                                (*errors, (str(first), tcp, port, e, resp)),
                                                rotate=1, drop_first=True)
        return answer
    if rcode == dns.rcode.NXDOMAIN:
        if resp.answer:
            try:
                dns.resolver.Answer(name, dns.rdatatype.ANY, dns.rdataclass.IN, resp)
            except Exception as e:
                return await _resolve_rest(r, servers, name, rdtype, start,
                                                (*errors, (str(first), tcp, port, e, resp)),
                                                rotate=1, drop_first=True)
        raise dns.resolver.NXDOMAIN(qnames=[name], responses={name: resp})
    if rcode == dns.rcode.YXDOMAIN:
        raise dns.resolver.YXDOMAIN()
    entry = (str(first), tcp, port, dns.rcode.to_text(rcode), resp)
    return await _resolve_rest(r, servers, name, rdtype, start, (*errors, entry), rotate=1, drop_first=True)

async def _resolve_rest(r: dns.asyncresolver.Resolver, all_servers: Sequence[dns.nameserver.Do53Nameserver],
                       name: dns.name.Name, rdtype: str, start: float, errors: tuple, *,
                        rotate: int, drop_first: bool = False):
    """dnspython's resolver from where the first try left off: the other resolvers first (the
    first one last, or not at all when dnspython would have taken it out of the mix), within
    what is left of the lifetime."""
    servers: list[dns.nameserver.Nameserver] = list(all_servers)
    if drop_first:
        servers = servers[1:]
    elif rotate:
        servers = servers[1:] + servers[:1]
    if not servers:
        raise dns.resolver.NoNameservers(request=dns.message.make_query(name, rdtype), errors=list(errors))
    left = r.lifetime - (time.monotonic() - start)
    if left <= 0:
        raise dns.resolver.LifetimeTimeout(timeout=r.lifetime, errors=list(errors))
    rest = dns.asyncresolver.Resolver(configure=False)
    rest.nameservers = servers
    rest.use_edns(0, 0, EDNS_PAYLOAD)
    rest.flags, rest.timeout, rest.lifetime = r.flags, r.timeout, left
    rest.retry_servfail, rest.cache, rest.search, rest.ndots = False, None, [], 1
    try:
        return await rest.resolve(name, rdtype, raise_on_no_answer=False, search=False)
    except dns.resolver.NoNameservers as e:
        raise dns.resolver.NoNameservers(request=e.kwargs.get("request"),
                                         errors=[*errors, *(e.kwargs.get("errors") or [])]) from None

