"""Fix experiments in the store: add, find, list, update and summarise them, and their totals."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from sqlalchemy import Engine
from sqlmodel import Session, col, func, select

from immunity.models.deploy_tables import Experiment, ExperimentResult
from immunity.models.errors import NotFoundError
from immunity.models.experiments import ExperimentSummary, Variant
from immunity.models.tables import RegressionTest

__all__ = [
    "ExperimentNotFoundError",
    "add_experiment",
    "add_round",
    "experiment_results",
    "experiment_variants",
    "get_experiment",
    "list_experiments",
    "missing_tests",
    "sample_totals",
    "summarize",
    "update_experiment",
]


class ExperimentNotFoundError(NotFoundError):
    """No experiment has this id."""


def missing_tests(engine: Engine, test_ids: Sequence[int]) -> list[int]:
    """Return the ids among `test_ids` that no stored regression test has, sorted."""
    with Session(engine) as session:
        query = select(RegressionTest.id).where(col(RegressionTest.id).in_(test_ids))
        found = set(session.exec(query).all())
    return sorted(set(test_ids) - found)


def add_experiment(engine: Engine, experiment: Experiment) -> int:
    """Store a new experiment and return its id."""
    with Session(engine, expire_on_commit=False) as session:
        session.add(experiment)
        session.commit()
    assert experiment.id is not None
    return experiment.id


def add_round(engine: Engine, row: ExperimentResult) -> None:
    """Store one variant's counts for one round."""
    with Session(engine) as session:
        session.add(row)
        session.commit()


def get_experiment(engine: Engine, experiment_id: int) -> Experiment:
    """Return the experiment; ExperimentNotFoundError when there is none."""
    with Session(engine) as session:
        experiment = session.get(Experiment, experiment_id)
    if experiment is None:
        raise ExperimentNotFoundError(f"experiment {experiment_id} does not exist")
    return experiment


def list_experiments(engine: Engine, *, limit: int = 50) -> list[Experiment]:
    """Return the newest experiments first."""
    query = select(Experiment).order_by(col(Experiment.id).desc()).limit(limit)
    with Session(engine) as session:
        return list(session.exec(query).all())


def sample_totals(
    engine: Engine, experiment_ids: Sequence[int]
) -> dict[int, dict[str, tuple[int, int]]]:
    """Return experiment id → variant → (passed, failed) summed over its rounds."""
    if not experiment_ids:
        return {}
    query = (
        select(
            ExperimentResult.experiment_id,
            ExperimentResult.variant,
            func.sum(ExperimentResult.passed),
            func.sum(ExperimentResult.failed),
        )
        .where(col(ExperimentResult.experiment_id).in_(experiment_ids))
        .group_by(col(ExperimentResult.experiment_id), col(ExperimentResult.variant))
    )
    totals: dict[int, dict[str, tuple[int, int]]] = {id_: {} for id_ in experiment_ids}
    with Session(engine) as session:
        for experiment_id, variant, passed, failed in session.exec(query).all():
            totals[experiment_id][variant] = (int(passed), int(failed))
    return totals


def experiment_results(engine: Engine, experiment_id: int) -> list[ExperimentResult]:
    """Return the experiment's stored round counts, by round then variant."""
    query = (
        select(ExperimentResult)
        .where(ExperimentResult.experiment_id == experiment_id)
        .order_by(col(ExperimentResult.round), col(ExperimentResult.variant))
    )
    with Session(engine) as session:
        return list(session.exec(query).all())


def update_experiment(engine: Engine, experiment_id: int, **fields: Any) -> Experiment:
    """Set the fields on the stored experiment and return it; ExperimentNotFoundError if none."""
    with Session(engine, expire_on_commit=False) as session:
        experiment = session.get(Experiment, experiment_id)
        if experiment is None:
            raise ExperimentNotFoundError(f"experiment {experiment_id} does not exist")
        for name, value in fields.items():
            setattr(experiment, name, value)
        session.add(experiment)
        session.commit()
        return experiment


def experiment_variants(experiment: Experiment) -> list[Variant]:
    """Return the experiment's two variants as stored."""
    return [Variant.model_validate(variant) for variant in experiment.variants]


def summarize(engine: Engine, experiment: Experiment) -> ExperimentSummary:
    """Return what the experiment found so far, with its totals and number of rounds."""
    assert experiment.id is not None
    results = experiment_results(engine, experiment.id)
    winner = next((v for v in experiment_variants(experiment) if v.name == experiment.winner), None)
    return ExperimentSummary(
        experiment_id=experiment.id,
        status=experiment.status,
        winner=experiment.winner,
        winner_ref=winner.promotable_ref if winner else None,
        p_value=experiment.p_value,
        posterior=experiment.posterior,
        rounds=max((result.round for result in results), default=0),
        samples=sample_totals(engine, [experiment.id])[experiment.id],
        promoted_deployment_id=experiment.promoted_deployment_id,
        detail=experiment.detail,
    )
