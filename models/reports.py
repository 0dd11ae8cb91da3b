"""What the loops return to their callers: summaries a script, the CLI or the UI can show."""

from __future__ import annotations

from pydantic import BaseModel, Field

__all__ = ["GeneratedTest", "IngestReport", "RejectedEvent"]


class RejectedEvent(BaseModel):
    """An event that was refused, by its index in the batch (or its line in a file)."""

    index: int
    errors: list[str]


class GeneratedTest(BaseModel):
    """A signature that got its regression test, or the reason it could not."""

    signature_id: int
    test_id: int | None = None
    created: bool = False
    reason: str | None = None


class IngestReport(BaseModel):
    """The outcome of an ingest run."""

    accepted: int = 0
    rejected: list[RejectedEvent] = Field(default_factory=list)
    signatures: int = 0
    new_signatures: int = 0
    candidates: list[int] = Field(default_factory=list)
    generated: list[GeneratedTest] = Field(default_factory=list)

    @property
    def tests_created(self) -> int:
        return sum(1 for item in self.generated if item.created)
