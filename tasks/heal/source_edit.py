"""Source edits that change only chosen expressions of a file and keep every other byte.

`site_at` parses a file and finds the innermost statement at a line and the expressions on that
line; an `Edit` replaces one expression's source; `Site.apply` renders the edits (an edit may
contain others) and keeps the result only if it still parses; `unified_diff` turns the two texts
into a diff `git apply` accepts.
"""

from __future__ import annotations

import ast
import difflib
from collections.abc import Callable, Sequence
from dataclasses import dataclass

from immunity.models.fixes import SourceLocation

__all__ = [
    "Edit",
    "Render",
    "Site",
    "chain_top",
    "conditional",
    "operand",
    "parses",
    "site_at",
    "unified_diff",
]

Render = Callable[[ast.expr], str]

_ATOMS = (ast.Name, ast.Attribute, ast.Subscript, ast.Call, ast.Constant, ast.List, ast.Dict)


@dataclass
class Edit:
    """Replace `node`'s source with `template(render)`; `render` applies the edits inside it."""

    node: ast.expr
    template: Callable[[Render], str]


class Site:
    """The failing line of a file: its innermost statement and the expressions on that line."""

    def __init__(self, location: SourceLocation, tree: ast.Module) -> None:
        self.location = location
        self.text = location.text
        self.line = location.lineno
        self.parents = {
            child: parent for parent in ast.walk(tree) for child in ast.iter_child_nodes(parent)
        }
        covering = [
            node
            for node in ast.walk(tree)
            if isinstance(node, ast.stmt) and node.lineno <= self.line <= (node.end_lineno or 0)
        ]
        # ast.walk goes breadth first: the last statement covering the line is the innermost.
        self.stmt: ast.stmt | None = covering[-1] if covering else None
        self.nodes: list[ast.AST] = []
        stack = list(ast.iter_child_nodes(self.stmt)) if self.stmt else []
        while stack:
            node = stack.pop()
            if isinstance(node, ast.stmt):
                continue
            stack.extend(ast.iter_child_nodes(node))
            start, end = getattr(node, "lineno", None), getattr(node, "end_lineno", None)
            if start is not None and end is not None and start <= self.line <= end:
                self.nodes.append(node)
        self.nodes.sort(key=lambda n: (getattr(n, "lineno", 0), getattr(n, "col_offset", 0)))
        self._starts = [0]
        for index, char in enumerate(self.text):
            if char == "\n":
                self._starts.append(index + 1)

    def _offset(self, lineno: int, col: int) -> int:
        start = self._starts[lineno - 1]
        end = self._starts[lineno] if lineno < len(self._starts) else len(self.text)
        # ast columns count UTF-8 bytes.
        return start + len(self.text[start:end].encode("utf-8")[:col].decode("utf-8"))

    def span(self, node: ast.expr) -> tuple[int, int]:
        start = self._offset(node.lineno, node.col_offset)
        return start, self._offset(node.end_lineno or node.lineno, node.end_col_offset or 0)

    def source(self, node: ast.expr) -> str:
        start, end = self.span(node)
        return self.text[start:end]

    def render(self, start: int, end: int, edits: Sequence[Edit], skip: Edit | None) -> str:
        """Return text[start:end] with every outermost edit inside it (but `skip`) applied."""
        out: list[str] = []
        position = start
        for edit in sorted(edits, key=lambda e: (self.span(e.node)[0], -self.span(e.node)[1])):
            edit_start, edit_end = self.span(edit.node)
            if edit is skip or edit_start < position or edit_end > end:
                continue
            out.append(self.text[position:edit_start])
            out.append(edit.template(lambda n, e=edit: self.render(*self.span(n), edits, e)))
            position = edit_end
        out.append(self.text[position:end])
        return "".join(out)

    def rendered(self, node: ast.expr, edits: Sequence[Edit]) -> str:
        """Return `node`'s source as the edits rewrite it."""
        return self.render(*self.span(node), edits, None)

    def apply(self, edits: Sequence[Edit]) -> str | None:
        """Return the whole file with the edits applied, or None if it no longer parses."""
        new = self.render(0, len(self.text), edits, None)
        return new if parses(new) else None


def parses(text: str) -> bool:
    """Return whether the text is Python that ast can parse."""
    try:
        ast.parse(text)
    except (SyntaxError, ValueError, RecursionError):
        return False
    return True


def site_at(location: SourceLocation) -> Site | None:
    """Return the location's line as a Site, or None if the file cannot be edited by node."""
    text = location.text
    if text.count("\r") != text.count("\r\n"):
        return None  # lone carriage returns: ast's lines would not be ours
    try:
        return Site(location, ast.parse(text))
    except (SyntaxError, ValueError, RecursionError):
        return None


def operand(render: Render, node: ast.expr) -> str:
    """Return the node's rendered source, parenthesised unless it is an atom."""
    text = render(node)
    return text if isinstance(node, _ATOMS) else f"({text})"


def _bare_ok(node: ast.AST, parent: ast.AST | None) -> bool:
    """Return whether a conditional expression may stand here without parentheses."""
    if isinstance(parent, ast.Call):
        return node in parent.args
    if isinstance(parent, (ast.Assign, ast.AnnAssign, ast.Return, ast.keyword)):
        return parent.value is node
    if isinstance(parent, ast.Dict):
        return node in parent.values
    return isinstance(parent, (ast.List, ast.Tuple, ast.Set))


def conditional(site: Site, node: ast.expr, test: ast.expr, suffix: str, fallback: str) -> Edit:
    """Return an edit making `node` into `node if test<suffix> else fallback`."""
    bare = _bare_ok(node, site.parents.get(node))

    def template(render: Render) -> str:
        text = f"{render(node)} if {operand(render, test)}{suffix} else {fallback}"
        return text if bare else f"({text})"

    return Edit(node, template)


def chain_top(site: Site, node: ast.expr) -> ast.expr:
    """Return the outermost attribute, subscript or call built on `node` (`x[0].a.b()`)."""
    top = node
    while True:
        parent = site.parents.get(top)
        if isinstance(parent, (ast.Attribute, ast.Subscript)) and parent.value is top:
            top = parent
        elif isinstance(parent, ast.Call) and parent.func is top:
            top = parent
        else:
            return top


def _lines(text: str) -> list[str]:
    parts = text.split("\n")
    return [part + "\n" for part in parts[:-1]] + ([parts[-1]] if parts[-1] else [])


def unified_diff(path: str, old: str, new: str) -> str:
    """Return a git-applicable unified diff of one file, three lines of context."""
    out = []
    for line in difflib.unified_diff(_lines(old), _lines(new), f"a/{path}", f"b/{path}", n=3):
        out.append(line if line.endswith("\n") else line + "\n\\ No newline at end of file\n")
    return "".join(out)
