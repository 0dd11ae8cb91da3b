"""Vercel's deploy hook and deployments API on 127.0.0.1, with a scripted build outcome.

    with VercelStandin(token="vc_test", outcome="ERROR") as vercel:
        target = DeployTarget(kind="vercel", hook_url=vercel.hook_url, api_url=vercel.base_url,
                              token="vc_test", project_id=vercel.project_id, ...)

`POST /v1/integrations/deploy/<project>/<key>` (no auth) answers 201 with a job
(`{"job": {"id", "state": "PENDING", "createdAt"}}`) and creates a deployment a moment later.
`GET /v6/deployments?projectId&limit&since[&teamId]` lists the project's deployments newest first
(a new one only from the `list_lag`-th list on); `GET /v13/deployments/<id>` returns one, and each
such GET moves its `readyState` one step along `states` (QUEUED, BUILDING, ..., then `outcome`).
A wrong token gets Vercel's 403 (`{"error": {"code": "forbidden", "message": "Not authorized",
"invalidToken": true}}`); `rate_limit(n)` answers the next `n` API requests with a 429 and
`x-ratelimit-reset`.
"""

from __future__ import annotations

import re
import secrets
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

from tests.standins._json_server import Answer, JsonStandin, Recorded

__all__ = ["Deployment", "VercelStandin"]

_HOOK = re.compile(r"/v1/integrations/deploy/([^/]+)/([^/]+)")
_ONE = re.compile(r"/v13/deployments/([^/]+)")
BUILD_ERROR = 'Command "npm run build" exited with 1'


@dataclass
class Deployment:
    """A deployment and how far along its build is."""

    uid: str
    created: int  # milliseconds since the epoch, as Vercel gives times
    states: Sequence[str]
    source: str = "deploy-hook"
    polls: int = field(default=0)
    visible_after: int = field(default=0)

    @property
    def state(self) -> str:
        return self.states[min(self.polls, len(self.states) - 1)]


