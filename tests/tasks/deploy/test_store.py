"""Deployments in a real store: what a rollback restores, and the suspects of new signatures."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

from sqlalchemy import Engine
from sqlmodel import Session, select

from immunity.models.db import session_scope
from immunity.models.deploy_tables import Deployment
from immunity.models.enums import DeploymentStatus
from immunity.models.tables import Signature
from immunity.tasks.deploy.store import (
    last_good_ref,
    link_recent_suspects,
    link_suspects,
    list_deployments,
    open_deployment,
    update_deployment,
)
from tests.tasks.test_health_alerts import failure, ingest

DEPLOYED = datetime(2026, 11, 20, 12, 0, tzinfo=UTC)
WINDOW = timedelta(minutes=30)


def _deployment(engine: Engine, target: str, ref: str, status: DeploymentStatus) -> Deployment:
    with session_scope(engine) as session:
        opened = open_deployment(
            session=session, target=target, kind="local_command", environment="production", ref=ref
        )
        assert opened.id is not None
        return update_deployment(
            session=session, deployment_id=opened.id, status=status, deployed_at=DEPLOYED
        )


def _open(engine: Engine, ref: str) -> Deployment:
    with session_scope(engine) as session:
        return open_deployment(
            session=session, target="prod", kind="local_command", environment="production", ref=ref
        )


def _update(engine: Engine, deployment_id: int, **fields: Any) -> Deployment:
    with session_scope(engine) as session:
        return update_deployment(session=session, deployment_id=deployment_id, **fields)


def _last_good_ref(engine: Engine, target: str, before_id: int | None = None) -> str | None:
    with session_scope(engine) as session:
        return last_good_ref(session=session, target=target, before_id=before_id)


def _link(engine: Engine, deployment: Deployment) -> list[int]:
    with session_scope(engine) as session:
        return link_suspects(session=session, deployment=deployment, window=WINDOW)


def _sweep(engine: Engine) -> list[int]:
    with session_scope(engine) as session:
        return link_recent_suspects(session=session, window=WINDOW)


def _suspects(engine: Engine) -> dict[str, int | None]:
    with Session(engine) as session:
        return {s.error_type: s.suspect_deployment_id for s in session.exec(select(Signature))}


# last_good_ref ----------------------------------------------------------------------------------


def test_the_last_good_ref_is_the_targets_newest_promoted_deployment(engine: Engine) -> None:
    assert _last_good_ref(engine, "prod") is None  # a target never deployed restores nothing

    first = _deployment(engine, "prod", "aaa111", DeploymentStatus.SUCCEEDED)
    second = _deployment(engine, "prod", "bbb222", DeploymentStatus.SUCCEEDED)
    _deployment(engine, "prod", "ccc333", DeploymentStatus.ROLLED_BACK)
    _deployment(engine, "prod", "ddd444", DeploymentStatus.FAILED)
    _deployment(engine, "prod", "eee555", DeploymentStatus.REFUSED)
    _deployment(engine, "prod", "fff666", DeploymentStatus.WATCHING)
    _deployment(engine, "staging", "999999", DeploymentStatus.SUCCEEDED)  # another target

    assert _last_good_ref(engine, "prod") == "bbb222"
    assert _last_good_ref(engine, "staging") == "999999"
    # Before a deployment: what was promoted before that one.
    assert second.id is not None and first.id is not None
    assert _last_good_ref(engine, "prod", before_id=second.id) == "aaa111"
    assert _last_good_ref(engine, "prod", before_id=first.id) is None
    assert _last_good_ref(engine, "canary") is None


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

    linked = _link(engine, deployment)

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
    assert _link(engine, deployment) == []


def test_a_deployment_that_never_went_live_has_no_suspects(engine: Engine) -> None:
    ingest(engine, [failure(DEPLOYED + timedelta(minutes=1), kind="NewError")])
    opened = _open(engine, "aaa111")
    assert opened.id is not None
    refused = _update(engine, opened.id, status=DeploymentStatus.REFUSED)
    assert refused.deployed_at is None
    assert _link(engine, refused) == []
    assert _suspects(engine) == {"NewError": None}


def test_the_sweep_links_new_signatures_to_recent_deployments_only(engine: Engine) -> None:
    now = datetime.now(UTC)
    live = _open(engine, "new111")
    old = _open(engine, "old000")
    assert live.id is not None and old.id is not None
    _update(engine, live.id, status=DeploymentStatus.SUCCEEDED, deployed_at=now)
    long_ago = now - timedelta(hours=5)
    _update(engine, old.id, status=DeploymentStatus.SUCCEEDED, deployed_at=long_ago)
    ingest(
        engine,
        [
            failure(now + timedelta(minutes=2), kind="SinceTheDeployError"),
            failure(long_ago + timedelta(minutes=2), kind="LongAgoError"),
        ],
    )

    linked = _sweep(engine)

    # The old deployment is outside the window: its signature is left for someone to look at.
    assert _suspects(engine) == {"SinceTheDeployError": live.id, "LongAgoError": None}
    assert len(linked) == 1
    assert _sweep(engine) == []


def test_a_deployment_is_the_callers_to_commit_or_roll_back(engine: Engine) -> None:
    with Session(engine) as session:
        opened = open_deployment(
            session=session, target="prod", kind="local_command", environment="production", ref="a1"
        )
        assert opened.id is not None  # flushed: its id is known inside the transaction
        assert [d.id for d in list_deployments(session=session)] == [opened.id]
        session.rollback()

    with Session(engine) as session:
        assert list_deployments(session=session) == []
