"""The shop's orders (payment, fulfilment, cancellation, analytics) and returns (RMA, refunds)."""

from __future__ import annotations

import uuid
from collections import Counter
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

from .faults import Fault, FaultState
from .shop_model import (
    ConflictError,
    Customer,
    ForbiddenError,
    InvalidError,
    NotFoundError,
    Order,
    OrderLine,
    PaymentDeclinedError,
    ReturnRequest,
    ShopError,
    ShopStore,
    as_dict,
    money,
    new_id,
    now_iso,
)

if TYPE_CHECKING:
    from .shop import Inventory
    from .shop_quality import Fraud

__all__ = ["CARRIERS", "Orders", "Returns"]

CARRIERS = ("ups", "fedex", "dhl", "usps")
# Status changes a caller may ask for directly; paying, shipping and cancelling have endpoints.
_ORDER_MOVES = {"processing": {"paid"}, "delivered": {"shipped"}}
_CANCELLABLE = {"pending", "paid", "processing"}
_RETURN_MOVES = {"approved": {"requested"}, "rejected": {"requested"}, "received": {"in_transit"}}


def _tracking_number(carrier: str) -> str:
    return f"{carrier.upper()}{uuid.uuid4().hex[:14].upper()}"


def _move(record: Order | ReturnRequest, status: str, note: str | None = None) -> None:
    record.status = status
    record.history.append({"status": status, "at": now_iso(), "note": note})


