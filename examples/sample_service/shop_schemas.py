"""What the shop's endpoints accept: request bodies, validated before the domain sees them."""

from __future__ import annotations

from datetime import date
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, StrictBool, model_validator

__all__ = [
    "AddressIn",
    "AlertReviewIn",
    "BlockIn",
    "CancelIn",
    "CustomerIn",
    "DefectIn",
    "FraudCheckIn",
    "InspectionIn",
    "InspectionResultIn",
    "MovementIn",
    "OrderIn",
    "OrderStatusIn",
    "PaymentIn",
    "ProductIn",
    "ProductPatch",
    "RefundIn",
    "ReservationIn",
    "ReturnIn",
    "ReturnStatusIn",
    "ShipIn",
]

_COUNTRY = r"^[A-Za-z]{2}$"
_ID = Field(min_length=1, max_length=64)
Carrier = Literal["ups", "fedex", "dhl", "usps"]


class _In(BaseModel):
    # A misspelt field is a client bug worth a 422, not something to ignore silently.
    model_config = ConfigDict(extra="forbid")


class CustomerIn(_In):
    """A new customer."""

    name: str = Field(min_length=1, max_length=200)
    email: str = Field(max_length=254, pattern=r"^[^@\s]+@[^@\s]+\.[A-Za-z]{2,}$")
    country: str = Field(default="US", pattern=_COUNTRY)


class ProductIn(_In):
    """A new catalog product; the SKU is generated when not given."""

    sku: str | None = Field(default=None, pattern=r"^[A-Za-z0-9][A-Za-z0-9-]{2,39}$")
    name: str = Field(min_length=1, max_length=200)
    description: str = Field(default="", max_length=2000)
    price: float = Field(gt=0, le=1_000_000)
    category: str = Field(pattern=r"^[a-z0-9][a-z0-9-]{0,49}$")
    stock: int = Field(default=0, ge=0, le=1_000_000)
    low_stock_threshold: int = Field(default=5, ge=0, le=1_000_000)


class ProductPatch(_In):
    """Changes to a product; only the given fields change."""

    name: str | None = Field(default=None, min_length=1, max_length=200)
    description: str | None = Field(default=None, max_length=2000)
    price: float | None = Field(default=None, gt=0, le=1_000_000)
    category: str | None = Field(default=None, pattern=r"^[a-z0-9][a-z0-9-]{0,49}$")
    low_stock_threshold: int | None = Field(default=None, ge=0, le=1_000_000)
    active: StrictBool | None = None


class MovementIn(_In):
    """A manual stock movement: positive adds stock, negative removes it."""

    quantity: int = Field(ge=-1_000_000, le=1_000_000)
    reason: Literal["restock", "adjustment", "damage", "cycle_count"]
    reference: str | None = Field(default=None, max_length=200)


class ReservationIn(_In):
    """Hold stock for a cart or an order."""

    product_id: str = _ID
    quantity: int = Field(ge=1, le=10_000)
    order_id: str | None = Field(default=None, max_length=64)


class AddressIn(_In):
    """Where an order goes."""

    line1: str = Field(min_length=1, max_length=200)
    city: str = Field(min_length=1, max_length=100)
    postal_code: str = Field(min_length=2, max_length=12)
    country: str = Field(pattern=_COUNTRY)


class _ItemIn(_In):
    product_id: str = _ID
    quantity: int = Field(ge=1, le=1_000)


class OrderIn(_In):
    """A new order: who, what, where."""

    customer_id: str = _ID
    items: list[_ItemIn] = Field(min_length=1, max_length=50)
    shipping_address: AddressIn


class PaymentIn(_In):
    """Pay an order; the amount must be the order's total."""

    method: Literal["card", "paypal", "bank_transfer"]
    amount: float = Field(gt=0, le=10_000_000)
    card_last4: str | None = Field(default=None, pattern=r"^\d{4}$")
    ip_country: str | None = Field(default=None, pattern=_COUNTRY)

    @model_validator(mode="after")
    def _card_needs_digits(self) -> PaymentIn:
        if self.method == "card" and self.card_last4 is None:
            raise ValueError("card payments need card_last4")
        return self


class OrderStatusIn(_In):
    """Move an order along; only paid → processing and shipped → delivered are direct moves."""

    status: Literal["pending", "paid", "processing", "shipped", "delivered", "cancelled"]
    note: str | None = Field(default=None, max_length=500)


class ShipIn(_In):
    """Hand a parcel to a carrier."""

    carrier: Carrier


class CancelIn(_In):
    """Why an order is cancelled."""

    reason: str = Field(min_length=1, max_length=500)


class ReturnIn(_In):
    """A return request (RMA) for units of a delivered order."""

    order_id: str = _ID
    items: list[_ItemIn] = Field(min_length=1, max_length=50)
    reason: Literal[
        "damaged", "defective", "wrong_item", "not_as_described", "no_longer_needed", "other"
    ]
    comment: str | None = Field(default=None, max_length=1000)


class ReturnStatusIn(_In):
    """Move a return along: approve, reject, or mark the parcel received."""

    status: Literal["requested", "approved", "rejected", "in_transit", "received", "refunded"]
    note: str | None = Field(default=None, max_length=500)


class RefundIn(_In):
    """Refund a received return; `restock` puts its units back on the shelf."""

    restock: StrictBool = True


class InspectionIn(_In):
    """Schedule a quality inspection of a product sample."""

    product_id: str = _ID
    inspector: str = Field(min_length=1, max_length=100)
    scheduled_for: date
    sample_size: int = Field(ge=1, le=10_000)


class DefectIn(_In):
    """One defect found in an inspection."""

    code: str = Field(pattern=r"^[A-Z0-9_-]{2,40}$")
    severity: Literal["minor", "major", "critical"]
    description: str = Field(default="", max_length=500)


class InspectionResultIn(_In):
    """The results of an inspection: units that passed and failed, and the defects found."""

    passed_units: int = Field(ge=0, le=10_000)
    failed_units: int = Field(ge=0, le=10_000)
    defects: list[DefectIn] = Field(default_factory=list, max_length=100)


class FraudCheckIn(_In):
    """A transaction to score."""

    customer_id: str = _ID
    amount: float = Field(gt=0, le=10_000_000)
    ip_country: str | None = Field(default=None, pattern=_COUNTRY)
    reference: str | None = Field(default=None, max_length=200)


class BlockIn(_In):
    """Why a customer is blocked."""

    reason: str = Field(min_length=1, max_length=500)


class AlertReviewIn(_In):
    """A reviewer's decision on a fraud alert."""

    status: Literal["confirmed", "dismissed"]
    reviewer: str = Field(min_length=1, max_length=100)
    notes: str | None = Field(default=None, max_length=1000)
