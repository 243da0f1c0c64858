"""`deliverck explain` says "not a bounce" when it is not one (issue 13, section 3).

The corpus tests/not_bounces/ was written for this test: source files in several languages,
licence notices, configs (TOML, YAML, INI, JSON, .env, Postfix main.cf, nginx), pyproject-like
files whose versions look like status codes, README-like texts full of SPF/DKIM/Kerberos/DNS
words, ordinary mail, auto-replies, read receipts, success/relayed/expanded DSNs, a digest, a
newsletter and a shop notice full of "delivery", logs without a failure reply, a CSV of IP
addresses.  Every file must come out as `not_a_bounce` (no category), alone and in directory
triage, through the real CLI.  The labelled bounce corpus must keep every category."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
import tomllib
from collections import Counter
from pathlib import Path

import pytest
from conftest import ROOT, deliverck

from deliverck.explain.evidence import KINDS
from deliverck.ndr import categories

NOT_BOUNCES = ROOT / "tests" / "not_bounces"
BOUNCES = ROOT / "tests" / "bounces"
FILES = sorted(p for p in NOT_BOUNCES.iterdir() if p.is_file() and not p.name.startswith("."))
# Why some of them are not bounces: each kind of input has at least one file here.
KIND_OF = {
    "mailer.py": "source", "retry.go": "source", "smtp-client.js": "source", "queue.c": "source",
    "bounce_stats.rs": "source", "Deliver.java": "source", "deploy.sh": "source", "nginx.conf": "source",
    "pyproject.toml": "data", "Cargo.toml": "data", "package.json": "data", "docker-compose.yml": "data",
    "ci.yaml": "data", "settings.ini": "data", "relay.service": "data", "test-labels.toml": "data",
    "status-counts.json": "data", "relay-ips.csv": "data",
    "README.md": "document", "release-notes.html": "document", "dmarc-report.xml": "document",
    "LICENSE": "text", "COPYING.txt": "text", "README.txt": "text", "CHANGELOG.txt": "text", "rfc-notes.txt": "text",
    "main.cf": "text", "app.env": "text", "contacts.vcf": "text", "schema.sql": "text",
    "hello.eml": "message", "thread-reply.eml": "message", "digest.eml": "message", "newsletter.eml": "message",
    "order-shipped.eml": "message", "calendar-invite.eml": "message", "abuse-report.eml": "message",
    "fix-retry.patch": "message",
    "out-of-office.eml": "auto_reply", "vacation-de.eml": "auto_reply", "ticket-ack.eml": "auto_reply",
    "read-receipt.eml": "read_receipt", "read-receipt-deleted.eml": "read_receipt",
    "dsn-delivered.eml": "delivered", "dsn-relayed.eml": "delivered", "dsn-expanded.eml": "delivered",
    "maillog-sent.log": "log", "access.log": "log", "app.log": "log", "smtp-session.txt": "success_reply",
}


def _records(stdout: str) -> list[dict]:
    return [json.loads(x) for x in stdout.splitlines()]


def _assert_not_a_bounce(doc: dict) -> None:
    assert doc["schema"] == "deliverck.explain/1" and doc["error"] is None, doc["source"]
    assert doc["category"] == "not_a_bounce", (doc["source"], doc["category"], doc["results"][:1])
    assert doc["results"] == [] and doc["confidence"] == "low" and doc["exit_code"] == 1, doc["source"]
    assert doc["not_a_bounce"]["kind"] in KINDS and doc["not_a_bounce"]["reason"], doc["source"]
    assert doc["status"] is None and doc["reply"] is None and doc["recipient"] is None, doc["source"]


def test_corpus_is_big_and_varied():
    assert len(FILES) >= 30
    assert {p.name for p in FILES} == set(KIND_OF) | {"inbox.mbox"}
    assert set(KIND_OF.values()) == set(KINDS)


def _corpus_copy(d: Path) -> Path:
    """The corpus files alone (`make` byte-compiles tests/, leaving a __pycache__ beside mailer.py)."""
    d.mkdir(exist_ok=True)
    for p in FILES:
        shutil.copy(p, d / p.name)
    return d


def test_directory_triage_gives_no_category(tmp_path):
    """The whole directory through the CLI: one record per message, none with a category."""
    r = deliverck("explain", str(_corpus_copy(tmp_path / "not_bounces")), "--jsonl", timeout=120)
    assert "Traceback" not in r.stderr and r.stderr == ""
    docs = _records(r.stdout)
    assert len(docs) == len(FILES) + 2          # inbox.mbox holds three messages
    for doc in docs:
        _assert_not_a_bounce(doc)
        name = Path(doc["source"]).name
        if name in KIND_OF:
            assert doc["not_a_bounce"]["kind"] == KIND_OF[name], (name, doc["not_a_bounce"])
    assert r.returncode == 1                    # nothing in it was a bounce


@pytest.mark.slow
def test_each_file_alone_is_one_line_and_exit_1():
    """Every file named on its own, through the CLI's entry point (one process for all of them,
    a fresh CLI invocation per file): table = exactly one line, --json = no category, exit 1."""
    script = (
        "import contextlib, io, json, sys\n"
        "from deliverck.cli import main\n"
        "out = {}\n"
        "for path in sys.argv[1:]:\n"
        "    for fmt in ([], ['--json']):\n"
        "        so, se = io.StringIO(), io.StringIO()\n"
        "        with contextlib.redirect_stdout(so), contextlib.redirect_stderr(se):\n"
        "            try:\n"
        "                main(['explain', path, *fmt])\n"
        "                rc = 0\n"
        "            except SystemExit as e:\n"
        "                rc = e.code\n"
        "        out[path + ' ' + ' '.join(fmt)] = [rc, so.getvalue(), se.getvalue()]\n"
        "print(json.dumps(out))\n"
    )
    single = [str(p) for p in FILES if p.name != "inbox.mbox"]
    r = subprocess.run([sys.executable, "-c", script, *single], capture_output=True, text=True, timeout=300)
    assert r.returncode == 0, r.stderr[-2000:]
    got = json.loads(r.stdout)
    for path in single:
        rc, table, err = got[path + " "]
        assert rc == 1 and err == "", (path, rc, err)
        assert table.count("\n") == 1 and table.startswith(f"{path}: not a bounce (confidence low): "), (path, table)
        rc, doc, err = got[path + " --json"]
        assert rc == 1 and err == ""
        _assert_not_a_bounce(json.loads(doc))
    # an mbox of ordinary messages: one line per message, no category either
    r = deliverck("explain", str(NOT_BOUNCES / "inbox.mbox"))
    lines = [ln for ln in r.stdout.splitlines() if ln.strip()]
    assert r.returncode == 1 and len(lines) == 3 and all("not a bounce (confidence low)" in ln for ln in lines)


@pytest.mark.slow
def test_named_files_and_stdin_give_no_category(tmp_path):
    r = deliverck("explain", *(str(p) for p in FILES), "--jsonl", timeout=120)
    assert r.returncode == 1
    docs = _records(r.stdout)
    assert len(docs) == len(FILES) + 2
    for doc in docs:
        _assert_not_a_bounce(doc)
    r = subprocess.run([sys.executable, "-m", "deliverck", "explain", "-", "--json"], input=(NOT_BOUNCES / "LICENSE").read_bytes(),
                       capture_output=True, timeout=60)
    assert r.returncode == 1
    _assert_not_a_bounce(json.loads(r.stdout))


@pytest.mark.slow
def test_the_inputs_named_in_the_issue():
    """README.md was auth_kerberos with exit 0; pyproject.toml's "2.9.2" was a status code."""
    for name in ("README.md", "pyproject.toml"):
        r = deliverck("explain", str(ROOT / name))
        assert r.returncode == 1, (name, r.stdout[:300])
        assert r.stdout.count("\n") == 1 and "not a bounce (confidence low)" in r.stdout
        assert "auth_kerberos" not in r.stdout and "2.9.2" not in r.stdout
    r = deliverck("explain", str(ROOT / "pyproject.toml"), "--json")
    doc = json.loads(r.stdout)
    _assert_not_a_bounce(doc)
    assert doc["not_a_bounce"] == {"kind": "data", "reason": "a TOML document, not a message or a bounce text"}
    # --run on something that is not a bounce runs nothing and says so in its one line
    r = deliverck("explain", str(NOT_BOUNCES / "LICENSE"), "--run")
    assert r.returncode == 1 and r.stdout.count("\n") == 1 and "not a bounce" in r.stdout


