"""MTA-STS and TLS-RPT: does the published policy let enforcing senders deliver,
and can anybody report TLS failures?

A domain that publishes `_mta-sts` TXT and serves a policy at
https://mta-sts.<domain>/.well-known/mta-sts.txt tells senders (Gmail,
Exchange Online, Postfix with an MTA-STS resolver, ...) to deliver only over
TLS to MX hosts the policy names, with certificates valid for those names
(RFC 8461 4, 5).  In enforce mode an MX the policy does not name, or one
without STARTTLS or with a certificate that fails validation, gets no mail
from those senders: they defer and finally bounce.  A policy that cannot be
fetched is not enforced by new senders, while senders that cached an older
policy keep applying it until its max_age runs out (RFC 8461 3.3, 5.1).
TLS certificates are judged from the shared SMTP session (no second connection).

TLS-RPT (RFC 8460) stands on its own: `_smtp._tls` is judged whenever it is
published, with or without MTA-STS (domains that use DANE publish it too, and
a broken record means no sender can report TLS failures).  Its absence is a
notice only when the domain uses MTA-STS or DANE (a TLSA RRset at
`_25._tcp.<MX host>`, RFC 7672 2.2); otherwise there is nothing to report on.
"""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime

from deliverck.checkcontext import CheckContext
from deliverck.model import CheckSpec, Direction, Finding, FindingSpec, Owner, Severity, Skip
from deliverck.net import http, tls
from deliverck.net.addresses import scope
from deliverck.records import mtasts
from deliverck.smtpfacts import evidence as session_evidence
from deliverck.smtpfacts import undecided_reason

IN, NONE = Direction.INBOUND, Direction.NONE
DNS, MAIL, NET = Owner.DNS_ADMIN, Owner.MAIL_ADMIN, Owner.NETWORK
SHORT_MAX_AGE = 86400                        # under a day: a policy that protects little
FETCH_TIMEOUT = 10.0

_NEW_SENDERS = ("senders that cached the policy earlier keep enforcing it until its max_age runs out; "
                "senders without a cached policy treat {domain} as having no MTA-STS policy (RFC 8461 3.3, 5.1)")

