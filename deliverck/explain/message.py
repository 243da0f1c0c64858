"""The message class the bounce parser builds (mime.py): delivery-status parts kept as text, and
field look-ups that do not scan the whole header list each time."""

from __future__ import annotations

from email.message import Message


class BounceMessage(Message):
    """A message whose message/delivery-status parts the parser keeps as text (RFC 3464 fields,
    read by dsn.field_blocks in one pass).  The stdlib parser would make each block of such
    a part, each blank line, a message object of its own: 1 MB of blank lines took 12 s and
    380 MB.  mime._collect takes the part for what it is by this type."""

    # The parser and the walk ask each part for its type and fields a few dozen times, and the
    # stdlib scans the whole header list on every get().  The first value of each field name is
    # indexed once (rebuilt whenever the header list changes) and the content type kept with it:
    # same answers as Message.get (compat32: the first field of that name wins), a dict look-up.
    _index: tuple[list, int, dict[str, tuple[str, str]]] | None = None
    _ctype: str | None = None

    def _fields(self) -> dict[str, tuple[str, str]]:
        hs = self._headers  # type: ignore[attr-defined]  # compat32 Message keeps its fields here
        ix = self._index
        if ix is None or ix[0] is not hs or ix[1] != len(hs):
            d: dict[str, tuple[str, str]] = {}
            for k, v in hs:
                d.setdefault(k.lower(), (k, v))
            self._index = ix = (hs, len(hs), d)
            self._ctype = None
        return ix[2]

    def get(self, name, failobj=None):
        kv = self._fields().get(name.lower())
        return failobj if kv is None else self.policy.header_fetch_parse(*kv)

    def __contains__(self, name) -> bool:
        return name.lower() in self._fields()

    def __setitem__(self, name, val) -> None:
        self._index = None
        super().__setitem__(name, val)

    def __delitem__(self, name) -> None:
        self._index = None
        super().__delitem__(name)

    def replace_header(self, _name, _value) -> None:
        self._index = None
        super().replace_header(_name, _value)

    def set_default_type(self, ctype) -> None:
        self._ctype = None
        super().set_default_type(ctype)

    def get_content_type(self) -> str:
        self._fields()
        if self._ctype is None:
            ctype = super().get_content_type()
            self._ctype = "text/delivery-status" if ctype == "message/delivery-status" else ctype
        return self._ctype
