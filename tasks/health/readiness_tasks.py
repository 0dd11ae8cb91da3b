"""The readiness check's Prefect tasks: measure the configured store, publish the artifact."""

from __future__ import annotations

from typing import Any

from prefect import task
from prefect.artifacts import create_markdown_artifact

from immunity.models.db import get_engine
from immunity.models.readiness import Readiness
from immunity.models.settings import get_settings
from immunity.tasks.health.readiness import measure_readiness
from immunity.tasks.shared.retry import DB_TASK_OPTIONS

__all__ = ["READINESS_ARTIFACT_KEY", "measure", "publish_readiness", "readiness_markdown"]

READINESS_ARTIFACT_KEY = "readiness"


def _cell(text: Any) -> str:
    return str(text).replace("|", "\\|").replace("\n", " ")


def _number(value: float | None) -> str:
    return "—" if value is None else f"{value:.1f}"


def readiness_markdown(readiness: Readiness) -> str:
    """Return the readiness as the markdown the `readiness` artifact shows."""
    scope = readiness.environment or "all environments"
    lines = [
        f"# Readiness: {scope} — {readiness.score:.1f} ({readiness.band})",
        "",
        f"Measured {readiness.measured_at:%Y-%m-%d %H:%M:%S} UTC. "
        "Bands: 95–100 ready, 80–94 mostly ready, 60–79 needs work, 0–59 not ready.",
        "",
        "| part | weight % | effective weight % | score | detail |",
        "|---|---:|---:|---:|---|",
    ]
    lines += [
        f"| {part.name} | {part.weight:.1f} | {part.effective_weight:.1f} | "
        f"{_number(part.score)} | {_cell(part.detail)} |"
        for part in readiness.parts
    ]
    if readiness.notes:
        lines += ["", "## Notes", ""] + [f"- {_cell(note)}" for note in readiness.notes]
    if readiness.critical_failures:
        lines += ["", "## Critical tests failing (they block a deploy)", ""]
        lines += [f"- {_cell(name)}" for name in readiness.critical_failures]
    if readiness.probes:
        lines += ["", "| probe | kind | ok | status | ms | detail |", "|---|---|---|---:|---:|---|"]
        lines += [
            f"| {_cell(p.name)} | {p.kind} | {'yes' if p.ok else '**no**'} | "
            f"{p.status_code or '—'} | {_number(p.latency_ms)} | {_cell(p.detail)} |"
            for p in readiness.probes
        ]
    return "\n".join(lines) + "\n"


@task(name="measure-readiness", **DB_TASK_OPTIONS)
def measure(environment: str | None = None) -> Readiness:
    """Return the readiness measured against the configured store, probes and queue."""
    return measure_readiness(get_engine(), get_settings(), environment)


@task(name="publish-readiness-artifact", retries=2, retry_delay_seconds=2)
def publish_readiness(readiness: Readiness) -> None:
    """Publish the readiness as the markdown artifact keyed `readiness`."""
    create_markdown_artifact(
        key=READINESS_ARTIFACT_KEY,
        markdown=readiness_markdown(readiness),
        description="Production readiness: weighted parts, score, band, critical failures.",
    )
