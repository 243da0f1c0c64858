"""Generated docs stay in step with the code; the schema is valid."""

import json

from conftest import ROOT, SCHEMA

from deliverck.report.checklist import render_checks


def test_check_reference_is_current():
    assert (ROOT / "docs" / "checks.md").read_text() == render_checks("markdown"), \
        "docs/checks.md is stale: run `make docs`"


def test_schema_is_valid_json_schema():
    import jsonschema

    jsonschema.Draft202012Validator.check_schema(SCHEMA)
    assert SCHEMA["properties"]["schema"]["const"] == "deliverck.report/1"


def test_every_check_has_a_section_in_the_reference():
    text = (ROOT / "docs" / "checks.md").read_text()
    data = json.loads(render_checks("json"))
    for c in data["checks"]:
        assert f"## `{c['id']}`" in text
