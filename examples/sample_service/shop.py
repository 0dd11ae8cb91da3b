"""The sample service's e-commerce domain: customers, the product catalog and inventory.

Orders, payments and returns live in `shop_orders`, quality control and fraud in
`shop_quality`; `Shop` wires them all around one locked in-memory store.
"""

from __future__ import annotations

import uuid
from typing import Any

from .faults import Fault, FaultState
from .shop_model import (
    ConflictError,
    Customer,
    InvalidError,
    Movement,
    Product,
    Reservation,
    ShopStore,
    as_dict,
    money,
    new_id,
    now_iso,
)
from .shop_orders import Orders, Returns
from .shop_quality import Fraud, Quality

__all__ = ["MOVEMENT_REASONS", "Customers", "Inventory", "Products", "Shop"]

# Why stock on hand may change through the API; `sale` and `return` are written by the shop.
MOVEMENT_REASONS = ("restock", "adjustment", "damage", "cycle_count")


class Customers:
    """Customer accounts."""

    def __init__(self, store: ShopStore) -> None:
        self._store = store

    def create(self, name: str, email: str, country: str) -> Customer:
        """Return a new active customer."""
        customer = Customer(
            id=new_id("cus"), name=name.strip(), email=email.lower(), country=country.upper()
        )
        with self._store.lock:
            self._store.customers[customer.id] = customer
        return customer

    def get(self, customer_id: str) -> Customer:
        """Return the customer; 404 when unknown."""
        customer: Customer = self._store.get(self._store.customers, customer_id, "customer")
        return customer

    def set_blocked(self, customer_id: str, blocked: bool, reason: str | None) -> Customer:
        """Block or unblock a customer and return it; 409 when it already is."""
        with self._store.lock:
            customer = self.get(customer_id)
            target = "blocked" if blocked else "active"
            if customer.status == target:
                raise ConflictError(f"customer {customer_id!r} is already {target}")
            customer.status, customer.blocked_reason = target, reason if blocked else None
            return customer

    @staticmethod
    def to_dict(customer: Customer) -> dict[str, Any]:
        """Return the API shape of a customer."""
        return as_dict(customer)


class Inventory:
    """Stock on hand, reservations against it, and the ledger of stock movements."""

    def __init__(self, store: ShopStore, faults: FaultState) -> None:
        self._store = store
        self._faults = faults

    def product(self, product_id: str) -> Product:
        """Return the product; 404 when unknown."""
        product: Product = self._store.get(self._store.products, product_id, "product")
        return product

    def reserved(self, product_id: str) -> int:
        """Return the units held by active reservations."""
        with self._store.lock:
            return sum(
                r.quantity
                for r in self._store.reservations.values()
                if r.product_id == product_id and r.status == "active"
            )

    def available(self, product: Product) -> int:
        """Return the units that can still be sold: on hand minus reserved."""
        if self._faults.is_enabled(Fault.INVENTORY_OVERSELL):
            # The incident: availability read from on-hand only, as if nothing were reserved.
            return product.on_hand
        return product.on_hand - self.reserved(product.id)

    def level(self, product_id: str) -> dict[str, Any]:
        """Return a product's stock level and whether it is low."""
        with self._store.lock:
            product = self.product(product_id)
            available = self.available(product)
            return {
                "product_id": product.id,
                "sku": product.sku,
                "category": product.category,
                "on_hand": product.on_hand,
                "reserved": self.reserved(product.id),
                "available": available,
                "low_stock_threshold": product.low_stock_threshold,
                "low_stock": available <= product.low_stock_threshold,
            }

    def reserve(self, product_id: str, quantity: int, order_id: str | None = None) -> Reservation:
        """Hold stock and return the reservation; 409 when not enough is available."""
        with self._store.lock:
            product = self.product(product_id)
            if not product.active:
                raise ConflictError(f"product {product.sku} is not active")
            available = self.available(product)
            if quantity > available:
                raise ConflictError(
                    f"insufficient stock for {product.sku}: requested {quantity},"
                    f" available {available}"
                )
            reservation = Reservation(
                id=new_id("res"), product_id=product_id, quantity=quantity, order_id=order_id
            )
            self._store.reservations[reservation.id] = reservation
            return reservation

    def reservation(self, reservation_id: str) -> Reservation:
        """Return the reservation; 404 when unknown."""
        found: Reservation = self._store.get(
            self._store.reservations, reservation_id, "reservation"
        )
        return found

    def release(self, reservation_id: str) -> Reservation:
        """Give held stock back and return the reservation; 409 unless it is active."""
        with self._store.lock:
            reservation = self.reservation(reservation_id)
            if reservation.status != "active":
                raise ConflictError(
                    f"reservation {reservation_id!r} is {reservation.status}, not active"
                )
            reservation.status = "released"
            return reservation

    def commit(self, reservation_id: str, reference: str) -> Movement:
        """Turn a reservation into a sale: stock leaves the warehouse."""
        with self._store.lock:
            reservation = self.reservation(reservation_id)
            reservation.status = "committed"
            return self._record(reservation.product_id, -reservation.quantity, "sale", reference)

    def move(
        self, product_id: str, quantity: int, reason: str, reference: str | None = None
    ) -> Movement:
        """Record a manual stock movement and return it; 409 when stock would not cover it."""
        if quantity == 0:
            raise InvalidError("quantity must not be 0")
        if reason == "restock" and quantity < 0:
            raise InvalidError("a restock adds stock: quantity must be positive")
        if reason == "damage" and quantity > 0:
            raise InvalidError("damaged stock leaves the shelf: quantity must be negative")
        with self._store.lock:
            product = self.product(product_id)
            reserved = self.reserved(product_id)
            after = product.on_hand + quantity
            if after < reserved:
                raise ConflictError(
                    f"movement would leave {after} on hand for {product.sku}"
                    f" with {reserved} reserved"
                )
            return self._record(product_id, quantity, reason, reference)

    def restock_return(self, product_id: str, quantity: int, reference: str) -> Movement:
        """Put returned units back on the shelf."""
        return self._record(product_id, quantity, "return", reference)

    def _record(self, product_id: str, quantity: int, reason: str, ref: str | None) -> Movement:
        with self._store.lock:
            product = self.product(product_id)
            product.on_hand += quantity
            product.updated_at = now_iso()
            movement = Movement(
                id=new_id("mov"),
                product_id=product_id,
                quantity=quantity,
                reason=reason,
                on_hand_after=product.on_hand,
                reference=ref,
            )
            self._store.movements.append(movement)
            return movement

    def movements(self, product_id: str) -> list[dict[str, Any]]:
        """Return a product's stock movements, oldest first."""
        with self._store.lock:
            self.product(product_id)
            return [as_dict(m) for m in self._store.movements if m.product_id == product_id]

    def low_stock(self, category: str | None, limit: int) -> list[dict[str, Any]]:
        """Return the stock levels of active products at or below their threshold."""
        with self._store.lock:
            products = [
                p
                for p in self._store.products.values()
                if p.active and (category is None or p.category == category)
            ]
            levels = [self.level(p.id) for p in products]
        return [level for level in levels if level["low_stock"]][:limit]


