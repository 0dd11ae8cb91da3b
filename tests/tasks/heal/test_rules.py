"""The offline fix rules: only the failing line changes, the result parses, the diff applies."""

from __future__ import annotations

import ast
import subprocess
from pathlib import Path

import pytest

from immunity.models.fixes import RuleFix, SourceLocation
from immunity.tasks.heal.rules import ERROR_RULES, RULES, apply_rule, propose_rule_fix, unified_diff

PATH = "app/service.py"


def _location(text: str, lineno: int, path: str = PATH) -> SourceLocation:
    return SourceLocation(path=path, lineno=lineno, function="handler", text=text)


def _git(repo: Path, *args: str, stdin: str | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run(["git", *args], cwd=repo, input=stdin, capture_output=True, text=True)


def _applied(tmp_path: Path, text: str, fix: RuleFix) -> str:
    """Return the file after `git apply` of the fix in a fresh repository holding `text`."""
    repo = tmp_path / "repo"
    target = repo / fix.path
    target.parent.mkdir(parents=True)
    target.write_bytes(text.encode("utf-8"))
    assert _git(repo, "init", "-q", "-b", "main").returncode == 0
    check = _git(repo, "apply", "--check", "-", stdin=fix.diff)
    assert check.returncode == 0, check.stderr + fix.diff
    assert _git(repo, "apply", "-", stdin=fix.diff).returncode == 0
    return target.read_bytes().decode("utf-8")


def _fixed(tmp_path: Path, error: str, message: str, text: str, lineno: int) -> tuple[RuleFix, str]:
    """Return the proposed fix and the file it makes; only the failing line may change."""
    fix = propose_rule_fix(error, message, [_location(text, lineno)])
    assert fix is not None
    after = _applied(tmp_path, text, fix)
    ast.parse(after)
    before_lines, after_lines = text.split("\n"), after.split("\n")
    assert len(before_lines) == len(after_lines)
    changed = [
        n for n, (a, b) in enumerate(zip(before_lines, after_lines, strict=True), 1) if a != b
    ]
    assert changed == [lineno]
    assert fix.diff.startswith(f"--- a/{PATH}\n+++ b/{PATH}\n@@ ")
    assert f"{PATH} line {lineno}" in fix.root_cause
    return fix, after_lines[lineno - 1]


# key_default


def test_key_default_reads_an_optional_key_with_get(tmp_path: Path) -> None:
    text = 'def handler(fields):\n    name = fields["nickname"]\n    return name\n'
    fix, line = _fixed(tmp_path, "KeyError", "'nickname'", text, 2)
    assert line == '    name = fields.get("nickname")'
    assert fix.rule == "key_default"
    assert '`fields["nickname"]`' in fix.explanation and "None" in fix.explanation


@pytest.mark.parametrize(
    ("statement", "expected"),
    [
        ("total = counts['seen'] + 1", "total = counts.get('seen', 0) + 1"),
        ("label = 'n=' + row['name']", "label = 'n=' + row.get('name', \"\")"),
        ("for line in order['lines']:", "for line in order.get('lines', ()):"),
        ("size = len(order['lines'])", "size = len(order.get('lines', ()))"),
        ("value = (a or b)['seen']", "value = (a or b).get('seen')"),
    ],
)
def test_key_default_takes_the_neutral_default_the_use_makes_obvious(
    tmp_path: Path, statement: str, expected: str
) -> None:
    key = "'lines'" if "lines" in statement else "'name'" if "name" in statement else "'seen'"
    text = f"def handler(counts, row, order, a, b):\n    {statement}\n        pass\n"
    if not statement.endswith(":"):
        text = text.replace("        pass\n", "    return None\n")
    _, line = _fixed(tmp_path, "KeyError", key, text, 2)
    assert line == f"    {expected}"


def test_key_default_handles_integer_keys_and_qualified_error_names(tmp_path: Path) -> None:
    text = "def handler(table):\n    return table[3]\n"
    fix = propose_rule_fix("builtins.KeyError", "3", [_location(text, 2)])
    assert fix is not None and "table.get(3)" in fix.diff
    assert propose_rule_fix("KeyError", "'3'", [_location(text, 2)]) is None


@pytest.mark.parametrize(
    ("statement", "message"),
    [
        ("return fields['other']", "'nickname'"),  # the key is not on the line
        ("return fields[name]", "'nickname'"),  # not a literal key
        ("fields['nickname'] += 1", "'nickname'"),  # a store cannot become .get()
        ("return fields['nickname']", "KeyError without a key"),
    ],
)
def test_key_default_proposes_nothing_without_a_literal_subscript(
    statement: str, message: str
) -> None:
    text = f"def handler(fields, name):\n    {statement}\n"
    assert propose_rule_fix("KeyError", message, [_location(text, 2)]) is None


# none_attribute


@pytest.mark.parametrize(
    ("statement", "attribute", "expected"),
    [
        ("needle = query.lower()", "lower", 'needle = (query or "").lower()'),
        ("parts = self.raw.split(',')", "split", "parts = (self.raw or \"\").split(',')"),
        ("size = options.get('size')", "get", "size = (options or {}).get('size')"),
        ("name = user.name", "name", "name = user.name if user is not None else None"),
        (
            "shown = {'who': user.profile.name}",
            "profile",
            "shown = {'who': user.profile.name if user is not None else None}",
        ),
        ("send(user.email)", "email", "send(user.email if user is not None else None)"),
        (
            "flag = not user.active",
            "active",
            "flag = not (user.active if user is not None else None)",
        ),
    ],
)
def test_none_attribute_guards_the_expression(
    tmp_path: Path, statement: str, attribute: str, expected: str
) -> None:
    text = f"def handler(self, query, options, user):\n    {statement}\n    return None\n"
    message = f"'NoneType' object has no attribute '{attribute}'"
    fix, line = _fixed(tmp_path, "AttributeError", message, text, 2)
    assert line == f"    {expected}"
    assert fix.rule == "none_attribute"


@pytest.mark.parametrize(
    ("statement", "attribute"),
    [
        ("items.append(1)", "append"),  # guarding a mutation would drop it silently
        ("name = load().name", "name"),  # the guard would call load() twice
        ("total = user.age + 1", "age"),  # None would fail in the addition at once
        ("name = self.name", "name"),  # self is never None
        ("name = user.title", "name"),  # not on the line
    ],
)
def test_none_attribute_proposes_nothing_it_cannot_guard_honestly(
    statement: str, attribute: str
) -> None:
    text = f"def handler(self, items, user, load):\n    {statement}\n"
    message = f"'NoneType' object has no attribute '{attribute}'"
    assert propose_rule_fix("AttributeError", message, [_location(text, 2)]) is None
    module_message = f"module 'os' has no attribute '{attribute}'"
    assert propose_rule_fix("AttributeError", module_message, [_location(text, 2)]) is None


# zero_division


@pytest.mark.parametrize(
    ("statement", "expected"),
    [
        ("mean = total / count", "mean = total / count if count else 0.0"),
        ("pages = total // size", "pages = total // size if size else 0"),
        ("rest = total % size", "rest = total % size if size else 0"),
        (
            "mean = round(total / len(rows), 2)",
            "mean = round(total / len(rows) if len(rows) else 0.0, 2)",
        ),
        ("x = 1 + total / count", "x = 1 + (total / count if count else 0.0)"),
        ("y = total / 2 / count", "y = total / 2 / count if count else 0.0"),
    ],
)
def test_zero_division_guards_each_variable_divisor(
    tmp_path: Path, statement: str, expected: str
) -> None:
    text = f"def handler(total, count, size, rows):\n    {statement}\n    return None\n"
    fix, line = _fixed(tmp_path, "ZeroDivisionError", "division by zero", text, 2)
    assert line == f"    {expected}"
    assert fix.rule == "zero_division"


@pytest.mark.parametrize(
    "statement",
    [
        "mean = total / 2",  # a non-zero constant divisor
        "label = '%d items' % count",  # string formatting
        "mean = total / fetch_count()",  # the guard would call it twice
        "mean = total * count",  # no division at all
    ],
)
def test_zero_division_proposes_nothing_without_a_guardable_divisor(statement: str) -> None:
    text = f"def handler(total, count, fetch_count):\n    {statement}\n"
    assert propose_rule_fix("ZeroDivisionError", "division by zero", [_location(text, 2)]) is None


# none_operand


@pytest.mark.parametrize(
    ("statement", "message", "expected"),
    [
        ("gross = price + tax", "+: 'NoneType' and 'int'", "gross = (price or 0) + tax"),
        ("gross = price + tax", "+: 'float' and 'NoneType'", "gross = price + (tax or 0)"),
        ("label = prefix + '-x'", "+: 'NoneType' and 'str'", "label = (prefix or \"\") + '-x'"),
        (
            "page = rows[start : start + size]",
            "+: 'NoneType' and 'int'",
            "page = rows[start : (start or 0) + size]",
        ),
        ("price *= order.discount", "*=: 'float' and 'NoneType'", "price *= (order.discount or 0)"),
    ],
)
def test_none_operand_defaults_the_none_side(
    tmp_path: Path, statement: str, message: str, expected: str
) -> None:
    signature = "def handler(price, tax, prefix, rows, start, size, order):"
    text = f"{signature}\n    {statement}\n    return 1\n"
    full = f"unsupported operand type(s) for {message}"
    fix, line = _fixed(tmp_path, "TypeError", full, text, 2)
    assert line == f"    {expected}"
    assert fix.rule == "none_operand"


@pytest.mark.parametrize(
    ("statement", "message"),
    [
        ("gross = price + tax", "+: 'NoneType' and 'NoneType'"),  # which side?
        ("gross = price + tax", "+: 'NoneType' and 'Money'"),  # no obvious neutral value
        ("gross = price - tax", "+: 'NoneType' and 'int'"),  # not the operator that failed
        ("total += tax", "+=: 'NoneType' and 'int'"),  # a None target needs more than a guard
        ("gross = 'x' + tax", "+: 'NoneType' and 'int'"),  # the None side is a literal
    ],
)
def test_none_operand_proposes_nothing_when_unclear(statement: str, message: str) -> None:
    text = f"def handler(price, tax, total):\n    {statement}\n"
    full = f"unsupported operand type(s) for {message}"
    assert propose_rule_fix("TypeError", full, [_location(text, 2)]) is None
    other = 'can only concatenate str (not "NoneType") to str'
    assert propose_rule_fix("TypeError", other, [_location(text, 2)]) is None


# index_guard


@pytest.mark.parametrize(
    ("statement", "expected"),
    [
        ("first = items[0]", "first = items[0] if items else None"),
        ("last = runs[-1].status", "last = runs[-1].status if runs else None"),
        (
            "when = {'at': self.runs[-1].finished()}",
            "when = {'at': self.runs[-1].finished() if self.runs else None}",
        ),
        ("name = str(items[0])", "name = str(items[0] if items else None)"),
    ],
)
def test_index_guard_guards_the_first_or_last_item(
    tmp_path: Path, statement: str, expected: str
) -> None:
    text = f"def handler(self, items, runs):\n    {statement}\n    return None\n"
    fix, line = _fixed(tmp_path, "IndexError", "list index out of range", text, 2)
    assert line == f"    {expected}"
    assert fix.rule == "index_guard"


@pytest.mark.parametrize(
    "statement",
    [
        "second = items[1]",  # not the first or last item
        "word = text.split()[0]",  # the guard would split twice
        "items[0] = 1",  # an assignment target
        "total = items[0] + 1",  # None would fail in the addition at once
    ],
)
def test_index_guard_proposes_nothing_it_cannot_guard(statement: str) -> None:
    text = f"def handler(items, text):\n    {statement}\n"
    assert propose_rule_fix("IndexError", "list index out of range", [_location(text, 2)]) is None
    assert propose_rule_fix("IndexError", "pop from empty list", [_location(text, 2)]) is None


# across rules


def test_only_the_failing_line_of_a_multi_line_statement_changes(tmp_path: Path) -> None:
    text = (
        "def report(done, paid, gross):\n"
        "    return {\n"
        '        "count": len(done) / 1,\n'
        '        "average": gross / len(paid),\n'
        '        "ratio": gross / len(done),\n'
        "    }\n"
    )
    _, line = _fixed(tmp_path, "ZeroDivisionError", "float division by zero", text, 4)
    assert line == '        "average": gross / len(paid) if len(paid) else 0.0,'


def test_the_diff_applies_to_files_without_a_final_newline_and_with_crlf(tmp_path: Path) -> None:
    text = "def handler(total, count):\n    return total / count"
    fix = propose_rule_fix("ZeroDivisionError", "division by zero", [_location(text, 2)])
    assert fix is not None and "\\ No newline at end of file" in fix.diff
    assert _applied(tmp_path / "a", text, fix).endswith("return total / count if count else 0.0")

    crlf = "def handler(total, count):\r\n    return total / count\r\n\r\nX = 1\r\n"
    fix = propose_rule_fix("ZeroDivisionError", "division by zero", [_location(crlf, 2)])
    assert fix is not None
    after = _applied(tmp_path / "b", crlf, fix)
    assert after == crlf.replace("total / count", "total / count if count else 0.0")


def test_columns_after_non_ascii_text_are_found(tmp_path: Path) -> None:
    text = 'def handler(rates):\n    label = {"€ – prix": rates["eur"]}\n    return label\n'
    _, line = _fixed(tmp_path, "KeyError", "'eur'", text, 2)
    assert line == '    label = {"€ – prix": rates.get("eur")}'


def test_a_file_that_does_not_parse_gets_no_fix() -> None:
    text = "def handler(total, count):\n    return total / count\n    if\n"
    assert propose_rule_fix("ZeroDivisionError", "division by zero", [_location(text, 2)]) is None


def test_the_innermost_location_wins_and_outer_ones_are_tried_next() -> None:
    inner = _location("def helper(a):\n    return a.compute()\n", 2, "app/inner.py")
    outer = _location("def handler(q):\n    return q.lower()\n", 2, "app/outer.py")
    message = "'NoneType' object has no attribute 'lower'"
    fix = propose_rule_fix("AttributeError", message, [inner, outer])
    assert fix is not None and fix.path == "app/outer.py"
    assert "--- a/app/outer.py" in fix.diff
    first = _location("def handler(q):\n    return q.lower()\n", 2, "app/first.py")
    fix = propose_rule_fix("AttributeError", message, [first, outer])
    assert fix is not None and fix.path == "app/first.py"


def test_apply_rule_runs_only_the_named_rule_for_its_error_type() -> None:
    text = "def handler(total, count):\n    return total / count\n"
    location = [_location(text, 2)]
    fix = apply_rule("zero_division", "ZeroDivisionError", "division by zero", location)
    assert fix is not None and fix.rule == "zero_division"
    assert apply_rule("no_such_rule", "ZeroDivisionError", "division by zero", location) is None
    assert apply_rule("zero_division", "KeyError", "'count'", location) is None
    assert apply_rule("index_guard", "IndexError", "list index out of range", location) is None
    assert propose_rule_fix("ValueError", "invalid literal for int()", location) is None


def test_every_rule_is_reachable_from_an_error_type() -> None:
    reachable = {rule for rules in ERROR_RULES.values() for rule in rules}
    assert reachable == set(RULES)


def test_unified_diff_is_empty_for_identical_text() -> None:
    assert unified_diff(PATH, "a\n", "a\n") == ""
