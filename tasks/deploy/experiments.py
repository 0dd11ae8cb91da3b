"""The retryable units of a fix experiment: start, deploy a variant, run a round, judge, conclude.

Each variant is deployed to its own target; every round replays the affected tests a number of
times against each variant's environment and stores the counts; the stop rule (tasks/significance)
reads the totals. The store access is in tasks/deploy/experiment_store.py.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from prefect import task
from prefect.artifacts import create_markdown_artifact
from prefect.cache_policies import NO_CACHE

from immunity.models.db import get_engine
from immunity.models.deploy_tables import Experiment, ExperimentResult
from immunity.models.deploy_targets import TargetOutcome
from immunity.models.enums import ExecutionStatus, ExperimentStatus
from immunity.models.experiments import ExperimentSummary, RoundCounts, Variant
from immunity.models.results import CaseResult
from immunity.models.schemas import utcnow
from immunity.models.settings import Settings, get_settings
from immunity.models.specs import Selection
from immunity.tasks.deploy.experiment_store import (
    add_experiment,
    add_round,
    experiment_results,
    experiment_variants,
    get_experiment,
    missing_tests,
    sample_totals,
    summarize,
    update_experiment,
)
from immunity.tasks.deploy.significance import Decision, decide, fisher_exact, prob_b_beats_a
from immunity.tasks.deploy.targets import TargetConfigError, trigger_and_follow
from immunity.tasks.regress.selection import select_cases
from immunity.tasks.shared.replay_marker import sign
from immunity.tasks.shared.retry import DB_TASK_OPTIONS
from immunity.tasks.shared.runner import run_any

__all__ = [
    "conclude",
    "count_outcomes",
    "deploy_variant",
    "experiment_markdown",
    "fail_experiment",
    "judge",
    "publish_experiment",
    "record_promotion",
    "resolve_variants",
    "run_round",
    "start_experiment",
]

METHODS = ("fisher", "beta_binomial")
_NO_RETRY = {"cache_policy": NO_CACHE}


def resolve_variants(variants: Sequence[dict[str, Any]], settings: Settings) -> list[Variant]:
    """Return the two variants with their environments; ValueError when they cannot be compared.

    Each needs a configured target of its own whose environment is configured: two variants on
    one target (or one base URL) would overwrite each other and measure the same service.
    """
    resolved = [Variant.model_validate(variant) for variant in variants]
    if len(resolved) != 2:
        raise ValueError(f"an experiment compares two variants, not {len(resolved)}")
    if resolved[0].name == resolved[1].name:
        raise ValueError(f"the variants need different names, both are {resolved[0].name!r}")
    for variant in resolved:
        target = settings.deploy_targets.get(variant.target)
        if target is None:
            known = ", ".join(sorted(settings.deploy_targets)) or "none"
            raise ValueError(
                f"variant {variant.name}: unknown deploy target {variant.target!r}; configured: "
                f"{known} (set IMMUNITY_DEPLOY_TARGETS)"
            )
        if target.environment not in settings.environments:
            raise ValueError(
                f"variant {variant.name}: target {variant.target!r} serves environment "
                f"{target.environment!r}, which IMMUNITY_ENVIRONMENTS does not define"
            )
        variant.environment = target.environment
    urls = {settings.environments[v.environment or ""].base_url.rstrip("/") for v in resolved}
    if len({v.target for v in resolved}) < 2 or len(urls) < 2:
        raise ValueError("each variant needs its own target and environment (base URL)")
    return resolved


def count_outcomes(results: Sequence[CaseResult]) -> tuple[int, int, int]:
    """Return (passed, failed, skipped): an error is a failure, a refused run is no sample."""
    passed = sum(result.status == ExecutionStatus.PASSED for result in results)
    skipped = sum(result.status == ExecutionStatus.SKIPPED for result in results)
    return passed, len(results) - passed - skipped, skipped


def _rate(counts: tuple[int, int]) -> str:
    total = sum(counts)
    return f"{counts[0]}/{total} ({counts[0] / total:.0%})" if total else "—"


def experiment_markdown(experiment: Experiment, results: Sequence[ExperimentResult]) -> str:
    """Return the experiment as markdown: variants, one row per round, and the decision."""
    variants = experiment_variants(experiment)
    names = [v.name for v in variants]
    lines = [
        f"# Fix experiment #{experiment.id}: {experiment.name}",
        "",
        f"**Status:** {experiment.status}"
        + (f", winner **{experiment.winner}**" if experiment.winner else ""),
        f"**Method:** {experiment.method}, alpha {experiment.alpha:g}; "
        f"{experiment.min_samples} to {experiment.max_samples} runs per variant",
        "",
        "| variant | ref | deployed | target | environment |",
        "|---|---|---|---|---|",
    ]
    for v in variants:
        deployed = (v.deployed_ref or "—")[:12]
        lines.append(f"| {v.name} | `{v.ref}` | `{deployed}` | {v.target} | {v.environment} |")
    lines += ["", "## Rounds", ""]
    lines.append("| round | " + " | ".join(names) + " | p (Fisher) | P(B > A) |")
    lines.append("|---" * (len(names) + 3) + "|")
    totals = {name: (0, 0) for name in names}
    for round_no in sorted({r.round for r in results}):
        for r in results:
            if r.round == round_no and r.variant in totals:
                passed, failed = totals[r.variant]
                totals[r.variant] = (passed + r.passed, failed + r.failed)
        a, b = totals[names[0]], totals[names[1]]
        cells = [_rate(totals[name]) for name in names]
        lines.append(
            f"| {round_no} | " + " | ".join(cells) + f" | {fisher_exact(*a, *b):.3g}"
            f" | {prob_b_beats_a(*a, *b):.3g} |"
        )
    lines += ["", "## Decision", "", experiment.detail or "running"]
    if experiment.promoted_deployment_id is not None:
        lines.append(f"\nPromoted as deployment #{experiment.promoted_deployment_id}.")
    return "\n".join(lines) + "\n"


@task(name="start-experiment", **DB_TASK_OPTIONS)
def start_experiment(
    name: str,
    variants: list[dict[str, Any]],
    test_ids: list[int],
    signature_id: int | None,
    method: str,
    flow_run_id: str | None,
) -> tuple[int, list[Variant]]:
    """Check the variants and tests, store the experiment, and return its id and variants."""
    settings = get_settings()
    if method not in METHODS:
        raise ValueError(f"method must be one of {', '.join(METHODS)}, not {method!r}")
    resolved = resolve_variants(variants, settings)
    engine = get_engine()
    missing = missing_tests(engine, test_ids)
    if not test_ids or missing:
        raise ValueError(f"an experiment needs existing tests; missing: {missing or 'all'}")
    experiment = Experiment(
        name=name,
        signature_id=signature_id,
        variants=[v.model_dump(mode="json") for v in resolved],
        method=method,
        alpha=settings.experiment_alpha,
        min_samples=settings.experiment_min_samples,
        max_samples=settings.experiment_max_samples,
        flow_run_id=flow_run_id,
    )
    return add_experiment(engine, experiment), resolved


# No retries: the target follows its own deployment to the end; sending it twice deploys twice.
@task(name="deploy-variant", **_NO_RETRY)
def deploy_variant(experiment_id: int, variant: Variant) -> TargetOutcome:
    """Deploy the variant's ref to its target; on success store the ref the target resolved."""
    settings = get_settings()
    reason = f"experiment {experiment_id}: variant {variant.name}"
    try:
        outcome = trigger_and_follow(
            variant.target,
            settings.deploy_targets[variant.target],
            variant.ref,
            settings,
            reason=reason,
        )
    except TargetConfigError as error:  # the target lacks what its kind needs: nothing was sent
        return TargetOutcome(ok=False, ref=variant.ref, detail=str(error))
    if outcome.ok:
        engine = get_engine()
        experiment = get_experiment(engine, experiment_id)
        stored = [
            {**v, "deployed_ref": outcome.ref} if v["name"] == variant.name else v
            for v in experiment.variants
        ]
        update_experiment(engine, experiment_id, variants=stored)
    return outcome