CHECK = CheckSpec(
    id="mta_sts",
    title="MTA-STS policy and TLS-RPT",
    cause="The MTA-STS record or policy is broken, or an enforced policy names MX hosts that enforcing senders "
          "cannot use (not listed, no STARTTLS, certificate invalid); or the TLS-RPT record is broken, so no "
          "sender can report TLS failures.",
    order=58,
    findings=(
        FindingSpec("mta_sts.not_used", Severity.INFO, "{domain} publishes no MTA-STS record (_mta-sts TXT)",
                    "Nothing to fix; publish MTA-STS (RFC 8461) to require TLS from senders that support it.",
                    Owner.NOBODY, NONE, refs=("RFC 8461 3.1",)),
        FindingSpec("mta_sts.record_lookup_failed", Severity.ERROR,
                    "the _mta-sts TXT lookup for {domain} failed: {error}",
                    "Check the zone's name servers.", DNS, NONE, refs=("RFC 8461 3.1",), inconclusive=True),
        FindingSpec("mta_sts.record_syntax", Severity.ERROR,
                    "the _mta-sts record of {domain} is not valid: {error}",
                    "Publish exactly: _mta-sts.{domain} TXT \"v=STSv1; id=<1-32 letters/digits>\" and change the "
                    "id whenever the policy changes.", DNS, IN, refs=("RFC 8461 3.1",)),
        FindingSpec("mta_sts.record_multiple", Severity.ERROR,
                    "{domain} publishes {count} v=STSv1 records; senders then treat it as having no MTA-STS",
                    "Keep exactly one v=STSv1 TXT record at _mta-sts.{domain}.", DNS, IN, refs=("RFC 8461 3.1",)),
        FindingSpec("mta_sts.record_ok", Severity.INFO, "_mta-sts.{domain}: v=STSv1, id={id}",
                    "Nothing to fix.", Owner.NOBODY, NONE, refs=("RFC 8461 3.1",)),
        FindingSpec("mta_sts.policy_host_no_address", Severity.ERROR,
                    "the policy host {host} has no address; " + _NEW_SENDERS,
                    "Publish A/AAAA records for {host} pointing at an HTTPS server that serves the policy.",
                    DNS, IN, refs=("RFC 8461 3.3",)),
        FindingSpec("mta_sts.policy_host_private", Severity.ERROR,
                    "the policy host {host} has only non-public addresses ({ips}): not fetched, and senders on "
                    "the internet cannot fetch it either; " + _NEW_SENDERS,
                    "Point {host} at a public address of the HTTPS server that serves the policy (or audit from "
                    "inside with --probe-private).", DNS, IN, refs=("RFC 8461 3.3",)),
        FindingSpec("mta_sts.policy_not_checked", Severity.ERROR,
                    "the policy at {url} could not be fetched from this machine: {error}; this says nothing about "
                    "{host} yet",
                    "Check that this machine can open HTTPS connections to the internet (no proxy-only or "
                    "filtered network), then run again; if it can, {host} or a firewall in front of it drops "
                    "port 443.", NET, NONE, refs=("RFC 8461 3.3",), inconclusive=True),
        FindingSpec("mta_sts.fetch_failed", Severity.ERROR,
                    "the policy could not be fetched from {url}: {error}; " + _NEW_SENDERS,
                    "Serve the policy over HTTPS on port 443 of {host}; check the web server and the firewall.",
                    MAIL, IN, refs=("RFC 8461 3.3",)),
        FindingSpec("mta_sts.fetch_tls_invalid", Severity.ERROR,
                    "the HTTPS certificate of {host} is not valid: {error}; " + _NEW_SENDERS,
                    "Serve a certificate for {host} from a public CA, with the full chain (RFC 8461 3.3 requires "
                    "a valid certificate for the policy host).", MAIL, IN, refs=("RFC 8461 3.3",)),
        FindingSpec("mta_sts.fetch_redirect", Severity.ERROR,
                    "{url} answered {status} redirect to {location}; senders must not follow redirects, so "
                    + _NEW_SENDERS,
                    "Serve the policy itself at {url} with 200, without any redirect (e.g. from http to https, "
                    "or to another host).", MAIL, IN, refs=("RFC 8461 3.3",)),
        FindingSpec("mta_sts.fetch_status", Severity.ERROR,
                    "{url} answered HTTP {status}, not 200; " + _NEW_SENDERS,
                    "Serve the policy file at /.well-known/mta-sts.txt with status 200.", MAIL, IN,
                    refs=("RFC 8461 3.3",)),
        FindingSpec("mta_sts.fetch_too_big", Severity.ERROR,
                    "the policy at {url} is larger than {limit} bytes ({error}); " + _NEW_SENDERS,
                    "Serve only the policy: a few lines of version, mode, mx and max_age.", MAIL, IN,
                    refs=("RFC 8461 3.3",)),
        FindingSpec("mta_sts.fetch_content_type", Severity.ERROR,
                    "{url} is served as {content_type!s}, not text/plain; " + _NEW_SENDERS,
                    "Serve the policy with Content-Type: text/plain.", MAIL, IN, refs=("RFC 8461 3.2",)),
        FindingSpec("mta_sts.policy_syntax", Severity.ERROR,
                    "the policy at {url} is not valid: {error}; " + _NEW_SENDERS,
                    "Write the policy as lines of version: STSv1, mode: enforce|testing|none, mx: <host or "
                    "*.domain> (one per MX), max_age: <seconds up to 31557600>.", MAIL, IN, refs=("RFC 8461 3.2",)),
        FindingSpec("mta_sts.policy_ok", Severity.INFO, "policy of {domain}: mode {mode}, max_age {max_age}, "
                    "mx {mx}", "Nothing to fix.", Owner.NOBODY, NONE, refs=("RFC 8461 3.2",)),
        FindingSpec("mta_sts.policy_notes", Severity.NOTICE, "the policy at {url}: {notes}",
                    "Remove the repeated or unknown lines.", MAIL, NONE, refs=("RFC 8461 3.2",)),
        FindingSpec("mta_sts.mode_none", Severity.NOTICE,
                    "the policy of {domain} has mode none: MTA-STS is being withdrawn, senders apply no policy",
                    "Nothing to fix if the withdrawal is intended; otherwise set mode: testing or enforce.",
                    MAIL, NONE, refs=("RFC 8461 8.3",)),
        FindingSpec("mta_sts.mode_testing", Severity.NOTICE,
                    "the policy of {domain} has mode testing: failures are only reported (TLS-RPT), never enforced",
                    "Once TLS-RPT reports show no failures, switch to mode: enforce.", MAIL, NONE,
                    refs=("RFC 8461 5",)),
        FindingSpec("mta_sts.max_age_short", Severity.NOTICE,
                    "max_age {max_age} s is under a day: a downgrade attack between fetches is easy",
                    "Use a max_age of weeks (e.g. 604800 to 31557600) once the policy is stable.", MAIL, NONE,
                    refs=("RFC 8461 3.2",)),
        FindingSpec("mta_sts.mx_unmatched", Severity.ERROR,
                    "MX {host} is not matched by any mx: pattern of the enforced policy ({mx}); enforcing senders "
                    "refuse to deliver to it",
                    "Add \"mx: {host}\" (or a *.<parent> pattern) to the policy, change its id in _mta-sts.{domain}, "
                    "or remove the MX record.", MAIL, IN, refs=("RFC 8461 4.1", "RFC 8461 5")),
        FindingSpec("mta_sts.no_mx_matched", Severity.ERROR,
                    "no MX host of {domain} is matched by the enforced policy ({mx}): enforcing senders cannot "
                    "deliver at all",
                    "List every MX host in the policy's mx: lines and change the id in _mta-sts.{domain}.",
                    MAIL, IN, refs=("RFC 8461 4.1", "RFC 8461 5")),
        FindingSpec("mta_sts.testing_mx_unmatched", Severity.WARNING,
                    "MX {host} is not matched by any mx: pattern of the policy ({mx}); in testing mode this is "
                    "only reported, in enforce mode senders would refuse it",
                    "Add \"mx: {host}\" to the policy before switching to enforce.", MAIL, IN,
                    refs=("RFC 8461 4.1",)),
        FindingSpec("mta_sts.enforce_no_starttls", Severity.ERROR,
                    "MX {host} ({ips}) offers no STARTTLS, and the policy of {domain} is enforced: enforcing senders "
                    "do not deliver to it",
                    "Enable STARTTLS on {host} with a certificate for {host} from a public CA.", MAIL, IN,
                    refs=("RFC 8461 4.2", "RFC 8461 5")),
        FindingSpec("mta_sts.enforce_cert_invalid", Severity.ERROR,
                    "MX {host} ({ips}) fails MTA-STS certificate validation ({reason}), and the policy of "
                    "{domain} is enforced: enforcing senders do not deliver to it",
                    "Install a currently valid certificate for {host} from a public CA, with the full chain.",
                    MAIL, IN, refs=("RFC 8461 4.2", "RFC 8461 5")),
        FindingSpec("mta_sts.testing_tls_failed", Severity.WARNING,
                    "MX {host} ({ips}) would fail MTA-STS validation ({reason}); in testing mode it is only reported",
                    "Fix TLS on {host} before switching to enforce.", MAIL, IN, refs=("RFC 8461 4.2",)),
        FindingSpec("mta_sts.mx_ok", Severity.INFO,
                    "MX {host} is matched by the policy and passes its TLS requirements", "Nothing to fix.",
                    Owner.NOBODY, NONE, refs=("RFC 8461 4",)),
        FindingSpec("mta_sts.tls_not_checked", Severity.ERROR,
                    "TLS of MX {host} ({ips}) could not be checked against the policy: {reason}",
                    "See the smtp check.", Owner.NOBODY, NONE, inconclusive=True),
        FindingSpec("mta_sts.tlsrpt_missing", Severity.NOTICE,
                    "{domain} uses {uses} but publishes no TLS-RPT record (_smtp._tls TXT): nobody hears of "
                    "TLS failures",
                    "Publish _smtp._tls.{domain} TXT \"v=TLSRPTv1; rua=mailto:tls-reports@{domain}\".", DNS, NONE,
                    refs=("RFC 8460 1", "RFC 8460 3", "RFC 8461 6")),
        FindingSpec("mta_sts.tlsrpt_lookup_failed", Severity.ERROR,
                    "the _smtp._tls TXT lookup for {domain} failed: {error}; the TLS-RPT record could not be judged",
                    "Check the zone's name servers (and the resolver), then run again.", DNS, NONE,
                    refs=("RFC 8460 3",), inconclusive=True),
        FindingSpec("mta_sts.tlsrpt_syntax", Severity.WARNING,
                    "the _smtp._tls record of {domain} is not valid: {error}; senders then send no TLS reports",
                    "Publish _smtp._tls.{domain} TXT \"v=TLSRPTv1; rua=mailto:<address>\" (rua: mailto: or "
                    "https: URIs, comma-separated).", DNS, NONE, refs=("RFC 8460 3",)),
        FindingSpec("mta_sts.tlsrpt_multiple", Severity.WARNING,
                    "{domain} publishes {count} v=TLSRPTv1 records; reporters then send no reports",
                    "Keep exactly one v=TLSRPTv1 TXT record at _smtp._tls.{domain}.", DNS, NONE,
                    refs=("RFC 8460 3",)),
        FindingSpec("mta_sts.tlsrpt_ok", Severity.INFO, "_smtp._tls.{domain}: reports to {rua}",
                    "Nothing to fix.", Owner.NOBODY, NONE, refs=("RFC 8460 3",)),
    ),
)


