"""Acceptance: a generated test proves it reproduces its failure before its passes are trusted.

The sample service reports through the real sentry-sdk to immunity's API on 127.0.0.1. Its
`dependency_validation` fault depends on the body (a prompt mentioning "recipe"). When the SDK
drops the body, the replay cannot fail the same way: the test is `not_reproduced` and its
signature never turns `fixed`. With the body captured, the test is `reproduced`, fails while
the fault is on and, once it is off, passes and fixes the signature.
"""

from __future__ import annotations

import json
import time
from collections.abc import Iterator
from typing import Any

import httpx
import pytest
import sentry_sdk
from sentry_sdk.integrations.fastapi import FastApiIntegration
from sentry_sdk.integrations.starlette import StarletteIntegration
from sqlmodel import Session, select

from immunity.api.app import create_app as create_api
from immunity.examples.sample_service import create_app as create_sample
from immunity.examples.sample_service import start_server
from immunity.flows.regress import run_regression_suite
from immunity.models.db import get_engine
from immunity.models.settings import Environment, Settings, get_settings
from immunity.models.tables import FailureEvent, RegressionTest, Signature
from tests.api.test_sentry_sdk import KEY, PROJECT, Immunity, settle

RECIPE = {"prompt": "Build recipe website with search", "framework": "react"}


@pytest.fixture
def reporting_sample(
    request: pytest.FixtureRequest, store: str, monkeypatch: pytest.MonkeyPatch, tmp_path
) -> Iterator[tuple[Immunity, str]]:
    """immunity's API and the sample service reporting to it through sentry-sdk (staging)."""
    body_size = request.param
    engine = get_engine(store)
    # The API and the flows sign and check replay markers with one key: one data directory.
    settings = Settings(
        sentry_projects={PROJECT: KEY}, reproduction_retry_minutes=0, data_dir=tmp_path / "data"
    )
    api = create_api(settings=settings, engine=engine)
    with start_server(api) as immunity_server:
        own = immunity_server.base_url
        sentry_sdk.init(
            dsn=f"http://{KEY}@127.0.0.1:{immunity_server.port}/{PROJECT}",
            send_default_pii=True,
            default_integrations=False,
            integrations=[StarletteIntegration(), FastApiIntegration()],
            traces_sample_rate=0,
            environment="staging",
            max_request_body_size=body_size,  # "never": the SDK sends `data: ""`
            before_send=lambda event, hint: (
                None if str(event.get("request", {}).get("url", "")).startswith(own) else event
            ),
            http_proxy="",
        )
        try:
            with start_server(create_sample(propagate_errors=True)) as sample:
                environments = {"staging": Environment(base_url=sample.base_url)}
                api.state.settings = settings.model_copy(update={"environments": environments})
                monkeypatch.setenv(
                    "IMMUNITY_ENVIRONMENTS",
                    json.dumps({"staging": {"base_url": sample.base_url}}),
                )
                monkeypatch.setenv("IMMUNITY_DATA_DIR", str(tmp_path / "data"))
                monkeypatch.setenv("IMMUNITY_REGRESSION_RERUNS", "0")
                get_settings.cache_clear()
                yield Immunity(immunity_server, api, engine), sample.base_url
        finally:
            sentry_sdk.get_client().close(timeout=5)
            sentry_sdk.get_global_scope().set_client(None)
            get_settings.cache_clear()


def fault(base_url: str, enabled: bool) -> None:
    response = httpx.put(
        f"{base_url}/admin/faults/dependency_validation", json={"enabled": enabled}
    )
    response.raise_for_status()


def checked_test(immunity: Immunity, timeout_s: float = 30) -> RegressionTest:
    """Wait for the reproduction check the API runs after answering; return the test."""
    deadline = time.monotonic() + timeout_s
    while True:
        sentry_sdk.flush(timeout=2)
        with Session(immunity.engine) as session:
            test = session.exec(select(RegressionTest)).first()
        if test is not None and test.reproduction != "pending":
            return test
        assert time.monotonic() < deadline, "the reproduction check did not finish"
        time.sleep(0.1)


def signature_status(immunity: Immunity) -> str:
    with Session(immunity.engine) as session:
        return session.exec(select(Signature)).one().status


def fail_three_times(immunity: Immunity, base_url: str) -> None:
    fault(base_url, True)
    for _ in range(3):
        response = httpx.post(f"{base_url}/api/generate", json=RECIPE, timeout=10)
        assert response.status_code == 500
    settle(immunity, FailureEvent, 3)


@pytest.mark.usefixtures("prefect_harness")
@pytest.mark.parametrize("reporting_sample", ["never"], indirect=True)
def test_a_dropped_body_is_not_reproduced_and_never_fixes(
    reporting_sample: tuple[Immunity, str],
) -> None:
    immunity, base_url = reporting_sample
    fail_three_times(immunity, base_url)
    test = checked_test(immunity)
    assert test.spec["body"] is None
    assert test.reproduction == "not_reproduced", test.reproduction_evidence
    evidence = test.reproduction_evidence
    assert (evidence["expected_status"], evidence["actual_status"]) == (500, 422)
    assert "422" in evidence["reason"] and "500" in evidence["reason"]
    assert any("body is missing" in issue for issue in test.capture_issues), test.capture_issues

    for enabled in (True, False):  # neither with the fault on nor after: never `fixed`
        fault(base_url, enabled)
        run_regression_suite(environment="staging")
        assert signature_status(immunity) == "tested"
    # Its own replays are not counted as occurrences of the bug.
    with Session(immunity.engine) as session:
        assert session.exec(select(Signature)).one().occurrence_count == 3


@pytest.mark.usefixtures("prefect_harness")
@pytest.mark.parametrize("reporting_sample", ["always"], indirect=True)
def test_a_complete_capture_is_reproduced_then_fixed(
    reporting_sample: tuple[Immunity, str],
) -> None:
    immunity, base_url = reporting_sample
    fail_three_times(immunity, base_url)
    test = checked_test(immunity)
    assert test.spec["body"] == RECIPE and test.capture_issues == []
    assert test.reproduction == "reproduced", test.reproduction_evidence
    assert test.reproduction_evidence["actual_status"] == 500
    # The target reported the replay's failure back (marked as a replay): the same signature.
    deadline = time.monotonic() + 20
    while not (reported := _evidence(immunity, test.id).get("reported")):
        assert time.monotonic() < deadline, "the replay's failure report never arrived"
        sentry_sdk.flush(timeout=2)
        time.sleep(0.1)
    assert reported["same_signature"] is True

    summary = run_regression_suite(environment="staging")
    assert (summary.failed, signature_status(immunity)) == (1, "tested")
    fault(base_url, False)
    summary = run_regression_suite(environment="staging")
    assert (summary.passed, signature_status(immunity)) == (1, "fixed")
    with Session(immunity.engine) as session:
        assert session.exec(select(Signature)).one().occurrence_count == 3


def _evidence(immunity: Immunity, test_id: Any) -> dict[str, Any]:
    with Session(immunity.engine) as session:
        return dict(session.get(RegressionTest, test_id).reproduction_evidence or {})
