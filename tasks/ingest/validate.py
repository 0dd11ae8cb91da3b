"""Validation of incoming events: good ones pass, bad ones come back naming the wrong field."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from functools import lru_cache
from typing import Any, TypeVar

from pydantic import BaseModel, TypeAdapter, ValidationError

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


@lru_cache(maxsize=8)
def _batch_adapter(model: type[M]) -> TypeAdapter[list[M]]:
    return TypeAdapter(list[model])  # type: ignore[valid-type]


def validate_events(
    raw_events: Sequence[Any], model: type[M], *, indexes: Sequence[int] | None = None
) -> tuple[list[tuple[int, M]], list[Rejection]]:
    """Return the events that validate (with their index) and the rejections for the rest."""
    positions = indexes or range(len(raw_events))
    if all(isinstance(raw, dict) for raw in raw_events):
        try:  # the usual batch, every event good: validated in one call
            models = _batch_adapter(model).validate_python(raw_events)
            return list(zip(positions, models, strict=True)), []
        except ValidationError:
            pass  # some event is bad: one by one, to keep the good ones and name what is wrong
    accepted: list[tuple[int, M]] = []
    rejected: list[Rejection] = []
    for index, raw in zip(positions, raw_events, strict=True):
        if not isinstance(raw, dict):
            kind = type(raw).__name__
            rejected.append(Rejection(index, [f"(event): expected a JSON object, got {kind}"]))
            continue
        try:
            accepted.append((index, model.model_validate(raw)))
        except ValidationError as error:
            rejected.append(Rejection(index, _describe(error)))
    return accepted, rejected
