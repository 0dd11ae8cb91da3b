"""Deployment targets: deploy a ref to one, and follow the deployment until it is up or failed.

    outcome = trigger_and_follow("production", settings.deploy_targets["production"], sha, settings)

Each kind has its module: `local` (restart the service from a worktree of the ref), `github`
(workflow_dispatch, then the run), `vercel` (deploy hook, then the deployment), `webhook` (one
JSON POST). A misconfigured target raises `TargetConfigError` before anything is sent; everything
that goes wrong afterwards (HTTP errors, rate limits past the timeout, a failed run, a copy that
does not start) comes back as `TargetOutcome(ok=False, detail=...)`.
"""

from __future__ import annotations

from contextlib import nullcontext

import httpx

from immunity.models.deploy_targets import TargetOutcome
from immunity.models.settings import DeployTarget, Settings
from immunity.tasks.deploy.targets._common import TargetConfigError
from immunity.tasks.deploy.targets.github import check_github, deploy_github
from immunity.tasks.deploy.targets.local import check_local, current_ref, deploy_local, stop_local
from immunity.tasks.deploy.targets.vercel import check_vercel, deploy_vercel
from immunity.tasks.deploy.targets.webhook import check_webhook, deploy_webhook

__all__ = [
    "TargetConfigError",
    "TargetOutcome",
    "check_target",
    "current_ref",
    "deploy_local",
    "stop_local",
    "trigger_and_follow",
]

USER_AGENT = "immunity-deploy"


def check_target(name: str, target: DeployTarget, settings: Settings) -> None:
    """Raise TargetConfigError if the target lacks a field its kind needs."""
    if target.kind == "local_command":
        check_local(name, target, settings)
    elif target.kind == "github_actions":
        check_github(name, target)
    elif target.kind == "vercel":
        check_vercel(name, target)
    elif target.kind == "webhook":
        check_webhook(name, target)
    else:  # pragma: no cover - the Literal admits no other
        raise TargetConfigError(f"deploy target {name!r} has an unknown kind {target.kind!r}")


def trigger_and_follow(
    name: str,
    target: DeployTarget,
    ref: str,
    settings: Settings,
    *,
    reason: str = "",
    client: httpx.Client | None = None,
) -> TargetOutcome:
    """Return how deploying `ref` to the target `name` ended, within `target.timeout_s`.

    `client` is used for the remote kinds when given (one is made otherwise).
    """
    check_target(name, target, settings)
    if target.kind == "local_command":
        return deploy_local(name, target, ref, settings)
    with (
        httpx.Client(headers={"User-Agent": USER_AGENT}) if client is None else nullcontext(client)
    ) as http:
        if target.kind == "github_actions":
            return deploy_github(name, target, ref, client=http)
        if target.kind == "vercel":
            return deploy_vercel(name, target, ref, client=http)
        return deploy_webhook(name, target, ref, reason=reason, client=http)
