"""Read-only views of the store for the CLI, the API and dashboards."""

from __future__ import annotations

from collections.abc import Sequence

from sqlalchemy import Engine
from sqlmodel import Session, col, select

from models.tables import RegressionTest, Signature

__all__ = ["confidence_band", "list_signatures", "list_tests"]

_BANDS = ((40, "unreliable"), (60, "moderate"), (80, "reliable"))


def confidence_band(confidence: int) -> str:
    """Return the seed's band for a confidence score (unreliable … highly reliable)."""
    for upper, name in _BANDS:
        if confidence < upper:
            return name
    return "highly reliable"


def list_signatures(engine: Engine, *, limit: int = 50) -> Sequence[Signature]:
    """Return the most recently seen signatures, newest first."""
    with Session(engine) as session:
        query = select(Signature).order_by(col(Signature.last_seen).desc()).limit(limit)
        return session.exec(query).all()


def list_tests(engine: Engine, *, limit: int = 200) -> Sequence[RegressionTest]:
    """Return regression tests, newest first."""
    with Session(engine) as session:
        query = select(RegressionTest).order_by(col(RegressionTest.id).desc()).limit(limit)
        return session.exec(query).all()
