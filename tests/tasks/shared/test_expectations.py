"""Expectations against one response: every kind passing and failing, and GX records checks."""

from __future__ import annotations

import json
import subprocess
import sys
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import pytest

from immunity.models.results import CheckResult, Observed
from immunity.models.specs import Expectations
from immunity.tasks.shared.expectations import evaluate, json_values

ROOT = Path(__file__).resolve().parents[3]


def observed(body: Any = None, *, status: int = 200, latency_ms: float = 12.0) -> Observed:
    if isinstance(body, str):
        return Observed(status=status, latency_ms=latency_ms, text=body)
    return Observed(
        status=status, latency_ms=latency_ms, text=json.dumps(body), json_body=body, is_json=True
    )


def only(expect: dict[str, Any], response: Observed) -> CheckResult:
    results = evaluate(Expectations.model_validate(expect), response)
    assert len(results) == 1, results
    json.dumps([result.model_dump(mode="json") for result in results])  # JSON-able, always
    return results[0]


# --- json_values ---------------------------------------------------------------------------------


def test_json_values_finds_values_and_filters() -> None:
    document = {"items": [{"id": "a", "n": 1}, {"id": "b", "n": 5}], "total": 2}
    assert json_values("$.total", document) == [2]
    assert json_values("$.items[*].id", document) == ["a", "b"]
    assert json_values("$.items[?(@.n > 2)].id", document) == ["b"]
    assert json_values("$..id", document) == ["a", "b"]
    assert json_values("$.missing", document) == []


@pytest.mark.parametrize("path", ["$.items[", "foo bar", "$.a[?(@.x == ]", "$.a'"])
def test_json_values_rejects_malformed_paths(path: str) -> None:
    with pytest.raises(ValueError, match="invalid JSONPath"):
        json_values(path, {})


# --- status and should_not_fail ------------------------------------------------------------------


@pytest.mark.parametrize(
    ("expected", "status", "passed"),
    [
        (200, 200, True),
        (404, 404, True),
        (404, 200, False),
        ("2xx", 204, True),
        ("2xx", 302, False),
        ("200-299", 299, True),
        ("200-299", 300, False),
        ("4xx", 404, True),
    ],
)
def test_status_forms(expected: int | str, status: int, passed: bool) -> None:
    result = only({"status": expected}, observed({}, status=status))
    assert (result.name, result.passed, result.expected, result.actual) == (
        "status",
        passed,
        expected,
        status,
    )
    assert bool(result.message) is not passed
    if not passed:
        assert str(status) in result.message and str(expected) in result.message


@pytest.mark.parametrize(
    ("status", "passed"), [(200, True), (399, True), (400, False), (500, False)]
)
def test_should_not_fail(status: int, passed: bool) -> None:
    result = only({"should_not_fail": True}, observed({}, status=status))
    assert (result.name, result.passed, result.actual) == ("should_not_fail", passed, status)


def test_nothing_set_means_no_checks() -> None:
    assert evaluate(Expectations(), observed({})) == []


# --- min_items -----------------------------------------------------------------------------------


def test_min_items_passes_and_fails_on_count() -> None:
    body = {"files": [{"name": "a"}, {"name": "b"}]}
    ok = only({"min_items": {"$.files": 2}}, observed(body))
    assert (ok.name, ok.passed, ok.expected, ok.actual) == ("min_items $.files", True, 2, 2)
    short = only({"min_items": {"$.files": 3}}, observed(body))
    assert (short.passed, short.actual) == (False, 2)
    assert "2 items" in short.message and "at least 3" in short.message


@pytest.mark.parametrize(
    ("body", "fragment"),
    [
        ({"other": []}, "$.files is missing"),
        ({"files": {"a": 1}}, "$.files is an object, not a list"),
        ({"files": None}, "$.files is null, not a list"),
        ({"files": "a,b"}, "$.files is a string, not a list"),
        ("<html>oops</html>", "not JSON"),
    ],
)
def test_min_items_fails_without_a_list(body: Any, fragment: str) -> None:
    result = only({"min_items": {"$.files": 1}}, observed(body))
    assert not result.passed and result.actual is None
    assert fragment in result.message


def test_min_items_with_a_malformed_path_is_a_failed_check() -> None:
    result = only({"min_items": {"$.files[": 1}}, observed({"files": [1]}))
    assert not result.passed and "invalid JSONPath" in result.message


