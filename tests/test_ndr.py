"""The NDR catalog, its validator, the predictor and the generated reference."""

from __future__ import annotations

import os
import random
import re
from pathlib import Path

import pytest

from deliverck.model import Direction, Finding, NdrPrediction, Owner, Severity
from deliverck.ndr import catalog as catalog_mod
from deliverck.ndr import docs, load, parse_receivers, predict
from deliverck.registry import finding_specs

ROOT = Path(__file__).resolve().parents[1]

# Every finding id of the checks whose bounces the catalog covers, runner
# findings included.  test_known_findings_match_the_registry keeps this
# honest for every one of these checks that is registered.
CATALOG_CHECKS = ("mx", "ptr", "smtp", "helo", "starttls", "relay")
KNOWN_FINDINGS = {
    "mx.records", "mx.domain_nxdomain", "mx.no_mail_host", "mx.implicit", "mx.null",
    "mx.null_mixed", "mx.target_cname", "mx.target_ip_literal", "mx.target_doubled_origin",
    "mx.target_nxdomain", "mx.target_no_address", "mx.target_private", "mx.no_usable_host",
    "mx.ipv6_only", "mx.single_host", "mx.equal_preference", "mx.lookup_failed",
    "mx.target_lookup_failed", "mx.crashed", "mx.timeout",
    "ptr.confirmed", "ptr.missing", "ptr.forward_missing", "ptr.forward_mismatch",
    "ptr.multiple", "ptr.generic", "ptr.name_invalid", "ptr.lookup_failed",
    "ptr.forward_lookup_failed", "ptr.not_public", "ptr.addresses_unknown",
    "ptr.crashed", "ptr.timeout",
    "smtp.greeting", "smtp.refused", "smtp.connect_timeout", "smtp.no_route", "smtp.port25_blocked",
    "smtp.tarpit", "smtp.greeting_rejected", "smtp.greeting_deferred", "smtp.not_smtp", "smtp.closed",
    "smtp.no_ehlo", "smtp.ipv6_unreachable", "smtp.no_host_accepts", "smtp.probe_failed",
    "smtp.not_probed", "smtp.other_port", "smtp.other_port_closed", "smtp.crashed", "smtp.timeout",
    "smtp.ehlo_failed", "mx.too_many_hosts", "mx.too_many_addresses", "mx.addresses_not_audited",
    "ptr.too_many_names",
    "helo.names", "helo.not_fqdn", "helo.localhost", "helo.address_literal", "helo.invalid",
    "helo.unresolvable", "helo.not_own_address", "helo.ptr_mismatch", "helo.is_domain_apex",
    "helo.lookup_failed", "helo.not_checked", "helo.crashed", "helo.timeout",
    "starttls.ok", "starttls.not_offered", "starttls.failed", "starttls.old_protocol",
    "starttls.cert_expired", "starttls.cert_not_yet_valid", "starttls.cert_expiring",
    "starttls.cert_name_mismatch", "starttls.cert_untrusted", "starttls.cert_self_signed",
    "starttls.weak_key", "starttls.weak_signature", "starttls.not_checked",
    "starttls.crashed", "starttls.timeout",
    "relay.closed", "relay.open", "relay.not_tested", "relay.crashed", "relay.timeout",
}

# Findings that cause bounces, deferrals or expiries by themselves.
DELIVERY_CONSEQUENCE = {
    "mx.domain_nxdomain", "mx.no_mail_host", "mx.null", "mx.null_mixed",
    "mx.no_usable_host", "mx.ipv6_only", "mx.lookup_failed", "mx.target_lookup_failed",
    "ptr.missing", "ptr.forward_missing", "ptr.forward_mismatch", "ptr.generic",
    "ptr.name_invalid", "ptr.lookup_failed", "ptr.forward_lookup_failed",
    "smtp.no_ehlo", "smtp.ipv6_unreachable", "smtp.no_host_accepts",
    "helo.not_fqdn", "helo.localhost", "helo.invalid", "helo.unresolvable",
    "helo.is_domain_apex", "helo.lookup_failed",
    "starttls.not_offered", "starttls.failed", "starttls.old_protocol", "starttls.cert_expired",
    "starttls.cert_not_yet_valid", "starttls.cert_name_mismatch", "starttls.cert_untrusted",
    "starttls.cert_self_signed", "starttls.weak_key", "starttls.weak_signature",
    "relay.open",
}

# Findings only receivers outside the default set are documented to act on
# (seed 004).  RFC 5321 4.1.4 forbids refusing mail because the HELO name does
# not match the client's address, so no default or generic entry predicts them.
NON_DEFAULT_ONLY = {"helo.address_literal", "helo.not_own_address", "helo.ptr_mismatch"}

# Findings that predict no NDR.  A single bad MX target (or one address that
# refuses SMTP) only bounces mail when no other target works, and then the
# check also reports mx.no_usable_host / smtp.no_host_accepts, which carry the
# prediction; a certificate that is about to expire bounces nothing yet; the
# rest are risks, information or inconclusive probes.
NO_NDR = KNOWN_FINDINGS - DELIVERY_CONSEQUENCE - NON_DEFAULT_ONLY

# Findings whose entries are for senders that require TLS.
TLS_REQUIRED = {fid for fid in DELIVERY_CONSEQUENCE if fid.startswith("starttls.")} | {"smtp.no_ehlo"}

DOMAIN = "example.test"
MX = {"ip": "192.0.2.25", "host": "mx1.example.test"}
HELO = {"ip": "192.0.2.25", "where": "greeting"}