class Products:
    """The product catalog."""

    def __init__(self, store: ShopStore, inventory: Inventory) -> None:
        self._store = store
        self._inventory = inventory

    def create(self, fields: dict[str, Any]) -> Product:
        """Return a new product; 409 when its SKU is taken. A missing SKU is generated."""
        sku = (fields.get("sku") or f"SKU-{uuid.uuid4().hex[:10].upper()}").upper()
        with self._store.lock:
            taken = next((p for p in self._store.products.values() if p.sku == sku), None)
            if taken is not None:
                raise ConflictError(f"sku {sku!r} already exists (product {taken.id})")
            product = Product(
                id=new_id("prd"),
                sku=sku,
                name=fields["name"].strip(),
                price=money(fields["price"]),
                category=fields["category"],
                on_hand=0,
                low_stock_threshold=fields.get("low_stock_threshold", 5),
                description=fields.get("description", ""),
            )
            self._store.products[product.id] = product
            if fields.get("stock"):
                self._inventory.move(product.id, fields["stock"], "restock", "initial stock")
            return product

    def get(self, product_id: str) -> Product:
        """Return the product; 404 when unknown."""
        return self._inventory.product(product_id)

    def update(self, product_id: str, changes: dict[str, Any]) -> Product:
        """Apply the given field changes and return the product; 422 when there are none."""
        if not changes:
            raise InvalidError("nothing to update: give at least one field")
        with self._store.lock:
            product = self.get(product_id)
            for name, value in changes.items():
                setattr(product, name, money(value) if name == "price" else value)
            product.updated_at = now_iso()
            return product

    def delete(self, product_id: str) -> None:
        """Remove the product; 409 while open orders or carts hold its stock."""
        with self._store.lock:
            product = self.get(product_id)
            reserved = self._inventory.reserved(product_id)
            if reserved:
                raise ConflictError(
                    f"product {product.sku} has {reserved} units reserved; release them first"
                )
            del self._store.products[product_id]

    def search(
        self, category: str | None, query: str | None, active: bool | None, limit: int, offset: int
    ) -> tuple[int, list[Product]]:
        """Return the total number of matches and one page of them, newest first."""
        needle = (query or "").lower()
        with self._store.lock:
            matches = [
                p
                for p in self._store.products.values()
                if (category is None or p.category == category)
                and (active is None or p.active == active)
                and (not needle or needle in p.name.lower() or needle in p.sku.lower())
            ]
        matches.sort(key=lambda p: p.created_at, reverse=True)
        return len(matches), matches[offset : offset + limit]

    def to_dict(self, product: Product) -> dict[str, Any]:
        """Return the API shape of a product, with its stock level."""
        with self._store.lock:
            shaped = as_dict(product)
            shaped["available"] = self._inventory.available(product)
            return shaped


class Shop:
    """Every shop service around one store; one per app."""

    def __init__(self, faults: FaultState) -> None:
        self.store = ShopStore()
        self.customers = Customers(self.store)
        self.inventory = Inventory(self.store, faults)
        self.products = Products(self.store, self.inventory)
        self.fraud = Fraud(self.store, faults)
        self.orders = Orders(self.store, self.inventory, self.fraud)
        self.returns = Returns(self.store, faults, self.orders, self.inventory)
        self.quality = Quality(self.store)