def test_each_min_items_path_is_its_own_check() -> None:
    results = evaluate(Expectations(min_items={"$.a": 1, "$.b": 1}), observed({"a": [1], "b": []}))
    assert [(r.name, r.passed) for r in results] == [
        ("min_items $.a", True),
        ("min_items $.b", False),
    ]


# --- json_schema ---------------------------------------------------------------------------------

_RESPONSES = {
    "type": "array",
    "minItems": 1,
    "items": {
        "type": "object",
        "required": ["question_id", "response"],
        "properties": {"question_id": {"type": "string", "minLength": 1}},
    },
}


def _holding(key: str, inner: dict[str, Any]) -> dict[str, Any]:
    return {"type": "object", "required": [key], "properties": {key: inner}}


# Seed 004: a receipt's responses sit at output.data.data or at output.data depending on the path
# that wrote it; both shapes are valid, anything else is not.
RECEIPT_SCHEMA = _holding(
    "output",
    {
        "oneOf": [
            _holding("data", _holding("data", _holding("responses", _RESPONSES))),
            _holding("data", _holding("responses", _RESPONSES)),
        ]
    },
)
_ANSWER = [{"question_id": "q1", "response": "ok"}]


@pytest.mark.parametrize(
    "body",
    [
        {"output": {"data": {"data": {"responses": _ANSWER}}}},
        {"output": {"data": {"responses": _ANSWER}}},
    ],
)
def test_schema_one_of_accepts_both_receipt_shapes(body: dict[str, Any]) -> None:
    result = only({"json_schema": RECEIPT_SCHEMA}, observed(body))
    assert (result.name, result.passed, result.message) == ("json_schema", True, "")


def test_schema_one_of_rejects_a_third_shape() -> None:
    result = only({"json_schema": RECEIPT_SCHEMA}, observed({"output": {"data": {"items": []}}}))
    assert not result.passed
    assert result.actual["path"] == "$.output"
    assert result.actual["validator"] == "oneOf"
    assert "not valid under any of the given schemas" in result.actual["message"]


def test_schema_reports_the_deepest_error_with_its_path() -> None:
    body = {"output": {"data": {"responses": [{"question_id": "", "response": "ok"}]}}}
    result = only({"json_schema": RECEIPT_SCHEMA}, observed(body))
    assert not result.passed
    assert result.actual["path"] == "$.output.data.responses[0].question_id"
    assert "non-empty" in result.actual["message"]
    assert "$.output.data.responses[0].question_id" in result.message


def test_schema_fails_on_a_non_json_body() -> None:
    result = only({"json_schema": {"type": "object"}}, observed("Internal Server Error"))
    assert not result.passed and "not JSON" in result.message


def test_schema_error_message_is_bounded() -> None:
    body = {"output": {"data": {"items": ["x" * 5_000]}}}
    result = only({"json_schema": RECEIPT_SCHEMA}, observed(body))
    assert len(result.actual["message"]) <= 300


# --- max_latency_ms and body_contains ------------------------------------------------------------


@pytest.mark.parametrize(("latency", "passed"), [(250.0, True), (250.04, False), (12.3, True)])
def test_max_latency(latency: float, passed: bool) -> None:
    result = only({"max_latency_ms": 250}, observed({}, latency_ms=latency))
    assert (result.name, result.passed, result.expected) == ("max_latency_ms", passed, 250)
    assert result.actual == round(latency, 1)
    if not passed:
        assert "more than 250 ms" in result.message


def test_body_contains_each_text() -> None:
    results = evaluate(
        Expectations(body_contains=["Welcome", "Goodbye"]), observed("<h1>Welcome back</h1>")
    )
    assert [(r.name, r.passed) for r in results] == [
        ("body_contains 'Welcome'", True),
        ("body_contains 'Goodbye'", False),
    ]
    assert "does not contain 'Goodbye'" in results[1].message


def test_body_contains_names_a_long_text_briefly() -> None:
    result = only({"body_contains": ["x" * 500]}, observed("y"))
    assert len(result.name) < 60 and result.expected == "x" * 500


# --- records (Great Expectations) ----------------------------------------------------------------

