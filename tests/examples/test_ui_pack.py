"""The UI pack: 70+ browser checks that pass on a healthy shop UI and catch every UI fault."""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterator, Sequence
from pathlib import Path

import pytest

from immunity.examples.sample_service import Fault
from immunity.examples.sample_service.faults import UI_FAULTS
from immunity.models.enums import ExecutionStatus
from immunity.models.results import CaseResult
from immunity.models.settings import Settings
from immunity.models.specs import TestCase, TestDefinition
from immunity.tasks.regress.testdefs import load_definitions
from immunity.tasks.shared.browser import BrowserPool
from immunity.tasks.ui.runner import run_ui_cases
from tests.examples.conftest import Service

UI_PACK = Path(__file__).resolve().parents[2] / "examples" / "ui_scenarios"
CATEGORIES = (
    "pages",
    "navigation",
    "forms",
    "auth",
    "cart",
    "checkout",
    "loading",
    "buttons",
    "dashboard",
    "search",
)
# Checks that must catch each fault (more do); only these run with the fault on, to stay fast.
CATCHES: dict[Fault, tuple[str, ...]] = {
    Fault.UI_BUTTON_THROWS: ("ui.cart.add_from_product_page", "ui.cart.add_from_product_list"),
    Fault.UI_FORM_REJECTS: (
        "ui.forms.checkout_valid_us_postcode_accepted",
        "ui.forms.checkout_uk_postcode_follows_country",
    ),
    Fault.UI_ELEMENT_MISSING: ("ui.dashboard.three_widgets", "ui.pages.dashboard"),
    Fault.UI_FAILING_API: (
        "ui.dashboard.widgets_without_errors",
        "ui.buttons.no_retry_button_when_orders_load",
    ),
}


@pytest.fixture(scope="module")
def pack() -> list[TestDefinition]:
    """The shipped UI pack."""
    return load_definitions(UI_PACK)


@pytest.fixture(scope="module")
def settings(tmp_path_factory: pytest.TempPathFactory, chromium: Settings) -> Settings:
    """Two reused browsers, no re-runs: a check that fails must fail the first time."""
    return chromium.model_copy(
        update={
            "ui_browsers": 2,
            "regression_reruns": 0,
            "data_dir": tmp_path_factory.mktemp("ui-pack"),
        }
    )


@pytest.fixture(scope="module")
def pool(settings: Settings) -> Iterator[BrowserPool]:
    """One browser pool for every run of the module: sessions start once."""
    with BrowserPool.from_settings(settings, allow_hosts=["127.0.0.1"]) as browsers:
        yield browsers


def _run(
    definitions: Sequence[TestDefinition], base_url: str, settings: Settings, pool: BrowserPool
) -> list[CaseResult]:
    cases = [
        TestCase(
            test_id=i,
            name=d.name,
            kind="ui",
            spec=d.spec(),
            expectations={},
            base_url=base_url,
            environment="staging",
        )
        for i, d in enumerate(definitions)
    ]
    return run_ui_cases(cases, settings=settings, pool=pool)


def _describe(results: Sequence[CaseResult]) -> str:
    return "\n".join(f"{r.name} [{r.status.value}]: {r.error}" for r in results)


def test_pack_is_large_and_covers_every_category(pack: list[TestDefinition]) -> None:
    assert len(pack) >= 70
    by_category = Counter(d.name.split(".")[1] for d in pack)
    assert set(by_category) == set(CATEGORIES), by_category
    assert min(by_category.values()) >= 5, by_category
    for definition in pack:
        assert definition.kind == "ui" and definition.ui is not None, definition.name
        assert definition.name.startswith("ui."), definition.name
        assert definition.name.split(".")[1] in definition.tags, definition.name
        assert definition.environment == "staging", definition.name
    assert {d.type for d in pack} == {"smoke", "integration", "regression"}
    actions = Counter(step.action for d in pack if d.ui for step in d.ui.steps)
    assert actions["assert_no_console_errors"] >= 20 and actions["assert_no_failed_requests"] >= 20
    assert set(actions) == {
        "open", "click", "type", "select", "submit", "wait", "assert_text", "assert_title",
        "assert_url", "assert_count", "assert_no_console_errors", "assert_no_failed_requests",
    }  # fmt: skip
    names = {d.name for d in pack}
    assert set(CATCHES) == set(UI_FAULTS)
    assert all(name in names for guards in CATCHES.values() for name in guards)


def test_pack_passes_on_a_healthy_service(
    pack: list[TestDefinition], service: Service, settings: Settings, pool: BrowserPool
) -> None:
    results = _run(pack, service.base_url, settings, pool)
    assert len(results) == len(pack)
    failing = [r for r in results if r.status != ExecutionStatus.PASSED]
    assert not failing, _describe(failing)
    # A healthy UI reports no page error and the service no failure while the pack runs.
    assert service.failures() == []


@pytest.mark.parametrize("fault", UI_FAULTS, ids=lambda fault: fault.value)
def test_pack_catches_the_fault(
    pack: list[TestDefinition],
    service: Service,
    settings: Settings,
    pool: BrowserPool,
    fault: Fault,
) -> None:
    guards = [d for d in pack if d.name in CATCHES[fault]]
    assert service.set_fault(fault.value).status_code == 200
    try:
        results = _run(guards, service.base_url, settings, pool)
    finally:
        service.client.post("/admin/faults/reset")
    caught = [r for r in results if r.status == ExecutionStatus.FAILED]
    assert len(caught) == len(guards), _describe(results)