@pytest.mark.slow
def test_json_of_a_non_bounce_has_the_same_fields_as_a_bounce():
    """deliverck.explain/1 stays compatible: the same keys in both, only values added."""
    a = json.loads(deliverck("explain", str(BOUNCES / "postfix-user-unknown.eml"), "--json").stdout)
    b = json.loads(deliverck("explain", str(NOT_BOUNCES / "hello.eml"), "--json").stdout)
    assert set(a) == set(b)
    assert a["not_a_bounce"] is None and a["final"] is True and a["bounce_evidence"]
    assert b["final"] is None and b["bounce_evidence"] is None
    docs = (ROOT / "docs" / "explain.md").read_text()
    for word in ("not_a_bounce", "bounce_evidence", "\"final\"", "skipped"):
        assert word in docs, word


# ------------------------------------------------------------------ what counts as a code

NOT_CODES = {
    "version.txt": "Release notes\nVersion 5.1.1 was released on 2026-03-02.\nIt fixes the queue report.\n",
    "section.txt": "See section 4.4.7 of the manual for the retry schedule.\nSection 5.2.2 covers quotas.\n",
    "date-room.txt": "The review moved to 4.2.2026 at 10:00.\nRoom 5.1.1, fifth floor, next to the Kerberos lab.\n",
    "ips.txt": "Resolvers 4.2.2.2 and 5.1.1.1 answer slowly since Monday.\nSPF and DNS are fine.\n",
    "versions.txt": "dnspython 2.9.2\ncryptography 44.0.1\naiosmtplib 5.1.3\n",
    "kerberos-notes.txt": "Notes from the Kerberos workshop\nClocks must agree within 5 minutes.\nSPF, DKIM, DMARC next time.\n",
    "http.txt": "GET /status returned 503 Service Unavailable\nthen 500 Internal Server Error\n",
}
CODES = {   # file -> (category, status): a code where a bounce puts one
    "pasted-reply.txt": ("blocked_ip", "5.7.1",
                         "550 5.7.1 Service unavailable; client [203.0.113.9] blocked using zen.spamhaus.org\n"),
    "status-field.txt": ("user_unknown", "5.1.1", "Delivery to jane@example.net did not work.\nStatus: 5.1.1\n"),
    "qmail-hash.txt": ("user_unknown", "5.1.1", "Sorry, no mailbox here by that name. (#5.1.1)\nGiving up on 192.0.2.10.\n"),
    "diagnostic.txt": ("mailbox_full", "5.2.2", "Diagnostic-Code: smtp; 552 5.2.2 <bob@example.net>: Mailbox full\n"),
    "quoted.txt": ("user_unknown", "5.1.1",
                   ("Hi, every message to bob comes back. The bounce says:\n"
                    "host mx.example.net[192.0.2.10] said: 550 5.1.1 <bob@example.net>: Recipient address\n"
                    "    rejected: User unknown (in reply to RCPT TO command)\nWhat can I do?\n")),
    "maillog-bounced.log": ("user_unknown", "5.1.1",
                            ("Mar  3 10:00:00 mail postfix/smtp[123]: 4BqX: to=<x@example.net>, relay=mx.example.net[192.0.2.1]:25, "
                             "delay=1.2, delays=0.1/0/0.5/0.6, dsn=5.1.1, status=bounced (host mx.example.net[192.0.2.1] said: "
                             "550 5.1.1 <x@example.net>: Recipient address rejected: User unknown in local recipient table "
                             "(in reply to RCPT TO command))\n"
                             "Mar  3 10:00:01 mail postfix/bounce[124]: 4BqX: sender non-delivery notification: 5CdY\n")),
    "maillog-deferred.log": ("network", "4.4.1",
                             ("Mar  3 10:05:00 mail postfix/smtp[125]: 5Abc: to=<y@example.com>, relay=none, delay=300, "
                              "delays=0.1/0/300/0, dsn=4.4.1, status=deferred (connect to mx.example.com[192.0.2.7]:25: "
                              "Connection timed out)\nMar  3 10:06:00 mail postfix/qmgr[901]: 5Abc: removed\n")),
    "exchange.txt": ("blocked_ip", "5.7.606",
                     "Remote Server returned '550 5.7.606 Access denied, banned sending IP [203.0.113.5]'\n"),
}


