"""The fixed vocabulary of bounce categories (a public interface: docs/explain.md).

Every catalog entry has one category, and `deliverck explain` sorts every
bounce into one.  A category says what kind of cause is behind a bounce,
who usually acts, and which deliverck checks test that cause; the finer
meaning and fix come from the catalog entry or the explain rule that matched.

Ids are stable: add new ones, never rename or reuse one.
"""

from __future__ import annotations

from dataclasses import dataclass

from deliverck.model import Owner


@dataclass(frozen=True)
class Category:
    id: str
    title: str
    meaning: str
    owner: Owner                       # who usually acts
    checks: tuple[str, ...] = ()       # deliverck checks that test the cause


CATEGORIES: tuple[Category, ...] = (
    Category("user_unknown", "Recipient does not exist",
             "The receiving system has no mailbox for the recipient address (typo, left the company, wrong domain).",
             Owner.NOBODY),
    Category("mailbox_full", "Mailbox full or over quota",
             "The recipient's mailbox is over its storage quota, or receives too much mail too fast.",
             Owner.RECEIVER),
    Category("mailbox_disabled", "Mailbox disabled or not accepting mail",
             "The recipient address exists but is disabled, suspended, frozen or inactive.",
             Owner.RECEIVER),
    Category("host_unknown", "Recipient domain or mail host not found",
             "DNS gives no way to deliver: the domain or its MX host does not exist, has no address, or publishes a null MX.",
             Owner.DNS_ADMIN, ("mx", "dnssec")),
    Category("no_mail_accepted", "The receiving server takes no mail",
             "The domain's mail host refuses SMTP: null MX, a 5xx greeting, a server that does not speak SMTP.",
             Owner.MAIL_ADMIN, ("mx", "smtp")),
    Category("network", "Cannot connect to the receiving server",
             "Connections to the MX host are refused or time out, or the connection drops (firewall, server down, port 25 blocked).",
             Owner.NETWORK, ("smtp", "mx")),
    Category("expired", "Delivery kept failing until the message expired",
             "The sender retried a temporary failure until its queue lifetime ran out; the underlying cause is in the last attempt's reply.",
             Owner.MAIL_ADMIN, ("mx", "smtp", "starttls")),
    Category("reverse_dns", "Sending address has no valid reverse DNS",
             "The sending IP has no PTR record, or the PTR name does not resolve back to it, or it looks dynamic/generic.",
             Owner.IP_OWNER, ("ptr",)),
    Category("bad_helo", "Bad HELO/EHLO name",
             "The sending server greets with a name that is not a fully qualified, resolvable host name (or is the receiver's own).",
             Owner.MAIL_ADMIN, ("helo",)),
    Category("blocked_ip", "Sending IP or domain is block-listed",
             "The sending address (or the domain) is on a DNS block list or the receiver's own reputation list.",
             Owner.MAIL_ADMIN, ("dnsbl", "relay", "ptr")),
    Category("auth_spf", "SPF failure",
             "The sending address is not authorised by the sender domain's SPF record, or the record is broken.",
             Owner.DNS_ADMIN, ("spf",)),
    Category("auth_dmarc", "DMARC / DKIM authentication failure",
             "The message failed DMARC (neither an aligned SPF pass nor an aligned DKIM signature) or the receiver requires authentication the message lacks.",
             Owner.DNS_ADMIN, ("dmarc", "dkim", "spf")),
    Category("tls", "TLS or certificate failure",
             "TLS was required (policy, MTA-STS, DANE) and could not be established or the certificate was not acceptable.",
             Owner.MAIL_ADMIN, ("starttls", "dane", "mta_sts", "dnssec")),
    Category("rate_limited", "Rate limited or throttled",
             "The receiver is throttling the sender (too many messages, connections or recipients); retry later, slower.",
             Owner.MAIL_ADMIN),
    Category("content_rejected", "Message content rejected",
             "The receiver rejected the message for its content: spam or virus filter, policy on attachments or headers.",
             Owner.MAIL_ADMIN),
    Category("message_too_large", "Message too large",
             "The message exceeds the size the receiving system accepts.",
             Owner.NOBODY),
    Category("relay_denied", "Relaying denied",
             "The receiving server is not a destination for the recipient's domain and does not relay for the sender (wrong MX, missing accepted domain, or unauthenticated submission).",
             Owner.MAIL_ADMIN, ("mx", "relay")),
    Category("auth_kerberos", "Server-to-server authentication failed (Kerberos)",
             "Mail between the organisation's own Exchange servers fails to authenticate (clock skew, KDC unreachable, SPN, replication).",
             Owner.MAIL_ADMIN, ("kerberos",)),
    Category("sender_rejected", "Sender address or domain rejected",
             "The receiver refused the envelope sender or the From address: its domain does not exist or cannot receive mail (no MX, null MX), or the address is refused by the receiver's policy.",
             Owner.DNS_ADMIN, ("sender_domain", "spf", "dmarc")),
    Category("undetermined", "Undetermined",
             "The bounce does not say enough to tell the cause with confidence; the evidence shows what was found.",
             Owner.NOBODY),
)

BY_ID = {c.id: c for c in CATEGORIES}
IDS = tuple(c.id for c in CATEGORIES)


def get(category_id: str) -> Category:
    return BY_ID[category_id]
