"""Deployment targets driven for real: GitHub's and Vercel's APIs stood in for on 127.0.0.1, a
webhook receiver, and the sample service restarted from a git repository at one ref, then another.
"""

from __future__ import annotations

import re
import socket
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from immunity.examples.seeded_bugs import SEEDED_BUGS, seed_repo
from immunity.models.settings import DeployTarget, Settings
from immunity.tasks.deploy.targets import (
    TargetConfigError,
    current_ref,
    stop_local,
    trigger_and_follow,
)
from immunity.tasks.deploy.targets.local import targets_dir
from immunity.tasks.deploy.targets.vercel import vercel_api_url
from immunity.tasks.shared.target import free_port
from tests.processes import gone, refused
from tests.standins._json_server import Answer, JsonStandin, Recorded
from tests.standins.github_server import GitHubStandin
from tests.standins.vercel_server import BUILD_ERROR, VercelStandin

FAST = {"poll_interval_s": 0.05, "timeout_s": 20}
SHA = "3f2a9c1d0b7e6a5f4c3b2a1908f7e6d5c4b3a291"


@pytest.fixture
def settings(tmp_path: Path) -> Settings:
    return Settings(data_dir=tmp_path / "data")


# --- GitHub Actions ---------------------------------------------------------------------------


def _github_target(github: GitHubStandin, **fields: Any) -> DeployTarget:
    values = {
        "kind": "github_actions",
        "api_url": github.base_url,
        "repository": github.repository,
        "workflow": github.workflow,
        "token": github.token,
        **FAST,
        **fields,
    }
    return DeployTarget(**values)


def test_github_dispatches_the_ref_and_follows_the_run_to_success(settings: Settings) -> None:
    with GitHubStandin() as github:
        github.add_run(age_s=3_600, conclusion="failure")  # an earlier run, not ours
        outcome = trigger_and_follow("gh", _github_target(github), SHA, settings)
        run = github.runs[-1]

    assert outcome.ok, outcome.detail
    assert outcome.ref == SHA
    assert outcome.external_id == str(run.id)
    assert outcome.external_url == f"https://github.com/acme/shop/actions/runs/{run.id}"
    assert "concluded success" in outcome.detail
    assert run.inputs == {"ref": SHA} and run.branch == "main"
    assert run.polls == len(github.statuses)  # polled through queued and in_progress
    (dispatch,) = github.dispatches
    assert dispatch.path == "/repos/acme/shop/actions/workflows/deploy.yml/dispatches"
    assert dispatch.body == {"ref": "main", "inputs": {"ref": SHA}, "return_run_details": True}
    assert dispatch.headers["authorization"] == f"Bearer {github.token}"
    assert dispatch.headers["accept"] == "application/vnd.github+json"
    assert dispatch.headers["x-github-api-version"] == "2022-11-28"


def test_a_failed_run_is_a_failed_deployment(settings: Settings) -> None:
    with GitHubStandin(conclusion="failure") as github:
        outcome = trigger_and_follow("gh", _github_target(github), SHA, settings)

    assert not outcome.ok
    assert "concluded failure" in outcome.detail
    assert outcome.external_id == str(github.runs[-1].id)


def test_without_run_details_the_newest_dispatch_run_since_the_dispatch_is_followed(
    settings: Settings,
) -> None:
    # An older server answers 204; the new run shows in the list only on the third look.
    with GitHubStandin(run_details="ignored", list_lag=3) as github:
        old = github.add_run(age_s=600)
        outcome = trigger_and_follow("gh", _github_target(github), SHA, settings)
        lists = [r for r in github.requests if r.path.endswith("/runs")]

    assert outcome.ok, outcome.detail
    assert outcome.external_id == str(github.runs[-1].id) != str(old.id)
    assert len(lists) == 3
    assert lists[0].query == {"event": "workflow_dispatch", "branch": "main", "per_page": "10"}


def test_a_server_refusing_return_run_details_is_asked_again_without(settings: Settings) -> None:
    with GitHubStandin(run_details="refused") as github:
        outcome = trigger_and_follow("gh", _github_target(github), SHA, settings)
        first, second = github.dispatches

    assert outcome.ok, outcome.detail
    assert first.body["return_run_details"] is True
    assert second.body == {"ref": "main", "inputs": {"ref": SHA}}
    assert len(github.runs) == 1


