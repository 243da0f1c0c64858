"""DMARC policy records, discovery rules and alignment (RFC 7489, with the DMARCbis tags).

DMARCbis (draft-ietf-dmarc-dmarcbis, "General Record Format") adds psd= (y: a public suffix
operator's record, n: an organizational domain's, u: not said) and t= (y: test mode), keeps np=
from RFC 9091, and removes pct=, rf= and ri=; records/dmarc_discovery.py applies them.

`parse_record(text)` raises `DmarcSyntaxError` for a record that is not a
DMARC record at all (bad tag-list syntax, v=DMARC1 not first); a record that
parses but has invalid values comes back with `problems` and the values a
receiver would use (RFC 7489 6.6.3 step 6: without a valid p= a record with a
valid rua= is treated as p=none; without either, no policy applies).
"""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass
from urllib.parse import unquote

from deliverck.records import tags as taglist
from deliverck.target import org_domain

KNOWN_TAGS = ("v", "p", "sp", "np", "adkim", "aspf", "pct", "rua", "ruf", "fo", "rf", "ri", "psd", "t")
# Tags DMARCbis removes: its receivers ignore them (draft-ietf-dmarc-dmarcbis, "Changes from RFC 7489").
REMOVED_TAGS = ("pct", "rf", "ri")
POLICIES = ("none", "quarantine", "reject")
_VERSION = re.compile(r"\s*v\s*=\s*DMARC1(?![0-9A-Za-z_.-])", re.I)
_URI = re.compile(r"^(?P<uri>[^!]+?)(?:!(?P<size>\d+)(?P<unit>[kmgt])?)?$", re.I)
_ADDR = re.compile(r"^[^@\s]+@(?P<domain>[A-Za-z0-9](?:[A-Za-z0-9.-]*[A-Za-z0-9])?)$")


# RFC 7489 6.2: "A report is normally sent to each listed URI in the order provided by the
# Domain Owner.  Receivers MAY impose a limit on the number of URIs to which they will send
# reports but MUST support the ability to send to at least two."
RECEIVER_URI_MINIMUM = 2
# URIs per tag (rua, ruf) whose destinations deliverck verifies: a lookup each.
REPORT_URI_LIMIT = 5


class DmarcSyntaxError(taglist.TagListError):
    """The text is not a valid DMARC record."""


def is_dmarc_candidate(text: str) -> bool:
    """Does this TXT record claim to be a DMARC record (start with v=DMARC1, any case)?

    RFC 7489 6.6.3 discards TXT records at _dmarc.<domain> that do not start so."""
    return bool(_VERSION.match(text))


@dataclass(frozen=True)
class ReportUri:
    uri: str
    scheme: str             # "mailto", "https", ...
    address: str = ""       # mailto: the address
    domain: str = ""        # mailto: the address's domain, lower-case
    size_limit: str = ""    # "10m" from "!10m"


@dataclass(frozen=True)
class DmarcRecord:
    text: str
    tags: dict
    policy: str                       # the p= receivers apply ("none" when p= was invalid but rua= valid)
    policy_valid: bool                # p= present and valid
    subdomain_policy: str             # sp=, else p
    nonexistent_policy: str           # np= (RFC 9091), else sp/p
    adkim: str = "r"
    aspf: str = "r"
    pct: int = 100
    rua: tuple[ReportUri, ...] = ()
    ruf: tuple[ReportUri, ...] = ()
    fo: tuple[str, ...] = ("0",)
    rf: tuple[str, ...] = ("afrf",)
    ri: int = 86400
    problems: tuple[str, ...] = ()    # invalid values; each says what receivers do instead
    unknown_tags: tuple[str, ...] = ()
    syntax_notes: tuple[str, ...] = ()
    psd: str = "u"                    # DMARCbis psd=: "y", "n" or "u" (not said)
    test_mode: bool = False           # DMARCbis t=y

    @property
    def removed_tags(self) -> tuple[str, ...]:
        """The tags of this record that DMARCbis receivers ignore (pct, rf, ri), as written."""
        return tuple(t for t in REMOVED_TAGS if t in self.tags)

    @property
    def applies(self) -> bool:
        """Does a receiver apply this record at all (RFC 7489 6.6.3 step 6)?"""
        return self.policy_valid or bool(self.rua)

    def policy_for(self, domain: str, policy_domain: str) -> str:
        """The policy for mail from `domain` when the record was found at `policy_domain`."""
        if domain.rstrip(".").lower() == policy_domain.rstrip(".").lower():
            return self.policy
        return self.subdomain_policy


