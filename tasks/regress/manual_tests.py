"""Manual tests (smoke, contract, integration) written by people, saved beside generated ones."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field

from sqlalchemy import Engine
from sqlmodel import col, select

from immunity.models.db import session_scope
from immunity.models.errors import ConflictError
from immunity.models.specs import TestDefinition
from immunity.models.tables import RegressionTest

__all__ = ["DefinitionConflictError", "SaveReport", "save_definitions"]


class DefinitionConflictError(ConflictError, ValueError):
    """A definition's name is taken by a test it may not replace."""


@dataclass
class SaveReport:
    """Which tests a save created, updated, or found unchanged (by name)."""

    created: list[str] = field(default_factory=list)
    updated: list[str] = field(default_factory=list)
    unchanged: list[str] = field(default_factory=list)


def _columns(definition: TestDefinition) -> dict:
    return {
        "description": definition.description,
        "kind": definition.kind,
        "type": definition.type,
        "spec": definition.spec(),
        "expectations": definition.expect.model_dump(mode="json", exclude_defaults=True),
        "tags": list(dict.fromkeys(definition.tags)),
        "environment": definition.environment,
        "allow_unsafe": definition.allow_unsafe,
    }


def save_definitions(
    engine: Engine, definitions: Sequence[TestDefinition], *, replace: bool = False
) -> SaveReport:
    """Save the definitions in one transaction: all of them, or none on a conflict.

    A name already in the store is updated when `replace` is set (its confidence and history
    stay); a test generated from a signature is never replaced by a manual definition.
    """
    names = [definition.name for definition in definitions]
    duplicates = sorted({name for name in names if names.count(name) > 1})
    if duplicates:
        raise DefinitionConflictError(f"names defined more than once: {', '.join(duplicates)}")
    report = SaveReport()
    with session_scope(engine) as session:
        existing = {
            test.name: test
            for test in session.exec(
                select(RegressionTest).where(col(RegressionTest.name).in_(names))
            )
        }
        for definition in definitions:
            columns = _columns(definition)
            test = existing.get(definition.name)
            if test is None:
                session.add(RegressionTest(name=definition.name, **columns))
                report.created.append(definition.name)
                continue
            if test.created_from_signature_id is not None:
                raise DefinitionConflictError(
                    f"{definition.name!r} is a test generated from signature"
                    f" {test.created_from_signature_id}; give the manual test another name"
                )
            if all(getattr(test, key) == value for key, value in columns.items()):
                report.unchanged.append(definition.name)
                continue
            if not replace:
                raise DefinitionConflictError(
                    f"a different test named {definition.name!r} exists; use --replace to update it"
                )
            for key, value in columns.items():
                setattr(test, key, value)
            session.add(test)
            report.updated.append(definition.name)
    return report
