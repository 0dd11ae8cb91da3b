"""The reproduction check of tests an API request just generated, run after the answer is sent."""

from __future__ import annotations

import logging
from collections.abc import Sequence
from typing import Any

from starlette.background import BackgroundTask

from immunity.tasks.generate.reproduce import verify_tests

__all__ = ["reproduction_check"]

log = logging.getLogger(__name__)


def _verify(state: Any, test_ids: list[int]) -> None:
    try:
        verify_tests(state.engine, state.settings, test_ids)
    except Exception:  # the batch is committed; the generation sweep checks these again
        log.exception("reproduction check of tests %s failed", test_ids)


def reproduction_check(state: Any, test_ids: Sequence[int]) -> BackgroundTask | None:
    """Return a background task replaying the tests once, or None when there are none."""
    if not test_ids:
        return None
    return BackgroundTask(_verify, state, list(test_ids))