def parse_uri(text: str) -> ReportUri:
    m = _URI.match(text.strip())
    if not m:
        raise ValueError(f"{text!r} is not a DMARC report URI")
    uri = m.group("uri").strip()
    size = (m.group("size") or "") + (m.group("unit") or "").lower()
    if ":" not in uri:
        raise ValueError(f"{uri!r} has no URI scheme (use mailto:address@domain)")
    scheme, rest = uri.split(":", 1)
    scheme = scheme.lower()
    if not re.fullmatch(r"[a-z][a-z0-9+.-]*", scheme):
        raise ValueError(f"{uri!r} has no valid URI scheme")
    if scheme != "mailto":
        return ReportUri(uri, scheme, size_limit=size)
    addr = unquote(rest.split("?", 1)[0])
    am = _ADDR.match(addr)
    if not am:
        raise ValueError(f"{uri!r}: {addr!r} is not an email address")
    return ReportUri(uri, scheme, addr, am.group("domain").lower().rstrip("."), size)


def _report_options(t: dict[str, str], problems: list[str]) -> tuple[int, int, tuple[str, ...], tuple[str, ...]]:
    """pct, ri, fo and rf (RFC 7489 6.3), with the values receivers use when a tag is malformed;
    each malformed tag adds its line to `problems`."""
    pct = 100
    if "pct" in t:
        if t["pct"].isdigit() and 0 <= int(t["pct"]) <= 100:
            pct = int(t["pct"])
        else:
            problems.append(f"pct={t['pct']!r} is not a number from 0 to 100; receivers use 100")
    ri = 86400
    if "ri" in t:
        if t["ri"].isdigit() and int(t["ri"]) < 2**32:
            ri = int(t["ri"])
        else:
            problems.append(f"ri={t['ri']!r} is not a number of seconds; receivers use 86400")
    fo: tuple[str, ...] = ("0",)
    if "fo" in t:
        items = taglist.split_list(t["fo"])
        bad = [x for x in items if x.lower() not in ("0", "1", "d", "s")]
        if bad or not items:
            problems.append(f"fo={t['fo']!r}: options are 0, 1, d and s, separated by ':'")
        fo = tuple(x.lower() for x in items if x.lower() in ("0", "1", "d", "s")) or ("0",)
    rf: tuple[str, ...] = ("afrf",)
    if "rf" in t:
        items = [x.lower() for x in taglist.split_list(t["rf"])]
        if not items or any(x != "afrf" for x in items):
            problems.append(f"rf={t['rf']!r}: the only failure report format is afrf")
        rf = tuple(items) or ("afrf",)
    return pct, ri, fo, rf


def parse_record(text: str) -> DmarcRecord:
    if not isinstance(text, str):
        raise DmarcSyntaxError("the record is not text")
    tl = taglist.parse(text, fold_case=True, error=DmarcSyntaxError)
    t = tl.tags
    if not tl.order or tl.order[0] != "v":
        raise DmarcSyntaxError("the record must start with v=DMARC1 (RFC 7489 6.4)", 0)
    if t["v"] != "DMARC1":
        if t["v"][:6] == "DMARC1" and t["v"][6:7].isspace():
            raise DmarcSyntaxError(f"v={t['v']!r}: a ';' is missing after v=DMARC1", 0)
        raise DmarcSyntaxError(f"v={t['v']!r}: the version must be exactly DMARC1 (RFC 7489 6.4)", 0)
    problems: list[str] = []

    def policy(tag: str) -> str:
        if tag not in t:
            return ""
        v = t[tag].lower()
        if v not in POLICIES:
            problems.append(f"{tag}={t[tag]!r} is not none, quarantine or reject")
            return ""
        return v

    def choice(tag: str, allowed: tuple[str, ...], default: str) -> str:
        if tag not in t:
            return default
        v = t[tag].lower()
        if v not in allowed:
            problems.append(f"{tag}={t[tag]!r} is not one of {', '.join(allowed)}; receivers use {default}")
            return default
        return v

    def uris(tag: str) -> tuple[ReportUri, ...]:
        if tag not in t:
            return ()
        out = []
        for item in taglist.split_list(t[tag], ","):
            try:
                out.append(parse_uri(item))
            except ValueError as e:
                problems.append(f"{tag}: {e}")
        if not out and not any(p.startswith(f"{tag}:") for p in problems):
            problems.append(f"{tag}= is empty")
        return tuple(out)

    p = policy("p")
    if "p" not in t:
        problems.append("p= is missing (it is required)")
    sp_given = "sp" in t
    sp = policy("sp")
    np_ = policy("np")
    rua = uris("rua")
    ruf = uris("ruf")
    policy_valid = bool(p) and not (sp_given and not sp)
    effective = p if policy_valid else ("none" if rua else "")
    pct, ri, fo, rf = _report_options(t, problems)
    sub = sp or effective
    psd = choice("psd", ("y", "n", "u"), "u")
    test_mode = choice("t", ("y", "n"), "n") == "y"
    return DmarcRecord(
        text=text, tags=dict(t), policy=effective, policy_valid=policy_valid,
        subdomain_policy=sub if effective else "", nonexistent_policy=(np_ or sub) if effective else "",
        adkim=choice("adkim", ("r", "s"), "r"), aspf=choice("aspf", ("r", "s"), "r"),
        pct=pct, rua=rua, ruf=ruf, fo=fo, rf=rf, ri=ri, problems=tuple(problems),
        unknown_tags=tuple(tl.raw_names[n] for n in tl.order if n not in KNOWN_TAGS),
        syntax_notes=tl.notes,
        psd=psd, test_mode=test_mode,
    )


