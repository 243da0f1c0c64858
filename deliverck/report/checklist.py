"""`deliverck checks`: every check and every finding it can emit.

The markdown form is docs/checks.md (a test keeps the file in step with
the code), so the reference is generated from the declarations, never
written twice.
"""

from __future__ import annotations

import json

from tabulate import tabulate

from deliverck.registry import all_checks, message_checks


def checks_data() -> list[dict]:
    out = []
    for c in all_checks() + message_checks():
        out.append({
            "id": c.id,
            "title": c.spec.title,
            "cause": c.spec.cause,
            "module": c.module,
            # Which commands run it: the audit's checks, or the message checks of `message` / `listen`.
            "judges": "message" if c.module.startswith("deliverck.message.") else "target",
            "findings": [
                {
                    "id": f.id,
                    "severity": f.severity.to_text(),
                    "inconclusive": f.inconclusive,
                    "direction": f.direction.value,
                    "owner": f.owner.value,
                    "summary": f.summary,
                    "fix": f.fix,
                    "ndr": list(f.ndr),
                    "refs": list(f.refs),
                }
                for f in c.spec.findings
            ],
        })
    return out


def _sev(f: dict) -> str:
    return f"{f['severity']} (could not check)" if f["inconclusive"] else f["severity"]


def render_checks(fmt: str) -> str:
    data = checks_data()
    from deliverck.ndr.catalog import load

    catalog = {e.key: e for e in load().entries}

    def short(key: str) -> str:
        e = catalog.get(key)
        return f"{e.system} {e.status_label or e.code or '-'}" if e else key

    if fmt == "json":
        return json.dumps({"schema": "deliverck.checks/1", "checks": data}, indent=2) + "\n"
    if fmt == "markdown":
        return _markdown(data)
    lines = []
    for c in data:
        lines.append(f"{c['id']}: {c['title']} -- {c['cause']}")
        rows = [[f["id"], _sev(f), f["direction"], ", ".join(dict.fromkeys(short(k) for k in f["ndr"])) or "-"] for f in c["findings"]]
        lines.append(tabulate(rows, headers=["finding", "severity", "mail", "predicted NDRs"], tablefmt="simple",
                              maxcolwidths=[None, None, None, 70]))
        lines.append("")
    return "\n".join(lines)


def _cell(text: str) -> str:
    return text.replace("|", "\\|").replace("\n", " ")


def _markdown(data: list[dict]) -> str:
    from deliverck.ndr.catalog import load

    catalog = {e.key: e for e in load().entries}
    lines = [
        "# Check reference",
        "",
        "Generated from the checks' declarations by `deliverck checks --format markdown`;",
        "do not edit by hand (`make docs` regenerates it, and a test fails when it is stale).",
        "",
        "Finding ids are a public interface: they stay stable across releases.",
        "Severity is the default; users can override it per finding.",
        "A finding marked *could not check* means the check could not complete: the check's",
        "status becomes `error` and the run's verdict `incomplete` (exit 3) unless something failed.",
        "",
    ]
    first_message = next((c["id"] for c in data if c["judges"] == "message"), None)
    for c in data:
        if c["id"] == first_message:
            lines += ["# Message checks", "",
                      "`deliverck message` and `deliverck listen` run these on a real message (docs/message.md),",
                      "together with `ptr`, `dnsbl` and `helo` for the address and HELO name it came from.", ""]
        lines += [f"## `{c['id']}`: {c['title']}", "", c["cause"], ""]
        lines += ["| finding | severity | mail | owner | predicted NDRs |", "|---|---|---|---|---|"]
        for f in c["findings"]:
            ndrs = []
            for key in f["ndr"]:
                e = catalog.get(key)
                ndrs.append(f"{e.system} {e.code} {e.status_label}" if e else key)
            lines.append(
                f"| `{f['id']}` | {_sev(f)} | {f['direction']} | {f['owner']} | {_cell('; '.join(ndrs)) or '-'} |"
            )
        lines.append("")
        for f in c["findings"]:
            lines += [f"### `{f['id']}`", "", f"{_cell(f['summary'])}", "", f"Fix: {_cell(f['fix'])}", ""]
            if f["refs"]:
                lines += [f"References: {', '.join(f['refs'])}", ""]
    return "\n".join(lines).rstrip() + "\n"