def test_a_bad_token_fails_with_githubs_message_and_no_polling(settings: Settings) -> None:
    with GitHubStandin() as github:
        target = _github_target(github, token="ghp_wrong_token_value")
        outcome = trigger_and_follow("gh", target, SHA, settings)
        received = github.requests

    assert not outcome.ok
    assert "(401): Bad credentials" in outcome.detail
    assert "ghp_wrong_token_value" not in outcome.detail
    assert len(received) == 1 and not github.runs


def test_an_unknown_branch_or_input_fails_with_githubs_message(settings: Settings) -> None:
    with GitHubStandin() as github:
        branch = trigger_and_follow("gh", _github_target(github, branch="release"), SHA, settings)
        inputs = trigger_and_follow("gh", _github_target(github, ref_input="sha"), SHA, settings)

    assert not branch.ok and "No ref found for: release" in branch.detail
    assert not inputs.ok and 'Unexpected inputs provided: ["sha"]' in inputs.detail


def test_rate_limits_are_waited_out_within_the_timeout(settings: Settings) -> None:
    with GitHubStandin() as github:
        github.rate_limit(1, retry_after=1)  # a secondary limit on the dispatch
        github.rate_limit(1, status=429, reset_in=1)  # then a primary one on the same
        started = time.monotonic()
        outcome = trigger_and_follow("gh", _github_target(github), SHA, settings)
        elapsed = time.monotonic() - started

    assert outcome.ok, outcome.detail
    assert elapsed >= 1
    assert len(github.dispatches) == 3  # the two limited ones, then the one that went through
    assert len(github.runs) == 1


def test_a_rate_limit_beyond_the_timeout_fails_at_once(settings: Settings) -> None:
    with GitHubStandin() as github:
        github.rate_limit(1, retry_after=120)
        started = time.monotonic()
        outcome = trigger_and_follow("gh", _github_target(github, timeout_s=5), SHA, settings)

    assert time.monotonic() - started < 2
    assert not outcome.ok
    assert (
        "rate-limiting us for 120 s" in outcome.detail and "secondary rate limit" in outcome.detail
    )


def test_a_run_that_does_not_finish_in_time_fails_with_its_link(settings: Settings) -> None:
    with GitHubStandin(statuses=("queued", "in_progress")) as github:
        target = _github_target(github, timeout_s=0.5)
        outcome = trigger_and_follow("gh", target, SHA, settings)

    assert not outcome.ok
    assert "still in_progress after 0.5 s" in outcome.detail
    assert outcome.external_id == str(github.runs[-1].id)
    assert outcome.external_url is not None and outcome.external_url.endswith(outcome.external_id)


def test_a_github_target_without_token_or_repository_is_refused_before_sending(
    settings: Settings,
) -> None:
    with GitHubStandin() as github:
        with pytest.raises(TargetConfigError, match="needs token"):
            trigger_and_follow("gh", _github_target(github, token=None), SHA, settings)
        with pytest.raises(TargetConfigError, match="owner/name"):
            trigger_and_follow("gh", _github_target(github, repository="shop"), SHA, settings)
        assert github.requests == []


# --- Vercel -----------------------------------------------------------------------------------


def _vercel_target(vercel: VercelStandin, **fields: Any) -> DeployTarget:
    values = {
        "kind": "vercel",
        "hook_url": vercel.hook_url,
        "api_url": vercel.base_url,
        "token": vercel.token,
        "project_id": vercel.project_id,
        "team_id": vercel.team_id,
        **FAST,
        **fields,
    }
    return DeployTarget(**values)


def _hook_job_created(vercel: VercelStandin) -> int:
    hook = vercel.requests[0]
    assert hook.method == "POST" and hook.path.startswith("/v1/integrations/deploy/")
    return vercel.deployments[-1].created - 1


