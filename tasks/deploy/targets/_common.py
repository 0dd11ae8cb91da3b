"""What the targets share: their errors, a deadline, and HTTP that waits out rate limits.

Errors, caught at these levels:

    TargetConfigError (ValueError)  a target lacks what its kind needs; raised before any request
    FollowError (RuntimeError)      a call failed or time ran out; the target turns it into
                                    `TargetOutcome(ok=False, detail=str(error))`, never lets it out
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass, field
from email.utils import parsedate_to_datetime
from typing import Any, TypeVar

import httpx

from immunity.models.errors import InvalidInputError, UnavailableError
from immunity.models.settings import DeployTarget

__all__ = [
    "Deadline",
    "FollowError",
    "TargetConfigError",
    "api_message",
    "json_object",
    "poll",
    "rate_limit_wait",
    "require",
    "send",
    "server_time",
]

_MAX_REQUEST_S = 30.0
_MIN_REQUEST_S = 1.0
# GitHub's advice when a rate limit names no time: wait at least a minute.
_UNSPECIFIED_WAIT_S = 60.0
_MESSAGE_CHARS = 300

T = TypeVar("T")


class TargetConfigError(InvalidInputError):
    """A deployment target misses a field its kind needs; nothing was sent."""


class FollowError(UnavailableError):
    """A trigger or a poll failed for good, or the target's time ran out; the message says why."""


def require(name: str, target: DeployTarget, *fields: str) -> None:
    """Raise TargetConfigError naming every field of `fields` the target leaves empty."""
    missing = [field for field in fields if not getattr(target, field)]
    if missing:
        raise TargetConfigError(
            f"deploy target {name!r} ({target.kind}) needs {', '.join(missing)}"
        )


@dataclass
class Deadline:
    """The time a target has (`timeout_s`) and the pause between polls."""

    timeout_s: float
    poll_interval_s: float
    _end: float = field(init=False)

    def __post_init__(self) -> None:
        self._end = time.monotonic() + self.timeout_s

    @property
    def remaining(self) -> float:
        return max(0.0, self._end - time.monotonic())

    def pause(self, seconds: float | None = None) -> bool:
        """Sleep a poll interval (or `seconds`) if the time allows; False when it has run out."""
        wanted = self.poll_interval_s if seconds is None else seconds
        if self.remaining <= 0 or wanted > self.remaining:
            return False
        time.sleep(wanted)
        return True


def server_time(response: httpx.Response) -> float:
    """Return the epoch time the server's `Date` header gives, or ours when it has none."""
    try:
        return parsedate_to_datetime(response.headers["date"]).timestamp()
    except (KeyError, TypeError, ValueError):
        return time.time()


def rate_limit_wait(response: httpx.Response) -> float | None:
    """Return the seconds a rate-limit answer asks us to wait, or None if it is not one.

    A 429 always is; a 403 only with `retry-after` or an exhausted `x-ratelimit-remaining`
    (otherwise it is a plain refusal: a token without the permission).
    """
    headers = response.headers
    retry_after = headers.get("retry-after")
    exhausted = headers.get("x-ratelimit-remaining") == "0"
    if response.status_code != 429 and not (
        response.status_code == 403 and (retry_after is not None or exhausted)
    ):
        return None
    if retry_after is not None:
        if retry_after.strip().isdigit():
            return float(retry_after)
        try:
            return max(0.0, parsedate_to_datetime(retry_after).timestamp() - server_time(response))
        except (TypeError, ValueError):
            pass
    reset = headers.get("x-ratelimit-reset", "")
    if exhausted and reset.isdigit():
        # The reset is the server's epoch second: measure it against the server's own clock.
        return max(0.0, int(reset) - server_time(response))
    return _UNSPECIFIED_WAIT_S


def api_message(response: httpx.Response) -> str:
    """Return the error message of a GitHub (`message`) or Vercel (`error.message`) answer."""
    try:
        body: Any = response.json()
    except ValueError:
        body = None
    if isinstance(body, dict):
        error = body.get("error")
        if isinstance(error, dict) and isinstance(error.get("message"), str):
            code = error.get("code")
            return f"{error['message']} ({code})" if code else error["message"]
        if isinstance(body.get("message"), str):
            return body["message"]
    text = response.text.strip()[:_MESSAGE_CHARS]
    return text or "an empty body"


def json_object(response: httpx.Response, service: str) -> dict[str, Any]:
    """Return the JSON object `response` holds; FollowError when it holds something else."""
    try:
        body = response.json()
    except ValueError:
        body = None
    if not isinstance(body, dict):
        excerpt = response.text.strip()[:_MESSAGE_CHARS]
        raise FollowError(
            f"{service} answered {response.status_code} without a JSON object: {excerpt!r}"
        )
    return body


def send(
    client: httpx.Client,
    method: str,
    url: str,
    deadline: Deadline,
    *,
    service: str,
    **kwargs: Any,
) -> httpx.Response:
    """Return the response to a request, rate limits waited out while `deadline` allows.

    A GET is also retried on transport errors and 5xx answers; a POST only when it cannot have
    arrived (no connection), since sending it twice could deploy twice.
    """
    idempotent = method.upper() == "GET"
    while True:
        timeout = min(_MAX_REQUEST_S, max(_MIN_REQUEST_S, deadline.remaining))
        try:
            response = client.request(method, url, timeout=timeout, **kwargs)
        except httpx.TransportError as error:
            if not (idempotent or isinstance(error, httpx.ConnectError)):
                raise FollowError(f"{method} {url} to {service} failed: {error!r}") from error
            problem = f"{service} could not be reached at {url}: {error!r}"
        else:
            wait = rate_limit_wait(response)
            if wait is not None:
                message = api_message(response)
                if not deadline.pause(max(wait, deadline.poll_interval_s)):
                    raise FollowError(
                        f"{service} is rate-limiting us for {wait:.0f} s more, beyond the "
                        f"{deadline.timeout_s:g} s this target has: {message}"
                    )
                continue
            if not (idempotent and response.status_code >= 500):
                return response
            problem = f"{service} answered {response.status_code}: {api_message(response)}"
        if not deadline.pause():
            raise FollowError(f"{problem} (still so after {deadline.timeout_s:g} s)")


def poll(
    client: httpx.Client,
    url: str,
    deadline: Deadline,
    *,
    service: str,
    what: str,
    until: Callable[[dict[str, Any]], T | None],
    waiting: Callable[[], str],
    **kwargs: Any,
) -> T:
    """Return the first answer of `until` that is not None, GETting `url` a poll interval apart.

    `what` names the resource in a refusal; `waiting()` says what was still awaited at the end.
    """
    while True:
        response = send(client, "GET", url, deadline, service=service, **kwargs)
        if response.status_code != 200:
            raise FollowError(
                f"{service} refused {what} ({response.status_code}): {api_message(response)}"
            )
        found = until(json_object(response, service))
        if found is not None:
            return found
        if not deadline.pause():
            raise FollowError(f"{waiting()} after {deadline.timeout_s:g} s")
