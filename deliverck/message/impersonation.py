"""Does a From field pretend to come from a large mailbox provider?

Gmail's sender guidelines forbid impersonating Gmail in From headers, and every large receiver's
filters score a From that borrows a provider's name while coming from elsewhere.  An accusation here
must be certain, so only three shapes count, and never when the From domain belongs to the provider
itself (Google Calendar mail from google.com is Google's own):

- the display name carries an address at a provider's domain ("support@gmail.com" <x@other.test>);
- the display name is the provider's brand followed by a staff word ("Gmail Team", "Microsoft
  Account Security", "Yahoo Mail Support");
- the From domain's registrable label differs from a provider's by one look-alike character (digit
  for letter: gmai1.com, yah00.com; "rn" for "m": rnicrosoft.com) under the same public suffix.

A brand mentioned in passing ("Tips for Gmail users") or a domain that merely contains a brand
(gmail-tips.example) is not judged: such names are common and mostly honest.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from deliverck.target import org_domain

# Registrable labels of the providers' own domains (any public suffix: yahoo.co.uk, hotmail.fr).
PROVIDERS: dict[str, str] = {
    "gmail": "Google", "googlemail": "Google", "google": "Google",
    "outlook": "Microsoft", "hotmail": "Microsoft", "live": "Microsoft", "msn": "Microsoft",
    "microsoft": "Microsoft", "office365": "Microsoft", "office": "Microsoft",
    "yahoo": "Yahoo", "ymail": "Yahoo", "aol": "Yahoo",
    "icloud": "Apple", "apple": "Apple", "me": "Apple",
}
_BRANDS = ("gmail", "google", "outlook", "hotmail", "microsoft", "office 365", "yahoo", "aol", "icloud", "apple")
_STAFF = ("team", "support", "security", "account", "accounts", "admin", "administrator", "verification",
          "service", "services", "helpdesk", "help desk", "postmaster", "mail delivery", "billing", "notification",
          "notifications", "alert", "alerts")
_BRAND_STAFF = re.compile(r"\b(" + "|".join(re.escape(b) for b in _BRANDS) + r")(?:\s+\w+)?\s+("
                          + "|".join(re.escape(s) for s in _STAFF) + r")\b", re.I)
_ADDRESS = re.compile(r"[A-Za-z0-9._%+-]+@([A-Za-z0-9-]+(?:\.[A-Za-z0-9-]+)+)")
# One character a reader takes for another, and the brand labels it could fake.
_LOOKALIKE = {"0": "o", "1": "l", "3": "e", "5": "s", "!": "i", "rn": "m", "vv": "w"}
_LOOK_TARGETS = ("gmail", "google", "outlook", "hotmail", "microsoft", "yahoo", "icloud", "apple")


@dataclass(frozen=True)
class Impersonation:
    provider: str       # "Google"
    how: str            # one line: what in the From field borrows the provider's name
    shown: str          # the part of the field that does it


def _label(domain: str) -> tuple[str, str]:
    """(registrable label, public suffix) of DOMAIN."""
    org = org_domain(domain)
    label, _, suffix = org.partition(".")
    return label, suffix


def owner_of(domain: str) -> str:
    """The provider that owns DOMAIN's organizational domain, or ""."""
    return PROVIDERS.get(_label(domain)[0], "") if domain else ""


def _lookalike(label: str) -> str:
    """The brand LABEL imitates by look-alike characters, or ""."""
    if label in PROVIDERS or not label:
        return ""
    for fake, real in _LOOKALIKE.items():
        if fake in label:
            candidate = label.replace(fake, real)
            if candidate in _LOOK_TARGETS:
                return candidate
    return ""


def judge(display_name: str, domain: str) -> Impersonation | None:
    """What in a From field (DISPLAY_NAME <...@DOMAIN>) impersonates a provider, or None."""
    own = owner_of(domain)
    for m in _ADDRESS.finditer(display_name):
        provider = owner_of(m.group(1).lower())
        if provider and provider != own:
            return Impersonation(provider, f"the display name shows an address at {m.group(1).lower()}",
                                 m.group(0))
    m2 = _BRAND_STAFF.search(display_name)
    if m2:
        brand = m2.group(1).lower().replace(" 365", "365").replace(" ", "")
        provider = PROVIDERS.get(brand, "")
        if provider and provider != own:
            return Impersonation(provider, f"the display name {m2.group(0)!r} speaks for {provider}", m2.group(0))
    label, suffix = _label(domain) if domain else ("", "")
    real = _lookalike(label)
    if real and not own:
        return Impersonation(PROVIDERS[real], f"the From domain {domain} imitates {real}.{suffix} with look-alike "
                             "characters", domain)
    return None
