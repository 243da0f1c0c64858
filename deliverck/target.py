"""What the user asked us to audit, validated and normalised.

Accepts a domain or host name (IDN converted to A-labels, trailing dot
allowed), an IPv4/IPv6 literal (also in SMTP's `[...]` form), or an address
`user@example.com`, which stands for its domain.  Everything else is refused
with one line that says what to type instead.

An address target must be one deliverck can probe (refuse_unprobeable): an
unspecified (0.0.0.0, ::) or multicast address is never a mail server's, and
a loopback, private, shared (CGNAT), link-local or reserved one is probed only
with --probe-private.  Without this an audit of 127.0.0.1 probed nothing and
passed (issue 14).  A *name* whose addresses are all such addresses is not
refused: it is DNS data a receiver would use, and the mx check judges it
(mx.target_private, mx.no_usable_host: a fail, exit 1).
"""

from __future__ import annotations

import ipaddress
import re
from dataclasses import dataclass

from deliverck.errors import UsageError

_LDH = re.compile(r"^[a-z0-9](?:[a-z0-9-]{0,61}[a-z0-9])?$")


def sender_domain_of(sender: str) -> str:
    """The domain part of a --sender address, without a trailing dot, lower case ("" for none)."""
    if "@" not in (sender or ""):
        return ""
    return sender.rsplit("@", 1)[1].rstrip(".").lower()


def org_domain(name: str) -> str:
    """The registrable (organizational) domain, from the bundled public suffix list.

    The list is built once per process from a cached form (deliverck/datacache.py); an audit
    starts that load in a thread at its start (runner.run_audit), so a check calling this on
    the event loop finds it ready instead of parsing the list in the middle of the audit."""
    from deliverck.datacache import public_suffix_list

    return public_suffix_list().privatesuffix(name) or name


@dataclass(frozen=True)
class Target:
    input: str
    name: str = ""      # A-labels, lower case, no trailing dot
    ip: str = ""        # normalised IP literal
    notes: tuple[str, ...] = ()

    @property
    def is_ip(self) -> bool:
        return bool(self.ip)

    @property
    def label(self) -> str:
        return self.name or self.ip


def parse_target(text: str) -> Target:
    raw = text
    s = text.strip()
    if not s:
        raise UsageError("the target is empty: give a mail domain, host name or IP address")
    if any(ord(c) < 32 or ord(c) == 127 for c in s):
        raise UsageError("the target contains control characters: give a plain domain, host name or IP address")
    if "://" in s or "/" in s:
        raise UsageError(
            f"{_show(s)} looks like a URL or path: give just the mail domain or host name "
            "(e.g. example.com or mail.example.com)"
        )
    if s.startswith("[") and s.endswith("]"):
        inner = s[1:-1]
        if inner.lower().startswith("ipv6:"):
            inner = inner[5:]
        return Target(input=raw, ip=_ip_or_error(inner, s))
    if s.count("@") == 1:
        local, domain = s.split("@")
        if not local or not domain:
            raise UsageError(f"{_show(s)} is not a mail address or domain: use user@example.com or example.com")
        name = normalise_name(domain)
        return Target(input=raw, name=name, notes=(f"{_show(s)} is a mail address: auditing its domain {name}",))
    elif "@" in s:
        raise UsageError(f"{_show(s)} has more than one '@': give one domain or address")
    try:
        ip = ipaddress.ip_address(s)
        return Target(input=raw, ip=str(ip))
    except ValueError:
        pass
    if s.count(":") == 1 and s.rsplit(":", 1)[1].isdigit():
        raise UsageError(
            f"{_show(s)} carries a port: give the host without ':port' "
            "(deliverck probes the standard mail ports itself)"
        )
    return Target(input=raw, name=normalise_name(s))


