"""The data of the HTML report's pictures, prepared so the template only draws.

Each picture reads structured facts the engine records (finding args `tree`,
`chain`, `hosts`; `report.timings`) and is optional: when the data is absent
or not of the expected shape the picture is left out, never an error, because
a report from an older run or a third-party check must still render.  Every
picture is bounded (nodes, links, hosts, steps) so a hostile or huge record
cannot make the page unusable, and each says in words what its colours say.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from typing import Any

from deliverck.model import Finding, Report, Severity

SPF_LIMIT = 10              # RFC 7208 section 4.6.4: at most 10 DNS-querying terms per check_host()
MAX_TREE_NODES = 300
MAX_TREE_DEPTH = 12
MAX_CHAIN_LINKS = 40
MAX_HOSTS = 30
MAX_ADDRESSES = 20          # per host
MAX_CHAINS = 12
MAX_STEPS = 300             # rows of the waterfall; the rest are counted, not drawn
AXIS = 1000                 # SVG user units across the time axis
_KNOWN_DNSSEC = {"secure", "insecure", "bogus", "indeterminate"}


def _findings(report: Report) -> list[tuple[str, Finding]]:
    return [(c.id, f) for c in report.checks for f in c.findings]


def _arg(report: Report, key: str, kind: type | tuple[type, ...]) -> tuple[Finding, Any] | None:
    for _cid, f in _findings(report):
        v = f.args.get(key) if isinstance(f.args, Mapping) else None
        if isinstance(v, kind) and v:
            return f, v
    return None


def _int(v: Any, default: int = 0) -> int:
    return v if isinstance(v, int) and not isinstance(v, bool) else default


# --- SPF include tree ---------------------------------------------------------------------------------

def _spf_nodes(node: Any, depth: int, state: dict) -> dict | None:
    """One node, with its own cost and its subtree's.  The engine marks the include that spent lookup
    limit + 1 (`over`, in evaluation order, checks/spf.py); for a tree without marks the node whose
    depth-first running count first passes the limit is marked instead."""
    if not isinstance(node, Mapping) or state["nodes"] >= MAX_TREE_NODES:
        if isinstance(node, Mapping):
            state["cut"] += 1
        return None
    state["nodes"] += 1
    cost = max(_int(node.get("lookups")), 0)
    before = state["total"]
    state["total"] += cost
    if "over" in node:
        state["engine_marks"] = True
    over = before <= state["limit"] < state["total"] and not state["marked"]
    state["marked"] = state["marked"] or over
    children = []
    kids = node.get("children")
    if isinstance(kids, (list, tuple)):
        if depth >= MAX_TREE_DEPTH:
            state["cut"] += len(kids)
        else:
            children = [c for c in (_spf_nodes(k, depth + 1, state) for k in kids) if c is not None]
    subtotal = node.get("total")
    return {"domain": str(node.get("domain", "")), "term": str(node.get("term") or node.get("mechanism") or ""),
            "cost": cost, "subtotal": _int(subtotal, cost + sum(c["subtotal"] for c in children)),
            "over": over, "engine_over": node.get("over") is True, "over_term": str(node.get("over_term") or ""),
            "error": str(node.get("error") or ""), "children": children}


def _use_engine_marks(node: dict, engine: bool) -> None:
    if engine:
        node["over"] = node["engine_over"]
    for c in node["children"]:
        _use_engine_marks(c, engine)


def spf_tree(report: Report, anchors: dict[int, str]) -> dict | None:
    hit = _arg(report, "tree", Mapping)
    if hit is None:
        return None
    f, tree = hit
    root = tree.get("root") if isinstance(tree.get("root"), Mapping) else tree
    limit = _int(f.args.get("limit"), _int(tree.get("limit"), SPF_LIMIT)) or SPF_LIMIT
    state = {"total": 0, "limit": limit, "marked": False, "nodes": 0, "cut": 0, "engine_marks": False}
    top = _spf_nodes(root, 0, state)
    if top is None or not top["domain"]:
        return None
    _use_engine_marks(top, bool(state["engine_marks"]))
    total = next((_int(v) for v in (f.args.get("lookups"), f.args.get("total"), top["subtotal"])
                  if isinstance(v, int) and not isinstance(v, bool)), state["total"])
    used = min(total, limit)
    cells = ["used"] * used + ["free"] * (limit - used) + ["over"] * max(total - limit, 0)
    return {"root": top, "total": total, "limit": limit, "over": total > limit, "cells": cells[:limit * 4],
            "cut": state["cut"], "anchor": anchors.get(id(f), ""), "finding": f.id}


# --- DNSSEC chain -------------------------------------------------------------------------------------

def _chain(f: Finding, chain: Any, anchors: dict[int, str]) -> dict | None:
    links = []
    for link in list(chain)[:MAX_CHAIN_LINKS]:
        if not isinstance(link, Mapping):
            continue
        status = str(link.get("status", "")).lower() or "indeterminate"
        zone = str(link.get("zone", ""))
        rrset = link.get("kind") == "rrset"
        links.append({"zone": zone if zone not in ("", ".") else ". (root)", "status": status,
                      "known": status in _KNOWN_DNSSEC, "what": str(link.get("rdtype") or ""), "rrset": rrset,
                      "why": str(link.get("why") or link.get("reason") or ""),
                      "ds": str(link.get("ds") or ""), "dnskey": str(link.get("dnskey") or "")})
    if not links:
        return None
    last = links[-1]
    title = f"{last['zone']} {last['what']}" if last["rrset"] else last["zone"]
    return {"links": links, "title": title, "cut": max(len(chain) - MAX_CHAIN_LINKS, 0),
            "anchor": anchors.get(id(f), ""), "finding": f.id}


def dnssec_chains(report: Report, anchors: dict[int, str]) -> list[dict]:
    """Every chain the dnssec check recorded (one per record it validated: the MX set, each host's
    addresses), in report order, at most MAX_CHAINS."""
    out: list[dict] = []
    for _cid, f in _findings(report):
        v = f.args.get("chain") if isinstance(f.args, Mapping) else None
        if isinstance(v, (list, tuple)) and len(out) < MAX_CHAINS:
            c = _chain(f, v, anchors)
            if c is not None:
                out.append(c)
    return out


# --- MX hosts, addresses, PTR and TLS -----------------------------------------------------------------

def _about(f: Finding, ip: str) -> bool:
    a = f.args if isinstance(f.args, Mapping) else {}
    return f.subject == ip or a.get("ip") == ip or a.get("address") == ip


def _joined(report: Report, anchors: dict[int, str], checks: tuple[str, ...], ip: str) -> list[dict]:
    out = []
    for cid, f in _findings(report):
        if cid in checks and _about(f, ip):
            sev = "could not check" if f.inconclusive else f.severity.to_text()
            out.append({"check": cid, "id": f.id, "severity": sev, "ok": f.severity == Severity.INFO
                        and not f.inconclusive, "summary": f.summary, "href": "#" + anchors.get(id(f), "")})
    out.sort(key=lambda j: (j["ok"], j["check"]))
    return out


def _address(a: Any) -> str:
    if isinstance(a, Mapping):
        return str(a.get("ip") or a.get("address") or "")
    return str(a) if isinstance(a, str) else ""


def mx_hosts(report: Report, anchors: dict[int, str]) -> dict | None:
    hit = next(((f, v) for _c, f in _findings(report) if isinstance(f.args, Mapping)
                for v in [f.args.get("hosts")] if isinstance(v, (list, tuple)) and v
                and all(isinstance(h, Mapping) for h in v)), None)       # mx's host list, not a list of names
    if hit is None:
        return None
    f, hosts = hit
    out = []
    for h in list(hosts)[:MAX_HOSTS]:
        if not isinstance(h, Mapping) or not (h.get("host") or h.get("name")):
            continue
        raw = h.get("addresses")
        addrs = [x for x in (_address(a) for a in (raw if isinstance(raw, (list, tuple)) else [])[:MAX_ADDRESSES]) if x]
        audited = h.get("audited")
        probed = set(audited) if isinstance(audited, (list, tuple)) else set(addrs)
        out.append({"host": str(h.get("host") or h.get("name") or ""), "preference": h.get("preference", ""),
                    "cname": str(h.get("cname") or ""), "error": str(h.get("error") or ""),
                    "addresses": [{"ip": ip, "probed": ip in probed, "ptr": _joined(report, anchors, ("ptr",), ip),
                                   "tls": _joined(report, anchors, ("starttls", "dane"), ip)} for ip in addrs]})
    if not out:
        return None
    return {"domain": report.target.name, "hosts": out, "cut": max(len(hosts) - MAX_HOSTS, 0),
            "anchor": anchors.get(id(f), "")}


# --- timing waterfall ---------------------------------------------------------------------------------

def _field(step: Any, name: str) -> Any:
    return step.get(name) if isinstance(step, Mapping) else getattr(step, name, None)


def _nice_ticks(total: float) -> list[dict]:
    if total <= 0:
        return []
    raw = total / 5
    mag = 10 ** math.floor(math.log10(raw))
    step = next(m * mag for m in (1, 2, 5, 10) if m * mag >= raw)
    ticks, t = [], 0.0
    while t <= total + 1e-9:
        ticks.append({"x": round(t / total * AXIS, 1), "pct": round(t / total * 100, 2), "label": f"{t:g} ms"})
        t += step
    return ticks


def waterfall(report: Report) -> dict | None:
    steps: list[dict[str, Any]] = []
    for s in getattr(report, "timings", None) or ():
        start, end = _field(s, "start_ms"), _field(s, "end_ms")
        if not isinstance(start, (int, float)) or not isinstance(end, (int, float)) or end < start:
            continue
        steps.append({"kind": str(_field(s, "kind") or ""), "label": str(_field(s, "label") or ""),
                      "check": str(_field(s, "check") or ""), "start": float(start), "end": float(end),
                      "critical": bool(_field(s, "critical"))})
    if not steps:
        return None
    steps.sort(key=lambda s: (s["start"], s["end"]))
    shown = steps
    if len(steps) > MAX_STEPS:           # keep the critical path whole, then the earliest of the rest
        crit = [s for s in steps if s["critical"]]
        rest = [s for s in steps if not s["critical"]][: max(MAX_STEPS - len(crit), 0)]
        shown = sorted(crit + rest, key=lambda s: (s["start"], s["end"]))
    total = max(s["end"] for s in steps) or 1.0
    for s in shown:
        s["x"] = round(s["start"] / total * AXIS, 1)
        s["w"] = max(round((s["end"] - s["start"]) / total * AXIS, 1), 2.0)
        s["ms"] = round(s["end"] - s["start"], 1)
    dropped = _int(getattr(report, "timings_dropped", 0))
    return {"steps": shown, "cut": len(steps) - len(shown), "dropped": dropped, "total": round(total, 1), "axis": AXIS,
            "ticks": _nice_ticks(total), "critical": sum(1 for s in steps if s["critical"]),
            "kinds": sorted({s["kind"] for s in shown})}


def pictures(report: Report, anchors: dict[int, str]) -> dict:
    return {"spf": spf_tree(report, anchors), "dnssec": dnssec_chains(report, anchors),
            "mx": mx_hosts(report, anchors), "waterfall": waterfall(report)}
