"""The readiness-check flow end to end: a real suite run, real probes, the artifact read back."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path

import pytest
from fastapi import FastAPI, Response
from prefect.client.orchestration import get_client
from prefect.client.schemas.filters import ArtifactFilter, ArtifactFilterKey
from prefect.client.schemas.sorting import ArtifactSort
from sqlmodel import Session

from immunity.examples.sample_service import start_server
from immunity.flows.health import check_readiness
from immunity.flows.regress import run_regression_suite
from immunity.models.db import get_engine
from immunity.models.readiness import ReadinessBand
from immunity.models.settings import get_settings
from immunity.models.tables import RegressionTest
from immunity.tasks.health.readiness_tasks import READINESS_ARTIFACT_KEY

pytestmark = pytest.mark.usefixtures("prefect_harness")


def _target() -> FastAPI:
    app = FastAPI()

    @app.get("/api/health")
    async def health() -> dict[str, str]:
        return {"status": "ok"}

    @app.get("/checkout")
    async def checkout() -> dict[str, bool]:
        return {"ok": True}

    @app.get("/refund")
    async def refund() -> Response:
        return Response('{"detail": "internal"}', status_code=500, media_type="application/json")

    return app


@pytest.fixture
def target(store: str, monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> Iterator[str]:
    """`staging` is a real service; the health probe asks it; no queue is configured."""
    with start_server(_target()) as server:
        environments = {"staging": {"base_url": server.base_url, "is_production": False}}
        probes = [{"name": "api", "url": f"{server.base_url}/api/health"}]
        monkeypatch.setenv("IMMUNITY_ENVIRONMENTS", json.dumps(environments))
        monkeypatch.setenv("IMMUNITY_HEALTH_PROBES", json.dumps(probes))
        monkeypatch.setenv("IMMUNITY_DATA_DIR", str(tmp_path / "data"))
        monkeypatch.setenv("IMMUNITY_REGRESSION_RERUNS", "0")
        monkeypatch.delenv("IMMUNITY_QUEUE_ADDRESS", raising=False)
        get_settings.cache_clear()
        yield server.base_url
    get_settings.cache_clear()


def test_readiness_after_a_suite_run_is_scored_and_published(store: str, target: str) -> None:
    with Session(get_engine(store)) as session:
        for name, path, type_ in (
            ("checkout works", "/checkout", "integration"),
            ("refund works", "/refund", "regression"),  # a regression test: critical
        ):
            session.add(
                RegressionTest(
                    name=name,
                    type=type_,
                    spec={"method": "GET", "path": path},
                    expectations={"should_not_fail": True},
                    environment="staging",
                )
            )
        session.commit()
    summary = run_regression_suite(environment="staging")
    assert (summary.passed, summary.failed) == (1, 1)

    readiness = check_readiness(environment="staging")
    scores = {part.name: part.score for part in readiness.parts}
    assert scores == {"workflow": 50, "ui": None, "health": 100, "database": 100, "queue": None}
    # UI and queue unmeasured: (50·40 + 100·20 + 100·5) / 65 = 4500 / 65 = 69.23
    assert readiness.score == 69.2 and readiness.band == ReadinessBand.NEEDS_WORK
    assert readiness.critical_failures == ["refund works"]
    assert readiness.environment == "staging"
    assert any(note.startswith("ui not measured") for note in readiness.notes)

    with get_client(sync_client=True) as client:
        artifacts = client.read_artifacts(
            artifact_filter=ArtifactFilter(key=ArtifactFilterKey(any_=[READINESS_ARTIFACT_KEY])),
            sort=ArtifactSort.CREATED_DESC,
        )
    # Other tests' flows publish readiness on the shared Prefect server too: find this one's.
    [markdown, *_] = [
        str(a.data) for a in artifacts if "# Readiness: staging — 69.2 (needs work)" in str(a.data)
    ]
    assert "| workflow | 40.0 | 61.5 | 50.0 | 1 of 2 workflow tests passed |" in markdown
    assert "its 30 % weight went to the others" in markdown
    assert "- refund works" in markdown
    assert "| api | http | yes | 200 |" in markdown
