"""The sample service over real HTTP: healthy paths, each fault, and the events it reports."""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any

import pytest

from immunity.examples.sample_service import Fault
from immunity.models.schemas import FailureEventIn, SuccessEventIn
from tests.examples.conftest import Service, wait_until

SERVICE_PACKAGE = "immunity.examples.sample_service"

RECIPE = {"prompt": "Build recipe website with search", "framework": "react"}


def _job_status(service: Service, job_id: str) -> str:
    response = service.client.get(f"/api/jobs/{job_id}")
    assert response.status_code == 200, response.text
    return str(response.json()["status"])


def test_healthy_paths_succeed(service: Service) -> None:
    client = service.client
    health = client.get("/api/health")
    assert health.status_code == 200
    assert health.json()["status"] == "ok"
    assert health.json()["release"] == "sample@test"

    recipe = client.post("/api/generate", json=RECIPE)
    assert recipe.status_code == 200, recipe.text
    body = recipe.json()
    assert body["project_id"]
    assert all(f["path"] and f["content"] for f in body["files"])
    simple = client.post("/api/generate", json={"prompt": "a landing page", "framework": "html"})
    assert simple.status_code == 200
    assert 1 <= len(simple.json()["files"]) < len(body["files"])  # file count follows the prompt

    submitted = client.post("/api/jobs", json={"jobspec_id": "bias-v1", "questions": ["a?", "b?"]})
    assert submitted.status_code == 202
    job = submitted.json()
    assert job["id"] and job["jobspec_id"] == "bias-v1" and job["status"] == "created"
    assert wait_until(lambda: _job_status(service, job["id"]) == "completed")
    done = client.get(f"/api/jobs/{job['id']}").json()
    assert [r["question"] for r in done["output"]["responses"]] == ["a?", "b?"]

    executions = client.get("/api/executions")
    assert executions.status_code == 200
    assert job["id"] in {row["job_id"] for row in executions.json()["executions"]}

    for path in ("/", "/products", "/products/1"):
        page = client.get(path)
        assert page.status_code == 200 and page.headers["content-type"].startswith("text/html")
    assert client.get("/products/999").status_code == 404
    assert client.get("/api/jobs/job-missing").status_code == 404
    assert service.failures() == []


@dataclass(frozen=True)
class ExceptionFault:
    fault: Fault
    method: str
    path: str
    body: dict[str, Any] | None
    status: int
    error_type: str
    message: str
    culprit: str  # the innermost in-app function


EXCEPTION_FAULTS = [
    ExceptionFault(
        Fault.DEPENDENCY_VALIDATION,
        "POST",
        "/api/generate",
        RECIPE,
        500,
        "DependencyValidationError",
        r"dependency validation failed: package 'react-router-dom@7\.1\.0' is not in the"
        r" allow-list for project [0-9a-f-]{36}",
        "_check_allowed",
    ),
    ExceptionFault(
        Fault.SLOW_MODEL,
        "POST",
        "/api/generate",
        {"prompt": "a blog with a gallery", "framework": "vue"},
        504,
        "TimeoutError",
        r"AI model timed out after 2\.0s",
        "complete",
    ),
    ExceptionFault(
        Fault.RATE_LIMIT,
        "POST",
        "/api/generate",
        {"prompt": "a shop with a cart", "framework": "html"},
        429,
        "RateLimitError",
        r"upstream rate limit exceeded: 429 Too Many Requests",
        "_request",
    ),
    ExceptionFault(
        Fault.EXECUTIONS_500,
        "GET",
        "/api/executions",
        None,
        500,
        "DatabaseError",
        r"could not fetch executions: .+",
        "acquire",
    ),
]


@pytest.mark.parametrize("case", EXCEPTION_FAULTS, ids=lambda case: case.fault.value)
def test_exception_fault_fails_and_is_reported(service: Service, case: ExceptionFault) -> None:
    switched = service.set_fault(case.fault)
    assert switched.status_code == 200
    assert switched.json()["faults"][case.fault.value] is True

    headers = {"X-User": "user-a", "Authorization": "Bearer not-scrubbed-here"}
    response = service.client.request(
        case.method, case.path, json=case.body, headers=headers, params={"trace": "1"}
    )
    assert response.status_code == case.status, response.text
    assert response.json()["error"] == case.error_type

    (raw,) = service.failures()
    event = FailureEventIn.model_validate(raw)
    assert event.error_type == case.error_type
    assert re.fullmatch(case.message, event.message), event.message
    assert event.status_code == case.status
    assert event.environment == "testing" and event.release == "sample@test"
    assert event.user == "user-a" and event.source == "python"
    assert event.stacktrace and case.error_type in event.stacktrace

    in_app = [frame for frame in event.frames if frame.get("in_app")]
    assert len(in_app) >= 3
    assert all(frame.get("module", "").startswith(f"{SERVICE_PACKAGE}.") for frame in in_app)
    assert not any(
        f.get("module").startswith("examples.") for f in event.frames if not f.get("in_app")
    )
    assert in_app[0].get("module") == f"{SERVICE_PACKAGE}.app"  # outermost first
    assert event.frames[-1].get("in_app") and event.frames[-1].get("function") == case.culprit
    assert all(frame.get("lineno") and frame.get("context_line") for frame in in_app)
    assert f"{SERVICE_PACKAGE}.reporter" not in {frame.get("module") for frame in event.frames}

    assert event.request is not None
    assert event.request.method == case.method
    assert event.request.url == f"{service.base_url}{case.path}?trace=1"
    assert event.request.body == case.body
    assert event.request.headers["authorization"] == "Bearer not-scrubbed-here"
    assert event.request.headers["x-user"] == "user-a"
    assert raw["tags"]["route"] == case.path

    assert service.set_fault(case.fault, enabled=False).json()["enabled"] is False
    healthy = service.client.request(case.method, case.path, json=case.body)
    assert healthy.status_code == 200, healthy.text
    assert len(service.failures()) == 1