def _txt_strings(answer) -> list[str]:
    """Each TXT record as one string: its character-strings joined without separator
    (RFC 8461 3.1 and RFC 8460 3 follow RFC 7208 3.3 here)."""
    out = []
    for r in answer.records:
        out.append(b"".join(r.strings).decode("latin-1"))
    return out


async def _records(ctx: CheckContext, name: str, looks, domain: str, out: list[Finding]):
    """The v=... TXT strings at name; None when the lookup failed (reported)."""
    answer = await ctx.dns(name, "TXT")
    if not answer.ok:
        if answer.outcome.definite:
            return []
        out.append(CHECK.finding("record_lookup_failed", name, (answer.describe(),), domain=domain,
                                 error=(answer.detail or answer.outcome.value)[:200]))
        return None
    return [t for t in _txt_strings(answer) if looks(t)]


async def run(ctx: CheckContext) -> list[Finding]:
    if ctx.target.is_ip:
        raise Skip("MTA-STS applies to mail domains, not to an address")
    domain = ctx.target.name.rstrip(".").lower()
    out: list[Finding] = []
    found, tlsrpt = await asyncio.gather(
        _records(ctx, f"_mta-sts.{domain}", mtasts.looks_like_sts_record, domain, out),
        ctx.dns(f"_smtp._tls.{domain}", "TXT"))
    if found is None:
        # Whether MTA-STS is used is unknown: a published TLS-RPT record is still judged.
        return out + await _tlsrpt(ctx, domain, tlsrpt, uses=None)
    if not found:
        out.append(CHECK.finding("not_used", domain, domain=domain))
        # Without MTA-STS, a missing TLS-RPT record matters only to a domain that uses DANE.
        missing = tlsrpt.outcome.definite and not _tlsrpt_published(tlsrpt)
        return out + await _tlsrpt(ctx, domain, tlsrpt, uses=await _dane_in_use(ctx) if missing else None)
    evidence = tuple(t[:300] for t in found)
    if len(found) > 1:
        out.append(CHECK.finding("record_multiple", f"_mta-sts.{domain}", evidence, domain=domain, count=len(found)))
    else:
        try:
            record = mtasts.parse_sts_record(found[0])
            out.append(CHECK.finding("record_ok", f"_mta-sts.{domain}", evidence, domain=domain, id=record.id))
        except mtasts.MtaStsError as e:
            out.append(CHECK.finding("record_syntax", f"_mta-sts.{domain}", evidence, domain=domain,
                                     error=str(e)))
    policy = await _policy(ctx, domain, out)
    out += await _tlsrpt(ctx, domain, tlsrpt, uses=("MTA-STS", ()))
    if policy is None:
        return out
    out += await _judge_mx(ctx, domain, policy)
    return out


