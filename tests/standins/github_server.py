"""GitHub's REST API for workflow_dispatch on 127.0.0.1: dispatch, list runs, get a run.

    with GitHubStandin(token="ghs_test", conclusion="failure") as github:
        target = DeployTarget(kind="github_actions", api_url=github.base_url,
                              repository=github.repository, workflow=github.workflow, ...)
        ...
        assert github.dispatches[0].body == {"ref": "main", "inputs": {"ref": sha}, ...}

A dispatch creates a run of the workflow on the branch; each GET of the run moves it one step
along `statuses` (queued, in_progress, ..., completed) and, once completed, it has `conclusion`.
Listing shows a new run only from the `list_lag`-th list request on, as GitHub's does a moment
after the dispatch. The dispatch answers 200 with the run's id when asked (`return_run_details`,
as github.com does since 2026-02), else 204; older GitHub Enterprise Servers either ignore the
key (`run_details="ignored"`: 204 always) or refuse it (`"refused"`: 422, not a permitted key).

Errors have GitHub's shape (`{"message", "documentation_url", "status"}`): 401 "Bad credentials"
for a wrong token, 404 for an unknown repository, workflow or run, 422 for an unknown branch or
undeclared inputs. `rate_limit(n, ...)` answers the next `n`
requests with a primary (exhausted `x-ratelimit-remaining`) or secondary (`retry-after`) limit.
"""

from __future__ import annotations

import re
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any, Literal

from tests.standins._json_server import Answer, JsonStandin, Recorded

__all__ = ["GitHubStandin", "Run"]

DOCS = "https://docs.github.com/rest"
_RUNS = re.compile(r"/repos/([^/]+/[^/]+)/actions/workflows/([^/]+)/runs")
_DISPATCH = re.compile(r"/repos/([^/]+/[^/]+)/actions/workflows/([^/]+)/dispatches")
_RUN = re.compile(r"/repos/([^/]+/[^/]+)/actions/runs/(\d+)")


@dataclass
class Run:
    """A workflow run and how far along it is."""

    id: int
    number: int
    branch: str
    created_at: datetime
    statuses: Sequence[str]
    conclusion: str
    inputs: dict[str, Any]
    event: str = "workflow_dispatch"
    polls: int = field(default=0)
    visible_after: int = field(default=0)  # the list request from which it shows

    @property
    def status(self) -> str:
        return self.statuses[min(self.polls, len(self.statuses) - 1)]


