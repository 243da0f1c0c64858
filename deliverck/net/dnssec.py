"""deliverck's own DNSSEC validation: the chain from a trust anchor down to one RRset.

The configured resolver's AD bit says what *it* concluded (and nothing when
it does not validate); this module reaches its own conclusion from the raw
records, asked with DO=1 and CD=1 so that a validating resolver hands over
bogus data for us to judge instead of answering SERVFAIL.

`validate(client, name, rdtype, anchors)` returns a `Validation` whose
`state` is one of secure / insecure / bogus / indeterminate with a one-line
`reason`.  Performance: the DS and DNSKEY RRsets of every ancestor of the
name (the possible zone cuts, root down) and the RRset itself are asked all
at once, so a validation costs about one round trip of wall time, not two
per level.  Raw answers are cached per DnsClient (one per run) and
single-flight, so the MX, A and AAAA validations of one audit share the
root, TLD and zone lookups.  The cache lives on the client itself and holds
it only weakly, so it goes with the client at the end of the audit (a bulk
run audits thousands of domains in one process); `close(client)` cancels
what is still in flight.
"""

from __future__ import annotations

import asyncio
import datetime as _dt
import weakref
from dataclasses import dataclass
from typing import Iterable, Sequence

import dns.asyncquery
import dns.dnssec
import dns.exception
import dns.flags
import dns.message
import dns.name
import dns.rcode
import dns.rdata
import dns.rdataclass
import dns.rdatatype
import dns.rrset

SECURE, INSECURE, BOGUS, INDETERMINATE = "secure", "insecure", "bogus", "indeterminate"
STATES = (SECURE, INSECURE, BOGUS, INDETERMINATE)

# The IANA root zone trust anchors (https://data.iana.org/root-anchors/root-anchors.xml):
# KSK-2017 (key tag 20326) and KSK-2024 (key tag 38696), both RSASHA256, SHA-256 digests.
ROOT_ANCHORS: tuple[str, ...] = (
    ". IN DS 20326 8 2 E06D44B80B8F1D39A95C0B0D7C65D08458E880409BBB683457104237C7F8EC8D",
    ". IN DS 38696 8 2 683D2D0ACB8C9B712A1948B27F741219298D0A450D612C483AF444A4C0FB2B16",
)

QUERY_TIMEOUT = 3.0       # per resolver, per query
UDP_TRIES = 2             # sends of one query within QUERY_TIMEOUT (a lost datagram is sent again)
PAYLOAD = 1232

# What dnspython can verify here (RFC 8624 "MUST validate" set plus the ones still seen).
_SUPPORTED_ALGS = {
    dns.dnssec.Algorithm.RSASHA1, dns.dnssec.Algorithm.RSASHA1NSEC3SHA1,
    dns.dnssec.Algorithm.RSASHA256, dns.dnssec.Algorithm.RSASHA512,
    dns.dnssec.Algorithm.ECDSAP256SHA256, dns.dnssec.Algorithm.ECDSAP384SHA384,
    dns.dnssec.Algorithm.ED25519, dns.dnssec.Algorithm.ED448,
}
_SUPPORTED_DIGESTS = {1: "SHA1", 2: "SHA256", 4: "SHA384"}


@dataclass(frozen=True)
class Validation:
    name: str                 # as asked, no trailing dot
    rdtype: str
    state: str                # secure | insecure | bogus | indeterminate
    reason: str               # one line
    zone: str = ""            # the zone that holds the name (the last zone cut found), "." for the root
    records: tuple = ()       # rdata of the answer RRset (as seen with CD=1)
    outcome: str = ""         # ok | nodata | nxdomain | servfail | timeout | ... of the raw answer
    broken_at: str = ""       # bogus / indeterminate: the zone whose data broke the chain ("." the root)
    broken_for: str = ""      # the name whose chain broke there (the asked name, or a CNAME target)
    stale_signatures: str = ""  # chain not secure: why every RRSIG over the answer is out of its dates, if so

    @property
    def secure(self) -> bool:
        return self.state == SECURE

    @property
    def broken_above(self) -> bool:
        """Did the chain break at or above the public suffix of the name it was walked for (the
        root, a TLD, or the resolver in between)?  Then it says nothing about the name's own zone."""
        if self.state not in (BOGUS, INDETERMINATE) or not self.broken_at:
            return False
        from deliverck.net.dns import public_suffix

        suffix = public_suffix(self.broken_for or self.name)
        if not suffix:
            return True
        return dns.name.from_text(suffix).is_subdomain(dns.name.from_text(self.broken_at))


