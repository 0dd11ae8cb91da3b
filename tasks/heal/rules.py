"""Offline fix rules: a unified diff for a common Python error, read from the failing line.

A rule parses the file, takes the innermost statement at the failing line and rewrites the
smallest expression on that line that explains the error, so that the code means the same where
the value is present and takes a neutral path where it is missing. A rule that finds nothing it
can rewrite unambiguously, or whose result would not parse, proposes nothing.
"""

from __future__ import annotations

import ast
import re
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass

from immunity.models.fixes import RuleFix, SourceLocation
from immunity.tasks.heal.source_edit import (
    Edit,
    Render,
    Site,
    chain_top,
    conditional,
    operand,
    site_at,
    unified_diff,
)

__all__ = ["ERROR_RULES", "RULES", "apply_rule", "propose_rule_fix", "unified_diff"]

# Calls cheap and side-effect free enough to evaluate twice (a guard re-reads its operand).
_PURE_CALLS = frozenset({"abs", "all", "any", "bool", "float", "int", "len", "max", "min", "sum"})
# str's own methods (not shared with list, like count); `"".join` would change the separator.
_STR_METHODS = frozenset(n for n in dir(str) if not n.startswith("_")) - set(dir(list)) - {"join"}
_DICT_METHODS = frozenset({"get", "items", "keys", "values"})
# Guarding these would drop the mutation silently: no rewrite is honest without knowing more.
_MUTATING = frozenset(
    "add append clear discard extend insert pop popitem remove reverse setdefault sort "
    "update".split()
)
_NEVER_NONE = (ast.Constant, ast.JoinedStr, ast.List, ast.Tuple, ast.Dict, ast.Set, ast.BinOp)
_OPERATORS: dict[str, type[ast.operator]] = {
    "+": ast.Add, "-": ast.Sub, "*": ast.Mult, "/": ast.Div, "//": ast.FloorDiv, "%": ast.Mod,
    "**": ast.Pow, "@": ast.MatMult, "<<": ast.LShift, ">>": ast.RShift, "&": ast.BitAnd,
    "|": ast.BitOr, "^": ast.BitXor,
}  # fmt: skip
_NEUTRAL = {"int": "0", "float": "0", "complex": "0", "bool": "0", "Decimal": "0", "str": '""'}
_NONE_ATTRIBUTE = re.compile(r"'NoneType' object has no attribute '(\w+)'")
_OPERAND_TYPES = re.compile(r"unsupported operand type\(s\) for ([^:]+): '(\w+)' and '(\w+)'")


@dataclass
class _Rewrite:
    edits: list[Edit]
    cause: str
    action: str


def _pure(node: ast.AST) -> bool:
    """Return whether evaluating the expression twice is harmless."""
    for sub in ast.walk(node):
        if isinstance(sub, (ast.Await, ast.Yield, ast.YieldFrom, ast.NamedExpr, ast.Lambda)):
            return False
        if isinstance(sub, ast.Call):
            if not (isinstance(sub.func, ast.Name) and sub.func.id in _PURE_CALLS):
                return False
    return True


def _loaded(node: ast.AST) -> bool:
    return not isinstance(getattr(node, "ctx", ast.Load()), (ast.Store, ast.Del))


def _none_fits(site: Site, node: ast.expr) -> bool:
    """Return whether None may stand in for `node` without failing right where it is used."""
    parent = site.parents.get(node)
    if isinstance(parent, (ast.BinOp, ast.Starred, ast.AugAssign)):
        return False
    if isinstance(parent, ast.UnaryOp) and not isinstance(parent.op, ast.Not):
        return False
    if isinstance(parent, (ast.For, ast.comprehension)) and parent.iter is node:
        return False
    ordering = (ast.Lt, ast.LtE, ast.Gt, ast.GtE)
    return not (
        isinstance(parent, ast.Compare) and any(isinstance(o, ordering) for o in parent.ops)
    )


def _key_default(site: Site, message: str) -> _Rewrite | None:
    try:
        key = ast.literal_eval(message.strip())
    except (ValueError, SyntaxError, TypeError, MemoryError, RecursionError):
        return None
    found = [
        node
        for node in site.nodes
        if isinstance(node, ast.Subscript)
        and _loaded(node)
        and isinstance(node.slice, ast.Constant)
        and type(node.slice.value) is type(key)
        and node.slice.value == key
    ]
    edits = []
    defaults = [_neutral_default(site, node) for node in found]
    for node, default in zip(found, defaults, strict=True):
        suffix = f", {default}" if default else ""

        def template(render: Render, node: ast.Subscript = node, suffix: str = suffix) -> str:
            return f"{operand(render, node.value)}.get({render(node.slice)}{suffix})"

        edits.append(Edit(node, template))
    if not edits:
        return None
    return _Rewrite(
        edits,
        cause=f"the key {key!r} is missing from the mapping `{site.source(found[0].value)}`",
        action=f"a missing key now reads as {defaults[0] or 'None'} instead of raising KeyError",
    )


