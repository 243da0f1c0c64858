"""The names check_host() works with: which domains it accepts, how a name goes on the wire, and the
small text helpers the evaluator and the linter share (RFC 7208 4.3, 7.3).
"""

from __future__ import annotations

import ipaddress

from deliverck.net.dns import DnsAnswer


def domain_problem(name: str) -> str:
    """Why `name` cannot be the <domain> of check_host(), or "" when it can.

    RFC 7208 4.3: a malformed domain (a label over 63 octets, an empty label
    not at the end, ...) or one that is not multi-label gives "none" before
    any DNS query.  SMTP receivers meet all of these every day: HELO names
    such as OEMCOMPUTER, address literals such as [192.0.2.1] (RFC 5321
    4.1.3), MAIL FROM domains that are address literals.
    """
    n = name[:-1] if name.endswith(".") else name
    if not n.strip():
        return "it is empty"
    if n.startswith("[") or n.endswith("]"):
        return "it is an address literal (RFC 5321 4.1.3), not a domain name"
    try:
        ipaddress.ip_address(n)
        return "it is an IP address, not a domain name"
    except ValueError:
        pass
    octets = len(n.encode("utf-8", "replace"))
    if octets > 253:
        return f"it is {octets} octets long (a domain name has at most 253)"
    labels = n.split(".")
    if len(labels) < 2:
        return "it is a single label, not a fully qualified domain name"
    for lb in labels:
        if not lb:
            return "it has an empty label"
        size = len(lb.encode("utf-8", "replace"))
        if size > 63:
            return f"its label {lb[:16]}... is {size} octets long (a DNS label has at most 63)"
    if labels[-1].isdigit():
        return "its last label is all digits, so it is no domain name"
    return ""


def loop_message(term: str, target: str, path: tuple[str, ...]) -> str:
    """How a loop in the SPF record tree is worded, by the lint and by check_host() alike."""
    return f"{term}: loops back to {target} ({' -> '.join(path + (target,))})"


# Octets that stand for themselves in dnspython's text form of a name; every
# other octet of a label is written \DDD, so that the query carries exactly
# the octets the macro expansion produced (RFC 7208 7.3 does not restrict them:
# a HELO name with a space or a quote expands into a label with one).
_PLAIN_OCTETS = frozenset(c for c in range(0x21, 0x7F) if c not in b"\\.")


def query_name(name: str) -> tuple[str, str]:
    """(the name in dnspython's text form, "") or ("", why no DNS query can be made for it)."""
    n = name[:-1] if name.endswith(".") else name
    if not n:
        return "", "empty name"
    out = []
    wire = 1
    for label in n.split("."):
        raw = label.encode("utf-8", "surrogateescape")
        if not raw:
            return "", "empty label"
        if len(raw) > 63:
            return "", f"label of {len(raw)} octets, at most 63"
        wire += len(raw) + 1
        out.append(label if all(c in _PLAIN_OCTETS for c in raw)
                   else "".join(chr(c) if c in _PLAIN_OCTETS else f"\\{c:03d}" for c in raw))
    if wire > 255:
        return "", f"{wire} octets, at most 255"
    return ".".join(out), ""


def split_sender(sender: str) -> tuple[str, str]:
    if "@" in sender:
        local, _, domain = sender.rpartition("@")
        return local or "postmaster", domain
    return "postmaster", sender


def txt_string(rdata) -> str:
    strings = getattr(rdata, "strings", None)
    if strings is None:
        return str(rdata)
    return b"".join(strings).decode("utf-8", "replace")


def answer_texts(ans: DnsAnswer) -> tuple[str, ...]:
    out = []
    for r in ans.records[:20]:
        if hasattr(r, "strings"):
            out.append(txt_string(r))
        else:
            out.append(r.to_text())
    return tuple(out)


def norm(name: str) -> str:
    return name.rstrip(".").lower()


def truncate(name: str) -> str:
    """Over 253 characters: drop labels from the left (RFC 7208 7.3)."""
    name = name.rstrip(".")
    while len(name) > 253 and "." in name:
        name = name.split(".", 1)[1]
    return name