def aligned(mode: str, from_domain: str, auth_domain: str,
            org: Callable[[str], str] = org_domain) -> bool:
    """Identifier alignment (RFC 7489 3.1): strict = same name; relaxed = same organizational domain."""
    a = from_domain.rstrip(".").lower()
    b = auth_domain.rstrip(".").lower()
    if not a or not b:
        return False
    if a == b:
        return True
    if mode == "s":
        return False
    return org(a) == org(b)


def external_destinations(record: DmarcRecord, policy_domain: str,
                          org: Callable[[str], str] = org_domain,
                          limit: int = REPORT_URI_LIMIT) -> list[ReportUri]:
    """mailto: report URIs whose domain is outside the policy domain's organization (RFC 7489 7.1),
    among the first `limit` URIs of each tag (each one costs an authorization lookup)."""
    mine = org(policy_domain.rstrip(".").lower())
    out = []
    for u in record.rua[:limit] + record.ruf[:limit]:
        if u.scheme == "mailto" and u.domain and org(u.domain) != mine and u not in out:
            out.append(u)
    return out


def authorization_name(policy_domain: str, destination_domain: str) -> str:
    return f"{policy_domain.rstrip('.').lower()}._report._dmarc.{destination_domain.rstrip('.').lower()}"


def authorizes(texts: list[str] | tuple[str, ...]) -> bool:
    """Do the TXT records at the authorization name grant the reports (some record starts with v=DMARC1)?"""
    return any(is_dmarc_candidate(x) for x in texts)


@dataclass(frozen=True)
class Evaluation:
    outcome: str            # "pass", "fail", "dkim_dependent", "unknown"
    spf_aligned: bool
    reason: str


def evaluate(aspf: str, from_domain: str, spf_result: str, spf_domain: str,
             dkim_possible: bool, org: Callable[[str], str] = org_domain) -> Evaluation:
    """Would mail from `from_domain` pass DMARC, given SPF's result and whether DKIM could pass?

    DMARC passes when SPF or DKIM passes *and* is aligned.  deliverck cannot
    see whether the server signs, so a usable key makes the outcome
    "dkim_dependent" (pass only if the server signs with d=<aligned domain>).
    """
    spf_ok = spf_result == "pass"
    spf_al = spf_ok and aligned(aspf, from_domain, spf_domain, org)
    if spf_al:
        return Evaluation("pass", True, f"SPF passes for {spf_domain}, aligned with {from_domain}")
    if spf_result in ("temperror", "unknown", ""):
        return Evaluation("unknown", False, f"SPF result for {spf_domain} is {spf_result or 'unknown'}")
    why = (f"SPF {spf_result} for {spf_domain}" if not spf_ok
           else f"SPF passes for {spf_domain}, which is not aligned with {from_domain} (aspf={aspf})")
    if dkim_possible:
        return Evaluation("dkim_dependent", False, why + "; passes only if the server DKIM-signs with an aligned d=")
    return Evaluation("fail", False, why + " and no usable DKIM key was found")
