"""When a failed database task is worth retrying: the database was away, not the data wrong."""

from __future__ import annotations

from typing import Any

from prefect.cache_policies import NO_CACHE
from sqlalchemy.exc import DBAPIError, OperationalError

__all__ = ["DB_TASK_OPTIONS", "retry_on_database_outage"]


def retry_on_database_outage(task: Any, task_run: Any, state: Any) -> bool:
    """Return True for connection losses and deadlocks; bad data fails at once."""
    error = state.result(raise_on_failure=False)
    if isinstance(error, OperationalError):
        return True
    return isinstance(error, DBAPIError) and bool(error.connection_invalidated)


DB_TASK_OPTIONS: dict[str, Any] = {
    "retries": 3,
    "retry_delay_seconds": [1, 4, 10],
    "retry_condition_fn": retry_on_database_outage,
    # Inputs are large batches: hashing them for a cache key would cost more than the work.
    "cache_policy": NO_CACHE,
}
