"""Test definitions read from YAML: one test, a list of tests, or a directory of such files."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import yaml
from pydantic import ValidationError

from immunity.models.errors import InvalidInputError
from immunity.models.specs import TestDefinition

__all__ = ["YAML_SUFFIXES", "DefinitionError", "load_definitions"]

YAML_SUFFIXES = (".yaml", ".yml")


class DefinitionError(InvalidInputError):
    """A definition file that cannot be read or a test in it that does not validate."""


def _documents(file: Path) -> list[tuple[str, Any]]:
    """Return each item of the file with a label saying where it is, e.g. `orders.yaml item 3`."""
    try:
        data = yaml.safe_load(file.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError) as exc:
        raise DefinitionError(f"{file}: cannot read: {exc}") from exc
    except yaml.YAMLError as exc:
        raise DefinitionError(f"{file}: not valid YAML: {exc}") from exc
    if data is None:
        return []
    if isinstance(data, dict):
        return [(str(file), data)]
    if isinstance(data, list):
        return [(f"{file} item {index}", item) for index, item in enumerate(data)]
    raise DefinitionError(
        f"{file}: expected a test (a mapping) or a list of tests, got {type(data).__name__}"
    )


def _validate(where: str, item: Any) -> TestDefinition:
    if not isinstance(item, dict):
        raise DefinitionError(f"{where}: expected a test (a mapping), got {type(item).__name__}")
    name = item.get("name")
    label = f"{where} ({name!r})" if isinstance(name, str) else where
    try:
        return TestDefinition.model_validate(item)
    except ValidationError as exc:
        raise DefinitionError(f"{label}: {exc}") from exc


def _files(path: Path) -> list[Path]:
    if path.is_file():
        return [path]
    if path.is_dir():
        found = sorted(p for p in path.iterdir() if p.is_file() and p.suffix in YAML_SUFFIXES)
        if not found:
            raise DefinitionError(f"{path}: no *.yaml or *.yml files in this directory")
        return found
    raise DefinitionError(f"{path}: no such file or directory")


def load_definitions(path: str | Path) -> list[TestDefinition]:
    """Return the tests defined at `path` (a YAML file or a directory of them), in file order.

    Raises DefinitionError naming the file and item for unreadable files, invalid tests and
    test names used twice across everything loaded.
    """
    definitions: list[TestDefinition] = []
    seen: dict[str, str] = {}
    for file in _files(Path(path)):
        for where, item in _documents(file):
            definition = _validate(where, item)
            first = seen.setdefault(definition.name, where)
            if first != where:
                raise DefinitionError(
                    f"{where}: duplicate test name {definition.name!r} (first defined at {first})"
                )
            definitions.append(definition)
    return definitions