def parse_anchors(lines: Iterable[str] | str) -> tuple[dns.rrset.RRset, ...]:
    """DS (or DNSKEY) records of the root zone in master-file form, one per line -> RRsets.

    Accepts what the lab's trust_anchor file holds (`. 3600 IN DS ...`), the short
    form `. IN DS ...` and unbound-anchor's root.key (`. 172800 IN DNSKEY 257 3 8 ...
    ;{id = 20326 ...}`); comments (`;`) and blank lines are skipped.  Anything else is
    ValueError naming the line and what is wrong with it, never its text: the path may
    point at any file (`--trust-anchor /etc/passwd`, a secrets file), issue 14.  Only
    the root's anchors are used (validation starts at the root), so another owner is an
    error too, not silently nothing.
    """
    if isinstance(lines, str):
        lines = lines.splitlines()
    what = ("a trust anchor file holds DS or DNSKEY records of the root zone, one per line, e.g. "
            "`. IN DS 20326 8 2 E06D44B8...`")
    forms = {dns.rdatatype.DS: "key tag, algorithm, digest type and the digest in hex",
             dns.rdatatype.DNSKEY: "flags, protocol 3, algorithm and the public key in base64"}
    sets: dict[tuple[dns.name.Name, int], dns.rrset.RRset] = {}
    for number, raw in enumerate(lines, 1):
        line = raw.split(";", 1)[0].strip()
        if not line:
            continue
        toks = line.split()
        if toks[0] != ".":
            raise ValueError(f"line {number} is not a record of the root zone (its owner must be '.'); {what}")
        rest = toks[1:]
        for _ in range(2):                # [TTL] [class] in either order (RFC 1035 5.1)
            if rest and rest[0].isdigit():
                rest = rest[1:]
            elif rest and rest[0].upper() == "IN":
                rest = rest[1:]
        try:
            rdtype = dns.rdatatype.from_text(rest[0]) if rest else None
        except (dns.exception.DNSException, ValueError):
            rdtype = None
        if rdtype not in forms:
            raise ValueError(f"line {number} is not a DS or DNSKEY record of class IN; {what}")
        try:
            rd = dns.rdata.from_text(dns.rdataclass.IN, rdtype, " ".join(rest[1:]))
        except Exception:                 # dnspython's messages quote the offending token: not shown
            name = dns.rdatatype.to_text(rdtype)
            raise ValueError(f"line {number}: its {name} record does not parse (give {forms[rdtype]})") from None
        key = (dns.name.root, rdtype)
        if key not in sets:
            sets[key] = dns.rrset.RRset(dns.name.root, dns.rdataclass.IN, rdtype)
        sets[key].add(rd)
    return tuple(sets.values())


def load_anchor_file(path: str, limit: int = 1024 * 1024) -> tuple[dns.rrset.RRset, ...]:
    """parse_anchors of a file, read once and bounded (a few records; the CLI checked it already,
    deliverck.cli._trust_anchor).  ValueError naming the file when it cannot be used."""
    from deliverck.inputfile import ReadError, read_limited

    try:
        data, more = read_limited(path, limit)
    except ReadError as e:
        raise ValueError(f"trust anchor {path}: {e}") from None
    if more:
        raise ValueError(f"trust anchor {path}: larger than {limit} bytes")
    try:
        return parse_anchors(data.decode("utf-8"))
    except UnicodeDecodeError:
        raise ValueError(f"trust anchor {path}: not UTF-8 text") from None
    except ValueError as e:
        raise ValueError(f"trust anchor {path}: {e}") from None


DEFAULT_ANCHORS = parse_anchors(ROOT_ANCHORS)


# ---------------------------------------------------------------- raw queries

@dataclass(frozen=True)
class Raw:
    """One answer asked with DO=1, CD=1; `error` set when no usable answer came."""
    msg: dns.message.Message | None
    error: str = ""           # plain words: `192.0.2.53:53 answered SERVFAIL`
    failure: str = ""         # servfail | refused | timeout | error, when `error` is set

    @property
    def rcode(self) -> int:
        return self.msg.rcode() if self.msg is not None else -1

    def rrset(self, section: str, name: dns.name.Name, rdtype: int, covers: int = 0):
        if self.msg is None:
            return None
        for rr in getattr(self.msg, section):
            if rr.name == name and rr.rdtype == rdtype and rr.covers == covers:
                return rr
        return None

    def sigs(self, section: str, name: dns.name.Name, covers: int):
        return self.rrset(section, name, dns.rdatatype.RRSIG, covers)


