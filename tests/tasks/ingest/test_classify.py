"""Classification: the six default categories, their severities, and custom rules first."""

from __future__ import annotations

import pytest

from immunity.models.enums import Category, Severity
from immunity.models.settings import ClassificationRule
from immunity.tasks.ingest.classify import Classification, classify


@pytest.mark.parametrize(
    ("error_type", "message", "status", "expected"),
    [
        ("TimeoutError", "", None, Category.AI_TIMEOUT),
        ("asyncio.TimeoutError", "", None, Category.AI_TIMEOUT),
        ("httpx.ReadTimeout", "", None, Category.AI_TIMEOUT),
        ("ConnectTimeout", "", None, Category.AI_TIMEOUT),
        ("openai.APITimeout", "", None, Category.AI_TIMEOUT),
        ("httpx.TimeoutException", "", None, Category.AI_TIMEOUT),
        ("socket.timeout", "", None, Category.AI_TIMEOUT),
        ("RuntimeError", "The model call timed out after 30s", None, Category.AI_TIMEOUT),
        ("RuntimeError", "upstream Timeout", None, Category.AI_TIMEOUT),
        ("HTTPError", "gateway", 504, Category.AI_TIMEOUT),
        ("HTTPError", "", 408, Category.AI_TIMEOUT),
        ("HTTPError", "slow down", 429, Category.RATE_LIMIT),
        ("openai.RateLimitError", "", None, Category.RATE_LIMIT),
        ("RuntimeError", "Rate limit reached for gpt-4", None, Category.RATE_LIMIT),
        ("HTTPError", "429 Too Many Requests", None, Category.RATE_LIMIT),
        ("ImportError", "cannot import name 'x'", None, Category.DEPENDENCY_ERROR),
        ("ModuleNotFoundError", "No module named 'foo'", None, Category.DEPENDENCY_ERROR),
        ("RuntimeError", "dependency validation failed", None, Category.DEPENDENCY_ERROR),
        ("DependencyConflict", "", None, Category.DEPENDENCY_ERROR),
        ("SyntaxError", "invalid syntax", None, Category.SYNTAX_ERROR),
        ("json.decoder.JSONDecodeError", "", None, Category.SYNTAX_ERROR),
        ("ValueError", "Expecting value: line 1 column 1 (char 0)", None, Category.SYNTAX_ERROR),
        ("Error", "Unexpected token < in JSON at position 0", None, Category.SYNTAX_ERROR),
        ("pydantic.ValidationError", "1 error", None, Category.VALIDATION_ERROR),
        ("ValueError", "Field required", None, Category.VALIDATION_ERROR),
        ("ValueError", "invalid email format", None, Category.VALIDATION_ERROR),
        ("KeyError", "response does not match schema", None, Category.VALIDATION_ERROR),
        ("KeyError", "'name'", None, Category.UNKNOWN),
        ("ZeroDivisionError", "division by zero", 500, Category.UNKNOWN),
    ],
)
def test_defaults_classify_each_category(
    error_type: str, message: str, status: int | None, expected: Category
) -> None:
    assert classify(error_type, message, status).category is expected


def test_default_severities_follow_the_seed() -> None:
    assert classify("TimeoutError", "") == Classification(Category.AI_TIMEOUT, Severity.HIGH)
    assert classify("RateLimitError", "") == Classification(Category.RATE_LIMIT, Severity.MEDIUM)
    assert classify("ImportError", "") == Classification(Category.DEPENDENCY_ERROR, Severity.HIGH)
    assert classify("SyntaxError", "") == Classification(Category.SYNTAX_ERROR, Severity.MEDIUM)
    assert classify("ValidationError", "") == Classification(
        Category.VALIDATION_ERROR, Severity.HIGH
    )
    assert classify("OSError", "disk") == Classification(Category.UNKNOWN, Severity.MEDIUM)