async def _policy(ctx: CheckContext, domain: str, out: list[Finding]) -> mtasts.Policy | None:
    host = f"mta-sts.{domain}"
    url = f"https://{host}/.well-known/mta-sts.txt"
    args = dict(domain=domain, host=host, url=url)
    addresses = await ctx.addresses(host)
    if not addresses.ips:
        out.append(CHECK.finding("policy_host_no_address", host, addresses.evidence(), **args))
        return None
    allowed = [ip for ip in addresses.ips if scope(ip).routable]
    if getattr(ctx.config, "probe_private", False):
        allowed = [ip for ip in addresses.ips if scope(ip).value != "unspecified"]
    if not allowed:
        out.append(CHECK.finding("policy_host_private", host, addresses.evidence(), ips=", ".join(addresses.ips),
                                 **args))
        return None
    timeout = min(float(getattr(ctx.config, "smtp_timeout", FETCH_TIMEOUT) or FETCH_TIMEOUT), FETCH_TIMEOUT)
    # The addresses this run resolved (its resolver, its zone files), never a second lookup.
    r = await ctx.https(url, allowed, timeout)
    ev = tuple(x for x in (f"GET {url}" + (f" from {r.address}" if r.address else ""),
                           f"HTTP {r.status}" if r.status else "",
                           f"Content-Type: {r.content_type[:100]}" if r.content_type else "",
                           f"Location: {r.location[:200]}" if r.location else "",
                           r.error[:300] if r.error else "",
                           r.detail[:300] if r.detail else "") if x)
    if r.kind in (http.CONNECT_TIMEOUT, http.NO_ROUTE) or (r.kind == http.ERROR and not r.status):
        # Nothing on the policy host's side answered: this machine's network may be the cause.
        out.append(CHECK.finding("policy_not_checked", host, ev, error=r.error[:200] or r.kind, **args))
    elif r.kind == http.TLS:
        out.append(CHECK.finding("fetch_tls_invalid", host, ev, error=r.error[:200], **args))
    elif r.kind == http.REDIRECT:
        out.append(CHECK.finding("fetch_redirect", host, ev, status=r.status,
                                 location=r.location[:200] or "(no Location)", **args))
    elif r.kind == http.STATUS:
        out.append(CHECK.finding("fetch_status", host, ev, status=r.status, **args))
    elif r.kind == http.TOO_BIG:
        out.append(CHECK.finding("fetch_too_big", host, ev, limit=http.MAX_BODY, error=r.error, **args))
    elif r.kind == http.CONTENT_TYPE:
        out.append(CHECK.finding("fetch_content_type", host, ev, content_type=r.content_type[:80] or "(none)",
                                 **args))
    elif not r.ok:
        out.append(CHECK.finding("fetch_failed", host, ev, error=r.error[:200] or r.kind, **args))
    if not r.ok:
        return None
    try:
        policy = mtasts.parse_policy(r.body)
    except mtasts.MtaStsError as e:
        body = tuple(line[:200] for line in r.body.decode("latin-1").splitlines()[:10])
        out.append(CHECK.finding("policy_syntax", host, ev + body, error=str(e), **args))
        return None
    ev = ev + tuple(line[:200] for line in r.body.decode("latin-1").splitlines()[:20])
    out.append(CHECK.finding("policy_ok", host, ev, domain=domain, mode=policy.mode, max_age=policy.max_age,
                             mx=", ".join(policy.mx) or "(none)"))
    if policy.notes:
        out.append(CHECK.finding("policy_notes", host, ev, url=url, notes=("; ".join(policy.notes))[:300]))
    if policy.mode == "none":
        out.append(CHECK.finding("mode_none", host, ev, domain=domain))
    elif policy.mode == "testing":
        out.append(CHECK.finding("mode_testing", host, ev, domain=domain))
    if policy.max_age < SHORT_MAX_AGE and policy.mode != "none":
        out.append(CHECK.finding("max_age_short", host, ev, max_age=policy.max_age))
    return policy


