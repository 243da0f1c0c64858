"""Shared fixtures.  Lab tests run inside the hermetic lab (`make test` wraps
pytest in `deliverck lab run`); outside it they fail with one clear line."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
SCHEMA = json.loads((ROOT / "docs" / "report.schema.json").read_text())


# Fixtures that need the running lab.  A test whose fixture closure holds one of them is marked
# `lab` at collection (pytest_collection_modifyitems below), so `pytest -m "not lab"` leaves out
# exactly the tests that cannot run outside the lab, and no test file keeps a mark by hand that
# could drift from what the test really uses.  A new fixture that needs the lab either depends
# on `lab` (and is then covered through the closure) or is named here.
LAB_FIXTURES = frozenset({"lab", "lab_manifest"})


def pytest_collection_modifyitems(config, items):
    """Mark by fixture, not by hand: the lab mark follows what a test asks for."""
    for item in items:
        if LAB_FIXTURES & set(getattr(item, "fixturenames", ())):
            item.add_marker(pytest.mark.lab)


@pytest.fixture(scope="session")
def lab():
    from deliverck.lab import LabUnavailable, manifest

    try:
        return manifest.current()
    except LabUnavailable as e:
        pytest.fail(f"not inside the lab ({e}): run `make test`, or `deliverck lab run -- python -m pytest`",
                    pytrace=False)


def deliverck(*args: str, timeout: float = 120, env: dict | None = None,
              unset: tuple[str, ...] = ()) -> subprocess.CompletedProcess:
    """Run the real CLI as a user would, in a subprocess.  `env` adds variables,
    `unset` removes some (e.g. the lab's DELIVERCK_TRUST_ANCHOR, to audit as an
    independent machine would)."""
    full = {k: v for k, v in os.environ.items() if k not in unset}
    return subprocess.run(
        [sys.executable, "-m", "deliverck", *args],
        capture_output=True, text=True, timeout=timeout,
        env={**full, "COLUMNS": "160", **(env or {})},
    )


def validate_report(doc: dict) -> None:
    import jsonschema

    jsonschema.validate(doc, SCHEMA)
