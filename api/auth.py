"""Who may do what: bearer tokens (a principal, its scopes, its project) and Sentry DSN keys."""

from __future__ import annotations

import hashlib
import hmac
import secrets
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from functools import cache
from urllib.parse import parse_qs

from fastapi import Request

from immunity.api.errors import ApiError
from immunity.models.settings import ApiToken
from immunity.models.tables import DEFAULT_PROJECT

__all__ = [
    "ALL_SCOPES",
    "LEGACY_SCOPES",
    "Principal",
    "authenticate",
    "hash_token",
    "new_token",
    "requires",
    "sentry_key",
    "token_matches",
]

HASH_PREFIX = "sha256:"

# What a principal may do: send events, read the store, decide fix proposals, and (admin) all of
# that in every project.
ALL_SCOPES = frozenset({"ingest", "read", "review", "admin"})
# A bare token in settings (written before tokens had scopes): it may send events and read.
LEGACY_SCOPES = frozenset({"ingest", "read"})


@dataclass(frozen=True)
class Principal:
    """Who a request acts as: the name decisions are recorded as, what it may do, its project."""

    name: str
    scopes: frozenset[str] = LEGACY_SCOPES
    project: str = DEFAULT_PROJECT

    def may(self, scope: str) -> bool:
        """True when the principal holds `scope` (admin holds every scope)."""
        return scope in self.scopes or "admin" in self.scopes

    @property
    def visible_project(self) -> str | None:
        """The one project this principal reads, or None when it reads all (admin)."""
        return None if "admin" in self.scopes else self.project


def new_token() -> str:
    """Return a fresh random API token (shown once; only its hash need be kept)."""
    return "imm_" + secrets.token_urlsafe(32)


def hash_token(token: str) -> str:
    """Return the form of a token that settings may hold without holding the secret."""
    return HASH_PREFIX + hashlib.sha256(token.encode()).hexdigest()


def _expected(candidate: str) -> str:
    return candidate if candidate.startswith(HASH_PREFIX) else hash_token(candidate)


def _hash_of(entry: ApiToken | str) -> str:
    return _expected(entry.hash if isinstance(entry, ApiToken) else entry)


def _matching(presented: str, allowed: Iterable[ApiToken | str]) -> ApiToken | str | None:
    hashed = hash_token(presented).encode()
    found = None
    for entry in allowed:
        # Compare every candidate in constant time, so timing tells nothing about tokens.
        if hmac.compare_digest(hashed, _hash_of(entry).encode()) and found is None:
            found = entry
    return found


def token_matches(presented: str, allowed: Iterable[ApiToken | str]) -> bool:
    """True when `presented` equals an allowed token or matches an allowed hash."""
    return _matching(presented, allowed) is not None


def _principal_of(entry: ApiToken | str) -> Principal:
    if isinstance(entry, ApiToken):
        return Principal(entry.name, frozenset(entry.scopes), entry.project)
    # A bare token has no name: a prefix of its hash tells tokens apart without revealing one.
    return Principal(f"token:{_hash_of(entry)[len(HASH_PREFIX) :][:8]}")


def authenticate(request: Request) -> Principal:
    """Return the principal of the request's bearer token; 401 when it has none or a wrong one."""
    scheme, _, presented = request.headers.get("authorization", "").partition(" ")
    presented = presented.strip()
    if scheme.lower() != "bearer" or not presented:
        raise ApiError(
            401,
            "missing bearer token (Authorization: Bearer <token>)",
            {"WWW-Authenticate": "Bearer"},
        )
    entry = _matching(presented, request.app.state.settings.api_tokens)
    if entry is None:
        raise ApiError(401, "invalid token", {"WWW-Authenticate": "Bearer"})
    return _principal_of(entry)


@cache  # one dependency per scope, so FastAPI resolves it once per request
def requires(scope: str) -> Callable[[Request], Principal]:
    """Return a dependency giving the request's principal: 401 without a valid token, 403 when
    the token lacks `scope`."""
    if scope not in ALL_SCOPES:
        raise ValueError(f"unknown scope {scope!r} (one of {', '.join(sorted(ALL_SCOPES))})")

    def principal_with_scope(request: Request) -> Principal:
        principal = authenticate(request)
        if not principal.may(scope):
            held = ", ".join(sorted(principal.scopes)) or "none"
            raise ApiError(
                403,
                f"this token lacks the {scope!r} scope (its scopes: {held}); create one with"
                f" `immunity token create --scope {scope}`",
            )
        return principal

    principal_with_scope.__name__ = f"requires_{scope}"
    return principal_with_scope


def sentry_key(request: Request) -> str | None:
    """Return the DSN key from `X-Sentry-Auth`, `Authorization: Sentry …` or `?sentry_key=`."""
    for header in ("x-sentry-auth", "authorization"):
        value = request.headers.get(header, "")
        if value.lower().startswith("sentry "):
            for part in value[7:].split(","):
                name, _, found = part.strip().partition("=")
                if name.strip() == "sentry_key" and found.strip():
                    return found.strip()
    keys = parse_qs(request.url.query).get("sentry_key")
    return keys[0] if keys else None
