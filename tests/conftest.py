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


@pytest.fixture(scope="session")
def lab():
    from deliverck.lab import LabUnavailable, manifest

    try:
        return manifest.current()
    except LabUnavailable as e:
        pytest.fail(f"not inside the lab ({e}): run `make test`, or `deliverck lab run -- python -m pytest`",
                    pytrace=False)


def deliverck(*args: str, timeout: float = 120) -> subprocess.CompletedProcess:
    """Run the real CLI as a user would, in a subprocess."""
    return subprocess.run(
        [sys.executable, "-m", "deliverck", *args],
        capture_output=True, text=True, timeout=timeout,
        env={**os.environ, "COLUMNS": "160"},
    )


def validate_report(doc: dict) -> None:
    import jsonschema

    jsonschema.validate(doc, SCHEMA)
