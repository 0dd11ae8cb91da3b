"""Pure evaluation of a test's expectations against one HTTP response.

`evaluate` returns one `CheckResult` per expectation that is set, in the order of the fields of
`Expectations`. Nothing here does I/O. Records checks run Great Expectations, which is imported
only when a test actually has `records` (see `tasks.gx_records`): importing this module stays
cheap and pulls in neither great_expectations nor pandas.
"""

from __future__ import annotations

from functools import lru_cache
from typing import Any

from jsonpath_ng import JSONPath
from jsonpath_ng.ext import parse as _parse_jsonpath
from jsonschema.exceptions import best_match
from jsonschema.validators import validator_for

from immunity.models.results import CheckResult, Observed
from immunity.models.specs import Expectations, RecordExpectation, RecordsCheck, parse_status
from immunity.tasks.shared.gx_records import evaluate_records, record_check_name

__all__ = ["evaluate", "json_values"]

# Bounds what ends up in stored results: a schema error's message can quote the whole body.
_MAX_MESSAGE = 300
_MAX_LABEL = 40


@lru_cache(maxsize=1024)
def _compiled(path: str) -> JSONPath:
    try:
        return _parse_jsonpath(path)
    except Exception as error:  # lexer and parser errors share no useful base beyond Exception
        raise ValueError(f"invalid JSONPath {path!r}: {error}") from error


def json_values(path: str, document: Any) -> list[Any]:
    """Return the values found at JSONPath `path` in `document` (empty when nothing matches)."""
    return [match.value for match in _compiled(path).find(document)]


def _shorten(text: str, limit: int = _MAX_MESSAGE) -> str:
    return text if len(text) <= limit else text[: limit - 1] + "…"


def _type_name(value: Any) -> str:
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "a boolean"
    if isinstance(value, int | float):
        return "a number"
    if isinstance(value, str):
        return "a string"
    if isinstance(value, dict):
        return "an object"
    return type(value).__name__


def _list_at(path: str, observed: Observed) -> tuple[list[Any] | None, str]:
    """Return the list at `path` in the body, or None and why there is none."""
    if not observed.is_json:
        return None, f"the response body is not JSON, so {path} cannot be read"
    try:
        values = json_values(path, observed.json_body)
    except ValueError as error:
        return None, str(error)
    if not values:
        return None, f"{path} is missing from the response body"
    # One path, one list: counting several matches would hide which list was meant.
    if len(values) > 1:
        return None, f"{path} matches {len(values)} values, not one list"
    value = values[0]
    if not isinstance(value, list):
        return None, f"{path} is {_type_name(value)}, not a list"
    return value, ""


def _status(expected: int | str, observed: Observed) -> CheckResult:
    low, high = parse_status(expected)
    passed = low <= observed.status <= high
    return CheckResult(
        name="status",
        passed=passed,
        expected=expected,
        actual=observed.status,
        message="" if passed else f"status {observed.status}, expected {expected}",
    )


def _should_not_fail(observed: Observed) -> CheckResult:
    passed = observed.status < 400
    return CheckResult(
        name="should_not_fail",
        passed=passed,
        expected="< 400",
        actual=observed.status,
        message="" if passed else f"the request failed with status {observed.status}",
    )


def _min_items(path: str, least: int, observed: Observed) -> CheckResult:
    name = f"min_items {path}"
    items, why = _list_at(path, observed)
    if items is None:
        return CheckResult(name=name, passed=False, expected=least, actual=None, message=why)
    passed = len(items) >= least
    message = "" if passed else f"{path} has {len(items)} items, expected at least {least}"
    return CheckResult(name=name, passed=passed, expected=least, actual=len(items), message=message)


def _json_schema(schema: dict[str, Any], observed: Observed) -> CheckResult:
    name = "json_schema"
    if not observed.is_json:
        return CheckResult(
            name=name,
            passed=False,
            expected="valid",
            actual=None,
            message="the response body is not JSON, so it cannot match the schema",
        )
    error = best_match(validator_for(schema)(schema).iter_errors(observed.json_body))
    if error is None:
        return CheckResult(name=name, passed=True, expected="valid", actual="valid")
    message = _shorten(error.message)
    return CheckResult(
        name=name,
        passed=False,
        expected="valid",
        actual={"message": message, "path": error.json_path, "validator": str(error.validator)},
        message=f"the body does not match the schema at {error.json_path}: {message}",
    )


def _max_latency(limit: float, observed: Observed) -> CheckResult:
    latency = round(observed.latency_ms, 1)
    passed = observed.latency_ms <= limit
    return CheckResult(
        name="max_latency_ms",
        passed=passed,
        expected=limit,
        actual=latency,
        message="" if passed else f"the response took {latency} ms, more than {limit:g} ms",
    )


def _body_contains(text: str, observed: Observed) -> CheckResult:
    label = repr(_shorten(text, _MAX_LABEL))
    passed = text in observed.text
    return CheckResult(
        name=f"body_contains {label}",
        passed=passed,
        expected=text,
        actual=passed,
        message="" if passed else f"the body does not contain {label}",
    )


def _records(check: RecordsCheck, observed: Observed) -> list[CheckResult]:
    records, why = _list_at(check.path, observed)
    if records is not None:
        for index, record in enumerate(records):
            if not isinstance(record, dict):
                records = None
                why = f"{check.path}[{index}] is {_type_name(record)}, not an object"
                break
    if records is None:
        return [_unreadable(check.path, expect, why) for expect in check.expect]
    return evaluate_records(check, records)


def _unreadable(path: str, expect: RecordExpectation, why: str) -> CheckResult:
    return CheckResult(
        name=record_check_name(path, expect),
        passed=False,
        expected=expect.model_dump(mode="json", exclude_defaults=True),
        actual=None,
        message=why,
    )


def evaluate(expect: Expectations, observed: Observed) -> list[CheckResult]:
    """Return one CheckResult per expectation set in `expect`, checked against `observed`."""
    results: list[CheckResult] = []
    if expect.status is not None:
        results.append(_status(expect.status, observed))
    if expect.should_not_fail:
        results.append(_should_not_fail(observed))
    for path, least in expect.min_items.items():
        results.append(_min_items(path, least, observed))
    if expect.json_schema is not None:
        results.append(_json_schema(expect.json_schema, observed))
    if expect.max_latency_ms is not None:
        results.append(_max_latency(expect.max_latency_ms, observed))
    for text in expect.body_contains:
        results.append(_body_contains(text, observed))
    for check in expect.records:
        results.extend(_records(check, observed))
    return results