def test_dependency_fault_needs_a_recipe_and_varies_its_message(service: Service) -> None:
    service.set_fault(Fault.DEPENDENCY_VALIDATION)
    other = service.client.post("/api/generate", json={"prompt": "a blog", "framework": "react"})
    assert other.status_code == 200
    for _ in range(2):
        assert service.client.post("/api/generate", json=RECIPE).status_code == 500
    messages = {event["message"] for event in service.failures()}
    assert len(messages) == 2  # the project id differs: immunity must normalise it
    assert {event["context"]["project_id"] in event["message"] for event in service.failures()} == {
        True
    }


def test_empty_job_id_is_silent(service: Service) -> None:
    service.set_fault(Fault.EMPTY_JOB_ID)
    response = service.client.post("/api/jobs", json={"jobspec_id": "js", "questions": ["q"]})
    assert response.status_code == 202
    assert response.json() == {"id": "", "jobspec_id": "js", "status": "created"}
    service.set_fault(Fault.EMPTY_JOB_ID, enabled=False)
    restored = service.client.post("/api/jobs", json={"jobspec_id": "js", "questions": ["q"]})
    assert restored.json()["id"].startswith("job-")
    assert service.failures() == []


def test_stuck_jobs_stay_created(service: Service) -> None:
    service.set_fault(Fault.JOBS_STUCK)
    stuck = service.client.post("/api/jobs", json={"jobspec_id": "js", "questions": ["q"]}).json()
    service.set_fault(Fault.JOBS_STUCK, enabled=False)
    moving = service.client.post("/api/jobs", json={"jobspec_id": "js", "questions": ["q"]}).json()
    assert wait_until(lambda: _job_status(service, moving["id"]) == "completed")
    assert _job_status(service, stuck["id"]) == "created"
    assert service.failures() == []


def test_executions_fault_degrades_health(service: Service) -> None:
    service.set_fault(Fault.EXECUTIONS_500)
    degraded = service.client.get("/api/health")
    assert degraded.status_code == 503
    assert degraded.json()["checks"] == {"database": "error"}
    service.client.post("/admin/faults/reset")
    assert service.client.get("/api/health").status_code == 200


def test_success_events_carry_list_counts(service: Service) -> None:
    files = service.client.post("/api/generate", json=RECIPE).json()["files"]
    executions = service.client.get("/api/executions").json()["executions"]
    service.client.get("/api/health")
    service.client.get("/admin/faults")
    service.client.get("/products")
    events = service.successes()
    for event in events:
        SuccessEventIn.model_validate(event)
    by_operation = {event["operation"]: event for event in events}
    assert set(by_operation) == {"POST /api/generate", "GET /api/executions"}
    assert by_operation["POST /api/generate"]["list_counts"] == {"$.files": len(files)}
    assert by_operation["GET /api/executions"]["list_counts"] == {"$.executions": len(executions)}
    assert all(event["duration_ms"] >= 0 and event["environment"] == "testing" for event in events)


def test_job_routes_report_their_template(service: Service) -> None:
    job = service.client.post("/api/jobs", json={"jobspec_id": "js", "questions": ["q"]}).json()
    service.client.get(f"/api/jobs/{job['id']}")
    operations = [event["operation"] for event in service.successes()]
    assert operations == ["POST /api/jobs", "GET /api/jobs/{job_id}"]


def test_admin_faults(service: Service) -> None:
    listed = service.client.get("/admin/faults").json()
    assert listed["faults"] == {fault.value: False for fault in Fault}
    unknown = service.set_fault("no_such_fault")
    assert unknown.status_code == 404
    assert "unknown fault 'no_such_fault'" in unknown.json()["detail"]
    assert "dependency_validation" in unknown.json()["detail"]
    bad = service.client.put("/admin/faults/rate_limit", json={"enabled": "maybe"})
    assert bad.status_code == 422
    service.set_fault(Fault.RATE_LIMIT)
    service.set_fault(Fault.SLOW_MODEL)
    reset = service.client.post("/admin/faults/reset")
    assert reset.status_code == 200
    assert not any(reset.json()["faults"].values())


def test_invalid_input_is_422_and_not_a_failure(service: Service) -> None:
    client = service.client
    assert client.post("/api/generate", json={"framework": "react"}).status_code == 422
    assert (
        client.post("/api/generate", json={"prompt": "x", "framework": "cobol"}).status_code == 422
    )
    assert client.post("/api/jobs", json={"jobspec_id": "js", "questions": []}).status_code == 422
    assert client.get("/api/executions", params={"limit": 0}).status_code == 422
    assert service.failures() == []
    assert service.successes() == []
