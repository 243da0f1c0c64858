"""DNSBL: is a sending address, the domain or the HELO name on a DNS block list?

Receivers query DNS block lists (RFC 5782) for the connecting address and
refuse listed senders (seed 000's RBL listing, seed 004's '554 5.7.1 Rejected
... found in dnsbl.sorbs.net', Exchange Online's 5.7.606-649 banned sending IP
in seed 002); domain lists (Spamhaus DBL) are queried for the sender's
domain and the HELO name.  The lists and their return codes are data
(deliverck/records/dnsbl-lists.toml).

Every list is first verified with its RFC 5782 section 5 test entries: the
test positive (127.0.0.2) must be listed and 127.0.0.1 must not, or the
list's answers are not trusted.  Error answers (Spamhaus 127.255.255.252/254/
255: query refused) are never "listed" and never "clean".  All queries of
one audit are sent at once: the test entries as soon as the check starts,
every (subject, list) query as soon as the addresses are known; a TXT
lookup (the list's reason) follows only for listings.
"""

from __future__ import annotations

import asyncio
import ipaddress

from deliverck.checkcontext import CheckContext
from deliverck.context import split_public
from deliverck.model import CheckSpec, Direction, Finding, FindingSpec, Owner, Severity, Skip
from deliverck.net.dns import DnsAnswer
from deliverck.records import dnsbl
from deliverck.target import org_domain

OUT, NONE = Direction.OUTBOUND, Direction.NONE
ADMIN = Owner.MAIL_ADMIN
REFS = ("RFC 5782", "seed 000", "seed 002", "seed 004")

