"""Sending a replay and following its redirects, never out of the environment's origin."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import httpx

from immunity.tasks.shared.replay_policy import origin

__all__ = ["MAX_REDIRECTS", "Sent", "send_within_origin"]

MAX_REDIRECTS = 5


@dataclass
class Sent:
    """The last response, the redirects met on the way, and why the last one was not followed."""

    response: httpx.Response
    redirects: list[dict[str, Any]] = field(default_factory=list)
    stopped: str | None = None  # "another origin" or "too many"


async def send_within_origin(
    client: httpx.AsyncClient,
    method: str,
    url: str,
    *,
    timeout: float,
    max_redirects: int = MAX_REDIRECTS,
    **kwargs: Any,
) -> Sent:
    """Return the answer to the request, same-origin redirects followed up to `max_redirects`.

    A redirect to another scheme, host or port is recorded and never requested: the 3xx is the
    answer. 303 (and 301/302 after a POST) continue with a GET and no body, as browsers do.
    """
    home = origin(url)
    sent: Sent | None = None
    while True:
        response = await client.request(
            method, url, timeout=timeout, follow_redirects=False, **kwargs
        )
        sent = Sent(response, sent.redirects if sent else [])
        location = response.headers.get("location")
        if not response.is_redirect or location is None:
            return sent
        target = str(response.url.join(location))
        hop: dict[str, Any] = {"status": response.status_code, "location": target[:500]}
        sent.redirects.append(hop)
        if origin(target) != home:
            sent.stopped = "another origin"
        elif len(sent.redirects) > max_redirects:
            sent.stopped = "too many"
        if sent.stopped is not None:
            hop["followed"] = False
            return sent
        await response.aclose()
        if response.status_code == 303 or (response.status_code in (301, 302) and method == "POST"):
            method, kwargs = "GET", {"headers": kwargs.get("headers")}
        url = target
