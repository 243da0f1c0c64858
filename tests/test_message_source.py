"""Reading messages (deliverck/message/source.py): files, stdin, mboxes, directories; exact bytes,
bounded reads, and one-line refusals for input no receiver could get."""

from __future__ import annotations

import gzip
import io
import os
import sys

import pytest

from deliverck.errors import UsageError
from deliverck.message import source
from deliverck.message.source import read_messages

MSG = b"From: a@example.org\r\nTo: b@example.net\r\nSubject: hi\r\n\r\nbody\r\n"
LF = MSG.replace(b"\r\n", b"\n")


def _write(tmp_path, name: str, data: bytes) -> str:
    p = tmp_path / name
    p.write_bytes(data)
    return str(p)


def test_a_file_is_kept_byte_for_byte(tmp_path) -> None:
    path = _write(tmp_path, "m.eml", MSG)
    [m] = list(read_messages(path))
    assert m.raw == MSG and m.label == path and not m.truncated and m.notes == ()


def test_bare_lf_is_noted_not_converted(tmp_path) -> None:
    [m] = list(read_messages(_write(tmp_path, "m.eml", LF)))
    assert m.raw == LF
    assert any("LF only" in n for n in m.notes)


def test_mbox_is_split_and_from_lines_unquoted(tmp_path) -> None:
    box = (b"From sender@example.org Tue Dec  3 10:00:00 2024\n" + LF.replace(b"body\n", b">From the start\nbody\n")
           + b"\nFrom other@example.org Tue Dec  3 10:01:00 2024\n" + LF.replace(b"hi", b"second") + b"\n")
    path = _write(tmp_path, "box", box)
    msgs = list(read_messages(path))
    assert [m.label for m in msgs] == [f"{path}#1", f"{path}#2"]
    assert msgs[0].raw == LF.replace(b"body\n", b"From the start\nbody\n")
    assert any("unquoted" in n for n in msgs[0].notes)
    assert msgs[1].raw == LF.replace(b"hi", b"second")


def test_mbox_count_is_bounded(tmp_path, monkeypatch) -> None:
    monkeypatch.setattr(source, "MAX_MBOX_MESSAGES", 2)
    sep = b"From x@example.org Tue Dec  3 10:00:00 2024\n"
    msgs = list(read_messages(_write(tmp_path, "box", (sep + LF + b"\n") * 5)))
    assert len(msgs) == 2
    assert "more than 2 messages" in msgs[-1].notes[-1]


def test_a_large_message_is_truncated_with_a_note(tmp_path, monkeypatch) -> None:
    monkeypatch.setattr(source, "MAX_MESSAGE_BYTES", 100)
    [m] = list(read_messages(_write(tmp_path, "big.eml", LF + b"x" * 1000)))
    assert m.truncated and len(m.raw) == 100
    assert any("larger than" in n for n in m.notes)


def test_a_large_mbox_message_is_truncated_and_the_next_kept(tmp_path, monkeypatch) -> None:
    monkeypatch.setattr(source, "MAX_MESSAGE_BYTES", 100)
    sep = b"From x@example.org Tue Dec  3 10:00:00 2024\n"
    box = sep + LF + (b"y" * 70 + b"\n") * 20 + b"\n" + sep + LF
    first, second = read_messages(_write(tmp_path, "box", box))
    assert first.truncated and len(first.raw) <= 100
    assert not second.truncated and second.raw == LF


def test_directory_reads_messages_in_order_and_names_what_it_skipped(tmp_path) -> None:
    _write(tmp_path, "b.eml", MSG)
    _write(tmp_path, "a.txt", b"just some notes\n")
    _write(tmp_path, "c.eml", LF)
    (tmp_path / "sub").mkdir()
    msgs = list(read_messages(str(tmp_path)))
    assert [os.path.basename(m.label) for m in msgs] == ["b.eml", "c.eml"]
    assert any("a.txt" in n for n in msgs[0].notes)


def test_stdin(monkeypatch) -> None:
    fake = io.TextIOWrapper(io.BytesIO(MSG))
    monkeypatch.setattr(sys, "stdin", fake)
    [m] = list(read_messages("-"))
    assert m.raw == MSG and m.label == "-"


@pytest.mark.parametrize(("name", "data", "says"), [
    ("empty.eml", b"", "is empty"),
    ("blank.eml", b"\n\n  \n", "is empty"),
    ("mail.eml.gz", gzip.compress(MSG), "gzip"),
    ("doc.pdf", b"%PDF-1.7\n...", "PDF"),
    ("notes.txt", b"Dear admin,\nplease check this.\n", "not a message"),
    ("config.yaml", b"server:\n  port: 25\nlab: yes\n", "not a message"),
    ("listing.txt", b"tests/test_x.py::test_a\ntests/test_x.py::test_b\n", "not a message"),
    ("utf16.eml", "From: a@example.org\n\nx".encode("utf-16"), "UTF-16"),
])
def test_input_no_receiver_could_get_is_refused_in_one_line(tmp_path, name, data, says) -> None:
    with pytest.raises(UsageError) as e:
        list(read_messages(_write(tmp_path, name, data)))
    assert says in str(e.value) and "\n" not in str(e.value)


def test_missing_device_and_empty_directory_are_refused(tmp_path) -> None:
    for path, says in ((str(tmp_path / "nope.eml"), "no such file"), ("/dev/zero", "device"),
                       (str(tmp_path), "holds no message")):
        with pytest.raises(UsageError) as e:
            list(read_messages(path))
        assert says in str(e.value), str(e.value)


def test_odd_but_receivable_messages_are_accepted(tmp_path) -> None:
    """8-bit headers, a header line without a colon after the first, a missing body: a receiver
    could get these, so they are read and judged, not refused."""
    odd = "Subject: Grüße\nFrom: a@example.org\nnot a field\n".encode()
    [m] = list(read_messages(_write(tmp_path, "odd.eml", odd)))
    assert m.raw == odd
