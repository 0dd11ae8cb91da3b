"""The signature's state machine: one table of which event moves which status where.

Both forms of the rules are read from `TRANSITIONS`, so they exist once: `next_status` for Python
and `status_after`, a SQL `CASE` over the status column, for the statements that move many
signatures at once (the ingest upsert, test generation).

    event          new      ongoing  tested   fixed      regressed  ignored
    occurrence     ongoing  ·        ·        regressed  ·          ·
    test_created   tested   tested   ·        ·          ·          ·
    test_passed    fixed    fixed    fixed    ·          fixed      ·
    test_failed    ·        ·        ·        regressed  ·          ·

(· = stays.) A signature is born `new` from one event, `ongoing` from several (`first_status`).
`ignored` is set by hand and no event moves it out. Whether a test's result is trusted enough to
fire `test_passed` or `test_failed` is the caller's rule (`immunity.tasks.regress.lifecycle`).
"""

from __future__ import annotations

from collections.abc import Mapping
from enum import StrEnum
from types import MappingProxyType
from typing import Any

from sqlalchemy import case

from immunity.models.enums import SignatureStatus

__all__ = ["TRANSITIONS", "SignatureEvent", "first_status", "next_status", "status_after"]

_S = SignatureStatus


class SignatureEvent(StrEnum):
    """What happens to a signature that may move its status."""

    OCCURRENCE = "occurrence"  # one more failure with this fingerprint arrived
    TEST_CREATED = "test_created"  # its regression test was generated
    TEST_PASSED = "test_passed"  # its (trusted) regression test passed
    TEST_FAILED = "test_failed"  # its (trusted) regression test failed


# For each event, the statuses it moves and where to; a status not listed stays as it is.
TRANSITIONS: Mapping[SignatureEvent, Mapping[SignatureStatus, SignatureStatus]] = MappingProxyType(
    {
        SignatureEvent.OCCURRENCE: MappingProxyType({_S.NEW: _S.ONGOING, _S.FIXED: _S.REGRESSED}),
        SignatureEvent.TEST_CREATED: MappingProxyType({_S.NEW: _S.TESTED, _S.ONGOING: _S.TESTED}),
        SignatureEvent.TEST_PASSED: MappingProxyType(
            {before: _S.FIXED for before in (_S.NEW, _S.ONGOING, _S.TESTED, _S.REGRESSED)}
        ),
        SignatureEvent.TEST_FAILED: MappingProxyType({_S.FIXED: _S.REGRESSED}),
    }
)


def next_status(current: str, event: SignatureEvent) -> str:
    """Return the status after `event`: the table's target, or `current` when it does not move."""
    return TRANSITIONS[event].get(current, current)  # type: ignore[call-overload]


def first_status(occurrences: int) -> SignatureStatus:
    """Return the status of a signature created by `occurrences` events at once."""
    if occurrences == 1:
        return _S.NEW
    # Every event after the first is an occurrence; `ongoing` stays `ongoing` under more of them.
    return _S(next_status(_S.NEW, SignatureEvent.OCCURRENCE))


def status_after(event: SignatureEvent, column: Any) -> Any:
    """Return a SQL `CASE` giving the status in `column` after `event` (unmoved statuses stay).

    Build it once per statement that uses it (module level or a cached statement), not per row.
    """
    moves = {before.value: after.value for before, after in TRANSITIONS[event].items()}
    return case(moves, value=column, else_=column)
