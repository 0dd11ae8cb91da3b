"""immunity: recurring production failures become regression tests, fixes and safe deploys.

The public Python API, in two forms:

- in-process, on a store this process can reach: `ingest_failures`, `ingest_successes`,
  `list_signatures`, `list_tests`, `decide_fix` and the `run_regression_suite` flow, configured
  by `Settings` (or given `settings=` / `engine=`);
- over HTTP, for services and scripts that do not share the store: `Client` and `AsyncClient`.

Everything immunity raises on purpose is an `ImmunityError` (branches `NotFoundError`,
`InvalidInputError`, `ConflictError`, `RefusedError`, `UnavailableError`; a client's error
answers are `ApiResponseError`s that also belong to the matching branch).

`import immunity` is cheap: each name loads its module on first use, so neither Prefect nor the
store is imported until a function that needs them is called.

The repository's top-level folders are this package's subpackages: `flows/` is `immunity.flows`,
`tasks/regress/` is `immunity.tasks.regress`, `models/` is `immunity.models`, and so on.
"""

from __future__ import annotations

from importlib import import_module
from typing import TYPE_CHECKING, Any

__all__ = [
    "ApiClientError",
    "ApiResponseError",
    "AsyncClient",
    "Client",
    "ConflictError",
    "ImmunityError",
    "InvalidInputError",
    "NotFoundError",
    "RefusedError",
    "Settings",
    "UnavailableError",
    "decide_fix",
    "ingest_failures",
    "ingest_successes",
    "list_signatures",
    "list_tests",
    "run_regression_suite",
]

# Which module each public name lives in; it is imported the first time the name is used.
_HOMES = {
    "ApiClientError": "immunity.api.client",
    "ApiResponseError": "immunity.api.client",
    "AsyncClient": "immunity.api.client",
    "Client": "immunity.api.client",
    "ConflictError": "immunity.models.errors",
    "ImmunityError": "immunity.models.errors",
    "InvalidInputError": "immunity.models.errors",
    "NotFoundError": "immunity.models.errors",
    "RefusedError": "immunity.models.errors",
    "Settings": "immunity.models.settings",
    "UnavailableError": "immunity.models.errors",
    "decide_fix": "immunity.api.inprocess",
    "ingest_failures": "immunity.api.inprocess",
    "ingest_successes": "immunity.api.inprocess",
    "list_signatures": "immunity.api.inprocess",
    "list_tests": "immunity.api.inprocess",
    "run_regression_suite": "immunity.flows.regress",
}

if TYPE_CHECKING:
    from immunity.api.client import ApiClientError, ApiResponseError, AsyncClient, Client
    from immunity.api.inprocess import (
        decide_fix,
        ingest_failures,
        ingest_successes,
        list_signatures,
        list_tests,
    )
    from immunity.flows.regress import run_regression_suite
    from immunity.models.errors import (
        ConflictError,
        ImmunityError,
        InvalidInputError,
        NotFoundError,
        RefusedError,
        UnavailableError,
    )
    from immunity.models.settings import Settings


def __getattr__(name: str) -> Any:
    """Return a public name, importing its module on first use."""
    home = _HOMES.get(name)
    if home is None:
        raise AttributeError(f"module 'immunity' has no attribute {name!r}")
    value = getattr(import_module(home), name)
    globals()[name] = value  # the next look-up is a plain attribute
    return value


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(__all__))
