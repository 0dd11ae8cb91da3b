"""`immunity heal`, `immunity fixes …` and `immunity patterns`: proposals and their decisions."""

from __future__ import annotations

from typing import TYPE_CHECKING, Annotated

import typer
from rich.console import Console
from rich.markup import escape
from rich.table import Table

if TYPE_CHECKING:
    from immunity.models.heal_tables import ErrorPattern, FixProposal

__all__ = ["register"]

console = Console()
errors = Console(stderr=True, soft_wrap=True)  # paths and commands stay whole
fixes_app = typer.Typer(no_args_is_help=True, help="AI and rule-based fix proposals.")

ProposalId = Annotated[int, typer.Argument(help="The fix proposal's id (`immunity fixes list`).")]
Reviewer = Annotated[str, typer.Option("--reviewer", help="Your name, recorded with the decision.")]
Notes = Annotated[str, typer.Option("--notes", help="Why; kept with the decision.")]
_RISK_STYLE = {"low": "green", "medium": "yellow", "high": "red"}


def proposals_table(proposals: list[FixProposal], title: str) -> Table:
    """Return proposals as a table: id, signature, strategy, confidence, risk, evidence, status."""
    table = Table(title=title, title_justify="left")
    for column in ("id", "signature", "strategy", "confidence", "risk", "test", "status", "by"):
        table.add_column(column, justify="right" if column in ("id", "confidence") else "left")
    for p in proposals:
        found = p.verification or {}
        evidence = (
            f"{found.get('before')} → {found.get('after')}" if found.get("ran") else "not run"
        )
        style = _RISK_STYLE.get(p.risk_level, "")
        table.add_row(
            str(p.id),
            str(p.signature_id),
            p.strategy + (f" ({p.fix_rule})" if p.fix_rule else ""),
            f"{p.confidence:.0%}",
            f"[{style}]{p.risk_level}[/]",
            evidence,
            p.status,
            escape(p.reviewer or ""),
        )
    return table


def patterns_table(patterns: list[ErrorPattern]) -> Table:
    """Return the learned error patterns with their record."""
    table = Table(title="Error patterns", title_justify="left")
    for column in ("id", "name", "fix", "confidence", "successes", "failures"):
        table.add_column(
            column, justify="right" if column != "name" and column != "fix" else "left"
        )
    for p in patterns:
        fix = p.fix_rule or ("diff template" if p.fix_template else "—")
        table.add_row(
            str(p.id), escape(p.name), fix, f"{p.confidence:.0%}", str(p.successes), str(p.failures)
        )
    return table


def heal(
    signature_id: Annotated[
        int, typer.Argument(help="The signature to fix (`immunity signatures`).")
    ],
    wait: Annotated[
        bool, typer.Option(help="Wait for the decision (needs a Prefect server to resume from).")
    ] = False,
) -> None:
    """Propose a fix for a signature and put it up for approval."""
    from immunity.flows.heal import propose_fix
    from immunity.tasks.heal.context import SignatureNotFoundError

    try:
        outcome = propose_fix(signature_id, wait_for_approval=wait)
    except SignatureNotFoundError as error:
        errors.print(f"[red]{error}[/]")
        raise typer.Exit(code=1) from None
    if outcome.proposal_id is None:
        errors.print(
            f"No valid fix for signature {signature_id} ({outcome.refused} candidate(s) refused;"
            " `immunity fixes list` shows them)."
        )
        raise typer.Exit(code=1)
    console.print(
        f"Fix proposal #{outcome.proposal_id} ({outcome.strategy}): {outcome.status}."
        + ("" if wait else " Decide with `immunity fixes approve|reject`.")
    )


def pending() -> None:
    """List the proposals awaiting a decision."""
    from immunity.models.db import session_scope
    from immunity.models.enums import FixStatus
    from immunity.tasks.heal.store import list_proposals

    with session_scope() as session:
        found = list_proposals(session=session, statuses=[FixStatus.AWAITING_APPROVAL])
    console.print(proposals_table(found, "Awaiting approval"))


