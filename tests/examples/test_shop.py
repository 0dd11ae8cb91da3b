"""The sample service's shop where the scenario pack cannot see: threads, reporting, the faults."""

from __future__ import annotations

import threading
from typing import Any

import pytest

from immunity.examples.sample_service import Fault, FaultState
from immunity.examples.sample_service.faults import FAULT_DESCRIPTIONS
from immunity.examples.sample_service.shop import Shop
from immunity.examples.sample_service.shop_model import ConflictError
from immunity.models.schemas import FailureEventIn
from tests.examples.conftest import Service

ADDRESS = {"line1": "1 Test Road", "city": "Springfield", "postal_code": "62701", "country": "US"}


def _delivered_order(shop: Shop, price: float, quantities: list[int]) -> tuple[str, list[str]]:
    customer = shop.customers.create("Test Buyer", "buyer@example.com", "US")
    products = [
        shop.products.create({"name": f"Item {i}", "price": price, "category": "t", "stock": 10})
        for i in range(len(quantities))
    ]
    items = [{"product_id": p.id, "quantity": q} for p, q in zip(products, quantities, strict=True)]
    order = shop.orders.create(customer.id, items, ADDRESS)
    shop.orders.pay(order.id, {"method": "paypal", "amount": order.total})
    shop.orders.ship(order.id, "ups")
    shop.orders.set_status(order.id, "delivered", None)
    return order.id, [p.id for p in products]


def test_concurrent_reservations_never_oversell() -> None:
    shop = Shop(FaultState())
    product = shop.products.create({"name": "Hot item", "price": 5, "category": "t", "stock": 50})
    outcomes: list[str] = []
    start = threading.Barrier(20)

    def buy() -> None:
        start.wait()
        for _ in range(5):
            try:
                shop.inventory.reserve(product.id, 1)
                outcomes.append("ok")
            except ConflictError:
                outcomes.append("refused")

    threads = [threading.Thread(target=buy) for _ in range(20)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert outcomes.count("ok") == 50 and outcomes.count("refused") == 50
    level = shop.inventory.level(product.id)
    assert (level["on_hand"], level["reserved"], level["available"]) == (50, 50, 0)


def test_oversell_fault_reads_availability_from_on_hand() -> None:
    faults = FaultState()
    shop = Shop(faults)
    product = shop.products.create({"name": "Last one", "price": 5, "category": "t", "stock": 1})
    shop.inventory.reserve(product.id, 1)
    with pytest.raises(ConflictError):
        shop.inventory.reserve(product.id, 1)
    faults.enable(Fault.INVENTORY_OVERSELL)
    shop.inventory.reserve(product.id, 1)  # the incident: the last unit is sold twice
    assert shop.inventory.level(product.id)["reserved"] == 2


def _refund(shop: Shop, order_id: str, product_id: str) -> tuple[float, float]:
    """Return one unit through the whole RMA flow; give the quoted and the paid refund."""
    request = shop.returns.create(order_id, [{"product_id": product_id, "quantity": 1}], "other")
    shop.returns.set_status(request.id, "approved", None)
    shop.returns.ship(request.id, "dhl")
    shop.returns.set_status(request.id, "received", None)
    refund = shop.returns.refund(request.id, restock=True).refund
    assert refund is not None
    return request.refund_amount, refund["amount"]


def test_refund_fault_pays_the_order_total() -> None:
    faults = FaultState()
    shop = Shop(faults)
    order_id, (first, second) = _delivered_order(shop, 10.0, [2, 1])
    assert _refund(shop, order_id, first) == (10.0, 10.0)
    faults.enable(Fault.REFUND_AMOUNT)
    assert _refund(shop, order_id, second) == (10.0, 30.0)  # quoted right, paid the whole order
    assert shop.orders.get(order_id).refunded_amount == 40.0
    assert shop.inventory.level(second)["on_hand"] == 10  # restocked: 10 - 1 shipped + 1 back


def test_sku_is_normalised_and_unique_whatever_the_case() -> None:
    shop = Shop(FaultState())
    product = shop.products.create(
        {"sku": "mug-blue-01", "name": "Mug", "price": 9, "category": "kitchen"}
    )
    assert product.sku == "MUG-BLUE-01"
    with pytest.raises(ConflictError, match="already exists"):
        shop.products.create({"sku": "Mug-Blue-01", "name": "Mug", "price": 9, "category": "k"})


def test_every_fault_is_described() -> None:
    assert set(FAULT_DESCRIPTIONS) == set(Fault)
    for fault in (Fault.INVENTORY_OVERSELL, Fault.REFUND_AMOUNT, Fault.FRAUD_SCORING):
        assert FAULT_DESCRIPTIONS[fault].startswith("Shop: ")


def _order(service: Service, *, price: float = 20.0) -> dict[str, Any]:
    client = service.client
    customer = client.post(
        "/api/shop/customers", json={"name": "Ada", "email": "ada@example.com"}
    ).json()
    product = client.post(
        "/api/shop/products", json={"name": "Lamp", "price": price, "category": "t", "stock": 3}
    ).json()
    items = [{"product_id": product["id"], "quantity": 1}]
    body = {"customer_id": customer["id"], "items": items, "shipping_address": ADDRESS}
    response = client.post("/api/shop/orders", json=body)
    assert response.status_code == 201, response.text
    order: dict[str, Any] = response.json()
    return order


def test_refusals_are_answers_not_reported_failures(service: Service) -> None:
    order = _order(service)
    client = service.client
    wrong = client.post(
        f"/api/shop/orders/{order['id']}/payment", json={"method": "paypal", "amount": 1}
    )
    assert wrong.status_code == 422
    assert wrong.json() == {"detail": "payment amount 1.00 does not match order total 20.00"}
    assert (
        client.post(f"/api/shop/orders/{order['id']}/ship", json={"carrier": "ups"}).status_code
        == 409
    )
    assert client.get("/api/shop/orders/ord_nope").status_code == 404
    assert service.failures() == []
    operations = {event["operation"] for event in service.successes()}
    # Routes report their template, so immunity groups every order under one operation.
    assert "POST /api/shop/orders" in operations
    assert not any("ord_" in operation for operation in operations)


def test_fraud_outage_is_a_reported_503(service: Service) -> None:
    order = _order(service, price=12.5)
    service.set_fault(Fault.FRAUD_SCORING)
    response = service.client.post(
        f"/api/shop/orders/{order['id']}/payment", json={"method": "paypal", "amount": 12.5}
    )
    assert response.status_code == 503
    assert response.json()["error"] == "FraudServiceUnavailableError"
    (raw,) = service.failures()
    event = FailureEventIn.model_validate(raw)
    assert event.error_type == "FraudServiceUnavailableError"
    assert event.status_code == 503
    assert raw["tags"]["route"] == "/api/shop/orders/{order_id}/payment"
    service.set_fault(Fault.FRAUD_SCORING, enabled=False)
    paid = service.client.post(
        f"/api/shop/orders/{order['id']}/payment", json={"method": "paypal", "amount": 12.5}
    )
    assert paid.status_code == 200 and paid.json()["status"] == "captured"
