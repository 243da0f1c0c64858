"""Make text from remote servers safe for a terminal.

Banners, TXT records, PTR names and certificate fields are chosen by
whoever runs the remote side; printed raw, control sequences in them could
rewrite the user's terminal.  Every human-readable output passes remote text
through `safe()`; JSON keeps it exact.  Ground floor: imports nothing of
deliverck, so every layer may use it.
"""

from __future__ import annotations

import unicodedata

_BIDI = {"\u061c", "\u200e", "\u200f", *map(chr, range(0x202A, 0x202F)), *map(chr, range(0x2066, 0x206A))}


def safe(text: object) -> str:
    s = str(text)
    if s.isascii() and s.isprintable():      # the common case: nothing to escape (tab is not printable)
        return s
    out = []
    for ch in s:
        o = ord(ch)
        if ch == "\t":
            out.append("\\t")
        elif o < 0x20 or o == 0x7F or 0x80 <= o < 0xA0:
            out.append(f"\\x{o:02x}")
        elif ch in _BIDI or unicodedata.category(ch) in ("Cf", "Co", "Cs"):
            out.append(f"\\u{o:04x}")
        else:
            out.append(ch)
    return "".join(out)
