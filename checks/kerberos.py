"""Kerberos: can the mail servers reach a KDC, and do their clocks agree with it?

Exchange servers authenticate to each other with Kerberos before they hand
over internal mail.  When that fails, the sending server queues with
`451 4.4.0 Primary target IP address responded with: "454 4.7.0 Temporary
authentication failure."` and the receiving one logs MSExchangeTransport
event 1035 (seed 001).  Seed 001 names four causes; this check sees the two
that show on the network:

- the Kerberos ports of the domain controllers are blocked (TCP/UDP 88, and
  TCP 464 for password changes), or no domain controller can be found;
- clocks are too far apart: Kerberos refuses authenticators more than five
  minutes off the KDC's clock (RFC 4120 1.6 "loosely synchronized clocks";
  MIT krb5 clockskew = 300 s; AD "Maximum tolerance for computer clock
  synchronization" = 5 minutes).  The KDC's clock is read from the KRB-ERROR
  its answers carry (stime/susec), a mail server's from the date in its SMTP
  greeting (Exchange prints one).

The other two (SPN registration, domain controller replication) cannot be
seen from outside; the check says so and names the commands that show them.

Blame goes where the evidence puts it.  A KDC that answers nothing at all
(every probe of port 88 times out, or there is no route) may as well sit
behind this machine's own filtering network: that is "could not check"
(kerberos.port88_blocked, kerberos.no_route), never a failure of the domain.
A clock skew is blamed once, on the clock that disagrees with the others
(judge_clocks); when all remote clocks agree against this machine's, this
machine's clock is the suspect (kerberos.local_clock_suspect).

When it runs: with --kerberos, --realm or --kdc; or when the domain publishes
Kerberos/AD locator records (_kerberos._tcp, _kerberos._udp, _kpasswd._tcp,
_ldap._tcp.dc._msdcs, _kerberos._tcp.dc._msdcs SRV); or when a mail server
greets as Microsoft Exchange.  Otherwise it skips (docs/usage.md, "Kerberos").
"""

from __future__ import annotations

import asyncio

from deliverck import clocks
from deliverck.checkcontext import CheckContext
from deliverck.context import HOST_ADDRESS_LIMIT
from deliverck.model import CheckSpec, Direction, Finding, FindingSpec, Owner, Severity, Skip
from deliverck.net import kerberos as krb
from deliverck.net.addresses import is_ip, scope
from deliverck.target import org_domain

INTERNAL, NONE = Direction.INTERNAL, Direction.NONE
MAIL, NET, DNS = Owner.MAIL_ADMIN, Owner.NETWORK, Owner.DNS_ADMIN

# Locator records: RFC 4120 7.2.3 (_kerberos._udp/_tcp), RFC 3244 (_kpasswd),
# Active Directory's DC locator ([MS-ADTS] 6.3.2: _ldap._tcp.dc._msdcs, _kerberos._tcp.dc._msdcs).
SRV_KDC = ("_kerberos._tcp", "_kerberos._udp", "_kerberos._tcp.dc._msdcs")
SRV_DC = ("_ldap._tcp.dc._msdcs",)
SRV_KPASSWD = ("_kpasswd._tcp",)
SRV_ALL = SRV_KDC + SRV_DC + SRV_KPASSWD
KDC_LIMIT = 10            # KDC hosts probed from the SRV records (each costs 3 probes per address)
EXCHANGE_GREETING = "Microsoft ESMTP MAIL Service"     # Exchange 2007 and later, default banner

TIME_FIX = ("Make every server take its time from the domain hierarchy: on each Exchange server and "
            "domain controller run `w32tm /config /syncfromflags:domhier /update` and `w32tm /resync`; "
            "give the PDC emulator a reliable external source (`w32tm /config /manualpeerlist:<ntp> "
            "/syncfromflags:manual /reliable:yes /update`); check with `w32tm /monitor` and "
            "`w32tm /stripchart /computer:<dc>`. On Unix KDCs, run chrony or ntpd.")


