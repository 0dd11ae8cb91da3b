"""The pytest plugin: `pytest --immunity-db URL` collects, runs and records the stored tests."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import xml.etree.ElementTree as ET
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import httpx
import pytest
from sqlmodel import Session, select

from immunity.examples.sample_service import create_app, start_server
from immunity.models.db import get_engine
from immunity.models.tables import RegressionTest, SuiteRun, TestExecution
from immunity.tasks.shared.schema import upgrade_database

RECIPE = {"prompt": "Build recipe website", "framework": "react"}
# --strict-markers and warnings as errors: the tag marks must be safe under both.
INI = """[pytest]
addopts = --strict-markers
filterwarnings =
    error
    ignore::DeprecationWarning
    ignore::PendingDeprecationWarning
    ignore::ResourceWarning
"""


@dataclass
class Run:
    """A pytest subprocess: exit code, output, and each test's outcome and text from JUnit XML."""

    code: int
    output: str
    outcomes: dict[str, str]
    texts: dict[str, str]


@pytest.fixture
def service() -> Iterator[str]:
    server = start_server(create_app())
    try:
        yield server.base_url
    finally:
        server.stop()


@pytest.fixture
def store(tmp_path: Path) -> Iterator[str]:
    """A migrated SQLite store holding four tests: passing, failing, quarantined, production."""
    url = f"sqlite:///{tmp_path / 'store.db'}"
    upgrade_database(url)
    post = {"method": "POST", "path": "/api/generate", "body": RECIPE}
    tests = [
        RegressionTest(
            name="smoke_health",
            type="smoke",
            tags=["smoke"],
            environment="staging",
            spec={"method": "GET", "path": "/api/health"},
            expectations={"status": 200},
        ),
        RegressionTest(
            name="regression_recipe_1234abcd",
            tags=["critical", "dependency-error"],
            environment="staging",
            spec=post,
            expectations={"should_not_fail": True},
        ),
        RegressionTest(
            name="regression_quarantined",
            environment="staging",
            quarantined=True,
            spec=post,
            expectations={"status": 200},
        ),
        RegressionTest(
            name="regression_prod_post",
            tags=["skip"],  # a tag named like a builtin mark must not become that mark
            environment="production",
            spec={"method": "POST", "path": "/api/generate", "body": {"prompt": "a blog"}},
            expectations={"status": 200},
        ),
    ]
    engine = get_engine(url)
    with Session(engine) as session:
        session.add_all(tests)
        session.commit()
    yield url
    engine.dispose()


def set_fault(base_url: str, enabled: bool) -> None:
    response = httpx.put(
        f"{base_url}/admin/faults/dependency_validation", json={"enabled": enabled}
    )
    response.raise_for_status()


def run_pytest(tmp_path: Path, base_url: str, *args: str) -> Run:
    """Run pytest on an empty directory (only immunity items can run) and read its JUnit XML."""
    empty = tmp_path / "empty"
    empty.mkdir(exist_ok=True)
    (tmp_path / "pytest.ini").write_text(INI)
    xml = tmp_path / "junit.xml"
    xml.unlink(missing_ok=True)
    environments = {
        "staging": {"base_url": base_url, "is_production": False},
        "production": {"base_url": base_url, "is_production": True, "replay": True},
    }
    env = {k: v for k, v in os.environ.items() if not k.startswith(("PYTEST_", "IMMUNITY_"))}
    env |= {
        "IMMUNITY_ENVIRONMENTS": json.dumps(environments),
        "IMMUNITY_DATA_DIR": str(tmp_path / "data"),
    }
    command = [sys.executable, "-m", "pytest", "-p", "no:cacheprovider", "-q", "-rfEsx"]
    process = subprocess.run(
        [*command, "--junitxml", str(xml), *args, str(empty)],
        env=env,
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=180,
    )
    outcomes, texts = {}, {}
    if xml.exists():
        for case in ET.parse(xml).getroot().iter("testcase"):
            found = [child for child in case if child.tag in ("failure", "error", "skipped")]
            outcome = {"failure": "failed", "error": "error"}.get(found[0].tag if found else "")
            if found and found[0].tag == "skipped":
                outcome = "xfailed" if found[0].get("type") == "pytest.xfail" else "skipped"
            outcomes[case.get("name", "")] = outcome or "passed"
            texts[case.get("name", "")] = "".join(f"{e.get('message')}\n{e.text}" for e in found)
    return Run(process.returncode, process.stdout + process.stderr, outcomes, texts)


def stored(url: str) -> tuple[dict[str, int], list[TestExecution], list[SuiteRun]]:
    with Session(get_engine(url)) as session:
        confidence = {t.name: t.confidence for t in session.exec(select(RegressionTest))}
        executions = list(session.exec(select(TestExecution).order_by(TestExecution.id)))
        suites = list(session.exec(select(SuiteRun)))
    return confidence, executions, suites


