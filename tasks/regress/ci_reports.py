"""The JSON report and JUnit XML written for every suite run, for people and CI test reporters."""

from __future__ import annotations

import json
import os
import re
import tempfile
import xml.etree.ElementTree as ET
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from immunity.models.enums import ExecutionStatus
from immunity.models.results import CaseResult, SuiteSummary
from immunity.tasks.shared.queries import confidence_band

__all__ = ["TestInfo", "junit_xml", "report_document", "write_reports"]

# XML 1.0 cannot carry these at all, not even as character references: expat rejects the file.
_ILLEGAL_XML = re.compile("[^\t\n\r\x20-\ud7ff\ue000-\ufffd\U00010000-\U0010ffff]")
_MAX_MESSAGE = 500
# Response bodies can be megabytes; CI pages choke on them and the JSON report keeps them whole.
_MAX_TEXT = 64 * 1024
_FAILING = (ExecutionStatus.FAILED, ExecutionStatus.ERROR)


@dataclass(frozen=True, slots=True)
class TestInfo:
    """What the reports need to know about a test beyond its result."""

    __test__ = False  # not a pytest class

    test_id: int
    name: str
    kind: str
    type: str
    tags: tuple[str, ...] = ()
    confidence: int = 75
    quarantined: bool = False
    critical: bool = False
    signature_id: int | None = None
    reproduction: str | None = None  # generated tests: reproduced, not_reproduced, …


def _iso(moment: datetime | None) -> str | None:
    return None if moment is None else moment.isoformat()


def _result_entry(result: CaseResult, info: TestInfo | None) -> dict[str, Any]:
    dumped = result.model_dump(mode="json")
    return {
        "name": result.name,
        "test_id": result.test_id,
        "kind": info.kind if info else None,
        "type": info.type if info else None,
        "tags": list(info.tags) if info else [],
        "confidence": info.confidence if info else None,
        "confidence_band": confidence_band(info.confidence) if info else None,
        "quarantined": info.quarantined if info else False,
        "critical": info.critical if info else False,
        "signature_id": info.signature_id if info else None,
        "reproduction": info.reproduction if info else None,
        "status": str(result.status),
        "duration_ms": result.duration_ms,
        "attempts": result.attempts,
        "error": result.error,
        "expected": dumped["expected"],
        "actual": dumped["actual"],
        "calls": dumped["calls"],
        "started_at": dumped["started_at"],
    }


def report_document(
    summary: SuiteSummary, results: Sequence[CaseResult], *, tests: Mapping[int, TestInfo]
) -> dict[str, Any]:
    """Return the JSON-ready report of a suite run: summary, gate, transitions and every result."""
    return {
        "schema_version": 1,
        "summary": {
            "suite_run_id": summary.suite_run_id,
            "trigger": summary.trigger,
            "environment": summary.environment,
            "totals": {
                "total": summary.total,
                "passed": summary.passed,
                "failed": summary.failed,
                "errors": summary.errors,
                "flaky": summary.flaky,
                "skipped": summary.skipped,
            },
            "pass_rate": summary.pass_rate,
            "gate": {
                "status": "passed" if summary.gate_passed else "failed",
                "passed": summary.gate_passed,
                "critical_failures": list(summary.critical_failures),
            },
            "started_at": _iso(summary.started_at),
            "finished_at": _iso(summary.finished_at),
        },
        "transitions": [t.model_dump(mode="json") for t in summary.transitions],
        "results": [_result_entry(r, tests.get(r.test_id)) for r in results],
    }


def _clean(value: object, limit: int = _MAX_TEXT) -> str:
    text = _ILLEGAL_XML.sub("", str(value))
    return text if len(text) <= limit else text[:limit] + f"… ({len(text) - limit} chars cut)"


def _message(text: str | None, fallback: str) -> str:
    # Reporters show the message on one line; the full text goes in the element's body.
    # Cleaned first: splitlines() would also cut at the form feeds and such that get stripped.
    first = _ILLEGAL_XML.sub("", text or "").strip().split("\n", 1)[0].strip()
    return _clean(first or fallback, _MAX_MESSAGE)


def _dump(value: Any) -> str:
    return json.dumps(value, indent=2, sort_keys=True, ensure_ascii=False, default=str)


def _details(result: CaseResult) -> str:
    parts = [result.error or f"test {result.status}"]
    if result.expected or result.actual:
        parts += [f"expected:\n{_dump(result.expected)}", f"actual:\n{_dump(result.actual)}"]
    if result.calls:
        parts.append(f"calls:\n{_dump(result.calls)}")
    return _clean("\n\n".join(parts))


def _seconds(ms: float) -> str:
    return f"{max(ms, 0) / 1000:.3f}"


def _timestamp(moment: datetime) -> str:
    # The JUnit schema's timestamp has no zone, so it is always written in UTC.
    if moment.tzinfo is not None:
        moment = moment.astimezone(UTC)
    return moment.strftime("%Y-%m-%dT%H:%M:%S")


