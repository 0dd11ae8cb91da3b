"""Seeded bugs: real code mistakes planted in a git copy of the sample service, one at a time.

Each bug is an exact replacement in one file of the pristine service and one request that makes
a freshly started copy answer 500 with a known exception; `offline_fixable` says whether the
offline fix rules are expected to turn that 500 back into an answer. They measure the heal loop.
"""

from __future__ import annotations

import shutil
import subprocess
from dataclasses import dataclass
from pathlib import Path
from typing import Any

__all__ = ["SEEDED_BUGS", "SeededBug", "apply_bug", "seed_repo"]

PROJECT_ROOT = Path(__file__).resolve().parents[1]
_SERVICE = Path("examples") / "sample_service"


@dataclass(frozen=True)
class SeededBug:
    """One planted mistake and the request that exposes it."""

    name: str
    path: str
    correct: str
    buggy: str
    method: str
    url_path: str
    body: Any
    error_type: str
    description: str
    offline_fixable: bool


SEEDED_BUGS: tuple[SeededBug, ...] = (
    SeededBug(
        name="average-order-value-without-orders",
        path="examples/sample_service/shop_orders.py",
        correct='"average_order_value": money(gross / len(paid)) if paid else 0.0,',
        buggy='"average_order_value": money(gross / len(paid)),',
        method="GET",
        url_path="/api/shop/analytics/orders",
        body=None,
        error_type="ZeroDivisionError",
        description="The average order value divides by the number of paid orders, which is 0 "
        "before anything is paid (the `if paid` guard was dropped).",
        offline_fixable=True,
    ),
    SeededBug(
        name="catalog-search-without-query",
        path="examples/sample_service/shop.py",
        correct='needle = (query or "").lower()',
        buggy="needle = query.lower()",
        method="GET",
        url_path="/api/shop/products",
        body=None,
        error_type="AttributeError",
        description="The catalog search lower-cases the optional `q` parameter without a None "
        "check, so listing products without a search term fails.",
        offline_fixable=True,
    ),
    SeededBug(
        name="catalog-page-offset-optional",
        path="examples/sample_service/shop_routes.py",
        correct="offset: Annotated[int, Query(ge=0)] = 0,",
        buggy="offset: Annotated[int | None, Query(ge=0)] = None,",
        method="GET",
        url_path="/api/shop/products?limit=10",
        body=None,
        error_type="TypeError",
        description="The `offset` query parameter was made optional with a None default; the "
        "search then adds None to the page size when slicing.",
        offline_fixable=True,
    ),
    SeededBug(
        name="storefront-threshold-required",
        path="examples/sample_service/shop.py",
        correct='low_stock_threshold=fields.get("low_stock_threshold", 5),',
        buggy='low_stock_threshold=fields["low_stock_threshold"],',
        method="GET",
        url_path="/",
        body=None,
        error_type="KeyError",
        description="Product creation reads the optional `low_stock_threshold` field by "
        "subscript; the storefront's products do not give one, so the first page view fails. "
        "A `.get()` without the default of 5 stops the 500 but leaves the threshold None.",
        offline_fixable=True,
    ),
    SeededBug(
        name="quality-report-last-completed",
        path="examples/sample_service/shop_quality.py",
        correct='"completed": len(done),',
        buggy='"completed": len(done),\n            "last_completed_at": done[-1].completed_at,',
        method="GET",
        url_path="/api/shop/quality/report",
        body=None,
        error_type="IndexError",
        description="A new `last_completed_at` field reads the last completed inspection "
        "without checking that there is one.",
        offline_fixable=True,
    ),
    SeededBug(
        name="html-project-router-lookup",
        path="examples/sample_service/generation.py",
        correct='if feature in {"recipe", "blog", "dashboard"} and framework in _ROUTER:',
        buggy='if feature in {"recipe", "blog", "dashboard"}:',
        method="POST",
        url_path="/api/generate",
        body={"prompt": "a recipe website", "framework": "html"},
        error_type="KeyError",
        description="The router lookup lost its membership check: plain-HTML projects have no "
        "router, so `_ROUTER[framework]` fails. The fix is the missing condition, not a default.",
        offline_fixable=False,
    ),
    SeededBug(
        name="product-page-parses-its-id",
        path="examples/sample_service/ui_pages.py",
        correct="async def product_page(request: Request, product_id: int) -> HTMLResponse:\n"
        '    """Render one product, or a 404 page."""\n'
        "    product = _BY_ID.get(product_id)",
        buggy="async def product_page(request: Request, product_id: str) -> HTMLResponse:\n"
        '    """Render one product, or a 404 page."""\n'
        "    product = _BY_ID.get(int(product_id))",
        method="GET",
        url_path="/products/not-a-number",
        body=None,
        error_type="ValueError",
        description="The product page parses its path parameter with int() itself instead of "
        "letting FastAPI validate it, so a non-numeric id is a 500 instead of a 4xx.",
        offline_fixable=False,
    ),
    SeededBug(
        name="analytics-counter-import-dropped",
        path="examples/sample_service/shop_orders.py",
        correct="from collections import Counter\nfrom datetime import UTC, datetime\n",
        buggy="from datetime import UTC, datetime\n",
        method="GET",
        url_path="/api/shop/analytics/orders",
        body=None,
        error_type="NameError",
        description="An import clean-up removed `Counter`, which the order analytics still use.",
        offline_fixable=False,
    ),
)


def apply_bug(text: str, bug: SeededBug) -> str:
    """Return the text with the bug's snippet replaced; ValueError unless it occurs exactly once."""
    found = text.count(bug.correct)
    if found != 1:
        raise ValueError(f"{bug.name}: the snippet occurs {found} times in {bug.path}, not once")
    return text.replace(bug.correct, bug.buggy, 1)


def _git(repo: Path, *args: str) -> str:
    done = subprocess.run(["git", *args], cwd=repo, check=True, capture_output=True, text=True)
    return done.stdout.strip()


def seed_repo(dest: Path, bug: SeededBug | None = None) -> str:
    """Return the HEAD sha of a new git repository holding the sample service, bug committed."""
    dest.mkdir(parents=True, exist_ok=True)
    (dest / "examples").mkdir(exist_ok=True)
    shutil.copy2(PROJECT_ROOT / "examples" / "__init__.py", dest / "examples" / "__init__.py")
    shutil.copytree(
        PROJECT_ROOT / _SERVICE,
        dest / _SERVICE,
        ignore=shutil.ignore_patterns("__pycache__", "*.pyc"),
    )
    _git(dest, "init", "-q", "-b", "main")
    _git(dest, "config", "user.name", "immunity tests")
    _git(dest, "config", "user.email", "immunity-tests@example.com")
    _git(dest, "add", "examples")
    _git(dest, "commit", "-q", "-m", "Sample service")
    if bug is not None:
        target = dest / bug.path
        # Bytes, not text mode: line endings stay exactly as committed.
        buggy = apply_bug(target.read_bytes().decode("utf-8"), bug)
        target.write_bytes(buggy.encode("utf-8"))
        _git(dest, "add", bug.path)
        _git(dest, "commit", "-q", "-m", f"Introduce {bug.name}")
    return _git(dest, "rev-parse", "HEAD")
