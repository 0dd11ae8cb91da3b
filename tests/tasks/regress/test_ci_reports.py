"""CI reports: the JSON report carries the gate and every result; the JUnit XML reads in any CI."""

from __future__ import annotations

import json
import xml.etree.ElementTree as ET
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from immunity.models.enums import ExecutionStatus
from immunity.models.results import CaseResult, SuiteSummary, Transition
from immunity.tasks.regress.ci_reports import TestInfo, junit_xml, report_document, write_reports

STARTED = datetime(2024, 5, 1, 12, 0, tzinfo=UTC)
CONTROL = "boom\x00\x01\x07\x1b[31m\x0b\x0c\ufffe end"


def _info(test_id: int, name: str, **overrides: object) -> TestInfo:
    fields: dict[str, object] = {
        "test_id": test_id,
        "name": name,
        "kind": "http",
        "type": "regression",
        "tags": ("api",),
        "confidence": 75,
    }
    fields.update(overrides)
    return TestInfo(**fields)  # type: ignore[arg-type]


def _result(test_id: int, name: str, status: ExecutionStatus, **overrides: object) -> CaseResult:
    fields: dict[str, object] = {
        "test_id": test_id,
        "name": name,
        "status": status,
        "duration_ms": 1500,
        "started_at": STARTED,
    }
    fields.update(overrides)
    return CaseResult(**fields)  # type: ignore[arg-type]


@pytest.fixture
def run() -> tuple[SuiteSummary, list[CaseResult], dict[int, TestInfo]]:
    tests = {
        1: _info(1, "list files", type="smoke", tags=("files", "smoke"), confidence=90),
        2: _info(2, "upload", critical=True, signature_id=7),
        3: _info(3, "checkout", kind="scenario", type="integration"),
        4: _info(4, "search", confidence=30),
        5: _info(5, "export", quarantined=True),
        6: _info(6, "delete", type="contract"),
        7: _info(7, "binary body", confidence=50),
    }
    results = [
        _result(1, "list files", ExecutionStatus.PASSED),
        _result(
            2,
            "upload",
            ExecutionStatus.FAILED,
            error="status: expected 200, got 500",
            expected={"status": 200},
            actual={"status": 500, "body": "Internal Server Error"},
            calls=[{"step": 0, "method": "POST", "path": "/upload", "status": 500, "ms": 12.5}],
        ),
        _result(3, "checkout", ExecutionStatus.ERROR, error="ConnectError: connection refused"),
        _result(4, "search", ExecutionStatus.FLAKY, attempts=3),
        _result(5, "export", ExecutionStatus.FAILED, error="status: expected 200, got 404"),
        _result(6, "delete", ExecutionStatus.SKIPPED, error="unsafe method against production"),
        _result(7, "binary body", ExecutionStatus.FAILED, error=CONTROL, actual={"body": CONTROL}),
    ]
    summary = SuiteSummary(
        suite_run_id=42,
        trigger="ci",
        environment="staging",
        total=7,
        passed=1,
        failed=3,
        errors=1,
        flaky=1,
        skipped=1,
        critical_failures=["upload"],
        transitions=[
            Transition(
                kind="regressed",
                test_id=2,
                test_name="upload",
                signature_id=7,
                before="passed",
                after="failed",
                message="upload regressed",
            )
        ],
        started_at=STARTED,
        finished_at=STARTED + timedelta(seconds=12, milliseconds=250),
    )
    return summary, results, tests


def _cases(root: ET.Element) -> dict[str, ET.Element]:
    return {case.get("name", ""): case for case in root.iter("testcase")}


def test_json_report_round_trips_with_gate_and_every_result(run) -> None:
    summary, results, tests = run
    document = json.loads(json.dumps(report_document(summary, results, tests=tests)))

    head = document["summary"]
    assert head["suite_run_id"] == 42
    assert head["trigger"] == "ci"
    assert head["environment"] == "staging"
    assert head["totals"] == {
        "total": 7,
        "passed": 1,
        "failed": 3,
        "errors": 1,
        "flaky": 1,
        "skipped": 1,
    }
    assert head["pass_rate"] == pytest.approx(2 / 6)
    assert head["gate"] == {"status": "failed", "passed": False, "critical_failures": ["upload"]}
    assert head["started_at"] == "2024-05-01T12:00:00+00:00"
    assert head["finished_at"] == "2024-05-01T12:00:12.250000+00:00"
    assert document["transitions"][0]["kind"] == "regressed"

    entries = {entry["name"]: entry for entry in document["results"]}
    assert list(entries) == [r.name for r in results]
    upload = entries["upload"]
    assert upload["test_id"] == 2
    assert upload["status"] == "failed"
    assert upload["critical"] is True
    assert upload["signature_id"] == 7
    assert upload["expected"] == {"status": 200}
    assert upload["actual"]["status"] == 500
    assert upload["calls"][0]["path"] == "/upload"
    assert entries["list files"]["tags"] == ["files", "smoke"]
    assert entries["list files"]["confidence_band"] == "highly reliable"
    assert entries["search"]["confidence_band"] == "unreliable"
    assert entries["search"]["attempts"] == 3
    assert entries["export"]["quarantined"] is True
    assert entries["checkout"]["kind"] == "scenario"