def test_a_code_counts_only_in_reply_context(tmp_path):
    for name, text in NOT_CODES.items():
        (tmp_path / name).write_text(text)
    for name, (_, _, text) in CODES.items():
        (tmp_path / name).write_text(text)
    r = deliverck("explain", str(tmp_path), "--jsonl")
    got = {Path(d["source"]).name: d for d in _records(r.stdout)}
    for name in NOT_CODES:
        _assert_not_a_bounce(got[name])
    for name, (category, status, _) in CODES.items():
        assert (got[name]["category"], got[name]["status"]) == (category, status), (name, got[name]["results"][:1])
        assert got[name]["bounce_evidence"]
    assert r.returncode == 0                    # the non-bounces were skipped


@pytest.mark.slow
def test_a_whole_argument_is_a_reply_only_if_it_is_a_failure():
    """A bare code or reply given as the whole argument keeps working (`deliverck explain
    5.7.506`); a success code, an HTTP status or a note is not a bounce."""
    script = (
        "import contextlib, io, json, sys\n"
        "from deliverck.cli import main\n"
        "out = []\n"
        "for arg in sys.argv[1:]:\n"
        "    so = io.StringIO()\n"
        "    with contextlib.redirect_stdout(so):\n"
        "        try:\n"
        "            main(['explain', arg, '--json'])\n"
        "        except SystemExit as e:\n"
        "            out.append([e.code, json.loads(so.getvalue())])\n"
        "print(json.dumps(out))\n"
    )
    replies = [("5.7.506", "bad_helo", "5.7.506"), ("5.1.1", "user_unknown", "5.1.1"),
               ("550 5.1.1 User unknown", "user_unknown", "5.1.1"),
               ("Recipient address rejected: User unknown in local recipient table", "user_unknown", None)]
    others = [("2.0.0", "success_reply"), ("250 2.0.0 Ok: queued as 4BqX2m1zJ9z9v", "success_reply"),
              ("Kerberos notes for Thursday", "text"), ("404 Not Found", "text")]
    args = [a for a, *_ in replies] + [a for a, _ in others]
    r = subprocess.run([sys.executable, "-c", script, *args], capture_output=True, text=True, timeout=120)
    got = dict(zip(args, json.loads(r.stdout), strict=True))
    for arg, category, status in replies:
        rc, doc = got[arg]
        assert (rc, doc["category"], doc["status"]) == (0, category, status), arg
    for arg, kind in others:
        rc, doc = got[arg]
        assert rc == 1, arg
        _assert_not_a_bounce(doc)
        assert doc["not_a_bounce"]["kind"] == kind, arg


