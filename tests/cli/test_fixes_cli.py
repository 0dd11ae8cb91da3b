"""`immunity heal`, `immunity fixes …` and `immunity patterns` on a real seeded bug."""

from __future__ import annotations

from pathlib import Path

import pytest
from typer.testing import CliRunner

from immunity.cli.main import app
from immunity.models.enums import FixStatus
from tests.flows.heal_support import HealRun, awaiting_proposal, drill, first_bug, wait_for

pytestmark = pytest.mark.usefixtures("prefect_harness")


def invoke(*args: str) -> tuple[int, str]:
    result = CliRunner().invoke(app, list(args))
    return result.exit_code, result.output


@pytest.mark.parametrize("db_url", ["sqlite"], indirect=True)
def test_a_reviewer_rejects_from_the_cli_and_the_flow_records_it(
    store: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    seeded = drill(first_bug(offline_fixable=True), tmp_path, monkeypatch)
    run = HealRun(seeded.signature_id)
    proposal = wait_for(awaiting_proposal, what="a proposal awaiting approval")

    code, output = invoke("fixes", "pending")
    assert code == 0 and f"{proposal.id}" in output and "rule" in output
    code, output = invoke("fixes", "show", str(proposal.id))
    assert code == 0
    assert "fails before, passes after" in output and seeded.bug.path in output
    code, output = invoke("fixes", "approve", "999", "--reviewer", "carol")
    assert code == 1 and "fix proposal 999 does not exist" in output
    code, output = invoke("fixes", "reject", str(proposal.id), "--reviewer", "", "--notes", "x")
    assert code == 2 and "invalid decision" in output

    code, output = invoke(
        "fixes", "reject", str(proposal.id), "--reviewer", "carol", "--notes", "not this way"
    )
    assert code == 0, output
    assert f"Fix proposal #{proposal.id}: rejected (by carol)" in output
    assert run.result().status == FixStatus.REJECTED
    code, output = invoke("fixes", "list", "--status", "rejected")
    assert code == 0 and "carol" in output
    code, output = invoke("fixes", "approve", str(proposal.id), "--reviewer", "carol")
    assert code == 1 and "nothing to decide" in output


@pytest.mark.parametrize("db_url", ["sqlite"], indirect=True)
def test_heal_puts_a_proposal_up_and_patterns_lists_what_was_learned(
    store: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    seeded = drill(first_bug(offline_fixable=True), tmp_path, monkeypatch)
    code, output = invoke("heal", "999")
    assert code == 1 and "signature 999 does not exist" in output
    code, output = invoke("heal", str(seeded.signature_id))
    assert code == 0, output
    assert "awaiting_approval" in output and "approve|reject" in output
    code, output = invoke("patterns")
    assert code == 0 and "Error patterns" in output
