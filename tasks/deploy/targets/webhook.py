"""A generic webhook: one JSON POST naming the ref; a 2xx answer means deployed."""

from __future__ import annotations

import httpx

from immunity.models.deploy_targets import TargetOutcome
from immunity.models.settings import DeployTarget
from immunity.tasks.deploy.targets._common import Deadline, FollowError, api_message, require, send

__all__ = ["check_webhook", "deploy_webhook"]


def check_webhook(name: str, target: DeployTarget) -> None:
    """Raise TargetConfigError unless the target has a URL."""
    require(name, target, "url")


def deploy_webhook(
    name: str, target: DeployTarget, ref: str, *, reason: str, client: httpx.Client
) -> TargetOutcome:
    """Return ok when the webhook answers 2xx to `{"ref", "environment", "target", "reason"}`.

    With a token, it goes as `Authorization: Bearer`; the POST is sent once (a receiver need
    not be idempotent), so a 5xx is a failed deployment, not a retry.
    """
    check_webhook(name, target)
    payload = {"ref": ref, "environment": target.environment, "target": name, "reason": reason}
    headers = {}
    if target.token is not None:
        headers["Authorization"] = f"Bearer {target.token.get_secret_value()}"
    deadline = Deadline(target.timeout_s, target.poll_interval_s)
    try:
        response = send(
            client,
            "POST",
            target.url,
            deadline,
            service="the webhook",
            json=payload,
            headers=headers,
        )
    except FollowError as error:
        return TargetOutcome(ok=False, ref=ref, detail=str(error))
    if response.is_success:
        detail = f"the webhook answered {response.status_code}"
    else:
        detail = f"the webhook answered {response.status_code}: {api_message(response)}"
    return TargetOutcome(ok=response.is_success, ref=ref, detail=detail)