CHECK = CheckSpec(
    id="kerberos",
    title="Kerberos reachability and clock skew",
    cause="Exchange servers cannot authenticate to each other with Kerberos: the domain controllers' ports are "
          "blocked or none can be found, or clocks are more than the allowed skew apart (seed 001: "
          "451 4.4.0 / 454 4.7.0).",
    order=110,
    findings=(
        FindingSpec("kerberos.kdcs", Severity.INFO,
                    "realm {realm}: {count} KDC address(es) to probe, from {source}",
                    "Nothing to fix.", Owner.NOBODY, NONE, refs=("RFC 4120 7.2.3",)),
        FindingSpec("kerberos.no_kdc", Severity.ERROR,
                    "no KDC for realm {realm} in DNS: none of {names} has SRV records",
                    "Publish the locator records (AD registers them itself: run `nltest /dsregdns` and "
                    "`dcdiag /test:dns` on a domain controller, check the DNS zone allows dynamic updates "
                    "from DCs), or give the domain controllers with --kdc.",
                    DNS, INTERNAL, refs=("RFC 4120 7.2.3", "MS-ADTS 6.3.2")),
        FindingSpec("kerberos.kdc_not_public", Severity.INFO,
                    "{subject} greets as Microsoft Exchange, but {names} have no SRV records in the DNS "
                    "deliverck uses (normal for an internal AD zone); the KDCs were not probed",
                    "Audit from inside the network, with the internal resolver (--resolver) or the domain "
                    "controllers given (--kdc DC, --realm REALM).",
                    Owner.NOBODY, NONE),
        FindingSpec("kerberos.lookup_failed", Severity.ERROR,
                    "the KDC locator lookups for {domain} failed: {error}",
                    "Check the zone's name servers; then run again.", DNS, NONE, inconclusive=True),
        FindingSpec("kerberos.kdc_no_address", Severity.WARNING,
                    "KDC {host} (from {source}) has no address: {error}",
                    "Publish A/AAAA records for {host}, or remove its SRV records.", DNS, INTERNAL,
                    refs=("RFC 2782",)),
        FindingSpec("kerberos.not_probed", Severity.INFO,
                    "KDC {ip} ({host}) is a {scope} address; not probed",
                    "Run from inside the network with --probe-private, or give it with --kdc.",
                    Owner.NOBODY, NONE),
        FindingSpec("kerberos.alive", Severity.INFO,
                    "{ip} ({host}) is a live KDC: {transports} answered the AS-REQ with {error} (realm {realm})",
                    "Nothing to fix.", Owner.NOBODY, NONE, refs=("RFC 4120 3.1.3",)),
        FindingSpec("kerberos.realm_not_served", Severity.WARNING,
                    "{ip} ({host}) answers, but does not serve realm {realm}: {error}",
                    "Give the right realm with --realm (AD: the DNS domain name in upper case), or fix the "
                    "_kerberos SRV records that point here.", DNS, INTERNAL, refs=("RFC 4120 7.5.9",)),
        FindingSpec("kerberos.port_filtered", Severity.WARNING,
                    "{ip} ({host}) {port}: no answer within {timeout} s; a firewall drops Kerberos traffic, "
                    "or the KDC is down",
                    "Open {port} from the mail servers to every domain controller (Kerberos needs UDP and TCP "
                    "88: large AD tickets go over TCP) and check that the KDC service runs.",
                    NET, INTERNAL, refs=("RFC 4120 7.2.1", "RFC 4120 7.2.2", "seed 001")),
        FindingSpec("kerberos.port_refused", Severity.WARNING,
                    "{ip} ({host}) {port}: connection refused; no KDC listens there",
                    "Start the KDC service (Windows: Kerberos Key Distribution Center, kdc; MIT: krb5kdc) "
                    "on {host}, or remove its SRV records if it is no longer a domain controller.",
                    MAIL, INTERNAL, refs=("RFC 4120 7.2.1", "RFC 4120 7.2.2", "seed 001")),
        FindingSpec("kerberos.not_kerberos", Severity.WARNING,
                    "{ip} ({host}) {port} answered, but not with Kerberos: {error}",
                    "Check what listens on {port} of {host} (a proxy or another service), and point the "
                    "SRV records at the real domain controllers.", MAIL, INTERNAL),
        FindingSpec("kerberos.kpasswd_unreachable", Severity.NOTICE,
                    "{ip} ({host}) TCP 464 (kpasswd): {outcome}; password changes through this KDC fail",
                    "Open TCP (and UDP) 464 to the domain controllers; mail flow does not depend on it.",
                    NET, NONE, refs=("RFC 3244",)),
        FindingSpec("kerberos.no_route", Severity.ERROR,
                    "this machine has no route to KDC {ip} ({host}); its Kerberos ports could not be checked",
                    "Run deliverck from a network with a route to the domain controllers (e.g. the mail "
                    "servers' own network).", NET, NONE, inconclusive=True),
        FindingSpec("kerberos.port88_blocked", Severity.ERROR,
                    "no KDC of realm {realm} answered from here ({count} address(es); every probe of port 88 "
                    "timed out or found no route): this machine's network may block Kerberos, or the domain "
                    "controllers are not reachable from outside; nothing about them was judged",
                    "Run deliverck where the mail servers are (inside the network that reaches the domain "
                    "controllers), or open outbound TCP and UDP 88 here; then a silent domain controller is "
                    "reported as such.", NET, NONE, refs=("RFC 4120 7.2",), inconclusive=True),
        FindingSpec("kerberos.no_kdc_reachable", Severity.CRITICAL,
                    "no KDC of realm {realm} answers ({count} address(es) probed); servers that need a "
                    "Kerberos ticket cannot get one, so Exchange servers cannot authenticate to each other",
                    "Open TCP and UDP 88 (and TCP 464) from the mail servers to the domain controllers, and "
                    "check that the KDC service runs on them.",
                    NET, INTERNAL, refs=("RFC 4120 7.2", "seed 001")),
        FindingSpec("kerberos.clock_ok", Severity.INFO,
                    "{subject} ({role}): clock {skew} from this machine's (limit {limit} s)",
                    "Nothing to fix.", Owner.NOBODY, NONE, refs=("RFC 4120 1.6",)),
        FindingSpec("kerberos.kdc_clock_skew", Severity.CRITICAL,
                    "KDC {ip} ({host}): clock {skew} from this machine's, more than the {limit} s Kerberos "
                    "allows; servers with a correct clock cannot authenticate with it",
                    "First confirm this machine's clock (`timedatectl`, `chronyc tracking`). " + TIME_FIX,
                    MAIL, INTERNAL, refs=("RFC 4120 1.6", "seed 001")),
        FindingSpec("kerberos.kdcs_disagree", Severity.ERROR,
                    "the KDCs of realm {realm} disagree about the time: {fast} is {spread} s ahead of {slow} "
                    "(limit {limit} s); a server's authentication depends on which domain controller it asks",
                    TIME_FIX + " Then check replication (`repadmin /replsummary`).",
                    MAIL, INTERNAL, refs=("RFC 4120 1.6", "seed 001")),
        FindingSpec("kerberos.mail_clock_skew", Severity.CRITICAL,
                    "mail server {ip} ({host}) is {skew} s off KDC {kdc} (greeting date against KRB-ERROR "
                    "time; limit {limit} s): its Kerberos authentication fails",
                    TIME_FIX, MAIL, INTERNAL, refs=("RFC 4120 1.6", "seed 001")),
        FindingSpec("kerberos.mail_clock_off", Severity.WARNING,
                    "mail server {ip} ({host}): the date in its greeting is {skew} from this machine's clock "
                    "(limit {limit} s); with no KDC to compare, its Kerberos authentication is at risk",
                    TIME_FIX, MAIL, INTERNAL, refs=("RFC 4120 1.6", "seed 001")),
        FindingSpec("kerberos.local_clock_suspect", Severity.WARNING,
                    "every remote clock read ({count}) agrees within {limit} s with the others, but all are "
                    "about {skew} from this machine's: this machine's clock is probably wrong, so clock "
                    "skew against it was not judged",
                    "Fix this machine's time (`timedatectl set-ntp true`, `chronyc makestep`) and run again.",
                    Owner.NOBODY, NONE, inconclusive=True),
        FindingSpec("kerberos.not_visible", Severity.INFO,
                    "not visible from the network: SPN registration and domain controller replication "
                    "(seed 001's other causes of 454 4.7.0)",
                    "On an Exchange server: `setspn -L <server>` (SMTPSVC/ and SMTP/ names present) and "
                    "`setspn -X` (no duplicates); Application log event 1035 (MSExchangeTransport). On a "
                    "domain controller: `repadmin /replsummary`, `dcdiag /test:replications`, "
                    "`w32tm /monitor`.",
                    Owner.NOBODY, NONE, refs=("seed 001",)),
    ),
)


