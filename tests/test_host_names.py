"""Host names judged by their shape: the generic-PTR rule (checks/ptr.py) and the MX name
mistakes (checks/mx.py: a doubled origin, an IP address written as a name)."""

import pytest

from deliverck.checks.mx import _doubled_origin, _is_ip_name
from deliverck.checks.ptr import generic_reason


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
