"""The human formats say each thing once, fit the terminal and carry the likelihood of
every predicted NDR: table, markdown, GitHub annotations, JUnit, Prometheus."""

from __future__ import annotations

import datetime as dt
import re

import pytest

from deliverck.model import (
    CheckResult,
    Direction,
    Finding,
    Likelihood,
    NdrPrediction,
    Owner,
    Report,
    Severity,
    Status,
    TargetInfo,
    Verdict,
)
from deliverck.report import FORMATS, RenderOptions


def _finding(fid, subject, severity=Severity.ERROR, fix="Serve the full chain.", summary=None, evidence=(),
             owner=Owner.MAIL_ADMIN, **args):
    return Finding(id=fid, severity=severity, subject=subject, summary=summary or f"{fid} about {subject}",
                   fix=fix, owner=owner, direction=Direction.INBOUND, evidence=tuple(evidence), args=args)


def _prediction(likelihood=Likelihood.WILL, code=550, status="5.7.25", system="gmail", name="Gmail",
                condition=""):
    return NdrPrediction(key=f"{system}.x", system=system, system_name=name, code=code, status=status,
                         reply=f"{code} {status} [192.0.2.7] no PTR", text="t", direction=Direction.OUTBOUND,
                         owner=Owner.IP_OWNER, fix="f", caused_by=("ptr.missing",), subjects=("192.0.2.7",),
                         source="s", likelihood=likelihood, condition=condition)


LONG = ("the certificate chain of {ip} (mx1.example.test) does not lead to a trusted root: no chain to a "
        "trusted CA: CN=Example private root CA,O=Example is neither in the trust store nor sent by the server")


def _report(verbose_evidence=False) -> Report:
    untrusted = [_finding("starttls.cert_untrusted", ip, summary=LONG.format(ip=ip),
                          evidence=("220 mx1.example.test ESMTP",) if verbose_evidence else ())
                 for ip in ("192.0.2.10", "2001:db8::10", "192.0.2.11")]
    checks = (
        CheckResult("ptr", "PTR", Status.FAIL, 3, (_finding("ptr.missing", "192.0.2.7", fix="Ask the ISP.",
                                                            owner=Owner.IP_OWNER),)),
        CheckResult("smtp", "SMTP", Status.PASS, 3, tuple(
            _finding("smtp.greeting", ip, Severity.INFO, fix="Nothing to fix.", owner=Owner.NOBODY,
                     summary=f"{ip} greets: 220 mx1.example.test ESMTP",
                     evidence=("S: 220 mx1.example.test ESMTP", "C: EHLO probe.example", "S: 250 ok"))
            for ip in ("192.0.2.10", "192.0.2.11"))),
        CheckResult("starttls", "STARTTLS", Status.FAIL, 3, tuple(untrusted)),
        CheckResult("kerberos", "Kerberos", Status.SKIPPED, 0, (), reason="no sign of Active Directory"),
    )
    preds = (_prediction(),
             _prediction(Likelihood.MAY, 450, "4.7.25", "postfix", "Postfix",
                         condition="only receivers with reject_unknown_client_hostname"))
    return Report(target=TargetInfo("example.test", "example.test", ""), started="2026-12-05T00:00:00Z",
                  finished="2026-12-05T00:00:01Z", duration_ms=1000, verdict=Verdict.FAIL, exit_code=1,
                  fail_on=Severity.ERROR, checks=checks, predicted_ndrs=preds, resolvers=("127.0.0.1:53",),
                  receivers=("exchange-online", "exchange", "gmail", "postfix"), tool_version="0")


def _table(report, monkeypatch, columns=80, verbose=False):
    monkeypatch.setenv("COLUMNS", str(columns))
    return FORMATS["table"](report, RenderOptions(verbose=verbose))


@pytest.mark.parametrize("columns", [60, 80, 100])
def test_table_fits_the_terminal(monkeypatch, columns):
    out = _table(_report(), monkeypatch, columns)
    assert max(len(line) for line in out.splitlines()) <= columns, out


