"""What a replay may send, and where: the header allowlist, the never-sent headers, one origin.

A captured request is untrusted (a report is input anyone can send), so:
- a generated test keeps and sends only `REPLAYED_HEADERS` plus the environment's own
  `replay_headers`; a test written by a person keeps its headers;
- neither ever sends `Host`, `Forwarded`, `X-Forwarded-*`, method or URL override headers,
  client-address headers or hop-by-hop headers (`never_sent`);
- every replay goes to the environment's base URL plus a normalised path: a captured
  `//other-host/x` or `http://other-host/x` replays as `/other-host/x` or `/x` there.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping
from typing import Any
from urllib.parse import urlsplit

from immunity.models.settings import SAFE_METHODS, Environment, Settings
from immunity.models.specs import REPLAY_HEADER, TestCase

__all__ = [
    "REPLAYED_HEADERS",
    "Origin",
    "allowed_headers",
    "environment_auth",
    "never_sent",
    "origin",
    "pick_headers",
    "raw_steps",
    "refusal",
    "replay_path",
    "replay_url",
]

REPLAYED_HEADERS = ("Content-Type", "Accept", "Accept-Language", "User-Agent")
_NEVER_SENT = frozenset(
    {
        # Where the request goes, or who it claims to come from.
        "host",
        "forwarded",
        "via",
        "x-real-ip",
        "x-client-ip",
        "client-ip",
        "true-client-ip",
        "x-cluster-client-ip",
        "x-original-host",
        "x-host",
        # What it claims to be: another method, another URL.
        "x-http-method-override",
        "x-http-method",
        "x-method-override",
        "x-original-url",
        "x-rewrite-url",
        "x-original-uri",
        # One connection's, or recomputed by the client.
        "connection",
        "keep-alive",
        "proxy-authenticate",
        "proxy-authorization",
        "proxy-connection",
        "te",
        "trailer",
        "trailers",
        "transfer-encoding",
        "upgrade",
        "content-length",
        "accept-encoding",
        # Immunity sets its own (signed) marker.
        REPLAY_HEADER.lower(),
    }
)
_LEADING_SLASHES = re.compile(r"^[/\\]+")
_DEFAULT_PORTS = {"http": 80, "https": 443}

Origin = tuple[str, str, int]


def never_sent(name: str) -> bool:
    """True for a header no replay stores or sends, whatever the test or environment."""
    lowered = name.strip().lower()
    return lowered in _NEVER_SENT or lowered.startswith(("x-forwarded-", "x-immunity-"))


def allowed_headers(environment: Environment | None) -> frozenset[str]:
    """Return the lower-case names a generated test replays against `environment`."""
    extra = environment.replay_headers if environment is not None else ()
    names = {name.lower() for name in (*REPLAYED_HEADERS, *extra)}
    return frozenset(name for name in names if not never_sent(name))


def pick_headers(
    headers: Mapping[str, str], allowed: Iterable[str] | None = None
) -> dict[str, str]:
    """Return the headers a replay may send: never the never-sent ones, only `allowed` if given."""
    only = None if allowed is None else {name.lower() for name in allowed}
    return {
        name: value
        for name, value in headers.items()
        if not never_sent(name) and (only is None or name.lower() in only)
    }


def replay_path(path: str) -> str:
    """Return `path` as a path on the environment: no scheme or host, one leading slash."""
    text = path.strip()
    parts = urlsplit(text)
    if parts.scheme or parts.netloc:
        text = parts.path + (f"?{parts.query}" if parts.query else "")
    return "/" + _LEADING_SLASHES.sub("", text)


def origin(url: str) -> Origin:
    """Return (scheme, host, port) of an absolute URL, the default port filled in."""
    parts = urlsplit(url)
    scheme = parts.scheme.lower()
    try:
        port = parts.port
    except ValueError:
        port = None
    return scheme, (parts.hostname or "").lower(), port or _DEFAULT_PORTS.get(scheme, 0)


def replay_url(base_url: str, path: str) -> str:
    """Return the environment's base URL joined with `path` normalised (never another origin)."""
    url = base_url.rstrip("/") + replay_path(path)
    if origin(url) != origin(base_url):
        raise ValueError(f"{path[:200]!r} would leave {base_url}")
    return url


def raw_steps(case: TestCase) -> list[Mapping[str, Any]]:
    """Return the requests of a case as stored: a scenario's steps, or its one request."""
    return list(case.spec.get("steps", [])) if case.kind == "scenario" else [case.spec]


def refusal(case: TestCase) -> str | None:
    """Return why the case may not run here (a method its environment does not allow), or None."""
    allowed = case.allowed_methods
    if allowed is None and case.is_production and not case.allow_unsafe:
        allowed = list(SAFE_METHODS)
    if allowed is None:
        return None
    methods = {str(step.get("method", "GET")).upper() for step in raw_steps(case)}
    refused = sorted(methods - set(allowed))
    if not refused:
        return None
    where = "production environment" if case.is_production else "environment"
    return (
        f"refused: {', '.join(refused)} against {where} {case.environment!r}, which allows"
        f" {', '.join(allowed) or 'no method'} to replays"
        + (" (allow_unsafe is off for this test)" if case.is_production else "")
    )


def environment_auth(settings: Settings) -> dict[str, dict[str, str]]:
    """Return each configured environment's base URL → its auth headers (the secrets revealed)."""
    return {
        environment.base_url.rstrip("/"): {
            name: value.get_secret_value() for name, value in environment.auth_headers.items()
        }
        for environment in settings.environments.values()
        if environment.auth_headers
    }
