"""Traffic from several users against the sample service, the way seed 000's story unfolds.

Every user does ordinary work each day (a landing page, a job, a look at executions); on day N
the N-th user asks for the recipe website that trips the dependency-validation fault.
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field

import httpx

__all__ = ["DEMO_FAULTS", "DayTraffic", "drive_day", "switch_faults"]

DEMO_FAULTS = ("dependency_validation", "executions_500")
USER_NAMES = ["alice", "bob", "carol", "dave", "erin", "frank", "grace", "heidi"]


@dataclass
class DayTraffic:
    """What one day of traffic did: requests made and the status codes they got."""

    requests: int = 0
    statuses: Counter[int] = field(default_factory=Counter)

    @property
    def failures(self) -> int:
        return sum(n for status, n in self.statuses.items() if status >= 500 or status == 429)


def switch_faults(client: httpx.Client, names: tuple[str, ...], enabled: bool) -> None:
    """Turn faults on or off through the service's admin endpoint."""
    for name in names:
        client.put(f"/admin/faults/{name}", json={"enabled": enabled}).raise_for_status()


def _call(
    client: httpx.Client,
    traffic: DayTraffic,
    user: str,
    method: str,
    path: str,
    json: dict | None = None,
) -> None:
    response = client.request(method, path, json=json, headers={"X-User": user})
    traffic.requests += 1
    traffic.statuses[response.status_code] += 1


def drive_day(client: httpx.Client, day: int, users: int) -> DayTraffic:
    """Make one day's requests: ordinary work for every user, the recipe request for one."""
    traffic = DayTraffic()
    names = [
        USER_NAMES[i % len(USER_NAMES)] + ("" if i < len(USER_NAMES) else str(i))
        for i in range(users)
    ]
    for user in names:
        _call(
            client,
            traffic,
            user,
            "POST",
            "/api/generate",
            {"prompt": f"Build a landing page with hero section for {user}", "framework": "html"},
        )
        _call(
            client,
            traffic,
            user,
            "POST",
            "/api/jobs",
            {"jobspec_id": f"bench-{user}-{day}", "questions": ["What is the capital of France?"]},
        )
        _call(client, traffic, user, "GET", "/")
    unlucky = names[(day - 1) % len(names)]
    _call(
        client,
        traffic,
        unlucky,
        "POST",
        "/api/generate",
        {"prompt": "Build recipe website with search", "framework": "react"},
    )
    _call(client, traffic, names[day % len(names)], "GET", "/api/executions")
    return traffic
