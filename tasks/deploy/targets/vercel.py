"""Vercel: a deploy hook, then (with a token and project) the deployment followed to its state.

A hook answers with a job, not a deployment: the deployment is the project's newest one created
since the job (both times are Vercel's), and it is polled until READY, ERROR or CANCELED.
"""

from __future__ import annotations

from typing import Any

import httpx

from immunity.models.deploy_targets import TargetOutcome
from immunity.models.settings import DeployTarget
from immunity.tasks.deploy.targets._common import (
    Deadline,
    FollowError,
    api_message,
    json_object,
    poll,
    require,
    send,
)

__all__ = ["DEFAULT_API_URL", "check_vercel", "deploy_vercel", "vercel_api_url"]

DEFAULT_API_URL = "https://api.vercel.com"
SERVICE = "Vercel"
# DeployTarget.api_url defaults to GitHub's; for a Vercel target that default means Vercel's.
_GITHUB_DEFAULT = "https://api.github.com"
_FAILED = frozenset({"ERROR", "CANCELED", "DELETED"})
_LISTED = 5


def check_vercel(name: str, target: DeployTarget) -> None:
    """Raise TargetConfigError unless the target has a deploy hook URL."""
    require(name, target, "hook_url")


def vercel_api_url(target: DeployTarget) -> str:
    """Return the Vercel API base URL the target means."""
    api = target.api_url.rstrip("/")
    return DEFAULT_API_URL if api in ("", _GITHUB_DEFAULT) else api


def deploy_vercel(
    name: str, target: DeployTarget, ref: str, *, client: httpx.Client
) -> TargetOutcome:
    """Return how the deployment the hook started ended (ok on READY; on 201 alone if unfollowed).

    A deploy hook builds its branch's head: `ref` is what the caller expects that head to be.
    """
    check_vercel(name, target)
    deadline = Deadline(target.timeout_s, target.poll_interval_s)
    try:
        job = _trigger(client, target.hook_url, deadline)
    except FollowError as error:
        return TargetOutcome(ok=False, ref=ref, detail=str(error))
    if target.token is None or not target.project_id:
        missing = " and ".join(
            label
            for label, given in (("token", target.token), ("project_id", target.project_id))
            if not given
        )
        return TargetOutcome(
            ok=True,
            ref=ref,
            external_id=str(job.get("id")),
            detail=f"Vercel accepted the deploy hook (job {job.get('id')}, {job.get('state')}); "
            f"the deployment's state was not followed: the target has no {missing}",
        )
    headers = {"Authorization": f"Bearer {target.token.get_secret_value()}"}
    team = {"teamId": target.team_id} if target.team_id else {}
    api = vercel_api_url(target)
    deployment: dict[str, Any] = {}
    try:
        deployment.update(_find(client, api, target.project_id, job, headers, team, deadline))
        _follow(
            client,
            f"{api}/v13/deployments/{deployment['uid']}",
            headers,
            team,
            deadline,
            deployment,
        )
    except FollowError as error:
        return _outcome(False, ref, deployment, str(error))
    state = deployment.get("readyState")
    detail = f"Vercel deployment {deployment.get('id')} of {ref} is {state}"
    if deployment.get("errorMessage"):
        detail += f": {deployment['errorMessage']}"
    return _outcome(state == "READY", ref, deployment, detail)


def _outcome(ok: bool, ref: str, deployment: dict[str, Any], detail: str) -> TargetOutcome:
    host = deployment.get("url")
    return TargetOutcome(
        ok=ok,
        ref=ref,
        external_id=deployment.get("id") or deployment.get("uid"),
        external_url=f"https://{host}" if host else None,
        detail=detail,
    )


def _trigger(client: httpx.Client, hook_url: str, deadline: Deadline) -> dict[str, Any]:
    """Return the hook's job (`id`, `state`, `createdAt`)."""
    response = send(client, "POST", hook_url, deadline, service=SERVICE)
    if not response.is_success:
        raise FollowError(
            f"Vercel refused the deploy hook ({response.status_code}): {api_message(response)}"
        )
    job = json_object(response, SERVICE).get("job")
    if not isinstance(job, dict) or not isinstance(job.get("createdAt"), int | float):
        raise FollowError(f"Vercel's deploy hook answer has no job: {response.text!r}")
    return job


def _find(
    client: httpx.Client,
    api: str,
    project_id: str,
    job: dict[str, Any],
    headers: dict[str, str],
    team: dict[str, str],
    deadline: Deadline,
) -> dict[str, Any]:
    """Return the project's newest deployment created since the job, once it shows."""
    since = job["createdAt"]

    def newest(body: dict[str, Any]) -> dict[str, Any] | None:
        ours = [
            deployment
            for deployment in body.get("deployments") or []
            if isinstance(deployment, dict)
            and isinstance(deployment.get("created"), int | float)
            and deployment["created"] >= since
            and deployment.get("uid")
        ]
        return max(ours, key=lambda deployment: deployment["created"]) if ours else None

    return poll(
        client,
        f"{api}/v6/deployments",
        deadline,
        service=SERVICE,
        what="the list of deployments",
        until=newest,
        waiting=lambda: (
            f"no deployment of {project_id} appeared for the hook's job {job.get('id')}"
        ),
        params={"projectId": project_id, "limit": _LISTED, "since": since, **team},
        headers=headers,
    )


def _follow(
    client: httpx.Client,
    url: str,
    headers: dict[str, str],
    team: dict[str, str],
    deadline: Deadline,
    deployment: dict[str, Any],
) -> None:
    """Refresh `deployment` until its readyState is READY or a failure; FollowError on timeout."""

    def settled(body: dict[str, Any]) -> dict[str, Any] | None:
        deployment.update(body)
        state = deployment.get("readyState")
        return deployment if state == "READY" or state in _FAILED else None

    poll(
        client,
        url,
        deadline,
        service=SERVICE,
        what=f"the deployment {deployment.get('uid')}",
        until=settled,
        waiting=lambda: (
            f"deployment {deployment.get('id')} was still {deployment.get('readyState')}"
        ),
        params=team,
        headers=headers,
    )
