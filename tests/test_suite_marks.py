"""The suite's own marks (issue 15): `lab` comes from the fixture a test asks for, never by hand.
A hand-written `lab` mark drifts: a test marked but not using the lab hides from `-m "not lab"`,
and one using the lab without the mark makes `pytest -m "not lab"` fail outside it."""

from __future__ import annotations

import re

from conftest import LAB_FIXTURES, ROOT

HAND_MARK = re.compile(r"pytest\.mark\.lab\b|pytestmark\w*\s*=.*\blab\b")


def test_no_test_file_marks_lab_by_hand():
    here = {p.relative_to(ROOT).as_posix(): i + 1
            for p in (ROOT / "tests").rglob("*.py") if p.name != "conftest.py"
            for i, line in enumerate(p.read_text(encoding="utf-8").splitlines()) if HAND_MARK.search(line)}
    assert not here, f"the lab mark comes from the `lab` fixture (tests/conftest.py), not by hand: {here}"


def test_every_test_asking_for_the_lab_is_marked(request):
    items = request.session.items
    users = [i for i in items if LAB_FIXTURES & set(i.fixturenames)]
    assert not [i.nodeid for i in users if i.get_closest_marker("lab") is None]
    assert not [i.nodeid for i in items if i.get_closest_marker("lab") and not LAB_FIXTURES & set(i.fixturenames)]