def test_vercel_hook_then_the_deployment_followed_to_ready(settings: Settings) -> None:
    with VercelStandin(team_id="team_acme") as vercel:
        vercel.add_deployment(age_s=900)  # an earlier one, not ours
        outcome = trigger_and_follow("vc", _vercel_target(vercel), SHA, settings)
        ours = vercel.deployments[-1]
        requests = vercel.requests

    assert outcome.ok, outcome.detail
    assert outcome.external_id == ours.uid
    assert outcome.external_url is not None and outcome.external_url.startswith("https://shop-")
    assert "is READY" in outcome.detail
    hook, first_list = requests[0], requests[1]
    assert "authorization" not in hook.headers  # the hook URL is its own secret
    assert first_list.path == "/v6/deployments"
    assert first_list.query == {
        "projectId": vercel.project_id,
        "limit": "5",
        "since": str(_hook_job_created(vercel)),
        "teamId": "team_acme",
    }
    polls = [r for r in requests if r.path == f"/v13/deployments/{ours.uid}"]
    assert len(polls) == len(vercel.states)  # QUEUED, BUILDING, BUILDING, READY
    assert all(r.query == {"teamId": "team_acme"} for r in polls)
    assert all(r.headers["authorization"] == f"Bearer {vercel.token}" for r in requests[1:])


def test_a_vercel_build_error_is_a_failed_deployment_with_its_message(settings: Settings) -> None:
    with VercelStandin(outcome="ERROR") as vercel:
        outcome = trigger_and_follow("vc", _vercel_target(vercel), SHA, settings)

    assert not outcome.ok
    assert outcome.detail.endswith(f"is ERROR: {BUILD_ERROR}")
    assert outcome.external_id == vercel.deployments[-1].uid


def test_a_canceled_vercel_deployment_is_a_failed_one(settings: Settings) -> None:
    with VercelStandin(outcome="CANCELED", building_polls=0) as vercel:
        outcome = trigger_and_follow("vc", _vercel_target(vercel), SHA, settings)

    assert not outcome.ok and "is CANCELED" in outcome.detail


def test_without_a_token_only_the_hook_is_called(settings: Settings) -> None:
    with VercelStandin() as vercel:
        outcome = trigger_and_follow("vc", _vercel_target(vercel, token=None), SHA, settings)
        requests = vercel.requests

    assert outcome.ok
    assert outcome.detail.endswith(
        "the deployment's state was not followed: the target has no token"
    )
    assert outcome.external_id  # the hook's job
    assert len(requests) == 1 and requests[0].method == "POST"


def test_a_bad_vercel_token_fails_with_vercels_message(settings: Settings) -> None:
    with VercelStandin() as vercel:
        target = _vercel_target(vercel, token="vc_wrong")
        outcome = trigger_and_follow("vc", target, SHA, settings)

    assert not outcome.ok
    assert "(403): Not authorized (forbidden)" in outcome.detail
    assert "vc_wrong" not in outcome.detail


def test_a_bad_hook_url_fails_without_following(settings: Settings) -> None:
    with VercelStandin() as vercel:
        target = _vercel_target(vercel, hook_url=vercel.hook_url + "x")
        outcome = trigger_and_follow("vc", target, SHA, settings)
        requests = vercel.requests

    assert not outcome.ok and "refused the deploy hook (404)" in outcome.detail
    assert len(requests) == 1


@pytest.mark.slow  # starts the service, or waits out a rate limit
def test_vercel_rate_limits_are_waited_out(settings: Settings) -> None:
    with VercelStandin() as vercel:
        vercel.rate_limit(2)
        outcome = trigger_and_follow("vc", _vercel_target(vercel), SHA, settings)
        statuses = len(vercel.requests)

    assert outcome.ok, outcome.detail
    assert statuses == 1 + 2 + 1 + len(vercel.states)  # the hook, 429s, the list, the polls


def test_a_vercel_target_means_vercels_api_by_default(settings: Settings) -> None:
    assert vercel_api_url(DeployTarget(kind="vercel", hook_url="h")) == "https://api.vercel.com"
    custom = DeployTarget(kind="vercel", hook_url="h", api_url="http://127.0.0.1:9/")
    assert vercel_api_url(custom) == "http://127.0.0.1:9"
    with pytest.raises(TargetConfigError, match="needs hook_url"):
        trigger_and_follow("vc", DeployTarget(kind="vercel"), SHA, settings)