def _testcase(parent: ET.Element, result: CaseResult, info: TestInfo | None) -> str:
    """Append one testcase and return how CI should count it: passed, failure, error or skipped."""
    kind, type_ = (info.kind, info.type) if info else ("unknown", "unknown")
    case = ET.SubElement(
        parent,
        "testcase",
        classname=_clean(f"immunity.{kind}.{type_}", _MAX_MESSAGE),
        name=_clean(result.name, _MAX_MESSAGE),
        time=_seconds(result.duration_ms),
    )
    if info is not None and info.reproduction is not None:
        # A pass of a test that never reproduced its failure proves nothing: CI shows which.
        properties = ET.SubElement(case, "properties")
        ET.SubElement(properties, "property", name="reproduction", value=info.reproduction)
    status = result.status
    if status in _FAILING and info is not None and info.quarantined:
        # Quarantine exists so a known-bad test cannot block a merge; the real status stays visible.
        message = _message(result.error, "no error message")
        ET.SubElement(case, "skipped", message=f"quarantined: {status} — {message}")
        ET.SubElement(
            case, "system-out"
        ).text = f"quarantined, really {status}\n\n{_details(result)}"
        return "skipped"
    if status == ExecutionStatus.FAILED:
        failure = ET.SubElement(
            case,
            "failure",
            message=_message(result.error, "expectations not met"),
            type="AssertionError",
        )
        failure.text = _details(result)
        return "failure"
    if status == ExecutionStatus.ERROR:
        error = ET.SubElement(
            case, "error", message=_message(result.error, "test could not run"), type="Error"
        )
        error.text = _details(result)
        return "error"
    if status == ExecutionStatus.SKIPPED:
        ET.SubElement(case, "skipped", message=_message(result.error, "skipped"))
        return "skipped"
    if status == ExecutionStatus.FLAKY:
        note = f"flaky: passed after {result.attempts} attempts"
        if result.error:
            note += f"; earlier attempt failed with: {_clean(result.error)}"
        ET.SubElement(case, "system-out").text = note
    return "passed"


def junit_xml(
    summary: SuiteSummary, results: Sequence[CaseResult], *, tests: Mapping[int, TestInfo]
) -> str:
    """Return JUnit XML for the run that Jenkins, GitLab and GitHub test reporters can read."""
    environment = summary.environment or "default"
    root = ET.Element("testsuites", name="immunity")
    suite = ET.SubElement(
        root,
        "testsuite",
        name=_clean(f"immunity:{environment}", _MAX_MESSAGE),
        timestamp=_timestamp(summary.started_at),
    )
    properties = ET.SubElement(suite, "properties")
    for name, value in (
        ("suite_run_id", summary.suite_run_id),
        ("trigger", summary.trigger),
        ("environment", environment),
        ("gate", "passed" if summary.gate_passed else "failed"),
        ("critical_failures", ", ".join(summary.critical_failures)),
    ):
        ET.SubElement(properties, "property", name=name, value=_clean(value, _MAX_MESSAGE))

    counts = {"passed": 0, "failure": 0, "error": 0, "skipped": 0}
    for result in results:
        counts[_testcase(suite, result, tests.get(result.test_id))] += 1

    if summary.finished_at is not None:
        elapsed_ms = (summary.finished_at - summary.started_at).total_seconds() * 1000
    else:
        elapsed_ms = sum(r.duration_ms for r in results)
    totals = {
        "tests": str(len(results)),
        "failures": str(counts["failure"]),
        "errors": str(counts["error"]),
        "skipped": str(counts["skipped"]),
        "time": _seconds(elapsed_ms),
    }
    suite.attrib.update(totals)
    root.attrib.update(totals)
    ET.indent(root)
    # Written by hand: with encoding="unicode" ElementTree would declare the locale's encoding.
    body = ET.tostring(root, encoding="unicode")
    return f'<?xml version="1.0" encoding="UTF-8"?>\n{body}\n'


def _write_atomically(path: Path, text: str) -> None:
    # Readers (CI uploaders, the dashboard) must never see half a report.
    handle = tempfile.NamedTemporaryFile(
        "w", encoding="utf-8", dir=path.parent, prefix=f".{path.name}.", suffix=".tmp", delete=False
    )
    try:
        with handle:
            handle.write(text)
            handle.flush()
            os.fsync(handle.fileno())
        # mkstemp makes the file owner-only; CI artifact uploaders may run as someone else.
        os.chmod(handle.name, 0o644)
        os.replace(handle.name, path)
    except BaseException:
        Path(handle.name).unlink(missing_ok=True)
        raise


def write_reports(
    summary: SuiteSummary,
    results: Sequence[CaseResult],
    *,
    tests: Mapping[int, TestInfo],
    directory: Path,
) -> tuple[Path, Path]:
    """Write suite-<id>.json and suite-<id>.xml into directory and return their paths."""
    directory = Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    json_path = directory / f"suite-{summary.suite_run_id}.json"
    xml_path = directory / f"suite-{summary.suite_run_id}.xml"
    document = report_document(summary, results, tests=tests)
    _write_atomically(json_path, json.dumps(document, indent=2, ensure_ascii=False) + "\n")
    _write_atomically(xml_path, junit_xml(summary, results, tests=tests))
    return json_path, xml_path