class Orders:
    """Orders from placement to delivery: stock is reserved on placement, taken on shipping."""

    def __init__(self, store: ShopStore, inventory: Inventory, fraud: Fraud) -> None:
        self._store = store
        self._inventory = inventory
        self._fraud = fraud

    def _customer(self, customer_id: str) -> Customer:
        customer: Customer = self._store.get(self._store.customers, customer_id, "customer")
        if customer.status == "blocked":
            raise ForbiddenError(f"customer {customer_id!r} is blocked: {customer.blocked_reason}")
        return customer

    def get(self, order_id: str) -> Order:
        """Return the order; 404 when unknown."""
        order: Order = self._store.get(self._store.orders, order_id, "order")
        return order

    def create(
        self, customer_id: str, items: list[dict[str, Any]], shipping_address: dict[str, Any]
    ) -> Order:
        """Place an order, reserving its stock; 403 blocked, 404 unknown, 409 out of stock."""
        product_ids = [item["product_id"] for item in items]
        if len(set(product_ids)) != len(product_ids):
            raise InvalidError("a product appears on two lines: combine the quantities")
        with self._store.lock:
            self._customer(customer_id)
            order_id = new_id("ord")
            lines: list[OrderLine] = []
            try:
                for item in items:
                    product = self._inventory.product(item["product_id"])
                    held = self._inventory.reserve(product.id, item["quantity"], order_id)
                    lines.append(
                        OrderLine(product.id, product.sku, held.quantity, product.price, held.id)
                    )
            except ShopError:
                # All or nothing: an order that cannot be filled holds no stock.
                for line in lines:
                    self._inventory.release(line.reservation_id)
                raise
            order = Order(order_id, customer_id, lines, shipping_address)
            _move(order, "pending")
            self._store.orders[order.id] = order
            return order

    def pay(self, order_id: str, details: dict[str, Any]) -> dict[str, Any]:
        """Capture the payment of a pending order after a fraud check; 402 when declined."""
        with self._store.lock:
            order = self.get(order_id)
            if order.status != "pending":
                raise ConflictError(
                    f"order {order_id!r} is {order.status}; only pending orders can be paid"
                )
            amount = money(details["amount"])
            if abs(amount - order.total) > 0.005:
                raise InvalidError(
                    f"payment amount {amount:.2f} does not match order total {order.total:.2f}"
                )
            customer = self._customer(order.customer_id)
            check = self._fraud.check(customer.id, amount, details.get("ip_country"), order.id)
            if check["decision"] == "decline":
                raise PaymentDeclinedError(
                    f"payment declined: fraud risk score {check['score']} ({check['risk']})"
                )
            order.payment = {
                "id": new_id("pay"),
                "order_id": order.id,
                "amount": amount,
                "method": details["method"],
                "card_last4": details.get("card_last4"),
                "status": "captured",
                "fraud_check_id": check["id"],
                "fraud_score": check["score"],
                "risk": check["risk"],
                "captured_at": now_iso(),
            }
            _move(order, "paid")
            return dict(order.payment)

    def set_status(self, order_id: str, status: str, note: str | None) -> Order:
        """Move an order to `processing` or `delivered`; 409 for any other move."""
        with self._store.lock:
            order = self.get(order_id)
            if order.status not in _ORDER_MOVES.get(status, set()):
                raise ConflictError(
                    f"cannot move order {order_id!r} from {order.status} to {status}"
                )
            if status == "delivered" and order.shipment is not None:
                order.shipment["events"].append({"status": "delivered", "at": now_iso()})
            _move(order, status, note)
            return order

    def ship(self, order_id: str, carrier: str) -> Order:
        """Hand a paid order to a carrier: its reserved stock leaves the warehouse."""
        with self._store.lock:
            order = self.get(order_id)
            if order.status not in {"paid", "processing"}:
                raise ConflictError(
                    f"order {order_id!r} is {order.status}; only paid orders can ship"
                )
            for line in order.lines:
                self._inventory.commit(line.reservation_id, order.id)
            shipped_at = now_iso()
            order.shipment = {
                "carrier": carrier,
                "tracking_number": _tracking_number(carrier),
                "shipped_at": shipped_at,
                "events": [
                    {"status": "label_created", "at": shipped_at},
                    {"status": "in_transit", "at": shipped_at},
                ],
            }
            _move(order, "shipped")
            return order

    def tracking(self, order_id: str) -> dict[str, Any]:
        """Return where the order's parcel is; 404 before it ships."""
        with self._store.lock:
            order = self.get(order_id)
            if order.shipment is None:
                raise NotFoundError(f"order {order_id!r} has no shipment yet ({order.status})")
            return {
                "order_id": order.id,
                "status": "delivered" if order.status == "delivered" else "in_transit",
                **{k: v for k, v in order.shipment.items() if k != "events"},
                "events": list(order.shipment["events"]),
            }

    def cancel(self, order_id: str, reason: str) -> Order:
        """Cancel an order that has not shipped: release its stock, refund what was paid."""
        with self._store.lock:
            order = self.get(order_id)
            if order.status not in _CANCELLABLE:
                raise ConflictError(f"order {order_id!r} is {order.status} and cannot be cancelled")
            for line in order.lines:
                self._inventory.release(line.reservation_id)
            if order.payment is not None:
                order.payment["status"] = "refunded"
                order.refunded_amount = order.total
            _move(order, "cancelled", reason)
            return order

    def list(self, customer_id: str | None, status: str | None, limit: int) -> list[Order]:
        """Return orders, newest first, filtered by customer and status."""
        with self._store.lock:
            found = [
                o
                for o in self._store.orders.values()
                if (customer_id is None or o.customer_id == customer_id)
                and (status is None or o.status == status)
            ]
        found.sort(key=lambda o: o.created_at, reverse=True)
        return found[:limit]

    def analytics(self, customer_id: str | None) -> dict[str, Any]:
        """Return order counts by status, revenue, refunds and average order value."""
        if customer_id is not None:
            self._store.get(self._store.customers, customer_id, "customer")
        with self._store.lock:
            orders = self.list(customer_id, None, len(self._store.orders))
            paid = [o for o in orders if o.payment is not None]
            gross = money(sum(o.total for o in paid))
            refunded = money(sum(o.refunded_amount for o in orders))
            return {
                "customer_id": customer_id,
                "orders": len(orders),
                "paid_orders": len(paid),
                "units_sold": sum(line.quantity for o in paid for line in o.lines),
                "gross_revenue": gross,
                "refunded": refunded,
                "net_revenue": money(gross - refunded),
                "average_order_value": money(gross / len(paid)) if paid else 0.0,
                "by_status": dict(Counter(o.status for o in orders)),
            }

    @staticmethod
    def to_dict(order: Order) -> dict[str, Any]:
        """Return the API shape of an order."""
        shaped = as_dict(order)
        del shaped["lines"]
        shaped["items"] = [{**as_dict(line), "line_total": line.line_total} for line in order.lines]
        shaped["total"] = order.total
        shaped["currency"] = "USD"
        return shaped