# Subjects and arguments as the checks emit them.
EXAMPLE = {
    "mx.domain_nxdomain": (DOMAIN, {}),
    "mx.no_mail_host": (DOMAIN, {}),
    "mx.null": (DOMAIN, {}),
    "mx.null_mixed": (DOMAIN, {}),
    "mx.no_usable_host": (DOMAIN, {"reason": "mixed", "host": "mx1.example.test", "ip": "10.0.0.25"}),
    "mx.ipv6_only": (DOMAIN, {}),
    "mx.lookup_failed": (DOMAIN, {"outcome": "timeout"}),
    "mx.target_lookup_failed": ("mx1.example.test", {"outcome": "servfail"}),
    "ptr.missing": ("192.0.2.25", {"ip": "192.0.2.25", "rname": "25.2.0.192.in-addr.arpa",
                                   "outcome": "NXDOMAIN", "hosts": ["mx1.example.test"]}),
    "ptr.forward_missing": ("192.0.2.25", {"ip": "192.0.2.25", "ptr_name": "mail.example.test", "family": "A"}),
    "ptr.forward_mismatch": ("192.0.2.25", {"ip": "192.0.2.25", "ptr_name": "mail.example.test", "family": "A",
                                            "forward": "192.0.2.99"}),
    "ptr.generic": ("192.0.2.25", {"ip": "192.0.2.25", "ptr_name": "dyn-192-0-2-25.pool.example.net",
                                   "why": "contains 'dyn'"}),
    "ptr.name_invalid": ("192.0.2.25", {"ip": "192.0.2.25", "ptr_name": "bad_name.example.test"}),
    "ptr.lookup_failed": ("192.0.2.25", {"ip": "192.0.2.25", "outcome": "timeout"}),
    "ptr.forward_lookup_failed": ("192.0.2.25", {"ip": "192.0.2.25", "ptr_name": "mail.example.test",
                                                 "family": "A", "outcome": "timeout"}),
    "smtp.refused": ("192.0.2.25", {**MX, "port": 25}),
    "smtp.connect_timeout": ("192.0.2.25", {**MX, "port": 25, "seconds": "10"}),
    "smtp.tarpit": ("192.0.2.25", {**MX, "port": 25, "seconds": "30"}),
    "smtp.greeting_rejected": ("192.0.2.25", {**MX, "port": 25, "reply": "554 5.3.2 No SMTP service here"}),
    "smtp.greeting_deferred": ("192.0.2.25", {**MX, "port": 25, "reply": "421 4.3.2 Service not available"}),
    "smtp.not_smtp": ("192.0.2.25", {**MX, "port": 25, "what": "HTTP/1.1 400 Bad Request"}),
    "smtp.closed": ("192.0.2.25", {**MX, "port": 25}),
    "smtp.no_ehlo": ("192.0.2.25", {**MX, "port": 25, "reply": "502 5.5.2 Error: command not recognized"}),
    "smtp.ipv6_unreachable": ("2001:db8::25", {"ip": "2001:db8::25", "host": "mx1.example.test",
                                               "outcome": "connect_timeout"}),
    "smtp.no_host_accepts": (DOMAIN, {"reason": "mixed", **MX, "port": 25, "outcome": "greeting_rejected",
                                      "greeting": "554 5.3.2 no service"}),
    "helo.names": ("192.0.2.25", {**HELO, "helo": "mx1.example.test"}),
    "helo.not_fqdn": ("192.0.2.25", {**HELO, "helo": "mailserver"}),
    "helo.localhost": ("192.0.2.25", {**HELO, "helo": "localhost"}),
    "helo.address_literal": ("192.0.2.25", {**HELO, "helo": "[192.0.2.25]"}),
    "helo.invalid": ("192.0.2.25", {**HELO, "helo": "mail_server.example.test"}),
    "helo.unresolvable": ("192.0.2.25", {**HELO, "helo": "nohost.example.test", "outcome": "NXDOMAIN"}),
    "helo.not_own_address": ("192.0.2.25", {**HELO, "helo": "mx1.example.test", "addresses": "192.0.2.99"}),
    "helo.ptr_mismatch": ("192.0.2.25", {**HELO, "helo": "mx1.example.test", "ptr_name": "mail.example.test"}),
    "helo.is_domain_apex": ("192.0.2.25", {**HELO, "helo": DOMAIN}),
    "helo.lookup_failed": ("192.0.2.25", {**HELO, "helo": "mx1.example.test", "outcome": "timeout"}),
    "starttls.not_offered": ("192.0.2.25", MX),
    "starttls.failed": ("192.0.2.25", {**MX, "error": "sslv3 alert handshake failure"}),
    "starttls.old_protocol": ("192.0.2.25", {**MX, "version": "TLSv1"}),
    "starttls.cert_expired": ("192.0.2.25", {**MX, "days": 12, "not_after": "2026-01-01",
                                             "not_before": "2025-01-01"}),
    "starttls.cert_not_yet_valid": ("192.0.2.25", {**MX, "not_after": "2028-01-01", "not_before": "2027-01-01"}),
    "starttls.cert_expiring": ("192.0.2.25", {**MX, "days": 9, "not_after": "2026-12-02",
                                              "not_before": "2026-09-02"}),
    "starttls.cert_name_mismatch": ("192.0.2.25", {**MX, "names": "www.example.net"}),
    "starttls.cert_untrusted": ("192.0.2.25", {**MX, "error": "unable to get local issuer certificate"}),
    "starttls.cert_self_signed": ("192.0.2.25", MX),
    "starttls.weak_key": ("192.0.2.25", {**MX, "reason": "RSA 1024 bits"}),
    "starttls.weak_signature": ("192.0.2.25", {**MX, "reason": "sha1WithRSAEncryption"}),
    "relay.open": ("192.0.2.25", {**MX, "sender": "deliverck@example.com", "recipient": "relay-test@example.net",
                                  "reply": "250 2.1.5 Ok"}),
}

INCONCLUSIVE = {"mx.lookup_failed", "mx.target_lookup_failed", "ptr.lookup_failed", "ptr.forward_lookup_failed",
                "helo.lookup_failed", "smtp.connect_timeout", "starttls.not_checked", "relay.not_tested"}
OUTBOUND_CHECKS = ("ptr.", "helo.", "relay.")


_SPECS = finding_specs()


def finding(fid: str, subject: str | None = None, severity: Severity = Severity.ERROR, **args) -> Finding:
    if subject is None:
        subject, example_args = EXAMPLE.get(fid, (DOMAIN, {}))
        args = {**example_args, **args}
    return Finding(
        id=fid,
        severity=severity,
        subject=subject,
        summary=f"{fid} on {subject}",
        fix="",
        owner=_SPECS[fid].owner if fid in _SPECS else Owner.DNS_ADMIN,
        direction=Direction.OUTBOUND if fid.startswith(OUTBOUND_CHECKS) else Direction.INBOUND,
        inconclusive=fid in INCONCLUSIVE,
        args=args,
    )


def entry_dict(**over):
    base = {
        "key": "generic.x", "system": "generic", "direction": "outbound", "code": 550,
        "status": "5.7.25", "text": "t {ip}", "meaning": "m", "causes": ["c"],
        "owner": "ip_owner", "fix": "f", "findings": ["ptr.missing"], "source": "RFC 7372",
        "category": "reverse_dns", "likelihood": "will",
    }
    base.update(over)
    return base


