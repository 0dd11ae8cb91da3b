"""Error patterns: Laplace confidence, matching, and learning from decided proposals."""

from __future__ import annotations

import re

import pytest
from sqlalchemy import Engine
from sqlmodel import Session, select

from immunity.models.enums import FixStatus, FixStrategy
from immunity.models.fixes import Candidate
from immunity.models.heal_tables import ErrorPattern
from immunity.models.tables import Signature
from immunity.tasks.heal.patterns import (
    confidence_from,
    learn_from,
    list_patterns,
    matching_patterns,
    pattern_info,
    pattern_matches,
)
from immunity.tasks.heal.store import get_proposal
from tests.tasks.heal.test_store import (
    DIFF,
    in_transaction,
    stored_proposal,
    stored_signature,
)

RULE_FIX = Candidate(strategy=FixStrategy.RULE, diff=DIFF, fix_rule="key_default")
AI_FIX = Candidate(
    strategy=FixStrategy.AI,
    diff=DIFF,
    root_cause="The nickname field is optional but read as required.",
    model="gpt-test",
)


@pytest.mark.parametrize(
    ("successes", "failures", "confidence"),
    [(0, 0, 0.5), (1, 0, 0.6667), (2, 0, 0.75), (1, 1, 0.5), (0, 1, 0.3333), (9, 0, 0.9091)],
)
def test_confidence_is_the_success_rate_with_one_of_each_assumed(
    successes: int, failures: int, confidence: float
) -> None:
    assert confidence_from(successes, failures) == confidence


def _pattern(name: str, error_type: str, regex: str = "", confidence: float = 0.5) -> ErrorPattern:
    return ErrorPattern(
        name=name, error_type=error_type, message_regex=regex, confidence=confidence
    )


def test_a_pattern_matches_its_type_and_searches_the_message() -> None:
    everything = _pattern("any KeyError", "KeyError")
    nickname = _pattern("nickname", "KeyError", r"'nick\w+'")
    assert pattern_matches(everything, "KeyError", "'anything'")
    assert not pattern_matches(everything, "builtins.KeyError", "'anything'")
    assert not pattern_matches(everything, "TypeError", "'anything'")
    assert pattern_matches(nickname, "KeyError", "lookup of 'nickname' failed")
    assert not pattern_matches(nickname, "KeyError", "'email'")


def test_a_broken_expression_matches_nothing() -> None:
    broken = _pattern("hand-edited", "KeyError", "(unclosed")
    assert not pattern_matches(broken, "KeyError", "(unclosed")


def test_matching_patterns_are_most_confident_first_above_the_floor(engine: Engine) -> None:
    rows = [
        _pattern("weak", "KeyError", "nick", 0.6),
        _pattern("strong", "KeyError", "", 0.9),
        _pattern("strong too", "KeyError", "name$", 0.9),
        _pattern("other message", "KeyError", "email", 0.95),
        _pattern("other type", "TypeError", "", 0.94),
        _pattern("broken", "KeyError", "[", 0.99),
    ]
    with Session(engine) as session:
        session.add_all(rows)
        session.commit()

    found = matching_patterns(engine, "KeyError", "'nickname'")
    assert [p.name for p in found] == ["strong", "weak"]  # `name$` misses the closing quote
    found = matching_patterns(engine, "KeyError", "nickname")
    assert [p.name for p in found] == ["strong", "strong too", "weak"]  # ties: oldest first
    found = matching_patterns(engine, "KeyError", "nickname", min_confidence=0.7)
    assert [p.name for p in found] == ["strong", "strong too"]
    assert matching_patterns(engine, "ValueError", "nickname") == []
    assert [p.name for p in list_patterns(engine, limit=2)] == ["broken", "other message"]
    [info] = pattern_info(found[:1])
    assert (info.name, info.error_type, info.confidence) == ("strong", "KeyError", 0.9)


def _patterns(engine: Engine) -> list[ErrorPattern]:
    with Session(engine) as session:
        return list(session.exec(select(ErrorPattern).order_by(ErrorPattern.id)).all())


def test_a_verified_rule_fix_creates_its_pattern_then_strengthens_it(engine: Engine) -> None:
    first = stored_proposal(engine, stored_signature(engine), candidate=RULE_FIX)
    learned = learn_from(engine, first.id or 0, success=True)

    assert learned is not None
    [pattern] = _patterns(engine)
    assert pattern.name == "KeyError: key_default"
    assert (pattern.error_type, pattern.message_regex, pattern.fix_rule) == (
        "KeyError",
        "",
        "key_default",
    )
    assert pattern.fix_template is None
    assert (pattern.successes, pattern.failures, pattern.confidence) == (1, 0, 0.6667)
    assert in_transaction(engine, get_proposal, proposal_id=first.id or 0).pattern_id == pattern.id

    # Another signature of the type, fixed by the same rule: the same pattern, stronger.
    other = stored_signature(engine, message="'email'")
    second = stored_proposal(engine, other, candidate=RULE_FIX)
    learn_from(engine, second.id or 0, success=True)
    [pattern] = _patterns(engine)
    assert (pattern.successes, pattern.failures, pattern.confidence) == (2, 0, 0.75)
    assert in_transaction(engine, get_proposal, proposal_id=second.id or 0).pattern_id == pattern.id
    assert pattern_matches(pattern, "KeyError", "'whatever'")  # a rule covers every message