class _Session:
    """Per-run cache of raw answers and of zone-chain results.

    It keeps what a query needs (the resolvers, the timeout) and reaches the
    client only through a weak reference: a strong one would make the client
    and its session keep each other alive, and every audit of a bulk run
    would stay in memory (about 85 KB each) until the process ends.
    """

    def __init__(self, client) -> None:
        self._client = weakref.ref(client)
        self.resolvers = tuple(getattr(client, "resolvers", ()))
        self.timeout = max(min(QUERY_TIMEOUT, float(getattr(client, "timeout", QUERY_TIMEOUT))), 0.5)
        self.raw: dict[tuple[dns.name.Name, int], asyncio.Future] = {}
        self.chains: dict[tuple, asyncio.Future] = {}

    def hook(self, name: str):
        """A test's in-process answer function on the client (`dnssec_query`, ...), or None."""
        client = self._client()
        return getattr(client, name, None) if client is not None else None

    def ask(self, name: dns.name.Name, rdtype: int) -> asyncio.Future:
        key = (name, rdtype)
        fut = self.raw.get(key)
        if fut is None:
            fut = asyncio.ensure_future(self._ask(name, rdtype))
            self.raw[key] = fut
        return fut

    async def _ask(self, name: dns.name.Name, rdtype: int) -> Raw:
        custom = self.hook("dnssec_query")   # tests: an in-process answer function
        if custom is not None:
            msg = await custom(name, rdtype)
            return Raw(msg) if msg is not None else Raw(None, "no answer", "error")
        errors: list[tuple[str, str]] = []
        for r in self.resolvers:
            q = dns.message.make_query(name, rdtype, want_dnssec=True, payload=PAYLOAD)
            q.flags = dns.flags.RD | dns.flags.CD
            errors.append(await _one_query(q, r, self.timeout))
            if errors[-1][0] == "":
                return Raw(errors[-1][2])
        return _failed(errors)

    def pending(self) -> list[asyncio.Future]:
        return [f for f in (*self.raw.values(), *self.chains.values()) if not f.done()]


# The attribute that holds a client's session (one per DnsClient, i.e. per audit).
_SESSION_ATTR = "_deliverck_dnssec_session"


async def _one_query(q, r, timeout: float):
    """("", "", response) for NOERROR/NXDOMAIN, else (failure, plain text, None); UDP, then TCP on TC.

    The query goes out again once, half-way through `timeout`, as stub resolvers do: a validation
    asks every zone cut at once, and a burst of hundreds of datagrams (a bulk run, or a domain with
    many MX hosts) can overflow a resolver's socket buffer, which drops queries without a word."""
    per_try = timeout / UDP_TRIES
    for attempt in range(UDP_TRIES):
        try:
            resp, _tcp = await dns.asyncquery.udp_with_fallback(q, r.ip, timeout=per_try, port=r.port)
            break
        except dns.exception.Timeout:
            if attempt < UDP_TRIES - 1:
                continue
            return "timeout", f"{r} did not answer within {timeout:g}s", None
        except OSError as e:
            return "error", f"{r} unreachable ({e.strerror or type(e).__name__})", None
        except dns.exception.DNSException as e:
            return "error", f"{r} sent an unusable answer ({' '.join(str(e).split()).rstrip('.')[:120]})", None
    rc = resp.rcode()
    if rc in (dns.rcode.NOERROR, dns.rcode.NXDOMAIN):
        return "", "", resp
    text = dns.rcode.to_text(rc)
    return text.lower() if rc in (dns.rcode.SERVFAIL, dns.rcode.REFUSED) else "error", f"{r} answered {text}", resp


def _failed(errors: list) -> Raw:
    if not errors:
        return Raw(None, "no resolver configured", "error")
    return Raw(None, "; ".join(dict.fromkeys(e[1] for e in errors)), errors[0][0])


def _session(client) -> _Session:
    """The client's session, made on first use and stored on the client, so that it lives
    exactly as long as the client does (no registry outside it)."""
    s = getattr(client, _SESSION_ATTR, None)
    if s is None:
        s = _Session(client)
        setattr(client, _SESSION_ATTR, s)
    return s


async def close(client) -> None:
    """Cancel the validation lookups still in flight for `client` (the audit is over)."""
    s = getattr(client, _SESSION_ATTR, None)
    if s is None:
        return
    pending = s.pending()
    for f in pending:
        f.cancel()
    if pending:
        await asyncio.gather(*pending, return_exceptions=True)