def catalog_with(*entries, systems=None):
    return catalog_mod.from_mapping({
        "schema": 1,
        "system": systems if systems is not None else [
            {"id": "generic", "name": "Generic", "default": True, "fallback": True},
        ],
        "entry": list(entries),
    })


# ------------------------------------------------------------ the catalog


def test_catalog_has_no_problems():
    assert load().problems() == []


def test_load_is_cached_and_reads_package_data():
    assert load() is load()
    assert len(load().entries) > 30


def test_default_set():
    cat = load()
    assert cat.default_receivers() == ("exchange-online", "exchange", "gmail", "outlook-com", "postfix")
    assert cat.fallback_receivers() == ("generic",)
    for sid in ("sina", "tom", "musemail", "other"):
        assert sid in cat.system_ids()


@pytest.mark.parametrize("fid", sorted(DELIVERY_CONSEQUENCE))
def test_consequential_finding_maps_into_default_set(fid):
    cat = load()
    usable = set(cat.default_receivers()) | set(cat.fallback_receivers())
    assert [e.key for e in cat.by_finding(fid) if e.system in usable], f"{fid} predicts no NDR"


@pytest.mark.parametrize("fid", sorted(NO_NDR))
def test_harmless_or_per_target_finding_predicts_nothing(fid):
    assert load().by_finding(fid) == ()


@pytest.mark.parametrize("fid", sorted(NON_DEFAULT_ONLY))
def test_helo_match_findings_predict_only_outside_the_default_set(fid):
    cat = load()
    assert cat.by_finding(fid), f"{fid} predicts nothing at all"
    assert predict([finding(fid)], parse_receivers(None), domain=DOMAIN) == ()
    systems = {p.system for p in predict([finding(fid)], parse_receivers("all"), domain=DOMAIN)}
    assert systems and not systems & (set(cat.default_receivers()) | set(cat.fallback_receivers()))


def test_entry_findings_are_known_ids():
    # Entries of newer checks (catalog/<area>.toml) are held to the registry by tests/test_registry.py.
    unknown = {(e.key, f) for e in load().entries for f in e.findings
               if f not in KNOWN_FINDINGS and f.split(".")[0] in CATALOG_CHECKS}
    assert unknown == set()


def test_seed_codes_are_present():
    cat = load()
    have = {(e.system, e.code, e.status, e.text.split(" ")[0]) for e in cat.entries}
    expected = {
        ("exchange-online", 0, "4.4.316", "Connection"),    # seed 002
        ("exchange-online", 0, "4.4.7", "Message"),         # seed 002
        ("exchange-online", 0, "5.4.300", "Message"),       # seed 002
        ("exchange-online", 550, "5.4.1", "Relay"),         # seed 002
        ("exchange-online", 550, "5.7.25", "Access"),       # seed 002
        ("exchange", 451, "4.4.0", "Primary"),              # seed 001
        ("musemail", 505, "", "Your"),                      # seed 004
        ("sina", 553, "", "Spam"),                          # seed 004
        ("other", 451, "", "<{sender}>..."),                # seed 003
        ("other", 421, "", "SERVICE"),                      # seed 003
        ("exchange-online", 0, "4.7.321", "starttls-not-supported:"),    # seed 002
        ("exchange-online", 0, "5.7.321", "starttls-not-supported:"),    # seed 002
        ("exchange-online", 0, "4.7.322", "certificate-expired:"),       # seed 002
        ("exchange-online", 0, "5.7.322", "certificate-expired:"),       # seed 002
        ("exchange-online", 0, "4.7.325", "certificate-host-mismatch:"),  # seed 002
        ("exchange-online", 0, "5.7.325", "certificate-host-mismatch:"),  # seed 002
        ("exchange-online", 550, "5.7.506", "Access"),      # seed 002
        ("exchange-online", 550, "5.7.606", "Access"),      # seed 002 (5.7.606-649)
        ("exchange-online", 550, "5.7.1", "Unable"),        # seed 002
        ("other", 554, "5.7.1", "Rejected"),                # seed 004 (dnsbl.sorbs.net)
        ("other", 553, "", "sorry,"),                       # seed 004 (rcpthosts)
        # seed 004's list of common bounces, in its order
        ("musemail", 0, "", "Try"),
        ("musemail", 505, "", "Your"),
        ("other", 550, "", "invalid"),
        ("musemail", 0, "", "Invalid"),
        ("other", 554, "", "IP"),
        ("other", 554, "", "Hi"),
        ("sina", 554, "", "Please"),
        ("yahoo", 554, "", "delivery"),
        ("other", 550, "", "{recipient}:user"),
        ("other", 550, "", "This"),
        ("other", 550, "", "Requested"),
        ("other", 553, "", "Sorry!This"),
        ("other", 554, "", "EMail"),
        ("other", 550, "5.2.1", "<{recipient}>..."),
        ("other", 550, "", "<jing825cn>"),
    }
    assert expected - have == set()
    # seed 004 entries keep the seed's Chinese explanation next to a translation
    for e in load().entries:
        if e.system in ("sina", "musemail") or (e.system in ("other", "yahoo") and "seed 004" in e.source):
            if "common bounces list" in e.source:
                assert re.search(r"[\u4e00-\u9fff]", e.source) and "(" in e.source, e.key


# RFC 3463 section 3, by subject: the detail codes it defines.
RFC3463_DETAILS = {1: range(0, 9), 2: range(0, 5), 3: range(0, 6), 4: range(0, 8), 5: range(0, 6),
                   6: range(0, 6), 7: range(0, 8)}


def test_rfc3463_classes_subjects_and_details_are_generic_entries():
    cat = load()
    generic = {e.status for e in cat.entries if e.system == "generic" and e.status}
    assert {"2.0.0", "4.0.0", "5.0.0"} <= generic                       # the classes
    assert {f"{c}.{s}.0" for c in "45" for s in range(1, 8)} <= generic   # the subjects
    missing = [f"X.{s}.{d}" for s, details in RFC3463_DETAILS.items() for d in details
               if not {f"{c}.{s}.{d}" for c in "245"} & generic]
    assert missing == []
    for e in cat.entries:
        if e.key.startswith("generic.rfc3463-"):
            assert e.key == "generic.rfc3463-" + e.status.replace(".", "-") and not e.findings, e.key
            assert e.source.startswith("RFC 3463 section"), e.key