def _neutral_default(site: Site, node: ast.AST) -> str:
    """Return the default a missing value obviously takes where it is used, else ''."""
    parent = site.parents.get(node)
    if isinstance(parent, ast.BinOp) and isinstance(parent.op, (ast.Add, ast.Sub)):
        other = parent.right if parent.left is node else parent.left
        if isinstance(other, ast.Constant) and type(other.value) in (int, float):
            return "0"
        if isinstance(other, ast.JoinedStr) or (
            isinstance(other, ast.Constant) and isinstance(other.value, str)
        ):
            return '""'
    if isinstance(parent, (ast.For, ast.comprehension)) and parent.iter is node:
        return "()"
    if isinstance(parent, ast.Call) and isinstance(parent.func, ast.Name):
        if parent.func.id in {"len", "sorted", "list", "tuple", "set", "enumerate"}:
            return "()"
    return ""


def _none_attribute(site: Site, message: str) -> _Rewrite | None:
    match = _NONE_ATTRIBUTE.search(message)
    if match is None:
        return None
    name = match.group(1)
    found = [
        node
        for node in site.nodes
        if isinstance(node, ast.Attribute)
        and node.attr == name
        and not isinstance(node.value, _NEVER_NONE)
        and not (isinstance(node.value, ast.Name) and node.value.id in {"self", "cls"})
    ]
    if not found or name in _MUTATING:
        return None
    edits: list[Edit] = []
    for node in found:
        value = node.value
        parent = site.parents.get(node)
        called = isinstance(parent, ast.Call) and parent.func is node
        empty = '""' if name in _STR_METHODS else "{}" if name in _DICT_METHODS else None
        if called and empty is not None:

            def template(render: Render, value: ast.expr = value, empty: str = empty) -> str:
                return f"({operand(render, value)} or {empty})"

            edits.append(Edit(value, template))
            continue
        top = chain_top(site, node)
        if not _pure(value) or not _loaded(top) or not _none_fits(site, top):
            return None
        edits.append(conditional(site, top, value, " is not None", "None"))
    value_text = site.source(found[0].value)
    return _Rewrite(
        edits,
        cause=f"`{value_text}` is None, so reading `.{name}` from it raises AttributeError",
        action=f"a None `{value_text}` no longer raises; the present case is unchanged",
    )


def _zero_division(site: Site, message: str) -> _Rewrite | None:
    edits = []
    for node in site.nodes:
        if not isinstance(node, ast.BinOp) or not isinstance(
            node.op, (ast.Div, ast.FloorDiv, ast.Mod)
        ):
            continue
        right = node.right
        if isinstance(right, ast.UnaryOp) and isinstance(right.op, (ast.USub, ast.UAdd)):
            right = right.operand
        if (
            isinstance(right, ast.Constant)
            and isinstance(right.value, (int, float))
            and right.value
        ):
            continue  # a non-zero constant cannot be the zero
        if isinstance(node.op, ast.Mod) and isinstance(node.left, (ast.Constant, ast.JoinedStr)):
            continue  # `"..." % args` formats a string
        if not _pure(node.right):
            return None
        fallback = "0.0" if isinstance(node.op, ast.Div) else "0"
        edits.append(conditional(site, node, node.right, "", fallback))
    if not edits:
        return None
    first = edits[0].node
    assert isinstance(first, ast.BinOp)
    return _Rewrite(
        edits,
        cause=f"`{site.source(first)}` divides by `{site.source(first.right)}`, which is 0 here",
        action="a zero divisor now gives 0 instead of raising ZeroDivisionError",
    )


