"""Validation of incoming events: good ones pass, bad ones come back naming the wrong field."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any, TypeVar

from pydantic import BaseModel, ValidationError

__all__ = ["Rejection", "validate_events"]

M = TypeVar("M", bound=BaseModel)


@dataclass(frozen=True)
class Rejection:
    """An event that was refused: its index (or line number) and what was wrong, field by field."""

    index: int
    errors: list[str] = field(default_factory=list)

    def __str__(self) -> str:
        return f"event {self.index}: " + "; ".join(self.errors)


def _describe(error: ValidationError) -> list[str]:
    described = []
    for item in error.errors(include_url=False):
        where = ".".join(str(part) for part in item["loc"]) or "(event)"
        described.append(f"{where}: {item['msg']}")
    return described


def validate_events(
    raw_events: Sequence[Any], model: type[M], *, indexes: Sequence[int] | None = None
) -> tuple[list[tuple[int, M]], list[Rejection]]:
    """Return the events that validate (with their index) and the rejections for the rest."""
    accepted: list[tuple[int, M]] = []
    rejected: list[Rejection] = []
    for index, raw in zip(indexes or range(len(raw_events)), raw_events, strict=True):
        if not isinstance(raw, dict):
            kind = type(raw).__name__
            rejected.append(Rejection(index, [f"(event): expected a JSON object, got {kind}"]))
            continue
        try:
            accepted.append((index, model.model_validate(raw)))
        except ValidationError as error:
            rejected.append(Rejection(index, _describe(error)))
    return accepted, rejected