# -------------------------------------------------- seed 002: every table row

SEEDS = Path(os.environ.get("DELIVERCK_SEEDS", ROOT.parent / "shared" / "seeds"))

# The seeds are machine-garbled: digits come back as English words or roman
# numerals ("four.three.ii" is 4.3.2, "v.vii.509" is 5.7.509).
_NUMBER_WORDS = {
    w: i for i, w in enumerate(
        "zero one two three four five six seven eight nine ten eleven twelve thirteen fourteen fifteen "
        "sixteen seventeen eighteen nineteen twenty".split())
}
_NUMBER_WORDS.update({r: i + 1 for i, r in enumerate("i ii iii iv v vi vii viii ix x".split())})
_CODE_RE = re.compile(r"^(?:(\d{3}) )?([245])\.(\d{1,3})\.(\d{1,3})(?:-(\d{1,3}))?(?: or (?:([245])\.(\d{1,3})\.)?(\d{1,3}))?$")
_DESC_CODES_RE = re.compile(r"([245]\.\d{1,3}\.\d{1,3})")


def _digits(text: str) -> str:
    return re.sub(r"[a-z]+", lambda m: str(_NUMBER_WORDS.get(m.group(), m.group())), text.strip().lower())


def seed_002_rows() -> list[dict]:
    """The rows of seed 002's NDR code table: reply code, statuses or range, description."""
    paths = sorted(SEEDS.glob("002_*.txt"))
    if not paths:
        pytest.skip(f"seed 002 not found under {SEEDS} (set DELIVERCK_SEEDS)")
    lines = paths[0].read_text(encoding="utf-8").splitlines()
    start = next(i for i, line in enumerate(lines) if line.startswith("| NDR code |"))
    rows = []
    for line in lines[start + 2:]:
        if line.startswith("| Field |"):
            break
        if not line.startswith("| "):
            continue
        cells = [c.strip() for c in line.strip().strip("|").split("|")]
        first, desc = cells[0], cells[1] if len(cells) > 1 else ""
        if first.lower().endswith("/a"):                       # "n/a", garbled "due north/a"
            rows.append({"code": 0, "statuses": [], "range": None, "desc": desc})
            continue
        m = _CODE_RE.match(_digits(first))
        if not m:                                              # a continuation line of a long cell
            assert len(first) > 40, f"unparsed seed 002 row: {line[:80]!r}"
            continue
        code, cls, subj, det, end, or_cls, or_subj, or_det = m.groups()
        statuses = [f"{cls}.{subj}.{det}"]
        if or_det:
            statuses.append(f"{or_cls or cls}.{or_subj or subj}.{or_det}")
        rng = None
        named = _DESC_CODES_RE.findall(_digits(desc.split(" ", 1)[0]) + " " + _digits(desc))
        dm = re.match(r"^(\d{3}) ", desc)
        if dm and named and named[0] == statuses[0]:           # "550 5.5.0 Requested action ..."
            code = code or dm.group(1)
        if end:
            if named:                                          # the range's documented codes
                statuses = list(dict.fromkeys(named))
            else:
                rng = (statuses[0], f"{cls}.{subj}.{end}")
                statuses = []
        rows.append({"code": int(code or 0), "statuses": statuses, "range": rng, "desc": desc})
    return rows


def test_seed_002_table_is_parsed_completely():
    rows = seed_002_rows()
    assert len(rows) == 63                   # every row of the table, "n/a" included
    flat = [s for r in rows for s in r["statuses"]]
    assert flat.count("5.7.1") == 3 and flat.count("5.4.1") == 2
    assert {"4.3.2", "5.4.6", "5.4.14", "5.7.13", "5.7.135", "5.7.705", "5.7.708", "5.5.0", "5.1.1"} <= set(flat)
    assert [r["range"] for r in rows if r["range"]] == [
        ("4.7.500", "4.7.699"), ("4.7.850", "4.7.899"), ("5.7.606", "5.7.649")]
    assert {r["code"] for r in rows} == {0, 432, 550}


def test_every_seed_002_row_is_in_the_catalog():
    cat = load()
    seeded = [e for e in cat.entries if e.system in ("exchange-online", "exchange") and "seed 002" in e.source]
    missing = []
    wanted: dict[str, int] = {}
    for row in seed_002_rows():
        for status in row["statuses"]:
            wanted[status] = wanted.get(status, 0) + 1
            hits = [e for e in seeded if e.status == status]
            if not hits:
                missing.append(status)
            elif row["code"] and row["code"] not in {e.code for e in hits}:
                missing.append(f"{row['code']} {status}")
        if row["range"]:
            lo, hi = row["range"]
            if not [e for e in seeded if e.status == lo and e.status_range_end == hi]:
                missing.append(f"{lo}-{hi}")
            mid = f"{lo.rsplit('.', 1)[0]}.{(int(lo.rsplit('.', 1)[1]) + int(hi.rsplit('.', 1)[1])) // 2}"
            assert {e.status for e in cat.by_status(mid)} == {lo}, mid
        if not row["statuses"] and not row["range"]:
            tail = " ".join(row["desc"].split()[-4:])          # the ungarbled end of the text
            if not [e for e in seeded if not e.status and e.text.endswith(tail)]:
                missing.append(f"n/a ...{tail}")
    assert missing == []
    # A status the table gives in several rows (5.7.1: three) has an entry per row.
    short = {s: n for s, n in wanted.items() if len({e.key for e in seeded if e.status == s}) < n}
    assert short == {}


def test_explain_only_entries_are_valid_and_never_predicted():
    # findings = [] is a valid entry (knowledge for `deliverck explain` and
    # the reference); the predictor never returns it, whatever is selected.
    cat = catalog_with(entry_dict(findings=[]), entry_dict(key="generic.y"))
    assert cat.problems() == []
    keys = {p.key for p in predict([finding("ptr.missing")], ["generic"], domain=DOMAIN, catalog=cat)}
    assert keys == {"generic.y"}
    explain_only = {e.key for e in load().entries if not e.findings}
    assert explain_only, "the shipped catalog has explain-only entries"
    everything = [finding(fid) for fid in sorted(DELIVERY_CONSEQUENCE | NON_DEFAULT_ONLY)]
    predicted = {p.key for p in predict(everything, parse_receivers("all"), domain=DOMAIN)}
    assert predicted and not predicted & explain_only