def refuse_unprobeable(target: Target, probe_private: bool, option: str = "--probe-private") -> None:
    """UsageError when the target is an address no audit would probe (see the module docstring);
    documentation addresses (RFC 5737, RFC 3849) and public ones pass."""
    if not target.is_ip:
        return
    from deliverck.net.addresses import Scope, scope

    addr = ipaddress.ip_address(target.ip)
    shown = target.input.strip() or target.ip
    mapped = getattr(addr, "ipv4_mapped", None)
    if mapped is not None:
        raise UsageError(f"{shown} is an IPv4-mapped IPv6 address, which no mail server receives on: "
                         f"give the IPv4 address {mapped} itself")
    sc = scope(addr)
    if sc is Scope.PUBLIC:
        return
    if sc is Scope.UNSPECIFIED:
        raise UsageError(f"{shown} is an unspecified address (0.0.0.0/8, ::), not a mail server address: give "
                         "the server's name or the address it receives mail on")
    if sc is Scope.MULTICAST:
        raise UsageError(f"{shown} is a multicast address, not a mail server address: give the server's name "
                         "or the address it receives mail on")
    if probe_private:
        return
    what = {Scope.LOOPBACK: "a loopback", Scope.PRIVATE: "a private", Scope.SHARED: "a shared (CGNAT)",
            Scope.LINK_LOCAL: "a link-local"}.get(sc, "a reserved")
    raise UsageError(f"{shown} is {what} address, not a mail server address on the internet: nothing would be "
                     f"probed; give the server's public name or address, or {option} to probe it from here")


def is_address_literal(text: str) -> bool:
    """`[192.0.2.1]`, `[IPv6:2001:db8::1]` (RFC 5321 4.1.3), or a bare address."""
    inner = text[1:-1] if text.startswith("[") and text.endswith("]") else text
    if inner.lower().startswith("ipv6:"):
        inner = inner[5:]
    try:
        ipaddress.ip_address(inner)
    except ValueError:
        return False
    return True


def is_hostname(name: str) -> bool:
    """A syntactically valid fully qualified host name in A-label form (RFC 1123 2.1, RFC 5321 2.3.5)."""
    labels = name.rstrip(".").split(".")
    return len(name) <= 253 and len(labels) >= 2 and all(_LDH.match(lb.lower()) for lb in labels)


def normalise_name(text: str) -> str:
    """A-label, lower-case, no trailing dot; UsageError if not a valid host name."""
    s = text.strip()
    if s.endswith("."):
        s = s[:-1]
    if not s:
        raise UsageError("the name is empty: give a mail domain or host name")
    if s.startswith(".") or ".." in s:
        raise UsageError(f"{_show(text)} has an empty label: remove the extra dot")
    try:
        ascii_name = s.encode("ascii").decode().lower()
    except UnicodeEncodeError:
        import idna  # only for a name that is not ASCII: --help and plain names do not load its tables

        try:
            ascii_name = idna.encode(s, uts46=True).decode("ascii").lower()
        except idna.IDNAError as e:
            raise UsageError(f"{_show(text)} is not a valid internationalised domain name ({e})") from None
    if len(ascii_name) > 253:
        raise UsageError(
            f"the name is {len(ascii_name)} characters long; DNS allows at most 253 (RFC 1035 2.3.4)"
        )
    labels = ascii_name.split(".")
    for label in labels:
        if len(label) > 63:
            raise UsageError(
                f"the label {_show(label[:20])}... is {len(label)} characters long; DNS allows at most 63"
            )
        if not _LDH.match(label):
            raise UsageError(
                f"{_show(text)} is not a valid host name: {_show(label)} may only hold letters, "
                "digits and inner hyphens (RFC 5321 domain syntax)"
            )
        if label.startswith("xn--"):
            import idna

            try:
                idna.decode(label)
            except idna.IDNAError:
                raise UsageError(f"{_show(text)} has an invalid A-label {_show(label)}") from None
    if len(labels) < 2:
        raise UsageError(
            f"{_show(text)} is a single label: give a fully qualified name such as {ascii_name}.example.com"
        )
    if labels[-1].isdigit():
        raise UsageError(f"{_show(text)} is neither a valid IP address nor a host name")
    return ascii_name


def _ip_or_error(text: str, shown: str) -> str:
    try:
        return str(ipaddress.ip_address(text))
    except ValueError:
        raise UsageError(f"{_show(shown)} is not a valid address literal: use [192.0.2.1] or [IPv6:2001:db8::1]") from None


def _show(s: str) -> str:
    """Quote user input for an error line without echoing control bytes."""
    return repr(s[:80] + ("..." if len(s) > 80 else ""))