# ---------------------------------------------------------------- signatures

def _when(ts: int) -> str:
    return _dt.datetime.fromtimestamp(ts, _dt.timezone.utc).strftime("%Y-%m-%d %H:%M:%SZ")


def _txt(name: dns.name.Name) -> str:
    return name.to_text()


def check_rrset(rrset, sigs, keys, zone: dns.name.Name, now: float) -> str:
    """"" when some RRSIG over `rrset` by a key of `keys` (the DNSKEY RRset of
    `zone`) verifies now; else why not, in one line."""
    what = f"{_txt(rrset.name)} {dns.rdatatype.to_text(rrset.rdtype)}"
    if not sigs:
        return f"no RRSIG over {what}"
    reasons = []
    for sig in sigs:
        if sig.signer != zone:
            reasons.append(f"RRSIG over {what} is signed by {_txt(sig.signer)}, not by its zone {_txt(zone)}")
            continue
        if sig.expiration < now:
            reasons.append(f"RRSIG over {what} (key {sig.key_tag}) expired {_when(sig.expiration)} "
                           f"(valid from {_when(sig.inception)})")
            continue
        if sig.inception > now:
            reasons.append(f"RRSIG over {what} (key {sig.key_tag}) not valid before {_when(sig.inception)}")
            continue
        candidates = [k for k in keys if dns.dnssec.key_id(k) == sig.key_tag and k.algorithm == sig.algorithm]
        if not candidates:
            reasons.append(f"RRSIG over {what} names key {sig.key_tag}, which {_txt(zone)} DNSKEY does not hold")
            continue
        try:
            dns.dnssec.validate_rrsig(rrset, sig, {zone: keys}, now=now)
            return ""
        except dns.dnssec.UnsupportedAlgorithm:
            reasons.append(f"RRSIG over {what} uses unsupported algorithm {sig.algorithm}")
        except dns.dnssec.ValidationFailure as e:
            reasons.append(f"RRSIG over {what} (key {sig.key_tag}) does not verify ({e})")
    return reasons[0] if len(reasons) == 1 else "; ".join(dict.fromkeys(reasons))


def _ds_matches(ds, key, owner: dns.name.Name) -> bool:
    alg = _SUPPORTED_DIGESTS.get(ds.digest_type)
    if alg is None:
        return False
    try:
        return dns.dnssec.make_ds(owner, key, alg) == ds
    except Exception:
        return False


def _supported_ds(dsset) -> list:
    return [d for d in dsset if d.algorithm in _SUPPORTED_ALGS and d.digest_type in _SUPPORTED_DIGESTS]


def _validate_dnskeys(zone: dns.name.Name, raw: Raw, dsset, now: float) -> tuple[str, str, object]:
    """(state, reason, keys) for the DNSKEY RRset of `zone` authenticated by `dsset`."""
    z = _txt(zone)
    if raw.error:
        return INDETERMINATE, f"DNSKEY lookup of {z} failed: {raw.error}", None
    keys = raw.rrset("answer", zone, dns.rdatatype.DNSKEY)
    if keys is None:
        return BOGUS, f"{z} has a DS in its parent but publishes no DNSKEY", None
    usable = _supported_ds(dsset)
    if not usable:
        algs = ", ".join(sorted({str(d.algorithm) for d in dsset}))
        return INSECURE, f"the DS of {z} uses only unsupported algorithms/digests ({algs}): treated as unsigned", None
    matching = [k for k in keys if any(_ds_matches(d, k, zone) for d in usable)]
    if not matching:
        tags = ", ".join(str(d.key_tag) for d in usable)
        have = ", ".join(str(dns.dnssec.key_id(k)) for k in keys)
        return BOGUS, f"DS digest mismatch: no DNSKEY of {z} (keys {have}) matches its DS (key tag {tags})", None
    sigs = raw.sigs("answer", zone, dns.rdatatype.DNSKEY)
    sigs_by_sep = [s for s in (sigs or ()) if any(dns.dnssec.key_id(k) == s.key_tag for k in matching)]
    why = check_rrset(keys, sigs_by_sep or sigs, keys, zone, now)
    if why:
        return BOGUS, why, None
    return SECURE, "", keys


# ---------------------------------------------------------------- denial of existence

