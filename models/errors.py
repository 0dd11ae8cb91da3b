"""The one exception tree: catch `ImmunityError` for anything immunity raises on purpose.

    ImmunityError
    ├── NotFoundError          a signature, test, proposal, deployment or experiment not there
    ├── InvalidInputError      input that cannot be used as given (a bad definition, setting)
    │   └── MalformedInputError    input that cannot even be read (not JSON, not the format)
    ├── ConflictError          a request that contradicts the current state (a decided proposal)
    ├── RefusedError           something immunity will not do (a deploy below the gate)
    └── UnavailableError       a dependency that is away (the store, the LLM, git, the target)

Each branch also derives from the builtin a caller would expect (`LookupError`, `ValueError`,
`RuntimeError`), so existing `except ValueError` code keeps working; a leaf that was a
`ValueError` before it joined a `RuntimeError` branch names both. The HTTP API maps these
branches to status codes in one place (`immunity.api.errors`).
"""

from __future__ import annotations

__all__ = [
    "ConflictError",
    "ImmunityError",
    "InvalidInputError",
    "MalformedInputError",
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


class MalformedInputError(InvalidInputError):
    """Input that cannot even be read (bad JSON, bad compression, not Sentry's wire format)."""


class ConflictError(ImmunityError, RuntimeError):
    """The request contradicts the current state (for example a proposal already decided)."""


class RefusedError(ImmunityError, RuntimeError):
    """Immunity will not do this (a deploy below the readiness gate, an unsafe replay)."""


class UnavailableError(ImmunityError, RuntimeError):
    """A dependency is away: the store, the LLM endpoint, git, or the target service."""
