"""What a test sends and what it expects: HTTP requests, scenario steps and expectations.

A test's `spec` column holds an `HttpSpec` (kind `http`) or a `ScenarioSpec` (kind `scenario`);
its `expectations` column holds `Expectations`. Scenario steps capture values from earlier
responses by JSONPath and use them as `${name}` in later paths, headers and bodies (a body value
that is exactly `${name}` takes the captured value with its JSON type).
"""

from __future__ import annotations

import json
import re
from functools import lru_cache
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

from immunity.models.ui_specs import UiSpec

__all__ = [
    "REPLAY_HEADER",
    "UNSAFE_METHODS",
    "Expectations",
    "HttpSpec",
    "Poll",
    "RecordExpectation",
    "RecordsCheck",
    "ScenarioSpec",
    "Selection",
    "Step",
    "TestCase",
    "TestDefinition",
    "parse_status",
]

# Every request immunity sends carries this header, so a target that reports its failures back to
# immunity does not count a replay as a production occurrence: `run:<test id>` for suite runs,
# `verify:<test id>` for reproduction checks (whose reported signature becomes evidence), each
# signed with an expiry (tasks/shared/replay_marker.py): a report cannot forge one.
REPLAY_HEADER = "X-Immunity-Replay"
UNSAFE_METHODS = frozenset({"POST", "PUT", "PATCH", "DELETE"})
_METHODS = frozenset({"GET", "HEAD", "OPTIONS", *UNSAFE_METHODS})
_STATUS = re.compile(r"^(?:([1-5])xx|(\d{3})(?:-(\d{3}))?)$")
_NAME = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")


@lru_cache(maxsize=1_024)
def _check_schema(text: str) -> None:
    # Checking a schema against its meta-schema costs ~1 ms; a suite repeats the same few schemas.
    from jsonschema.validators import validator_for

    schema = json.loads(text)
    validator_for(schema).check_schema(schema)


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid")


def parse_status(expected: int | str) -> tuple[int, int]:
    """Return the inclusive status range meant by `404`, `"2xx"` or `"200-299"`."""
    if isinstance(expected, int):
        if not 100 <= expected <= 599:
            raise ValueError(f"status {expected} is not an HTTP status code")
        return expected, expected
    match = _STATUS.match(expected.strip())
    if not match:
        raise ValueError(f"status {expected!r}: use a code (404), a class ('2xx') or '200-299'")
    klass, low, high = match.groups()
    if klass:
        return int(klass) * 100, int(klass) * 100 + 99
    lo, hi = int(low), int(high or low)
    if not (100 <= lo <= hi <= 599):
        raise ValueError(f"status {expected!r} is not a range of HTTP status codes")
    return lo, hi


class RecordExpectation(_Strict):
    """One Great Expectations check over a column of records (seed 004's empty `id`)."""

    expectation: Literal["not_null", "in_set", "between", "unique", "not_empty"]
    column: str = Field(min_length=1)
    value_set: list[Any] | None = None
    min_value: float | None = None
    max_value: float | None = None
    mostly: float = Field(default=1.0, gt=0, le=1)

    @model_validator(mode="after")
    def _arguments(self) -> RecordExpectation:
        if self.expectation == "in_set" and not self.value_set:
            raise ValueError("in_set needs value_set")
        if self.expectation == "between" and self.min_value is None and self.max_value is None:
            raise ValueError("between needs min_value or max_value")
        return self


class RecordsCheck(_Strict):
    """Expectations over the list of records found at a JSON path of the response."""

    path: str = Field(min_length=1, description="JSONPath to a list of objects, e.g. `$.items`.")
    expect: list[RecordExpectation] = Field(min_length=1)


class Expectations(_Strict):
    """What a response must satisfy; every field is optional and all given ones must hold."""

    status: int | str | None = Field(
        default=None, description="A code (200), a class ('2xx') or a range ('200-299')."
    )
    should_not_fail: bool = Field(
        default=False, description="The request completes with a status below 400."
    )
    min_items: dict[str, int] = Field(
        default_factory=dict, description="JSONPath → least number of items in the list there."
    )
    json_schema: dict[str, Any] | None = Field(
        default=None, description="A JSON Schema the response body must validate against."
    )
    max_latency_ms: float | None = Field(default=None, gt=0)
    body_contains: list[str] = Field(default_factory=list)
    records: list[RecordsCheck] = Field(
        default_factory=list, description="Great Expectations checks over lists of records."
    )

    @field_validator("status")
    @classmethod
    def _status(cls, value: int | str | None) -> int | str | None:
        if value is not None:
            parse_status(value)
        return value

    @field_validator("json_schema")
    @classmethod
    def _schema(cls, value: dict[str, Any] | None) -> dict[str, Any] | None:
        if value is not None:
            _check_schema(json.dumps(value, sort_keys=True, default=str))
        return value


