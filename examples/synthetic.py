"""Realistic synthetic failure events: varied tracebacks over a fixed number of distinct bugs.

Each bug has its own exception type and call path; each occurrence varies what real occurrences
vary: ids, e-mails, UUIDs, line numbers, install paths, users, request bodies and secrets.
Used by the tests and the benchmarks; deterministic for a given seed.
"""

from __future__ import annotations

import random
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

__all__ = ["Bug", "make_bugs", "synthetic_events"]

ERRORS = [
    ("KeyError", "'customer_{n}'"),
    ("ValueError", "invalid literal for int() with base 10: 'order-{n}'"),
    ("TimeoutError", "AI model timed out after {f}s waiting for job {uuid}"),
    ("DependencyValidationError", "dependency validation failed: package 'pkg-{n}' for {email}"),
    ("JSONDecodeError", "Expecting value: line {n} column {n2} (char {n3})"),
    ("RateLimitError", "upstream rate limit exceeded: 429 Too Many Requests (retry in {n}s)"),
    ("IntegrityError", 'duplicate key value violates unique constraint "jobs_pkey" id={n}'),
    ("AttributeError", "'NoneType' object has no attribute 'responses'"),
    ("ValidationError", "1 validation error for JobSpec: questions field required ({n} given)"),
    ("ConnectionError", "could not connect to 10.0.{n}.{n2}:5432: connection refused"),
]
MODULES = [
    "orchestrator",
    "jobs",
    "runner",
    "portal",
    "receipts",
    "generator",
    "billing",
    "auth_flow",
]
FUNCS = ["handle", "submit", "validate", "build", "render", "fetch", "publish", "resolve", "load"]
LIBRARY = [
    ("/usr/lib/python3.11/site-packages/httpx/_client.py", "httpx._client", "send"),
    (
        "/usr/lib/python3.11/site-packages/sqlalchemy/engine/base.py",
        "sqlalchemy.engine.base",
        "execute",
    ),
    ("/usr/lib/python3.11/json/decoder.py", "json.decoder", "raw_decode"),
]
PATHS = ["/api/generate", "/api/jobs", "/api/executions", "/api/orders", "/api/receipts/{n}"]


@dataclass(frozen=True)
class Bug:
    """One distinct bug: an exception type, a message template and an in-app call path."""

    error_type: str
    message: str
    path: tuple[tuple[str, str], ...]
    library: tuple[str, str, str] | None
    route: str
    method: str


def make_bugs(count: int, seed: int = 0) -> list[Bug]:
    """Return `count` distinct bugs (different call paths, so different signatures)."""
    rng = random.Random(seed)
    bugs, seen = [], set()
    while len(bugs) < count:
        error_type, message = ERRORS[len(bugs) % len(ERRORS)]
        depth = rng.randint(3, 8)
        path = tuple((f"app.{rng.choice(MODULES)}", rng.choice(FUNCS)) for _ in range(depth))
        repeats = any(a == b for a, b in zip(path, path[1:], strict=False))
        if repeats or (error_type, path) in seen:  # a repeated frame reads as recursion
            continue
        seen.add((error_type, path))
        bugs.append(
            Bug(
                error_type,
                message,
                path,
                rng.choice([None, *LIBRARY]),
                rng.choice(PATHS),
                rng.choice(["GET", "POST"]),
            )
        )
    return bugs


def _fill(template: str, rng: random.Random) -> str:
    return template.format(
        n=rng.randint(1, 99_999),
        n2=rng.randint(1, 999),
        n3=rng.randint(1, 99_999),
        f=round(rng.uniform(0.5, 30), 2),
        uuid=uuid.UUID(int=rng.getrandbits(128)),
        email=f"user{rng.randint(1, 9999)}@example.com",
    )


def _event(bug: Bug, rng: random.Random, at: datetime) -> dict[str, Any]:
    root = rng.choice(["/srv/app", "/opt/releases/v42", "/home/deploy/app"])
    frames = [
        {
            "filename": f"{root}/{module.replace('.', '/')}.py",
            "module": module,
            "function": func,
            "lineno": rng.randint(10, 900),
            "in_app": True,
            "context_line": f"    return {func}(x)",
        }
        for module, func in bug.path
    ]
    if bug.library:
        filename, module, func = bug.library
        frames.append(
            {
                "filename": filename,
                "module": module,
                "function": func,
                "lineno": rng.randint(10, 2000),
                "in_app": False,
            }
        )
    route = _fill(bug.route, rng)
    body = (
        {
            "prompt": f"Build a recipe website #{rng.randint(1, 999)}",
            "framework": "react",
            "api_key": "sk-live-" + "x" * 24,
            "owner": {"email": "owner@example.com", "id": rng.randint(1, 9)},
        }
        if bug.method == "POST"
        else None
    )
    return {
        "error_type": bug.error_type,
        "message": _fill(bug.message, rng),
        "frames": frames,
        "received_at": at.isoformat(),
        "environment": "production",
        "release": f"app@1.{rng.randint(0, 3)}.0",
        "request": {
            "method": bug.method,
            "url": f"https://app.example.com{route}?page={rng.randint(1, 9)}",
            "headers": {
                "Authorization": "Bearer eyJhbGciOi.secret",
                "Content-Type": "application/json",
                "User-Agent": "Mozilla/5.0",
                "X-Request-Id": str(uuid.UUID(int=rng.getrandbits(128))),
            },
            "body": body,
        },
        "status_code": rng.choice([500, 500, 502, 504, 429]),
        "user": f"user-{rng.randint(1, 500)}",
        "tags": {"region": rng.choice(["eu", "us"])},
        "context": {"job_id": rng.randint(1, 10**6), "password": "hunter2"},
        "source": "python",
    }


def synthetic_events(
    count: int,
    *,
    bugs: int = 200,
    seed: int = 0,
    variant: int = 0,
    start: datetime | None = None,
) -> Iterator[dict[str, Any]]:
    """Yield `count` failure events over `bugs` distinct bugs (fixed by `seed`), one second apart.

    `variant` varies the occurrences (which bug, ids, users) while keeping the same bugs.
    """
    rng = random.Random(f"{seed}:{variant}")
    catalogue = make_bugs(bugs, seed)
    at = start or datetime.now(UTC) - timedelta(seconds=count)
    for index in range(count):
        yield _event(catalogue[rng.randrange(len(catalogue))], rng, at + timedelta(seconds=index))
