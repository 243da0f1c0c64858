"""DKIM signatures and the ARC chain of a real message, verified with dkimpy over deliverck's DNS.

dkimpy asks a synchronous `dnsfunc(name, timeout=5)` for each key.  Calling the network from
there would block the event loop (and bypass --resolver, --zone-file, the cache and the lab),
so the keys are fetched first: every (s=, d=) named by the DKIM-Signature, ARC-Message-Signature
and ARC-Seal fields (at most MAX_SIGNATURES signatures and MAX_ARC_SETS ARC sets) is looked up
concurrently through the audit's Context, and dkimpy then runs against a table of those answers
(`KeyTable.dnsfunc`).  A lookup that failed is never turned into a verdict about the signature:
DKIM says temperror (RFC 6376 6.1.2 TEMPFAIL), ARC says temperror.

deliverck does its own checks before the cryptography, so that each failure gets its own cause
(dkimpy folds most of them into False): tag syntax and required tags (RFC 6376 6.1.1), From in
h= (6.1.1: "the Verifier MUST ignore the DKIM-Signature ... PERMFAIL (From field not signed)"),
x= and t= (3.5), the key record (3.6.1: empty p= is revoked), key size and hash (RFC 8301: no
RSA key under 1024 bits, no rsa-sha1).  dkimpy's `verify_sig` then hashes the body and headers.
"""

from __future__ import annotations

import asyncio
import logging
import re
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass

import dkim
import dkim.util
from dkim.canonicalization import CanonicalizationPolicy, InvalidCanonicalizationPolicyError

from deliverck.message.model import DkimSignature
from deliverck.net.dnsanswer import DnsAnswer
from deliverck.records import dkim as dkimrec
from deliverck.records.dkim_discovery import txt_text
from deliverck.target import org_domain

MAX_SIGNATURES = 10         # DKIM-Signature fields verified per message; the rest are counted only
MAX_ARC_SETS = 10           # ARC sets validated; a longer chain is reported, not validated
CLOCK_SLOP = 10 * 3600      # t= in the future by less than this is a clock error, as dkimpy allows
ALGORITHMS = ("rsa-sha256", "rsa-sha1", "ed25519-sha256")
_SAFE_LABELS = re.compile(r"^[A-Za-z0-9_](?:[A-Za-z0-9_.-]{0,251}[A-Za-z0-9_])?$")

_LOG = logging.getLogger("deliverck.message.dkimpy")
_LOG.addHandler(logging.NullHandler())
_LOG.propagate = False      # dkimpy logs every failure at ERROR; deliverck reports them itself

Lookup = Callable[[str, str], Awaitable[DnsAnswer]]


def _text(b: bytes | None) -> str:
    return (b or b"").decode("utf-8", "replace")


def _tags(value: bytes) -> dict[bytes, bytes] | None:
    try:
        return dict(dkim.util.parse_tag_value(value))
    except Exception:       # dkimpy raises InvalidTagValueList, or worse on odd bytes
        return None


def key_name(selector: str, domain: str) -> str:
    return f"{selector}._domainkey.{domain}".lower()


def _name_ok(selector: str, domain: str) -> bool:
    return bool(selector and domain and _SAFE_LABELS.match(selector) and _SAFE_LABELS.match(domain)
                and "." in domain and len(key_name(selector, domain)) <= 253)


class KeyTable:
    """The prefetched answers, served to dkimpy as its dnsfunc.  Remembers what dkimpy asked
    for that had failed, so that a False from dkimpy is not mistaken for a bad signature."""

    def __init__(self, answers: dict[str, DnsAnswer]) -> None:
        self.answers = answers
        self.failed_asked: list[str] = []

    def record(self, name: str) -> tuple[DnsAnswer | None, str]:
        """(the answer, the key record text: the first TXT that looks like a key, "" when none)."""
        ans = self.answers.get(name.rstrip(".").lower())
        if ans is None or not ans.ok:
            return ans, ""
        texts = [txt_text(r) for r in ans.records]
        keys = [t for t in texts if "p=" in t.replace(" ", "")] or texts
        return ans, keys[0] if keys else ""

    def dnsfunc(self, name: bytes | str, timeout: float = 5) -> bytes | None:
        qname = name.decode("ascii", "replace") if isinstance(name, bytes) else name
        ans, text = self.record(qname)
        if ans is None or not ans.outcome.definite:
            self.failed_asked.append(qname)
            return None
        return text.encode("utf-8") if text else None