# No retries: a re-run would add a second set of samples for the same round.
@task(name="run-experiment-round", **_NO_RETRY)
def run_round(
    experiment_id: int, variant: Variant, test_ids: list[int], runs: int, round_no: int
) -> RoundCounts:
    """Run the tests `runs` times against the variant's environment and store the counts."""
    # Each run is one sample: a re-run would turn a failure into `flaky` and hide it.
    settings = get_settings().model_copy(update={"regression_reruns": 0})
    engine = get_engine()
    cases, _ = select_cases(
        engine, settings, Selection(ids=test_ids, include_inactive=True), variant.environment
    )
    # Signed: a variant's reports of these replays are not occurrences (replay_marker.py).
    marker = sign("experiment", f"{experiment_id}:{variant.name}", settings)
    cases = [case.model_copy(update={"marker": marker}) for case in cases]
    results: list[CaseResult] = []
    for _ in range(runs):
        results += run_any(cases, settings)
    passed, failed, skipped = count_outcomes(results)
    row = ExperimentResult(
        experiment_id=experiment_id,
        variant=variant.name,
        round=round_no,
        passed=passed,
        failed=failed,
    )
    add_round(engine, row)
    return RoundCounts(
        variant=variant.name, round=round_no, passed=passed, failed=failed, skipped=skipped
    )