def test_table_says_each_thing_once(monkeypatch):
    out = _table(_report(), monkeypatch)
    # three certificates with the same problem: one entry, one fix, the other subjects listed
    assert out.count("Serve the full chain.") == 1
    assert "the same for 2 more: 2001:db8::10, 192.0.2.11" in out
    # a failing check's row shows its problem, never an empty cell
    row = next(line for line in out.splitlines() if line.startswith("starttls"))
    assert "certificate chain" in row
    verbose = _table(_report(verbose_evidence=True), monkeypatch, 100, verbose=True)
    assert "-v" not in verbose.replace("(exit", "")       # no "(+1 more, -v shows all)" under -v
    assert verbose.count("C: EHLO probe.example") == 2    # each address's transcript once
    assert "Nothing to fix." not in verbose


def test_table_ends_with_a_one_line_summary(monkeypatch):
    out = _table(_report(), monkeypatch, 200)
    last = out.rstrip().splitlines()[-1].strip()
    assert last.startswith("summary: FAIL; 4 error")
    assert "will bounce: Gmail 5.7.25" in last and "may bounce: Postfix" in last


def test_table_shows_likelihood_and_condition(monkeypatch):
    out = _table(_report(), monkeypatch, 120)
    ndr = out.split("Predicted NDRs")[1]
    assert re.search(r"^  will  outbound, Gmail: 550 5\.7\.25", ndr, re.M)
    assert re.search(r"^  may   outbound, Postfix: 450 4\.7\.25", ndr, re.M)
    assert "only receivers with reject_unknown_client_hostname" in ndr


def test_markdown_renders_what_a_comment_displays():
    import dataclasses

    r = _report()
    fix = "Publish at least `v=DMARC1; p=none; rua=mailto:dmarc-reports@example.test`, mail postmaster@example.test"
    bad = dataclasses.replace(r.checks[0].findings[0], fix=fix, summary="@admin look at [x](http://evil) `a|b`")
    r = dataclasses.replace(r, checks=(dataclasses.replace(r.checks[0], findings=(bad,)),) + r.checks[1:])
    out = FORMATS["markdown"](r, RenderOptions())
    assert "`v=DMARC1; p=none; rua=mailto:dmarc-reports@example.test`" in out       # a code span, as written
    assert "&#64;" not in out.split("@admin")[0] if "@admin" in out else True
    assert "postmaster@example\\.test" in out                                       # an address: no entity
    assert "&#64;admin" in out and "](http" not in out                               # a mention, a link: escaped
    assert "| **will** |" in out and "may: only receivers with reject\\_unknown\\_client\\_hostname" in out
    assert out.rstrip().splitlines()[-1].startswith("summary: FAIL")


def test_github_and_junit_show_the_predictions_with_likelihood():
    r = _report()
    gh = FORMATS["github"](r, RenderOptions())
    assert "predicted NDR, will: outbound Gmail 550 5.7.25" in gh
    assert "predicted NDR, may (only receivers with reject_unknown_client_hostname)" in gh
    junit = FORMATS["junit"](r, RenderOptions())
    assert "will: outbound Gmail: 550 5.7.25" in junit and "may: outbound Postfix" in junit


def test_prometheus_has_one_series_per_prediction():
    out = FORMATS["prometheus"](_report(), RenderOptions())
    series = [ln for ln in out.splitlines() if ln.startswith("deliverck_predicted_ndr{")]
    assert len(series) == 2 and len(set(series)) == 2
    assert any('likelihood="will"' in s and 'receiver="gmail"' in s for s in series)


def test_certificate_days_round_toward_zero():
    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import NameOID

    from deliverck.net import tls

    now = dt.datetime(2026, 12, 5, 12, 0, tzinfo=dt.UTC)
    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "mx.example.test")])
    cert = (x509.CertificateBuilder().subject_name(name).issuer_name(name).public_key(key.public_key())
            .serial_number(1).not_valid_before(now - dt.timedelta(days=90))
            .not_valid_after(now - dt.timedelta(days=2, hours=12)).sign(key, hashes.SHA256()))
    der = cert.public_bytes(serialization.Encoding.DER)
    report = tls.analyse([der], "mx.example.test", now=now, store=tls.Store([cert]), warn_days=21)
    assert report.expired and report.days_left == -2          # "2 days ago", not -3
