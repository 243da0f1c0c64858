"""deliverck.records holds the parsers of published mail records, and nothing that talks (issue 15).

tests/test_architecture.py keeps the layers in order; this file says what the
records layer may import at all, so that a parser that starts opening sockets
or reaching for the Context is caught by name.
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

RECORDS = Path(__file__).resolve().parent.parent / "deliverck" / "records"

# Of deliverck itself: the ground floor, input names, errors, bounded file reads, and two pure
# corners of net/, each with its reason.
ALLOWED = {
    "deliverck.records": "itself",
    "deliverck.text": "ground floor",
    "deliverck.model": "ground floor",
    "deliverck.target": "names: IDNA and the organizational domain (DMARC)",
    "deliverck.errors": "the exception roots",
    "deliverck.inputfile": "bounded reads of the extra DNSBL lists files",
    "deliverck.datacache": "the shipped lists file's parse, cached (issue 16)",
    "deliverck.net.dns": "the DnsAnswer/Outcome data the SPF evaluator and DKIM discovery interpret",
    "deliverck.net.tls": "name_matches (RFC 6125 wildcards), shared by DANE-TA and PKIX",
}
# Libraries that move bytes over a network: a records module has no use for them.
TALKERS = ("socket", "ssl", "http", "urllib.request", "httpx", "aiosmtplib", "smtplib", "asyncio.streams",
           "dns.resolver", "dns.asyncresolver", "dns.query", "dns.asyncquery")


def _within(name: str, prefix: str) -> bool:
    return name == prefix or name.startswith(prefix + ".")


def _imports(path: Path, root: Path = RECORDS) -> list[tuple[int, str]]:
    """Every import of `path` (a file under `root`, the records package) as an absolute module name."""
    parts = ("deliverck", root.name, *path.relative_to(root).with_suffix("").parts)
    package = ".".join(parts[:-1])
    out = []
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.Import):
            out += [(node.lineno, a.name) for a in node.names]
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                up = package.split(".")
                anchor = ".".join(up[:len(up) - node.level + 1])
                base = f"{anchor}.{base}" if base else anchor
            out += [(node.lineno, base)] + [(node.lineno, f"{base}.{a.name}") for a in node.names]
    return out


FILES = sorted(RECORDS.rglob("*.py"))


def test_the_records_package_exists_with_its_parsers():
    names = {str(p.relative_to(RECORDS)) for p in FILES}
    assert {"spf/record.py", "spf/evaluator.py", "dkim.py", "dmarc.py", "tags.py", "mtasts.py", "tlsa.py",
            "dnsbl.py"} <= names, names
    assert (RECORDS / "dnsbl-lists.toml").is_file()


@pytest.mark.parametrize("path", FILES, ids=lambda p: str(p.relative_to(RECORDS)))
def test_a_records_module_imports_only_what_it_may(path):
    wrong = []
    for line, name in _imports(path):
        if any(_within(name, t) for t in TALKERS):
            wrong.append(f"{path.name}:{line}: {name} (talks to the network)")
        elif _within(name, "deliverck") and name != "deliverck" and not any(_within(name, a) for a in ALLOWED):
            wrong.append(f"{path.name}:{line}: {name} (not a records dependency: see ALLOWED)")
    assert not wrong, "\n".join(wrong)


def test_the_reader_sees_relative_plain_and_local_imports(tmp_path):
    """The rule above is only as good as its reader."""
    fake = tmp_path / "records" / "spf" / "x.py"
    fake.parent.mkdir(parents=True)
    fake.write_text("import socket\nfrom . import trace\nfrom ..tags import parse\nfrom ... import context\n"
                    "def f():\n    from deliverck.net.smtp import x\n")
    got = {n for _, n in _imports(fake, tmp_path / "records")}
    assert {"socket", "deliverck.records.spf.trace", "deliverck.records.tags", "deliverck.context",
            "deliverck.net.smtp"} <= got, got
