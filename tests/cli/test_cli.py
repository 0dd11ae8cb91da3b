"""The `immunity` command as a user types it: demo, ingest, listings, schema upgrade."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from sqlmodel import Session, select
from typer.testing import CliRunner

from immunity.cli.main import app
from immunity.examples.synthetic import synthetic_events
from immunity.models.db import get_engine
from immunity.models.tables import RegressionTest, Signature

runner = CliRunner()


@pytest.mark.usefixtures("prefect_harness")
def test_demo_ends_with_generated_regression_tests(fresh_store: str) -> None:
    result = runner.invoke(app, ["demo", "--users", "3"])
    assert result.exit_code == 0, result.output
    assert "day 3" in result.output and "regression test(s) generated" in result.output
    with Session(get_engine(fresh_store)) as session:
        tests = session.exec(select(RegressionTest)).all()
        signatures = {s.error_type: s for s in session.exec(select(Signature))}
    recipe = signatures["DependencyValidationError"]
    assert recipe.occurrence_count == 3 and recipe.category == "dependency_error"
    [test] = [t for t in tests if t.created_from_signature_id == recipe.id]
    assert test.spec["path"] == "/api/generate"
    assert test.spec["body"] == {"prompt": "Build recipe website with search", "framework": "react"}
    assert test.expectations == {"should_not_fail": True, "min_items": {"$.files": 1}}
    assert test.name in result.output
    # The generated tests then run on staging: failing while the faults are on, passing (and
    # their signatures fixed) once they are off.
    assert "regression run (faults still on): 0 passed" in result.output
    assert f"regression run (faults fixed): {len(tests)} passed, 0 failed" in result.output
    with Session(get_engine(fresh_store)) as session:
        assert session.get(Signature, recipe.id).status == "fixed"
        assert session.get(RegressionTest, test.id).confidence == 75 - 10 + 5


@pytest.mark.usefixtures("prefect_harness")
def test_ingest_command_reports_rejections_by_line(fresh_store: str, tmp_path: Path) -> None:
    path = tmp_path / "events.jsonl"
    lines = [json.dumps(e) for e in synthetic_events(30, bugs=3, seed=5)] + ['{"message": 1}']
    path.write_text("\n".join(lines) + "\n")
    result = runner.invoke(app, ["ingest", str(path)])
    assert result.exit_code == 0, result.output
    assert "accepted 30, rejected 1" in result.output
    assert "line 31" in result.output and "error_type" in result.output
    listing = runner.invoke(app, ["signatures"])
    assert listing.exit_code == 0 and "Signatures" in listing.output
    tests = runner.invoke(app, ["tests"])
    assert tests.exit_code == 0 and "regression_" in tests.output


def test_ingest_command_refuses_a_missing_file_and_bad_kind(fresh_store: str) -> None:
    missing = runner.invoke(app, ["ingest", "/nonexistent/events.jsonl"])
    assert missing.exit_code == 2 and "no such file" in missing.output
    wrong = runner.invoke(app, ["ingest", __file__, "--kind", "logs"])
    assert wrong.exit_code == 2 and "--kind" in wrong.output