class GitHubStandin(JsonStandin):
    """The Actions endpoints of one repository and one workflow, with a scripted outcome."""

    name = "github"

    def __init__(
        self,
        *,
        token: str = "ghs_standin_token",
        repository: str = "acme/shop",
        workflow: str = "deploy.yml",
        workflow_id: int = 161335,
        branches: Sequence[str] = ("main",),
        inputs: Sequence[str] = ("ref",),
        statuses: Sequence[str] = ("queued", "in_progress", "in_progress", "completed"),
        conclusion: str = "success",
        list_lag: int = 1,
        run_details: Literal["given", "ignored", "refused"] = "given",
    ) -> None:
        super().__init__()
        self.token = token
        self.repository = repository
        self.workflow = workflow
        self.workflow_id = workflow_id
        self.branches = set(branches)
        self.inputs = set(inputs)
        self.statuses = tuple(statuses)
        self.conclusion = conclusion
        self.list_lag = list_lag
        self.run_details = run_details
        self.runs: list[Run] = []
        self._lists = 0
        self._limited: list[Answer] = []

    # --- scripting ------------------------------------------------------------------------------

    def add_run(self, *, age_s: float, conclusion: str = "success", branch: str = "main") -> Run:
        """Add an earlier, completed dispatch run (created `age_s` ago)."""
        with self.lock:
            run = self._new_run(
                branch, {}, conclusion, datetime.now(UTC) - timedelta(seconds=age_s)
            )
            run.polls = len(run.statuses)
            run.visible_after = 0  # listed from the start
            return run

    def rate_limit(
        self, count: int, *, status: int = 403, retry_after: int | None = None, reset_in: int = 1
    ) -> None:
        """Answer the next `count` requests with a rate limit: secondary when `retry_after`."""
        if retry_after is not None:
            message = "You have exceeded a secondary rate limit. Please wait a few minutes."
            headers = {"retry-after": str(retry_after)}
        else:
            message = "API rate limit exceeded for installation ID 1."
            headers = {
                "x-ratelimit-remaining": "0",
                "x-ratelimit-reset": str(int(time.time()) + reset_in),
            }
        answer = self._error(
            status, message, "/using-the-rest-api/rate-limits-for-the-rest-api", headers
        )
        with self.lock:
            self._limited.extend([answer] * count)

    # --- what it received -----------------------------------------------------------------------

    @property
    def dispatches(self) -> list[Recorded]:
        """The dispatch requests received, in order."""
        return [request for request in self.requests if request.path.endswith("/dispatches")]

    # --- serving --------------------------------------------------------------------------------

    def extra_headers(self, request: Recorded) -> Mapping[str, str]:
        return {
            "x-github-api-version-selected": request.headers.get("x-github-api-version", ""),
            "x-github-request-id": f"STANDIN:{len(self.requests):06d}",
            "x-ratelimit-limit": "5000",
            "x-ratelimit-remaining": "4999",
            "x-ratelimit-used": "1",
            "x-ratelimit-resource": "core",
        }

    def answer(self, request: Recorded) -> Answer:
        with self.lock:
            if self._limited:
                return self._limited.pop(0)
            authorization = request.headers.get("authorization", "")
            if authorization not in (f"Bearer {self.token}", f"token {self.token}"):
                return self._error(401, "Bad credentials", "")
            if request.method == "POST" and (match := _DISPATCH.fullmatch(request.path)):
                return self._dispatch(request, *match.groups())
            if request.method == "GET" and (match := _RUNS.fullmatch(request.path)):
                return self._list(request, *match.groups())
            if request.method == "GET" and (match := _RUN.fullmatch(request.path)):
                return self._get(*match.groups())
            return self._error(404, "Not Found", "")

    def _ours(self, repository: str, workflow: str) -> bool:
        return repository == self.repository and workflow in (
            self.workflow,
            str(self.workflow_id),
        )

    def _dispatch(self, request: Recorded, repository: str, workflow: str) -> Answer:
        docs = "/actions/workflows#create-a-workflow-dispatch-event"
        if not self._ours(repository, workflow):
            return self._error(404, "Not Found", docs)
        body = request.body if isinstance(request.body, dict) else {}
        branch, inputs = body.get("ref"), body.get("inputs") or {}
        if self.run_details == "refused" and "return_run_details" in body:
            message = 'Invalid request.\n\n"return_run_details" is not a permitted key.'
            return self._error(422, message, docs)
        if not isinstance(branch, str):
            return self._error(422, 'Invalid request.\n\n"ref" wasn\'t supplied.', docs)
        if branch.removeprefix("refs/heads/") not in self.branches:
            return self._error(422, f"No ref found for: {branch}", docs)
        unexpected = sorted(set(inputs) - self.inputs)
        if unexpected:
            names = ", ".join(f'"{name}"' for name in unexpected)
            return self._error(422, f"Unexpected inputs provided: [{names}]", docs)
        run = self._new_run(branch.removeprefix("refs/heads/"), inputs, self.conclusion)
        if self.run_details == "given" and body.get("return_run_details") is True:
            return Answer(
                200,
                {
                    "workflow_run_id": run.id,
                    "run_url": self._run_json(run)["url"],
                    "html_url": self._run_json(run)["html_url"],
                },
            )
        return Answer(204)

    def _list(self, request: Recorded, repository: str, workflow: str) -> Answer:
        if not self._ours(repository, workflow):
            return self._error(
                404, "Not Found", "/actions/workflow-runs#list-workflow-runs-for-a-workflow"
            )
        self._lists += 1
        query = request.query
        runs = [
            run
            for run in self.runs
            if run.visible_after <= self._lists
            and query.get("branch", run.branch) == run.branch
            and query.get("event", run.event) == run.event
        ]
        runs.sort(key=lambda run: run.id, reverse=True)  # newest first, as GitHub lists them
        per_page = int(query.get("per_page", 30))
        return Answer(
            200,
            {
                "total_count": len(runs),
                "workflow_runs": [self._run_json(run) for run in runs[:per_page]],
            },
        )

    def _get(self, repository: str, run_id: str) -> Answer:
        run = next((run for run in self.runs if run.id == int(run_id)), None)
        if repository != self.repository or run is None:
            return self._error(404, "Not Found", "/actions/workflow-runs#get-a-workflow-run")
        body = self._run_json(run)
        run.polls += 1
        return Answer(200, body)

    def _new_run(
        self,
        branch: str,
        inputs: dict[str, Any],
        conclusion: str,
        created_at: datetime | None = None,
    ) -> Run:
        number = len(self.runs) + 1
        run = Run(
            id=9_000_000_000 + number,
            number=number,
            branch=branch,
            created_at=(created_at or datetime.now(UTC)).replace(microsecond=0),
            statuses=self.statuses,
            conclusion=conclusion,
            inputs=dict(inputs),
            visible_after=self._lists + self.list_lag,
        )
        self.runs.append(run)
        return run

    def _run_json(self, run: Run) -> dict[str, Any]:
        api = f"{self.base_url}/repos/{self.repository}"
        owner = self.repository.split("/")[0]
        stamp = run.created_at.strftime("%Y-%m-%dT%H:%M:%SZ")
        completed = run.status == "completed"
        actor = {"login": "immunity-bot", "id": 4242, "type": "Bot"}
        return {
            "id": run.id,
            "name": "Deploy",
            "node_id": f"WFR_standin{run.id}",
            "head_branch": run.branch,
            "head_sha": "0" * 40,
            "path": f".github/workflows/{self.workflow}",
            "display_title": "Deploy",
            "run_number": run.number,
            "event": run.event,
            "status": run.status,
            "conclusion": run.conclusion if completed else None,
            "workflow_id": self.workflow_id,
            "check_suite_id": run.id + 1,
            "url": f"{api}/actions/runs/{run.id}",
            "html_url": f"https://github.com/{self.repository}/actions/runs/{run.id}",
            "pull_requests": [],
            "created_at": stamp,
            "updated_at": stamp,
            "actor": actor,
            "triggering_actor": actor,
            "run_attempt": 1,
            "run_started_at": stamp,
            "jobs_url": f"{api}/actions/runs/{run.id}/jobs",
            "logs_url": f"{api}/actions/runs/{run.id}/logs",
            "cancel_url": f"{api}/actions/runs/{run.id}/cancel",
            "rerun_url": f"{api}/actions/runs/{run.id}/rerun",
            "workflow_url": f"{api}/actions/workflows/{self.workflow_id}",
            "repository": {"full_name": self.repository, "owner": {"login": owner}},
        }

    @staticmethod
    def _error(
        status: int, message: str, docs: str, headers: Mapping[str, str] | None = None
    ) -> Answer:
        body = {"message": message, "documentation_url": DOCS + docs, "status": str(status)}
        return Answer(status, body, headers or {})
