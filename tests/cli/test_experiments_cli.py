"""`immunity experiments` on a store that alembic made: the table of experiments and samples."""

from __future__ import annotations

import typer
from sqlmodel import Session
from typer.testing import CliRunner

from immunity.cli.experiments import register
from immunity.models.db import get_engine
from immunity.models.deploy_tables import Experiment, ExperimentResult

VARIANTS = [
    {"name": "A", "ref": "main", "target": "canary-a"},
    {"name": "B", "ref": "immunity/fix-7", "target": "canary-b"},
]


def _app() -> typer.Typer:
    app = typer.Typer()
    register(app)

    @app.callback()
    def main() -> None:
        """A group, so that `experiments` is a subcommand as in the real app."""

    return app


def invoke(*args: str) -> tuple[int, str]:
    result = CliRunner().invoke(_app(), list(args), env={"COLUMNS": "220"})
    return result.exit_code, result.output


def test_experiments_lists_status_winner_evidence_and_samples(fresh_store: str) -> None:
    code, output = invoke("experiments")
    assert code == 0, output
    assert "no experiments yet" in output

    with Session(get_engine(fresh_store)) as session:
        decided = Experiment(
            name="pattern vs ai fix",
            variants=VARIANTS,
            status="decided",
            winner="B",
            p_value=1.4508e-11,
            posterior=0.99999,
            detail="B is better",
        )
        running = Experiment(name="second try", variants=VARIANTS, method="beta_binomial")
        session.add_all([decided, running])
        session.flush()
        assert decided.id is not None and running.id is not None
        for round_no in (1, 2):
            session.add(
                ExperimentResult(
                    experiment_id=decided.id, variant="A", round=round_no, passed=1, failed=9
                )
            )
            session.add(
                ExperimentResult(
                    experiment_id=decided.id, variant="B", round=round_no, passed=10, failed=0
                )
            )
        session.add(ExperimentResult(experiment_id=running.id, variant="A", round=1, passed=3))
        session.commit()
        ids = decided.id, running.id

    code, output = invoke("experiments")
    assert code == 0, output
    lines = output.splitlines()
    [row] = [line for line in lines if "pattern vs ai fix" in line]
    assert f" {ids[0]} " in row and "decided" in row and "1.45e-11" in row and "1.000" in row
    assert "A 2/20, B 20/20" in row
    [row] = [line for line in lines if "second try" in line]
    assert "running" in row and "beta_binomial" in row and "A 3/3, B 0/0" in row
    # Newest first.
    assert output.index("second try") < output.index("pattern vs ai fix")

    code, output = invoke("experiments", "--limit", "1")
    assert code == 0 and "second try" in output and "pattern vs ai fix" not in output