CHECK = CheckSpec(
    id="dnsbl",
    title="DNS block lists (DNSBL)",
    cause="A sending address, the domain or the HELO name is on a DNS block list that receivers query.",
    order=100,
    findings=(
        FindingSpec("dnsbl.listed", Severity.ERROR,
                    "{subject} is listed on {list_name} ({zone}): {meaning} [{code}]",
                    "Find and stop what sent the spam (open relay, compromised account or host, infected "
                    "machine behind the address), then request removal at {delist}.",
                    ADMIN, OUT, refs=REFS),
        FindingSpec("dnsbl.listed_policy", Severity.WARNING,
                    "{subject} is listed on {list_name} ({zone}) by policy: {meaning} [{code}]; receivers using "
                    "this list reject mail sent directly from it",
                    "If this address sends mail directly, ask the holder of the address block (ISP) to remove it "
                    "from the policy list, or remove it yourself at {delist} if it is a static server address; "
                    "otherwise send through your provider's smarthost. If it only receives mail, nothing to do.",
                    Owner.IP_OWNER, OUT, refs=REFS),
        FindingSpec("dnsbl.listed_minor", Severity.WARNING,
                    "{subject} is listed on {list_name} ({zone}): {meaning} [{code}]; few receivers reject on it",
                    "See why at {delist}; the listing usually reflects the neighbourhood or a reputation score. "
                    "Clean up the sources of spam; most such listings expire by themselves.",
                    ADMIN, OUT, refs=REFS),
        FindingSpec("dnsbl.domain_listed", Severity.ERROR,
                    "the domain {subject} is listed on {list_name} ({zone}): {meaning} [{code}]",
                    "Find out why at {delist} (spam advertising the domain, a compromised web site, phishing "
                    "pages), fix that, then request removal.",
                    ADMIN, OUT, refs=REFS),
        FindingSpec("dnsbl.clean", Severity.INFO,
                    "{subject} is not listed on {checked} ({lists})",
                    "Nothing to fix.", Owner.NOBODY, NONE, refs=("RFC 5782",)),
        FindingSpec("dnsbl.refused", Severity.ERROR,
                    "{list_name} ({zone}) refused the query: {meaning} [{code}]; whether {subjects} is listed "
                    "is unknown",
                    "Query block lists from your own recursive resolver, not a public one (8.8.8.8, 1.1.1.1, ...) "
                    "or a forwarder to one; for Spamhaus use a Data Query Service key "
                    "(--dnsbl <key>.zen.dq.spamhaus.net). Then run again.",
                    Owner.NETWORK, OUT, refs=("RFC 5782", "Spamhaus DNSBL return codes"), inconclusive=True),
        FindingSpec("dnsbl.bad_answer", Severity.ERROR,
                    "{list_name} ({zone}) answered {answer} for {qname}, outside 127.0.0.0/8: not a block list "
                    "answer (a resolver that rewrites NXDOMAIN?)",
                    "Use a resolver that does not rewrite negative answers (no 'search assist' or ad redirect) "
                    "for block list queries, then run again.",
                    Owner.NETWORK, OUT, refs=("RFC 5782 2.1",), inconclusive=True),
        FindingSpec("dnsbl.list_dead", Severity.ERROR,
                    "{list_name} ({zone}) does not list its RFC 5782 test entry {test}: the list is dead, "
                    "unreachable or not answering this resolver; its answers were not used",
                    "Check that the zone is right and still operated and that your resolver may query it "
                    "(some lists answer registered resolvers only); remove dead lists from --dnsbl.",
                    Owner.NETWORK, OUT, refs=("RFC 5782 5",), inconclusive=True),
        FindingSpec("dnsbl.list_broken", Severity.WARNING,
                    "{list_name} ({zone}) lists its RFC 5782 negative test entry {test}: it lists everything; "
                    "its answers were ignored",
                    "Stop using this list (receivers that query it reject all mail); remove it from --dnsbl.",
                    Owner.RECEIVER, OUT, refs=("RFC 5782 5",)),
        FindingSpec("dnsbl.lookup_failed", Severity.ERROR,
                    "block list lookups on {list_name} ({zone}) failed ({outcome}) for {subjects}",
                    "Check that your resolver can reach the list's name servers, then run again.",
                    Owner.NETWORK, OUT, refs=("RFC 5782",), inconclusive=True),
        FindingSpec("dnsbl.retired", Severity.NOTICE,
                    "{list_name} ({zone}) closed in {retired}; remove it from your configuration",
                    "Remove {zone} from --dnsbl and from any mail server's block list settings. {note}",
                    ADMIN, NONE, refs=("seed 004",)),
        FindingSpec("dnsbl.unknown_list", Severity.ERROR,
                    "--dnsbl {requested!r} is neither a known list id nor a DNS zone",
                    "Give a list id (deliverck/records/dnsbl-lists.toml) or a zone such as zen.spamhaus.org.",
                    ADMIN, NONE, inconclusive=True),
        FindingSpec("dnsbl.not_public", Severity.INFO,
                    "{subject} is not a public address ({scope}); block lists were not queried for it",
                    "Nothing to check: block lists only list public addresses.", Owner.NOBODY, NONE),
    ),
)

_LISTED_ID = {"spam": "listed", "policy": "listed_policy", "minor": "listed_minor"}


def _a_texts(ans: DnsAnswer) -> list[str]:
    return [r.address for r in ans.records] if ans.ok else []


class _ListState:
    """The verdict on one list from its RFC 5782 test entries."""

    def __init__(self, lst: dnsbl.DnsList, pos: DnsAnswer, neg: DnsAnswer) -> None:
        self.lst, self.pos, self.neg = lst, pos, neg

    def problem(self, subjects: list[str]) -> Finding | None:
        """A list-level finding, or None when the list can be trusted."""
        lst = self.lst
        common = dict(list=lst.id, list_name=lst.name, zone=lst.shown_zone)
        shown = ", ".join(subjects) or "the audited names"
        ev = (_shown(lst, self.pos), _shown(lst, self.neg))
        pos_i = dnsbl.interpret(lst, _a_texts(self.pos))
        neg_i = dnsbl.interpret(lst, _a_texts(self.neg))
        errors = pos_i.errors + neg_i.errors
        if errors:
            c = errors[0]
            return CHECK.finding("refused", lst.shown_zone, ev, code=c.code, meaning=c.meaning, subjects=shown,
                                 **common)
        if neg_i.listed:
            return CHECK.finding("list_broken", lst.shown_zone, ev, test=lst.negative,
                                 code=", ".join(c.code for c in neg_i.listed), **common)
        for ans in (self.pos, self.neg):
            if not ans.outcome.definite:
                return CHECK.finding("lookup_failed", lst.shown_zone, ev, outcome=ans.outcome.value,
                                     subjects=shown, **common)
        if pos_i.bogus or neg_i.bogus:
            ans = self.pos if pos_i.bogus else self.neg
            return CHECK.finding("bad_answer", lst.shown_zone, ev, answer=", ".join(pos_i.bogus + neg_i.bogus),
                                 qname=_mask(lst, ans.qname), **common)
        if not pos_i.listed:
            return CHECK.finding("list_dead", lst.shown_zone, ev, test=lst.positive,
                                 outcome=self.pos.outcome.value, **common)
        return None


