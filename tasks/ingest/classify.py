"""Classification of a failure into one of the seed's categories, with its default severity.

Custom rules from the settings are tried first (first match wins), then the built-in defaults in
this order: ai_timeout, rate_limit, dependency_error, syntax_error, validation_error, unknown.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass
from functools import lru_cache

from immunity.models.enums import Category, Severity
from immunity.models.settings import ClassificationRule

__all__ = ["Classification", "classify"]


@dataclass(frozen=True)
class Classification:
    """The category of a failure and the severity that goes with it."""

    category: Category
    severity: Severity


def _type_name(error_type: str) -> str:
    # Clients send either a bare name or a dotted path (`httpx.ReadTimeout`); the defaults only
    # look at the class name so both spellings classify alike.
    return error_type.strip().rsplit(".", 1)[-1]


# --- defaults ------------------------------------------------------------------------------------
# Everything is matched on lower-cased text. Each message regex sits behind a substring check (a
# C-speed `in`), so a message that names none of the keywords costs no regex scan at all.

_TIMEOUT_STATUS = frozenset({408, 504})
# `socket.timeout` is lower-case and `httpx.TimeoutException` does not end in "Timeout".
_TIMEOUT_TYPE = ("timeout", "time_out")
# A bare "time out" needs word boundaries ("runtime out of memory" is not a timeout).
_TIMEOUT_MESSAGE = (
    ("time", "deadline"),
    re.compile(r"timeout|\btimed?[\s-]?outs?\b|deadline exceeded"),
)

_RATE_LIMIT_STATUS = frozenset({429})
_RATE_LIMIT_TYPE = ("ratelimit", "rate_limit", "toomanyrequests", "too_many_requests", "throttl")
_RATE_LIMIT_MESSAGE = (
    ("rate", "many", "throttl"),
    re.compile(r"rate[\s_-]?limit|too\s+many\s+requests|throttl"),
)

_DEPENDENCY_TYPES = frozenset({"ImportError", "ModuleNotFoundError"})
_DEPENDENCY_WORDS = ("dependenc", "no module named")

_SYNTAX_TYPES = frozenset({"SyntaxError", "IndentationError", "TabError", "JSONDecodeError"})
_SYNTAX_MESSAGE = (
    ("json", "expecting value", "unexpected token", "syntax"),
    re.compile(r"json[\s_-]?decode|expecting value|unexpected token|syntax\s*error|invalid syntax"),
)

_VALIDATION_TYPE = ("validation", "schema")
_VALIDATION_MESSAGE = (
    ("valid", "schema", "required"),
    re.compile(r"validat|\binvalid|\bschema|required\s+field|field\s+required|missing\s+required"),
)


_AI_TIMEOUT = Classification(Category.AI_TIMEOUT, Severity.HIGH)
_RATE_LIMIT = Classification(Category.RATE_LIMIT, Severity.MEDIUM)
_DEPENDENCY_ERROR = Classification(Category.DEPENDENCY_ERROR, Severity.HIGH)
_SYNTAX_ERROR = Classification(Category.SYNTAX_ERROR, Severity.MEDIUM)
_VALIDATION_ERROR = Classification(Category.VALIDATION_ERROR, Severity.HIGH)
_UNKNOWN = Classification(Category.UNKNOWN, Severity.MEDIUM)


def _mentions(text: str, words: tuple[str, ...]) -> bool:
    return any(map(text.__contains__, words))  # no generator frame: this runs for every event


def _says(text: str, check: tuple[tuple[str, ...], re.Pattern[str]]) -> bool:
    words, pattern = check
    return _mentions(text, words) and pattern.search(text) is not None


def _default(name: str, error_type: str, message: str, status: int | None) -> Classification:
    low_name = name.lower()
    text = message.lower()
    if (
        status in _TIMEOUT_STATUS
        or _mentions(low_name, _TIMEOUT_TYPE)
        or _says(text, _TIMEOUT_MESSAGE)
    ):
        return _AI_TIMEOUT
    if (
        status in _RATE_LIMIT_STATUS
        or _mentions(low_name, _RATE_LIMIT_TYPE)
        or _says(text, _RATE_LIMIT_MESSAGE)
    ):
        return _RATE_LIMIT
    if (
        name in _DEPENDENCY_TYPES
        or _mentions(error_type.lower(), _DEPENDENCY_WORDS)
        or _mentions(text, _DEPENDENCY_WORDS)
    ):
        return _DEPENDENCY_ERROR
    if name in _SYNTAX_TYPES or name.endswith("SyntaxError") or _says(text, _SYNTAX_MESSAGE):
        return _SYNTAX_ERROR
    if _mentions(low_name, _VALIDATION_TYPE) or _says(text, _VALIDATION_MESSAGE):
        return _VALIDATION_ERROR
    return _UNKNOWN


# --- custom rules --------------------------------------------------------------------------------


@lru_cache(maxsize=512)
def _compile(pattern: str) -> re.Pattern[str]:
    # Rules come from settings and are the same on every call, so each pattern compiles once.
    try:
        return re.compile(pattern, re.IGNORECASE)
    except re.error as exc:
        raise ValueError(
            f"invalid message pattern {pattern!r} in a classification rule: {exc}"
        ) from exc


def _type_matches(wanted: str, error_type: str, name: str) -> bool:
    wanted = wanted.strip()
    if wanted == error_type:
        return True
    # A bare name on either side matches the class name of the other (`ReadTimeout` matches
    # `httpx.ReadTimeout` and back); two different dotted paths never match each other.
    if "." not in wanted:
        return wanted == name
    return "." not in error_type and _type_name(wanted) == error_type


def _rule_result(rule: ClassificationRule) -> Classification:
    try:
        category = Category(rule.category.strip().lower())
        return Classification(category, Severity(rule.severity.strip().lower()))
    except ValueError:
        raise ValueError(
            f"classification rule has category {rule.category!r} / severity {rule.severity!r};"
            f" categories are {[c.value for c in Category]},"
            f" severities are {[s.value for s in Severity]}"
        ) from None


def _rule_matches(
    rule: ClassificationRule, error_type: str, name: str, message: str, status: int | None
) -> bool:
    # Every criterion the rule lists must hold (any value within a list); a rule listing none
    # matches nothing, so an empty rule cannot swallow every failure.
    if not (rule.error_types or rule.message_patterns or rule.status_codes):
        return False
    if rule.error_types and not any(_type_matches(t, error_type, name) for t in rule.error_types):
        return False
    if rule.status_codes and status not in rule.status_codes:
        return False
    patterns = rule.message_patterns
    return not patterns or any(_compile(p).search(message) for p in patterns)


def classify(
    error_type: str,
    message: str,
    status_code: int | None = None,
    rules: Sequence[ClassificationRule] = (),
) -> Classification:
    """Return the category and severity of a failure: custom rules first, then the defaults.

    Raises ValueError when a rule has a bad regex or a category/severity outside the vocabulary.
    """
    error_type = error_type.strip()
    name = _type_name(error_type)
    # Check every rule up front so a broken rule fails loudly on the first event, not only on
    # the rare event that happens to reach it.
    for rule in rules:
        for pattern in rule.message_patterns:
            _compile(pattern)
        _rule_result(rule)
    for rule in rules:
        if _rule_matches(rule, error_type, name, message, status_code):
            return _rule_result(rule)
    return _default(name, error_type, message, status_code)
