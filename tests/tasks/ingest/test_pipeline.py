"""The ingest pipeline and test generation against a real store (SQLite and PostgreSQL)."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from sqlalchemy import Engine, func, select, text
from sqlmodel import Session

from immunity.models.db import create_schema, get_engine
from immunity.models.settings import Environment, Settings
from immunity.models.tables import (
    FailureEvent,
    OccurrenceBucket,
    RegressionTest,
    Signature,
    SuccessEvent,
)
from immunity.tasks.generate.generation import sweep
from immunity.tasks.ingest.pipeline import (
    PREPARE_CHUNK,
    ingest_events,
    process_failures,
    process_successes,
)

NOW = datetime(2026, 11, 20, 12, 0, tzinfo=UTC)


def settings(**overrides: Any) -> Settings:
    base = {
        "environments": {"production": Environment(base_url="https://shop.example.com")},
        "max_samples_per_signature": 5,
    }
    return Settings(**{**base, **overrides})


def recipe_failure(n: int, at: datetime = NOW, **extra: Any) -> dict[str, Any]:
    """The seed's recipe-website failure: same bug each time, other ids and line numbers."""
    event = {
        "error_type": "DependencyValidationError",
        "message": f"dependency validation failed for project {1000 + n} (user{n}@example.com)",
        "frames": [
            {
                "module": "app.api",
                "function": "generate",
                "lineno": 40 + n,
                "in_app": True,
                "filename": f"/srv/release-{n}/app/api.py",
            },
            {
                "module": "app.deps",
                "function": "validate",
                "lineno": 12 + n,
                "in_app": True,
                "filename": f"/srv/release-{n}/app/deps.py",
            },
        ],
        "received_at": at.isoformat(),
        "request": {
            "method": "POST",
            "url": "https://shop.example.com/api/generate",
            "headers": {
                "Authorization": "Bearer secret-token",
                "Content-Type": "application/json",
                "Content-Length": "64",
                "X-Trace": f"t-{n}",
            },
            "body": {"prompt": "Build recipe website with search", "password": "hunter2"},
        },
        "status_code": 500,
        "user": f"user-{n}",
    }
    event.update(extra)
    return event


def one(engine: Engine, model: type, **where: Any) -> Any:
    with Session(engine) as session:
        query = select(model).filter_by(**where)
        return session.exec(query).scalars().one()  # type: ignore[attr-defined]


def count(engine: Engine, model: type) -> int:
    with Session(engine) as session:
        return session.exec(select(func.count()).select_from(model)).scalar_one()  # type: ignore[attr-defined]


def test_bad_events_are_rejected_by_field_and_good_ones_kept(engine: Engine) -> None:
    batch = [
        recipe_failure(1),
        {"message": "no type"},
        "not an object",
        recipe_failure(2, status_code="five hundred"),
        recipe_failure(3),
    ]
    result = process_failures(batch, engine=engine, settings=settings())
    assert result.accepted == 2
    assert [r.index for r in result.rejected] == [1, 2, 3]
    assert "error_type" in result.rejected[0].errors[0]
    assert "JSON object" in result.rejected[1].errors[0]
    assert result.rejected[2].errors[0].startswith("status_code")
    assert one(engine, Signature).occurrence_count == 2
    assert count(engine, FailureEvent) == 2


def test_a_batch_of_several_chunks_names_each_bad_event_and_keeps_the_rest(engine: Engine) -> None:
    size = PREPARE_CHUNK * 2 + 50  # validated and prepared a chunk at a time
    bad = {
        3: {"message": "no type"},
        PREPARE_CHUNK + 1: "not an object",
        size - 1: recipe_failure(0, status_code="five hundred"),
    }
    batch = [bad.get(n, recipe_failure(n, NOW + timedelta(seconds=n))) for n in range(size)]
    lines = [1000 + n for n in range(size)]  # as `immunity ingest` numbers a file's lines
    result = process_failures(batch, engine=engine, settings=settings(), indexes=lines)
    assert result.accepted == size - 3
    assert [r.index for r in result.rejected] == [1000 + n for n in sorted(bad)]
    assert one(engine, Signature).occurrence_count == size - 3
    with Session(engine) as session:
        kept = session.exec(select(FailureEvent.received_at)).scalars().all()  # type: ignore[attr-defined]
    # The newest five of the whole batch, whatever chunk they were prepared in.
    assert sorted(kept) == [NOW + timedelta(seconds=n) for n in range(size - 6, size - 1)]


