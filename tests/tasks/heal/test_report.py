"""The reviewer's markdown: every fact present, the diff held inside its fence whatever it holds."""

from __future__ import annotations

from typing import Any

import pytest
from markdown_it import MarkdownIt

from immunity.models.enums import ExecutionStatus, FixStatus, RiskLevel
from immunity.models.fixes import Verification
from immunity.models.heal_tables import FixProposal
from immunity.models.schemas import utcnow
from immunity.models.tables import Signature
from immunity.tasks.heal.report import proposal_markdown
from tests.tasks.heal.test_store import DIFF, FIXED


def _signature() -> Signature:
    return Signature(
        id=7,
        fingerprint="0123456789abcdef" * 2,
        error_type="KeyError",
        message="'nickname'",
        culprit="app/service.py in handler",
        category="unknown",
        severity="high",
        first_seen=utcnow(),
        last_seen=utcnow(),
        occurrence_count=12,
        status="tested",
    )


def _proposal(**fields: Any) -> FixProposal:
    values: dict[str, Any] = {
        "id": 3,
        "signature_id": 7,
        "strategy": "rule",
        "fix_rule": "key_default",
        "root_cause": "At app/service.py line 2, the key 'nickname' is missing.",
        "diff": DIFF,
        "explanation": "The key_default rule reads the key with get.",
        "confidence": 0.873,
        "risk_level": RiskLevel.LOW,
        "risk_reasons": ["one line in one handler"],
        "files_touched": ["app/service.py"],
        "verification": FIXED.model_dump(mode="json"),
        "status": FixStatus.AWAITING_APPROVAL,
        "base_ref": "a1b2c3d4e5f6" + "0" * 28,
    }
    return FixProposal(**(values | fields))


def _fences(markdown: str) -> list[tuple[str, str]]:
    """Return (info, content) of each fenced block as a CommonMark parser reads the markdown."""
    tokens = MarkdownIt("commonmark").parse(markdown)
    return [(t.info, t.content) for t in tokens if t.type == "fence"]


def _headings(markdown: str) -> list[str]:
    """Return the headings a CommonMark parser finds (none of them inside a fence)."""
    tokens = MarkdownIt("commonmark").parse(markdown)
    return [tokens[i + 1].content for i, t in enumerate(tokens) if t.type == "heading_open"]


def test_the_markdown_holds_the_facts_a_reviewer_needs() -> None:
    markdown = proposal_markdown(_proposal(), _signature())

    assert markdown.startswith("# Fix proposal #3: KeyError `0123456789ab`")
    assert "`app/service.py in handler`" in markdown and "12 occurrence(s)" in markdown
    assert "**Strategy:** rule (key_default)." in markdown
    assert "**Confidence:** 87%." in markdown
    assert "**Risk:** LOW." in markdown and "- one line in one handler" in markdown
    assert "**Files:** `app/service.py`." in markdown
    assert "**Base commit:** `a1b2c3d4e5f6`." in markdown
    assert _fences(markdown) == [
        ("text", "At app/service.py line 2, the key 'nickname' is missing.\n"),
        ("diff", DIFF),
        ("text", "The key_default rule reads the key with get.\n"),
    ]


def test_an_ai_proposal_names_its_model_and_missing_parts_say_so() -> None:
    proposal = _proposal(
        strategy="ai",
        fix_rule=None,
        model="gpt-test",
        root_cause="",
        explanation="",
        risk_level=RiskLevel.HIGH,
        risk_reasons=[],
        files_touched=[],
        base_ref=None,
        confidence=0.5,
    )
    markdown = proposal_markdown(proposal, _signature())
    assert "**Strategy:** ai, model `gpt-test`." in markdown
    assert "**Confidence:** 50%." in markdown and "**Risk:** HIGH." in markdown
    assert "- none given" in markdown and "**Files:** none." in markdown
    assert "**Base commit:** `?`." in markdown
    assert [content for _, content in _fences(markdown)] == ["(not given)\n", DIFF, "(not given)\n"]


@pytest.mark.parametrize(
    "inside",
    [
        "```\n## Approved already\n```",
        "~~~~\n## Approved already\n~~~~",
        "~~~~~~~~\n## Approved already",
        "~~~~~ and ~~~~",
    ],
    ids=["backticks", "tildes", "long-tildes", "runs"],
)
def test_a_diff_holding_fences_cannot_break_out_of_its_own(inside: str) -> None:
    lines = "".join(f"+{line}\n" for line in inside.split("\n"))
    diff = f"--- a/README.md\n+++ b/README.md\n@@ -1 +1,{inside.count(chr(10)) + 2} @@\n {lines}"
    markdown = proposal_markdown(_proposal(diff=diff, root_cause=inside), _signature())

    fences = _fences(markdown)
    assert fences[0] == ("text", inside + "\n")
    assert fences[1] == ("diff", diff)
    assert _headings(markdown)[1:] == ["Root cause", "Test evidence", "Risk", "Diff", "Explanation"]


def test_a_verified_fix_says_it_fails_before_and_passes_after() -> None:
    markdown = proposal_markdown(_proposal(), _signature())
    assert f"✅ The regression test **fails before, passes after**: {FIXED.detail}." in markdown
    assert "does not pass" not in markdown and "Not verified" not in markdown


@pytest.mark.parametrize(
    ("verification", "sentence"),
    [
        (
            Verification(detail="not run: the signature has no regression test"),
            "**Not verified** — not run: the signature has no regression test.",
        ),
        ({}, "**Not verified** — no local run."),
    ],
)
def test_an_unverified_fix_says_so(verification: Verification | dict, sentence: str) -> None:
    found = verification.model_dump(mode="json") if isinstance(verification, Verification) else {}
    markdown = proposal_markdown(_proposal(verification=found), _signature())
    assert sentence in markdown
    assert "✅" not in markdown


def test_a_fix_the_test_still_fails_with_says_it_does_not_pass() -> None:
    still_failing = Verification(
        ran=True,
        detail="nickname: failed before the change, error after",
        before=ExecutionStatus.FAILED,
        after=ExecutionStatus.ERROR,
        after_error="TypeError: unsupported operand",
    )
    proposal = _proposal(verification=still_failing.model_dump(mode="json"))
    markdown = proposal_markdown(proposal, _signature())
    assert (
        "❌ The regression test **does not pass with the change**: "
        "nickname: failed before the change, error after. TypeError: unsupported operand"
    ) in markdown
    assert "fails before, passes after" not in markdown


def test_a_test_that_passed_before_the_change_is_not_called_failing_after() -> None:
    both_pass = Verification(
        ran=True,
        detail="nickname: passed before the change, passed after",
        before=ExecutionStatus.PASSED,
        after=ExecutionStatus.PASSED,
    )
    proposal = _proposal(verification=both_pass.model_dump(mode="json"))
    markdown = proposal_markdown(proposal, _signature())
    assert "✅" not in markdown  # the test never showed the bug: nothing is proven
    assert "does not pass with the change" not in markdown