# ---------------------------------------------------------------- discovery

def _search_domains(ctx: CheckContext) -> list[str]:
    """Where to look for locator records: --realm's domain, else the target and its parents
    down to the registered domain (mx1.corp.example.com -> corp.example.com, example.com)."""
    cfg = ctx.config
    if cfg.realm:
        return [cfg.realm.lower().rstrip(".")]
    name = ctx.target.name
    if not name:
        return []
    base = org_domain(name)
    out = [name]
    labels = name.split(".")
    for i in range(1, len(labels)):
        parent = ".".join(labels[i:])
        if len(parent) < len(base):
            break
        out.append(parent)
    return list(dict.fromkeys(out))


class Discovery:
    def __init__(self) -> None:
        self.domain = ""                      # the domain whose records were used
        self.realm = ""
        self.kdcs: dict[str, int] = {}        # host -> Kerberos port
        self.sources: dict[str, list[str]] = {}
        self.names: list[str] = []            # SRV names looked up (for the domain used)
        self.failed: list[str] = []           # lookups with no definite answer
        self.disabled: list[str] = []         # SRV "." (RFC 2782: service not available)
        self.evidence: list[str] = []
        self.dc_locator = False

    @property
    def found(self) -> bool:
        return bool(self.kdcs)


async def discover(ctx: CheckContext) -> Discovery:
    d = Discovery()
    domains = _search_domains(ctx)
    answers = await asyncio.gather(*(ctx.dns(f"{srv}.{dom}", "SRV") for dom in domains for srv in SRV_ALL),
                                   *(ctx.dns(f"_kerberos.{dom}", "TXT") for dom in domains))
    srv_answers = answers[:len(domains) * len(SRV_ALL)]
    txt_answers = answers[len(domains) * len(SRV_ALL):]
    chosen = 0
    for i, _dom in enumerate(domains):
        block = srv_answers[i * len(SRV_ALL):(i + 1) * len(SRV_ALL)]
        if any(a.ok for a in block):
            chosen = i
            break
    if not domains:
        return d
    d.domain = domains[chosen]
    block = srv_answers[chosen * len(SRV_ALL):(chosen + 1) * len(SRV_ALL)]
    d.names = [a.qname for a in block]
    for srv, ans in zip(SRV_ALL, block):
        d.evidence.append(ans.describe())
        if not ans.outcome.definite:
            d.failed.append(f"{ans.qname} SRV {ans.outcome.value.upper()}")
            continue
        if not ans.ok:
            continue
        for rr in sorted(ans.records, key=lambda r: (r.priority, -r.weight)):
            host = rr.target.to_text(omit_final_dot=True).lower()
            if not host:                      # "." : explicitly no such service
                d.disabled.append(ans.qname)
                continue
            if srv in SRV_DC:
                d.dc_locator = True
            if srv in SRV_KPASSWD:
                continue                      # kpasswd runs on the KDCs; probed there on 464
            port = rr.port if srv in SRV_KDC else krb.KERBEROS_PORT
            d.kdcs.setdefault(host, port)
            d.sources.setdefault(host, []).append(srv)
    if len(d.kdcs) > KDC_LIMIT:
        # A hostile or very large domain publishes hundreds of KDCs: probe the first by SRV
        # priority (as clients try them, RFC 2782), say how many were left out.
        left = list(d.kdcs)[KDC_LIMIT:]
        d.kdcs = dict(list(d.kdcs.items())[:KDC_LIMIT])
        d.evidence.append(f"{len(left)} more KDC host(s) in the SRV records not probed (at most {KDC_LIMIT}): "
                          + ", ".join(left[:5]) + (", ..." if len(left) > 5 else ""))
    txt = txt_answers[chosen]
    d.evidence.append(txt.describe())
    realm_txt = next((t.strip('"') for t in txt.texts()), "") if txt.ok else ""
    if ctx.config.realm:
        d.realm = ctx.config.realm
    elif realm_txt and " " not in realm_txt:  # draft-ietf-krb-wg-krb-dns-locator: _kerberos TXT holds the realm
        d.realm = realm_txt
    else:
        d.realm = d.domain.upper()
    return d