def message_headers(raw: bytes) -> tuple[list[tuple[bytes, bytes]], bytes, str]:
    """(header fields, body, error) as dkimpy splits them."""
    try:
        headers, body = dkim.rfc822_parse(raw)
        return list(headers), body, ""
    except Exception as e:      # MessageFormatError and friends: a header dkimpy cannot read
        return [], b"", f"the header cannot be parsed for DKIM: {' '.join(str(e).split())[:200]}"


def wanted_keys(headers: list[tuple[bytes, bytes]]) -> list[str]:
    """Every key name the signatures and ARC sets of the message point at (bounded)."""
    names: list[str] = []
    sigs = [v for k, v in headers if k.lower() == b"dkim-signature"][:MAX_SIGNATURES]
    arc = [v for k, v in headers if k.lower() in (b"arc-message-signature", b"arc-seal")][:2 * MAX_ARC_SETS]
    for value in sigs + arc:
        t = _tags(value) or {}
        s, d = _text(t.get(b"s")).strip(), _text(t.get(b"d")).strip().rstrip(".")
        if _name_ok(s, d) and key_name(s, d) not in names:
            names.append(key_name(s, d))
    return names


async def prefetch(names: list[str], lookup: Lookup) -> KeyTable:
    answers = await asyncio.gather(*(lookup(n, "TXT") for n in names))
    return KeyTable({n: a for n, a in zip(names, answers)})


@dataclass(frozen=True)
class Clock:
    """The time signatures are judged at: when the message was received when anyone says, else now."""

    now: int
    source: str         # "now", "SMTP session", "header Received #1"


def alignment(d: str, from_domain: str) -> str:
    d, f = d.lower().rstrip("."), from_domain.lower().rstrip(".")
    if not d or not f:
        return ""
    if d == f:
        return "strict"
    return "relaxed" if org_domain(d) == org_domain(f) else ""


def _unsigned_tail(body: bytes, sig: dict[bytes, bytes], length: int | None) -> int:
    if length is None:
        return 0
    try:
        canon = CanonicalizationPolicy.from_c_value(sig.get(b"c", b"simple/simple"))
        return max(len(canon.canonicalize_body(body)) - length, 0)
    except (InvalidCanonicalizationPolicyError, Exception):
        return 0


def verify_all(raw: bytes, table: KeyTable, from_domain: str, clock: Clock) -> tuple[tuple[DkimSignature, ...], int]:
    """Every DKIM-Signature field, top first (at most MAX_SIGNATURES); and how many there are."""
    headers, body, error = message_headers(raw)
    if error:
        count = len(re.findall(rb"(?im)^dkim-signature:", raw.split(b"\r\n\r\n", 1)[0].split(b"\n\n", 1)[0]))
        return tuple(DkimSignature(i, "", "", "", "permerror", "syntax", error) for i in range(min(count, MAX_SIGNATURES))), count
    values = [v for k, v in headers if k.lower() == b"dkim-signature"]
    out = []
    verifier = dkim.DKIM(raw, logger=_LOG, minkey=0) if values else None     # parsed once, reused
    for i, value in enumerate(values[:MAX_SIGNATURES]):
        try:
            out.append(_verify_one(verifier, i, value, table, from_domain, clock, body))
        except Exception as e:      # a signature dkimpy trips over must not take the others down
            out.append(DkimSignature(i, "", "", "", "permerror", "syntax", "the signature could not be processed "
                                     f"({type(e).__name__}: {' '.join(str(e).split())[:150]})"))
    return tuple(out), len(values)


