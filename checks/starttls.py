"""STARTTLS: can senders that require TLS deliver to every MX address?

Opportunistic senders fall back to plain text, but senders that require TLS
(DANE, MTA-STS in enforce mode, forced-TLS connectors such as Exchange
Online's) defer and finally bounce when STARTTLS is missing or the
certificate is expired, for another name or untrusted (Exchange Online
4.7.321-325 / 5.7.321-325, seed 002).  The certificate is judged from the
chain the server presented in the shared SMTP session (no second connection).
"""

from __future__ import annotations

from datetime import UTC, datetime

from deliverck.checkcontext import CheckContext
from deliverck.model import CheckSpec, Direction, Finding, FindingSpec, Owner, Severity
from deliverck.net import tls
from deliverck.smtpfacts import evidence, undecided_reason

IN, NONE = Direction.INBOUND, Direction.NONE
MAIL = Owner.MAIL_ADMIN
_TLS12 = ("TLSv1.2", "TLSv1.3")

CHECK = CheckSpec(
    id="starttls",
    title="STARTTLS and certificate",
    cause="An MX address offers no STARTTLS, fails the handshake, or presents a certificate that is expired, "
          "for another name, untrusted or weak.",
    order=50,
    findings=(
        FindingSpec("starttls.ok", Severity.INFO, "{ip} ({host}): {version} {cipher}; {cert}",
                    "Nothing to fix.", Owner.NOBODY, NONE, refs=("RFC 3207",)),
        FindingSpec("starttls.not_offered", Severity.ERROR,
                    "{ip} ({host}) does not offer STARTTLS",
                    "Enable STARTTLS with a certificate for {host} (Postfix: smtpd_tls_security_level = may and "
                    "smtpd_tls_chain_files); senders that require TLS cannot deliver without it.",
                    MAIL, IN, refs=("RFC 3207", "RFC 8461 5", "seed 002")),
        FindingSpec("starttls.failed", Severity.ERROR,
                    "STARTTLS with {ip} ({host}) failed: {error}",
                    "Check the server's TLS configuration and logs: the certificate and key files, the "
                    "protocol versions and ciphers it allows.",
                    MAIL, IN, refs=("RFC 3207 4.1",)),
        FindingSpec("starttls.old_protocol", Severity.ERROR,
                    "{ip} ({host}) negotiated {version}; receivers and senders require TLS 1.2 or newer",
                    "Enable TLS 1.2 and 1.3 on the server (and disable SSLv3, TLS 1.0 and 1.1).",
                    MAIL, IN, refs=("RFC 8996", "RFC 8461 5")),
        FindingSpec("starttls.cert_expired", Severity.ERROR,
                    "the certificate of {ip} ({host}) expired on {not_after} ({days} days ago)",
                    "Renew the certificate and reload the mail server; automate renewal (e.g. ACME).",
                    MAIL, IN, refs=("RFC 5280 4.1.2.5", "seed 002")),
        FindingSpec("starttls.cert_not_yet_valid", Severity.ERROR,
                    "the certificate of {ip} ({host}) is not valid before {not_before}",
                    "Check the server's clock and the certificate's start date; install a currently valid one.",
                    MAIL, IN, refs=("RFC 5280 4.1.2.5",)),
        FindingSpec("starttls.cert_expiring", Severity.WARNING,
                    "the certificate of {ip} ({host}) expires on {not_after}, in {days} days",
                    "Renew it now; senders that require TLS fail the moment it expires.",
                    MAIL, IN, refs=("RFC 5280 4.1.2.5",)),
        FindingSpec("starttls.cert_name_mismatch", Severity.ERROR,
                    "the certificate of {ip} is not valid for {host} (it names {names})",
                    "Install a certificate whose subjectAltName includes {host}, the name in the MX record.",
                    MAIL, IN, refs=("RFC 6125 6.4", "RFC 7817 3", "RFC 8461 4.2", "seed 002")),
        FindingSpec("starttls.cert_self_signed", Severity.ERROR,
                    "the certificate of {ip} ({host}) is self-signed",
                    "Use a certificate from a public CA (or publish DANE-EE TLSA records for it).",
                    MAIL, IN, refs=("RFC 8461 4.2",)),
        FindingSpec("starttls.cert_untrusted", Severity.ERROR,
                    "the certificate chain of {ip} ({host}) does not lead to a trusted root: {error}",
                    "Serve the full chain (leaf and intermediates) from a public CA; with a private CA, "
                    "senders that require TLS cannot verify it.",
                    MAIL, IN, refs=("RFC 5280 6", "RFC 8461 4.2")),
        FindingSpec("starttls.weak_key", Severity.ERROR,
                    "the certificate of {ip} ({host}) has a weak key: {reason}",
                    "Reissue the certificate with RSA 2048+ or ECDSA P-256: OpenSSL's default security level "
                    "(Debian, Ubuntu, RHEL) refuses smaller keys, so TLS with such senders fails.",
                    MAIL, IN, refs=("NIST SP 800-131A",)),
        FindingSpec("starttls.weak_signature", Severity.ERROR,
                    "the certificate chain of {ip} ({host}) uses a broken signature algorithm: {reason}",
                    "Reissue the certificate (and intermediates) with SHA-256 or better.",
                    MAIL, IN, refs=("RFC 6194", "CA/Browser Forum BR 7.1.3")),
        FindingSpec("starttls.not_checked", Severity.ERROR,
                    "STARTTLS of {ip} ({host}) could not be checked: no SMTP session ({reason})",
                    "See the smtp check.", Owner.NOBODY, NONE, inconclusive=True),
    ),
)


