"""Parsers and evaluators of published mail records: SPF, DKIM, DMARC, MTA-STS and
TLS-RPT, TLSA matching, DNS block lists.

They live apart from net/ so that every rule a receiver applies to a record can
be read, tested and reused without a socket: the checks fetch through the
Context and hand the answers here.  Nothing in this package opens a connection.
Two kinds of import from net/ remain, both data or pure logic rather than I/O:
the DNS answer types (`net.dns.DnsAnswer`, `Outcome`) that the SPF evaluator and
DKIM discovery interpret, and `net.tls.name_matches` (RFC 6125 wildcards),
which DANE-TA's host-name rule shares with PKIX verification.  The SPF
evaluator walks include trees through an injected `Lookup`, so it asks
questions but never chooses how they travel.
"""