class VercelStandin(JsonStandin):
    """One project's deploy hook and deployments."""

    name = "vercel"

    def __init__(
        self,
        *,
        token: str = "vc_standin_token",
        project_id: str = "prj_standin0shop",
        team_id: str = "",
        outcome: str = "READY",
        building_polls: int = 2,
        list_lag: int = 1,
    ) -> None:
        super().__init__()
        self.token = token
        self.project_id = project_id
        self.team_id = team_id
        self.hook_key = "k" + secrets.token_hex(5)
        self.states = ("QUEUED", *(["BUILDING"] * building_polls), outcome)
        self.list_lag = list_lag
        self.deployments: list[Deployment] = []
        self._lists = 0
        self._limited = 0

    # --- scripting ------------------------------------------------------------------------------

    @property
    def hook_url(self) -> str:
        return f"{self.base_url}/v1/integrations/deploy/{self.project_id}/{self.hook_key}"

    def add_deployment(self, *, age_s: float, state: str = "READY") -> Deployment:
        """Add an earlier deployment (created `age_s` ago) in a final state."""
        with self.lock:
            deployment = Deployment(
                uid=_uid(), created=_now_ms() - int(age_s * 1000), states=(state,), source="git"
            )
            self.deployments.append(deployment)
            return deployment

    def rate_limit(self, count: int) -> None:
        """Answer the next `count` API requests (not the hook) with Vercel's 429."""
        with self.lock:
            self._limited += count

    # --- serving --------------------------------------------------------------------------------

    def answer(self, request: Recorded) -> Answer:
        with self.lock:
            if request.method == "POST" and (match := _HOOK.fullmatch(request.path)):
                return self._hook(*match.groups())
            if self._limited:
                self._limited -= 1
                reset = int(time.time()) + 1
                return Answer(
                    429,
                    _error(
                        "rate_limited",
                        "Rate limit exceeded",
                        limit={"remaining": 0, "reset": reset},
                    ),
                    {
                        "x-ratelimit-limit": "100",
                        "x-ratelimit-remaining": "0",
                        "x-ratelimit-reset": str(reset),
                    },
                )
            refusal = self._refusal(request)
            if refusal is not None:
                return refusal
            if request.method == "GET" and request.path == "/v6/deployments":
                return self._list(request)
            if request.method == "GET" and (match := _ONE.fullmatch(request.path)):
                return self._get(match.group(1))
            return Answer(404, _error("not_found", "The requested path was not found."))

    def _refusal(self, request: Recorded) -> Answer | None:
        authorization = request.headers.get("authorization")
        if authorization is None:
            message = "The request is missing an authentication token"
            return Answer(403, _error("forbidden", message, missingToken=True))
        if authorization != f"Bearer {self.token}":
            return Answer(403, _error("forbidden", "Not authorized", invalidToken=True))
        if request.query.get("teamId", "") != self.team_id:
            return Answer(403, _error("forbidden", "Not authorized"))
        return None

    def _hook(self, project_id: str, key: str) -> Answer:
        if (project_id, key) != (self.project_id, self.hook_key):
            return Answer(404, _error("not_found", "Deploy hook not found"))
        created_at = _now_ms()
        self.deployments.append(
            Deployment(
                uid=_uid(),
                created=created_at + 1,  # the build is queued just after the job
                states=self.states,
                visible_after=self._lists + self.list_lag,
            )
        )
        job = {"id": secrets.token_urlsafe(15)[:20], "state": "PENDING", "createdAt": created_at}
        return Answer(201, {"job": job})

    def _list(self, request: Recorded) -> Answer:
        self._lists += 1
        query = request.query
        if query.get("projectId") not in (None, self.project_id):
            return Answer(404, _error("not_found", "Project not found"))
        since = int(query.get("since", 0))
        limit = int(query.get("limit", 20))
        listed = sorted(
            (
                deployment
                for deployment in self.deployments
                if deployment.visible_after <= self._lists and deployment.created >= since
            ),
            key=lambda deployment: deployment.created,
            reverse=True,
        )[:limit]
        pagination = {
            "count": len(listed),
            "next": listed[-1].created if listed else None,
            "prev": listed[0].created if listed else None,
        }
        return Answer(
            200, {"deployments": [self._listed(d) for d in listed], "pagination": pagination}
        )

    def _get(self, uid: str) -> Answer:
        deployment = next((d for d in self.deployments if d.uid == uid), None)
        if deployment is None:
            return Answer(404, _error("not_found", "The deployment was not found."))
        body = self._full(deployment)
        deployment.polls += 1
        return Answer(200, body)

    def _common(self, deployment: Deployment) -> dict[str, Any]:
        state = deployment.state
        fields: dict[str, Any] = {
            "name": "shop",
            "url": f"shop-{deployment.uid[4:13].lower()}-acme.vercel.app",
            "createdAt": deployment.created,
            "buildingAt": deployment.created + 500,
            "source": deployment.source,
            "target": "production",
            "projectId": self.project_id,
            "type": "LAMBDAS",
            "creator": {"uid": "usr_standin", "username": "acme"},
            "inspectorUrl": f"https://vercel.com/acme/shop/{deployment.uid[4:]}",
            "meta": {"deployHookRef": "main"} if deployment.source == "deploy-hook" else {},
            "readyState": state,
        }
        if state == "READY":
            fields["ready"] = deployment.created + 30_000
        return fields

    def _listed(self, deployment: Deployment) -> dict[str, Any]:
        return {
            "uid": deployment.uid,
            "created": deployment.created,
            "state": deployment.state,
            **self._common(deployment),
        }

    def _full(self, deployment: Deployment) -> dict[str, Any]:
        body = {"id": deployment.uid, "status": deployment.state, **self._common(deployment)}
        body |= {"regions": ["iad1"], "alias": [], "aliasAssigned": body["readyState"] == "READY"}
        if deployment.state == "ERROR":
            body |= {"errorCode": "BUILD_FAILED", "errorMessage": BUILD_ERROR}
        return body


def _error(code: str, message: str, **extra: Any) -> dict[str, Any]:
    return {"error": {"code": code, "message": message, **extra}}


def _now_ms() -> int:
    return int(time.time() * 1000)


def _uid() -> str:
    return "dpl_" + secrets.token_hex(12)
