"""Error patterns: which fixes worked for which errors, learned from human decisions.

An approved fix that is verified creates its pattern or strengthens it; a rejected fix, or one
that failed once applied, weakens it. Confidence is the success rate with one success and one
failure assumed up front (Laplace), so a single success does not make a pattern certain.
"""

from __future__ import annotations

import re
from collections.abc import Sequence

from sqlalchemy import Engine
from sqlmodel import Session, col, select

from immunity.models.enums import FixStrategy
from immunity.models.fixes import PatternInfo
from immunity.models.heal_tables import ErrorPattern, FixProposal
from immunity.models.schemas import utcnow
from immunity.models.tables import Signature

_MESSAGE_PREFIX = 200  # re.escape at most doubles it: well inside the 1,024-character column

__all__ = [
    "confidence_from",
    "learn_from",
    "list_patterns",
    "matching_patterns",
    "pattern_info",
    "pattern_matches",
]


def confidence_from(successes: int, failures: int) -> float:
    """Return a pattern's confidence from its record: (successes + 1) / (total + 2)."""
    return round((successes + 1) / (successes + failures + 2), 4)


def pattern_matches(pattern: ErrorPattern, error_type: str, message: str) -> bool:
    """Return whether the pattern covers an error of this type and message."""
    if pattern.error_type != error_type:
        return False
    try:
        return re.search(pattern.message_regex, message) is not None
    except re.error:
        return False  # a hand-edited pattern with a broken expression matches nothing


def matching_patterns(
    engine: Engine, error_type: str, message: str, *, min_confidence: float = 0.0
) -> list[ErrorPattern]:
    """Return the patterns that match, most confident first."""
    query = (
        select(ErrorPattern)
        .where(ErrorPattern.error_type == error_type, ErrorPattern.confidence >= min_confidence)
        .order_by(col(ErrorPattern.confidence).desc(), col(ErrorPattern.id))
    )
    with Session(engine) as session:
        found = session.exec(query).all()
    return [pattern for pattern in found if pattern_matches(pattern, error_type, message)]


def list_patterns(engine: Engine, *, limit: int = 100) -> list[ErrorPattern]:
    """Return the patterns, most confident first."""
    query = select(ErrorPattern).order_by(col(ErrorPattern.confidence).desc()).limit(limit)
    with Session(engine) as session:
        return list(session.exec(query).all())


def pattern_info(patterns: Sequence[ErrorPattern]) -> list[PatternInfo]:
    """Return what the model may see of the patterns."""
    return [
        PatternInfo(
            name=p.name,
            error_type=p.error_type,
            message_regex=p.message_regex,
            description=p.description,
            confidence=p.confidence,
        )
        for p in patterns
    ]


def _identity(proposal: FixProposal, signature: Signature) -> tuple[str, str, str]:
    """Return (name, message_regex, description) of the pattern a proposal belongs to."""
    if proposal.fix_rule:
        # A rule decides for itself whether a line fits, so it covers every message of the type.
        return (
            f"{signature.error_type[:160]}: {proposal.fix_rule}",
            "",
            f"{signature.error_type} fixed by the offline rule '{proposal.fix_rule}'.",
        )
    # A model's diff is specific: it covers the same message, and is re-applied only where it fits.
    # The message's start is enough to tell it apart, and escaped it still fits its column.
    return (
        f"{signature.error_type[:160]}: {signature.fingerprint[:12]}",
        re.escape(signature.message[:_MESSAGE_PREFIX]),
        proposal.root_cause[:2_000],
    )


def learn_from(engine: Engine, proposal_id: int, *, success: bool) -> ErrorPattern | None:
    """Strengthen (success) or weaken the proposal's pattern; a first success creates it."""
    with Session(engine, expire_on_commit=False) as session:
        proposal = session.get(FixProposal, proposal_id)
        if proposal is None or proposal.strategy == FixStrategy.ROLLBACK:
            return None  # a revert teaches nothing about the kind of error
        signature = session.get(Signature, proposal.signature_id)
        if signature is None:
            return None
        name, regex, description = _identity(proposal, signature)
        pattern = session.get(ErrorPattern, proposal.pattern_id) if proposal.pattern_id else None
        pattern = (
            pattern or session.exec(select(ErrorPattern).where(ErrorPattern.name == name)).first()
        )
        if pattern is None:
            if not success:
                return None
            pattern = ErrorPattern(
                name=name,
                error_type=signature.error_type,
                message_regex=regex,
                fix_rule=proposal.fix_rule,
                fix_template=None if proposal.fix_rule else proposal.diff,
                description=description,
            )
        if success:
            pattern.successes += 1
        else:
            pattern.failures += 1
        pattern.confidence = confidence_from(pattern.successes, pattern.failures)
        pattern.updated_at = utcnow()
        session.add(pattern)
        session.flush()
        if proposal.pattern_id is None:
            proposal.pattern_id = pattern.id
            session.add(proposal)
        session.commit()
    return pattern