# ---------------------------------------------------------------- clocks

def judge_clocks(realm: str, kdcs: list[krb.KdcProbe], mail: list[tuple], limit: float) -> list[Finding]:
    """Blame each clock skew on the clock that disagrees with the others, once (deliverck/clocks.py)."""
    return clocks.judge_clocks(realm, kdcs, mail, limit, CHECK.finding)


# ---------------------------------------------------------------- probes

def _port_findings(k: krb.KdcProbe, realm: str, timeout: float) -> list[Finding]:
    out: list[Finding] = []
    args = dict(ip=k.ip, host=k.host)
    for p in (k.udp, k.tcp):
        port = p.label
        if p.outcome is krb.PortOutcome.TIMEOUT:
            out.append(CHECK.finding("port_filtered", k.ip, [p.describe()], port=port, timeout=f"{timeout:g}", **args))
        elif p.outcome is krb.PortOutcome.REFUSED:
            out.append(CHECK.finding("port_refused", k.ip, [p.describe()], port=port, **args))
        elif p.outcome is krb.PortOutcome.UNREACHABLE:
            if not any(f.id == "kerberos.no_route" for f in out):
                out.append(CHECK.finding("no_route", k.ip, [p.describe()], **args))
        elif p.outcome in (krb.PortOutcome.NOT_KERBEROS, krb.PortOutcome.CLOSED, krb.PortOutcome.ERROR):
            out.append(CHECK.finding("not_kerberos", k.ip, [p.describe()], port=port, error=p.detail, **args))
    if k.kpasswd is not None and k.kpasswd.outcome is not krb.PortOutcome.OPEN:
        out.append(CHECK.finding("kpasswd_unreachable", k.ip, [k.kpasswd.describe()],
                                 outcome=k.kpasswd.outcome.value, **args))
    reply = k.reply
    if reply is not None:
        ev = [p.describe() for p in k.answered]
        if reply.e_text:
            ev.append(f"e-text: {reply.e_text}")
        if reply.error_code == krb.WRONG_REALM or (reply.realm and reply.realm.upper() != realm.upper()):
            out.append(CHECK.finding("realm_not_served", k.ip, ev, realm=realm,
                                     error=f"{reply.error}, realm in reply {reply.realm or '-'}", **args))
        else:
            transports = " and ".join(p.label for p in k.answered)
            out.append(CHECK.finding("alive", k.ip, ev, transports=transports, error=reply.error,
                                     realm=reply.realm or realm, **args))
    return out


