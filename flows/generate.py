"""Test generation: a signature that crosses the threshold gets exactly one regression test."""

from __future__ import annotations

from prefect import flow

from immunity.models.reports import GeneratedTest
from immunity.tasks.generate.generation import generate_tests
from immunity.tasks.generate.reproduce import due_reproductions, verify_reproductions
from immunity.tasks.shared.dashboards import publish_generation

__all__ = ["generate_regression_tests"]


@flow(name="generate-regression-tests", log_prints=True)
def generate_regression_tests(signature_ids: list[int] | None = None) -> list[GeneratedTest]:
    """Give each qualifying signature its one regression test (all signatures when ids is None).

    Args:
        signature_ids: Signatures to consider; leave empty to sweep every signature that has
            been seen at least the threshold number of times within the window.
    """
    outcomes = generate_tests(signature_ids)
    # New tests, and untrusted ones these signatures touched, replay once before being trusted.
    due = due_reproductions(signature_ids)
    checked = verify_reproductions(due) if due else []
    generated = [
        GeneratedTest(
            signature_id=o.signature_id, test_id=o.test_id, created=o.created, reason=o.reason
        )
        for o in outcomes
    ]
    created = [item for item in generated if item.created]
    if generated:
        publish_generation(generated)
    print(f"{len(created)} regression test(s) created, {len(generated) - len(created)} not")
    for outcome in checked:
        print(f"{outcome.name}: {outcome.reproduction.value} — {outcome.reason}")
    return generated