def test_every_entry_has_a_known_category():
    from deliverck.ndr.categories import IDS

    cat = load()
    assert {e.key for e in cat.entries if e.category not in IDS} == set()
    # Categories agree with the kind of cause in the obvious cases.
    for e in cat.entries:
        if e.system == "exchange" and e.key.startswith("exchange.kerberos-"):
            assert e.category == "auth_kerberos", e.key
        if any(f.startswith(("ptr.",)) for f in e.findings) and all(f.startswith("ptr.") for f in e.findings):
            assert e.category == "reverse_dns", e.key
        if e.findings and all(f.startswith(("starttls.", "dane.", "mta_sts.")) for f in e.findings):
            assert e.category == "tls", e.key
        if e.findings and all(f.startswith("dnsbl.") for f in e.findings):
            assert e.category == "blocked_ip", e.key


def test_by_status_exact_range_and_text():
    cat = load()
    keys = {e.key for e in cat.by_status("5.7.1")}
    assert {"exchange-online.unable-to-relay", "gmail.ip-not-authorized", "postfix.rbl-blocked",
            "generic.dynamic-address"} <= keys
    # qmail-style status in the text
    assert {"other.rcpthosts", "sina.denied-ip"} <= keys
    assert all(e.status == "5.7.1" or "(#5.7.1)" in e.text for e in cat.by_status("5.7.1"))
    # no class wildcard
    assert not {e.key for e in cat.by_status("4.7.1")} & keys
    # a code inside a documented range
    for code in ("5.7.606", "5.7.620", "5.7.649"):
        assert "exchange-online.banned-sending-ip" in {e.key for e in cat.by_status(code)}, code
    for code in ("5.7.605", "5.7.650", "4.7.620", "5.6.620"):
        assert "exchange-online.banned-sending-ip" not in {e.key for e in cat.by_status(code)}, code
    assert cat.by_status("") == () and cat.by_status("5.7") == () and cat.by_status("five.7.1") == ()
    assert cat.entry("exchange-online.banned-sending-ip").status_label == "5.7.606-649"


def test_by_code():
    cat = load()
    assert {e.code for e in cat.by_code(553)} == {553}
    assert {"sina.spam-mail", "other.rcpthosts", "gmail.recipient-domain-not-found"} <= {e.key for e in cat.by_code(553)}
    assert cat.by_code(0) == () and cat.by_code(999) == ()


# ------------------------------------------------------------ the validator


@pytest.mark.parametrize(
    ("over", "needle"),
    [
        ({"system": "nosuch", "key": "nosuch.x"}, "unknown system 'nosuch'"),
        ({"status": "5.7"}, "bad enhanced status syntax"),
        ({"status": "five.7.25"}, "bad enhanced status syntax"),
        ({"status": "4.7.25"}, "disagrees with reply code 550"),
        ({"code": 250, "status": "5.7.25"}, "disagrees"),
        ({"code": 700}, "not an SMTP reply code"),
        ({"code": "550"}, "must be an integer"),
        ({"owner": "isp"}, "unknown owner 'isp'"),
        ({"direction": "sideways"}, "unknown direction 'sideways'"),
        ({"direction": "none"}, "unknown direction 'none'"),
        ({"source": ""}, "missing source"),
        ({"text": "hello {user}"}, "unknown placeholder {user}"),
        ({"findings": ["ptr missing"]}, "malformed finding id"),
        ({"key": "other.x"}, "key must start with its system id"),
        ({"family": "ipv5"}, "unknown family"),
        ({"mixed_class": True}, "mixed_class is set but code and status agree"),
        ({"text": "a\x1b[31mb"}, "control character"),
        ({"colour": "red"}, "unknown fields"),
        ({"category": "spam"}, "unknown category 'spam'"),
        ({"category": ""}, "missing category"),
        ({"status_range_end": "5.7.20"}, "must stay in one class and subject and end above its start"),
        ({"status_range_end": "5.6.99"}, "must stay in one class and subject"),
        ({"status_range_end": "5.7"}, "bad status_range_end syntax"),
        ({"status": "", "status_range_end": "5.7.99"}, "needs a status that opens the range"),
    ],
)
def test_validator_reports(over, needle):
    problems = catalog_with(entry_dict(**over)).problems()
    assert any(needle in p for p in problems), problems


def test_validator_reports_missing_source_field_and_duplicates():
    raw = entry_dict()
    del raw["source"]
    assert any("missing fields ['source']" in p for p in catalog_with(raw).problems())
    raw = entry_dict()
    del raw["category"]
    assert any("missing fields ['category']" in p for p in catalog_with(raw).problems())
    dup = catalog_with(entry_dict(), entry_dict())
    assert any("duplicate entry key 'generic.x'" in p for p in dup.problems())


def test_validator_accepts_mixed_class_and_code_zero():
    assert catalog_with(entry_dict(code=550, status="4.4.7", mixed_class=True)).problems() == []
    assert catalog_with(entry_dict(status="5.7.606", status_range_end="5.7.649")).problems() == []
    assert catalog_with(entry_dict(code=0, status="4.4.7")).problems() == []
    assert catalog_with(entry_dict(code=505, status="")).problems() == []


def test_validator_needs_a_default_system():
    cat = catalog_with(entry_dict(), systems=[{"id": "generic", "name": "G"}])
    assert any("default receiver set" in p for p in cat.problems())


# ------------------------------------------------------------ receivers option


def test_parse_receivers():
    cat = load()
    assert parse_receivers(None) == cat.default_receivers()
    assert parse_receivers("  ") == cat.default_receivers()
    assert parse_receivers("default") == cat.default_receivers()
    assert parse_receivers("all") == cat.system_ids()
    assert parse_receivers("Gmail, postfix gmail") == ("gmail", "postfix")
    assert parse_receivers("sina,default") == ("sina", *cat.default_receivers())


@pytest.mark.parametrize("text", ["hotmail", "gmail,aol", "gmail;postfix"])
def test_parse_receivers_rejects_unknown(text):
    with pytest.raises(ValueError, match=r"^unknown receiver system '.+' \(known: exchange-online, "):
        parse_receivers(text)


def test_parse_receivers_escapes_control_characters():
    with pytest.raises(ValueError) as info:
        parse_receivers("bad\x1b[2J")
    assert "\x1b" not in str(info.value)