# ------------------------------------------------------------------ delayed DSNs, triage, regressions

@pytest.mark.slow
def test_a_delayed_dsn_is_explained_and_says_it_is_not_final():
    r = deliverck("explain", str(BOUNCES / "postfix-delayed-refused.eml"))
    assert r.returncode == 0 and "network" in r.stdout
    assert "not final" in r.stdout and "still retrying" in r.stdout
    doc = json.loads(deliverck("explain", str(BOUNCES / "postfix-delayed-refused.eml"), "--json").stdout)
    assert doc["category"] == "network" and doc["final"] is False and doc["results"][0]["action"] == "delayed"
    doc = json.loads(deliverck("explain", str(BOUNCES / "postfix-user-unknown.eml"), "--json").stdout)
    assert doc["final"] is True
    r = deliverck("explain", str(BOUNCES / "postfix-user-unknown.eml"))
    assert "not final" not in r.stdout


@pytest.mark.slow
def test_mixed_directory_table_explains_bounces_and_counts_the_rest(tmp_path):
    for name in ("postfix-user-unknown.eml", "exim-quota.eml", "pasted-exchange-seed001.txt"):
        shutil.copy(BOUNCES / name, tmp_path / name)
    _corpus_copy(tmp_path)
    r = deliverck("explain", str(tmp_path), timeout=120)
    assert r.returncode == 0, r.stdout[-1000:]          # every bounce explained; the rest skipped
    out = r.stdout
    assert out.count("== ") == 3 and "user_unknown" in out and "mailbox_full" in out and "auth_kerberos" in out
    summary = out.strip().splitlines()[-1]
    assert summary.startswith(f"skipped {len(FILES) + 2} of {len(FILES) + 5} inputs that are not bounces: ")
    counts = Counter(KIND_OF.values()) + Counter({"message": 3})      # inbox.mbox: three ordinary messages
    for kind, n in counts.items():
        assert f"{n} {KINDS[kind][n != 1]}" in summary, (kind, summary)
    assert "README.md" not in out and "pyproject.toml" not in out
    v = deliverck("explain", str(tmp_path), "-v", timeout=120).stdout
    assert f"{tmp_path / 'README.md'}: not a bounce (confidence low): " in v
    # --jsonl keeps one record per input: the skipped ones say not_a_bounce
    docs = _records(deliverck("explain", str(tmp_path), "--jsonl", timeout=120).stdout)
    assert len(docs) == len(FILES) + 5
    assert sum(d["category"] == "not_a_bounce" for d in docs) == len(FILES) + 2


