"""The shop's HTTP API under `/api/shop`: catalog, inventory, orders, returns, quality, fraud."""

from __future__ import annotations

from collections.abc import Callable, Coroutine
from typing import Annotated, Any

from fastapi import APIRouter, Depends, Query, Request, Response
from fastapi.responses import JSONResponse
from fastapi.routing import APIRoute

from .shop import Shop
from .shop_model import ShopError, as_dict
from .shop_schemas import (
    AlertReviewIn,
    BlockIn,
    CancelIn,
    CustomerIn,
    FraudCheckIn,
    InspectionIn,
    InspectionResultIn,
    MovementIn,
    OrderIn,
    OrderStatusIn,
    PaymentIn,
    ProductIn,
    ProductPatch,
    RefundIn,
    ReservationIn,
    ReturnIn,
    ReturnStatusIn,
    ShipIn,
)

__all__ = ["router"]


class _ShopRoute(APIRoute):
    """A route whose business-rule refusals become 4xx answers with a `detail`."""

    def get_route_handler(self) -> Callable[[Request], Coroutine[Any, Any, Response]]:
        handler = super().get_route_handler()

        async def refusing(request: Request) -> Response:
            try:
                return await handler(request)
            except ShopError as exc:
                # A refusal is the client's problem, not a failure of the service: answer it.
                return JSONResponse({"detail": exc.detail}, status_code=exc.status_code)

        return refusing


async def _shop(request: Request) -> Shop:
    shop: Shop = request.app.state.services.shop
    return shop


ShopDep = Annotated[Shop, Depends(_shop)]
Limit = Annotated[int, Query(ge=1, le=200)]
router = APIRouter(prefix="/api/shop", route_class=_ShopRoute, tags=["shop"])


@router.post("/customers", status_code=201)
async def create_customer(body: CustomerIn, shop: ShopDep) -> dict[str, Any]:
    """Create a customer."""
    return shop.customers.to_dict(shop.customers.create(body.name, body.email, body.country))


@router.get("/customers/{customer_id}")
async def get_customer(customer_id: str, shop: ShopDep) -> dict[str, Any]:
    """Return one customer."""
    return shop.customers.to_dict(shop.customers.get(customer_id))


@router.post("/products", status_code=201)
async def create_product(body: ProductIn, shop: ShopDep) -> dict[str, Any]:
    """Create a product, with its initial stock."""
    return shop.products.to_dict(shop.products.create(body.model_dump()))


@router.get("/products")
async def list_products(
    shop: ShopDep,
    category: str | None = None,
    q: Annotated[str | None, Query(max_length=200)] = None,
    active: bool | None = None,
    limit: Limit = 50,
    offset: Annotated[int, Query(ge=0)] = 0,
) -> dict[str, Any]:
    """Return one page of the catalog, newest first, with the number of matches."""
    total, page = shop.products.search(category, q, active, limit, offset)
    items = [shop.products.to_dict(p) for p in page]
    return {"items": items, "total": total, "limit": limit, "offset": offset}


@router.get("/products/{product_id}")
async def get_product(product_id: str, shop: ShopDep) -> dict[str, Any]:
    """Return one product."""
    return shop.products.to_dict(shop.products.get(product_id))


@router.patch("/products/{product_id}")
async def update_product(product_id: str, body: ProductPatch, shop: ShopDep) -> dict[str, Any]:
    """Change some fields of a product."""
    changes = body.model_dump(exclude_unset=True, exclude_none=True)
    return shop.products.to_dict(shop.products.update(product_id, changes))


@router.delete("/products/{product_id}", status_code=204)
async def delete_product(product_id: str, shop: ShopDep) -> Response:
    """Delete a product that holds no reserved stock."""
    shop.products.delete(product_id)
    return Response(status_code=204)


@router.get("/inventory/low-stock")
async def low_stock(
    shop: ShopDep, category: str | None = None, limit: Limit = 50
) -> dict[str, Any]:
    """Return the low-stock alerts: products at or below their threshold."""
    return {"items": shop.inventory.low_stock(category, limit)}


@router.get("/inventory/{product_id}")
async def stock_level(product_id: str, shop: ShopDep) -> dict[str, Any]:
    """Return a product's stock: on hand, reserved, available."""
    return shop.inventory.level(product_id)


@router.post("/inventory/{product_id}/movements", status_code=201)
async def move_stock(product_id: str, body: MovementIn, shop: ShopDep) -> dict[str, Any]:
    """Record a stock movement (restock, adjustment, damage, cycle count)."""
    movement = shop.inventory.move(product_id, body.quantity, body.reason, body.reference)
    return {**as_dict(movement), "stock": shop.inventory.level(product_id)}


