"""Escaping of remote text (deliverck/text.py) before it reaches a terminal or markup."""

from deliverck.text import safe


def test_escape_removes_terminal_controls():
    nasty = "ok\x1b[31mred\x07\r\n\u202eevil\x9b"
    out = safe(nasty)
    assert "\x1b" not in out and "\x07" not in out and "\r" not in out and "\n" not in out
    assert "\u202e" not in out and "\x9b" not in out
    assert out.startswith("ok\\x1b[31mred")