async def run(ctx: CheckContext) -> list[Finding]:
    greeted, undecided = await ctx.greeted_sessions()
    out: list[Finding] = []
    for ma, s in undecided:
        out.append(CHECK.finding("not_checked", ma.ip, evidence(s), reason=undecided_reason(s),
                                 ip=ma.ip, host=ma.host or ma.ip))
    if not greeted:
        return out
    store = await ctx.trust_store()
    now = datetime.now(UTC)
    for ma, s in greeted:
        host = ma.host or ""
        args: dict[str, object] = {"ip": ma.ip, "host": host or ma.ip}
        if not s.starttls_offered:
            out.append(CHECK.finding("not_offered", ma.ip, evidence(s, "EHLO", "HELO"), **args))
            continue
        ev = evidence(s, "STARTTLS")
        if s.tls is None or s.tls.error:
            error = s.tls.error if s.tls else "no TLS session"
            out.append(CHECK.finding("failed", ma.ip, ev, error=error[:200], **args))
            continue
        report = tls.analyse(s.tls.chain, host, now=now, store=store, warn_days=ctx.config.cert_warn_days)
        if report.leaf is not None and not report.parse_error:
            # Machine-readable days to expiry (negative once expired) on every finding of
            # this session: the Prometheus format's deliverck_certificate_days_left.
            args = {**args, "days_left": report.days_left}
        cert = (f"certificate: {tls.summarize(report)}",) if report.leaf is not None else ()
        found = _judge(ma.ip, host, s.tls, report, ev + cert, args, ctx.config.cert_warn_days, now)
        if not found:
            found = [CHECK.finding("ok", ma.ip, ev, version=s.tls.version, cipher=s.tls.cipher,
                                   cert=tls.summarize(report), **args)]
        out += found
    return out


def _judge(ip, host, facts, report, ev, args, warn_days: int, now: datetime) -> list[Finding]:
    out = []
    if facts.version not in _TLS12:
        out.append(CHECK.finding("old_protocol", ip, ev, version=facts.version or "unknown", **args))
    if report.parse_error or report.leaf is None:
        return out + [CHECK.finding("failed", ip, ev, error=report.parse_error or "no certificate", **args)]
    leaf = report.leaf
    dates = dict(not_after=leaf.not_after.date().isoformat(), not_before=leaf.not_before.date().isoformat())
    if report.expired:
        out.append(CHECK.finding("cert_expired", ip, ev, days=(now - leaf.not_after).days, **dates, **args))
    elif report.not_yet_valid:
        out.append(CHECK.finding("cert_not_yet_valid", ip, ev, **dates, **args))
    elif report.days_left < warn_days:
        out.append(CHECK.finding("cert_expiring", ip, ev, days=report.days_left, **dates, **args))
    if host and not report.name_ok:
        out.append(CHECK.finding("cert_name_mismatch", ip, ev, names=", ".join(report.names) or "no names",
                                 **args))
    out += _authority(ip, report, ev, args)
    if report.weak_key:
        out.append(CHECK.finding("weak_key", ip, ev, reason=report.weak_key, **args))
    return out


def _authority(ip, report, ev, args) -> list[Finding]:
    """Can senders verify who issued the certificate?  One finding for one cause.

    A self-signed leaf, a chain that leads to no trusted root and a broken
    signature algorithm are each a reason verification fails; when two meet in
    one certificate, the one that explains the other is the finding and the
    other is shown as its evidence: a chain cryptography refuses *because* of a
    SHA-1 signature is the weak signature; a self-signed leaf or a private CA
    that also uses SHA-1 is the self-signed or untrusted certificate (a public
    CA's certificate fixes both).
    """
    leaf = report.leaf
    weak = report.weak_signature
    if leaf.self_signed:
        extra = (f"also: signed with {weak}, which senders refuse",) if weak else ()
        return [CHECK.finding("cert_self_signed", ip, ev + extra, **args)]
    if not report.trusted and report.trust_failure != "signature_algorithm":
        extra = (f"also: signed with {weak}, which senders refuse",) if weak else ()
        return [CHECK.finding("cert_untrusted", ip, ev + extra, error=report.trust_error[:200], **args)]
    if weak:
        extra = (f"so the chain is not trusted: {report.trust_error[:200]}",) if not report.trusted else ()
        return [CHECK.finding("weak_signature", ip, ev + extra, reason=weak, **args)]
    if not report.trusted:
        # cryptography refused an algorithm deliverck does not rate weak (e.g. an unusual one).
        return [CHECK.finding("cert_untrusted", ip, ev, error=report.trust_error[:200], **args)]
    return []
