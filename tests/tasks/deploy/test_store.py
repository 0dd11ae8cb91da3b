"""Deployments in a real store: what a rollback restores, and the suspects of new signatures."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from sqlalchemy import Engine
from sqlmodel import Session, select

from immunity.models.deploy_tables import Deployment
from immunity.models.enums import DeploymentStatus
from immunity.models.tables import Signature
from immunity.tasks.deploy.store import (
    last_good_ref,
    link_recent_suspects,
    link_suspects,
    open_deployment,
    update_deployment,
)
from tests.tasks.test_health_alerts import failure, ingest

DEPLOYED = datetime(2026, 11, 20, 12, 0, tzinfo=UTC)
WINDOW = timedelta(minutes=30)


def _deployment(engine: Engine, target: str, ref: str, status: DeploymentStatus) -> Deployment:
    opened = open_deployment(
        engine, target=target, kind="local_command", environment="production", ref=ref
    )
    assert opened.id is not None
    return update_deployment(engine, opened.id, status=status, deployed_at=DEPLOYED)


def _suspects(engine: Engine) -> dict[str, int | None]:
    with Session(engine) as session:
        return {s.error_type: s.suspect_deployment_id for s in session.exec(select(Signature))}


# last_good_ref ----------------------------------------------------------------------------------


def test_the_last_good_ref_is_the_targets_newest_promoted_deployment(engine: Engine) -> None:
    assert last_good_ref(engine, "prod") is None  # a target never deployed restores nothing

    first = _deployment(engine, "prod", "aaa111", DeploymentStatus.SUCCEEDED)
    second = _deployment(engine, "prod", "bbb222", DeploymentStatus.SUCCEEDED)
    _deployment(engine, "prod", "ccc333", DeploymentStatus.ROLLED_BACK)
    _deployment(engine, "prod", "ddd444", DeploymentStatus.FAILED)
    _deployment(engine, "prod", "eee555", DeploymentStatus.REFUSED)
    _deployment(engine, "prod", "fff666", DeploymentStatus.WATCHING)
    _deployment(engine, "staging", "999999", DeploymentStatus.SUCCEEDED)  # another target

    assert last_good_ref(engine, "prod") == "bbb222"
    assert last_good_ref(engine, "staging") == "999999"
    # Before a deployment: what was promoted before that one.
    assert second.id is not None and first.id is not None
    assert last_good_ref(engine, "prod", before_id=second.id) == "aaa111"
    assert last_good_ref(engine, "prod", before_id=first.id) is None
    assert last_good_ref(engine, "canary") is None


# link_suspects ----------------------------------------------------------------------------------


def test_signatures_first_seen_within_the_window_after_a_deployment_are_its_suspects(
    engine: Engine,
) -> None:
    earlier = _deployment(engine, "prod", "aaa111", DeploymentStatus.SUCCEEDED)
    ingest(
        engine,
        [
            failure(DEPLOYED - timedelta(seconds=1), kind="OldError"),
            failure(DEPLOYED, kind="AtTheSwitchError"),
            failure(DEPLOYED + WINDOW - timedelta(seconds=1), kind="LateError"),
            failure(DEPLOYED + WINDOW, kind="TooLateError"),
            failure(DEPLOYED + timedelta(minutes=5), kind="ClaimedError"),
        ],
    )
    # One of them already has a suspect (the earlier deployment): it keeps it.
    with Session(engine) as session:
        claimed = session.exec(
            select(Signature).where(Signature.error_type == "ClaimedError")
        ).one()
        claimed.suspect_deployment_id = earlier.id
        session.add(claimed)
        session.commit()
    deployment = _deployment(engine, "prod", "bbb222", DeploymentStatus.SUCCEEDED)

    linked = link_suspects(engine, deployment, WINDOW)

    suspects = _suspects(engine)
    assert suspects == {
        "OldError": None,
        "AtTheSwitchError": deployment.id,
        "LateError": deployment.id,
        "TooLateError": None,
        "ClaimedError": earlier.id,
    }
    with Session(engine) as session:
        ids = session.exec(
            select(Signature.id).where(Signature.suspect_deployment_id == deployment.id)
        ).all()
    assert sorted(linked) == sorted(ids) and len(linked) == 2
    # Linking again finds nothing new.
    assert link_suspects(engine, deployment, WINDOW) == []


def test_a_deployment_that_never_went_live_has_no_suspects(engine: Engine) -> None:
    ingest(engine, [failure(DEPLOYED + timedelta(minutes=1), kind="NewError")])
    opened = open_deployment(
        engine, target="prod", kind="local_command", environment="production", ref="aaa111"
    )
    assert opened.id is not None
    refused = update_deployment(engine, opened.id, status=DeploymentStatus.REFUSED)
    assert refused.deployed_at is None
    assert link_suspects(engine, refused, WINDOW) == []
    assert _suspects(engine) == {"NewError": None}


def test_the_sweep_links_new_signatures_to_recent_deployments_only(engine: Engine) -> None:
    now = datetime.now(UTC)
    live = open_deployment(
        engine, target="prod", kind="local_command", environment="production", ref="new111"
    )
    old = open_deployment(
        engine, target="prod", kind="local_command", environment="production", ref="old000"
    )
    assert live.id is not None and old.id is not None
    update_deployment(engine, live.id, status=DeploymentStatus.SUCCEEDED, deployed_at=now)
    long_ago = now - timedelta(hours=5)
    update_deployment(engine, old.id, status=DeploymentStatus.SUCCEEDED, deployed_at=long_ago)
    ingest(
        engine,
        [
            failure(now + timedelta(minutes=2), kind="SinceTheDeployError"),
            failure(long_ago + timedelta(minutes=2), kind="LongAgoError"),
        ],
    )

    linked = link_recent_suspects(engine, WINDOW)

    # The old deployment is outside the window: its signature is left for someone to look at.
    assert _suspects(engine) == {"SinceTheDeployError": live.id, "LongAgoError": None}
    assert len(linked) == 1
    assert link_recent_suspects(engine, WINDOW) == []