def test_counts_stay_exact_while_samples_stay_bounded(engine: Engine) -> None:
    for start in (0, 7):
        batch = [recipe_failure(n, NOW + timedelta(minutes=n)) for n in range(start, start + 7)]
        process_failures(batch, engine=engine, settings=settings())
    signature = one(engine, Signature)
    assert signature.occurrence_count == 14
    assert count(engine, FailureEvent) == 5
    with Session(engine) as session:
        kept = session.exec(select(FailureEvent.received_at)).scalars().all()  # type: ignore[attr-defined]
    assert min(kept) == NOW + timedelta(minutes=9)  # the newest five survive
    with Session(engine) as session:
        buckets = session.exec(select(OccurrenceBucket)).scalars().all()  # type: ignore[attr-defined]
    assert sum(b.count for b in buckets) == 14  # exact counts per 5-minute bucket
    assert {b.bucket_start.minute for b in buckets} == {0, 5, 10}
    assert signature.first_seen == NOW and signature.last_seen == NOW + timedelta(minutes=13)


def test_secrets_are_scrubbed_before_storing_and_long_text_truncated(engine: Engine) -> None:
    event = recipe_failure(1, message="x" * 20_000 + " contact bob@example.com")
    process_failures([event], engine=engine, settings=settings(max_message_chars=1000))
    stored = one(engine, FailureEvent)
    assert stored.request["headers"]["Authorization"] == "[Filtered]"
    assert stored.request["body"]["password"] == "[Filtered]"
    assert stored.request["body"]["prompt"] == "Build recipe website with search"
    assert len(stored.message) < 1100 and "truncated" in stored.message
    assert "hunter2" not in str(stored.model_dump()) and "secret-token" not in str(stored.request)
    assert stored.user_hash and "user-1" not in stored.user_hash


def test_third_occurrence_builds_exactly_one_linked_test(engine: Engine) -> None:
    config = settings()
    process_successes(
        [
            {"operation": "POST /api/generate", "list_counts": {"$.files": 3}},
            {"operation": "POST /api/generate", "list_counts": {"$.files": 1, "$.warnings": 0}},
        ],
        engine=engine,
        settings=config,
    )
    first = process_failures([recipe_failure(1), recipe_failure(2)], engine=engine, settings=config)
    assert first.candidates == []
    third = process_failures(
        [recipe_failure(3, NOW + timedelta(days=1))], engine=engine, settings=config, generate=True
    )
    assert len(third.candidates) == 1
    assert [o.created for o in third.generated] == [True]
    assert third.verify == [third.generated[0].test_id]  # due for its reproduction check
    assert sweep(None, engine=engine, settings=config).generated == []
    test = one(engine, RegressionTest)
    signature = one(engine, Signature)
    assert test.name == f"regression_dependency_validation_error_{signature.fingerprint[:8]}"
    assert test.created_from_signature_id == signature.id and signature.test_id == test.id
    assert signature.status == "tested"
    assert test.confidence == 75 and test.tags == ["regression", "dependency_error"]
    assert test.expectations == {"should_not_fail": True, "min_items": {"$.files": 1}}
    assert test.spec["method"] == "POST" and test.spec["path"] == "/api/generate"
    assert test.spec["body"]["prompt"] == "Build recipe website with search"
    # Only allowlisted headers are replayed: X-Trace is not one (and never Host or Authorization).
    assert test.spec["headers"] == {"Content-Type": "application/json"}


def test_occurrences_spread_beyond_the_window_build_no_test(engine: Engine) -> None:
    config = settings()
    batch = [recipe_failure(n, NOW + timedelta(days=8 * n)) for n in range(3)]
    result = process_failures(batch, engine=engine, settings=config, generate=True)
    assert result.candidates  # three in all …
    assert result.generated == []
    assert count(engine, RegressionTest) == 0  # … but never three within seven days


def test_signature_without_replayable_sample_says_why_until_one_arrives(engine: Engine) -> None:
    config = settings()
    batch = [recipe_failure(n, request=None) for n in range(3)]
    [outcome] = process_failures(batch, engine=engine, settings=config, generate=True).generated
    assert not outcome.created and "no sample carries an HTTP request" in outcome.reason
    assert one(engine, Signature).untestable_reason == outcome.reason
    result = process_failures([recipe_failure(9)], engine=engine, settings=config, generate=True)
    [outcome] = result.generated
    assert outcome.created
    assert one(engine, Signature).untestable_reason is None


