"""The ingest and generation flows end to end, on a real Prefect server and a real store."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import uuid
from pathlib import Path

import pytest
from prefect.client.orchestration import get_client
from prefect.client.schemas.filters import ArtifactFilter, ArtifactFilterKey
from prefect.settings import PREFECT_API_URL
from sqlmodel import Session, select

from immunity.examples.synthetic import synthetic_events
from immunity.flows.generate import generate_regression_tests
from immunity.flows.ingest import ingest_failures, ingest_file, ingest_log
from immunity.models.db import get_engine
from immunity.models.tables import RegressionTest, Signature
from immunity.tasks.ingest.pipeline import process_failures
from immunity.tasks.shared.dashboards import GENERATION_ARTIFACT_KEY
from tests.tasks.ingest.test_pipeline import recipe_failure, settings

pytestmark = pytest.mark.usefixtures("prefect_harness")
ROOT = Path(__file__).resolve().parents[2]


def test_ingest_flow_generates_a_test_and_publishes_it(store: str) -> None:
    events = [recipe_failure(n) for n in range(3)] + [{"error_type": ""}]
    report = ingest_failures(events, batch_size=2)
    assert report.accepted == 3 and report.new_signatures == 1
    assert [r.index for r in report.rejected] == [3]
    assert "error_type" in report.rejected[0].errors[0]
    assert report.tests_created == 1
    with Session(get_engine(store)) as session:
        test = session.exec(select(RegressionTest)).one()
        signature = session.exec(select(Signature)).one()
    assert signature.test_id == test.id and signature.occurrence_count == 3
    assert any(test.name in json.dumps(a.data) for a in generation_artifacts())
    assert generate_regression_tests() == []  # the sweep finds nothing left to do


def generation_artifacts() -> list:
    with get_client(sync_client=True) as client:
        return client.read_artifacts(
            artifact_filter=ArtifactFilter(key=ArtifactFilterKey(any_=[GENERATION_ARTIFACT_KEY]))
        )


def test_the_pipeline_outside_a_run_builds_the_test_and_publishes_nothing(store: str) -> None:
    # An error type of its own: other tests' flows publish generation artifacts meanwhile.
    token = uuid.uuid4().hex[:8]
    events = [{**recipe_failure(n), "error_type": f"OutsideRun{token}Error"} for n in range(3)]
    result = process_failures(events, engine=get_engine(store), settings=settings(), generate=True)
    assert [o.created for o in result.generated] == [True] and result.verify
    with Session(get_engine(store)) as session:
        test = session.get(RegressionTest, result.generated[0].test_id)
    assert test is not None and token in test.name
    assert not any(test.name in json.dumps(a.data) for a in generation_artifacts())


def test_ingest_log_flow_sums_its_batches(store: str, tmp_path: Path) -> None:
    tracebacks = "".join(
        f"2026-11-20 09:0{n}:00,000 ERROR [shop] checkout failed\n"
        "Traceback (most recent call last):\n"
        f'  File "/srv/shop/pricing.py", line {40 + n}, in price_order\n'
        "    return ORDERS[order_id].total\n"
        f"KeyError: {n}\n"
        for n in range(5)
    )
    path = tmp_path / "shop.log"
    path.write_text(tracebacks, encoding="utf-8")
    report = ingest_log(str(path), environment="staging", batch_size=2)
    assert (report.accepted, report.rejected, report.new_signatures) == (5, [], 1)
    # A candidate in two batches (the 3rd and 5th occurrences), one outcome: why it has no test.
    [outcome] = report.generated
    assert not outcome.created and outcome.reason == "no sample carries an HTTP request"
    with Session(get_engine(store)) as session:
        assert session.exec(select(Signature)).one().occurrence_count == 5


def test_ingest_file_streams_batches_and_names_bad_lines(store: str, tmp_path: Path) -> None:
    path = tmp_path / "events.jsonl"
    lines = [json.dumps(e) for e in synthetic_events(250, bugs=5, seed=3)]
    lines.insert(10, "{not json")
    lines.insert(20, "")
    lines.insert(30, json.dumps({"error_type": 42}))
    lines.insert(40, '{"error_type": "E", "context": {"ratio": NaN}}')
    path.write_text("\n".join(lines) + "\n")
    report = ingest_file(str(path), batch_size=40)
    assert report.accepted == 250
    assert sorted(r.index for r in report.rejected) == [11, 31, 41]  # line numbers
    assert report.signatures >= 5 and report.tests_created == 5
    with Session(get_engine(store)) as session:
        total = sum(s.occurrence_count for s in session.exec(select(Signature)))
    assert total == 250


def test_python_api_works_from_a_plain_script(store: str, tmp_path: Path) -> None:
    script = tmp_path / "report.py"
    script.write_text(
        "from flows.ingest import ingest_failures\n"
        "events = [{'error_type': 'KeyError', 'message': \"'sku-1'\", 'frames': "
        "[{'module': 'shop.cart', 'function': 'add', 'in_app': True}]}] * 3\n"
        "report = ingest_failures(events)\n"
        "print(report.accepted, report.new_signatures)\n"
    )
    env = {
        **os.environ,
        "IMMUNITY_DATABASE_URL": store,
        "PREFECT_API_URL": PREFECT_API_URL.value(),
        "PYTHONPATH": str(ROOT),
    }
    done = subprocess.run(
        [sys.executable, str(script)],
        capture_output=True,
        text=True,
        env=env,
        cwd=tmp_path,
        timeout=120,
    )
    assert done.returncode == 0, done.stderr
    assert done.stdout.split()[-2:] == ["3", "1"]