def test_predict_rejects_unknown_receiver():
    with pytest.raises(ValueError, match="unknown receiver system 'nosuch'"):
        predict([finding("ptr.missing")], ["nosuch"], domain=DOMAIN)


# ------------------------------------------------------------ prediction


@pytest.mark.parametrize("fid", sorted(DELIVERY_CONSEQUENCE | NON_DEFAULT_ONLY))
def test_replies_render_completely_for_real_args(fid):
    f = finding(fid)
    if fid == "ptr.missing":
        fs = [f, finding(fid, "2001:db8::25", ip="2001:db8::25")]
    elif fid == "smtp.no_host_accepts":   # the greeting refused, and another domain whose server closes before it
        fs = [f] + [finding(fid, f"{o}.example.test", **{**EXAMPLE[fid][1], "outcome": o})
                    for o in ("closed_before_greeting", "ehlo_closed", "ehlo_timeout")]
    else:
        fs = [f]
    preds = predict(fs, parse_receivers("all"), domain=DOMAIN, sender="alice@example.test")
    expected = {e.key for e in load().by_finding(fid)}
    assert {p.key for p in preds} == expected
    for p in preds:
        assert not re.search(r"\{[a-z_]*\}", p.reply), (p.key, p.reply)
        assert p.reply.isprintable(), p.key


def test_prediction_fields_come_from_the_catalog():
    (p,) = [p for p in predict([finding("ptr.missing")], ["gmail"], domain=DOMAIN) if p.code == 550]
    e = load().entry("gmail.ptr-missing")
    assert isinstance(p, NdrPrediction)
    assert (p.key, p.system, p.system_name, p.code, p.status) == (e.key, "gmail", "Gmail", 550, "5.7.25")
    assert p.reply.startswith("550 5.7.25 [192.0.2.25] The IP address sending this message")
    assert (p.text, p.fix, p.source, p.owner, p.direction) == (e.meaning, e.fix, e.source, Owner.IP_OWNER, Direction.OUTBOUND)
    assert p.caused_by == ("ptr.missing",) and p.subjects == ("192.0.2.25",)


def test_sender_and_recipient_placeholders():
    f = finding("mx.no_mail_host")
    by_key = {p.key: p for p in predict([f], ["postfix", "generic"], domain=DOMAIN)}
    assert by_key["postfix.sender-domain-not-found"].reply == (
        "450 4.1.8 <postmaster@example.test>: Sender address rejected: Domain not found")
    assert "<postmaster@example.test>:" in by_key["generic.bad-destination-system"].reply
    by_key = {p.key: p for p in predict([f], ["postfix"], domain=DOMAIN, sender="bob@example.test")}
    assert by_key["postfix.sender-domain-not-found"].reply.startswith("450 4.1.8 <bob@example.test>:")


def test_predictions_are_deterministic_and_deduplicated():
    fs = [finding(fid) for fid in sorted(DELIVERY_CONSEQUENCE)]
    fs += [finding("ptr.missing", "192.0.2.26", ip="192.0.2.26"), fs[0], fs[3]]
    receivers = parse_receivers("all")
    first = predict(fs, receivers, domain=DOMAIN)
    keys = [p.key for p in first]
    rows = [(p.key, p.owner, p.likelihood) for p in first]
    assert len(rows) == len(set(rows))
    for p in first:
        assert len(p.caused_by) == len(set(p.caused_by))
        assert len(p.subjects) == len(set(p.subjects))
    rng = random.Random(7)
    for _ in range(5):
        shuffled = fs[:]
        rng.shuffle(shuffled)
        again = predict(shuffled, receivers, domain=DOMAIN)
        assert [p.key for p in again] == keys
    # One row per owner: the address holder fixes a missing PTR, the zone's admin a forward mismatch.
    (p,) = [p for p in first if p.key == "gmail.ptr-missing" and p.owner == Owner.IP_OWNER]
    assert p.subjects[:1] == ("192.0.2.25",) and "192.0.2.26" in p.subjects
    assert p.caused_by == ("ptr.missing", "ptr.name_invalid")
    (q,) = [p for p in first if p.key == "gmail.ptr-missing" and p.owner == Owner.DNS_ADMIN]
    assert q.caused_by == ("ptr.forward_mismatch", "ptr.forward_missing") and q.reply == p.reply
    assert predict(fs, receivers, domain=DOMAIN) == first


def test_caused_by_keeps_input_order():
    fs = [finding("ptr.forward_mismatch"), finding("ptr.forward_missing")]
    (p,) = [p for p in predict(fs, ["gmail"], domain=DOMAIN) if p.code == 550]
    assert p.caused_by == ("ptr.forward_mismatch", "ptr.forward_missing")
    (p,) = [p for p in predict(fs[::-1], ["gmail"], domain=DOMAIN) if p.code == 550]
    assert p.caused_by == ("ptr.forward_missing", "ptr.forward_mismatch")


def test_sorted_by_direction_system_status():
    cat = load()
    preds = predict([finding(f) for f in sorted(DELIVERY_CONSEQUENCE)], parse_receivers("all"), domain=DOMAIN)
    order = {"inbound": 0, "outbound": 1, "internal": 2}
    keys = [
        (order[p.direction.value], cat.system_order(p.system), catalog_mod.status_key(p.status))
        for p in preds
    ]
    assert keys == sorted(keys)
    assert preds[0].direction == Direction.INBOUND and preds[-1].direction == Direction.OUTBOUND


def test_inconclusive_lookup_failures_predict_deferrals():
    f = finding("mx.lookup_failed")
    assert f.inconclusive
    keys = {p.key for p in predict([f], parse_receivers(None), domain=DOMAIN)}
    assert {"postfix.dns-try-again", "exchange.dns-query-failed", "exchange.queue-expired"} <= keys


def test_info_findings_are_skipped():
    f = finding("ptr.missing", severity=Severity.INFO)
    assert predict([f], parse_receivers("all"), domain=DOMAIN) == ()
    assert predict([finding("mx.records", severity=Severity.INFO)], parse_receivers("all"), domain=DOMAIN) == ()


def test_info_findings_predict_when_entry_opts_in():
    cat = catalog_with(entry_dict(predict_at_info=True))
    f = finding("ptr.missing", severity=Severity.INFO)
    assert [p.key for p in predict([f], ["generic"], domain=DOMAIN, catalog=cat)] == ["generic.x"]


