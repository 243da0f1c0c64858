"""Generate docs/ndr.md, the NDR reference, from the catalog.

    python -m deliverck.ndr.docs > docs/ndr.md
"""

from __future__ import annotations

import sys

from deliverck.model import Direction, Owner
from deliverck.ndr.catalog import Catalog, CatalogEntry, load, status_key

_DIRECTION_WORDS = {
    Direction.INBOUND: "inbound (mail to the audited domain fails; the sender's system writes the NDR)",
    Direction.OUTBOUND: "outbound (mail from the audited server is rejected by the receiver)",
    Direction.INTERNAL: "internal (mail between the organisation's own servers)",
}
_OWNER_WORDS = {
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


def _entry(e: CatalogEntry) -> list[str]:
    code = str(e.code) if e.code else "none"
    status = e.status or "none"
    head = f"### {_code(e.key)}"
    lines = [
        head,
        "",
        f"- Reply: {_code(e.reply)}",
        f"- Code: {code}; status: {status}; direction: "
        f"{_DIRECTION_WORDS.get(e.direction, _value(e.direction))}"  # type: ignore[call-overload]
        + (f"; only for {e.family} senders" if e.family else ""),
        f"- Meaning: {e.meaning}",
        "- Causes:",
        *[f"  - {c}" for c in e.causes],
        f"- Owner: {_OWNER_WORDS.get(e.owner, _value(e.owner))}",  # type: ignore[call-overload]
        f"- Fix: {e.fix}",
        "- Findings: " + (", ".join(_code(f) + _condition(e, f) for f in e.findings) if e.findings
                          else "none yet (reference entry; no current check predicts it)"),
        f"- Source: {e.source}",
        "",
    ]
    return lines


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
        "  `address(es)`; `host`, `ptr_name`; else its subject); without one the reply",
        "  shows \"(address)\" or \"(mail host)\".",
        "- Predictions use the selected receivers (`--receivers`, default:",
        f"  {', '.join(catalog.default_receivers())}). Where none of them documents a",
        "  behaviour for a finding, the generic RFC 3463 entries stand in.",
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


def main() -> int:
    sys.stdout.write(render_markdown(load()))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
