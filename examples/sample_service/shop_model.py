"""The shop's records, its errors and the one locked store every shop service shares."""

from __future__ import annotations

import threading
import uuid
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime
from typing import Any

from .errors import ServiceError

__all__ = [
    "ConflictError",
    "Customer",
    "ForbiddenError",
    "FraudAlert",
    "FraudServiceUnavailableError",
    "Inspection",
    "InvalidError",
    "Movement",
    "NotFoundError",
    "Order",
    "OrderLine",
    "PaymentDeclinedError",
    "Product",
    "Reservation",
    "ReturnRequest",
    "ShopError",
    "ShopStore",
    "as_dict",
    "money",
    "new_id",
    "now_iso",
]


class ShopError(Exception):
    """A request the shop refuses; `status_code` and `detail` are what the client gets."""

    status_code = 422

    def __init__(self, detail: str) -> None:
        super().__init__(detail)
        self.detail = detail


class InvalidError(ShopError):
    """The request is well-formed but breaks a business rule (422)."""


class NotFoundError(ShopError):
    """A referenced customer, product, order... does not exist (404)."""

    status_code = 404


class ConflictError(ShopError):
    """The request conflicts with the current state: stock, status, duplicates (409)."""

    status_code = 409


class ForbiddenError(ShopError):
    """The customer is blocked (403)."""

    status_code = 403


class PaymentDeclinedError(ShopError):
    """The payment was declined on fraud risk (402)."""

    status_code = 402


class FraudServiceUnavailableError(ServiceError):
    """The fraud-scoring dependency did not answer: a real failure, reported, not a refusal."""

    status_code = 503


def new_id(prefix: str) -> str:
    """Return a fresh id such as `ord_3f2a9c1b7d4e`."""
    return f"{prefix}_{uuid.uuid4().hex[:12]}"


def now_iso() -> str:
    """Return the current UTC time in ISO 8601."""
    return datetime.now(UTC).isoformat()


def money(amount: float) -> float:
    """Return an amount rounded to cents."""
    return round(amount + 0.0, 2)


@dataclass
class Customer:
    """A shop customer; `status` is `active` or `blocked`."""

    id: str
    name: str
    email: str
    country: str
    status: str = "active"
    blocked_reason: str | None = None
    created_at: str = field(default_factory=now_iso)


@dataclass
class Product:
    """A catalog product with its stock on hand (reservations are counted separately)."""

    id: str
    sku: str
    name: str
    price: float
    category: str
    on_hand: int
    low_stock_threshold: int
    description: str = ""
    active: bool = True
    created_at: str = field(default_factory=now_iso)
    updated_at: str = field(default_factory=now_iso)


@dataclass
class Reservation:
    """Stock held for an order or a cart: `active`, then `released` or `committed`."""

    id: str
    product_id: str
    quantity: int
    order_id: str | None = None
    status: str = "active"
    created_at: str = field(default_factory=now_iso)


@dataclass
class Movement:
    """One change of stock on hand, with why it happened."""

    id: str
    product_id: str
    quantity: int
    reason: str
    on_hand_after: int
    reference: str | None = None
    created_at: str = field(default_factory=now_iso)


@dataclass
class OrderLine:
    """One product line of an order, priced when the order was placed."""

    product_id: str
    sku: str
    quantity: int
    unit_price: float
    reservation_id: str

    @property
    def line_total(self) -> float:
        """The line's price."""
        return money(self.unit_price * self.quantity)


@dataclass
class Order:
    """An order: lines, totals, payment, shipment and status history."""

    id: str
    customer_id: str
    lines: list[OrderLine]
    shipping_address: dict[str, Any]
    status: str = "pending"
    payment: dict[str, Any] | None = None
    shipment: dict[str, Any] | None = None
    refunded_amount: float = 0.0
    history: list[dict[str, Any]] = field(default_factory=list)
    created_at: str = field(default_factory=now_iso)

    @property
    def total(self) -> float:
        """The order's total."""
        return money(sum(line.line_total for line in self.lines))


@dataclass
class ReturnRequest:
    """A return (RMA): which lines come back, why, and the refund it is worth."""

    id: str
    rma_number: str
    order_id: str
    items: list[dict[str, Any]]
    reason: str
    refund_amount: float
    status: str = "requested"
    shipment: dict[str, Any] | None = None
    refund: dict[str, Any] | None = None
    history: list[dict[str, Any]] = field(default_factory=list)
    created_at: str = field(default_factory=now_iso)


@dataclass
class Inspection:
    """A quality-control inspection of a product sample, and its results once recorded."""

    id: str
    product_id: str
    inspector: str
    scheduled_for: str
    sample_size: int
    status: str = "scheduled"
    passed_units: int | None = None
    failed_units: int | None = None
    defects: list[dict[str, Any]] = field(default_factory=list)
    quality_score: float | None = None
    result: str | None = None
    created_at: str = field(default_factory=now_iso)
    completed_at: str | None = None


@dataclass
class FraudAlert:
    """A risky transaction waiting for review: `open`, then `confirmed` or `dismissed`."""

    id: str
    check_id: str
    customer_id: str
    score: int
    reasons: list[str]
    status: str = "open"
    reviewer: str | None = None
    notes: str | None = None
    created_at: str = field(default_factory=now_iso)
    reviewed_at: str | None = None


def as_dict(record: Any) -> dict[str, Any]:
    """Return a record as a plain dict (what the API serialises)."""
    return asdict(record)


class ShopStore:
    """Every shop table, guarded by one re-entrant lock so multi-table changes are atomic."""

    def __init__(self) -> None:
        self.lock = threading.RLock()
        self.customers: dict[str, Customer] = {}
        self.products: dict[str, Product] = {}
        self.reservations: dict[str, Reservation] = {}
        self.movements: list[Movement] = []
        self.orders: dict[str, Order] = {}
        self.returns: dict[str, ReturnRequest] = {}
        self.inspections: dict[str, Inspection] = {}
        self.fraud_checks: dict[str, dict[str, Any]] = {}
        self.fraud_alerts: dict[str, FraudAlert] = {}

    def get(self, table: dict[str, Any], key: str, what: str) -> Any:
        """Return the row with this id; NotFoundError names what was missing."""
        with self.lock:
            row = table.get(key)
        if row is None:
            raise NotFoundError(f"{what} {key!r} not found")
        return row
