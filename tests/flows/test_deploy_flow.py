"""The deploy loop end to end on the sample service with the local-command target.

Production is a copy of the sample service started from a git worktree by the target, reporting
its failures and successes to a real immunity API, with live traffic running throughout. An
approved fix goes through the gate, is deployed, watched and promoted; a bad fix (it breaks the
product listing) is watched, seen raising the failure rate, rolled back and alerted on; a failing
critical test makes the gate refuse.
"""

from __future__ import annotations

import json
import subprocess
import threading
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import httpx
import pytest
from fastapi.testclient import TestClient
from sqlmodel import Session, select

from immunity.api.app import create_app
from immunity.examples.heal_drill import trigger
from immunity.examples.sample_service import start_server
from immunity.examples.seeded_bugs import SeededBug, seed_repo
from immunity.flows.deploy import deploy
from immunity.flows.regress import run_regression_suite
from immunity.models.db import get_engine
from immunity.models.deploy_tables import Deployment
from immunity.models.enums import DeploymentStatus, FixStatus
from immunity.models.heal_tables import FixProposal
from immunity.models.schemas import utcnow
from immunity.models.settings import get_settings
from immunity.models.specs import TestDefinition
from immunity.models.tables import RegressionTest, Signature
from immunity.tasks.deploy.targets.local import current_ref, stop_local
from immunity.tasks.heal.git_repo import head
from immunity.tasks.regress.manual_tests import save_definitions
from immunity.tasks.shared.target import free_port
from tests.flows.heal_support import (
    API_TOKENS,
    AUTH,
    TOKEN,
    HealRun,
    awaiting_proposal,
    first_bug,
    wait_for,
)
from tests.tasks.test_health_alerts import Receiver

pytestmark = [
    pytest.mark.usefixtures("prefect_harness"),
    pytest.mark.parametrize("db_url", ["sqlite"], indirect=True),
]

SMOKE = [
    {
        "name": "smoke.health",
        "type": "smoke",
        "environment": "production",
        "request": {"method": "GET", "path": "/api/health"},
        "expect": {"status": 200},
    },
    {
        "name": "smoke.products",
        "type": "smoke",
        "environment": "production",
        "request": {"method": "GET", "path": "/api/shop/products"},
        "expect": {"status": 200},
    },
]


@dataclass
class Production:
    repo: Path
    bug: SeededBug
    base_url: str
    receiver: Receiver


class Traffic:
    """Users of production: the bug's request, the product listing and health, every 50 ms."""

    def __init__(self, base_url: str, bug: SeededBug) -> None:
        self.base_url, self.bug = base_url, bug
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()

    def _run(self) -> None:
        with httpx.Client(base_url=self.base_url, timeout=5) as client:
            while not self._stop.wait(0.05):
                try:
                    trigger(self.base_url, self.bug)
                    client.get("/api/shop/products")
                    client.get("/api/health")
                except httpx.HTTPError:
                    pass  # a restart in progress

    def stop(self) -> None:
        self._stop.set()
        self._thread.join(10)


@pytest.fixture
def production(store: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Production]:
    bug = first_bug(offline_fixable=True)
    repo = tmp_path / "repo"
    seed_repo(repo, bug)
    port = free_port()
    base_url = f"http://127.0.0.1:{port}"
    with Receiver() as receiver:
        monkeypatch.setenv("IMMUNITY_API_TOKENS", API_TOKENS)
        monkeypatch.setenv("IMMUNITY_DATA_DIR", str(tmp_path / "data"))
        get_settings.cache_clear()
        api = start_server(create_app(get_settings()))
        command = (
            "{python} -m examples.sample_service --port {port} --environment production"
            f" --report-url {api.base_url} --token {TOKEN} --flush-interval 0.2"
        )
        target = {"kind": "local_command", "environment": "production", "port": port}
        settings = {
            "REPO_PATH": str(repo),
            "SOURCE_ROOTS": json.dumps(["examples/sample_service"]),
            "APPROVAL_POLL_S": "1",
            "ENVIRONMENTS": json.dumps({"production": {"base_url": base_url}}),
            "DEPLOY_TARGETS": json.dumps({"local": {**target, "command": command}}),
            "DEPLOY_TARGET": "local",
            "DEPLOY_WATCH_S": "6",
            "DEPLOY_WATCH_INTERVAL_S": "1.5",
            "HEALTH_PROBES": json.dumps([{"name": "api", "url": f"{base_url}/api/health"}]),
            "ALERT_WEBHOOK_URL": receiver.url,
            "REGRESSION_RERUNS": "0",
        }
        for name, value in settings.items():
            monkeypatch.setenv(f"IMMUNITY_{name}", value)
        get_settings.cache_clear()
        try:
            yield Production(repo, bug, base_url, receiver)
        finally:
            stop_local("local", get_settings())
            api.stop()
            get_settings.cache_clear()


def _deployments() -> list[Deployment]:
    with Session(get_engine()) as session:
        return list(session.exec(select(Deployment).order_by(Deployment.id)).all())


