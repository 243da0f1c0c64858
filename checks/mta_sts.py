"""MTA-STS and TLS-RPT: does the published policy let enforcing senders deliver?

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
"""

from __future__ import annotations

from datetime import datetime, timezone

from deliverck import mtasts
from deliverck.context import Context
from deliverck.model import CheckSpec, Direction, Finding, FindingSpec, Owner, Severity, Skip
from deliverck.net import http, tls
from deliverck.net.addresses import scope
from deliverck.report.escape import safe

IN, NONE = Direction.INBOUND, Direction.NONE
DNS, MAIL = Owner.DNS_ADMIN, Owner.MAIL_ADMIN
SHORT_MAX_AGE = 86400                        # under a day: a policy that protects little
FETCH_TIMEOUT = 10.0

_NEW_SENDERS = ("senders that cached the policy earlier keep enforcing it until its max_age runs out; "
                "senders without a cached policy treat {domain} as having no MTA-STS policy (RFC 8461 3.3, 5.1)")

CHECK = CheckSpec(
    id="mta_sts",
    title="MTA-STS policy and TLS-RPT",
    cause="The MTA-STS record or policy is broken, or an enforced policy names MX hosts that enforcing senders "
          "cannot use (not listed, no STARTTLS, certificate invalid).",
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
                    "MX {host} ({ip}) offers no STARTTLS, and the policy of {domain} is enforced: enforcing senders "
                    "do not deliver to it",
                    "Enable STARTTLS on {host} with a certificate for {host} from a public CA.", MAIL, IN,
                    refs=("RFC 8461 4.2", "RFC 8461 5")),
        FindingSpec("mta_sts.enforce_cert_invalid", Severity.ERROR,
                    "MX {host} ({ip}) fails MTA-STS certificate validation ({reason}), and the policy of "
                    "{domain} is enforced: enforcing senders do not deliver to it",
                    "Install a currently valid certificate for {host} from a public CA, with the full chain.",
                    MAIL, IN, refs=("RFC 8461 4.2", "RFC 8461 5")),
        FindingSpec("mta_sts.testing_tls_failed", Severity.WARNING,
                    "MX {host} ({ip}) would fail MTA-STS validation ({reason}); in testing mode it is only reported",
                    "Fix TLS on {host} before switching to enforce.", MAIL, IN, refs=("RFC 8461 4.2",)),
        FindingSpec("mta_sts.mx_ok", Severity.INFO,
                    "MX {host} is matched by the policy and passes its TLS requirements", "Nothing to fix.",
                    Owner.NOBODY, NONE, refs=("RFC 8461 4",)),
        FindingSpec("mta_sts.tls_not_checked", Severity.ERROR,
                    "TLS of MX {host} ({ip}) could not be checked against the policy: {reason}",
                    "See the smtp check.", Owner.NOBODY, NONE, inconclusive=True),
        FindingSpec("mta_sts.tlsrpt_missing", Severity.NOTICE,
                    "{domain} uses MTA-STS but publishes no TLS-RPT record (_smtp._tls TXT): nobody hears of "
                    "TLS failures",
                    "Publish _smtp._tls.{domain} TXT \"v=TLSRPTv1; rua=mailto:tls-reports@{domain}\".", DNS, NONE,
                    refs=("RFC 8460 3",)),
        FindingSpec("mta_sts.tlsrpt_syntax", Severity.WARNING,
                    "the _smtp._tls record of {domain} is not valid: {error}",
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
    out = []
    for r in answer.records:
        out.append(b"".join(r.strings).decode("latin-1"))
    return out


async def _trust_store(ctx: Context):
    return tls.load_trust_store(ctx.config.ca_file)


async def _records(ctx: Context, name: str, looks, domain: str, out: list[Finding]):
    """The v=... TXT strings at name; None when the lookup failed (reported)."""
    answer = await ctx.dns(name, "TXT")
    if not answer.ok:
        if answer.outcome.definite:
            return []
        out.append(CHECK.finding("record_lookup_failed", name, (answer.describe(),), domain=domain,
                                 error=safe(answer.detail or answer.outcome.value)[:200]))
        return None
    return [t for t in _txt_strings(answer) if looks(t)]


async def run(ctx: Context) -> list[Finding]:
    if ctx.target.is_ip:
        raise Skip("MTA-STS applies to mail domains, not to an address")
    domain = ctx.target.name.rstrip(".").lower()
    out: list[Finding] = []
    found = await _records(ctx, f"_mta-sts.{domain}", mtasts.looks_like_sts_record, domain, out)
    if found is None:
        return out
    if not found:
        return [CHECK.finding("not_used", domain, domain=domain)]
    evidence = tuple(safe(t)[:300] for t in found)
    if len(found) > 1:
        out.append(CHECK.finding("record_multiple", f"_mta-sts.{domain}", evidence, domain=domain, count=len(found)))
    else:
        try:
            record = mtasts.parse_sts_record(found[0])
            out.append(CHECK.finding("record_ok", f"_mta-sts.{domain}", evidence, domain=domain, id=record.id))
        except mtasts.MtaStsError as e:
            out.append(CHECK.finding("record_syntax", f"_mta-sts.{domain}", evidence, domain=domain,
                                     error=safe(str(e))))
    policy = await _policy(ctx, domain, out)
    out += await _tlsrpt(ctx, domain)
    if policy is None:
        return out
    out += await _judge_mx(ctx, domain, policy)
    return out


async def _policy(ctx: Context, domain: str, out: list[Finding]) -> mtasts.Policy | None:
    host = f"mta-sts.{domain}"
    url = f"https://{host}/.well-known/mta-sts.txt"
    args = dict(domain=domain, host=host, url=url)
    addresses = await ctx.addresses(host)
    if not addresses.ips:
        out.append(CHECK.finding("policy_host_no_address", host, addresses.evidence(), **args))
        return None
    if not any(scope(ip).routable for ip in addresses.ips) and not getattr(ctx.config, "probe_private", False):
        out.append(CHECK.finding("policy_host_private", host, addresses.evidence(), ips=", ".join(addresses.ips),
                                 **args))
        return None
    timeout = min(float(getattr(ctx.config, "smtp_timeout", FETCH_TIMEOUT) or FETCH_TIMEOUT), FETCH_TIMEOUT)
    r = await ctx.fact(("https", url), lambda: http.fetch(url, ca_file=ctx.config.ca_file,
                                                          connect_timeout=timeout, read_timeout=timeout))
    ev = tuple(x for x in (f"GET {url}", f"HTTP {r.status}" if r.status else "",
                           f"Content-Type: {safe(r.content_type)[:100]}" if r.content_type else "",
                           f"Location: {safe(r.location)[:200]}" if r.location else "",
                           safe(r.error)[:300] if r.error else "") if x)
    if r.kind == http.TLS:
        out.append(CHECK.finding("fetch_tls_invalid", host, ev, error=safe(r.error)[:200], **args))
    elif r.kind == http.REDIRECT:
        out.append(CHECK.finding("fetch_redirect", host, ev, status=r.status,
                                 location=safe(r.location)[:200] or "(no Location)", **args))
    elif r.kind == http.STATUS:
        out.append(CHECK.finding("fetch_status", host, ev, status=r.status, **args))
    elif r.kind == http.TOO_BIG:
        out.append(CHECK.finding("fetch_too_big", host, ev, limit=http.MAX_BODY, error=safe(r.error), **args))
    elif r.kind == http.CONTENT_TYPE:
        out.append(CHECK.finding("fetch_content_type", host, ev, content_type=safe(r.content_type)[:80] or "(none)",
                                 **args))
    elif not r.ok:
        out.append(CHECK.finding("fetch_failed", host, ev, error=safe(r.error)[:200] or r.kind, **args))
    if not r.ok:
        return None
    try:
        policy = mtasts.parse_policy(r.body)
    except mtasts.MtaStsError as e:
        body = tuple(safe(line)[:200] for line in r.body.decode("latin-1").splitlines()[:10])
        out.append(CHECK.finding("policy_syntax", host, ev + body, error=safe(str(e)), **args))
        return None
    ev = ev + tuple(safe(line)[:200] for line in r.body.decode("latin-1").splitlines()[:20])
    out.append(CHECK.finding("policy_ok", host, ev, domain=domain, mode=policy.mode, max_age=policy.max_age,
                             mx=safe(", ".join(policy.mx)) or "(none)"))
    if policy.notes:
        out.append(CHECK.finding("policy_notes", host, ev, url=url, notes=safe("; ".join(policy.notes))[:300]))
    if policy.mode == "none":
        out.append(CHECK.finding("mode_none", host, ev, domain=domain))
    elif policy.mode == "testing":
        out.append(CHECK.finding("mode_testing", host, ev, domain=domain))
    if policy.max_age < SHORT_MAX_AGE and policy.mode != "none":
        out.append(CHECK.finding("max_age_short", host, ev, max_age=policy.max_age))
    return policy


async def _tlsrpt(ctx: Context, domain: str) -> list[Finding]:
    out: list[Finding] = []
    name = f"_smtp._tls.{domain}"
    found = await _records(ctx, name, mtasts.looks_like_tlsrpt_record, domain, [])
    if found is None:
        return out
    if not found:
        return [CHECK.finding("tlsrpt_missing", name, domain=domain)]
    evidence = tuple(safe(t)[:300] for t in found)
    if len(found) > 1:
        return [CHECK.finding("tlsrpt_multiple", name, evidence, domain=domain, count=len(found))]
    try:
        record = mtasts.parse_tlsrpt_record(found[0])
    except mtasts.MtaStsError as e:
        return [CHECK.finding("tlsrpt_syntax", name, evidence, domain=domain, error=safe(str(e)))]
    return [CHECK.finding("tlsrpt_ok", name, evidence, domain=domain, rua=safe(", ".join(record.rua)))]


async def _judge_mx(ctx: Context, domain: str, policy: mtasts.Policy) -> list[Finding]:
    if policy.mode == "none":
        return []
    enforce = policy.mode == "enforce"
    mx = await ctx.mx()
    if mx is None or not mx.hosts:
        return []
    out: list[Finding] = []
    patterns = safe(", ".join(policy.mx))
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
    from deliverck.checks.smtp import sessions_for_followers

    try:
        greeted, undecided = await sessions_for_followers(ctx)
    except Skip:
        return out
    by_ip = {ma.ip: s for ma, s in greeted}
    undecided_ips = {ma.ip: s for ma, s in undecided}
    store = await ctx.fact("trust_store", lambda: _trust_store(ctx))
    now = datetime.now(timezone.utc)
    for h in matched:
        host_ok = True
        for mh in (m for m in mx.hosts if m.name == h):
            for ip in mh.addresses.ips:
                args = dict(ip=ip, host=h, domain=domain)
                if ip in undecided_ips:
                    out.append(CHECK.finding("tls_not_checked", ip, reason=undecided_ips[ip].outcome.value
                                             .replace("_", " "), **args))
                    host_ok = False
                    continue
                s = by_ip.get(ip)
                if s is None:
                    continue                        # not probed (private, refused): other checks report it
                reason = _tls_failure(s, h, store, now)
                if reason is None:
                    continue
                host_ok = False
                if not enforce:
                    out.append(CHECK.finding("testing_tls_failed", ip, reason=reason, **args))
                elif reason == "no STARTTLS":
                    out.append(CHECK.finding("enforce_no_starttls", ip, **args))
                else:
                    out.append(CHECK.finding("enforce_cert_invalid", ip, reason=reason, **args))
        if host_ok:
            out.append(CHECK.finding("mx_ok", h, host=h))
    return out


def _tls_failure(s, host: str, store, now) -> str | None:
    """Why an MTA-STS sender would refuse this session's TLS, or None (RFC 8461 4.2)."""
    if not s.starttls_offered:
        return "no STARTTLS"
    if s.tls is None or s.tls.error:
        return safe("TLS handshake failed: " + (s.tls.error if s.tls else "no TLS session"))[:200]
    report = tls.analyse(s.tls.chain, host, now=now, store=store)
    if report.parse_error or report.leaf is None:
        return safe(report.parse_error or "no certificate")[:200]
    problems = []
    if report.expired:
        problems.append("certificate expired")
    elif report.not_yet_valid:
        problems.append("certificate not yet valid")
    if not report.name_ok:
        problems.append(f"certificate not valid for {host} (names: {safe(', '.join(report.names)) or 'none'})")
    if not report.trusted:
        problems.append("certificate " + ("self-signed" if report.leaf.self_signed else "untrusted")
                        + (f": {safe(report.trust_error)[:120]}" if report.trust_error else ""))
    return "; ".join(problems) or None