EXECUTIONS = {
    "executions": [
        {"id": "exec-1", "status": "completed", "duration_s": 3, "job_id": "job-1"},
        {"id": "exec-2", "status": "completed", "duration_s": 4.5, "job_id": "job-2"},
        {"id": "exec-3", "status": "failed", "duration_s": 9, "job_id": "job-3"},
    ]
}


def records(*expect: dict[str, Any], path: str = "$.executions") -> dict[str, Any]:
    return {"records": [{"path": path, "expect": list(expect)}]}


def with_rows(*rows: dict[str, Any]) -> Observed:
    return observed({"executions": list(rows)})


@pytest.mark.parametrize(
    "expect",
    [
        {"expectation": "not_null", "column": "id"},
        {"expectation": "not_empty", "column": "id"},
        {"expectation": "in_set", "column": "status", "value_set": ["completed", "failed"]},
        {"expectation": "between", "column": "duration_s", "min_value": 0, "max_value": 10},
        {"expectation": "unique", "column": "job_id"},
    ],
)
def test_records_pass_on_good_rows(expect: dict[str, Any]) -> None:
    result = only(records(expect), observed(EXECUTIONS))
    assert result.passed, result.message
    assert result.name == f"records $.executions: {expect['expectation']} {expect['column']}"
    assert result.actual == {"records": 3, "unexpected_count": 0, "unexpected_values": []}
    assert result.expected["column"] == expect["column"]


def test_not_null_catches_a_null() -> None:
    rows = [{"id": "a"}, {"id": None}, {"id": "c"}]
    result = only(records({"expectation": "not_null", "column": "id"}), with_rows(*rows))
    assert not result.passed
    assert result.actual == {"records": 3, "unexpected_count": 1, "unexpected_values": [None]}
    assert "1 of 3 records at $.executions have 'id' null" in result.message


def test_not_null_counts_a_missing_key_as_null() -> None:
    rows = [{"id": "a"}, {"job_id": "j"}]
    result = only(records({"expectation": "not_null", "column": "id"}), with_rows(*rows))
    assert not result.passed and result.actual["unexpected_count"] == 1


def test_not_empty_catches_the_empty_id_of_seed_004() -> None:
    rows = [{"id": "exec-1"}, {"id": ""}, {"id": None}]
    not_null = only(records({"expectation": "not_null", "column": "id"}), with_rows(*rows))
    assert not_null.actual["unexpected_count"] == 1  # "" is not null: not_null misses it
    result = only(records({"expectation": "not_empty", "column": "id"}), with_rows(*rows))
    assert not result.passed
    assert result.actual == {"records": 3, "unexpected_count": 2, "unexpected_values": ["", None]}
    assert "null or empty" in result.message


def test_mostly_is_passed_through() -> None:
    rows = [{"id": str(i)} for i in range(9)] + [{"id": ""}]
    loose = {"expectation": "not_empty", "column": "id", "mostly": 0.9}
    assert only(records(loose), with_rows(*rows)).passed
    strict = {**loose, "mostly": 0.95}
    result = only(records(strict), with_rows(*rows))
    assert not result.passed and "mostly=0.95" in result.message


def test_in_set_reports_the_values_outside() -> None:
    expect = {"expectation": "in_set", "column": "status", "value_set": ["completed"]}
    result = only(records(expect), observed(EXECUTIONS))
    assert not result.passed
    assert result.actual == {"records": 3, "unexpected_count": 1, "unexpected_values": ["failed"]}
    assert "not in ['completed']" in result.message


def test_between_reports_the_values_outside() -> None:
    expect = {"expectation": "between", "column": "duration_s", "max_value": 4}
    result = only(records(expect), observed(EXECUTIONS))
    assert not result.passed
    assert result.actual["unexpected_values"] == [4.5, 9]
    assert "outside [-inf, 4]" in result.message


def test_between_on_text_values_is_a_failed_check_not_a_crash() -> None:
    expect = {"expectation": "between", "column": "id", "min_value": 0}
    result = only(records(expect), observed(EXECUTIONS))
    assert not result.passed and "could not run between on 'id'" in result.message


def test_unique_catches_duplicates() -> None:
    rows = [{"job_id": "j1"}, {"job_id": "j2"}, {"job_id": "j1"}]
    result = only(records({"expectation": "unique", "column": "job_id"}), with_rows(*rows))
    assert not result.passed
    assert result.actual["unexpected_values"] == ["j1", "j1"]
    assert "duplicated" in result.message