def _bad_fix(production: Production, good: FixProposal) -> FixProposal:
    """An approved fix that also breaks the product listing, committed on its own branch."""
    repo, branch = production.repo, "immunity/fix-bad"
    subprocess.run(["git", "-C", str(repo), "branch", branch, good.commit], check=True)
    worktree = repo.parent / "bad"
    subprocess.run(
        ["git", "-C", str(repo), "worktree", "add", "-q", str(worktree), branch], check=True
    )
    routes = worktree / "examples/sample_service/shop_routes.py"
    text = routes.read_text()
    marker = "async def list_products("
    start = text.index(marker)
    body = text.index('    """', start)
    text = text[:body] + '    raise RuntimeError("listing rewritten")\n' + text[body:]
    routes.write_text(text)
    subprocess.run(
        ["git", "-C", str(worktree), "commit", "-qam", "Fix, and 'simplify' the listing"],
        check=True,
    )
    commit = head(worktree)
    subprocess.run(["git", "-C", str(repo), "worktree", "remove", str(worktree)], check=True)
    with Session(get_engine()) as session:
        bad = FixProposal(
            signature_id=good.signature_id,
            test_id=good.test_id,
            strategy="ai",
            diff="(see the commit)",
            status=FixStatus.APPLIED,
            reviewer="eve",
            decided_at=utcnow(),
            branch=branch,
            commit=commit,
        )
        session.add(bad)
        session.commit()
        session.refresh(bad)
    return bad


def test_a_good_fix_is_promoted_a_bad_one_rolled_back_and_a_failing_gate_refuses(
    production: Production,
) -> None:
    settings = get_settings()
    # Production starts on the bugged commit (the first deployment of this target).
    first = deploy(ref="HEAD", watch=False, min_readiness=0, reason="initial")
    assert first.status == DeploymentStatus.SUCCEEDED
    save_definitions(get_engine(), [TestDefinition.model_validate(d) for d in SMOKE])
    traffic = Traffic(production.base_url, production.bug)
    try:
        with Session(get_engine()) as session:
            wait_for(
                lambda: session.exec(
                    select(RegressionTest).where(RegressionTest.type == "regression")
                ).first(),
                60,
                "the generated regression test",
            )
            signature = session.exec(select(Signature)).first()
        assert signature is not None and signature.id is not None
        run_regression_suite(environment="production")

        # The heal loop: approve through the API; the verified fix is deployed and promoted.
        heal = HealRun(signature.id)
        proposal = wait_for(awaiting_proposal, what="a fix awaiting approval")
        api = TestClient(create_app(settings))
        decision = {"approved": True, "reviewer": "ann", "notes": "ship it"}
        assert (
            api.post(
                f"/api/v1/fixes/{proposal.id}/decision", json=decision, headers=AUTH
            ).status_code
            == 202
        )
        healed = heal.result()
        assert healed.status == FixStatus.VERIFIED, healed
        good = _deployments()[-1]
        assert (good.fix_id, good.status, good.triggered_by) == (proposal.id, "succeeded", "ann")
        assert good.gate["passed"] and good.gate["excused"]  # the fix's own test was failing
        assert all(r["healthy"] for r in good.watch["reports"])
        assert current_ref("local", settings) == good.ref
        assert trigger(production.base_url, production.bug) == 200

        # A bad fix: the watch sees the listing fail and the failure rate rise, and rolls back.
        with Session(get_engine()) as session:
            fixed = session.get(FixProposal, proposal.id)
        assert fixed is not None
        bad = _bad_fix(production, fixed)
        outcome = deploy(fix_id=bad.id, triggered_by="eve")
        assert outcome.status == DeploymentStatus.ROLLED_BACK, outcome.detail
        last = outcome.watch[-1]
        assert "smoke.products" in " ".join(last.reasons)
        # Real traffic saw it too: the listing's 500s raised the failure rate past the allowance.
        assert any("failure rate rose" in reason for reason in last.reasons), last
        assert last.rate_after > last.rate_before + settings.deploy_max_rate_increase
        rolled = _deployments()
        assert rolled[-1].rollback_of == outcome.deployment_id
        assert rolled[-1].status == DeploymentStatus.SUCCEEDED and rolled[-1].ref == good.ref
        assert current_ref("local", settings) == good.ref
        assert httpx.get(f"{production.base_url}/api/shop/products").status_code == 200
        with Session(get_engine()) as session:
            reverted = session.get(FixProposal, bad.id)
        assert reverted is not None and reverted.status == FixStatus.ROLLED_BACK
        assert any(body.get("kind") == "rolled_back" for body in production.receiver.bodies)
    finally:
        traffic.stop()

    # The gate: a critical test failing refuses the deployment; nothing is triggered.
    with Session(get_engine()) as session:
        smoke = session.exec(
            select(RegressionTest).where(RegressionTest.name == "smoke.health")
        ).one()
        smoke.tags = ["critical"]
        smoke.spec = {"method": "GET", "path": "/api/no-such-thing"}
        session.add(smoke)
        session.commit()
    run_regression_suite(environment="production")
    before = current_ref("local", settings)
    refused = deploy(ref="HEAD~1", reason="try the pristine copy")
    assert refused.status == DeploymentStatus.REFUSED
    assert "smoke.health" in " ".join(refused.gate.reasons if refused.gate else [])
    assert current_ref("local", settings) == before