def _none_operand(site: Site, message: str) -> _Rewrite | None:
    match = _OPERAND_TYPES.search(message)
    if match is None:
        return None
    symbol, left, right = (group.strip() for group in match.groups())
    if (left == "NoneType") == (right == "NoneType"):
        return None
    other = right if left == "NoneType" else left
    default = _NEUTRAL.get(other)
    operator = _OPERATORS.get(symbol.removesuffix("="))
    if default is None or operator is None:
        return None
    operands: list[ast.expr] = []
    if symbol.endswith("="):
        stmt = site.stmt
        if isinstance(stmt, ast.AugAssign) and isinstance(stmt.op, operator) and right != other:
            operands.append(stmt.value)  # a None target would need the statement rewritten
    else:
        for node in site.nodes:
            if isinstance(node, ast.BinOp) and isinstance(node.op, operator):
                operands.append(node.left if left == "NoneType" else node.right)
    operands = [node for node in operands if not isinstance(node, _NEVER_NONE)]
    if not operands:
        return None
    edits = [
        Edit(node, lambda render, n=node: f"({operand(render, n)} or {default})")
        for node in operands
    ]
    return _Rewrite(
        edits,
        cause=f"`{site.source(operands[0])}` is None, and `{symbol}` cannot take None with {other}",
        action=f"a None operand now counts as {default} instead of raising TypeError",
    )


def _index_guard(site: Site, message: str) -> _Rewrite | None:
    if "index out of range" not in message:
        return None
    edits: list[Edit] = []
    seqs: list[ast.expr] = []
    for node in site.nodes:
        if not isinstance(node, ast.Subscript) or not _loaded(node):
            continue
        index = node.slice
        if isinstance(index, ast.UnaryOp) and isinstance(index.op, ast.USub):
            index, wanted = index.operand, 1
        else:
            wanted = 0
        if not (isinstance(index, ast.Constant) and type(index.value) is int):
            continue
        if index.value != wanted or not _pure(node.value):
            continue
        top = chain_top(site, node)
        if not _loaded(top) or not _none_fits(site, top) or any(e.node is top for e in edits):
            continue
        edits.append(conditional(site, top, node.value, "", "None"))
        seqs.append(node.value)
    if not edits:
        return None
    return _Rewrite(
        edits,
        cause=f"`{site.source(seqs[0])}` is empty, so indexing it raises IndexError",
        action="an empty sequence now gives None instead of raising IndexError",
    )


_Rule = Callable[[Site, str], _Rewrite | None]


def _make(name: str, rule: _Rule) -> Callable[[str, SourceLocation], RuleFix | None]:
    def run(message: str, location: SourceLocation) -> RuleFix | None:
        """Return this rule's fix of the error at the location, or None."""
        site = site_at(location)
        if site is None or site.stmt is None or (rewrite := rule(site, message)) is None:
            return None
        new = site.apply(rewrite.edits)
        if new is None or new == location.text:
            return None
        first = rewrite.edits[0].node
        before = site.source(first)
        after = site.rendered(first, rewrite.edits)
        more = f" (and {len(rewrite.edits) - 1} more on the line)" if len(rewrite.edits) > 1 else ""
        where = f"{location.path} line {location.lineno}"
        if location.function:
            where += f" (in {location.function})"
        return RuleFix(
            rule=name,
            path=location.path,
            diff=unified_diff(location.path, location.text, new),
            root_cause=f"At {where}, {rewrite.cause}.",
            explanation=f"The {name} rule rewrites `{before}` as `{after}`{more}: "
            f"{rewrite.action}.",
        )

    run.__name__ = name
    return run


RULES: Mapping[str, Callable[[str, SourceLocation], RuleFix | None]] = {
    "key_default": _make("key_default", _key_default),
    "none_attribute": _make("none_attribute", _none_attribute),
    "zero_division": _make("zero_division", _zero_division),
    "none_operand": _make("none_operand", _none_operand),
    "index_guard": _make("index_guard", _index_guard),
}
ERROR_RULES: Mapping[str, tuple[str, ...]] = {
    "KeyError": ("key_default",),
    "AttributeError": ("none_attribute",),
    "ZeroDivisionError": ("zero_division",),
    "TypeError": ("none_operand",),
    "IndexError": ("index_guard",),
}


def _error_name(error_type: str) -> str:
    return error_type.rsplit(".", 1)[-1].strip()


def apply_rule(
    rule: str, error_type: str, message: str, locations: Sequence[SourceLocation]
) -> RuleFix | None:
    """Return the named rule's fix at the innermost location it fits, or None."""
    if rule not in RULES or rule not in ERROR_RULES.get(_error_name(error_type), ()):
        return None
    return next((fix for loc in locations if (fix := RULES[rule](message, loc))), None)


def propose_rule_fix(
    error_type: str, message: str, locations: Sequence[SourceLocation]
) -> RuleFix | None:
    """Return the first fix a rule for this error type finds, innermost location first."""
    for location in locations:
        for rule in ERROR_RULES.get(_error_name(error_type), ()):
            if fix := RULES[rule](message, location):
                return fix
    return None
