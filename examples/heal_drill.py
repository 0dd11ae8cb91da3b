"""A heal drill: a copy of the sample service with a seeded bug, hit until its failures recur.

Used by the heal loop's tests and `bench/heal.py`: the failure events come from the real service
(its reporter writes them as JSONL), so frames point at the copy's files as they would in
production.
"""

from __future__ import annotations

import json
import shlex
import tempfile
import time
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import httpx

from immunity.examples.seeded_bugs import SeededBug
from immunity.tasks.shared.target import running_target

__all__ = ["capture_failures", "trigger"]


def trigger(base_url: str, bug: SeededBug, headers: Mapping[str, str] | None = None) -> int:
    """Send the bug's trigger request once and return the status code."""
    response = httpx.request(
        bug.method,
        base_url + bug.url_path,
        json=bug.body,
        headers=dict(headers or {}),
        timeout=10,
    )
    return response.status_code


def capture_failures(
    repo: Path,
    bug: SeededBug,
    *,
    times: int = 3,
    headers: Mapping[str, str] | None = None,
    timeout_s: float = 15,
) -> list[dict[str, Any]]:
    """Start the copy at `repo`, trigger the bug `times` times, return the failure events."""
    with tempfile.TemporaryDirectory(prefix="immunity-drill-") as reports:
        command = (
            "{python} -m examples.sample_service --port {port} --environment production"
            # Braces in the path must survive the command's own {python}/{port} formatting.
            f" --report-dir {shlex.quote(reports).replace('{', '{{').replace('}', '}}')}"
            " --flush-interval 0.1"
        )
        failures = Path(reports) / "failures.jsonl"
        with running_target(repo, command=command, health_path="/api/health", timeout_s=30) as url:
            statuses = [trigger(url, bug, headers) for _ in range(times)]
            deadline = time.monotonic() + timeout_s
            while time.monotonic() < deadline:
                lines = failures.read_text().splitlines() if failures.exists() else []
                if len(lines) >= times:
                    return [json.loads(line) for line in lines]
                time.sleep(0.1)
    raise RuntimeError(f"{bug.name}: {times} trigger(s) answered {statuses}, events never came")
