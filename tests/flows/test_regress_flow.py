"""The regression loop end to end on the sample service: fails, fixed, regressed, alerted."""

from __future__ import annotations

import asyncio
import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any
from uuid import UUID

import httpx
import pytest
from fastapi import FastAPI, Response
from prefect.client.orchestration import get_client
from prefect.client.schemas.filters import (
    ArtifactFilter,
    ArtifactFilterFlowRunId,
    ArtifactFilterKey,
)
from prefect.client.schemas.sorting import ArtifactSort
from sqlmodel import Session, select

from immunity.examples.sample_service import JsonlSink, Reporter, create_app, start_server
from immunity.flows.ingest import ingest_failures
from immunity.flows.regress import run_regression_suite
from immunity.models.db import get_engine
from immunity.models.enums import Trigger
from immunity.models.settings import get_settings
from immunity.models.tables import RegressionTest, Signature, SuiteRun, TestExecution
from immunity.tasks.regress.reports import RECENT_FAILURES_KEY, SUITE_SUMMARY_KEY, TEST_HEALTH_KEY
from tests.tasks.test_health_alerts import Receiver

pytestmark = pytest.mark.usefixtures("prefect_harness")

RECIPE = {"prompt": "Build recipe website with search", "framework": "react"}


@pytest.fixture
def service(tmp_path: Path) -> Iterator[tuple[str, Reporter, JsonlSink]]:
    sink = JsonlSink(tmp_path / "events")
    reporter = Reporter(sink, flush_interval_s=0.05)
    server = start_server(create_app(reporter, release="sample@test", environment="staging"))
    try:
        yield server.base_url, reporter, sink
    finally:
        server.stop()
        reporter.close()


@pytest.fixture
def configured(
    store: str, service: tuple[str, Reporter, JsonlSink], monkeypatch: pytest.MonkeyPatch, tmp_path
) -> Iterator[Receiver]:
    """Settings pointing `staging` at the sample service and alerts at a webhook receiver."""
    base_url = service[0]
    with Receiver() as receiver:
        environments = {"staging": {"base_url": base_url, "is_production": False}}
        monkeypatch.setenv("IMMUNITY_ENVIRONMENTS", json.dumps(environments))
        monkeypatch.setenv("IMMUNITY_ALERT_WEBHOOK_URL", receiver.url)
        monkeypatch.setenv("IMMUNITY_DATA_DIR", str(tmp_path / "data"))
        monkeypatch.setenv("IMMUNITY_REGRESSION_RERUNS", "0")
        get_settings.cache_clear()
        yield receiver
    get_settings.cache_clear()


def set_fault(base_url: str, name: str, enabled: bool) -> None:
    response = httpx.put(f"{base_url}/admin/faults/{name}", json={"enabled": enabled})
    response.raise_for_status()


def test_generated_test_fails_then_fixes_then_regresses_and_alerts(
    store: str, service: tuple[str, Reporter, JsonlSink], configured: Receiver
) -> None:
    base_url, reporter, sink = service
    set_fault(base_url, "dependency_validation", True)
    for _ in range(3):
        assert httpx.post(f"{base_url}/api/generate", json=RECIPE).status_code == 500
    reporter.flush()
    report = ingest_failures(sink.read_failures())
    assert report.tests_created == 1
    engine = get_engine(store)
    with Session(engine) as session:
        test = session.exec(select(RegressionTest)).one()
        signature = session.exec(
            select(Signature).where(Signature.id == test.created_from_signature_id)
        ).one()
    assert test.environment == "staging" and signature.status == "tested"

    def run() -> tuple[Any, RegressionTest, Signature]:
        summary = run_regression_suite(trigger=Trigger.CI)
        with Session(engine) as session:
            return (
                summary,
                session.get(RegressionTest, test.id),
                session.get(Signature, signature.id),
            )

    # Fault on: the replay fails, the signature stays `tested`, confidence 75 → 65.
    summary, after, sig = run()
    assert (summary.total, summary.failed, summary.passed) == (1, 1, 0)
    assert summary.critical_failures == [test.name] and not summary.gate_passed
    assert (after.confidence, after.fail_count, sig.status) == (65, 1, "tested")

    # Fault off: it passes, the signature is `fixed`, confidence 65 → 70.
    set_fault(base_url, "dependency_validation", False)
    summary, after, sig = run()
    assert (summary.passed, summary.gate_passed) == (1, True)
    assert (after.confidence, after.pass_count, sig.status) == (70, 1, "fixed")
    assert [t.kind for t in summary.transitions] == ["fixed"]

    # Fault back on: it fails again, the signature is `regressed`, the webhook hears of it.
    set_fault(base_url, "dependency_validation", True)
    summary, after, sig = run()
    assert (after.confidence, sig.status) == (60, "regressed")
    kinds = {body["kind"] for body in configured.bodies}
    assert "regressed" in kinds, configured.bodies
    regressed = next(body for body in configured.bodies if body["kind"] == "regressed")
    assert regressed["details"]["test_name"] == test.name

    with Session(engine) as session:
        executions = session.exec(select(TestExecution).order_by(TestExecution.id)).all()
        suites = session.exec(select(SuiteRun).order_by(SuiteRun.id)).all()
    assert [e.status for e in executions] == ["failed", "passed", "failed"]
    failed = executions[-1]
    assert failed.actual["status"] == 500 and failed.expected["should_not_fail"] is True
    assert failed.calls[0]["method"] == "POST" and failed.calls[0]["path"] == "/api/generate"
    assert failed.trigger == "ci" and failed.flow_run_id
    assert [s.status for s in suites] == ["finished"] * 3
    # Every run leaves a JSON report and JUnit XML behind.
    assert Path(summary.report_junit).read_text().count("<failure") == 1
    assert json.loads(Path(summary.report_json).read_text())["summary"]["suite_run_id"] == (
        summary.suite_run_id
    )
    # The dashboards: the latest of each artifact key names the test and the run (this run's:
    # other tests' flows may publish the same keys on the shared Prefect server meanwhile).
    with get_client(sync_client=True) as client:
        latest = {
            artifact.key: artifact.data
            for artifact in client.read_artifacts(
                artifact_filter=ArtifactFilter(
                    key=ArtifactFilterKey(
                        any_=[TEST_HEALTH_KEY, SUITE_SUMMARY_KEY, RECENT_FAILURES_KEY]
                    ),
                    flow_run_id=ArtifactFilterFlowRunId(any_=[UUID(failed.flow_run_id)]),
                ),
                sort=ArtifactSort.CREATED_DESC,
            )[::-1]
        }
    [health] = [row for row in json.loads(latest[TEST_HEALTH_KEY]) if row["test"] == test.name]
    assert (health["confidence"], health["band"], health["failed"]) == (60, "reliable", 2)
    assert f"Suite run {summary.suite_run_id}" in latest[SUITE_SUMMARY_KEY]
    assert test.name in latest[RECENT_FAILURES_KEY]


