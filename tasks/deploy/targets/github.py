"""GitHub Actions: a `workflow_dispatch` with the ref as an input, then the run to its conclusion.

The dispatch asks for the run's id (`return_run_details`, GitHub's answer since February 2026);
where the server does not give it (a 204, as older GitHub Enterprise Servers answer), the run is
the newest `workflow_dispatch` run of the branch created since the dispatch, by the server's clock.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any
from urllib.parse import quote

import httpx

from immunity.models.deploy_targets import TargetOutcome
from immunity.models.settings import DeployTarget
from immunity.tasks.deploy.targets._common import (
    Deadline,
    FollowError,
    TargetConfigError,
    api_message,
    json_object,
    poll,
    require,
    send,
    server_time,
)

__all__ = ["API_VERSION", "check_github", "deploy_github"]

API_VERSION = "2022-11-28"
SERVICE = "GitHub"
# `created_at` is whole seconds and the dispatch's `Date` too: a run can look a second early.
_ROUNDING_S = 2.0
_RUNS_PER_PAGE = 10


def check_github(name: str, target: DeployTarget) -> None:
    """Raise TargetConfigError unless the target names a repository, workflow, branch and token."""
    require(name, target, "api_url", "repository", "workflow", "branch", "token")
    owner, _, repo = target.repository.partition("/")
    if not owner or not repo or "/" in repo:
        raise TargetConfigError(f"deploy target {name!r}: repository must be owner/name")


def deploy_github(
    name: str, target: DeployTarget, ref: str, *, client: httpx.Client
) -> TargetOutcome:
    """Return how the dispatched workflow run for `ref` concluded (ok only on `success`)."""
    check_github(name, target)
    assert target.token is not None  # check_github requires it
    deadline = Deadline(target.timeout_s, target.poll_interval_s)
    base = f"{target.api_url.rstrip('/')}/repos/{target.repository}/actions"
    headers = {
        "Accept": "application/vnd.github+json",
        "Authorization": f"Bearer {target.token.get_secret_value()}",
        "X-GitHub-Api-Version": API_VERSION,
    }
    workflow = quote(target.workflow, safe="")
    run: dict[str, Any] = {}  # what is known of the run so far, for the outcome's links
    try:
        dispatched_at = _dispatch(client, base, workflow, target, ref, headers, deadline, run)
        if not run:
            run.update(
                _find_run(client, base, workflow, target.branch, dispatched_at, headers, deadline)
            )
        _follow(client, f"{base}/runs/{run['id']}", headers, deadline, run)
    except FollowError as error:
        return _outcome(False, ref, run, str(error))
    conclusion = run.get("conclusion")
    return _outcome(
        conclusion == "success",
        ref,
        run,
        f"{target.workflow} run {run['id']} on {target.branch} for {ref} concluded {conclusion}",
    )


def _outcome(ok: bool, ref: str, run: dict[str, Any], detail: str) -> TargetOutcome:
    run_id = run.get("id")
    return TargetOutcome(
        ok=ok,
        ref=ref,
        external_id=None if run_id is None else str(run_id),
        external_url=run.get("html_url"),
        detail=detail,
    )


def _dispatch(
    client: httpx.Client,
    base: str,
    workflow: str,
    target: DeployTarget,
    ref: str,
    headers: dict[str, str],
    deadline: Deadline,
    run: dict[str, Any],
) -> float:
    """Return the server's time of the dispatch; fill `run` with its id when GitHub gives it."""
    url = f"{base}/workflows/{workflow}/dispatches"
    payload: dict[str, Any] = {
        "ref": target.branch,
        "inputs": {target.ref_input: ref} if target.ref_input else {},
        "return_run_details": True,
    }
    response = send(client, "POST", url, deadline, service=SERVICE, json=payload, headers=headers)
    if response.status_code in (400, 422) and "return_run_details" in api_message(response):
        # A server from before the parameter refuses it: ask again the old way.
        del payload["return_run_details"]
        response = send(
            client, "POST", url, deadline, service=SERVICE, json=payload, headers=headers
        )
    if response.status_code == 204:
        return server_time(response)
    if response.status_code == 200:
        details = json_object(response, SERVICE)
        if isinstance(details.get("workflow_run_id"), int):
            run.update(id=details["workflow_run_id"], html_url=details.get("html_url"))
            return server_time(response)
        raise FollowError(f"GitHub's dispatch answer has no workflow_run_id: {response.text!r}")
    raise FollowError(
        f"GitHub refused the dispatch of {target.workflow} on {target.branch} "
        f"({response.status_code}): {api_message(response)}"
    )


def _find_run(
    client: httpx.Client,
    base: str,
    workflow: str,
    branch: str,
    dispatched_at: float,
    headers: dict[str, str],
    deadline: Deadline,
) -> dict[str, Any]:
    """Return the newest dispatch run of `branch` created since `dispatched_at`, once it shows."""

    def newest(body: dict[str, Any]) -> dict[str, Any] | None:
        ours = [
            run
            for run in body.get("workflow_runs") or []
            if isinstance(run, dict)
            and run.get("event") == "workflow_dispatch"
            and _created(run) >= dispatched_at - _ROUNDING_S
        ]
        return max(ours, key=lambda run: (_created(run), run.get("id", 0))) if ours else None

    return poll(
        client,
        f"{base}/workflows/{workflow}/runs",
        deadline,
        service=SERVICE,
        what="the list of runs",
        until=newest,
        waiting=lambda: f"no workflow_dispatch run of {branch} appeared",
        params={"event": "workflow_dispatch", "branch": branch, "per_page": _RUNS_PER_PAGE},
        headers=headers,
    )


def _created(run: dict[str, Any]) -> float:
    try:
        return datetime.fromisoformat(str(run.get("created_at"))).timestamp()
    except ValueError:
        return float("-inf")


def _follow(
    client: httpx.Client,
    url: str,
    headers: dict[str, str],
    deadline: Deadline,
    run: dict[str, Any],
) -> None:
    """Refresh `run` until its status is `completed`; FollowError if time runs out first."""

    def completed(body: dict[str, Any]) -> dict[str, Any] | None:
        run.clear()
        run.update(body)
        return run if run.get("status") == "completed" else None

    poll(
        client,
        url,
        deadline,
        service=SERVICE,
        what=f"the run {url.rsplit('/', 1)[-1]}",
        until=completed,
        waiting=lambda: (
            f"run {run.get('id')} ({run.get('html_url')}) was still {run.get('status')}"
        ),
        headers=headers,
    )