class Returns:
    """Returns: request → approve → ship back → receive → refund (and restock)."""

    def __init__(
        self, store: ShopStore, faults: FaultState, orders: Orders, inventory: Inventory
    ) -> None:
        self._store = store
        self._faults = faults
        self._orders = orders
        self._inventory = inventory

    def get(self, return_id: str) -> ReturnRequest:
        """Return the return request; 404 when unknown."""
        found: ReturnRequest = self._store.get(self._store.returns, return_id, "return")
        return found

    def _returned(self, order_id: str, product_id: str) -> int:
        return sum(
            item["quantity"]
            for r in self._store.returns.values()
            if r.order_id == order_id and r.status != "rejected"
            for item in r.items
            if item["product_id"] == product_id
        )

    def create(self, order_id: str, items: list[dict[str, Any]], reason: str) -> ReturnRequest:
        """Open a return for units of a delivered order and return it with its RMA number."""
        with self._store.lock:
            order = self._orders.get(order_id)
            if order.status != "delivered":
                raise ConflictError(
                    f"order {order_id!r} is {order.status}; only delivered orders can be returned"
                )
            lines = {line.product_id: line for line in order.lines}
            priced: list[dict[str, Any]] = []
            for item in items:
                line = lines.get(item["product_id"])
                if line is None:
                    raise InvalidError(
                        f"product {item['product_id']!r} is not on order {order_id!r}"
                    )
                left = line.quantity - self._returned(order_id, line.product_id)
                if item["quantity"] > left:
                    raise InvalidError(
                        f"cannot return {item['quantity']} of {line.sku}: {left} left to return"
                    )
                priced.append({**item, "sku": line.sku, "unit_price": line.unit_price})
            rma = f"RMA-{datetime.now(UTC):%Y%m%d}-{uuid.uuid4().hex[:6].upper()}"
            refund = money(sum(i["unit_price"] * i["quantity"] for i in priced))
            request = ReturnRequest(new_id("ret"), rma, order_id, priced, reason, refund)
            _move(request, "requested")
            self._store.returns[request.id] = request
            return request

    def set_status(self, return_id: str, status: str, note: str | None) -> ReturnRequest:
        """Approve, reject or mark received; 409 for a move the RMA flow does not allow."""
        with self._store.lock:
            request = self.get(return_id)
            if request.status not in _RETURN_MOVES.get(status, set()):
                raise ConflictError(
                    f"cannot move return {request.rma_number} from {request.status} to {status}"
                )
            _move(request, status, note)
            return request

    def ship(self, return_id: str, carrier: str) -> ReturnRequest:
        """Record the customer's parcel back to us; only approved returns ship."""
        with self._store.lock:
            request = self.get(return_id)
            if request.status != "approved":
                raise ConflictError(
                    f"return {request.rma_number} is {request.status}; approve it before shipping"
                )
            request.shipment = {
                "carrier": carrier,
                "tracking_number": _tracking_number(carrier),
                "shipped_at": now_iso(),
            }
            _move(request, "in_transit")
            return request

    def tracking(self, return_id: str) -> dict[str, Any]:
        """Return the return parcel's carrier, tracking number and status; 404 before shipping."""
        with self._store.lock:
            request = self.get(return_id)
            if request.shipment is None:
                raise NotFoundError(f"return {request.rma_number} has no shipment yet")
            status = "in_transit" if request.status == "in_transit" else "delivered"
            where = {"return_id": request.id, "rma_number": request.rma_number, "status": status}
            return where | request.shipment

    def refund(self, return_id: str, restock: bool) -> ReturnRequest:
        """Refund a received return to the original payment and, if asked, restock its units."""
        with self._store.lock:
            request = self.get(return_id)
            if request.status != "received":
                raise ConflictError(
                    f"return {request.rma_number} is {request.status}; refunds need it received"
                )
            order = self._orders.get(request.order_id)
            amount = request.refund_amount
            if self._faults.is_enabled(Fault.REFUND_AMOUNT):
                # The incident: the refund is computed from the order, not the returned lines.
                amount = order.total
            order.refunded_amount = money(order.refunded_amount + amount)
            request.refund = {
                "id": new_id("ref"),
                "amount": amount,
                "method": (order.payment or {}).get("method"),
                "issued_at": now_iso(),
            }
            if restock:
                for item in request.items:
                    self._inventory.restock_return(
                        item["product_id"], item["quantity"], request.rma_number
                    )
            _move(request, "refunded")
            return request

    def list(self, order_id: str | None, status: str | None) -> list[ReturnRequest]:
        """Return return requests, newest first, by order and status."""
        with self._store.lock:
            found = [
                r
                for r in self._store.returns.values()
                if (order_id is None or r.order_id == order_id)
                and (status is None or r.status == status)
            ]
        return sorted(found, key=lambda r: r.created_at, reverse=True)

    @staticmethod
    def to_dict(request: ReturnRequest) -> dict[str, Any]:
        """Return the API shape of a return request."""
        return as_dict(request)
