"""Frames resolved to repository files: by module, then by filename, never outside the roots."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from immunity.tasks.heal.source_context import locations, repo_path_for_frame, snippets


def _write(root: Path, path: str, text: str = "x = 1\n") -> Path:
    target = root / path
    target.parent.mkdir(parents=True, exist_ok=True)
    target.write_text(text, encoding="utf-8")
    return target


@pytest.fixture
def repo(tmp_path: Path) -> Path:
    root = tmp_path / "repo"
    _write(root, "app/__init__.py", "")
    _write(root, "app/orders.py", "".join(f"line_{n} = {n}\n" for n in range(1, 61)))
    _write(root, "app/mod.py", "a = 1\nb = 2\nc = 3\n")
    _write(root, "mod.py", "top = 1\n")
    _write(root, "src/core/engine.py", "def run():\n    return 1\n")
    _write(root, "tests/test_orders.py", "def test_x():\n    assert True\n")
    return root


def _frame(**fields: Any) -> dict[str, Any]:
    return {"filename": "", "module": "", "function": "f", "lineno": 1, "in_app": True, **fields}


def test_a_module_name_resolves_to_its_file_or_package(repo: Path) -> None:
    frame = _frame(module="app.orders", filename="/srv/deploy/42/elsewhere.py")
    assert repo_path_for_frame(frame, repo, ["."]) == "app/orders.py"
    assert repo_path_for_frame(_frame(module="app"), repo, ["."]) == "app/__init__.py"
    # In a src layout the module is relative to the root it is imported from.
    assert repo_path_for_frame(_frame(module="core.engine"), repo, ["src"]) == "src/core/engine.py"
    assert repo_path_for_frame(_frame(module="app.orders"), repo, ["app"]) == "app/orders.py"


def test_a_filename_resolves_by_its_longest_suffix_in_the_repo(repo: Path) -> None:
    frame = _frame(module="__main__", filename="/srv/releases/42/app/mod.py")
    assert repo_path_for_frame(frame, repo, ["."]) == "app/mod.py"
    windows = _frame(filename="C:\\deploy\\app\\orders.py")
    assert repo_path_for_frame(windows, repo, ["."]) == "app/orders.py"
    assert repo_path_for_frame(_frame(filename="/srv/other/mod.py"), repo, ["."]) == "mod.py"


def test_files_outside_the_source_roots_are_refused(repo: Path) -> None:
    frame = _frame(module="tests.test_orders", filename=str(repo / "tests/test_orders.py"))
    assert repo_path_for_frame(frame, repo, ["app", "src"]) is None
    assert repo_path_for_frame(frame, repo, ["."]) == "tests/test_orders.py"
    assert repo_path_for_frame(frame, repo, []) is None


def test_paths_that_climb_out_of_the_repo_are_refused(repo: Path, tmp_path: Path) -> None:
    outside = _write(tmp_path, "secret.py", "TOKEN = 'x'\n")
    assert repo_path_for_frame(_frame(filename=str(outside)), repo, ["."]) is None
    assert repo_path_for_frame(_frame(filename="app/../../secret.py"), repo, ["."]) is None
    assert repo_path_for_frame(_frame(filename="../secret.py"), repo, ["."]) is None
    # Roots that are absolute or climb out are ignored, not followed.
    assert repo_path_for_frame(_frame(module="secret"), repo, [str(tmp_path)]) is None
    assert repo_path_for_frame(_frame(module="secret"), repo, [".."]) is None
    assert repo_path_for_frame(_frame(filename="secret.py"), repo, ["../"]) is None


def test_a_symlink_escaping_the_repo_is_refused(repo: Path, tmp_path: Path) -> None:
    outside = _write(tmp_path, "elsewhere/leak.py", "TOKEN = 'x'\n")
    (repo / "app" / "leak.py").symlink_to(outside)
    assert repo_path_for_frame(_frame(module="app.leak"), repo, ["."]) is None
    assert repo_path_for_frame(_frame(filename="/x/app/leak.py"), repo, ["."]) is None
    (repo / "app" / "alias.py").symlink_to(repo / "app" / "mod.py")
    assert repo_path_for_frame(_frame(module="app.alias"), repo, ["."]) == "app/alias.py"


def test_locations_are_in_app_innermost_first_and_deduplicated(repo: Path) -> None:
    frames = [
        _frame(module="fastapi.routing", filename="/venv/fastapi/routing.py", in_app=False),
        _frame(module="app.mod", function="outer", lineno=3),
        _frame(module="app.mod", function="outer", lineno=3),
        _frame(module="app.orders", function="middle", lineno=10),
        _frame(module="json.decoder", filename="/usr/lib/json/decoder.py", in_app=False),
        _frame(module="app.orders", function="inner", lineno=42),
    ]
    found = locations(frames, repo, ["."])
    assert [(loc.path, loc.lineno, loc.function) for loc in found] == [
        ("app/orders.py", 42, "inner"),
        ("app/orders.py", 10, "middle"),
        ("app/mod.py", 3, "outer"),
    ]
    assert found[0].text == (repo / "app/orders.py").read_text(encoding="utf-8")


def test_locations_skip_unreadable_files_and_stale_lines_and_stop_at_ten(repo: Path) -> None:
    (repo / "app" / "binary.py").write_bytes(b"\xff\xfe\x00 not utf-8")
    frames = [
        _frame(module="app.binary", lineno=1),
        _frame(module="app.mod", lineno=99),  # past the end: not the file that ran
        _frame(module="app.missing", lineno=1),
        _frame(module="app.mod", lineno=0),
    ]
    assert locations(frames, repo, ["."]) == []
    many = [_frame(module="app.orders", lineno=n) for n in range(1, 31)]
    found = locations(many, repo, ["."])
    assert [loc.lineno for loc in found] == list(range(30, 20, -1))


def test_snippets_show_the_lines_around_each_location(repo: Path) -> None:
    frames = [_frame(module="app.mod", lineno=2), _frame(module="app.orders", lineno=30)]
    inner, outer = snippets(locations(frames, repo, ["."]), radius=3)
    assert (inner.path, inner.start_line, inner.focus_line) == ("app/orders.py", 27, 30)
    assert inner.text == "".join(f"line_{n} = {n}\n" for n in range(27, 34))
    # Clipped at the start and the end of the file.
    assert (outer.path, outer.start_line, outer.focus_line) == ("app/mod.py", 1, 2)
    assert outer.text == "a = 1\nb = 2\nc = 3\n"
