"""The one exception tree of immunity: catch `ImmunityError` for anything immunity raises on purpose.

    ImmunityError
    ├── NotFoundError          a signature, test, proposal, deployment or experiment that is not there
    ├── InvalidInputError      input that cannot be used as given (a bad definition, event, setting)
    ├── ConflictError          a request that contradicts the current state (a decided proposal)
    ├── RefusedError           something immunity will not do (a deploy below the gate)
    └── UnavailableError       a dependency that is away (the store, the LLM, git, the target)

Each branch also derives from the builtin a caller would expect (`LookupError`, `ValueError`,
`RuntimeError`), so existing `except ValueError` code keeps working. The HTTP API maps these
branches to status codes in one place (`immunity.api.errors`).
"""

from __future__ import annotations

__all__ = [
    "ConflictError",
    "ImmunityError",
    "InvalidInputError",
    "NotFoundError",
    "RefusedError",
    "UnavailableError",
]


class ImmunityError(Exception):
    """The root of every error immunity raises on purpose."""


class NotFoundError(ImmunityError, LookupError):
    """What was asked for is not in the store."""


class InvalidInputError(ImmunityError, ValueError):
    """Input that cannot be used as given; the message names what is wrong."""


class ConflictError(ImmunityError, RuntimeError):
    """The request contradicts the current state (for example a proposal already decided)."""


class RefusedError(ImmunityError, RuntimeError):
    """Immunity will not do this (a deploy below the readiness gate, an unsafe replay)."""


class UnavailableError(ImmunityError, RuntimeError):
    """A dependency is away: the store, the LLM endpoint, git, or the target service."""
