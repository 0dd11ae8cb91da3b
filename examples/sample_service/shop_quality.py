"""The shop's quality control (inspections, defects, scores) and fraud detection."""

from __future__ import annotations

from collections import Counter
from datetime import UTC, datetime, timedelta
from typing import Any

from .faults import Fault, FaultState
from .shop_model import (
    ConflictError,
    Customer,
    FraudAlert,
    FraudServiceUnavailableError,
    Inspection,
    InvalidError,
    Product,
    ShopStore,
    as_dict,
    money,
    new_id,
    now_iso,
)

__all__ = ["PASS_SCORE", "SEVERITY_PENALTY", "Fraud", "Quality", "risk_for"]

# Points a defect takes off an inspection's score; a critical defect fails it outright.
SEVERITY_PENALTY = {"minor": 1, "major": 5, "critical": 15}
PASS_SCORE = 80.0


class Quality:
    """Inspections of product samples and the scores and reports built from them."""

    def __init__(self, store: ShopStore) -> None:
        self._store = store

    def _product(self, product_id: str) -> Product:
        product: Product = self._store.get(self._store.products, product_id, "product")
        return product

    def schedule(
        self, product_id: str, inspector: str, scheduled_for: str, sample_size: int
    ) -> Inspection:
        """Schedule an inspection of a product sample and return it."""
        with self._store.lock:
            self._product(product_id)
            inspection = Inspection(
                new_id("ins"), product_id, inspector, scheduled_for, sample_size
            )
            self._store.inspections[inspection.id] = inspection
            return inspection

    def get(self, inspection_id: str) -> Inspection:
        """Return the inspection; 404 when unknown."""
        found: Inspection = self._store.get(self._store.inspections, inspection_id, "inspection")
        return found

    def record(
        self, inspection_id: str, passed: int, failed: int, defects: list[dict[str, Any]]
    ) -> Inspection:
        """Record an inspection's results, score it and return it; 409 when already recorded."""
        with self._store.lock:
            inspection = self.get(inspection_id)
            if inspection.status != "scheduled":
                raise ConflictError(f"inspection {inspection_id!r} already has results")
            if passed + failed != inspection.sample_size:
                raise InvalidError(
                    f"passed_units + failed_units = {passed + failed}, but the sample size is"
                    f" {inspection.sample_size}"
                )
            if failed and not defects:
                raise InvalidError("failed units need at least one recorded defect")
            penalty = sum(SEVERITY_PENALTY[d["severity"]] for d in defects)
            score = max(0.0, min(100.0, 100.0 * passed / inspection.sample_size - penalty))
            critical = any(d["severity"] == "critical" for d in defects)
            inspection.passed_units, inspection.failed_units = passed, failed
            inspection.defects = [dict(d) for d in defects]
            inspection.quality_score = round(score, 1)
            inspection.result = "pass" if score >= PASS_SCORE and not critical else "fail"
            inspection.status, inspection.completed_at = "completed", now_iso()
            return inspection

    def defects(self, product_id: str | None, severity: str | None) -> list[dict[str, Any]]:
        """Return recorded defects with the inspection and product they came from."""
        with self._store.lock:
            return [
                {**d, "inspection_id": i.id, "product_id": i.product_id}
                for i in self._store.inspections.values()
                if product_id is None or i.product_id == product_id
                for d in i.defects
                if severity is None or d["severity"] == severity
            ]

    def product_score(self, product_id: str) -> dict[str, Any]:
        """Return a product's quality score: the mean of its completed inspections."""
        with self._store.lock:
            product = self._product(product_id)
            done = [
                i
                for i in self._store.inspections.values()
                if i.product_id == product_id and i.status == "completed"
            ]
        sampled = sum(i.sample_size for i in done)
        failed = sum(i.failed_units or 0 for i in done)
        return {
            "product_id": product.id,
            "sku": product.sku,
            "inspections": len(done),
            "quality_score": round(sum(i.quality_score or 0 for i in done) / len(done), 1)
            if done
            else None,
            "defect_rate": round(failed / sampled, 4) if sampled else None,
            "defects": sum(len(i.defects) for i in done),
            "last_result": done[-1].result if done else None,
        }

    def report(self, category: str | None) -> dict[str, Any]:
        """Return a quality report over the products of a category (or all products)."""
        with self._store.lock:
            products = [
                p.id
                for p in self._store.products.values()
                if category is None or p.category == category
            ]
            inspections = [i for i in self._store.inspections.values() if i.product_id in products]
            scores = [self.product_score(pid) for pid in products]
        done = [i for i in inspections if i.status == "completed"]
        codes = Counter(d["code"] for i in done for d in i.defects)
        return {
            "category": category,
            "generated_at": now_iso(),
            "inspections": len(inspections),
            "completed": len(done),
            "pass_rate": round(sum(i.result == "pass" for i in done) / len(done), 4)
            if done
            else None,
            "average_score": round(sum(i.quality_score or 0 for i in done) / len(done), 1)
            if done
            else None,
            "products": [s for s in scores if s["inspections"]],
            "top_defects": [{"code": c, "count": n} for c, n in codes.most_common(10)],
        }

    @staticmethod
    def to_dict(inspection: Inspection) -> dict[str, Any]:
        """Return the API shape of an inspection."""
        return as_dict(inspection)


