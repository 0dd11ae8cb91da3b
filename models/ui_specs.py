"""What a UI test does in the browser: steps over pages, selectors and what they must show.

A `ui` test's `spec` column holds a `UiSpec`. Selectors are CSS, or XPath when they start with
`/` or `(` (or `by: xpath`). Paths are relative to the environment's base URL.
"""

from __future__ import annotations

from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, model_validator

__all__ = ["UI_ACTIONS", "UiSpec", "UiStep"]

UI_ACTIONS = (
    "open",  # path
    "click",  # selector
    "type",  # selector, value (replaces the field's text)
    "select",  # selector of a <select>, value (an option's value or visible text)
    "submit",  # selector of a form or an element inside it
    "wait",  # selector (until present and visible) or text (until on the page)
    "assert_text",  # text, and selector (within it) or the whole page
    "assert_title",  # text: contained in the title
    "assert_url",  # text: contained in the current URL
    "assert_count",  # selector, count (exact), or min_count
    "assert_no_console_errors",  # no SEVERE entry in the browser's console since the test began
    "assert_no_failed_requests",  # no request failed or answered ≥ 400 since the test began
)
_NEEDS_SELECTOR = {"click", "type", "select", "submit", "assert_count"}
_NEEDS_TEXT = {"assert_title", "assert_url"}


class UiStep(BaseModel):
    """One browser action or assertion."""

    model_config = ConfigDict(extra="forbid")

    action: Literal[
        "open",
        "click",
        "type",
        "select",
        "submit",
        "wait",
        "assert_text",
        "assert_title",
        "assert_url",
        "assert_count",
        "assert_no_console_errors",
        "assert_no_failed_requests",
    ]
    path: str | None = Field(default=None, description="For `open`: a path starting with '/'.")
    selector: str | None = None
    by: Literal["css", "xpath"] | None = Field(
        default=None, description="Default: xpath when the selector starts with / or (, else css."
    )
    value: str | None = Field(default=None, description="For `type` and `select`.")
    text: str | None = None
    count: int | None = Field(default=None, ge=0)
    min_count: int | None = Field(default=None, ge=0)
    timeout_s: float | None = Field(default=None, gt=0, le=120)

    @model_validator(mode="after")
    def _arguments(self) -> UiStep:
        if self.action == "open" and not (self.path or "").startswith("/"):
            raise ValueError("`open` needs a path starting with '/'")
        if self.action in _NEEDS_SELECTOR and not self.selector:
            raise ValueError(f"`{self.action}` needs a selector")
        if self.action in {"type", "select"} and self.value is None:
            raise ValueError(f"`{self.action}` needs a value")
        if self.action in _NEEDS_TEXT and not self.text:
            raise ValueError(f"`{self.action}` needs text")
        if self.action == "wait" and not (self.selector or self.text):
            raise ValueError("`wait` needs a selector or text")
        if self.action == "assert_text" and self.text is None:
            raise ValueError("`assert_text` needs text")
        if self.action == "assert_count" and self.count is None and self.min_count is None:
            raise ValueError("`assert_count` needs count or min_count")
        return self

    @property
    def locator(self) -> tuple[str, str]:
        """Return (strategy, selector) for Selenium's `find_element(s)`: css or xpath."""
        assert self.selector is not None
        by = self.by or ("xpath" if self.selector.startswith(("/", "(")) else "css")
        return ("xpath" if by == "xpath" else "css selector"), self.selector


class UiSpec(BaseModel):
    """The steps of a UI test; the first must open a page."""

    model_config = ConfigDict(extra="forbid")

    steps: list[UiStep] = Field(min_length=1, max_length=200)
    from_report: bool = Field(
        default=False,
        description="Steps derived from a report's breadcrumbs: untrusted, so the environment's"
        " replay rules always hold for them (a test's allow_unsafe never lifts them).",
    )

    @model_validator(mode="after")
    def _starts_with_open(self) -> UiSpec:
        if self.steps[0].action != "open":
            raise ValueError("a UI test's first step opens a page (`action: open`)")
        return self

    def dump(self) -> dict[str, Any]:
        """Return the stored `spec` column."""
        return self.model_dump(mode="json", exclude_none=True, exclude_defaults=True)