async def _kdc_addresses(ctx: CheckContext, hosts: dict[str, int], sources: dict[str, list[str]],
                         explicit: bool) -> tuple[list[tuple[str, str, int]], list[Finding]]:
    """[(ip, host, port)] to probe, and findings for hosts that cannot be probed."""
    out: list[tuple[str, str, int]] = []
    notes: list[Finding] = []
    names = [h for h in hosts if not is_ip(h)]
    resolved = dict(zip(names, await asyncio.gather(*(ctx.addresses(h) for h in names))))
    for host, port in hosts.items():
        source = ", ".join(sources.get(host, ["--kdc"]))
        if is_ip(host):
            ips: tuple[str, ...] = (host,)
        else:
            ha = resolved[host]
            ips = ha.ips
            if not ips:
                error = "; ".join(a.describe() for a in (ha.a, ha.aaaa))
                notes.append(CHECK.finding("kdc_no_address", host, ha.evidence(), host=host, source=source,
                                           error=error))
                continue
        for ip in _first_per_family(ips, HOST_ADDRESS_LIMIT):
            sc = scope(ip)
            if not (sc.routable or ctx.config.probe_private or explicit) or sc.value == "unspecified":
                notes.append(CHECK.finding("not_probed", ip, ip=ip, host=host, scope=sc.value))
                continue
            out.append((ip, host, port))
    return out, notes


def _first_per_family(ips, limit: int) -> list[str]:
    """At most `limit` addresses of each family, in the order given: a host with hundreds of
    AAAA records costs a bounded number of probes (as the mx check's addresses do)."""
    out: list[str] = []
    for family in (False, True):
        out += [ip for ip in ips if (":" in ip) is family][:limit]
    return out


def _silent(k: krb.KdcProbe) -> bool:
    """No answer of any kind on port 88 (a refusal is an answer): the probe says nothing about the KDC."""
    return all(p.outcome in (krb.PortOutcome.TIMEOUT, krb.PortOutcome.UNREACHABLE) for p in (k.udp, k.tcp))


def _is_exchange(session) -> bool:
    g = session.greeting
    return g is not None and EXCHANGE_GREETING.lower() in g.text.lower()