def test_runner_findings_predict_nothing():
    fs = [finding("mx.crashed"), finding("ptr.timeout")]
    assert predict(fs, parse_receivers("all"), domain=DOMAIN) == ()


def test_ipv6_only_entry_needs_an_ipv6_address():
    v4 = finding("ptr.missing")
    v6 = finding("ptr.missing", "2001:db8::25", ip="2001:db8::25")
    assert "exchange-online.ipv6-ptr-missing" not in {p.key for p in predict([v4], ["exchange-online"], domain=DOMAIN)}
    (p,) = [p for p in predict([v4, v6], ["exchange-online"], domain=DOMAIN) if p.system == "exchange-online"]
    assert p.reply == "550 5.7.25 Access denied, the sending IPv6 address [2001:db8::25] must have a reverse DNS record"
    assert p.caused_by == ("ptr.missing",) and p.subjects == ("2001:db8::25",)


def test_generic_fallback_only_where_no_selected_system_covers():
    # Only exchange-online selected, IPv4 without PTR: Exchange Online documents
    # nothing for IPv4, so the generic entry stands in.
    keys = {p.key for p in predict([finding("ptr.missing")], ["exchange-online"], domain=DOMAIN)}
    assert keys == {"generic.reverse-dns-failed"}
    # Postfix covers the outbound side of a null MX but not the inbound side.
    keys = {p.key for p in predict([finding("mx.null")], ["postfix"], domain=DOMAIN)}
    assert keys == {"postfix.sender-null-mx", "generic.null-mx-recipient"}
    # Selecting generic explicitly always includes it.
    keys = {p.key for p in predict([finding("mx.null")], ["postfix", "generic"], domain=DOMAIN)}
    assert "generic.null-mx-sender" in keys


def test_catalog_keys_carried_by_a_finding_are_honoured():
    f = Finding(id="thirdparty.thing", severity=Severity.ERROR, subject="192.0.2.9", summary="", fix="",
                owner=Owner.MAIL_ADMIN, direction=Direction.OUTBOUND, ndr=("gmail.ptr-missing", "no.such-key"))
    (p,) = predict([f], ["gmail"], domain=DOMAIN)
    assert p.key == "gmail.ptr-missing" and "[192.0.2.9]" in p.reply


def test_host_and_address_come_from_args_or_subject():
    f = finding("mx.target_lookup_failed")
    (p,) = [p for p in predict([f], ["postfix"], domain=DOMAIN)]
    assert p.reply == ("4.4.3 Host or domain name not found. Name service error for "
                       "name=mx1.example.test type=A: Host not found, try again")
    g = finding("mx.no_usable_host", DOMAIN, host="mx1.example.test.", addresses="10.0.0.1, 10.0.0.2",
                reason="unreachable")
    by_key = {p.key: p for p in predict([g], ["postfix"], domain=DOMAIN)}
    assert by_key["postfix.connect-timeout"].reply == (
        "4.4.1 connect to mx1.example.test[10.0.0.1]:25: Connection timed out")
    # Without them a readable stand-in appears, never a bare template field.
    bare = finding("mx.no_usable_host", DOMAIN, reason="unreachable")
    by_key = {p.key: p for p in predict([bare], ["postfix"], domain=DOMAIN)}
    assert by_key["postfix.connect-timeout"].reply == (
        "4.4.1 connect to the mail host[its address]:25: Connection timed out")


def test_known_findings_match_the_registry():
    # Strict for every catalog-covered check that is registered; a check that
    # is still being written is left out until it registers.
    pytest.importorskip("dns")
    from deliverck import registry

    specs = registry.finding_specs()
    registered = set(registry.check_ids()) & set(CATALOG_CHECKS)
    assert {"mx", "ptr"} <= registered
    declared = {fid for fid in specs if fid.split(".")[0] in registered}
    known = {fid for fid in KNOWN_FINDINGS if fid.split(".")[0] in registered}
    assert declared == known
    for fid in declared:
        assert set(specs[fid].ndr) >= {e.key for e in load().by_finding(fid)}
    named = {fid for e in load().entries for fid in e.findings if fid.split(".")[0] in registered}
    assert named <= declared


def test_no_control_characters_from_hostile_args():
    f = finding("mx.no_usable_host", host="mx\x1b[31m.example.test\u202e", ip="10.0.0.1\r\n",
                reason="unreachable")
    g = finding("ptr.missing", "192.0.2.25\x07")
    preds = predict([f, g], parse_receivers("all"), domain=DOMAIN)
    assert preds
    for p in preds:
        assert p.reply.isprintable(), repr(p.reply)
        assert all(s.isprintable() for s in p.subjects)
    assert any("\\x1b[31m" in p.reply for p in preds)


def test_unknown_placeholders_stay_readable():
    from deliverck.ndr.predict import render

    assert render("a {ip} b {nope} {host}", {"ip": "192.0.2.1"}) == "a 192.0.2.1 b {nope} {host}"


# ------------------------------------------------------------ generated docs


def test_docs_are_generated_from_the_catalog():
    path = ROOT / "docs" / "ndr.md"
    assert path.read_text(encoding="utf-8") == docs.render_markdown(load()), (
        "docs/ndr.md is stale: regenerate with `python -m deliverck.ndr.docs > docs/ndr.md`")


def test_docs_list_every_entry():
    text = docs.render_markdown(load())
    for e in load().entries:
        assert f"### `{e.key}`" in text


def test_conditions_split_not_found_from_unreachable():
    def keys(reason):
        return {p.key for p in predict([finding("mx.no_usable_host", reason=reason)], ["postfix"], domain=DOMAIN)}

    assert "postfix.mx-host-not-found" in keys("not_found")
    assert "postfix.connect-timeout" not in keys("not_found")
    assert "postfix.connect-timeout" in keys("unreachable")
    assert "postfix.mx-host-not-found" not in keys("unreachable")
    assert keys("mixed") == keys("not_found") | keys("unreachable")


def test_condition_must_name_a_listed_finding():
    from deliverck.ndr.catalog import from_mapping

    bad = {"schema": 1, "system": [{"id": "x", "name": "X", "default": True}],
           "entry": [{"key": "x.a", "system": "x", "direction": "inbound", "code": 550, "status": "5.1.2",
                      "text": "t", "meaning": "m", "causes": ["c"], "owner": "dns_admin", "fix": "f",
                      "findings": ["mx.null"], "source": "s", "when": {"mx.other": {"reason": "y"}}}]}
    assert any("'when' names" in p for p in from_mapping(bad).problems())