def test_json_gate_passes_without_critical_failures(run) -> None:
    summary, results, tests = run
    summary = summary.model_copy(update={"critical_failures": []})
    assert report_document(summary, results, tests=tests)["summary"]["gate"]["passed"] is True


def test_junit_counts_per_status(run) -> None:
    summary, results, tests = run
    root = ET.fromstring(junit_xml(summary, results, tests=tests))

    assert root.tag == "testsuites"
    suites = root.findall("testsuite")
    assert len(suites) == 1
    suite = suites[0]
    assert suite.get("name") == "immunity:staging"
    # The quarantined failure counts as skipped so it cannot fail the CI job.
    assert suite.get("tests") == "7"
    assert suite.get("failures") == "2"
    assert suite.get("errors") == "1"
    assert suite.get("skipped") == "2"
    assert suite.get("time") == "12.250"
    assert suite.get("timestamp") == "2024-05-01T12:00:00"
    assert len(suite.findall("testcase")) == 7
    assert len(suite.findall("testcase/failure")) == 2
    assert len(suite.findall("testcase/error")) == 1
    assert len(suite.findall("testcase/skipped")) == 2


def test_junit_failed_test_has_failure_with_expected_and_actual(run) -> None:
    summary, results, tests = run
    case = _cases(ET.fromstring(junit_xml(summary, results, tests=tests)))["upload"]

    assert case.get("classname") == "immunity.http.regression"
    assert case.get("time") == "1.500"
    failure = case.find("failure")
    assert failure is not None
    assert failure.get("type") == "AssertionError"
    assert failure.get("message") == "status: expected 200, got 500"
    text = failure.text or ""
    assert "expected:" in text and '"status": 200' in text
    assert "actual:" in text and '"status": 500' in text


def test_junit_error_skipped_quarantined_and_flaky(run) -> None:
    summary, results, tests = run
    cases = _cases(ET.fromstring(junit_xml(summary, results, tests=tests)))

    error = cases["checkout"].find("error")
    assert error is not None and "connection refused" in (error.get("message") or "")
    assert cases["checkout"].get("classname") == "immunity.scenario.integration"

    skipped = cases["delete"].find("skipped")
    assert skipped is not None and "unsafe method" in (skipped.get("message") or "")

    quarantined = cases["export"]
    assert quarantined.find("failure") is None
    message = quarantined.find("skipped").get("message") or ""  # type: ignore[union-attr]
    assert message.startswith("quarantined: failed")
    assert "got 404" in message

    flaky = cases["search"]
    assert list(flaky) and all(child.tag == "system-out" for child in flaky)
    assert "flaky" in (flaky.findtext("system-out") or "")
    assert "3 attempts" in (flaky.findtext("system-out") or "")

    assert list(cases["list files"]) == []


def test_junit_strips_control_characters(run) -> None:
    summary, results, tests = run
    xml = junit_xml(summary, results, tests=tests)
    case = _cases(ET.fromstring(xml))["binary body"]

    failure = case.find("failure")
    assert failure is not None
    assert failure.get("message") == "boom[31m end"
    assert "boom[31m end" in (failure.text or "")
    assert "\x00" not in xml and "\x1b" not in xml


def test_junit_with_no_results_and_no_environment() -> None:
    summary = SuiteSummary(suite_run_id=1, trigger="manual", environment=None, started_at=STARTED)
    suite = ET.fromstring(junit_xml(summary, [], tests={})).find("testsuite")
    assert suite is not None
    assert suite.get("name") == "immunity:default"
    assert (suite.get("tests"), suite.get("failures"), suite.get("time")) == ("0", "0", "0.000")


def test_write_reports_writes_both_files_atomically(run, tmp_path: Path) -> None:
    summary, results, tests = run
    directory = tmp_path / "reports" / "nested"

    json_path, xml_path = write_reports(summary, results, tests=tests, directory=directory)

    assert json_path == directory / "suite-42.json"
    assert xml_path == directory / "suite-42.xml"
    assert sorted(p.name for p in directory.iterdir()) == ["suite-42.json", "suite-42.xml"]
    document = json.loads(json_path.read_text(encoding="utf-8"))
    assert len(document["results"]) == len(results)
    assert ET.fromstring(xml_path.read_text(encoding="utf-8")).tag == "testsuites"

    # A second run overwrites in place, still without leftovers.
    write_reports(summary, results[:1], tests=tests, directory=directory)
    assert sorted(p.name for p in directory.iterdir()) == ["suite-42.json", "suite-42.xml"]
    assert len(json.loads(json_path.read_text(encoding="utf-8"))["results"]) == 1