async def run(ctx: CheckContext) -> list[Finding]:
    cfg = ctx.config
    explicit = bool(cfg.kdcs)
    if ctx.target.is_ip and not explicit:
        raise Skip("an IP address has no Kerberos realm to look up; give --kdc (and --realm)")
    # The SMTP sessions are shared with the smtp check; their greetings tell
    # Exchange apart and carry the mail servers' clocks.
    greetings = asyncio.create_task(ctx.smtp_sessions())
    try:
        return await _run(ctx, greetings, explicit)
    finally:
        if not greetings.done():
            greetings.cancel()


async def _run(ctx: CheckContext, greetings: asyncio.Task, explicit: bool) -> list[Finding]:
    cfg = ctx.config
    limit = cfg.max_skew
    d = await discover(ctx) if (ctx.target.name or cfg.realm) else Discovery()
    realm = d.realm or cfg.realm or "?"
    names = ", ".join(d.names) or "-"
    kdcs = {h: p for h, p in cfg.kdcs} if explicit else d.kdcs
    sources = {h: ["--kdc"] for h, _ in cfg.kdcs} if explicit else d.sources
    out: list[Finding] = []
    if not (cfg.kerberos or explicit or d.found or d.dc_locator):
        pairs = await greetings
        exchange = [(ma, s) for ma, s in pairs if _is_exchange(s)]
        if not exchange:
            failed = f"; lookups failed: {', '.join(d.failed)}" if d.failed else ""
            raise Skip(f"no sign of Active Directory or Kerberos: no locator SRV records under {d.domain or '-'} "
                       f"and no mail server greets as Exchange{failed} (--kerberos runs it anyway)")
        ma, _s = exchange[0]
        if d.failed:
            out.append(CHECK.finding("lookup_failed", d.domain, d.evidence, domain=d.domain,
                                     error="; ".join(d.failed)))
        else:
            out.append(CHECK.finding("kdc_not_public", ma.ip, d.evidence, names=names))
        out += judge_clocks(realm, [], clocks.greeting_readings(pairs), limit)
        out.append(CHECK.finding("not_visible", realm))
        return out
    if not kdcs:
        if d.failed:
            out.append(CHECK.finding("lookup_failed", d.domain or realm, d.evidence, domain=d.domain or realm,
                                     error="; ".join(d.failed)))
        else:
            ev = d.evidence + [f"{n} SRV: \".\" (RFC 2782: no such service)" for n in d.disabled]
            out.append(CHECK.finding("no_kdc", d.domain or realm, ev, realm=realm, names=names))
        out += judge_clocks(realm, [], clocks.greeting_readings(await greetings), limit)
        out.append(CHECK.finding("not_visible", realm))
        return out
    targets, notes = await _kdc_addresses(ctx, kdcs, sources, explicit)
    source = "--kdc" if explicit else f"SRV records under {d.domain}"
    ev = [] if explicit else list(d.evidence)
    ev += [f"probe: AS-REQ for {cfg.principal or 'a random principal'}@{realm}, "
           f"timeout {cfg.kdc_timeout:g} s per port"]
    out.append(CHECK.finding("kdcs", realm, ev, realm=realm, count=len(targets), source=source))
    out += notes
    principal = cfg.principal or krb.probe_principal()
    probes = await asyncio.gather(*(ctx.kdc_probe(ip, host, realm, principal, port)
                                    for ip, host, port in targets))
    alive = [k for k in probes if k.alive]
    evidence = [p.describe() for k in probes for p in k.probes]
    if targets and not alive and all(_silent(k) for k in probes):
        # Nothing on the domain controllers' side answered, not even with a refusal: from
        # here a blocked port 88 and a dead domain controller look the same.
        unrouted = [k for k in probes if all(p.outcome is krb.PortOutcome.UNREACHABLE for p in (k.udp, k.tcp))]
        for k in unrouted:
            out.append(CHECK.finding("no_route", k.ip, [p.describe() for p in k.probes], ip=k.ip, host=k.host))
        if len(unrouted) < len(probes):
            out.append(CHECK.finding("port88_blocked", realm, evidence, realm=realm, count=len(targets)))
    else:
        for k in probes:
            out += _port_findings(k, realm, cfg.kdc_timeout)
        if targets and not alive:
            out.append(CHECK.finding("no_kdc_reachable", realm, evidence, realm=realm, count=len(targets)))
    out += judge_clocks(realm, alive, clocks.greeting_readings(await greetings), limit)
    out.append(CHECK.finding("not_visible", realm))
    return out