def _nsec_sets(raw: Raw) -> list:
    return [rr for rr in raw.msg.authority if rr.rdtype in (dns.rdatatype.NSEC, dns.rdatatype.NSEC3)]


def _denial_signed(raw: Raw, zone, keys, now) -> str:
    """"" when the NSEC/NSEC3 records of a negative answer are present and verify."""
    sets = _nsec_sets(raw)
    if not sets:
        return "no NSEC/NSEC3 records in a negative answer from a signed zone (broken denial of existence)"
    for rr in sets:
        why = check_rrset(rr, raw.sigs("authority", rr.name, rr.rdtype), keys, zone, now)
        if why:
            return f"broken denial of existence: {why}"
    return ""


def _bitmap_types(rd) -> set[int]:
    out = set()
    for window, bitmap in rd.windows:
        for i, byte in enumerate(bitmap):
            for bit in range(8):
                if byte & (0x80 >> bit):
                    out.add(window * 256 + i * 8 + bit)
    return out


def _nsec_covers(owner: dns.name.Name, nxt: dns.name.Name, name: dns.name.Name) -> bool:
    if owner < nxt:
        return owner < name < nxt
    return name > owner or name < nxt       # the last NSEC of the zone wraps to the apex


def _types_at(raw: Raw, name: dns.name.Name, zone: dns.name.Name):
    """The type bitmap NSEC/NSEC3 proves at `name`; ("covered", opt_out) when it
    proves the name does not exist; None when no record speaks to it."""
    for rr in _nsec_sets(raw):
        if rr.rdtype == dns.rdatatype.NSEC:
            for rd in rr:
                if rr.name == name:
                    return _bitmap_types(rd)
                if _nsec_covers(rr.name, rd.next, name):
                    return ("covered", False)
        else:
            for rd in rr:
                try:
                    h = dns.dnssec.nsec3_hash(name, rd.salt, rd.iterations, rd.algorithm)
                except Exception:
                    continue
                owner_hash = rr.name.labels[0].decode().upper()
                next_hash = _b32hex(rd.next)
                if h == owner_hash:
                    return _bitmap_types(rd)
                lo, hi = owner_hash, next_hash
                if (lo < h < hi) if lo < hi else (h > lo or h < hi):
                    return ("covered", bool(rd.flags & 1))
    return None


def _b32hex(raw_bytes: bytes) -> str:
    import base64
    return base64.b32encode(raw_bytes).translate(
        bytes.maketrans(b"ABCDEFGHIJKLMNOPQRSTUVWXYZ234567", b"0123456789ABCDEFGHIJKLMNOPQRSTUV")
    ).decode().rstrip("=")


# ---------------------------------------------------------------- the chain

@dataclass(frozen=True)
class ZoneState:
    state: str
    zone: dns.name.Name
    reason: str
    keys: object = None
    nxdomain_at: dns.name.Name | None = None
    denial_at: dns.name.Name | None = None   # bogus because the no-DS proof for this name is broken
    at: dns.name.Name | None = None          # not secure: the zone whose data broke the chain


def _ancestors(name: dns.name.Name) -> list[dns.name.Name]:
    """Root first, `name` last."""
    out = []
    n = name
    while True:
        out.append(n)
        if n == dns.name.root:
            break
        n = n.parent()
    return out[::-1]


