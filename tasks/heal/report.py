"""The markdown a reviewer reads before deciding: root cause, diff, confidence, risk, evidence."""

from __future__ import annotations

from immunity.models.heal_tables import FixProposal
from immunity.models.tables import Signature

__all__ = ["proposal_markdown"]

_FENCE = "~~~~"


def _fenced(text: str, language: str = "") -> str:
    # A diff may itself hold ``` fences (markdown files); a tilde fence longer than any in it holds.
    fence = _FENCE
    while fence in text:
        fence += "~"
    return f"{fence}{language}\n{text.rstrip()}\n{fence}"


def _verification(proposal: FixProposal) -> str:
    found = proposal.verification or {}
    if not found.get("ran"):
        return f"**Not verified** — {found.get('detail') or 'no local run'}."
    line = f"{found.get('detail')}"
    if found.get("after") == "passed" and found.get("before") in ("failed", "error"):
        return f"✅ The regression test **fails before, passes after**: {line}."
    if found.get("before") == "passed":
        return f"❌ The regression test **passed without the change too**: {line}."
    error = found.get("after_error") or ""
    return f"❌ The regression test **does not pass with the change**: {line}. {error}".strip()


def proposal_markdown(proposal: FixProposal, signature: Signature) -> str:
    """Return the proposal as markdown for the approval form and the artifact."""
    reasons = "\n".join(f"- {reason}" for reason in proposal.risk_reasons) or "- none given"
    files = ", ".join(f"`{path}`" for path in proposal.files_touched) or "none"
    source = proposal.strategy + (f" ({proposal.fix_rule})" if proposal.fix_rule else "")
    source += f", model `{proposal.model}`" if proposal.model else ""
    return "\n".join(
        [
            f"# Fix proposal #{proposal.id}: {signature.error_type} `{signature.fingerprint[:12]}`",
            "",
            f"**Signature:** {signature.error_type} in `{signature.culprit or '?'}` — "
            f"{signature.occurrence_count} occurrence(s), status {signature.status}.",
            f"**Strategy:** {source}.  **Confidence:** {proposal.confidence:.0%}.  "
            f"**Risk:** {proposal.risk_level.upper()}.",
            f"**Files:** {files}.  **Base commit:** `{(proposal.base_ref or '?')[:12]}`.",
            "",
            "## Root cause",
            _fenced(proposal.root_cause or "(not given)", "text"),
            "",
            "## Test evidence",
            _verification(proposal),
            "",
            "## Risk",
            reasons,
            "",
            "## Diff",
            _fenced(proposal.diff, "diff"),
            "",
            "## Explanation",
            _fenced(proposal.explanation or "(not given)", "text"),
            "",
            "Approve to apply the diff on a new branch and verify it against the regression test;"
            " reject to record the decision. Either way, give your name.",
        ]
    )
