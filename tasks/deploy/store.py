"""Deployments in the store: open, move, look up; suspect deployments of new signatures.

Every function takes the caller's `session` and works inside its transaction: writers flush, the
caller commits or rolls back (`with session_scope(engine) as session: ...` does both).
"""

from __future__ import annotations

from datetime import timedelta
from typing import Any

from sqlmodel import Session, col, select

from immunity.models.deploy_tables import Deployment
from immunity.models.enums import DeploymentStatus
from immunity.models.errors import NotFoundError
from immunity.models.schemas import utcnow
from immunity.models.tables import Signature

__all__ = [
    "DeploymentNotFoundError",
    "get_deployment",
    "last_good_ref",
    "link_recent_suspects",
    "link_suspects",
    "list_deployments",
    "open_deployment",
    "update_deployment",
]

_FINAL = {
    DeploymentStatus.REFUSED,
    DeploymentStatus.SUCCEEDED,
    DeploymentStatus.FAILED,
    DeploymentStatus.ROLLED_BACK,
}


class DeploymentNotFoundError(NotFoundError):
    def __init__(self, deployment_id: int) -> None:
        super().__init__(f"deployment {deployment_id} does not exist")


def open_deployment(*, session: Session, **fields: Any) -> Deployment:
    """Store a new deployment (`pending`) and return it, its id assigned."""
    deployment = Deployment(**fields)
    session.add(deployment)
    session.flush()
    return deployment


def update_deployment(*, session: Session, deployment_id: int, **fields: Any) -> Deployment:
    """Set fields on a deployment; a final status also sets `finished_at`."""
    deployment = session.get(Deployment, deployment_id)
    if deployment is None:
        raise DeploymentNotFoundError(deployment_id)
    for name, value in fields.items():
        setattr(deployment, name, value)
    if fields.get("status") in _FINAL and deployment.finished_at is None:
        deployment.finished_at = utcnow()
    session.add(deployment)
    session.flush()
    return deployment


def get_deployment(*, session: Session, deployment_id: int) -> Deployment:
    """Return the deployment or raise DeploymentNotFoundError."""
    found = session.get(Deployment, deployment_id)
    if found is None:
        raise DeploymentNotFoundError(deployment_id)
    return found


def list_deployments(*, session: Session, limit: int = 50) -> list[Deployment]:
    """Return the newest deployments first."""
    query = select(Deployment).order_by(col(Deployment.id).desc()).limit(limit)
    return list(session.exec(query).all())


def last_good_ref(*, session: Session, target: str, before_id: int | None = None) -> str | None:
    """Return the ref of the target's newest promoted deployment (what a rollback restores)."""
    query = select(Deployment.ref).where(
        Deployment.target == target, Deployment.status == DeploymentStatus.SUCCEEDED
    )
    if before_id is not None:
        query = query.where(col(Deployment.id) < before_id)
    return session.exec(query.order_by(col(Deployment.id).desc())).first()


def link_suspects(*, session: Session, deployment: Deployment, window: timedelta) -> list[int]:
    """Link signatures first seen within `window` after the deployment to it; return their ids."""
    if deployment.deployed_at is None or deployment.id is None:
        return []
    start, end = deployment.deployed_at, deployment.deployed_at + window
    found = session.exec(
        select(Signature).where(
            col(Signature.first_seen) >= start,
            col(Signature.first_seen) < end,
            col(Signature.suspect_deployment_id).is_(None),
        )
    ).all()
    for signature in found:
        signature.suspect_deployment_id = deployment.id
        session.add(signature)
    session.flush()
    return [s.id for s in found if s.id is not None]


def link_recent_suspects(*, session: Session, window: timedelta) -> list[int]:
    """Link new signatures to every deployment that went live within `window`; return them."""
    since = utcnow() - window
    recent = session.exec(
        select(Deployment)
        .where(col(Deployment.deployed_at) >= since)
        .order_by(col(Deployment.deployed_at))
    ).all()
    linked: list[int] = []
    for deployment in recent:  # oldest first: a signature goes to the first deployment after it
        linked += link_suspects(session=session, deployment=deployment, window=window)
    return linked