async def _chain(sess: _Session, name: dns.name.Name, anchors, now: float) -> ZoneState:
    """Walk from the root to the zone holding `name`; all lookups start at once."""
    levels = _ancestors(name)
    for lv in levels:
        sess.ask(lv, dns.rdatatype.DNSKEY)
        if lv != dns.name.root:
            sess.ask(lv, dns.rdatatype.DS)
    root = dns.name.root
    anchor_ds = [rd for rrs in anchors if rrs.name == root and rrs.rdtype == dns.rdatatype.DS for rd in rrs]
    anchor_keys = [rd for rrs in anchors if rrs.name == root and rrs.rdtype == dns.rdatatype.DNSKEY for rd in rrs]
    raw = await sess.ask(root, dns.rdatatype.DNSKEY)
    if anchor_keys and not anchor_ds:
        anchor_ds = [dns.dnssec.make_ds(root, k, "SHA256") for k in anchor_keys]
    if not anchor_ds:
        return ZoneState(INSECURE, root, "no trust anchor for the root")
    state, why, keys = _validate_dnskeys(root, raw, anchor_ds, now)
    if state != SECURE:
        return ZoneState(state, root, f"root: {_root_reason(raw, why)}", at=root)
    zone = root
    for lv in levels[1:]:
        ds_raw = await sess.ask(lv, dns.rdatatype.DS)
        if ds_raw.error:
            return ZoneState(INDETERMINATE, zone, f"DS lookup of {_txt(lv)} failed: {ds_raw.error}", at=zone)
        dsset = ds_raw.rrset("answer", lv, dns.rdatatype.DS)
        if dsset is not None:
            why = check_rrset(dsset, ds_raw.sigs("answer", lv, dns.rdatatype.DS), keys, zone, now)
            if why:
                return ZoneState(BOGUS, zone, why, at=zone)
            state, why, child_keys = _validate_dnskeys(lv, await sess.ask(lv, dns.rdatatype.DNSKEY), dsset, now)
            if state != SECURE:
                return ZoneState(state, lv, why, at=lv)
            zone, keys = lv, child_keys
            continue
        # No DS: the zone we are in must prove it, and the proof says whether lv is a cut.
        why = _denial_signed(ds_raw, zone, keys, now)
        if why:
            return ZoneState(BOGUS, zone, f"no DS for {_txt(lv)}: {why}", keys, denial_at=lv, at=zone)
        types = _types_at(ds_raw, lv, zone)
        if ds_raw.rcode == dns.rcode.NXDOMAIN:
            return ZoneState(SECURE, zone, "", keys, nxdomain_at=lv)
        if types is None:
            # The proof speaks of another name (e.g. a wildcard or closest encloser); accept as no cut.
            continue
        if isinstance(types, tuple):
            if types[1]:
                return ZoneState(INSECURE, lv, f"{_txt(lv)} is an unsigned delegation from {_txt(zone)} "
                                               "(NSEC3 opt-out, no DS)")
            continue                      # an empty non-terminal
        if dns.rdatatype.DS in types:
            return ZoneState(BOGUS, zone, f"the NSEC of {_txt(lv)} lists DS but no DS was returned", at=zone)
        if dns.rdatatype.NS in types and dns.rdatatype.SOA not in types:
            return ZoneState(INSECURE, lv, f"no DS for {_txt(lv)} in {_txt(zone)}: unsigned delegation "
                                           f"(zone cut at {_txt(lv)})")
        if dns.rdatatype.SOA in types and lv != zone:
            # Answered from the child's apex (a resolver asked the wrong side): no DS above it.
            return ZoneState(INSECURE, lv, f"no DS for {_txt(lv)}: unsigned zone (zone cut at {_txt(lv)})")
    return ZoneState(SECURE, zone, "", keys)


ANCHOR_MISMATCH = "does not match the trust anchor"


def _root_reason(raw: Raw, why: str) -> str:
    """Why the root's keys cannot be used, in words about the root (it has no parent)."""
    if raw.error:
        return why
    if raw.rrset("answer", dns.name.root, dns.rdatatype.DNSKEY) is None:
        return ("the root zone has no DNSKEY here (an unsigned private root, or a resolver that strips "
                "DNSSEC records)")
    if why.startswith("DS digest mismatch"):
        return f"the root DNSKEY {ANCHOR_MISMATCH} (" + why.split(": ", 1)[1] + ")"
    return why


async def chain(client, name: str, anchors=None, *, now: float | None = None) -> ZoneState:
    """The state of the zone holding `name` (cached per run)."""
    import time

    sess = _session(client)
    anchors = DEFAULT_ANCHORS if anchors is None else tuple(anchors)
    n = dns.name.from_text(name)
    t = time.time() if now is None else now
    key = (n, tuple(sorted(r.to_text() for r in anchors)), now)
    fut = sess.chains.get(key)
    if fut is None:
        fut = asyncio.ensure_future(_chain(sess, n, anchors, t))
        sess.chains[key] = fut
    return await asyncio.shield(fut)


def _stale_signatures(raw: Raw, qname, qtype, now: float) -> str:
    """When the chain above cannot be used, the RRSIG dates still speak: "" unless every RRSIG over
    the answer RRset has expired (or is not valid yet); no key is needed to read them."""
    if raw.msg is None:
        return ""
    rrset = raw.rrset("answer", qname, qtype) or raw.rrset("answer", qname, dns.rdatatype.CNAME)
    sigs = raw.sigs("answer", qname, rrset.rdtype) if rrset is not None else None
    if not sigs:
        return ""
    what = f"{_txt(qname)} {dns.rdatatype.to_text(rrset.rdtype)}"
    if all(sig.expiration < now for sig in sigs):
        sig = max(sigs, key=lambda x: x.expiration)
        return (f"RRSIG over {what} (key {sig.key_tag}) expired {_when(sig.expiration)} "
                f"(valid from {_when(sig.inception)})")
    if all(sig.inception > now for sig in sigs):
        sig = min(sigs, key=lambda x: x.inception)
        return f"RRSIG over {what} (key {sig.key_tag}) not valid before {_when(sig.inception)}"
    return ""