def test_a_failure_weakens_the_pattern(engine: Engine) -> None:
    signature_id = stored_signature(engine)
    first = stored_proposal(engine, signature_id, candidate=RULE_FIX)
    learn_from(engine, first.id or 0, success=True)
    rejected = stored_proposal(engine, signature_id, FixStatus.REJECTED, candidate=RULE_FIX)

    weakened = learn_from(engine, rejected.id or 0, success=False)

    assert weakened is not None
    [pattern] = _patterns(engine)
    assert (pattern.successes, pattern.failures, pattern.confidence) == (1, 1, 0.5)
    assert (
        in_transaction(engine, get_proposal, proposal_id=rejected.id or 0).pattern_id == pattern.id
    )


def test_a_proposal_made_from_a_pattern_updates_that_pattern(engine: Engine) -> None:
    with Session(engine) as session:
        hand_made = ErrorPattern(name="nickname lookups", error_type="KeyError", successes=3)
        session.add(hand_made)
        session.commit()
        pattern_id = hand_made.id
    candidate = RULE_FIX.model_copy(
        update={"strategy": FixStrategy.PATTERN, "pattern_id": pattern_id}
    )
    proposal = stored_proposal(engine, stored_signature(engine), candidate=candidate)

    learn_from(engine, proposal.id or 0, success=False)

    [pattern] = _patterns(engine)
    assert pattern.name == "nickname lookups"
    assert (pattern.successes, pattern.failures, pattern.confidence) == (3, 1, 0.6667)


def test_a_rejection_with_no_pattern_creates_none(engine: Engine) -> None:
    rejected = stored_proposal(
        engine, stored_signature(engine), FixStatus.REJECTED, candidate=RULE_FIX
    )
    assert learn_from(engine, rejected.id or 0, success=False) is None
    assert _patterns(engine) == []
    assert in_transaction(engine, get_proposal, proposal_id=rejected.id or 0).pattern_id is None


@pytest.mark.parametrize("success", [True, False])
def test_a_rollback_teaches_nothing(engine: Engine, success: bool) -> None:
    rollback = Candidate(strategy=FixStrategy.ROLLBACK, diff=DIFF, root_cause="revert abc123")
    proposal = stored_proposal(engine, stored_signature(engine), candidate=rollback)
    assert learn_from(engine, proposal.id or 0, success=success) is None
    assert _patterns(engine) == []


def test_an_unknown_proposal_teaches_nothing(engine: Engine) -> None:
    assert learn_from(engine, 999, success=True) is None
    assert _patterns(engine) == []


def test_an_ai_fix_creates_a_template_pattern_for_its_message(engine: Engine) -> None:
    message = "'NoneType' object has no attribute 'strip' (in catalog.search [q=*])"
    signature_id = stored_signature(engine, error_type="AttributeError", message=message)
    proposal = stored_proposal(engine, signature_id, candidate=AI_FIX)

    learn_from(engine, proposal.id or 0, success=True)

    [pattern] = _patterns(engine)
    with Session(engine) as session:
        signature = session.get(Signature, signature_id)
        assert signature is not None
        fingerprint = signature.fingerprint
    assert pattern.name == f"AttributeError: {fingerprint[:12]}"
    assert pattern.fix_rule is None and pattern.fix_template == DIFF
    assert pattern.description == AI_FIX.root_cause
    assert re.search(pattern.message_regex, message)
    assert pattern_matches(pattern, "AttributeError", message)
    assert not pattern_matches(pattern, "AttributeError", "'NoneType' object has no attribute 'x'")
    assert [p.id for p in matching_patterns(engine, "AttributeError", message)] == [pattern.id]


def test_an_ai_fix_for_a_long_message_still_fits_its_pattern(engine: Engine) -> None:
    # Signature messages are normalised to at most 1,000 characters; prose like this is common.
    message = ("the value is not a valid id. " * 40)[:900]
    signature_id = stored_signature(engine, error_type="ValueError", message=message)
    proposal = stored_proposal(engine, signature_id, candidate=AI_FIX)

    learn_from(engine, proposal.id or 0, success=True)

    [pattern] = _patterns(engine)
    assert len(pattern.message_regex) <= 1024
    assert pattern_matches(pattern, "ValueError", message)