# ---------------------------------------------------------------- TLS-RPT

async def _dane_in_use(ctx: CheckContext) -> tuple[str, tuple[str, ...]] | None:
    """("DANE", evidence) when an MX host publishes TLSA records at _25._tcp (RFC 7672 2.2), else None.

    The same lookups the dane check makes (the run's DNS cache answers the
    second asker), all at once; a failed lookup counts as not knowing, and not
    knowing is not "in use".
    """
    mx = await ctx.mx()
    if mx is None:
        return None
    hosts = list(dict.fromkeys(h.name for h in mx.hosts))
    if mx.implicit:
        hosts.append(mx.domain)
    names: list[str] = []
    for h in hosts:
        addrs = await ctx.addresses(h)
        target = addrs.cname_target.rstrip(".").lower()
        names += [f"_25._tcp.{n}" for n in ([target, h] if target and target != h else [h])]
    names = list(dict.fromkeys(names))
    answers = await asyncio.gather(*(ctx.dns(n, "TLSA") for n in names))
    published = [a for a in answers if a.ok]
    if not published:
        return None
    return "DANE", tuple(a.describe()[:300] for a in published[:4])


def _tlsrpt_published(answer) -> bool:
    """Is there anything at _smtp._tls meant as a TLS-RPT record (valid or not)?"""
    texts = _txt_strings(answer) if answer.ok else []
    return any(mtasts.looks_like_tlsrpt_record(t) for t in texts) or bool(_tlsrpt_attempts(texts))


