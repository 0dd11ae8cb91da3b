"""The deploy flow's refusals and its remote targets, against GitHub's and Vercel's stand-ins.

A fix without a recorded approval, or not yet applied, is never deployed (nothing is stored and
nothing sent); an unknown target is refused naming the known ones; a workflow run that concludes
`failure` is a failed deployment with an alert; a successful run and a READY Vercel deployment are
promoted, with the run's or the deployment's id and URL on the record.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from sqlmodel import Session, select

from immunity.flows.deploy import deploy
from immunity.models.db import get_engine
from immunity.models.deploy_tables import Deployment
from immunity.models.enums import DeploymentStatus, FixStatus
from immunity.models.heal_tables import FixProposal
from immunity.models.schemas import utcnow
from immunity.models.settings import get_settings
from immunity.models.tables import Alert, Signature
from immunity.tasks.deploy.tasks import DeployRefusedError
from tests.standins.github_server import GitHubStandin
from tests.standins.vercel_server import VercelStandin
from tests.tasks.test_health_alerts import Receiver, failure, ingest

pytestmark = [
    pytest.mark.usefixtures("prefect_harness"),
    pytest.mark.parametrize("db_url", ["sqlite"], indirect=True),
]

SHA = "3f2a9c1d0b7e6a5f4c3b2a1908f7e6d5c4b3a291"
FAST = {"poll_interval_s": 0.05, "timeout_s": 20}


class Configure:
    """Set the deploy targets (and an alert receiver) in the environment immunity reads."""

    def __init__(self, monkeypatch: pytest.MonkeyPatch, tmp_path: Path, receiver: Receiver):
        self.monkeypatch, self.tmp_path, self.receiver = monkeypatch, tmp_path, receiver

    def __call__(self, **targets: dict[str, Any]) -> None:
        environments = {"production": {"base_url": "http://127.0.0.1:9", "is_production": True}}
        settings = {
            "DATA_DIR": str(self.tmp_path / "data"),
            "DEPLOY_TARGETS": json.dumps(targets),
            "ENVIRONMENTS": json.dumps(environments),
            "ALERT_WEBHOOK_URL": self.receiver.url,
        }
        for name, value in settings.items():
            self.monkeypatch.setenv(f"IMMUNITY_{name}", value)
        get_settings.cache_clear()


@pytest.fixture
def configure(store: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Configure]:
    with Receiver() as receiver:
        yield Configure(monkeypatch, tmp_path, receiver)
    get_settings.cache_clear()


def github_target(github: GitHubStandin) -> dict[str, Any]:
    return {
        "kind": "github_actions",
        "api_url": github.base_url,
        "repository": github.repository,
        "workflow": github.workflow,
        "token": github.token,
        **FAST,
    }


def _deployments() -> list[Deployment]:
    with Session(get_engine()) as session:
        return list(session.exec(select(Deployment).order_by(Deployment.id)).all())


def _alerts() -> list[Alert]:
    with Session(get_engine()) as session:
        return list(session.exec(select(Alert)).all())


def _fix(status: FixStatus, reviewer: str | None) -> int:
    """A fix proposal for a real signature, committed on a branch, in `status`."""
    engine = get_engine()
    ingest(engine, [failure(utcnow(), kind="CheckoutTotalError")])
    with Session(engine, expire_on_commit=False) as session:
        signature = session.exec(select(Signature)).one()
        assert signature.id is not None
        fix = FixProposal(
            signature_id=signature.id,
            strategy="rule",
            diff="(see the commit)",
            status=status,
            reviewer=reviewer,
            decided_at=utcnow() if reviewer else None,
            branch="immunity/fix-1",
            commit=SHA,
        )
        session.add(fix)
        session.commit()
    assert fix.id is not None
    return fix.id


@pytest.mark.parametrize(
    ("status", "reviewer"),
    [
        (FixStatus.AWAITING_APPROVAL, None),  # nobody decided yet
        (FixStatus.APPLIED, None),  # applied, but no approval is on record
        (FixStatus.APPROVED, "ann"),  # approved, not yet applied: no commit to trust
        (FixStatus.REJECTED, "ann"),
    ],
)
def test_a_fix_without_a_recorded_approval_or_not_applied_is_refused(
    configure: Configure, status: FixStatus, reviewer: str | None
) -> None:
    with GitHubStandin() as github:
        configure(gh=github_target(github))
        fix_id = _fix(status, reviewer)
        with pytest.raises(DeployRefusedError, match=f"fix proposal {fix_id} is {status.value}"):
            deploy(fix_id=fix_id, target="gh", min_readiness=0)
        received = github.requests

    assert _deployments() == []
    assert received == []


def test_an_unknown_fix_is_refused(configure: Configure) -> None:
    configure(gh={"kind": "webhook", "url": "http://127.0.0.1:9/deploy"})
    with pytest.raises(DeployRefusedError, match="fix proposal 404 does not exist"):
        deploy(fix_id=404, target="gh", min_readiness=0)
    assert _deployments() == []


def test_an_unknown_target_is_refused_naming_the_known_ones(configure: Configure) -> None:
    hook = {"kind": "webhook", "url": "http://127.0.0.1:9/deploy"}
    configure(staging=hook, canary=hook)
    with pytest.raises(
        DeployRefusedError, match=r"unknown deploy target 'nope' \(known: canary, staging\)"
    ):
        deploy(ref=SHA, target="nope", min_readiness=0)
    assert _deployments() == []


def test_a_workflow_run_concluding_failure_is_a_failed_deployment_with_an_alert(
    configure: Configure,
) -> None:
    with GitHubStandin(conclusion="failure") as github:
        configure(gh=github_target(github))
        outcome = deploy(ref=SHA, target="gh", reason="ship the fix", min_readiness=0)
        run = github.runs[-1]
        (dispatch,) = github.dispatches

    assert dispatch.body["inputs"] == {"ref": SHA}
    assert outcome.status == DeploymentStatus.FAILED
    assert "concluded failure" in outcome.detail and outcome.watch == []
    (deployment,) = _deployments()
    assert deployment.id == outcome.deployment_id
    assert (deployment.status, deployment.ref, deployment.kind) == ("failed", SHA, "github_actions")
    assert deployment.external_id == str(run.id)
    assert deployment.deployed_at is None and deployment.finished_at is not None
    assert deployment.gate["passed"] and deployment.reason == "ship the fix"
    (alert,) = _alerts()
    assert (alert.kind, alert.key) == ("deploy_failed", f"deploy_failed:gh:{deployment.id}")
    assert "concluded failure" in alert.message
    assert alert.details == {"deployment_id": deployment.id, "target": "gh", "ref": SHA}
    assert alert.delivered
    assert [body["kind"] for body in configure.receiver.bodies] == ["deploy_failed"]


def test_a_successful_run_without_a_watch_is_promoted_with_the_run_on_record(
    configure: Configure,
) -> None:
    with GitHubStandin() as github:
        configure(gh=github_target(github))
        outcome = deploy(ref=SHA, target="gh", watch=False, min_readiness=0)
        run = github.runs[-1]
        # The next deployment of the target knows what a rollback would restore.
        second = deploy(ref="0" * 40, target="gh", watch=False, min_readiness=0)

    assert outcome.status == DeploymentStatus.SUCCEEDED, outcome.detail
    assert outcome.detail == "promoted (no watch)" and outcome.previous_ref is None
    first = _deployments()[0]
    assert (first.status, first.ref) == ("succeeded", SHA)
    assert first.external_id == str(run.id)
    assert first.external_url == f"https://github.com/acme/shop/actions/runs/{run.id}"
    assert first.deployed_at is not None and first.watch == {"reports": []}
    assert second.status == DeploymentStatus.SUCCEEDED and second.previous_ref == SHA
    assert _alerts() == []


def test_a_vercel_deployment_that_becomes_ready_is_promoted(configure: Configure) -> None:
    with VercelStandin() as vercel:
        configure(
            web={
                "kind": "vercel",
                "hook_url": vercel.hook_url,
                "api_url": vercel.base_url,
                "token": vercel.token,
                "project_id": vercel.project_id,
                **FAST,
            }
        )
        outcome = deploy(ref="main", target="web", watch=False, min_readiness=0)
        (built,) = vercel.deployments

    assert outcome.status == DeploymentStatus.SUCCEEDED, outcome.detail
    (deployment,) = _deployments()
    assert (deployment.status, deployment.kind) == ("succeeded", "vercel")
    assert deployment.external_id == built.uid
    assert deployment.external_url is not None
    assert deployment.external_url.startswith("https://shop-")
    assert deployment.external_url.endswith("-acme.vercel.app")
    assert _alerts() == []
