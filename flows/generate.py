"""Test generation: a signature that crosses the threshold gets exactly one regression test."""

from __future__ import annotations

from prefect import flow

from immunity.models.reports import GeneratedTest
from immunity.tasks.generate.generation import generate_tests
from immunity.tasks.generate.reproduce import verify_reproductions

__all__ = ["generate_regression_tests"]


@flow(name="generate-regression-tests", log_prints=True)
def generate_regression_tests(signature_ids: list[int] | None = None) -> list[GeneratedTest]:
    """Give each qualifying signature its one regression test (all signatures when ids is None).

    Ingestion builds tests as batches cross the threshold; this sweep catches what it could
    not (a capture that arrived later, a configured environment, an earlier failure).

    Args:
        signature_ids: Signatures to consider; leave empty to sweep every signature that has
            been seen at least the threshold number of times within the window.
    """
    generation = generate_tests(signature_ids)  # publishes the generation artifact
    # New tests, and untrusted ones these signatures touched, replay once before being trusted.
    checked = verify_reproductions(generation.due) if generation.due else []
    created = [item for item in generation.generated if item.created]
    print(
        f"{len(created)} regression test(s) created, {len(generation.generated) - len(created)} not"
    )
    for outcome in checked:
        print(f"{outcome.name}: {outcome.reproduction.value} — {outcome.reason}")
    return generation.generated
