"""Fix experiments end to end: two refs of a seeded bug's repository, each on its own local target.

Variant A is the bugged commit (its regression test answers 500), variant B the commit before it
(the test passes). The experiment runs the test against both until the significance test speaks.
"""

from __future__ import annotations

import json
import os
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from uuid import UUID

import pytest
from prefect.client.orchestration import get_client
from prefect.client.schemas.filters import (
    ArtifactFilter,
    ArtifactFilterFlowRunId,
    ArtifactFilterKey,
)
from sqlmodel import Session, select

from immunity.examples.seeded_bugs import seed_repo
from immunity.flows.experiment import run_experiment
from immunity.models.db import get_engine
from immunity.models.deploy_tables import Deployment, Experiment, ExperimentResult
from immunity.models.enums import DeploymentStatus, ExperimentStatus
from immunity.models.settings import get_settings
from immunity.models.tables import RegressionTest
from immunity.tasks.deploy.significance import fisher_exact
from immunity.tasks.deploy.targets.local import current_ref, stop_local
from immunity.tasks.heal.git_repo import head
from tests.deployments.prefect_server import free_port
from tests.flows.heal_support import first_bug

pytestmark = pytest.mark.usefixtures("prefect_harness")

TARGETS = ("exp-a", "exp-b")


@dataclass
class Bench:
    repo: Path
    bad: str  # the bugged commit's sha
    good: str  # the pristine one
    test_id: int


def _configure(
    monkeypatch: pytest.MonkeyPatch,
    tmp_path: Path,
    repo: Path,
    *,
    production: bool = False,
    **extra: str,
) -> dict[str, int]:
    ports = {name: free_port() for name in TARGETS}
    targets = {
        name: {"kind": "local_command", "environment": name, "port": port, "repo": str(repo)}
        for name, port in ports.items()
    }
    environments = {
        name: {"base_url": f"http://127.0.0.1:{port}", "is_production": production}
        for name, port in ports.items()
    }
    monkeypatch.setenv("IMMUNITY_DATA_DIR", str(tmp_path / "data"))
    monkeypatch.setenv("IMMUNITY_REPO_PATH", str(repo))
    monkeypatch.setenv("IMMUNITY_DEPLOY_TARGETS", json.dumps(targets))
    monkeypatch.setenv("IMMUNITY_ENVIRONMENTS", json.dumps(environments))
    monkeypatch.setenv("IMMUNITY_EXPERIMENT_ALPHA", "0.05")
    monkeypatch.setenv("IMMUNITY_EXPERIMENT_MIN_SAMPLES", extra.pop("min_samples", "20"))
    monkeypatch.setenv("IMMUNITY_EXPERIMENT_MAX_SAMPLES", extra.pop("max_samples", "200"))
    get_settings.cache_clear()
    return ports


@pytest.fixture
def bench(store: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Bench]:
    """A seeded bug's repository, two local targets for it, and the bug's regression test."""
    bug = first_bug(offline_fixable=True)
    repo = tmp_path / "repo"
    bad = seed_repo(repo, bug)
    _configure(monkeypatch, tmp_path, repo)
    test = RegressionTest(
        name="regression_experiment_trigger",
        spec={"method": bug.method, "path": bug.url_path},
        expectations={"should_not_fail": True},
        environment=TARGETS[0],
    )
    with Session(get_engine(store), expire_on_commit=False) as session:
        session.add(test)
        session.commit()
    assert test.id is not None
    try:
        yield Bench(repo, bad, head(repo, "HEAD~1"), test.id)
    finally:
        for name in TARGETS:
            stop_local(name, get_settings())


def _variants(ref_a: str, ref_b: str) -> tuple[dict[str, str], dict[str, str]]:
    return (
        {"name": "A", "ref": ref_a, "target": TARGETS[0]},
        {"name": "B", "ref": ref_b, "target": TARGETS[1]},
    )


def _stored(store: str, experiment_id: int) -> tuple[Experiment, list[tuple[int, str, int, int]]]:
    with Session(get_engine(store)) as session:
        experiment = session.get(Experiment, experiment_id)
        rows = session.exec(
            select(ExperimentResult)
            .where(ExperimentResult.experiment_id == experiment_id)
            .order_by(ExperimentResult.round, ExperimentResult.variant)
        ).all()
    assert experiment is not None
    return experiment, [(r.round, r.variant, r.passed, r.failed) for r in rows]