def _mask(lst: dnsbl.DnsList, qname: str) -> str:
    if lst.display_zone and qname.endswith(lst.zone):
        return qname[: -len(lst.zone)] + lst.display_zone
    return qname


def _shown(lst: dnsbl.DnsList, ans: DnsAnswer) -> str:
    text = ans.describe()
    if lst.display_zone:
        text = text.replace(lst.zone, lst.display_zone)
    return text


async def _lookups(ctx: CheckContext, lst: dnsbl.DnsList, subject: str) -> tuple[DnsAnswer, DnsAnswer | None]:
    """The A answer for subject on lst, and the TXT reason when it is a listing."""
    a = await ctx.dns(lst.query_name(subject), "A")
    txt = None
    if a.ok and dnsbl.interpret(lst, _a_texts(a)).listed:
        txt = await ctx.dns(lst.query_name(subject), "TXT")
    return a, txt


def _txt_reason(txt: DnsAnswer | None) -> str:
    if txt is None or not txt.ok:
        return ""
    parts = []
    for r in txt.records[:4]:
        s = b"".join(r.strings)[:300].decode("utf-8", "replace")
        parts.append(s)
    return " | ".join(parts)


def _domains(ctx: CheckContext) -> list[tuple[str, str]]:
    """(name, role) pairs for domain lists: the target and the HELO name, with their org domains."""
    out: dict[str, str] = {}
    names = []
    if not ctx.target.is_ip:
        names.append((ctx.target.name, "domain"))
    helo = (ctx.config.helo_name or "").rstrip(".").lower()
    if helo and "." in helo:
        try:
            ipaddress.ip_address(helo.strip("[]"))
        except ValueError:
            names.append((helo, "helo"))
    for name, role in names:
        for n in (name.lower(), org_domain(name.lower())):
            out.setdefault(n, role)
    return list(out.items())


async def run(ctx: CheckContext) -> list[Finding]:
    sel = dnsbl.select(ctx.config.dnsbl_lists)
    out: list[Finding] = []
    for item in sel.unknown:
        out.append(CHECK.finding("unknown_list", item, requested=item))
    for lst in sel.retired:
        out.append(CHECK.finding("retired", lst.zone, list=lst.id, list_name=lst.name, zone=lst.zone,
                                 retired=lst.retired, note=lst.note))
    lists = sel.lists
    if not lists:
        if out:
            return out
        raise Skip("no block list selected")

    # The test entries go out at once, before the addresses are known.
    tests: dict[str, asyncio.Future] = {lst.zone: asyncio.ensure_future(_test_entries(ctx, lst)) for lst in lists}
    try:
        return await _audit(ctx, lists, tests, out)
    finally:
        for t in tests.values():
            t.cancel()


async def _test_entries(ctx: CheckContext, lst: dnsbl.DnsList) -> tuple[DnsAnswer, DnsAnswer]:
    pos, neg = await asyncio.gather(ctx.dns(lst.query_name(lst.positive), "A"),
                                    ctx.dns(lst.query_name(lst.negative), "A"))
    return pos, neg