def _tlsrpt_attempts(texts: list[str]) -> list[str]:
    """TXT strings meant as TLS-RPT that senders discard for not starting with the exact
    "v=TLSRPTv1" (a lower-case version, leading blanks, the version not first)."""
    return [t for t in texts if not mtasts.looks_like_tlsrpt_record(t) and "tlsrpt" in t.lower()]


def _attempt_error(text: str) -> str:
    shown = f"'{text[:60]}'"
    if text.lstrip(" \t").lower().startswith("v=tlsrpt"):
        return (f"{shown} does not start with v=TLSRPTv1 exactly (spelling and case matter), and senders "
                "discard every other TXT record here (RFC 8460 3)")
    return (f"{shown} does not start with v=TLSRPTv1: the version must be the first field, and senders discard "
            "every other TXT record here (RFC 8460 3)")


async def _tlsrpt(ctx: CheckContext, domain: str, answer, uses: tuple[str, tuple[str, ...]] | None) -> list[Finding]:
    """TLS-RPT on its own (RFC 8460 3): judged whenever a record is published; its absence is a
    notice only when `uses` names what needs it (MTA-STS, DANE)."""
    name = f"_smtp._tls.{domain}"
    if not answer.ok and not answer.outcome.definite:
        return [CHECK.finding("tlsrpt_lookup_failed", name, (answer.describe()[:300],), domain=domain,
                              error=(answer.detail or answer.outcome.value)[:200])]
    texts = _txt_strings(answer) if answer.ok else []
    found = [t for t in texts if mtasts.looks_like_tlsrpt_record(t)]
    attempts = _tlsrpt_attempts(texts)
    if not found and attempts:
        evidence = tuple(t[:300] for t in attempts)
        return [CHECK.finding("tlsrpt_syntax", name, evidence, domain=domain, error=_attempt_error(attempts[0]))]
    if not found:
        if uses is None:
            return []
        what, ev = uses
        return [CHECK.finding("tlsrpt_missing", name, ((answer.describe()[:300],) + ev), domain=domain,
                              uses=what)]
    evidence = tuple(t[:300] for t in found)
    ignored = tuple(f"ignored by senders: {t[:200]}" for t in texts if t not in found)
    if len(found) > 1:
        return [CHECK.finding("tlsrpt_multiple", name, evidence + ignored, domain=domain, count=len(found))]
    try:
        record = mtasts.parse_tlsrpt_record(found[0])
    except mtasts.MtaStsError as e:
        return [CHECK.finding("tlsrpt_syntax", name, evidence + ignored, domain=domain, error=str(e))]
    return [CHECK.finding("tlsrpt_ok", name, evidence + ignored, domain=domain, rua=", ".join(record.rua))]


# ---------------------------------------------------------------- the MX hosts against the policy

