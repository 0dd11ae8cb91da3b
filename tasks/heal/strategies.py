"""The fix chain's links: each turns a signature's context into candidate diffs, or none.

1. pattern: a learned ErrorPattern confident enough → its rule re-applied, or its diff re-used;
2. rule: an offline rule for a common Python error, read off the failing line (no model);
3. ai / ai_with_context: an OpenAI-compatible model, without and with the source around frames;
4. rollback: revert the commit that last changed the failing line (the suspect commit).
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING

from immunity.models.enums import FixStrategy, RiskLevel
from immunity.models.fixes import Candidate, FixContext, SourceLocation
from immunity.models.heal_tables import ErrorPattern
from immunity.tasks.heal.git_history import last_change, last_file_change, reverse_diff, subject
from immunity.tasks.heal.git_repo import git_output
from immunity.tasks.heal.llm import ask_for_fix
from immunity.tasks.heal.prompt import build_messages
from immunity.tasks.heal.rules import apply_rule, propose_rule_fix

if TYPE_CHECKING:
    from openai import OpenAI

__all__ = [
    "CHAIN",
    "RULE_CONFIDENCE",
    "ai_candidate",
    "deployment_rollback_candidate",
    "pattern_candidates",
    "rollback_candidate",
    "rule_candidate",
]

CHAIN = (
    FixStrategy.PATTERN,
    FixStrategy.RULE,
    FixStrategy.AI,
    FixStrategy.AI_WITH_CONTEXT,
    FixStrategy.ROLLBACK,
)
# A rule that has not been confirmed by a human yet: as sure as a coin with a thumb on it.
RULE_CONFIDENCE = 0.6
ROLLBACK_CONFIDENCE = 0.5


def pattern_candidates(
    patterns: Sequence[ErrorPattern],
    error_type: str,
    message: str,
    locations: Sequence[SourceLocation],
) -> list[Candidate]:
    """Return one candidate per matching pattern that yields a diff here, best first."""
    found: list[Candidate] = []
    for pattern in patterns:
        if pattern.fix_rule:
            fix = apply_rule(pattern.fix_rule, error_type, message, locations)
            if fix is None:
                continue
            diff, root_cause, explanation = fix.diff, fix.root_cause, fix.explanation
        elif pattern.fix_template:
            diff, root_cause = pattern.fix_template, pattern.description
            explanation = f"The fix that worked for this error before (pattern '{pattern.name}')."
        else:
            continue
        found.append(
            Candidate(
                strategy=FixStrategy.PATTERN,
                diff=diff,
                root_cause=root_cause,
                explanation=f"{explanation} Known pattern '{pattern.name}': "
                f"{pattern.successes} success(es), {pattern.failures} failure(s).",
                confidence=pattern.confidence,
                fix_rule=pattern.fix_rule,
                pattern_id=pattern.id,
            )
        )
    return found


def rule_candidate(
    error_type: str, message: str, locations: Sequence[SourceLocation]
) -> Candidate | None:
    """Return the offline rules' fix for the failing line, if one applies."""
    fix = propose_rule_fix(error_type, message, locations)
    if fix is None:
        return None
    return Candidate(
        strategy=FixStrategy.RULE,
        diff=fix.diff,
        root_cause=fix.root_cause,
        explanation=fix.explanation,
        confidence=RULE_CONFIDENCE,
        fix_rule=fix.rule,
    )


def ai_candidate(
    client: OpenAI, model: str, context: FixContext, *, with_source: bool
) -> Candidate | None:
    """Return the model's proposal (None when it offers no diff); LlmError propagates."""
    answer = ask_for_fix(
        client, model=model, messages=build_messages(context, with_source=with_source)
    )
    if not answer.diff.strip():
        return None
    return Candidate(
        strategy=FixStrategy.AI_WITH_CONTEXT if with_source else FixStrategy.AI,
        diff=answer.diff,
        root_cause=answer.root_cause,
        explanation=answer.explanation,
        confidence=answer.confidence,
        claimed_risk=answer.risk_level,
        claimed_reasons=answer.risk_reasons,
        model=model,
    )


def _suspect(
    repo: Path, base_ref: str, locations: Sequence[SourceLocation]
) -> tuple[str, str, str] | None:
    """Return (commit, its reverse diff, why) for the newest change suspected of the error.

    The commit that last changed a failing line (innermost first) is the first suspect; when that
    is the repository's first commit, the newest commit that changed a failing frame's file.
    """
    for location in locations:
        commit = last_change(repo, location.path, location.lineno, base_ref)
        diff = reverse_diff(repo, commit) if commit else None
        if commit and diff:
            return commit, diff, f"{location.path}:{location.lineno} was last changed by"
    for location in locations:
        commit = last_file_change(repo, location.path, base_ref)
        diff = reverse_diff(repo, commit) if commit else None
        if commit and diff:
            return commit, diff, f"{location.path} (a frame of the error) was last changed by"
    return None


def deployment_rollback_candidate(
    repo: Path, deployment_id: int, ref: str, previous_ref: str
) -> Candidate | None:
    """Return the change that takes the code back from a suspect deployment to the one before."""
    diff = git_output(repo, "diff", "--no-color", "--no-ext-diff", ref, previous_ref)
    if not diff:
        return None
    return Candidate(
        strategy=FixStrategy.ROLLBACK,
        diff=diff,
        root_cause=f"The signature was first seen soon after deployment #{deployment_id}"
        f" ({ref[:12]}), which is suspected of introducing it.",
        explanation=f"Roll the code back from {ref[:12]} to {previous_ref[:12]} (deployed before).",
        confidence=ROLLBACK_CONFIDENCE,
        claimed_risk=RiskLevel.MEDIUM,
        claimed_reasons=["a rollback also undoes whatever else that deployment changed"],
    )


def rollback_candidate(
    repo: Path, base_ref: str, locations: Sequence[SourceLocation]
) -> Candidate | None:
    """Return the revert of the commit suspected of introducing the error, if one is known."""
    found = _suspect(repo, base_ref, locations)
    if found is None:
        return None
    commit, diff, why = found
    title = subject(repo, commit)
    return Candidate(
        strategy=FixStrategy.ROLLBACK,
        diff=diff,
        root_cause=f"{why} {commit[:12]} ({title!r}); the error is suspected to come from it.",
        explanation=f"Revert {commit[:12]} ({title!r}): the code as it was before it.",
        confidence=ROLLBACK_CONFIDENCE,
        claimed_risk=RiskLevel.MEDIUM,
        claimed_reasons=["a revert also undoes whatever else that commit changed"],
    )