@task(name="judge-experiment", **DB_TASK_OPTIONS)
def judge(experiment_id: int) -> Decision:
    """Return the stop rule's decision on the experiment's totals so far."""
    engine = get_engine()
    experiment = get_experiment(engine, experiment_id)
    a, b = experiment_variants(experiment)
    totals = sample_totals(engine, [experiment_id])[experiment_id]
    return decide(
        totals.get(a.name, (0, 0)),
        totals.get(b.name, (0, 0)),
        method=experiment.method,  # type: ignore[arg-type]
        alpha=experiment.alpha,
        min_samples=experiment.min_samples,
        max_samples=experiment.max_samples,
    )


@task(name="conclude-experiment", **DB_TASK_OPTIONS)
def conclude(experiment_id: int, decision: Decision, rounds: int) -> ExperimentSummary:
    """Record how the experiment ended; a decision that did not stop it means max_rounds did."""
    engine = get_engine()
    experiment = get_experiment(engine, experiment_id)
    a, b = experiment_variants(experiment)
    winner = {"A": a.name, "B": b.name}.get(decision.winner or "")
    if decision.stop and winner is not None:
        status, detail = ExperimentStatus.DECIDED, decision.reason
    elif decision.stop:
        status, detail = ExperimentStatus.INCONCLUSIVE, decision.reason
    else:
        status = ExperimentStatus.INCONCLUSIVE
        detail = f"stopped after max_rounds={rounds}: {decision.reason}"
    posterior = decision.posterior
    if posterior is not None and decision.winner == "A":
        posterior = 1.0 - posterior  # the winner's: P(p_A > p_B)
    done = update_experiment(
        engine,
        experiment_id,
        status=status,
        winner=winner,
        p_value=decision.p_value,
        posterior=posterior,
        detail=detail,
        finished_at=utcnow(),
    )
    return summarize(engine, done)


@task(name="fail-experiment", **DB_TASK_OPTIONS)
def fail_experiment(experiment_id: int, detail: str) -> ExperimentSummary:
    """Record that the experiment could not go on, and why."""
    engine = get_engine()
    status = ExperimentStatus.FAILED
    done = update_experiment(
        engine, experiment_id, status=status, detail=detail, finished_at=utcnow()
    )
    return summarize(engine, done)


@task(name="record-promotion", **DB_TASK_OPTIONS)
def record_promotion(experiment_id: int, deployment_id: int, status: str) -> ExperimentSummary:
    """Link the winner's deployment to the experiment and note how it went."""
    engine = get_engine()
    experiment = get_experiment(engine, experiment_id)
    detail = f"{experiment.detail}; promoted as deployment #{deployment_id}: {status}"
    done = update_experiment(
        engine, experiment_id, promoted_deployment_id=deployment_id, detail=detail
    )
    return summarize(engine, done)


@task(name="publish-experiment", **DB_TASK_OPTIONS)
def publish_experiment(experiment_id: int) -> str:
    """Publish the experiment as the markdown artifact `experiment-<id>` and return it."""
    engine = get_engine()
    experiment = get_experiment(engine, experiment_id)
    markdown = experiment_markdown(experiment, experiment_results(engine, experiment_id))
    create_markdown_artifact(
        key=f"experiment-{experiment_id}",
        markdown=markdown,
        description=f"Fix experiment #{experiment_id}: {experiment.name} ({experiment.status})",
    )
    return markdown