def test_runtime_out_of_memory_is_not_a_timeout() -> None:
    assert classify("RuntimeError", "CUDA runtime out of memory").category is Category.UNKNOWN


def test_custom_rule_wins_over_the_defaults() -> None:
    rule = ClassificationRule(
        category="rate_limit", severity="critical", error_types=["ReadTimeout"]
    )
    result = classify("httpx.ReadTimeout", "timed out", rules=[rule])
    assert result == Classification(Category.RATE_LIMIT, Severity.CRITICAL)


def test_rule_category_and_severity_are_case_insensitive() -> None:
    rule = ClassificationRule(category="AI_TIMEOUT", severity="Critical", status_codes=[599])
    assert classify("E", "", 599, [rule]) == Classification(Category.AI_TIMEOUT, Severity.CRITICAL)


def test_first_matching_rule_wins() -> None:
    rules = [
        ClassificationRule(category="unknown", severity="low", status_codes=[418]),
        ClassificationRule(category="validation_error", severity="high", message_patterns=["x"]),
        ClassificationRule(category="syntax_error", severity="low", message_patterns=["teapot"]),
    ]
    assert classify("E", "teapot", 418, rules) == Classification(Category.UNKNOWN, Severity.LOW)
    assert classify("E", "teapot", 200, rules) == Classification(
        Category.SYNTAX_ERROR, Severity.LOW
    )


def test_rule_error_types_match_bare_and_dotted_names_but_not_other_modules() -> None:
    dotted = ClassificationRule(
        category="unknown", severity="low", error_types=["httpx.ReadTimeout"]
    )
    bare = ClassificationRule(category="unknown", severity="low", error_types=["ReadTimeout"])
    low = Classification(Category.UNKNOWN, Severity.LOW)
    assert classify("httpx.ReadTimeout", "", rules=[dotted]) == low
    assert classify("ReadTimeout", "", rules=[dotted]) == low
    assert classify("httpx.ReadTimeout", "", rules=[bare]) == low
    assert classify("other.ReadTimeout", "", rules=[dotted]).category is Category.AI_TIMEOUT
    assert classify("ReadTimeoutX", "", rules=[bare]).category is Category.AI_TIMEOUT


def test_rule_message_patterns_are_case_insensitive_regexes() -> None:
    rule = ClassificationRule(
        category="dependency_error", severity="critical", message_patterns=[r"quota \d+ exceeded"]
    )
    assert classify("E", "QUOTA 42 EXCEEDED", rules=[rule]).severity is Severity.CRITICAL
    assert classify("E", "quota exceeded", rules=[rule]).category is Category.UNKNOWN


def test_rule_criteria_must_all_hold() -> None:
    rule = ClassificationRule(
        category="rate_limit", severity="low", error_types=["HTTPError"], status_codes=[503]
    )
    assert classify("HTTPError", "", 503, [rule]).category is Category.RATE_LIMIT
    assert classify("HTTPError", "", 500, [rule]).category is Category.UNKNOWN
    assert classify("OSError", "", 503, [rule]).category is Category.UNKNOWN


def test_an_empty_rule_matches_nothing() -> None:
    rule = ClassificationRule(category="rate_limit", severity="low")
    assert classify("OSError", "boom", rules=[rule]).category is Category.UNKNOWN


def test_bad_regex_raises_a_value_error_naming_it() -> None:
    rules = [
        ClassificationRule(category="unknown", severity="low", error_types=["OSError"]),
        ClassificationRule(category="unknown", severity="low", message_patterns=["(unclosed"]),
    ]
    with pytest.raises(ValueError, match=r"\(unclosed"):
        classify("OSError", "x", rules=rules)


def test_unknown_category_in_a_rule_raises() -> None:
    rule = ClassificationRule(category="catastrophe", severity="low", error_types=["E"])
    with pytest.raises(ValueError, match="catastrophe"):
        classify("E", "", rules=[rule])