def _artifact(experiment: Experiment) -> str:
    assert experiment.flow_run_id is not None
    with get_client(sync_client=True) as client:
        found = client.read_artifacts(
            artifact_filter=ArtifactFilter(
                key=ArtifactFilterKey(any_=[f"experiment-{experiment.id}"]),
                flow_run_id=ArtifactFilterFlowRunId(any_=[UUID(experiment.flow_run_id)]),
            )
        )
    assert len(found) == 1
    return str(found[0].data)


def test_the_good_variant_wins_and_the_experiment_stops_at_the_minimum_sample(
    store: str, bench: Bench
) -> None:
    variant_a, variant_b = _variants("HEAD", "HEAD~1")
    summary = run_experiment(
        "guard the average order value",
        variant_a,
        variant_b,
        [bench.test_id],
        runs_per_round=10,
    )

    # 10 runs per round: round 1 is below the minimum of 20, round 2 is decisive (max: 20 rounds).
    assert summary.status == ExperimentStatus.DECIDED
    assert summary.winner == "B" and summary.winner_ref == bench.good
    assert summary.rounds == 2
    assert summary.samples == {"A": (0, 20), "B": (20, 0)}
    assert summary.p_value == pytest.approx(fisher_exact(0, 20, 20, 0), rel=1e-12)
    assert summary.p_value < 1e-9 and summary.posterior is not None and summary.posterior > 0.999
    assert summary.promoted_deployment_id is None
    # Each variant really ran on its own target, at its own commit.
    settings = get_settings()
    assert current_ref(TARGETS[0], settings) == bench.bad
    assert current_ref(TARGETS[1], settings) == bench.good

    experiment, rows = _stored(store, summary.experiment_id)
    assert rows == [(1, "A", 0, 10), (1, "B", 10, 0), (2, "A", 0, 10), (2, "B", 10, 0)]
    assert (experiment.status, experiment.winner) == ("decided", "B")
    assert experiment.finished_at is not None and "B is better" in experiment.detail
    assert [(v["name"], v["deployed_ref"], v["environment"]) for v in experiment.variants] == [
        ("A", bench.bad, TARGETS[0]),
        ("B", bench.good, TARGETS[1]),
    ]
    markdown = _artifact(experiment)
    assert "winner **B**" in markdown and "| 2 | 0/20 (0%) | 20/20 (100%) |" in markdown
    assert bench.good[:12] in markdown and "B is better" in markdown


