"""The service's exceptions and the HTTP status each one turns into."""

from __future__ import annotations

from typing import Any

__all__ = [
    "DatabaseError",
    "DependencyValidationError",
    "RateLimitError",
    "ServiceError",
    "status_for_exception",
]


class ServiceError(Exception):
    """A failure of the service itself; `status_code` is what the client gets."""

    status_code = 500

    def __init__(self, message: str, *, context: dict[str, Any] | None = None) -> None:
        super().__init__(message)
        self.context: dict[str, Any] = dict(context or {})


class DependencyValidationError(ServiceError):
    """A generated project needs a package that is not in the allow-list."""


class RateLimitError(ServiceError):
    """The upstream AI model refused the call: too many requests."""

    status_code = 429


class DatabaseError(ServiceError):
    """The database could not answer a query."""


def status_for_exception(exc: BaseException) -> int:
    """Return the HTTP status an unhandled exception becomes: its own, 504 on timeouts, else 500."""
    status = getattr(exc, "status_code", None)
    if isinstance(status, int) and 400 <= status <= 599:
        return status
    if isinstance(exc, TimeoutError):
        return 504
    return 500