def risk_for(score: int) -> tuple[str, str]:
    """Return the risk band and decision for a fraud score."""
    if score >= 70:
        return "high", "decline"
    if score >= 30:
        return "medium", "review"
    return "low", "approve"


class Fraud:
    """Transaction scoring, customer blocking and the alerts a reviewer works through."""

    def __init__(self, store: ShopStore, faults: FaultState) -> None:
        self._store = store
        self._faults = faults

    def _customer(self, customer_id: str) -> Customer:
        customer: Customer = self._store.get(self._store.customers, customer_id, "customer")
        return customer

    def _score(
        self, customer: Customer, amount: float, ip_country: str | None
    ) -> tuple[int, list[str]]:
        if customer.status == "blocked":
            return 100, ["customer_blocked"]
        score, reasons = 5, []
        if amount >= 5000:
            score, reasons = score + 50, [*reasons, "amount_over_5000"]
        elif amount >= 1000:
            score, reasons = score + 25, [*reasons, "amount_over_1000"]
        if ip_country and ip_country.upper() != customer.country:
            score, reasons = score + 25, [*reasons, "ip_country_mismatch"]
        since = (datetime.now(UTC) - timedelta(hours=1)).isoformat()
        recent = [
            c
            for c in self._store.fraud_checks.values()
            if c["customer_id"] == customer.id and c["created_at"] >= since
        ]
        if len(recent) >= 3:
            score, reasons = score + 20, [*reasons, "velocity"]
        if not any(o.customer_id == customer.id and o.payment for o in self._store.orders.values()):
            score, reasons = score + 10, [*reasons, "first_purchase"]
        if any(
            a.customer_id == customer.id and a.status == "confirmed"
            for a in self._store.fraud_alerts.values()
        ):
            score, reasons = score + 30, [*reasons, "confirmed_fraud_history"]
        return min(score, 100), reasons

    def check(
        self,
        customer_id: str,
        amount: float,
        ip_country: str | None = None,
        reference: str | None = None,
    ) -> dict[str, Any]:
        """Score a transaction; risky ones open an alert. 503 when the scorer is down."""
        if self._faults.is_enabled(Fault.FRAUD_SCORING):
            raise FraudServiceUnavailableError(
                "fraud scoring service unavailable: upstream answered 503 Service Unavailable",
                context={"upstream": "fraud-scoring", "customer_id": customer_id},
            )
        with self._store.lock:
            customer = self._customer(customer_id)
            score, reasons = self._score(customer, money(amount), ip_country)
            risk, decision = risk_for(score)
            check = {
                "id": new_id("frd"),
                "customer_id": customer.id,
                "amount": money(amount),
                "reference": reference,
                "score": score,
                "risk": risk,
                "decision": decision,
                "reasons": reasons,
                "alert_id": None,
                "created_at": now_iso(),
            }
            if decision != "approve":
                alert = FraudAlert(new_id("alr"), check["id"], customer.id, score, reasons)
                self._store.fraud_alerts[alert.id] = alert
                check["alert_id"] = alert.id
            self._store.fraud_checks[check["id"]] = check
            return dict(check)

    def get_check(self, check_id: str) -> dict[str, Any]:
        """Return a past fraud check; 404 when unknown."""
        found: dict[str, Any] = self._store.get(self._store.fraud_checks, check_id, "fraud check")
        return dict(found)

    def alerts(self, customer_id: str | None, status: str | None) -> list[dict[str, Any]]:
        """Return fraud alerts, newest first, by customer and status."""
        with self._store.lock:
            found = [
                as_dict(a)
                for a in self._store.fraud_alerts.values()
                if (customer_id is None or a.customer_id == customer_id)
                and (status is None or a.status == status)
            ]
        return sorted(found, key=lambda a: a["created_at"], reverse=True)

    def review(
        self, alert_id: str, status: str, reviewer: str, notes: str | None
    ) -> dict[str, Any]:
        """Confirm or dismiss an open alert; 409 when it was reviewed already."""
        with self._store.lock:
            alert: FraudAlert = self._store.get(self._store.fraud_alerts, alert_id, "fraud alert")
            if alert.status != "open":
                raise ConflictError(f"fraud alert {alert_id!r} was already {alert.status}")
            alert.status, alert.reviewer, alert.notes = status, reviewer, notes
            alert.reviewed_at = now_iso()
            return as_dict(alert)