async def _judge_mx(ctx: CheckContext, domain: str, policy: mtasts.Policy) -> list[Finding]:
    """One finding per MX host and cause (MTA-STS matches host names, RFC 8461 4.1); the
    starttls check reports the same certificate per address, so the two never share a subject."""
    if policy.mode == "none":
        return []
    enforce = policy.mode == "enforce"
    mx = await ctx.mx()
    if mx is None or not mx.hosts:
        return []
    out: list[Finding] = []
    patterns = ", ".join(policy.mx)
    hosts = list(dict.fromkeys(h.name for h in mx.hosts))
    matched = [h for h in hosts if policy.matches(h)]
    for h in hosts:
        if h not in matched:
            fid = "mx_unmatched" if enforce else "testing_mx_unmatched"
            out.append(CHECK.finding(fid, h, (f"MX {h}", f"mx: {patterns}"), host=h, mx=patterns, domain=domain))
    if enforce and not matched:
        out.append(CHECK.finding("no_mx_matched", domain, (f"mx: {patterns}",), domain=domain, mx=patterns))
    if not matched:
        return out
    try:
        greeted, undecided = await ctx.greeted_sessions()
    except Skip:
        return out
    by_ip = {ma.ip: s for ma, s in greeted}
    undecided_ips = {ma.ip: s for ma, s in undecided}
    store = await ctx.trust_store()
    now = datetime.now(UTC)
    for h in matched:
        not_checked: list[tuple[str, str]] = []
        no_tls: list[str] = []
        invalid: list[tuple[str, str]] = []
        seen: list[str] = []
        for mh in (m for m in mx.hosts if m.name == h):
            for ip in mh.addresses.ips:
                if ip in undecided_ips:
                    not_checked.append((ip, undecided_reason(undecided_ips[ip])))
                    seen += [f"{ip}: {x}" for x in session_evidence(undecided_ips[ip])]
                    continue
                s = by_ip.get(ip)
                if s is None:
                    continue                        # not probed (private, refused): other checks report it
                reason = _tls_failure(s, h, store, now)
                if reason is None:
                    continue
                verb = "EHLO" if reason == "no STARTTLS" else "STARTTLS"
                seen += [f"{ip}: {x}" for x in session_evidence(s, verb)[:6]]
                if reason == "no STARTTLS":
                    no_tls.append(ip)
                else:
                    invalid.append((ip, reason))
        ev = (f"mx: {patterns}",) + tuple(seen[:12])
        args = dict(host=h, domain=domain)
        if not_checked:
            out.append(CHECK.finding("tls_not_checked", h, ev, ip=not_checked[0][0],
                                     ips=", ".join(ip for ip, _ in not_checked),
                                     reason="; ".join(dict.fromkeys(r for _, r in not_checked)), **args))
        failing = no_tls + [ip for ip, _ in invalid]
        reasons = "; ".join(dict.fromkeys(["no STARTTLS"] * bool(no_tls) + [r for _, r in invalid]))
        if failing and not enforce:
            out.append(CHECK.finding("testing_tls_failed", h, ev, ip=failing[0], ips=", ".join(failing),
                                     reason=reasons, **args))
        elif failing:
            if no_tls:
                out.append(CHECK.finding("enforce_no_starttls", h, ev, ip=no_tls[0], ips=", ".join(no_tls), **args))
            if invalid:
                out.append(CHECK.finding("enforce_cert_invalid", h, ev, ip=invalid[0][0],
                                         ips=", ".join(ip for ip, _ in invalid),
                                         reason="; ".join(dict.fromkeys(r for _, r in invalid)), **args))
        if not not_checked and not failing:
            out.append(CHECK.finding("mx_ok", h, host=h))
    return out


def _tls_failure(s, host: str, store, now) -> str | None:
    """Why an MTA-STS sender would refuse this session's TLS, or None (RFC 8461 4.2)."""
    if not s.starttls_offered:
        return "no STARTTLS"
    if s.tls is None or s.tls.error:
        return ("TLS handshake failed: " + (s.tls.error if s.tls else "no TLS session"))[:200]
    report = tls.analyse(s.tls.chain, host, now=now, store=store)
    if report.parse_error or report.leaf is None:
        return (report.parse_error or "no certificate")[:200]
    problems = []
    if report.expired:
        problems.append("certificate expired")
    elif report.not_yet_valid:
        problems.append("certificate not yet valid")
    if not report.name_ok:
        problems.append(f"certificate not valid for {host} (names: {', '.join(report.names) or 'none'})")
    if not report.trusted:
        problems.append("certificate " + ("self-signed" if report.leaf.self_signed else "untrusted")
                        + (f": {report.trust_error[:120]}" if report.trust_error else ""))
    return "; ".join(problems) or None
