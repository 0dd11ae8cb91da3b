"""Loading test definitions from YAML: one test, a list, a directory, and the errors people make."""

from __future__ import annotations

from pathlib import Path

import pytest

from immunity.tasks.regress.testdefs import DefinitionError, load_definitions

HEALTH = """\
name: health_ok
kind: http
type: smoke
tags: [health]
request: {method: GET, path: /api/health}
expect: {status: 200}
"""

SCENARIOS = """\
- name: orders.flow
  kind: scenario
  type: integration
  tags: [orders]
  scenario:
    steps:
      - name: create
        method: post
        path: /api/shop/customers
        body: {name: Ada, email: ada@example.com}
        capture: {customer_id: $.id}
        expect: {status: 201}
      - name: read
        path: /api/shop/customers/${customer_id}
        poll: {attempts: 3, interval_s: 0}
        expect: {status: 2xx, json_schema: {type: object, required: [id]}}
- name: orders.missing
  request: {path: /api/shop/orders/ord_missing}
  expect: {status: 404}
"""


def _write(path: Path, text: str) -> Path:
    path.write_text(text, encoding="utf-8")
    return path


def test_a_mapping_is_one_test(tmp_path: Path) -> None:
    (definition,) = load_definitions(_write(tmp_path / "health.yaml", HEALTH))
    assert definition.name == "health_ok" and definition.kind == "http"
    assert definition.spec() == {"path": "/api/health"}
    assert definition.expect.status == 200
    assert definition.environment == "staging"  # the default: tests do not aim at production


def test_a_list_is_many_tests_in_order(tmp_path: Path) -> None:
    flow, missing = load_definitions(str(_write(tmp_path / "orders.yml", SCENARIOS)))
    assert (flow.name, missing.name) == ("orders.flow", "orders.missing")
    assert flow.scenario is not None
    assert [step.method for step in flow.scenario.steps] == ["POST", "GET"]
    assert flow.scenario.steps[0].capture == {"customer_id": "$.id"}
    assert flow.spec()["steps"][1]["poll"] == {"attempts": 3, "interval_s": 0}
    assert missing.kind == "http" and missing.type == "smoke"


def test_a_directory_loads_every_yaml_file_sorted(tmp_path: Path) -> None:
    _write(tmp_path / "b_orders.yml", SCENARIOS)
    _write(tmp_path / "a_health.yaml", HEALTH)
    _write(tmp_path / "notes.txt", "not: [a test")
    (tmp_path / "nested.yaml").mkdir()  # a directory named like a file is not read
    _write(tmp_path / "empty.yaml", "# nothing here yet\n")
    names = [d.name for d in load_definitions(tmp_path)]
    assert names == ["health_ok", "orders.flow", "orders.missing"]


def test_an_invalid_item_names_the_file_the_item_and_the_problem(tmp_path: Path) -> None:
    broken = SCENARIOS.replace("path: /api/shop/orders/ord_missing", "path: api/shop/orders")
    file = _write(tmp_path / "orders.yaml", broken)
    with pytest.raises(DefinitionError) as raised:
        load_definitions(file)
    message = str(raised.value)
    assert f"{file} item 1 ('orders.missing')" in message
    assert "must start with '/'" in message  # pydantic's own message
    assert "request.path" in message


def test_an_item_that_is_not_a_mapping_is_refused(tmp_path: Path) -> None:
    file = _write(tmp_path / "odd.yaml", "- just a string\n")
    with pytest.raises(DefinitionError, match=r"odd\.yaml item 0: expected a test \(a mapping\)"):
        load_definitions(file)
    scalar = _write(tmp_path / "scalar.yaml", "42\n")
    with pytest.raises(DefinitionError, match="expected a test .* or a list of tests, got int"):
        load_definitions(scalar)


def test_a_scenario_step_error_is_located(tmp_path: Path) -> None:
    file = _write(tmp_path / "bad.yaml", SCENARIOS.replace("method: post", "method: FETCH"))
    with pytest.raises(DefinitionError) as raised:
        load_definitions(file)
    assert "item 0 ('orders.flow')" in str(raised.value)
    assert "scenario.steps.0.method" in str(raised.value)


def test_duplicate_names_across_files_are_an_error(tmp_path: Path) -> None:
    _write(tmp_path / "a.yaml", HEALTH)
    _write(tmp_path / "b.yaml", f"- {HEALTH.replace(chr(10), chr(10) + '  ')}")
    with pytest.raises(DefinitionError) as raised:
        load_definitions(tmp_path)
    message = str(raised.value)
    assert "duplicate test name 'health_ok'" in message
    assert f"{tmp_path / 'b.yaml'} item 0" in message and str(tmp_path / "a.yaml") in message


def test_duplicate_names_within_a_file_are_an_error(tmp_path: Path) -> None:
    file = _write(tmp_path / "twice.yaml", SCENARIOS + SCENARIOS.split("- name: orders.missing")[0])
    with pytest.raises(DefinitionError, match="item 2: duplicate test name 'orders.flow'"):
        load_definitions(file)


def test_unreadable_inputs_are_definition_errors(tmp_path: Path) -> None:
    with pytest.raises(DefinitionError, match="no such file or directory"):
        load_definitions(tmp_path / "missing.yaml")
    with pytest.raises(DefinitionError, match=r"no \*\.yaml or \*\.yml files"):
        load_definitions(tmp_path)
    bad_yaml = _write(tmp_path / "bad.yaml", "name: [unclosed\n")
    with pytest.raises(DefinitionError, match=r"bad\.yaml: not valid YAML"):
        load_definitions(bad_yaml)
    latin1 = tmp_path / "latin1.yaml"
    latin1.write_bytes("name: caf\xe9\n".encode("latin-1"))
    with pytest.raises(DefinitionError, match="cannot read"):
        load_definitions(latin1)
    assert issubclass(DefinitionError, ValueError)