def _verify_one(verifier: dkim.DKIM | None, idx: int, value: bytes, table: KeyTable, from_domain: str, clock: Clock,
                body: bytes) -> DkimSignature:
    sig = _tags(value)
    if sig is None:
        return DkimSignature(idx, "", "", "", "permerror", "syntax", "the signature's tag list cannot be parsed")
    d = _text(sig.get(b"d")).strip().rstrip(".").lower()
    s = _text(sig.get(b"s")).strip()
    a = _text(sig.get(b"a")).strip().lower()
    h = tuple(x.strip().lower() for x in _text(sig.get(b"h")).split(":") if x.strip())
    length = int(sig[b"l"]) if re.fullmatch(rb"\d{1,76}", sig.get(b"l", b"x").strip()) else None
    base = dict(index=idx, domain=d, selector=s, algorithm=a, signed_headers=h, length_limit=length,
                aligned=alignment(d, from_domain))

    def result(word: str, problem: str, reason: str, **more: object) -> DkimSignature:
        return DkimSignature(**base, result=word, problem=problem, reason=reason, **more)  # type: ignore[arg-type]

    missing = [t for t in ("v", "a", "b", "bh", "d", "h", "s") if t.encode() not in sig]
    if missing:
        return result("permerror", "syntax", "required tag(s) missing: " + ", ".join(f"{t}=" for t in missing))
    if a not in ALGORITHMS:
        return result("permerror", "syntax", f"unknown signing algorithm a={a}")
    if not _name_ok(s, d):
        return result("permerror", "syntax", f"d={d} or s={s} is not a usable DNS name")
    if "from" not in h:
        return result("permerror", "from_not_signed", "h= does not include From (RFC 6376 6.1.1: such a "
                      "signature must be ignored)")
    stamp = _stamps(sig, clock)
    if stamp is not None:
        return result("permerror", stamp[0], stamp[1])
    checked = {k: v for k, v in sig.items() if k not in (b"t", b"x")}
    try:
        dkim.validate_signature_fields(checked)
    except dkim.DKIMException as e:
        return result("permerror", "syntax", " ".join(str(e).split())[:200])
    ans, key_text = table.record(key_name(s, d))
    if ans is None or not ans.outcome.definite:
        why = ans.describe() if ans is not None else f"{key_name(s, d)} TXT: not looked up"
        return result("temperror", "temperror", f"the key lookup did not complete ({why})")
    if not key_text:
        return result("permerror", "no_key", f"no key at {key_name(s, d)} ({ans.outcome.value.upper()})")
    try:
        key = dkimrec.parse_key_record(key_text)
    except dkimrec.DkimSyntaxError as e:
        return result("permerror", "key_syntax", f"the key record is invalid: {e}", key_record=key_text)
    if key.revoked:
        return result("permerror", "revoked", f"the key at {key_name(s, d)} is revoked (empty p=)",
                      key_record=key_text)
    hash_name = a.rsplit("-", 1)[-1]
    if not key.known_type or key.key_error or not key.for_email or hash_name not in key.usable_hashes \
            or a.split("-", 1)[0] != key.key_type:
        why = key.problem or f"the key (k={key.key_type}, h={':'.join(key.hashes) or 'any'}) does not allow a={a}"
        return result("permerror", "key_syntax", f"the key cannot verify this signature: {why}", key_record=key_text,
                      key_bits=key.bits if key.key_type == "rsa" else 0)
    bits = key.bits if key.key_type == "rsa" else 0
    if key.key_type == "ed25519" and not _has_nacl():
        return result("neutral", "unsupported", "ed25519-sha256 cannot be verified here: dkimpy needs the pynacl "
                      "package for it (install pynacl)", key_record=key_text)
    assert verifier is not None
    return _crypto(verifier, idx, sig, h, table, base, key_text, bits, body, length)


def _stamps(sig: dict[bytes, bytes], clock: Clock) -> tuple[str, str] | None:
    """x= passed, or t= in the future (RFC 6376 3.5), at the clock's time."""
    at = "now" if clock.source == "now" else f"when received ({clock.source})"
    x, t = sig.get(b"x", b"").strip(), sig.get(b"t", b"").strip()
    if x and not x.isdigit() or t and not t.isdigit():
        return "syntax", "t= or x= is not a number"
    if x and int(x) < clock.now:
        return "expired", f"x= says the signature expired at {_utc(int(x))}, before {at} ({_utc(clock.now)})"
    if t and int(t) > clock.now + CLOCK_SLOP:
        return "future", f"t= says it was signed at {_utc(int(t))}, after {at} ({_utc(clock.now)})"
    if x and t and int(x) < int(t):
        return "syntax", "x= is earlier than t="
    return None


def _has_nacl() -> bool:
    try:
        import nacl.signing  # noqa: F401  (dkimpy's optional dependency for ed25519)
    except ImportError:
        return False
    return True


def _utc(ts: int) -> str:
    return time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(ts))