@router.get("/inventory/{product_id}/movements")
async def stock_movements(product_id: str, shop: ShopDep) -> dict[str, Any]:
    """Return a product's stock movements, oldest first."""
    return {"items": shop.inventory.movements(product_id)}


@router.post("/reservations", status_code=201)
async def reserve(body: ReservationIn, shop: ShopDep) -> dict[str, Any]:
    """Hold stock; 409 when not enough is available."""
    reservation = shop.inventory.reserve(body.product_id, body.quantity, body.order_id)
    return as_dict(reservation)


@router.get("/reservations/{reservation_id}")
async def get_reservation(reservation_id: str, shop: ShopDep) -> dict[str, Any]:
    """Return one reservation."""
    return as_dict(shop.inventory.reservation(reservation_id))


@router.post("/reservations/{reservation_id}/release")
async def release(reservation_id: str, shop: ShopDep) -> dict[str, Any]:
    """Give held stock back."""
    return as_dict(shop.inventory.release(reservation_id))


@router.post("/orders", status_code=201)
async def create_order(body: OrderIn, shop: ShopDep) -> dict[str, Any]:
    """Place an order, reserving its stock."""
    items = [item.model_dump() for item in body.items]
    order = shop.orders.create(body.customer_id, items, body.shipping_address.model_dump())
    return shop.orders.to_dict(order)


@router.get("/orders")
async def list_orders(
    shop: ShopDep, customer_id: str | None = None, status: str | None = None, limit: Limit = 50
) -> dict[str, Any]:
    """Return orders, newest first."""
    return {"items": [shop.orders.to_dict(o) for o in shop.orders.list(customer_id, status, limit)]}


@router.get("/orders/{order_id}")
async def get_order(order_id: str, shop: ShopDep) -> dict[str, Any]:
    """Return one order."""
    return shop.orders.to_dict(shop.orders.get(order_id))


@router.post("/orders/{order_id}/payment")
async def pay_order(order_id: str, body: PaymentIn, shop: ShopDep) -> dict[str, Any]:
    """Capture the payment of a pending order (after a fraud check)."""
    return shop.orders.pay(order_id, body.model_dump())


@router.patch("/orders/{order_id}/status")
async def set_order_status(order_id: str, body: OrderStatusIn, shop: ShopDep) -> dict[str, Any]:
    """Move an order to processing or delivered."""
    return shop.orders.to_dict(shop.orders.set_status(order_id, body.status, body.note))


@router.post("/orders/{order_id}/ship")
async def ship_order(order_id: str, body: ShipIn, shop: ShopDep) -> dict[str, Any]:
    """Ship a paid order and return it with its tracking number."""
    return shop.orders.to_dict(shop.orders.ship(order_id, body.carrier))


@router.get("/orders/{order_id}/tracking")
async def track_order(order_id: str, shop: ShopDep) -> dict[str, Any]:
    """Return the shipment's carrier, tracking number and events."""
    return shop.orders.tracking(order_id)


@router.post("/orders/{order_id}/cancel")
async def cancel_order(order_id: str, body: CancelIn, shop: ShopDep) -> dict[str, Any]:
    """Cancel an order that has not shipped."""
    return shop.orders.to_dict(shop.orders.cancel(order_id, body.reason))


@router.get("/analytics/orders")
async def order_analytics(shop: ShopDep, customer_id: str | None = None) -> dict[str, Any]:
    """Return order counts, revenue and refunds (for one customer, or all)."""
    return shop.orders.analytics(customer_id)


@router.post("/returns", status_code=201)
async def create_return(body: ReturnIn, shop: ShopDep) -> dict[str, Any]:
    """Open a return and return it with its RMA number and refund amount."""
    items = [item.model_dump() for item in body.items]
    request = shop.returns.create(body.order_id, items, body.reason)
    return shop.returns.to_dict(request)


@router.get("/returns")
async def list_returns(
    shop: ShopDep, order_id: str | None = None, status: str | None = None
) -> dict[str, Any]:
    """Return return requests, newest first."""
    return {"items": [shop.returns.to_dict(r) for r in shop.returns.list(order_id, status)]}


@router.get("/returns/{return_id}")
async def get_return(return_id: str, shop: ShopDep) -> dict[str, Any]:
    """Return one return request."""
    return shop.returns.to_dict(shop.returns.get(return_id))


