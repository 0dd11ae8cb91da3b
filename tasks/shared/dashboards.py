"""Dashboards: Prefect artifacts with stable keys, so the UI shows the latest and the history."""

from __future__ import annotations

from collections.abc import Sequence

from prefect import task
from prefect.artifacts import create_table_artifact
from sqlalchemy import select

from immunity.models.db import get_engine
from immunity.models.reports import GeneratedTest
from immunity.models.tables import RegressionTest, Signature

__all__ = ["GENERATION_ARTIFACT_KEY", "publish_generation"]

GENERATION_ARTIFACT_KEY = "regression-tests-generated"


@task(name="publish-generation-artifact", retries=2, retry_delay_seconds=2)
def publish_generation(generated: Sequence[GeneratedTest]) -> None:
    """Publish a table of the signatures considered and the test each got (or why not)."""
    ids = [item.signature_id for item in generated]
    with get_engine().connect() as conn:
        rows = conn.execute(
            select(
                Signature.id,
                Signature.error_type,
                Signature.occurrence_count,
                Signature.category,
                RegressionTest.name,
                RegressionTest.reproduction,
            )
            .outerjoin(RegressionTest, RegressionTest.created_from_signature_id == Signature.id)
            .where(Signature.id.in_(ids))  # type: ignore[union-attr]
        ).all()
    by_id = {row.id: row for row in rows}
    table = [
        {
            "signature": item.signature_id,
            "error type": by_id[item.signature_id].error_type,
            "category": by_id[item.signature_id].category,
            "occurrences": by_id[item.signature_id].occurrence_count,
            "test": by_id[item.signature_id].name or "",
            "reproduced": by_id[item.signature_id].reproduction or "",
            "outcome": "created" if item.created else (item.reason or "already had one"),
        }
        for item in generated
        if item.signature_id in by_id
    ]
    create_table_artifact(
        key=GENERATION_ARTIFACT_KEY,
        table=table,
        description="Signatures that crossed the threshold and the regression test each got.",
    )
