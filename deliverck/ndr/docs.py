"""Generate docs/ndr.md, the NDR reference, from the catalog.

    python -m deliverck.ndr.docs > docs/ndr.md
"""

from __future__ import annotations

import sys

from deliverck.model import Direction, Owner
from deliverck.ndr import categories
from deliverck.ndr.catalog import Catalog, CatalogEntry, load, status_key

_DIRECTION_WORDS: dict[Direction | str, str] = {
    Direction.INBOUND: "inbound (mail to the audited domain fails; the sender's system writes the NDR)",
    Direction.OUTBOUND: "outbound (mail from the audited server is rejected by the receiver)",
    Direction.INTERNAL: "internal (mail between the organisation's own servers)",
}
_OWNER_WORDS: dict[Owner | str, str] = {
    Owner.MAIL_ADMIN: "mail administrator",
    Owner.DNS_ADMIN: "DNS administrator",
    Owner.IP_OWNER: "address holder (ISP / hosting provider: reverse DNS)",
    Owner.NETWORK: "network team",
    Owner.RECEIVER: "receiving system's administrator",
    Owner.NOBODY: "nobody",
}


def _code(text: str) -> str:
    """Inline code span that survives backticks in the text."""
    fence = "`"
    while fence in text:
        fence += "`"
    pad = " " if text.startswith("`") or text.endswith("`") else ""
    return f"{fence}{pad}{text}{pad}{fence}"


def _cell(text: str) -> str:
    return text.replace("|", "\\|")


def _value(x: object) -> str:
    return getattr(x, "value", str(x))


def _category(category_id: str) -> str:
    c = categories.BY_ID.get(category_id)
    return f"{_code(category_id)} ({c.title})" if c else _code(category_id or "none")


def _status_words(e: CatalogEntry) -> str:
    if e.status_range_end:
        return f"{e.status} to {e.status_range_end} (one documented range)"
    if e.status:
        return e.status
    if e.text_status:
        return f"none after the code; {e.text_status} in the text"
    return "none"


def _anchor(key: str) -> str:
    """The heading anchor GitHub gives an entry heading (lowercase, punctuation dropped)."""
    return "".join(ch for ch in key.lower() if ch.isalnum() or ch in "-_ ").replace(" ", "-")


def _entry(e: CatalogEntry) -> list[str]:
    code = str(e.code) if e.code else "none"
    head = f"### {_code(e.key)}"
    lines = [
        head,
        "",
        f"- Reply: {_code(e.reply)}",
        f"- Code: {code}; status: {_status_words(e)}; direction: "
        f"{_DIRECTION_WORDS.get(e.direction, _value(e.direction))}"
        + (f"; only for {e.family} senders" if e.family else ""),
        f"- Category: {_category(e.category)}",
        f"- Meaning: {e.meaning}",
        "- Causes:",
        *[f"  - {c}" for c in e.causes],
        f"- Owner: {_OWNER_WORDS.get(e.owner, _value(e.owner))}",
        f"- Fix: {e.fix}",
        "- Findings: " + (", ".join(_code(f) + _condition(e, f) for f in e.findings) if e.findings
                          else "none (explain-only entry: no deliverck finding predicts it)"),
        *_likelihood(e),
        f"- Source: {e.source}",
        "",
    ]
    return lines


def _likelihood(e: CatalogEntry) -> list[str]:
    if not e.findings:
        return []
    text = {"will": "will (the rule always fires on this evidence)", "may": "may"}.get(e.likelihood, e.likelihood)
    line = f"- Likelihood: {text}"
    exceptions = [f"{_code(f)}: {v}" for f, v in e.likelihood_by_finding.items()]
    if exceptions:
        line += f" (except {', '.join(exceptions)})"
    if e.profile == "bulk":
        line += ("; documented for bulk senders (5,000+ messages a day): this likelihood holds under "
                 "`--sender-profile bulk`, for other senders it is *may*")
    if e.condition:
        line += f"; may depends on: {e.condition}"
    return [line]


def _condition(e, finding_id: str) -> str:
    cond = e.when.get(finding_id)
    if not cond:
        return ""
    parts = [f"{name} is {' or '.join(_code(v) for v in values)}" for name, values in cond.items()]
    return f" (when {', '.join(parts)})"