def list_fixes(
    status: Annotated[str | None, typer.Option(help="Only proposals in this status.")] = None,
    limit: Annotated[int, typer.Option(help="How many to show.")] = 50,
) -> None:
    """List the newest fix proposals."""
    from immunity.models.db import session_scope
    from immunity.tasks.heal.store import list_proposals

    with session_scope() as session:
        found = list_proposals(session=session, statuses=[status] if status else [], limit=limit)
    console.print(proposals_table(found, "Fix proposals"))


def show(proposal_id: ProposalId) -> None:
    """Show one proposal: what the reviewer sees, and its history."""
    from immunity.models.db import session_scope
    from immunity.models.tables import Signature
    from immunity.tasks.heal.report import proposal_markdown
    from immunity.tasks.heal.store import ProposalNotFoundError, get_proposal, list_events

    with session_scope() as session:
        try:
            proposal = get_proposal(session=session, proposal_id=proposal_id)
        except ProposalNotFoundError as error:
            errors.print(f"[red]{error}[/]")
            raise typer.Exit(code=1) from None
        signature = session.get(Signature, proposal.signature_id)
        trail = list_events(session=session, proposal_id=proposal_id)
    assert signature is not None
    console.print(proposal_markdown(proposal, signature), markup=False, highlight=False)
    history = Table(title="History", title_justify="left")
    for column in ("at", "status", "by", "note"):
        history.add_column(column)
    for event in trail:
        history.add_row(
            event.at.isoformat(timespec="seconds"), event.status, event.actor, event.note
        )
    console.print(history)


def _decide(proposal_id: int, approved: bool, reviewer: str, notes: str) -> None:
    from pydantic import ValidationError

    from immunity.models.db import get_engine
    from immunity.models.fixes import Approval
    from immunity.tasks.heal.approvals import (
        DecisionConflictError,
        submit_decision,
        wait_for_decision,
    )
    from immunity.tasks.heal.store import ProposalNotFoundError

    engine = get_engine()
    try:
        approval = Approval(approved=approved, reviewer=reviewer, notes=notes)
        submit_decision(engine, proposal_id, approval)
    except ValidationError as error:
        errors.print(f"[red]invalid decision: {error.errors()[0]['msg']}[/]")
        raise typer.Exit(code=2) from None
    except (ProposalNotFoundError, DecisionConflictError) as error:
        errors.print(f"[red]{escape(str(error))}[/]")
        raise typer.Exit(code=1) from None
    proposal = wait_for_decision(engine, proposal_id, timeout_s=30)
    console.print(f"Fix proposal #{proposal_id}: {proposal.status} (by {reviewer}).")


def approve(proposal_id: ProposalId, reviewer: Reviewer, notes: Notes = "") -> None:
    """Approve a proposal: its flow run resumes, applies the diff on a branch and verifies it."""
    _decide(proposal_id, True, reviewer, notes)


def reject(proposal_id: ProposalId, reviewer: Reviewer, notes: Notes = "") -> None:
    """Reject a proposal: its flow run resumes and records the decision."""
    _decide(proposal_id, False, reviewer, notes)


def patterns(limit: Annotated[int, typer.Option(help="How many to show.")] = 100) -> None:
    """List the error patterns learned from decided fixes."""
    from immunity.models.db import get_engine
    from immunity.tasks.heal.patterns import list_patterns

    console.print(patterns_table(list_patterns(get_engine(), limit=limit)))


def register(app: typer.Typer) -> None:
    """Add `heal`, `patterns` and the `fixes` group to the main app."""
    app.command("heal")(heal)
    app.command("patterns")(patterns)
    fixes_app.command("pending")(pending)
    fixes_app.command("list")(list_fixes)
    fixes_app.command("show")(show)
    fixes_app.command("approve")(approve)
    fixes_app.command("reject")(reject)
    app.add_typer(fixes_app, name="fixes")