def _keys(fid, receivers, **args):
    return {p.key for p in predict([finding(fid, **args)], receivers, domain=DOMAIN)}


def test_no_host_accepts_depends_on_the_reason():
    everyone = parse_receivers("all")
    refused = _keys("smtp.no_host_accepts", everyone, reason="refused")
    timeout = _keys("smtp.no_host_accepts", everyone, reason="timeout")
    rejected = _keys("smtp.no_host_accepts", everyone, reason="rejected")
    closed = _keys("smtp.no_host_accepts", everyone, reason="rejected", outcome="closed_before_greeting")
    mixed = _keys("smtp.no_host_accepts", everyone, reason="mixed")
    # A server that closes before greeting is not one that refuses in its greeting (issue 13).
    assert {"postfix.smtp-lost-connection-greeting", "generic.smtp-lost-connection"} <= closed
    assert not {"postfix.smtp-refused-to-talk", "generic.smtp-not-accepting"} & closed
    assert {"postfix.smtp-connect-refused", "exchange-online.smtp-connection-refused"} <= refused
    assert "postfix.smtp-connect-timeout" not in refused
    assert {"postfix.smtp-connect-timeout", "exchange-online.smtp-queue-expired"} <= timeout
    assert not {"postfix.smtp-connect-refused", "exchange-online.smtp-connection-refused"} & timeout
    assert {"postfix.smtp-refused-to-talk", "generic.smtp-not-accepting"} <= rejected
    assert not {"postfix.smtp-connect-refused", "postfix.smtp-connect-timeout",
                "exchange.smtp-primary-target-unreachable", "generic.smtp-no-answer"} & rejected
    # Whatever the reason, the message finally comes back.
    for keys in (refused, timeout, rejected):
        assert {"exchange-online.smtp-message-expired", "exchange.smtp-queue-expired"} <= keys
    assert mixed == refused | timeout | rejected
    # An unknown reason predicts only the reason-independent entries.
    assert _keys("smtp.no_host_accepts", everyone, reason="other") == refused & timeout & rejected


def test_no_host_accepts_renders_host_and_address():
    (p,) = [p for p in predict([finding("smtp.no_host_accepts", reason="refused")], ["postfix"], domain=DOMAIN)]
    assert p.reply == "4.4.1 connect to mx1.example.test[192.0.2.25]:25: Connection refused"
    assert p.direction == Direction.INBOUND and p.owner == finding("smtp.no_host_accepts").owner


def test_localhost_helo_is_non_fqdn_only_when_bare():
    assert "postfix.helo-non-fqdn" in _keys("helo.localhost", ["postfix"], helo="localhost")
    assert "postfix.helo-non-fqdn" in _keys("helo.localhost", ["postfix"], helo="LOCALHOST")
    keys = _keys("helo.localhost", ["postfix"], helo="localhost.localdomain")
    assert "postfix.helo-non-fqdn" not in keys and "postfix.helo-unknown" in keys
    assert "postfix.helo-non-fqdn" in _keys("helo.not_fqdn", ["postfix"])


def test_helo_findings_are_outbound_and_name_no_host():
    # {host} would be filled from ptr_name, not from the HELO name.
    cat = load()
    for fid in sorted(f for f in DELIVERY_CONSEQUENCE | NON_DEFAULT_ONLY if f.startswith("helo.")):
        for e in cat.by_finding(fid):
            assert e.direction == Direction.OUTBOUND, e.key
            assert "{host}" not in e.text, e.key


def test_bad_helo_only_from_the_apex():
    assert "exchange-online.bad-helo" in _keys("helo.is_domain_apex", ["exchange-online"])
    for fid in ("helo.not_fqdn", "helo.invalid", "helo.unresolvable"):
        assert "exchange-online.bad-helo" not in _keys(fid, ["exchange-online"])


@pytest.mark.parametrize("fid", sorted(TLS_REQUIRED))
def test_tls_entries_say_only_tls_requiring_senders_fail(fid):
    for e in load().by_finding(fid):
        if e.direction == Direction.OUTBOUND:
            # Gmail's "not sent over TLS": a guess about the server's own sending, never certain.
            assert e.system == "gmail" and e.likelihood == "may" and "sends its own mail without TLS" in e.condition, e.key
            continue
        assert e.direction == Direction.INBOUND, e.key
        assert any("only happens for senders that require TLS" in c and "fall back to plain text" in c
                   for c in e.causes), e.key


def test_exchange_online_tls_deferral_comes_before_the_final_ndr():
    for fid, detail in (("starttls.not_offered", "321"), ("starttls.cert_expired", "322"),
                        ("starttls.cert_name_mismatch", "325")):
        preds = [p for p in predict([finding(fid)], ["exchange-online"], domain=DOMAIN)]
        assert [p.status for p in preds] == [f"4.7.{detail}", f"5.7.{detail}"], fid
        assert preds[0].reply == preds[1].reply.replace("5.7.", "4.7.", 1)


def test_no_ehlo_predicts_what_a_missing_starttls_predicts():
    everyone = parse_receivers("all")
    assert _keys("smtp.no_ehlo", everyone) == _keys("starttls.not_offered", everyone)


def test_open_relay_predicts_blocklist_rejections_of_outbound_mail():
    preds = predict([finding("relay.open")], parse_receivers("all"), domain=DOMAIN)
    assert preds and all(p.direction == Direction.OUTBOUND for p in preds)
    by_key = {p.key: p for p in preds}
    assert by_key["exchange-online.banned-sending-ip"].reply == (
        "550 5.7.606 Access denied, banned sending IP [192.0.2.25]")
    assert by_key["other.dnsbl-sorbs"].reply == "554 5.7.1 Rejected 192.0.2.25 found in dnsbl.sorbs.net"
    assert {"postfix.rbl-blocked", "sina.denied-ip", "generic.dnsbl-listed"} <= set(by_key)


def test_expiring_certificate_and_tarpit_predict_nothing_yet():
    for fid in ("starttls.cert_expiring", "smtp.tarpit", "smtp.refused", "smtp.greeting_rejected"):
        assert predict([finding(fid, severity=Severity.WARNING)], parse_receivers("all"), domain=DOMAIN) == ()