def render_markdown(catalog: Catalog) -> str:
    defaults = set(catalog.default_receivers())
    fallbacks = set(catalog.fallback_receivers())
    lines = [
        "# NDR reference",
        "",
        "<!-- Generated from deliverck/ndr/catalog.toml; do not edit.",
        "     Regenerate with: python -m deliverck.ndr.docs > docs/ndr.md -->",
        "",
        "Every bounce (non-delivery report) deliverck can predict, per receiver system.",
        "Each entry names the findings that predict it; that list is the only link",
        "from a finding to an NDR.",
        "",
        "- *Inbound* entries describe mail **to** the audited domain: the NDR is written by",
        "  the sending system (Exchange Online, Postfix, ...) that could not deliver.",
        "- *Outbound* entries describe mail **from** the audited server: the reply comes",
        "  from the receiving system that refused it.",
        "- Code \"none\" means no SMTP reply code appears: the sending system wrote the NDR",
        "  itself (a DNS failure, an expired queue), or the source records none.",
        "- Placeholders in replies: `{ip}` sending or MX address, `{host}` MX or PTR host",
        "  name, `{domain}` audited domain, `{recipient}` postmaster of the domain,",
        "  `{sender}` the envelope sender (`--sender`, else the domain's postmaster).",
        "  `{ip}` and `{host}` come from the first causing finding (arguments `ip`,",
        "  `address(es)`; `host`, `ptr_name`; else its subject); `{helo}`, `{zone}`",
        "  (a block list) and `{greeting}` (a server's greeting reply) from its argument",
        "  of that name. Where no finding can know a value, the entry's example stands",
        "  in (the block list most receivers query), else a description in words.",
        "- Likelihood: *will* when the receiver's documented rule always fires on the",
        "  finding's evidence; *may* when it also depends on what deliverck cannot see",
        "  (volume, reputation, content, the receiver's own configuration), said in",
        "  words. A *will* permanent (5xx) reply from a receiver the report is for makes",
        "  its finding at least `error`. A prediction from a finding deliverck could not",
        "  settle (a lookup that failed for it) is always *may*.",
        "- Profile *bulk*: the receiver documents the rule for bulk senders only (5,000 or",
        "  more messages a day to its users from one From domain: Gmail and Yahoo since",
        "  2024, Outlook.com since May 2025). The likelihood shown holds for a bulk sender",
        "  (`--sender-profile bulk`); for any other sender the prediction is *may*, with",
        "  the volume condition in words.",
        "- A prediction names the owner of the finding that causes it.",
        "- Predictions use the selected receivers (`--receivers`, default:",
        f"  {', '.join(catalog.default_receivers())}). Where none of them documents a",
        "  behaviour for a finding, the generic RFC 3463 entries stand in.",
        "- Entries without findings are explain-only: knowledge of a reply no deliverck",
        "  finding predicts (a typo in an address, a quota, a recipient's own rules).",
        "- Each entry has a category (the kind of cause, shared with `deliverck explain`);",
        "  see the [index by category](#index-by-category). To look up a code from a",
        "  bounce, use the [index by status code](#index-by-status-code).",
        "",
        "## Receiver systems",
        "",
        "| id | name | in default set | description |",
        "|---|---|---|---|",
    ]
    for s in catalog.systems:
        role = "yes" if s.id in defaults else "fallback" if s.id in fallbacks else "no"
        lines.append(f"| {_code(s.id)} | {_cell(s.name)} | {role} | {_cell(s.description)} |")
    lines.append("")
    for s in catalog.systems:
        entries = sorted(
            catalog.entries_for(s.id),
            key=lambda e: (_value(e.direction), status_key(e.status), e.code, e.key),
        )
        if not entries:
            continue
        lines += [f"## {s.name} ({_code(s.id)})", ""]
        for e in entries:
            lines += _entry(e)
    lines += _status_index(catalog)
    lines += _category_index(catalog)
    lines += [
        "## Findings index",
        "",
        "| finding | predicted NDRs |",
        "|---|---|",
    ]
    for fid in catalog.finding_ids():
        keys = ", ".join(_code(e.key) for e in catalog.by_finding(fid))
        lines.append(f"| {_code(fid)} | {keys} |")
    lines.append("")
    return "\n".join(lines)


def _link(e: CatalogEntry) -> str:
    return f"[{_code(e.key)}](#{_anchor(e.key)})"


def _status_index(catalog: Catalog) -> list[str]:
    lines = [
        "## Index by status code",
        "",
        "Every enhanced status code in the catalog, with the entries of every system that",
        "uses it. A range (Exchange Online's `5.7.606-649`) is listed once; look up a code",
        "inside it under the range. Entries whose source gives no enhanced status are",
        "listed by reply code below.",
        "",
        "| status | reply codes | entries |",
        "|---|---|---|",
    ]
    for status in catalog.statuses():
        entries = [e for e in catalog.entries
                   if (e.status_label or e.text_status) == status]
        entries.sort(key=lambda e: (catalog.system_order(e.system), e.key))
        codes = ", ".join(dict.fromkeys(str(e.code) if e.code else "none" for e in entries))
        lines.append(f"| {status} | {codes} | {', '.join(_link(e) for e in entries)} |")
    lines.append("")
    bare = [e for e in catalog.entries if not e.status and not e.text_status]
    if bare:
        lines += [
            "Without an enhanced status:",
            "",
            "| reply code | entries |",
            "|---|---|",
        ]
        for code in sorted({e.code for e in bare}, key=lambda c: (c == 0, c)):
            entries = sorted((e for e in bare if e.code == code),
                             key=lambda e: (catalog.system_order(e.system), e.key))
            lines.append(f"| {code or 'none'} | {', '.join(_link(e) for e in entries)} |")
        lines.append("")
    return lines


def _category_index(catalog: Catalog) -> list[str]:
    lines = [
        "## Index by category",
        "",
        "| category | meaning | entries |",
        "|---|---|---|",
    ]
    for c in categories.CATEGORIES:
        entries = sorted((e for e in catalog.entries if e.category == c.id),
                         key=lambda e: (catalog.system_order(e.system), status_key(e.status), e.key))
        shown = ", ".join(_link(e) for e in entries) or "none"
        lines.append(f"| {_code(c.id)} ({_cell(c.title)}) | {_cell(c.meaning)} | {shown} |")
    lines.append("")
    return lines


def main() -> int:
    sys.stdout.write(render_markdown(load()))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
