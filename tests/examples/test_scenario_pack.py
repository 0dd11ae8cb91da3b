"""The scenario pack: 100+ workflow scenarios that pass when healthy and catch every fault."""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterator, Sequence
from dataclasses import dataclass

import pytest

from immunity.examples import SCENARIO_PACK
from immunity.examples.sample_service import (
    Fault,
    FaultState,
    RunningServer,
    create_app,
    start_server,
)
from immunity.examples.sample_service.faults import UI_FAULTS
from immunity.models.enums import ExecutionStatus
from immunity.models.results import CaseResult
from immunity.models.specs import TestCase, TestDefinition
from immunity.tasks.regress.testdefs import load_definitions
from immunity.tasks.shared.gx_records import warm_up
from immunity.tasks.shared.runner import run_cases_sync

CATEGORIES = (
    "products",
    "orders",
    "inventory",
    "returns",
    "quality",
    "fraud",
    "jobs",
    "generation",
    "health",
)
# Against one in-process server, 8 connections finish the pack faster than 32 do.
CONCURRENCY = 8
TIMEOUT_S = 5.0
# A scenario that must catch each fault (more do); documents what guards what.
CATCHES: dict[Fault, str] = {
    Fault.DEPENDENCY_VALIDATION: "generation.react.recipe_site_with_search",
    Fault.EMPTY_JOB_ID: "jobs.regression.id_field_is_populated",
    Fault.EXECUTIONS_500: "jobs.executions.receipt_contract",
    Fault.JOBS_STUCK: "jobs.regression.not_stuck_in_created",
    Fault.SLOW_MODEL: "generation.html.landing_page",
    Fault.RATE_LIMIT: "generation.html.landing_page",
    Fault.INVENTORY_OVERSELL: "inventory.reserve.last_units_are_not_sold_twice",
    Fault.REFUND_AMOUNT: "returns.refund.pays_only_the_returned_lines",
    Fault.FRAUD_SCORING: "fraud.payment.high_risk_payment_is_declined",
}
_BROKEN = (ExecutionStatus.FAILED, ExecutionStatus.ERROR)


@dataclass
class Target:
    """The sample service the pack runs against, and the switch for its faults."""

    server: RunningServer
    faults: FaultState


@pytest.fixture(scope="module")
def pack() -> list[TestDefinition]:
    """The shipped scenario pack."""
    return load_definitions(SCENARIO_PACK)


@pytest.fixture(scope="module")
def target() -> Iterator[Target]:
    """One sample service for the module; every test leaves its faults off."""
    faults = FaultState()
    server = start_server(create_app(environment="staging", faults=faults))
    # Great Expectations' first import takes seconds; inside the run it would stall every call.
    warm_up()
    try:
        yield Target(server, faults)
    finally:
        server.stop()


def _run(pack: Sequence[TestDefinition], base_url: str, copies: int = 1) -> list[CaseResult]:
    cases = [
        TestCase(
            test_id=copy * len(pack) + i,
            name=definition.name,
            kind=definition.kind,
            spec=definition.spec(),
            expectations=definition.expect.model_dump(mode="json", exclude_defaults=True),
            base_url=base_url,
            environment="staging",
        )
        for copy in range(copies)
        for i, definition in enumerate(pack)
    ]
    return run_cases_sync(cases, concurrency=CONCURRENCY, timeout_s=TIMEOUT_S)


def _describe(results: Sequence[CaseResult]) -> str:
    return "\n".join(
        f"{r.name} [{r.status.value}]: {r.error}\n    actual: {str(r.actual)[:600]}"
        for r in results
    )


def test_pack_is_large_and_covers_every_category(pack: list[TestDefinition]) -> None:
    assert len(pack) >= 100
    by_category = Counter(definition.name.split(".", 1)[0] for definition in pack)
    assert set(by_category) == set(CATEGORIES), by_category
    assert min(by_category.values()) >= 8, by_category
    for definition in pack:
        category = definition.name.split(".", 1)[0]
        assert category in definition.tags, definition.name
        assert definition.environment == "staging", definition.name
    scenarios = [d for d in pack if d.kind == "scenario"]
    assert len(scenarios) >= 0.75 * len(pack)
    assert sum(len(d.scenario.steps) for d in scenarios if d.scenario) >= 400
    assert {d.type for d in pack} == {"smoke", "contract", "integration", "regression"}
    dumped = " ".join(str(d.model_dump(mode="json")) for d in pack)
    for feature in ("'oneOf'", "'records'", "'poll'", "'capture'", "'max_latency_ms'"):
        assert feature in dumped, feature


def test_pack_passes_on_a_healthy_service_even_twice_at_once(
    pack: list[TestDefinition], target: Target
) -> None:
    target.faults.reset()
    # Two copies at once: scenarios share nothing, so they can run concurrently and again.
    results = _run(pack, target.server.base_url, copies=2)
    assert len(results) == 2 * len(pack)
    failing = [r for r in results if r.status != ExecutionStatus.PASSED]
    assert not failing, _describe(failing)


# UI faults live in the pages' JavaScript: the UI pack catches them (test_ui_pack.py).
@pytest.mark.parametrize(
    "fault", [f for f in Fault if f not in UI_FAULTS], ids=lambda fault: fault.value
)
def test_pack_catches_the_fault(pack: list[TestDefinition], target: Target, fault: Fault) -> None:
    target.faults.reset()
    target.faults.enable(fault)
    try:
        results = _run(pack, target.server.base_url)
    finally:
        target.faults.reset()
    caught = {r.name for r in results if r.status in _BROKEN}
    assert caught, f"no scenario of the pack caught {fault.value}"
    expected = CATCHES.get(fault)
    assert expected is None or expected in caught, sorted(caught)
    # A fault breaks its own area: most of the pack still passes with it switched on.
    assert len(caught) < len(pack) / 3, sorted(caught)