def _crypto(d: dkim.DKIM, idx: int, sig: dict[bytes, bytes], h: tuple[str, ...], table: KeyTable, base: dict,
            key_text: str, bits: int, body: bytes, length: int | None) -> DkimSignature:
    def result(word: str, problem: str, reason: str) -> DkimSignature:
        return DkimSignature(**base, result=word, problem=problem, reason=reason, key_bits=bits,
                             key_record=key_text, body_unsigned=_unsigned_tail(body, sig, length))

    sig_header = [(k, v) for k, v in d.headers if k.lower() == b"dkim-signature"][idx]
    try:
        ok = d.verify_sig(dict(sig), [x.encode() for x in h], sig_header, table.dnsfunc)
    except dkim.ValidationError as e:
        if "body hash mismatch" in str(e):
            return result("fail", "body_hash", "the body hash does not match: the body was changed after signing")
        return result("permerror", "syntax", " ".join(str(e).split())[:200])
    except dkim.DKIMException as e:
        return result("permerror", "syntax", " ".join(str(e).split())[:200])
    verified = "the signature itself verifies" if ok else "the signature does not verify either"
    if not ok:
        return result("fail", "signature", "the body matches but the signed header fields or the signature "
                      "do not: a signed header field was changed after signing (or a wrong key)")
    if base["algorithm"] == "rsa-sha1":
        return result("permerror", "sha1", f"rsa-sha1 (RFC 8301 3.1: verifiers must not accept it); {verified}")
    if bits and bits < dkimrec.RSA_MIN_BITS:
        return result("permerror", "key_too_short", f"RSA key of {bits} bits (RFC 8301 3.2: verifiers must not "
                      f"accept keys under {dkimrec.RSA_MIN_BITS} bits); {verified}")
    return result("pass", "", "verified")


# ---- ARC (RFC 8617) ---------------------------------------------------------------------------

@dataclass(frozen=True)
class ArcSet:
    instance: int                 # i=
    seal_domain: str              # ARC-Seal d=
    seal_selector: str            # ARC-Seal s=
    cv: str                       # ARC-Seal cv= as written: none, pass, fail
    seal_valid: bool
    ams_domain: str               # ARC-Message-Signature d=
    ams_selector: str
    ams_valid: bool
    aar: str = ""                 # ARC-Authentication-Results value (what the sealer recorded)


@dataclass(frozen=True)
class ArcResult:
    result: str                   # "none", "pass", "fail", "temperror", "skipped"
    reason: str
    sets: tuple[ArcSet, ...] = ()
    count: int = 0                # ARC sets in the message (by ARC-Seal fields)

    @property
    def sealers(self) -> tuple[str, ...]:
        return tuple(s.seal_domain for s in sorted(self.sets, key=lambda x: x.instance))


def verify_arc(raw: bytes, table: KeyTable) -> ArcResult:
    headers, _body, error = message_headers(raw)
    seals = [v for k, v in headers if k.lower() == b"arc-seal"]
    if error:
        return ArcResult("fail" if seals else "none", error, count=len(seals))
    if not seals:
        return ArcResult("none", "the message has no ARC sets")
    if len(seals) > MAX_ARC_SETS:
        return ArcResult("skipped", f"{len(seals)} ARC sets: deliverck validates chains of at most "
                         f"{MAX_ARC_SETS}", count=len(seals))
    table.failed_asked.clear()
    try:
        cv, data, reason = dkim.ARC(raw, logger=_LOG, minkey=1024).verify(dnsfunc=table.dnsfunc)
    except Exception as e:     # a malformed chain can raise outside dkimpy's own exception types
        cv, data, reason = dkim.CV_Fail, [], " ".join(str(e).split())[:200]
    sets = tuple(ArcSet(int(r.get("instance", 0)), _text(r.get("as-domain")).lower(), _text(r.get("as-selector")),
                        _text(r.get("cv")).lower(), bool(r.get("as-valid")), _text(r.get("ams-domain")).lower(),
                        _text(r.get("ams-selector")), bool(r.get("ams-valid")),
                        " ".join(_text(r.get("aar-value")).split())) for r in data)
    word = {dkim.CV_Pass: "pass", dkim.CV_None: "none"}.get(cv, "fail")
    if word != "pass" and table.failed_asked:
        return ArcResult("temperror", "a key lookup failed: " + ", ".join(sorted(set(table.failed_asked))),
                         sets, len(seals))
    return ArcResult(word, "the chain validates" if word == "pass" else str(reason), sets, len(seals))
