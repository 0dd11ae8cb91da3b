"""Reproduction checks against the real sample service: a better capture replaces a bad one."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from sqlalchemy import Engine
from sqlmodel import Session, select

from immunity.examples.sample_service import create_app, start_server
from immunity.models.db import create_schema
from immunity.models.settings import Environment, Settings
from immunity.models.tables import RegressionTest, Signature
from immunity.tasks.generate.reproduce import verify_tests
from immunity.tasks.ingest.pipeline import process_failures

RECIPE = {"prompt": "Build recipe website with search", "framework": "react"}


@pytest.fixture
def sample() -> Iterator[str]:
    with start_server(create_app()) as server:
        httpx.put(
            f"{server.base_url}/admin/faults/dependency_validation", json={"enabled": True}
        ).raise_for_status()
        yield server.base_url


def failure(base_url: str, body: object, **headers: str) -> dict:
    return {
        "error_type": "DependencyValidationError",
        "message": "react-router-dom@7.1.0 is not allowed",
        "frames": [{"module": "app.generation", "function": "check", "in_app": True}],
        "status_code": 500,
        "environment": "staging",
        "request": {
            "method": "POST",
            "url": f"{base_url}/api/generate",
            "headers": {"content-type": "application/json", "content-length": "62", **headers},
            "body": body,
        },
    }


def test_a_later_complete_capture_replaces_the_spec_and_reproduces(
    engine: Engine, sample: str, tmp_path: Path
) -> None:
    create_schema(engine)
    settings = Settings(
        data_dir=tmp_path,
        environments={"staging": Environment(base_url=sample)},
        reproduction_retry_minutes=60,
    )
    result = process_failures(
        [failure(sample, None) for _ in range(3)], engine=engine, settings=settings, generate=True
    )
    [created] = [o.test_id for o in result.generated if o.created]
    assert result.verify == [created]
    [checked] = verify_tests(engine, settings, result.verify)
    assert checked.reproduction == "not_reproduced" and "422" in (checked.reason or "")

    # Another occurrence with the same poor capture: checked less than an hour ago, not due.
    result = process_failures(
        [failure(sample, None)], engine=engine, settings=settings, generate=True
    )
    assert result.rechecks and result.verify == []

    # An occurrence whose capture has the body replaces the spec and is checked at once.
    result = process_failures(
        [failure(sample, RECIPE, **{"x-request-id": "r-9"})],
        engine=engine,
        settings=settings,
        generate=True,
    )
    assert result.verify == [created]
    with Session(engine) as session:
        test = session.get(RegressionTest, created)
        assert (test.spec["body"], test.reproduction, test.capture_issues) == (
            RECIPE,
            "pending",
            [],
        )
    [checked] = verify_tests(engine, settings, result.verify)
    assert checked.reproduction == "reproduced"
    with Session(engine) as session:
        signature = session.exec(select(Signature)).one()
        test = session.get(RegressionTest, created)
    assert signature.occurrence_count == 5
    assert test.reproduction_evidence["actual_status"] == 500
    # Trusted now: no more re-checks on later occurrences.
    result = process_failures(
        [failure(sample, RECIPE)], engine=engine, settings=settings, generate=True
    )
    assert (result.rechecks, result.verify) == ([], [])


def test_replays_against_production_stay_unverified(
    engine: Engine, sample: str, tmp_path: Path
) -> None:
    create_schema(engine)
    production = Environment(base_url=sample, is_production=True)
    settings = Settings(data_dir=tmp_path, environments={"staging": production})
    result = process_failures(
        [failure(sample, RECIPE) for _ in range(3)], engine=engine, settings=settings, generate=True
    )
    [checked] = verify_tests(engine, settings, result.verify)
    assert checked.reproduction == "unverified", checked
    assert "does not allow replays" in (checked.reason or "")
    assert "IMMUNITY_REPRODUCTION_ENVIRONMENT" in (checked.reason or "")
    # A production environment that allows replays still refuses their unsafe methods.
    allowing = production.model_copy(update={"replay": True})
    settings = settings.model_copy(update={"environments": {"staging": allowing}})
    [checked] = verify_tests(engine, settings, result.verify)
    assert checked.reproduction == "unverified" and "refused: POST" in (checked.reason or "")
    # A reproduction environment is where new tests are checked instead.
    settings = settings.model_copy(
        update={
            "environments": {
                "staging": Environment(base_url=sample, is_production=True),
                "repro": Environment(base_url=sample),
            },
            "reproduction_environment": "repro",
        }
    )
    [checked] = verify_tests(engine, settings, result.verify)
    assert checked.reproduction == "reproduced"
