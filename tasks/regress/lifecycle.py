"""Pure rules of what a test result changes: confidence, counts, quarantine, signature status.

- Confidence (seed): pass +5, fail −10, clamped to 0–100. `error` (the target could not be asked)
  and `skipped` (refused) say nothing about the bug and move nothing; `flaky` moves nothing either
  but counts towards quarantine.
- Signature: a pass is the `test_passed` event, a fail `test_failed`, moved by the one table in
  `immunity.models.signature_states` (a pass marks the signature `fixed`, a fail turns a `fixed`
  one `regressed`). Other results fire no event. Quarantined tests, and generated tests that have
  not reproduced their failure, are not trusted to move a signature either way.
- Quarantine: a test flaky in at least `share` of its last `window` runs (at least half a window
  of them) is quarantined; it is released when the share falls below again.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from immunity.models.enums import ExecutionStatus, SignatureStatus
from immunity.models.signature_states import SignatureEvent, next_status
from immunity.tasks.shared.queries import confidence_band

__all__ = [
    "Counts",
    "band_dropped",
    "next_confidence",
    "next_counts",
    "next_signature_status",
    "quarantine_decision",
]

_EVENT_OF_RESULT = {
    ExecutionStatus.PASSED: SignatureEvent.TEST_PASSED,
    ExecutionStatus.FAILED: SignatureEvent.TEST_FAILED,
}


def next_confidence(confidence: int, status: ExecutionStatus, *, up: int, down: int) -> int:
    """Return the confidence after one result, clamped to 0–100."""
    if status == ExecutionStatus.PASSED:
        confidence += up
    elif status == ExecutionStatus.FAILED:
        confidence -= down
    return max(0, min(100, confidence))


@dataclass(frozen=True)
class Counts:
    """A test's run, pass, fail and flaky counts."""

    run: int
    passed: int
    failed: int
    flaky: int


def next_counts(counts: Counts, status: ExecutionStatus) -> Counts:
    """Return the counts after one result; a refused run is not a run."""
    if status == ExecutionStatus.SKIPPED:
        return counts
    return Counts(
        run=counts.run + 1,
        passed=counts.passed + (status == ExecutionStatus.PASSED),
        failed=counts.failed + (status == ExecutionStatus.FAILED),
        flaky=counts.flaky + (status == ExecutionStatus.FLAKY),
    )


def band_dropped(before: int, after: int) -> bool:
    """Return True when the confidence fell into a lower band."""
    return after < before and confidence_band(after) != confidence_band(before)


def next_signature_status(
    current: str, status: ExecutionStatus, *, trusted: bool = True
) -> str | None:
    """Return the signature's new status after its test's result, or None for no change."""
    event = _EVENT_OF_RESULT.get(status)
    if not trusted or event is None:
        return None
    after = next_status(current, event)
    return None if after == current else SignatureStatus(after).value


def quarantine_decision(
    recent: Sequence[str], *, quarantined: bool, window: int, share: float
) -> bool | None:
    """Return True to quarantine, False to release, None to leave as is.

    `recent` holds the statuses of the test's latest runs, newest first (skipped ones excluded).
    """
    runs = list(recent[:window])
    if len(runs) < max(2, window // 2):
        return None
    flaky = sum(1 for status in runs if status == ExecutionStatus.FLAKY) / len(runs)
    if flaky >= share and not quarantined:
        return True
    if flaky < share and quarantined:
        return False
    return None