class HttpSpec(_Strict):
    """One HTTP request, relative to an environment's base URL."""

    method: str = "GET"
    path: str = Field(min_length=1)
    headers: dict[str, str] = Field(default_factory=dict)
    body: Any = None
    timeout_s: float | None = Field(default=None, gt=0, le=600)

    @field_validator("method")
    @classmethod
    def _method(cls, value: str) -> str:
        method = value.upper()
        if method not in _METHODS:
            raise ValueError(f"method {value!r} is not one of {', '.join(sorted(_METHODS))}")
        return method

    @field_validator("path")
    @classmethod
    def _path(cls, value: str) -> str:
        if not value.startswith("/") and not value.startswith("${"):
            raise ValueError(f"path {value!r} must start with '/' (it joins the base URL)")
        return value


class Poll(_Strict):
    """Send the step again until its expectations hold (a job moving to `completed`)."""

    attempts: int = Field(default=20, ge=1, le=1_000)
    interval_s: float = Field(default=0.1, ge=0, le=60)


class Step(HttpSpec):
    """One call of a scenario, what it captures for later steps, and what it expects."""

    name: str = Field(min_length=1, max_length=100)
    capture: dict[str, str] = Field(
        default_factory=dict, description="Variable → JSONPath into this step's response body."
    )
    expect: Expectations = Field(default_factory=Expectations)
    poll: Poll | None = None

    @field_validator("capture")
    @classmethod
    def _capture_names(cls, value: dict[str, str]) -> dict[str, str]:
        for name in value:
            if not _NAME.match(name):
                raise ValueError(f"capture name {name!r} must be an identifier")
        return value


class ScenarioSpec(_Strict):
    """Ordered steps sharing captured variables (create customer → order → pay → ship)."""

    variables: dict[str, Any] = Field(default_factory=dict)
    steps: list[Step] = Field(min_length=1, max_length=100)

    @model_validator(mode="after")
    def _unique_steps(self) -> ScenarioSpec:
        names = [step.name for step in self.steps]
        if len(names) != len(set(names)):
            raise ValueError("step names must be unique within a scenario")
        return self


class TestDefinition(_Strict):
    """A test as a person writes it (YAML file or Python): what `immunity tests add` reads."""

    __test__ = False  # not a pytest class

    name: str = Field(min_length=1, max_length=200, pattern=r"^[A-Za-z0-9_.:-]+$")
    description: str = ""
    kind: Literal["http", "scenario", "ui"] | None = Field(
        default=None,
        description="Default: `scenario` or `ui` when that body is given, else `http`.",
    )
    type: Literal["smoke", "regression", "contract", "integration"] = "smoke"
    tags: list[str] = Field(default_factory=list)
    environment: str = Field(default="staging", min_length=1, max_length=64)
    allow_unsafe: bool = Field(
        default=False, description="May send POST/PUT/PATCH/DELETE to a production environment."
    )
    request: HttpSpec | None = None
    scenario: ScenarioSpec | None = None
    ui: UiSpec | None = None
    expect: Expectations = Field(default_factory=Expectations)

    @model_validator(mode="after")
    def _one_body(self) -> TestDefinition:
        bodies = {"http": self.request, "scenario": self.scenario, "ui": self.ui}
        given = [kind for kind, body in bodies.items() if body is not None]
        if self.kind is None:
            self.kind = given[0] if len(given) == 1 else "http"
        if given != [self.kind]:
            field = "request" if self.kind == "http" else self.kind
            raise ValueError(f"a {self.kind} test needs `{field}` (and no other body)")
        return self

    def spec(self) -> dict[str, Any]:
        """Return the stored `spec` column."""
        if self.kind == "ui":
            assert self.ui is not None
            return self.ui.dump()
        body = self.request if self.kind == "http" else self.scenario
        assert body is not None
        return body.model_dump(mode="json", exclude_defaults=True)


class TestCase(BaseModel):
    """A stored test resolved for one run: what the runner needs and nothing else."""

    __test__ = False

    test_id: int
    name: str
    kind: str
    spec: dict[str, Any]
    expectations: dict[str, Any]
    base_url: str
    environment: str
    is_production: bool = False
    allow_unsafe: bool = False
    marker: str = "run"
    allowed_methods: list[str] | None = Field(
        default=None,
        description="The methods it may send there (None: any, but only GET, HEAD and OPTIONS"
        " in production unless allow_unsafe).",
    )
    allowed_headers: list[str] | None = Field(
        default=None,
        description="Lower-case names of the only request headers it may send (None: any but"
        " those never sent); a generated test's allowlist.",
    )


class Selection(_Strict):
    """Which stored tests a run takes; every list narrows, empty lists mean all active tests."""

    ids: list[int] = Field(default_factory=list)
    names: list[str] = Field(default_factory=list)
    tags: list[str] = Field(default_factory=list, description="Tests with any of these tags.")
    types: list[str] = Field(default_factory=list)
    kinds: list[str] = Field(default_factory=list)
    include_inactive: bool = False
