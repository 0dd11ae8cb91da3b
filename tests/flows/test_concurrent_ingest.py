"""Concurrent ingestion on PostgreSQL: counts stay exact and every signature gets one test."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
from prefect.settings import PREFECT_API_URL
from sqlalchemy import func, select
from sqlmodel import Session

from immunity.models.db import get_engine
from immunity.models.tables import RegressionTest, Signature

ROOT = Path(__file__).resolve().parents[2]
PROCESSES, EVENTS, BUGS = 8, 500, 20

WORKER = """
import sys
from immunity.examples.synthetic import synthetic_events
from immunity.flows.ingest import ingest_failures
events = list(synthetic_events({events}, bugs={bugs}, seed=11, variant=int(sys.argv[1])))
accepted = rejected = 0
for start in range(0, len(events), 200):  # a flow run's parameters are capped at 512 KB
    report = ingest_failures(events[start : start + 200], batch_size=50)
    accepted, rejected = accepted + report.accepted, rejected + len(report.rejected)
print("accepted", accepted, "rejected", rejected)
"""


@pytest.mark.usefixtures("prefect_harness")
def test_eight_processes_count_exactly_and_build_one_test_per_signature(
    clean_postgres_url: str,
) -> None:
    db_url = clean_postgres_url
    env = {
        **os.environ,
        "IMMUNITY_DATABASE_URL": db_url,
        "PREFECT_API_URL": PREFECT_API_URL.value(),
        "PYTHONPATH": str(ROOT),
        "PREFECT_LOGGING_LEVEL": "WARNING",
        # Eight writers at once keep the test server's SQLite busy: it answers 503 for a while,
        # which Prefect's client retries with back-off; five tries were sometimes too few.
        "PREFECT_CLIENT_MAX_RETRIES": "8",
    }
    code = WORKER.format(events=EVENTS, bugs=BUGS)
    workers = [
        subprocess.Popen(
            [sys.executable, "-c", code, str(n)],
            env=env,
            cwd=ROOT,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        for n in range(PROCESSES)
    ]
    outputs = [worker.communicate(timeout=300) for worker in workers]
    for worker, (out, err) in zip(workers, outputs, strict=True):
        assert worker.returncode == 0, err[-3000:]
        assert f"accepted {EVENTS} rejected 0" in out
    with Session(get_engine(db_url)) as session:
        total = session.exec(select(func.sum(Signature.occurrence_count))).scalar_one()  # type: ignore[attr-defined]
        signatures = session.exec(select(Signature)).scalars().all()  # type: ignore[attr-defined]
        per_signature = dict(
            session.exec(  # type: ignore[call-overload]
                select(RegressionTest.created_from_signature_id, func.count()).group_by(
                    RegressionTest.created_from_signature_id
                )
            ).all()
        )
    assert total == PROCESSES * EVENTS
    assert len(signatures) == BUGS
    over = [s for s in signatures if s.occurrence_count >= 3]
    assert len(over) == BUGS
    assert all(per_signature.get(s.id) == 1 and s.test_id is not None for s in over)