def test_a_failing_stored_test_fails_the_run_and_is_recorded(
    tmp_path: Path, service: str, store: str
) -> None:
    set_fault(service, True)
    run = run_pytest(tmp_path, service, "--immunity-db", store)

    assert run.code == 1, run.output
    assert run.outcomes == {
        "smoke_health": "passed",
        "regression_recipe_1234abcd": "failed",
        "regression_quarantined": "xfailed",
        "regression_prod_post": "skipped",
    }, run.output
    failure = run.texts["regression_recipe_1234abcd"]
    assert "regression_recipe_1234abcd failed against staging" in failure
    assert 'expected: {"should_not_fail": true}' in failure
    assert '"status": 500' in failure and "POST /api/generate -> 500" in failure
    assert "Traceback" not in failure and "pytest_plugin.py" not in failure
    assert "refused: POST against production" in run.texts["regression_prod_post"]
    assert "SKIPPED [1] immunity::regression_prod_post: refused: POST" in run.output
    assert "quarantined: request:" in run.texts["regression_quarantined"]
    assert "immunity::regression_recipe_1234abcd" in run.output

    confidence, executions, suites = stored(store)
    assert confidence["regression_recipe_1234abcd"] == 65
    assert confidence["smoke_health"] == 80
    assert {e.trigger for e in executions} == {"ci"} and len(executions) == 4
    assert sorted(e.status for e in executions) == ["failed", "failed", "passed", "skipped"]
    assert [(s.trigger, s.status, s.total, s.failed) for s in suites] == [("ci", "finished", 4, 2)]
    assert f"immunity: suite run {suites[0].id} (ci, each test's environment): 4 total" in (
        run.output
    )


def test_no_record_leaves_the_store_alone_and_marks_select(
    tmp_path: Path, service: str, store: str
) -> None:
    with Session(get_engine(store)) as session:
        session.add(
            RegressionTest(
                name="regression_nowhere",
                tags=["critical"],
                environment="qa",
                spec={"method": "GET", "path": "/api/health"},
            )
        )
        session.commit()
    set_fault(service, True)
    args = ("--immunity-db", store, "--immunity-no-record", "-m", "critical")
    run = run_pytest(tmp_path, service, *args)

    assert run.code == 1, run.output
    assert run.outcomes == {"regression_recipe_1234abcd": "failed", "regression_nowhere": "failed"}
    assert "unknown environment 'qa'" in run.texts["regression_nowhere"]
    assert "2 test(s) ran; not recorded (--immunity-no-record)" in run.output
    confidence, executions, suites = stored(store)
    assert set(confidence.values()) == {75} and executions == [] and suites == []


def test_a_fixed_service_passes_with_k_and_deselect(
    tmp_path: Path, service: str, store: str
) -> None:
    set_fault(service, False)
    args = ("--immunity-db", store, "--immunity-env", "staging", "-k", "not smoke")
    run = run_pytest(tmp_path, service, *args, "--deselect", "immunity::regression_quarantined")

    assert run.code == 0, run.output
    # In staging the production POST is allowed; -k and --deselect left out the others.
    assert run.outcomes == {
        "regression_recipe_1234abcd": "passed",
        "regression_prod_post": "passed",
    }
    confidence, executions, suites = stored(store)
    assert confidence["regression_recipe_1234abcd"] == 80
    assert [(e.environment, e.status) for e in executions] == [("staging", "passed")] * 2
    assert [(s.environment, s.passed) for s in suites] == [("staging", 2)]


def test_an_unknown_environment_is_a_usage_error(tmp_path: Path, service: str, store: str) -> None:
    run = run_pytest(tmp_path, service, "--immunity-db", store, "--immunity-env", "nowhere")

    assert run.code == 4, run.output
    assert "--immunity-env: unknown environment 'nowhere'; configured: production, staging" in (
        run.output
    )
    assert "Traceback" not in run.output


def test_an_unreachable_database_names_the_host_not_the_password(
    tmp_path: Path, service: str
) -> None:
    run = run_pytest(tmp_path, service, "--immunity-db", "postgres://ci:s3cret@127.0.0.1:9/gone")

    assert run.code == 2, run.output  # a collection error: nothing ran
    assert "cannot use the immunity store postgresql+psycopg://ci:***@127.0.0.1:9/gone" in (
        run.output
    )
    assert "Connection refused" in run.output
    assert "s3cret" not in run.output and "Traceback" not in run.output


def test_without_immunity_db_nothing_is_collected(tmp_path: Path, service: str) -> None:
    run = run_pytest(tmp_path, service)

    assert run.code == 5, run.output
    assert "no tests ran" in run.output and run.outcomes == {}


def test_the_plugin_imports_nothing_of_ours(tmp_path: Path) -> None:
    # Every pytest run in a project with immunity installed loads the plugin: it must stay light.
    code = (
        "import sys, immunity.cli.pytest_plugin;"
        "heavy = ('immunity.models', 'immunity.tasks', 'immunity.flows', 'sqlalchemy', 'pydantic',"
        " 'prefect');"
        "light = ('immunity.models', 'immunity.models.errors');"
        "print(sorted(m for m in sys.modules if m.startswith(heavy) and m not in light))"
    )
    output = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, cwd=tmp_path, check=True
    )
    assert output.stdout.strip() == "[]", output.stderr