def test_a_missing_column_is_a_failed_check() -> None:
    result = only(
        records({"expectation": "not_null", "column": "jobspec_id"}), observed(EXECUTIONS)
    )
    assert not result.passed
    assert result.message == "column 'jobspec_id' is in none of the 3 records at $.executions"


def test_no_records_pass_vacuously() -> None:
    assert only(records({"expectation": "not_null", "column": "id"}), with_rows()).passed


def test_every_records_expectation_is_its_own_check() -> None:
    check = records(
        {"expectation": "not_empty", "column": "id"},
        {"expectation": "unique", "column": "id"},
    )
    results = evaluate(Expectations.model_validate(check), with_rows({"id": ""}, {"id": ""}))
    assert [(r.name, r.passed) for r in results] == [
        ("records $.executions: not_empty id", False),
        ("records $.executions: unique id", False),
    ]


@pytest.mark.parametrize(
    ("response", "fragment"),
    [
        (observed({"other": []}), "$.executions is missing"),
        (observed({"executions": {"id": "a"}}), "$.executions is an object, not a list"),
        (
            observed({"executions": [{"id": "a"}, "b"]}),
            "$.executions[1] is a string, not an object",
        ),
        (observed("<html>"), "not JSON"),
    ],
)
def test_records_need_a_list_of_objects(response: Observed, fragment: str) -> None:
    check = records(
        {"expectation": "not_null", "column": "id"}, {"expectation": "unique", "column": "id"}
    )
    results = evaluate(Expectations.model_validate(check), response)
    assert len(results) == 2
    assert all(not r.passed and fragment in r.message for r in results)


def test_records_follow_a_nested_path() -> None:
    body = {
        "output": {"data": {"data": {"responses": [{"question_id": "q1"}, {"question_id": ""}]}}}
    }
    expect = records({"expectation": "not_empty", "column": "question_id"}, path="$..responses")
    result = only(expect, observed(body))
    assert not result.passed and result.actual["unexpected_values"] == [""]


def test_records_checks_print_nothing(capfd: pytest.CaptureFixture[str]) -> None:
    only(records({"expectation": "unique", "column": "id"}), observed(EXECUTIONS))
    captured = capfd.readouterr()
    assert "Calculating Metrics" not in captured.err  # GX's tqdm bars are off
    assert (captured.out, captured.err) == ("", "")


def test_records_checks_from_several_threads() -> None:
    expect = Expectations.model_validate(records({"expectation": "not_empty", "column": "id"}))

    def run(i: int) -> tuple[bool, list[Any]]:
        rows = [{"id": f"e{i}"}, {"id": "" if i % 2 else f"f{i}"}]
        result = evaluate(expect, with_rows(*rows))[0]
        return result.passed, result.actual["unexpected_values"]

    with ThreadPoolExecutor(max_workers=4) as pool:
        outcomes = list(pool.map(run, range(16)))
    assert outcomes == [(i % 2 == 0, [""] if i % 2 else []) for i in range(16)]


# --- all together, and the import cost ------------------------------------------------------------


def test_all_kinds_in_field_order() -> None:
    expect = Expectations(
        status="2xx",
        should_not_fail=True,
        min_items={"$.executions": 1},
        json_schema={"type": "object", "required": ["executions"]},
        max_latency_ms=1_000,
        body_contains=["exec-1"],
        **records({"expectation": "not_empty", "column": "id"}),
    )
    results = evaluate(expect, observed(EXECUTIONS))
    assert [r.name for r in results] == [
        "status",
        "should_not_fail",
        "min_items $.executions",
        "json_schema",
        "max_latency_ms",
        "body_contains 'exec-1'",
        "records $.executions: not_empty id",
    ]
    assert all(r.passed for r in results), [r.message for r in results if not r.passed]


def test_importing_the_module_leaves_great_expectations_and_pandas_unimported() -> None:
    code = (
        "import sys, immunity.tasks.shared.expectations; "
        "loaded = {'great_expectations', 'pandas'} & set(sys.modules); "
        "assert not loaded, loaded"
    )
    subprocess.run([sys.executable, "-c", code], cwd=ROOT, check=True, timeout=60)
