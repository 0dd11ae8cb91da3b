"""The signature state machine: the Python function and the SQL CASE agree, on both backends."""

from __future__ import annotations

import itertools

import pytest
from sqlalchemy import Column, Engine, Integer, MetaData, String, Table, insert, select

from immunity.models.enums import SignatureStatus
from immunity.models.signature_states import (
    SignatureEvent,
    first_status,
    next_status,
    status_after,
)

# The rules as they stood before the table (ingest upsert, generation, regress lifecycle), spelled
# out pair by pair so a change to the table has to change this too.
_EXPECTED = {
    SignatureEvent.OCCURRENCE: {
        "new": "ongoing",
        "ongoing": "ongoing",
        "tested": "tested",
        "fixed": "regressed",
        "regressed": "regressed",
        "ignored": "ignored",
    },
    SignatureEvent.TEST_CREATED: {
        "new": "tested",
        "ongoing": "tested",
        "tested": "tested",
        "fixed": "fixed",
        "regressed": "regressed",
        "ignored": "ignored",
    },
    SignatureEvent.TEST_PASSED: {
        "new": "fixed",
        "ongoing": "fixed",
        "tested": "fixed",
        "fixed": "fixed",
        "regressed": "fixed",
        "ignored": "ignored",
    },
    SignatureEvent.TEST_FAILED: {
        "new": "new",
        "ongoing": "ongoing",
        "tested": "tested",
        "fixed": "regressed",
        "regressed": "regressed",
        "ignored": "ignored",
    },
}
_PAIRS = list(itertools.product(SignatureStatus, SignatureEvent))


def test_the_expectation_covers_every_pair() -> None:
    assert {(s.value, e) for s, e in _PAIRS} == {
        (status, event) for event, row in _EXPECTED.items() for status in row
    }


@pytest.mark.parametrize(("status", "event"), _PAIRS)
def test_next_status(status: SignatureStatus, event: SignatureEvent) -> None:
    assert next_status(status.value, event) == _EXPECTED[event][status.value]


def test_an_unknown_status_stays() -> None:
    assert next_status("archived", SignatureEvent.TEST_PASSED) == "archived"


@pytest.mark.parametrize(("occurrences", "status"), [(1, "new"), (2, "ongoing"), (50, "ongoing")])
def test_first_status(occurrences: int, status: str) -> None:
    assert first_status(occurrences) == status


def test_the_sql_case_agrees_with_python_on_every_pair(engine: Engine) -> None:
    # The same column type as the signature table's status; a temporary table leaves no trace.
    probe = Table(
        "signature_state_probe",
        MetaData(),
        Column("id", Integer, primary_key=True),
        Column("status", String(16)),
        prefixes=["TEMPORARY"],
    )
    statuses = [status.value for status in SignatureStatus]
    with engine.connect() as conn:
        probe.create(conn)
        conn.execute(insert(probe), [{"status": status} for status in statuses])
        for event in SignatureEvent:
            after = status_after(event, probe.c.status)
            rows = conn.execute(select(probe.c.status, after).order_by(probe.c.id)).all()
            from_sql = {before: moved for before, moved in rows}
            from_python = {status: next_status(status, event) for status in statuses}
            assert from_sql == from_python == _EXPECTED[event], event
        conn.rollback()


def test_the_sql_case_moves_rows_in_an_update(engine: Engine) -> None:
    probe = Table(
        "signature_state_moves",
        MetaData(),
        Column("id", Integer, primary_key=True),
        Column("status", String(16)),
        prefixes=["TEMPORARY"],
    )
    moved = status_after(SignatureEvent.OCCURRENCE, probe.c.status)  # built once, used twice
    with engine.connect() as conn:
        probe.create(conn)
        conn.execute(insert(probe), [{"status": "new"}, {"status": "fixed"}, {"status": "ignored"}])
        for _ in range(2):
            conn.execute(probe.update().values(status=moved))
        rows = conn.execute(select(probe.c.status).order_by(probe.c.id)).scalars().all()
        assert rows == ["ongoing", "regressed", "ignored"]
        conn.rollback()
