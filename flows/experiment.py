"""Fix experiments (seed 002's A/B for fixes): two variants, the same tests, a significance test.

Each variant is deployed to its own target; every round replays the affected tests against both
(at the same time, so a change in the surroundings hits both alike) until Fisher's exact test or
the Beta posterior finds one better, or the maximum sample is reached. The winner can be promoted
through the deploy flow. The artifact `experiment-<id>` shows the rounds and the decision.
"""

from __future__ import annotations

from typing import Any

from prefect import flow, get_run_logger
from prefect.runtime import flow_run

from immunity.models.enums import ExperimentStatus
from immunity.models.experiments import ExperimentSummary
from immunity.tasks.deploy.experiments import (
    conclude,
    deploy_variant,
    fail_experiment,
    judge,
    publish_experiment,
    record_promotion,
    run_round,
    start_experiment,
)

__all__ = ["run_experiment"]


@flow(name="fix-experiment")
def run_experiment(
    name: str,
    variant_a: dict[str, Any],
    variant_b: dict[str, Any],
    test_ids: list[int],
    signature_id: int | None = None,
    method: str = "fisher",
    runs_per_round: int = 10,
    promote_to: str | None = None,
    max_rounds: int | None = None,
) -> ExperimentSummary:
    """Compare two fix variants on the same tests until one is significantly better.

    Args:
        name: What is compared, for the record.
        variant_a: `{"name": "A", "ref": "<git ref>", "target": "<deploy target>"}`.
        variant_b: The same for B; its target must differ from A's.
        test_ids: The regression tests (and scenarios) the fix is about.
        signature_id: The signature both variants fix.
        method: `fisher` (Fisher's exact test) or `beta_binomial` (posterior P(B > A)).
        runs_per_round: How many times each test runs against each variant per round.
        promote_to: A deploy target the winner is deployed to (none: not promoted).
        max_rounds: Stop after this many rounds even below the maximum sample.
    """
    logger = get_run_logger()
    if runs_per_round < 1 or (max_rounds is not None and max_rounds < 1):
        raise ValueError("runs_per_round and max_rounds must be at least 1")
    run_id = str(flow_run.id) if flow_run.id else None
    experiment_id, variants = start_experiment(
        name, [variant_a, variant_b], test_ids, signature_id, method, run_id
    )
    for variant in variants:
        deployed = deploy_variant(experiment_id, variant)
        if not deployed.ok:
            detail = f"variant {variant.name} ({variant.ref}) did not deploy: {deployed.detail}"
            logger.error(detail)
            summary = fail_experiment(experiment_id, detail)
            publish_experiment(experiment_id)
            return summary

    round_no = 0
    while True:
        round_no += 1
        futures = [
            run_round.submit(experiment_id, variant, test_ids, runs_per_round, round_no)
            for variant in variants
        ]
        counts = [future.result() for future in futures]
        empty = [c.variant for c in counts if c.passed + c.failed == 0]
        if empty:
            detail = f"no test could run against {', '.join(empty)} (all refused)"
            summary = fail_experiment(experiment_id, detail)
            publish_experiment(experiment_id)
            return summary
        decision = judge(experiment_id)
        logger.info("round %s: %s", round_no, decision.reason)
        if decision.stop or (max_rounds is not None and round_no >= max_rounds):
            break
    summary = conclude(experiment_id, decision, round_no)

    if promote_to and summary.status == ExperimentStatus.DECIDED and summary.winner_ref:
        from immunity.flows.deploy import deploy  # the deploy loop, as a subflow

        reason = f"experiment {experiment_id}: variant {summary.winner} won ({summary.detail})"
        outcome = deploy(ref=summary.winner_ref, target=promote_to, reason=reason)
        summary = record_promotion(experiment_id, outcome.deployment_id, outcome.status)
    publish_experiment(experiment_id)
    return summary