def _troubled_app() -> FastAPI:
    """A target with a path that answers late and one that answers 500."""
    app = FastAPI()

    @app.get("/{path:path}")
    async def anything(path: str) -> Response:
        if path.startswith("slow"):
            await asyncio.sleep(2)
        if path.startswith("boom"):
            return Response(
                '{"detail": "internal"}', status_code=500, media_type="application/json"
            )
        return Response('{"ok": true, "items": [1]}', media_type="application/json")

    return app


def test_a_down_slow_or_failing_target_is_reported_not_crashed(
    store: str, configured: Receiver, monkeypatch: pytest.MonkeyPatch
) -> None:
    server = start_server(_troubled_app())
    environments = {
        "staging": {"base_url": server.base_url, "is_production": False},
        "gone": {"base_url": "http://127.0.0.1:9", "is_production": False},
    }
    monkeypatch.setenv("IMMUNITY_ENVIRONMENTS", json.dumps(environments))
    monkeypatch.setenv("IMMUNITY_REGRESSION_TIMEOUT_S", "0.5")
    monkeypatch.setenv("IMMUNITY_REGRESSION_TRANSPORT_RETRIES", "1")
    get_settings.cache_clear()
    engine = get_engine(store)
    with Session(engine) as session:
        for name, path, env in (
            ("ok", "/fine", "staging"),
            ("slow", "/slow", "staging"),
            ("boom", "/boom", "staging"),
            ("down", "/fine", "gone"),
            ("nowhere", "/fine", "unconfigured"),
        ):
            session.add(
                RegressionTest(
                    name=name,
                    spec={"method": "GET", "path": path},
                    expectations={"should_not_fail": True},
                    environment=env,
                    tags=["regression"],
                )
            )
        session.commit()
    try:
        summary = run_regression_suite()
    finally:
        server.stop()
    with Session(engine) as session:
        rows = session.exec(
            select(RegressionTest.name, TestExecution.status, TestExecution.error).join(
                TestExecution, TestExecution.test_id == RegressionTest.id
            )
        ).all()
    by_name = {name: (status, error) for name, status, error in rows}
    assert by_name["ok"][0] == "passed"
    assert by_name["slow"] == ("error", by_name["slow"][1]) and "timed out" in by_name["slow"][1]
    assert by_name["boom"][0] == "failed" and "500" in by_name["boom"][1]
    assert by_name["down"][0] == "error" and "ConnectError" in by_name["down"][1]
    assert by_name["nowhere"][0] == "error" and "unknown environment" in by_name["nowhere"][1]
    assert (summary.total, summary.passed, summary.failed, summary.errors) == (5, 1, 1, 3)
    assert not summary.gate_passed


def test_unsafe_replay_against_production_is_refused(
    store: str, configured: Receiver, monkeypatch: pytest.MonkeyPatch
) -> None:
    hits: list[str] = []
    app = FastAPI()

    @app.post("/api/orders")
    async def create() -> dict[str, bool]:
        hits.append("post")
        return {"ok": True}

    server = start_server(app)
    # Production lets immunity replay here (safe methods only, unless a test allows unsafe ones).
    production = {"base_url": server.base_url, "is_production": True, "replay": True}
    environments = {"production": production}
    monkeypatch.setenv("IMMUNITY_ENVIRONMENTS", json.dumps(environments))
    get_settings.cache_clear()
    engine = get_engine(store)
    with Session(engine) as session:
        for name, allow in (("refused", False), ("allowed", True)):
            session.add(
                RegressionTest(
                    name=name,
                    spec={"method": "POST", "path": "/api/orders", "body": {"sku": "A"}},
                    expectations={"status": 200},
                    environment="production",
                    allow_unsafe=allow,
                )
            )
        session.commit()
    try:
        summary = run_regression_suite()
    finally:
        server.stop()
    assert (summary.skipped, summary.passed) == (1, 1)
    assert hits == ["post"]  # only the allowed test reached the service
    with Session(engine) as session:
        refused = session.exec(select(RegressionTest).where(RegressionTest.name == "refused")).one()
        execution = session.exec(
            select(TestExecution).where(TestExecution.test_id == refused.id)
        ).one()
    assert execution.status == "skipped" and "production" in (execution.error or "")
    assert (refused.run_count, refused.confidence) == (0, 75)
