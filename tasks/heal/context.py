"""What the fix strategies look at for one signature, read from the store and the repository."""

from __future__ import annotations

from pathlib import Path

from sqlalchemy import Engine
from sqlmodel import Session, col, select

from immunity.models.errors import NotFoundError
from immunity.models.fixes import (
    FixContext,
    SampleInfo,
    SignatureInfo,
    SourceLocation,
    TestInfo,
)
from immunity.models.settings import Settings
from immunity.models.tables import FailureEvent, RegressionTest, Signature, TestExecution
from immunity.tasks.heal.patterns import matching_patterns, pattern_info
from immunity.tasks.heal.source_context import locations as resolve_locations
from immunity.tasks.heal.source_context import snippets

__all__ = ["SignatureNotFoundError", "gather_context", "signature_test", "source_locations"]

SAMPLES = 3
PATTERNS = 10


class SignatureNotFoundError(NotFoundError):
    def __init__(self, signature_id: int) -> None:
        super().__init__(f"signature {signature_id} does not exist")
        self.signature_id = signature_id


def signature_test(engine: Engine, signature_id: int) -> RegressionTest | None:
    """Return the regression test built for the signature, if any."""
    with Session(engine) as session:
        query = select(RegressionTest).where(
            RegressionTest.created_from_signature_id == signature_id
        )
        test = session.exec(query).first()
        if test is None:
            signature = session.get(Signature, signature_id)
            if signature is not None and signature.test_id is not None:
                test = session.get(RegressionTest, signature.test_id)
    return test


def _test_info(session: Session, test: RegressionTest) -> TestInfo:
    last = session.exec(
        select(TestExecution)
        .where(TestExecution.test_id == test.id)
        .order_by(col(TestExecution.id).desc())
    ).first()
    return TestInfo(
        name=test.name,
        spec=test.spec,
        expectations=test.expectations,
        last_status=last.status if last else None,
        last_error=last.error if last else None,
        last_expected=last.expected if last else {},
        last_actual=last.actual if last else {},
    )


def source_locations(
    frames: list[dict], settings: Settings, repo: Path | None = None
) -> list[SourceLocation]:
    """Return the in-app frames resolved to files of the configured repository, innermost first."""
    repo = repo or settings.repo_path
    if repo is None:
        return []
    return resolve_locations(frames, repo, settings.source_roots)


def gather_context(
    engine: Engine, signature_id: int, settings: Settings, *, repo: Path | None = None
) -> tuple[FixContext, list[SourceLocation]]:
    """Return the signature's context for the strategies and its frames resolved to source."""
    with Session(engine) as session:
        signature = session.get(Signature, signature_id)
        if signature is None:
            raise SignatureNotFoundError(signature_id)
        events = session.exec(
            select(FailureEvent)
            .where(FailureEvent.signature_id == signature_id)
            .order_by(col(FailureEvent.received_at).desc())
            .limit(SAMPLES)
        ).all()
        test = signature_test(engine, signature_id)
        test_info = _test_info(session, test) if test is not None else None
    samples = [
        SampleInfo(
            message=event.message,
            stacktrace=event.stacktrace,
            frames=event.frames,
            request=event.request,
            status_code=event.status_code,
            release=event.release,
            environment=event.environment,
        )
        for event in events
    ]
    frames = next((event.frames for event in events if event.frames), [])
    found = source_locations(frames, settings, repo)
    patterns = matching_patterns(engine, signature.error_type, signature.message)[:PATTERNS]
    context = FixContext(
        signature=SignatureInfo(
            id=signature_id,
            fingerprint=signature.fingerprint,
            error_type=signature.error_type,
            message=signature.message,
            culprit=signature.culprit,
            category=signature.category,
            severity=signature.severity,
            occurrence_count=signature.occurrence_count,
        ),
        samples=samples,
        test=test_info,
        patterns=pattern_info(patterns),
        source=snippets(found),
        source_roots=list(settings.source_roots),
    )
    return context, found