# --- a generic webhook ------------------------------------------------------------------------


class Receiver(JsonStandin):
    """A webhook that answers every POST with `status`."""

    def __init__(self, status: int) -> None:
        super().__init__()
        self.status = status

    def answer(self, request: Recorded) -> Answer:
        return Answer(self.status, {"received": True} if self.status < 400 else {"message": "down"})


@pytest.mark.parametrize(("status", "ok"), [(202, True), (500, False)])
def test_a_webhook_is_deployed_on_2xx_only(settings: Settings, status: int, ok: bool) -> None:
    with Receiver(status) as receiver:
        target = DeployTarget(
            kind="webhook", url=f"{receiver.base_url}/deploy", environment="staging", **FAST
        )
        outcome = trigger_and_follow("hook", target, SHA, settings, reason="fix #12 approved")
        (request,) = receiver.requests

    assert outcome.ok is ok
    assert outcome.detail.startswith(f"the webhook answered {status}")
    assert request.method == "POST" and request.path == "/deploy"
    assert request.body == {
        "ref": SHA,
        "environment": "staging",
        "target": "hook",
        "reason": "fix #12 approved",
    }
    assert "authorization" not in request.headers


def test_an_unreachable_webhook_fails_with_the_reason(settings: Settings) -> None:
    target = DeployTarget(kind="webhook", url=f"http://127.0.0.1:{free_port()}/", timeout_s=0.3)
    outcome = trigger_and_follow("hook", target, SHA, settings)

    assert not outcome.ok and "could not be reached" in outcome.detail


# --- a local command: the sample service at a git ref ------------------------------------------

BUG = next(bug for bug in SEEDED_BUGS if bug.offline_fixable)


@pytest.fixture
def service_repo(tmp_path: Path) -> tuple[Path, str, str]:
    """(repo, pristine sha, buggy sha): the sample service, then `BUG` committed on top."""
    repo = tmp_path / "shop"
    buggy = seed_repo(repo, BUG)
    pristine = _git(repo, "rev-parse", "HEAD~1")
    return repo, pristine, buggy


@pytest.fixture
def local(
    tmp_path: Path, service_repo: tuple[Path, str, str]
) -> Iterator[tuple[DeployTarget, Settings]]:
    settings = Settings(data_dir=tmp_path / "data", repo_path=service_repo[0])
    target = DeployTarget(
        kind="local_command", port=free_port(), timeout_s=60, poll_interval_s=0.05
    )
    yield target, settings
    stop_local("shop", settings)


def _git(repo: Path, *args: str) -> str:
    done = subprocess.run(["git", *args], cwd=repo, check=True, capture_output=True, text=True)
    return done.stdout.strip()


def _status(url: str) -> int:
    return httpx.get(url, timeout=10).status_code


@pytest.mark.slow  # starts the service, or waits out a rate limit
def test_a_local_target_moves_from_one_ref_to_another_on_its_port(
    local: tuple[DeployTarget, Settings], service_repo: tuple[Path, str, str]
) -> None:
    target, settings = local
    _, pristine, buggy = service_repo

    first = trigger_and_follow("shop", target, pristine, settings)
    assert first.ok, first.detail
    assert first.ref == pristine and current_ref("shop", settings) == pristine
    assert first.external_url == f"http://127.0.0.1:{target.port}"
    assert _status(first.external_url + BUG.url_path) == 200

    second = trigger_and_follow("shop", target, "main", settings)
    assert second.ok, second.detail
    assert second.ref == buggy and current_ref("shop", settings) == buggy
    assert f"replacing {pristine[:12]}" in second.detail
    assert gone(int(first.external_id or 0))
    assert second.external_url == first.external_url
    assert _status(second.external_url + BUG.url_path) == 500  # the seeded bug, live

    # Rolling back reuses the pristine worktree as it was left.
    marker = targets_dir(settings) / "shop" / pristine[:12] / "left-here"
    marker.touch()
    third = trigger_and_follow("shop", target, pristine, settings)
    assert third.ok, third.detail
    assert marker.exists()
    assert gone(int(second.external_id or 0))
    assert _status(f"{third.external_url}{BUG.url_path}") == 200