@router.patch("/returns/{return_id}/status")
async def set_return_status(return_id: str, body: ReturnStatusIn, shop: ShopDep) -> dict[str, Any]:
    """Approve, reject or receive a return."""
    return shop.returns.to_dict(shop.returns.set_status(return_id, body.status, body.note))


@router.post("/returns/{return_id}/shipment")
async def ship_return(return_id: str, body: ShipIn, shop: ShopDep) -> dict[str, Any]:
    """Record the return parcel's carrier; returns its tracking number."""
    return shop.returns.to_dict(shop.returns.ship(return_id, body.carrier))


@router.get("/returns/{return_id}/tracking")
async def track_return(return_id: str, shop: ShopDep) -> dict[str, Any]:
    """Return where the return parcel is."""
    return shop.returns.tracking(return_id)


@router.post("/returns/{return_id}/refund")
async def refund_return(return_id: str, body: RefundIn, shop: ShopDep) -> dict[str, Any]:
    """Refund a received return."""
    return shop.returns.to_dict(shop.returns.refund(return_id, body.restock))


@router.post("/quality/inspections", status_code=201)
async def schedule_inspection(body: InspectionIn, shop: ShopDep) -> dict[str, Any]:
    """Schedule an inspection."""
    inspection = shop.quality.schedule(
        body.product_id, body.inspector, body.scheduled_for.isoformat(), body.sample_size
    )
    return shop.quality.to_dict(inspection)


@router.get("/quality/inspections/{inspection_id}")
async def get_inspection(inspection_id: str, shop: ShopDep) -> dict[str, Any]:
    """Return one inspection."""
    return shop.quality.to_dict(shop.quality.get(inspection_id))


@router.post("/quality/inspections/{inspection_id}/results")
async def record_results(
    inspection_id: str, body: InspectionResultIn, shop: ShopDep
) -> dict[str, Any]:
    """Record an inspection's results; returns it scored."""
    defects = [d.model_dump() for d in body.defects]
    inspection = shop.quality.record(inspection_id, body.passed_units, body.failed_units, defects)
    return shop.quality.to_dict(inspection)


@router.get("/quality/defects")
async def list_defects(
    shop: ShopDep, product_id: str | None = None, severity: str | None = None
) -> dict[str, Any]:
    """Return recorded defects."""
    return {"items": shop.quality.defects(product_id, severity)}


@router.get("/quality/products/{product_id}/score")
async def quality_score(product_id: str, shop: ShopDep) -> dict[str, Any]:
    """Return a product's quality score."""
    return shop.quality.product_score(product_id)


@router.get("/quality/report")
async def quality_report(shop: ShopDep, category: str | None = None) -> dict[str, Any]:
    """Return the quality report of a category (or of the whole catalog)."""
    return shop.quality.report(category)


@router.post("/fraud/checks")
async def fraud_check(body: FraudCheckIn, shop: ShopDep) -> dict[str, Any]:
    """Score a transaction: risk band, decision and reasons."""
    return shop.fraud.check(body.customer_id, body.amount, body.ip_country, body.reference)


@router.get("/fraud/checks/{check_id}")
async def get_fraud_check(check_id: str, shop: ShopDep) -> dict[str, Any]:
    """Return a past fraud check."""
    return shop.fraud.get_check(check_id)


@router.post("/fraud/customers/{customer_id}/block")
async def block_customer(customer_id: str, body: BlockIn, shop: ShopDep) -> dict[str, Any]:
    """Block a customer: no orders or payments until unblocked."""
    return shop.customers.to_dict(shop.customers.set_blocked(customer_id, True, body.reason))


@router.post("/fraud/customers/{customer_id}/unblock")
async def unblock_customer(customer_id: str, shop: ShopDep) -> dict[str, Any]:
    """Unblock a customer."""
    return shop.customers.to_dict(shop.customers.set_blocked(customer_id, False, None))


@router.get("/fraud/alerts")
async def fraud_alerts(
    shop: ShopDep, customer_id: str | None = None, status: str | None = None
) -> dict[str, Any]:
    """Return fraud alerts, newest first."""
    return {"items": shop.fraud.alerts(customer_id, status)}


@router.patch("/fraud/alerts/{alert_id}")
async def review_alert(alert_id: str, body: AlertReviewIn, shop: ShopDep) -> dict[str, Any]:
    """Confirm or dismiss an open fraud alert."""
    return shop.fraud.review(alert_id, body.status, body.reviewer, body.notes)