def _outcome(raw: Raw, name, rdtype) -> str:
    if raw.error:
        return raw.failure or "error"
    if raw.rcode == dns.rcode.NXDOMAIN:
        return "nxdomain"
    return "ok" if any(rr.rdtype == rdtype for rr in raw.msg.answer) else "nodata"


async def validate(client, name: str, rdtype: str, anchors: Sequence | None = None,
                   *, now: float | None = None) -> Validation:
    """Validate the `rdtype` RRset of `name` from `anchors` (default: the IANA root anchors).

    `anchors`: RRsets as returned by `parse_anchors`/`load_anchor_file`.
    Never raises for DNS outcomes.
    """
    import time

    t = time.time() if now is None else now
    anchors = DEFAULT_ANCHORS if anchors is None else tuple(anchors)
    sess = _session(client)
    qname = dns.name.from_text(name)
    qtype = dns.rdatatype.from_text(rdtype)
    label = name.rstrip(".").lower() or "."
    answer_f = sess.ask(qname, qtype)
    chain_f = asyncio.ensure_future(chain(client, qname.to_text(), anchors, now=now))
    raw = await answer_f
    zs = await chain_f
    outcome = _outcome(raw, qname, qtype)
    records = ()
    if raw.msg is not None:
        rr = next((r for r in raw.msg.answer if r.rdtype == qtype), None)
        records = tuple(rr) if rr is not None else ()

    def out(state, reason, zone=zs.zone, at=None, walked=qname):
        broken = "" if state in (SECURE, INSECURE) else _txt(at if at is not None else zone)
        stale = _stale_signatures(raw, qname, qtype, t) if broken and zs.state != SECURE else ""
        return Validation(label, rdtype.upper(), state, reason, _txt(zone) if zone != dns.name.root else ".",
                          records, outcome, broken, _txt(walked) if broken else "", stale)

    if zs.state == BOGUS and zs.denial_at == qname and zs.keys is not None and raw.msg is not None:
        # The name's own RRset, signed by the same zone, usually says more directly what is broken.
        own = raw.rrset("answer", qname, qtype)
        if own is not None:
            why = check_rrset(own, raw.sigs("answer", qname, qtype), zs.keys, zs.zone, t)
            if why:
                return out(BOGUS, why)
    if zs.state != SECURE:
        return out(zs.state, zs.reason, at=zs.at)
    if raw.error:
        return out(INDETERMINATE, f"{label} {rdtype.upper()} lookup failed: {raw.error}")
    if zs.nxdomain_at is not None:
        return out(SECURE, f"{_txt(zs.nxdomain_at)} does not exist (NXDOMAIN, signed denial in {_txt(zs.zone)})")
    # Walk the answer: the RRset itself, or a CNAME chain that may leave the zone.
    owner = qname
    zone, keys = zs.zone, zs.keys
    seen = 0
    while True:
        seen += 1
        target = raw.rrset("answer", owner, qtype)
        cname = raw.rrset("answer", owner, dns.rdatatype.CNAME) if target is None else None
        rrset = target if target is not None else cname
        if owner != qname:
            z2 = await chain(client, owner.to_text(), anchors, now=now)
            if z2.state != SECURE:
                return out(z2.state, f"via CNAME: {z2.reason}", z2.zone, at=z2.at, walked=owner)
            zone, keys = z2.zone, z2.keys
        if rrset is None:
            break
        why = check_rrset(rrset, raw.sigs("answer", owner, rrset.rdtype), keys, zone, t)
        if why:
            return out(BOGUS, why, zone, walked=owner)
        if target is not None or seen > 8:
            return out(SECURE, f"{label} {rdtype.upper()} validated from the root trust anchor "
                               f"(signed by {_txt(zone)})", zone)
        owner = cname[0].target
    # A negative answer at `owner` (or a CNAME chain ending in one): the denial must verify.
    why = _denial_signed(raw, zone, keys, t)
    if why:
        return out(BOGUS, why, zone, walked=owner)
    if raw.rcode == dns.rcode.NOERROR:
        types = _types_at(raw, owner, zone)
        if isinstance(types, set) and (qtype in types or dns.rdatatype.CNAME in types):
            return out(BOGUS, f"broken denial of existence: the NSEC of {_txt(owner)} lists "
                              f"{rdtype.upper()} but none was returned", zone, walked=owner)
        return out(SECURE, f"{label} has no {rdtype.upper()} records (signed denial in {_txt(zone)})", zone)
    return out(SECURE, f"{_txt(owner)} does not exist (signed denial in {_txt(zone)})", zone)