@pytest.mark.slow
def test_bounce_corpus_keeps_every_category():
    """tests/bounces (with lab-postfix) triaged as a directory: every labelled bounce gets its
    expected category (zero regressions), and only the label files are skipped."""
    label_files = sorted(p.name for p in BOUNCES.glob("expected*.toml"))
    samples = {s["file"]: s for f in label_files for s in tomllib.loads((BOUNCES / f).read_text())["sample"]}
    lab = tomllib.loads((BOUNCES / "lab-postfix" / "labels.toml").read_text())
    r = deliverck("explain", str(BOUNCES), "--jsonl", timeout=180)
    docs = {str(Path(d["source"]).relative_to(BOUNCES)): d for d in _records(r.stdout)}
    wrong = [f"{f}: {docs[f]['category']} != {s['category']}" for f, s in samples.items() if docs[f]["category"] != s["category"]]
    wrong += [f"lab-postfix/{f}: {docs['lab-postfix/' + f]['category']} != {s['category']}"
              for f, s in lab.items() if docs[f"lab-postfix/{f}"]["category"] != s["category"]]
    assert not wrong, "\n".join(wrong)
    skipped = sorted(f for f, d in docs.items() if d["category"] == "not_a_bounce")
    assert skipped == label_files + ["lab-postfix/labels.toml"]
    assert all(d["category"] in categories.IDS for f, d in docs.items() if f not in skipped)
    r = deliverck("explain", str(BOUNCES), timeout=180)
    n = len(skipped)
    assert r.stdout.strip().splitlines()[-1] == (f"skipped {n} of {len(docs)} inputs that are not bounces: "
                                                 f"{n} data or config files")
