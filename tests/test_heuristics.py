"""Unit tests of the parsing and naming rules inside the checks."""

import pytest

from deliverck.checks.mx import _doubled_origin, _is_ip_name
from deliverck.checks.ptr import generic_reason
from deliverck.report.escape import safe


@pytest.mark.parametrize("ip,name,generic", [
    ("203.0.113.45", "203-0-113-45.dsl.example.net", True),
    ("203.0.113.45", "45.113.0.203.in-addr.example.net", True),
    ("203.0.113.45", "host-cb00712d.example.net", True),          # hex form
    ("203.0.113.45", "dynamic.example.net", True),
    ("203.0.113.45", "pool-a.example.net", True),
    ("203.0.113.45", "cust-17.example.net", True),
    ("203.0.113.45", "mail.example.net", False),
    ("203.0.113.45", "mx1.example.net", False),
    ("203.0.113.45", "host1.example.net", False),
    ("203.0.113.45", "smtp-out-2.example.net", False),
    ("203.0.113.45", "1203-0-113-459.example.net", False),         # digits must stand alone
    ("2001:db8::45", "mail.example.net", False),
])
def test_generic_ptr(ip, name, generic):
    assert bool(generic_reason(ip, name)) is generic


def test_doubled_origin():
    assert _doubled_origin("mail.example.com.example.com") == "mail.example.com"
    assert _doubled_origin("mx.a.b.c.a.b.c") == "mx.a.b.c"
    assert _doubled_origin("mail.example.com") == ""
    assert _doubled_origin("com.com") == ""


def test_ip_name():
    assert _is_ip_name("192.0.2.99")
    assert not _is_ip_name("192.0.2.99.example")


def test_escape_removes_terminal_controls():
    nasty = "ok\x1b[31mred\x07\r\n\u202eevil\x9b"
    out = safe(nasty)
    assert "\x1b" not in out and "\x07" not in out and "\r" not in out and "\n" not in out
    assert "\u202e" not in out and "\x9b" not in out
    assert out.startswith("ok\\x1b[31mred")