async def validate_many(client, questions: Iterable[tuple[str, str]], anchors=None) -> list[Validation]:
    """Several validations at once; the chain lookups they share run once."""
    return list(await asyncio.gather(*(validate(client, n, t, anchors) for n, t in questions)))


async def validate_tlsa(client, mx_host: str, port: int = 25, anchors=None) -> Validation:
    """The DANE helper: the TLSA RRset at _<port>._tcp.<mx_host>."""
    return await validate(client, f"_{port}._tcp.{mx_host.rstrip('.')}", "TLSA", anchors)


@dataclass(frozen=True)
class ResolverView:
    """What the configured resolver itself concludes: its rcode and AD bit (CD=0)."""
    outcome: str              # ok | nodata | nxdomain | servfail | refused | timeout | error
    authenticated: bool
    detail: str = ""          # the resolver that answered, or what each one did, in plain words
    ede: tuple[tuple[int, str], ...] = ()   # Extended DNS Errors it gave (RFC 8914): (code, text)

    def ede_text(self) -> str:
        return "; ".join(f"EDE {c} {_EDE_NAMES.get(c, '')}{': ' + t if t else ''}".replace("  ", " ")
                         for c, t in self.ede)


# RFC 8914 4: the DNSSEC-related Extended DNS Error codes.
_EDE_NAMES = {1: "Unsupported DNSKEY Algorithm", 2: "Unsupported DS Digest Type", 5: "DNSSEC Indeterminate",
              6: "DNSSEC Bogus", 7: "Signature Expired", 8: "Signature Not Yet Valid", 9: "DNSKEY Missing",
              10: "RRSIGs Missing", 11: "No Zone Key Bit Set", 12: "NSEC Missing"}
EDE_EXPIRED = 7


async def resolver_view(client, name: str, rdtype: str) -> ResolverView:
    """Ask the configured resolvers with AD=1 (RFC 6840 5.7) and CD=0: a validating
    resolver sets AD on secure data and answers SERVFAIL for bogus data.
    (A plain DnsClient lookup sends neither DO nor AD, so its AD bit stays clear.)"""
    sess = _session(client)
    key = ("view", name.rstrip(".").lower(), rdtype.upper())
    fut = sess.chains.get(key)
    if fut is None:
        fut = asyncio.ensure_future(_resolver_view(client, dns.name.from_text(name),
                                                   dns.rdatatype.from_text(rdtype)))
        sess.chains[key] = fut
    return await asyncio.shield(fut)


async def _resolver_view(client, qname, qtype) -> ResolverView:
    sess = _session(client)
    custom = sess.hook("dnssec_resolver_view")
    if custom is not None:
        return await custom(qname, qtype)
    errors = []
    ede: tuple = ()
    timeout = sess.timeout
    for r in sess.resolvers:
        q = dns.message.make_query(qname, qtype, use_edns=0, payload=PAYLOAD)
        q.flags = dns.flags.RD | dns.flags.AD
        failure, text, resp = await _one_query(q, r, timeout)
        if resp is not None:
            ede = ede or _edes(resp)
        if failure:
            errors.append((failure, text))
            continue
        ad = bool(resp.flags & dns.flags.AD)
        if resp.rcode() == dns.rcode.NXDOMAIN:
            return ResolverView("nxdomain", ad, str(r), ede)
        ok = any(rr.rdtype == qtype for rr in resp.answer)
        return ResolverView("ok" if ok else "nodata", ad, str(r), ede)
    if not errors:
        return ResolverView("error", False, "no resolver configured")
    return ResolverView(errors[0][0], False, "; ".join(dict.fromkeys(e[1] for e in errors)), ede)


def _edes(resp) -> tuple[tuple[int, str], ...]:
    try:
        return tuple((int(o.code), " ".join((o.text or "").split())[:160]) for o in resp.extended_errors())
    except Exception:  # noqa: BLE001 - a malformed option only loses the detail
        return ()