@pytest.mark.parametrize("db_url", ["sqlite"], indirect=True)
def test_two_equal_variants_run_to_the_maximum_sample_and_are_inconclusive(
    store: str, bench: Bench, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    _configure(monkeypatch, tmp_path, bench.repo, min_samples="5", max_samples="15")
    variant_a, variant_b = _variants("HEAD~1", "HEAD~1")
    summary = run_experiment(
        "same fix twice",
        variant_a,
        variant_b,
        [bench.test_id],
        method="beta_binomial",
        runs_per_round=5,
    )
    assert summary.status == ExperimentStatus.INCONCLUSIVE and summary.winner is None
    assert summary.rounds == 3 and summary.samples == {"A": (15, 0), "B": (15, 0)}
    assert summary.posterior == pytest.approx(0.5, abs=1e-9)
    assert "maximum sample of 15" in summary.detail

    # max_rounds stops a clear difference before the minimum sample: inconclusive, and says why.
    variant_a, variant_b = _variants("HEAD", "HEAD~1")
    capped = run_experiment(
        "capped", variant_a, variant_b, [bench.test_id], runs_per_round=2, max_rounds=1
    )
    assert capped.status == ExperimentStatus.INCONCLUSIVE and capped.rounds == 1
    assert capped.samples == {"A": (0, 2), "B": (2, 0)}
    assert "max_rounds=1" in capped.detail


@pytest.mark.parametrize("db_url", ["sqlite"], indirect=True)
def test_a_variant_that_does_not_deploy_fails_the_experiment_and_nothing_runs(
    store: str, bench: Bench
) -> None:
    variant_a, variant_b = _variants("HEAD~1", "no-such-ref")
    summary = run_experiment("broken ref", variant_a, variant_b, [bench.test_id])
    assert summary.status == ExperimentStatus.FAILED and summary.rounds == 0
    assert "variant B (no-such-ref) did not deploy" in summary.detail
    experiment, rows = _stored(store, summary.experiment_id)
    assert rows == [] and experiment.finished_at is not None
    assert "did not deploy" in _artifact(experiment)

    # Settings that cannot make an experiment are refused before anything is stored.
    with pytest.raises(ValueError, match="unknown deploy target 'nowhere'"):
        run_experiment(
            "x", variant_a, {"name": "B", "ref": "HEAD", "target": "nowhere"}, [bench.test_id]
        )
    with pytest.raises(ValueError, match="its own target"):
        run_experiment("x", variant_a, {**variant_b, "target": TARGETS[0]}, [bench.test_id])
    with pytest.raises(ValueError, match=r"missing: \[999\]"):
        run_experiment("x", *_variants("HEAD", "HEAD~1"), [bench.test_id, 999])
    with Session(get_engine(store)) as session:
        assert len(session.exec(select(Experiment)).all()) == 1


@pytest.mark.parametrize("db_url", ["sqlite"], indirect=True)
def test_an_experiment_whose_every_run_is_refused_fails_instead_of_looping(
    store: str, bench: Bench, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Both environments are production and the test sends a POST it may not send there.
    _configure(monkeypatch, tmp_path, bench.repo, production=True)
    unsafe = RegressionTest(
        name="regression_unsafe_replay",
        spec={"method": "POST", "path": "/api/shop/orders", "body": {}},
        expectations={"should_not_fail": True},
    )
    with Session(get_engine(store), expire_on_commit=False) as session:
        session.add(unsafe)
        session.commit()
    assert unsafe.id is not None
    summary = run_experiment("refused", *_variants("HEAD", "HEAD~1"), [unsafe.id])
    assert summary.status == ExperimentStatus.FAILED and summary.rounds == 1
    assert summary.detail == "no test could run against A, B (all refused)"
    assert summary.samples == {"A": (0, 0), "B": (0, 0)}


@pytest.mark.parametrize("db_url", ["sqlite"], indirect=True)
def test_the_winner_is_promoted_through_the_deploy_flow(
    store: str, bench: Bench, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    _configure(monkeypatch, tmp_path, bench.repo)
    # A third target, "prod", serving its own configured environment; a short watch, a low gate.
    port = free_port()
    targets = json.loads(os.environ["IMMUNITY_DEPLOY_TARGETS"])
    environments = json.loads(os.environ["IMMUNITY_ENVIRONMENTS"])
    targets["prod"] = {"kind": "local_command", "environment": "prod", "port": port}
    environments["prod"] = {"base_url": f"http://127.0.0.1:{port}"}
    for name, value in {
        "DEPLOY_TARGETS": json.dumps(targets),
        "ENVIRONMENTS": json.dumps(environments),
        "DEPLOY_WATCH_S": "2",
        "DEPLOY_WATCH_INTERVAL_S": "1",
        "DEPLOY_MIN_READINESS": "0",
    }.items():
        monkeypatch.setenv(f"IMMUNITY_{name}", value)
    get_settings.cache_clear()
    try:
        summary = run_experiment(
            "promote the better fix",
            *_variants("HEAD", "HEAD~1"),
            [bench.test_id],
            runs_per_round=10,
            promote_to="prod",
        )
        settings = get_settings()
        assert current_ref("prod", settings) == bench.good
    finally:
        stop_local("prod", get_settings())

    assert summary.status == ExperimentStatus.DECIDED and summary.winner == "B"
    assert summary.promoted_deployment_id is not None
    with Session(get_engine(store)) as session:
        deployments = session.exec(select(Deployment)).all()
    (deployment,) = deployments
    assert deployment.id == summary.promoted_deployment_id
    assert (deployment.target, deployment.environment, deployment.ref) == (
        "prod",
        "prod",
        bench.good,
    )
    assert deployment.status == DeploymentStatus.SUCCEEDED, deployment.detail
    assert deployment.reason.startswith(f"experiment {summary.experiment_id}: variant B won")
    assert deployment.gate["passed"] and deployment.watch["reports"]
    assert all(report["healthy"] for report in deployment.watch["reports"])
    experiment, _ = _stored(store, summary.experiment_id)
    assert experiment.promoted_deployment_id == deployment.id
    assert f"promoted as deployment #{deployment.id}: succeeded" in experiment.detail
