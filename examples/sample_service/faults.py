"""The faults the sample service can be switched into at run time, and their thread-safe state."""

from __future__ import annotations

import threading
from collections.abc import Iterable
from enum import StrEnum

__all__ = ["FAULT_DESCRIPTIONS", "UI_FAULTS", "Fault", "FaultState", "UnknownFaultError"]


class Fault(StrEnum):
    """A switchable production incident, each modelled on one of the seeds."""

    DEPENDENCY_VALIDATION = "dependency_validation"
    EMPTY_JOB_ID = "empty_job_id"
    EXECUTIONS_500 = "executions_500"
    JOBS_STUCK = "jobs_stuck"
    SLOW_MODEL = "slow_model"
    RATE_LIMIT = "rate_limit"
    INVENTORY_OVERSELL = "inventory_oversell"
    REFUND_AMOUNT = "refund_amount"
    FRAUD_SCORING = "fraud_scoring"
    UI_BUTTON_THROWS = "ui_button_throws"
    UI_FORM_REJECTS = "ui_form_rejects"
    UI_ELEMENT_MISSING = "ui_element_missing"
    UI_FAILING_API = "ui_failing_api"


FAULT_DESCRIPTIONS: dict[Fault, str] = {
    Fault.DEPENDENCY_VALIDATION: (
        "POST /api/generate fails with DependencyValidationError (500) when the prompt mentions"
        " 'recipe': the recipe template pins react-router-dom@7.1.0, not in the allow-list."
    ),
    Fault.EMPTY_JOB_ID: (
        'Job responses carry "id": "" (the jobspec_id/id field-mapping bug); no exception.'
    ),
    Fault.EXECUTIONS_500: "GET /api/executions raises DatabaseError (500); health turns degraded.",
    Fault.JOBS_STUCK: "Jobs stay in 'created': the outbox payload is not one the runner accepts.",
    Fault.SLOW_MODEL: "POST /api/generate: the AI model times out -> TimeoutError (504).",
    Fault.RATE_LIMIT: "POST /api/generate: the upstream model answers 429 -> RateLimitError (429).",
    Fault.INVENTORY_OVERSELL: (
        "Shop: reservations do not decrement available stock, so availability reads as on-hand"
        " and the last units are sold twice (oversell); no exception."
    ),
    Fault.REFUND_AMOUNT: (
        "Shop: a return's refund pays the whole order total instead of the returned lines'"
        " value; no exception."
    ),
    Fault.FRAUD_SCORING: (
        "Shop: the fraud-scoring dependency is down: fraud checks and order payments fail with"
        " FraudServiceUnavailableError (503)."
    ),
    Fault.UI_BUTTON_THROWS: (
        "UI: the add-to-cart buttons' handler reads a renamed data attribute and throws a"
        " TypeError; nothing is added to the cart and the page reports the error."
    ),
    Fault.UI_FORM_REJECTS: (
        "UI: the checkout form validates postcodes against a stale rule (six digits), so every"
        " valid postcode is rejected and no order can be placed."
    ),
    Fault.UI_ELEMENT_MISSING: "UI: the dashboard's recent-orders widget never renders.",
    Fault.UI_FAILING_API: (
        "UI: GET /api/ui/orders (behind the orders page and the dashboard's orders widget)"
        " raises OrdersFeedError (500)."
    ),
}

# The faults that break the web UI (pages and their script); HTTP scenarios cannot see most of them.
UI_FAULTS: tuple[Fault, ...] = (
    Fault.UI_BUTTON_THROWS,
    Fault.UI_FORM_REJECTS,
    Fault.UI_ELEMENT_MISSING,
    Fault.UI_FAILING_API,
)


class UnknownFaultError(KeyError):
    """Raised for a fault name the service does not know."""

    def __init__(self, name: str) -> None:
        super().__init__(name)
        self.name = name

    def __str__(self) -> str:
        known = ", ".join(f.value for f in Fault)
        return f"unknown fault {self.name!r}; known faults: {known}"


def _parse(name: str | Fault) -> Fault:
    try:
        return Fault(name)
    except ValueError:
        raise UnknownFaultError(str(name)) from None


class FaultState:
    """Which faults are on; safe to read and switch from any thread. All off by default."""

    def __init__(self, enabled: Iterable[str | Fault] = ()) -> None:
        self._lock = threading.Lock()
        self._enabled: set[Fault] = {_parse(name) for name in enabled}

    def is_enabled(self, name: str | Fault) -> bool:
        """Return whether the fault is switched on."""
        fault = _parse(name)
        with self._lock:
            return fault in self._enabled

    def set(self, name: str | Fault, enabled: bool) -> Fault:
        """Switch one fault on or off and return it; unknown names raise UnknownFaultError."""
        fault = _parse(name)
        with self._lock:
            if enabled:
                self._enabled.add(fault)
            else:
                self._enabled.discard(fault)
        return fault

    def enable(self, name: str | Fault) -> Fault:
        """Switch one fault on."""
        return self.set(name, True)

    def disable(self, name: str | Fault) -> Fault:
        """Switch one fault off."""
        return self.set(name, False)

    def reset(self) -> None:
        """Switch every fault off."""
        with self._lock:
            self._enabled.clear()

    def snapshot(self) -> dict[str, bool]:
        """Return every fault name with whether it is on, in declaration order."""
        with self._lock:
            return {fault.value: fault in self._enabled for fault in Fault}

    def enabled(self) -> list[str]:
        """Return the names of the faults that are on."""
        return [name for name, on in self.snapshot().items() if on]