def test_grouping_same_bug_together_and_different_bugs_apart(engine: Engine) -> None:
    other_path = recipe_failure(5)
    other_path["frames"][1]["function"] = "resolve"
    other_type = recipe_failure(6, error_type="KeyError")
    batch = [recipe_failure(1), recipe_failure(2), other_path, other_type]
    result = process_failures(batch, engine=engine, settings=settings())
    assert result.signatures == 3
    with Session(engine) as session:
        counts = sorted(session.exec(select(Signature.occurrence_count)).scalars().all())  # type: ignore[attr-defined]
        messages = set(session.exec(select(Signature.message)).scalars().all())  # type: ignore[attr-defined]
    assert counts == [1, 1, 2]
    # The signature shows the message scrubbed, then with its variable parts replaced.
    assert messages == {"dependency validation failed for project <int> ([Filtered])"}


def test_severity_keeps_the_highest_and_fixed_signature_regresses(engine: Engine) -> None:
    config = settings()
    process_failures([recipe_failure(1, severity="low")], engine=engine, settings=config)
    process_failures([recipe_failure(2, severity="critical")], engine=engine, settings=config)
    process_failures([recipe_failure(3, severity="medium")], engine=engine, settings=config)
    signature = one(engine, Signature)
    assert signature.severity == "critical" and signature.status == "ongoing"
    with Session(engine) as session:
        signature.status = "fixed"
        session.add(signature)
        session.commit()
    process_failures([recipe_failure(4)], engine=engine, settings=config)
    assert one(engine, Signature).status == "regressed"


def test_text_postgresql_refuses_is_cleaned_and_still_counted_once(engine: Engine) -> None:
    nasty = [
        recipe_failure(1, message="nul \x00 inside"),
        recipe_failure(2, context={"ratio": float("nan"), "note": "lone \ud800 surrogate"}),
        recipe_failure(3, error_type="Weird\x00Error"),
    ]
    result = process_failures(nasty, engine=engine, settings=settings())
    assert result.accepted == 3 and not result.rejected
    with Session(engine) as session:
        total = session.exec(select(func.sum(Signature.occurrence_count))).scalar_one()  # type: ignore[attr-defined]
        stored = session.exec(select(FailureEvent)).scalars().all()  # type: ignore[attr-defined]
    assert total == 3 and len(stored) == 3
    text = str([(e.error_type, e.message, e.context) for e in stored])
    assert "\x00" not in text and "\ud800" not in text
    successes = process_successes(
        [{"operation": "GET /\x00", "metadata": {"x": float("inf")}}],
        engine=engine,
        settings=settings(),
    )
    assert successes.accepted == 1


def test_a_test_the_store_refuses_leaves_the_batch_stored_and_the_signature_a_candidate(
    tmp_path: Path,
) -> None:
    engine = get_engine(f"sqlite:///{tmp_path / 'refusing.db'}")
    create_schema(engine)
    with engine.begin() as conn:  # the store refuses every new test, as a full disk would
        conn.execute(
            text(
                f"CREATE TRIGGER refuse BEFORE INSERT ON {RegressionTest.__tablename__} "
                "BEGIN SELECT RAISE(ABORT, 'refused'); END"
            )
        )
    config = settings()
    batch = [recipe_failure(n) for n in range(3)]
    result = process_failures(batch, engine=engine, settings=config, generate=True)
    assert result.accepted == 3 and result.candidates and result.generated == []
    signature = one(engine, Signature)
    assert (signature.occurrence_count, signature.test_id) == (3, None)
    assert count(engine, FailureEvent) == 3 and count(engine, RegressionTest) == 0

    with engine.begin() as conn:
        conn.execute(text("DROP TRIGGER refuse"))
    result = process_failures([recipe_failure(4)], engine=engine, settings=config, generate=True)
    assert [o.created for o in result.generated] == [True]  # the next occurrence builds it
    assert one(engine, Signature).occurrence_count == 4


def test_all_or_nothing_stores_nothing_when_any_event_is_bad(engine: Engine) -> None:
    failures = [recipe_failure(n) for n in range(3)]
    successes = [{"operation": "GET /x"}, {"duration_ms": -1}]
    result = ingest_events(
        failures, successes, engine=engine, settings=settings(), all_or_nothing=True
    )
    assert result.accepted == 0 and [r.index for r in result.rejected] == [1]
    assert count(engine, Signature) == 0 and count(engine, SuccessEvent) == 0
    result = ingest_events(
        failures, successes[:1], engine=engine, settings=settings(), all_or_nothing=True
    )
    assert result.accepted == 4 and not result.rejected
    assert count(engine, FailureEvent) == 3 and count(engine, SuccessEvent) == 1