@pytest.mark.slow  # starts the service, or waits out a rate limit
def test_a_ref_that_does_not_start_leaves_nothing_running_and_says_why(
    local: tuple[DeployTarget, Settings], service_repo: tuple[Path, str, str]
) -> None:
    target, settings = local
    repo, pristine, buggy = service_repo
    app = repo / "examples" / "sample_service" / "app.py"
    app.write_text(app.read_text() + "\ndef broken(:\n")
    _git(repo, "commit", "-qam", "Break the app")
    broken = _git(repo, "rev-parse", "HEAD")

    assert trigger_and_follow("shop", target, pristine, settings).ok
    running = trigger_and_follow("shop", target, buggy, settings)
    assert running.ok, running.detail
    outcome = trigger_and_follow("shop", target, broken, settings)

    assert not outcome.ok
    assert outcome.ref == broken
    assert "did not come up" in outcome.detail and "SyntaxError" in outcome.detail
    assert f"the copy at {buggy[:12]} was stopped first" in outcome.detail
    assert gone(int(running.external_id or 0))
    assert refused(f"http://127.0.0.1:{target.port}/api/health")
    assert current_ref("shop", settings) is None
    # Only the worktrees of the last two refs are kept.
    kept = sorted(path.name for path in (targets_dir(settings) / "shop").iterdir())
    assert kept == sorted([buggy[:12], broken[:12]])
    assert pristine[:12] not in _git(repo, "worktree", "list")


@pytest.mark.slow  # starts the service, or waits out a rate limit
def test_stop_local_leaves_nothing_running(
    local: tuple[DeployTarget, Settings], service_repo: tuple[Path, str, str]
) -> None:
    target, settings = local
    outcome = trigger_and_follow("shop", target, service_repo[1], settings)
    assert outcome.ok, outcome.detail

    stop_local("shop", settings)
    stop_local("shop", settings)  # idempotent

    assert gone(int(outcome.external_id or 0))
    assert refused(f"http://127.0.0.1:{target.port}/api/health")
    assert current_ref("shop", settings) is None
    assert not (targets_dir(settings) / "shop.pid").exists()


@pytest.mark.slow  # starts the service, or waits out a rate limit
def test_a_taken_port_or_unknown_ref_fails_without_starting_anything(
    local: tuple[DeployTarget, Settings],
) -> None:
    target, settings = local
    unknown = trigger_and_follow("shop", target, "no-such-branch", settings)
    assert not unknown.ok and "cannot check out 'no-such-branch'" in unknown.detail

    with socket.socket() as squatter:
        squatter.bind(("127.0.0.1", target.port or 0))
        squatter.listen()
        taken = trigger_and_follow("shop", target, "main", settings)
    assert not taken.ok
    assert f"port {target.port} is taken by another process" in taken.detail
    assert not (targets_dir(settings) / "shop.pid").exists()


def test_a_local_target_needs_a_port_a_repository_and_a_known_placeholder(
    tmp_path: Path,
) -> None:
    with_repo = Settings(data_dir=tmp_path, repo_path=tmp_path)
    with pytest.raises(TargetConfigError, match="needs port"):
        trigger_and_follow("shop", DeployTarget(kind="local_command"), "main", with_repo)
    with pytest.raises(TargetConfigError, match="needs repo"):
        target = DeployTarget(kind="local_command", port=8000)
        trigger_and_follow("shop", target, "main", Settings(data_dir=tmp_path))
    with pytest.raises(TargetConfigError, match=re.escape("only {python} and {port}")):
        target = DeployTarget(kind="local_command", port=8000, command="{python} {host}")
        trigger_and_follow("shop", target, "main", with_repo)
    with pytest.raises(TargetConfigError, match="plain file name"):
        trigger_and_follow("../x", DeployTarget(kind="local_command", port=8000), "main", with_repo)
    assert not (tmp_path / "targets").exists()