def _listed(lst: dnsbl.DnsList, subject: str, role: str, a, txt, interp) -> Finding:
    """The finding for one listing: an address's listing by its class, a domain's as a warning
    unless the list says spam."""
    evidence = [_shown(lst, a)]
    if txt is not None:
        evidence.append(_shown(lst, txt))
    args = dict(list=lst.id, list_name=lst.name, zone=lst.shown_zone,
                code=", ".join(c.code for c in interp.listed), meaning=interp.meaning,
                delist=lst.delist or "the list's web site", klass=interp.klass, reason=_txt_reason(txt),
                qname=_mask(lst, a.qname))
    if role == "ip":
        fid = _LISTED_ID.get(interp.klass, "listed")
        return CHECK.finding(fid, subject, evidence, ip=subject, **args)
    sev = Severity.WARNING if interp.klass != "spam" else None
    extra = {"helo": subject} if role == "helo" else {}
    return CHECK.finding("domain_listed", subject, evidence, severity=sev, domain=subject,
                         role=role, **extra, **args)


async def _audit(ctx: CheckContext, lists: tuple[dnsbl.DnsList, ...], tests: dict[str, asyncio.Future],
                 out: list[Finding]) -> list[Finding]:
    public, notes = split_public(CHECK, await ctx.mail_addresses())
    out += notes
    ips = [ma.ip for ma in public]
    domains = _domains(ctx)

    pairs: list[tuple[dnsbl.DnsList, str, str]] = []   # (list, subject, role)
    for lst in lists:
        if lst.kind == "ip":
            pairs += [(lst, ip, "ip") for ip in ips if lst.supports(ip)]
        else:
            pairs += [(lst, name, role) for name, role in domains]
    if not ips and not domains:
        if out:
            return out
        raise Skip("no public sending address or domain to look up (see the mx check)")

    results, test_results = await asyncio.gather(
        asyncio.gather(*(_lookups(ctx, lst, subject) for lst, subject, _ in pairs)),
        asyncio.gather(*tests.values()),
    )
    states = {lst.zone: _ListState(lst, *tr) for lst, tr in zip(lists, test_results)}

    trusted: set[str] = set()
    for lst in lists:
        subjects = [s for x, s, _ in pairs if x.zone == lst.zone]
        problem = states[lst.zone].problem(subjects)
        if problem is None:
            trusted.add(lst.zone)
        else:
            out.append(problem)

    listed_subjects: set[str] = set()
    checked: dict[str, list[str]] = {}
    failed: dict[str, tuple[dnsbl.DnsList, list[str], str]] = {}
    refused: dict[str, tuple[dnsbl.DnsList, list[str], dnsbl.Code]] = {}
    for (lst, subject, role), (a, txt) in zip(pairs, results):
        if lst.zone not in trusted:
            continue
        if not a.outcome.definite:
            failed.setdefault(lst.zone, (lst, [], a.outcome.value))[1].append(subject)
            continue
        interp = dnsbl.interpret(lst, _a_texts(a))
        if interp.errors:
            refused.setdefault(lst.zone, (lst, [], interp.errors[0]))[1].append(subject)
            continue
        if interp.bogus:
            out.append(CHECK.finding("bad_answer", subject, (_shown(lst, a),), answer=", ".join(interp.bogus),
                                     qname=_mask(lst, a.qname), list=lst.id, list_name=lst.name,
                                     zone=lst.shown_zone))
            continue
        checked.setdefault(subject, []).append(lst.id)
        if not interp.listed:
            continue
        listed_subjects.add(subject)
        out.append(_listed(lst, subject, role, a, txt, interp))
    for lst, subjects, outcome in failed.values():
        out.append(CHECK.finding("lookup_failed", lst.shown_zone, list=lst.id, list_name=lst.name,
                                 zone=lst.shown_zone, outcome=outcome, subjects=", ".join(subjects)))
    for lst, subjects, code in refused.values():
        out.append(CHECK.finding("refused", lst.shown_zone, list=lst.id, list_name=lst.name, zone=lst.shown_zone,
                                 code=code.code, meaning=code.meaning, subjects=", ".join(subjects)))
    for subject in [*ips, *(d for d, _ in domains)]:
        ids = checked.get(subject, [])
        if ids and subject not in listed_subjects:
            key = "ip" if subject in ips else "domain"
            what = "the 1 block list checked" if len(ids) == 1 else f"any of the {len(ids)} block lists checked"
            out.append(CHECK.finding("clean", subject, count=len(ids), checked=what, lists=", ".join(ids),
                                     **{key: subject}))
    return out
