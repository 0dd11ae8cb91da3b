"""Who may write: bearer tokens for the native API, DSN keys for the Sentry-compatible one."""

from __future__ import annotations

import hashlib
import hmac
import secrets
from collections.abc import Iterable
from dataclasses import dataclass
from urllib.parse import parse_qs

from fastapi import Request

from immunity.api.errors import ApiError

__all__ = [
    "ALL_SCOPES",
    "Principal",
    "authenticate",
    "hash_token",
    "new_token",
    "require_token",
    "sentry_key",
    "token_matches",
]

HASH_PREFIX = "sha256:"

# What a principal may do: send events, read the store, decide fix proposals.
ALL_SCOPES = frozenset({"ingest", "read", "decide"})


@dataclass(frozen=True)
class Principal:
    """Who a request acts as: a name for logs and audit trails, and what it may do."""

    name: str
    scopes: frozenset[str] = ALL_SCOPES


def new_token() -> str:
    """Return a fresh random API token (shown once; only its hash need be kept)."""
    return "imm_" + secrets.token_urlsafe(32)


def hash_token(token: str) -> str:
    """Return the form of a token that settings may hold without holding the secret."""
    return HASH_PREFIX + hashlib.sha256(token.encode()).hexdigest()


def token_matches(presented: str, allowed: Iterable[str]) -> bool:
    """True when `presented` equals an allowed token or matches an allowed hash."""
    hashed = hash_token(presented)
    found = False
    for candidate in allowed:
        expected = candidate if candidate.startswith(HASH_PREFIX) else hash_token(candidate)
        # Compare every candidate in constant time, so timing tells nothing about tokens.
        found |= hmac.compare_digest(hashed, expected)
    return found


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
    if not token_matches(presented, request.app.state.settings.api_tokens):
        raise ApiError(401, "invalid token", {"WWW-Authenticate": "Bearer"})
    # Tokens carry no names yet: a prefix of the hash tells tokens apart without revealing one.
    return Principal(name=f"token:{hash_token(presented)[len(HASH_PREFIX) :][:8]}")


def require_token(request: Request) -> None:
    """Refuse the request with 401 unless it carries a valid bearer token."""
    authenticate(request)


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
