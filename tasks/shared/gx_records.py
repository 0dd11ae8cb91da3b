"""Great Expectations checks over the records of a response (`Expectations.records`).

Importing great_expectations costs ~6 s (pandas, scipy, altair), so it happens on the first
records check of a process, never at import of this module. One ephemeral data context with a
pandas data source, a dataframe asset and a whole-dataframe batch definition is built then and
reused: each check only builds a one-column DataFrame and validates one expectation against it.
"""

from __future__ import annotations

import os
import threading
import warnings
from dataclasses import dataclass
from functools import cache
from typing import Any

from immunity.models.results import CheckResult
from immunity.models.specs import RecordExpectation, RecordsCheck

__all__ = ["evaluate_records", "record_check_name", "warm_up"]

_SAMPLE = 5  # unexpected values reported per check
_MAX_VALUE_CHARS = 100
# GX's context, data source and execution engine are shared; one validation at a time keeps a
# batch from being swapped under another thread's validator.
_LOCK = threading.RLock()
_DESCRIPTIONS = {
    "not_null": "null",
    "not_empty": "null or empty",
    "unique": "duplicated",
}


@dataclass(frozen=True)
class _Gx:
    expectations: Any  # the great_expectations.expectations module
    pandas: Any
    batch_definition: Any


@cache
def _gx() -> _Gx:
    # Older GX 1.x releases read this switch at import to send usage statistics (1.24 has no
    # analytics code left); set before import so no version phones home.
    os.environ.setdefault("GX_ANALYTICS_ENABLED", "false")
    with warnings.catch_warnings():
        # GX 1.24's file_path_data_connector imports the stdlib's deprecated `sre_constants` and
        # `sre_parse`: the import's only warnings, and ones a `-W error` run would fail on.
        warnings.filterwarnings(
            "ignore", message=r"module 'sre_\w+' is deprecated", category=DeprecationWarning
        )
        import great_expectations as gx
        import pandas as pd
        from great_expectations.data_context.types.base import ProgressBarsConfig

    context = gx.get_context(mode="ephemeral")
    # tqdm bars on stderr for every validation otherwise ("Calculating Metrics: ...").
    context.variables.progress_bars = ProgressBarsConfig(globally=False, metric_calculations=False)
    asset = context.data_sources.add_pandas("immunity").add_dataframe_asset("records")
    return _Gx(gx.expectations, pd, asset.add_batch_definition_whole_dataframe("whole"))


def warm_up() -> None:
    """Import Great Expectations and build its context now rather than at the first check."""
    with _LOCK:
        _gx()


def record_check_name(path: str, expect: RecordExpectation) -> str:
    """Return the check's name, e.g. `records $.executions: not_null id`."""
    return f"records {path}: {expect.expectation} {expect.column}"


def _expectation(gx: _Gx, expect: RecordExpectation) -> Any:
    E = gx.expectations
    column, mostly = expect.column, expect.mostly
    if expect.expectation in ("not_null", "not_empty"):
        # not_empty runs on a column where "" became null, so one `mostly` covers both kinds.
        return E.ExpectColumnValuesToNotBeNull(column=column, mostly=mostly)
    if expect.expectation == "in_set":
        return E.ExpectColumnValuesToBeInSet(
            column=column, value_set=expect.value_set, mostly=mostly
        )
    if expect.expectation == "between":
        return E.ExpectColumnValuesToBeBetween(
            column=column, min_value=expect.min_value, max_value=expect.max_value, mostly=mostly
        )
    if expect.expectation == "unique":
        return E.ExpectColumnValuesToBeUnique(column=column, mostly=mostly)
    raise ValueError(f"unknown records expectation {expect.expectation!r}")


def _describe(expect: RecordExpectation) -> str:
    if expect.expectation == "in_set":
        return f"not in {expect.value_set}"
    if expect.expectation == "between":
        low = "-inf" if expect.min_value is None else f"{expect.min_value:g}"
        high = "inf" if expect.max_value is None else f"{expect.max_value:g}"
        return f"outside [{low}, {high}]"
    return _DESCRIPTIONS[expect.expectation]


def _small(value: Any) -> Any:
    if isinstance(value, str) and len(value) > _MAX_VALUE_CHARS:
        return value[: _MAX_VALUE_CHARS - 1] + "…"
    return value


def _raised(result: Any) -> str | None:
    """Return the message of the exception GX caught while validating, if it caught one."""
    info = result.exception_info or {}
    # One expectation's info is flat; the metrics it needed each get their own entry.
    entries = [info] if "raised_exception" in info else list(info.values())
    for entry in entries:
        if isinstance(entry, dict) and entry.get("raised_exception"):
            return str(entry.get("exception_message") or "unknown error")
    return None


def _check(path: str, records: list[dict[str, Any]], expect: RecordExpectation) -> CheckResult:
    name = record_check_name(path, expect)
    expected = expect.model_dump(mode="json", exclude_defaults=True)
    column = expect.column

    def failed(message: str, actual: Any = None) -> CheckResult:
        return CheckResult(
            name=name, passed=False, expected=expected, actual=actual, message=message
        )

    if records and not any(column in record for record in records):
        return failed(f"column {column!r} is in none of the {len(records)} records at {path}")
    values = [record.get(column) for record in records]
    if expect.expectation == "not_empty":
        values = [None if value == "" else value for value in values]
    with _LOCK:
        gx = _gx()
        # object dtype keeps the JSON values as they are: no int→float or str-dtype coercion.
        frame = gx.pandas.DataFrame({column: gx.pandas.Series(values, dtype=object)})
        try:
            batch = gx.batch_definition.get_batch(batch_parameters={"dataframe": frame})
            result = batch.validate(_expectation(gx, expect))
        except Exception as error:  # a pure evaluator reports GX's failures, it does not raise
            return failed(f"Great Expectations could not run {expect.expectation}: {error}")
    error_message = _raised(result)
    if error_message is not None:
        return failed(
            f"Great Expectations could not run {expect.expectation} on {column!r}: {error_message}"
        )
    stats = result.result or {}
    unexpected = int(stats.get("unexpected_count") or 0)
    indexes = list(stats.get("partial_unexpected_index_list") or [])[:_SAMPLE]
    # The original JSON values, not GX's copies: `not_empty` nulled the empty strings.
    sample = [_small(records[int(index)].get(column)) for index in indexes]
    actual = {
        "records": len(records),
        "unexpected_count": unexpected,
        "unexpected_values": sample,
    }
    if result.success:
        return CheckResult(name=name, passed=True, expected=expected, actual=actual)
    share = "" if expect.mostly == 1 else f" (more than mostly={expect.mostly:g} allows)"
    return failed(
        f"{unexpected} of {len(records)} records at {path} have {column!r} {_describe(expect)},"
        f" e.g. {sample!r}{share}",
        actual,
    )


def evaluate_records(check: RecordsCheck, records: list[dict[str, Any]]) -> list[CheckResult]:
    """Return one CheckResult per expectation of `check`, run over `records` (a list of objects)."""
    return [_check(check.path, records, expect) for expect in check.expect]
