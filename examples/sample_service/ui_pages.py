"""The shop's web UI: its pages and assets, the small API behind them, and page-error intake.

Pages: home, products, a product, search, cart, checkout, sign in, orders, dashboard, settings,
help. The UI faults that are on are rendered into each page (`<html data-faults>`) so the shared
script misbehaves the way each incident did; `ui_failing_api` breaks `GET /api/ui/orders` itself.
A page's uncaught JavaScript error comes back to `POST /api/client-errors` and is reported as a
failure event (`source: browser`) with the breadcrumbs of the user's last actions.
"""

from __future__ import annotations

import hmac
import html
from collections.abc import Iterable
from typing import Annotated, Any

from fastapi import APIRouter, HTTPException, Query, Request
from fastapi.responses import HTMLResponse, Response
from pydantic import BaseModel, Field

from .errors import ServiceError
from .faults import Fault
from .shop import Shop
from .ui_assets import UI_CSS, UI_JS
from .ui_events import ClientErrorIn, browser_failure_event
from .ui_views import (
    CATALOG,
    field,
    home_body,
    options,
    product_body,
    products_body,
    render_page,
    spinner,
    storefront_ids,
)

__all__ = ["DEMO_USERS", "OrdersFeedError", "router"]

router = APIRouter()
# The demo account (email → password, name); a real shop would check a password hash.
DEMO_USERS = {"demo@example.com": ("demo-password", "Demo Shopper")}
HOME = ("Home", "/")
_BY_ID = {product.id: product for product in CATALOG}


class OrdersFeedError(ServiceError):
    """The orders feed behind the orders page and the dashboard could not be read."""


def _page(
    request: Request,
    page: str,
    title: str,
    body: str,
    trail: Iterable[tuple[str, str | None]] = (),
    status_code: int = 200,
) -> HTMLResponse:
    services = request.app.state.services
    return render_page(
        shop=services.shop,
        faults=services.faults,
        release=services.release,
        page=page,
        title=title,
        body=body,
        trail=[HOME, *trail] if page != "home" else [],
        status_code=status_code,
    )


@router.get("/", response_class=HTMLResponse)
async def home(request: Request) -> HTMLResponse:
    """Render the home page."""
    return _page(request, "home", "Sample Shop", home_body())


@router.get("/products", response_class=HTMLResponse)
async def products_page(request: Request) -> HTMLResponse:
    """Render the product list."""
    return _page(request, "products", "Products", products_body(), [("Products", None)])


@router.get("/products/{product_id}", response_class=HTMLResponse)
async def product_page(request: Request, product_id: int) -> HTMLResponse:
    """Render one product, or a 404 page."""
    product = _BY_ID.get(product_id)
    if product is None:
        body = (
            '<p id="error">No such product.</p>'
            '<p><a id="back-to-products" href="/products">Back to all products</a></p>'
        )
        trail = [("Products", "/products"), ("Not found", None)]
        return _page(request, "notfound", "Product not found", body, trail, 404)
    shop_id = storefront_ids(request.app.state.services.shop)[product.id]
    trail = [("Products", "/products"), (product.name, None)]
    return _page(request, "product", product.name, product_body(product, shop_id), trail)


@router.get("/search", response_class=HTMLResponse)
async def search_page(request: Request) -> HTMLResponse:
    """Render the search page; `?q=` runs a search on load."""
    body = (
        '<form id="search-form" role="search" novalidate>'
        '<label for="search-input">Search products</label> '
        '<input id="search-input" name="q" type="search" placeholder="e.g. knife"> '
        '<button id="search-button" type="submit">Search</button>'
        '<p id="search-error" class="field-error" role="alert" hidden></p></form>'
        f"{spinner('search-loading', 'Searching', hidden=True)}"
        '<p id="search-summary" aria-live="polite"></p>'
        '<p id="search-failed" class="error" role="alert" hidden></p>'
        '<ul id="search-results"></ul><p id="no-results" hidden></p>'
    )
    return _page(request, "search", "Search", body, [("Search", None)])


@router.get("/cart", response_class=HTMLResponse)
async def cart_page(request: Request) -> HTMLResponse:
    """Render the cart (kept in the browser's local storage)."""
    body = (
        '<p id="cart-empty" hidden>Your cart is empty. '
        '<a id="continue-shopping" href="/products">Continue shopping</a></p>'
        '<table id="cart-table" hidden><thead><tr><th>Product</th><th>Quantity</th>'
        '<th>Total</th><th></th></tr></thead><tbody id="cart-lines"></tbody>'
        '<tfoot><tr><th colspan="2">Total</th><th id="cart-total">$0.00</th><th></th></tr>'
        '</tfoot></table><p id="cart-actions" hidden>'
        '<button type="button" id="clear-cart">Empty cart</button> '
        '<a id="checkout-button" href="/checkout">Checkout</a></p>'
    )
    return _page(request, "cart", "Your cart", body, [("Cart", None)])


@router.get("/checkout", response_class=HTMLResponse)
async def checkout_page(request: Request) -> HTMLResponse:
    """Render the checkout form, validated in the browser before the order is placed."""
    countries = [
        ("US", "United States"),
        ("GB", "United Kingdom"),
        ("DE", "Germany"),
        ("FR", "France"),
        ("CA", "Canada"),
    ]
    body = (
        '<p id="checkout-empty" hidden>Your cart is empty: '
        '<a id="checkout-shop-link" href="/products">add something first</a>.</p>'
        '<p id="checkout-summary" hidden><span id="checkout-items">0</span> items, total '
        '<strong id="checkout-total">$0.00</strong></p><form id="checkout-form" novalidate hidden>'
        + field("full_name", "Full name", "full-name", extra=' autocomplete="name"')
        + field("email", "Email", "email", "email", ' autocomplete="email"')
        + field("address", "Street address", "address")
        + field("city", "City", "city")
        + '<div class="field" data-field="country"><label for="country">Country</label>'
        f'<select id="country" name="country">{options(countries)}</select>'
        '<span class="field-error" id="country-error" data-test="field-error"></span></div>'
        + field("postcode", "Postcode", "postcode")
        # data-private: the card number never goes into breadcrumbs.
        + field("card_number", "Card number", "card-number", extra=" data-private")
        + '<p id="form-summary" class="error" role="alert" hidden></p>'
        '<button type="submit" id="place-order">Place order</button> '
        '<a id="cancel-checkout" href="/cart">Cancel</a> '
        f"{spinner('checkout-loading', 'Placing your order', hidden=True)}</form>"
        '<p id="checkout-error" class="error" role="alert" hidden></p>'
        '<div id="order-confirmation" role="status" hidden><h2>Thank you!</h2>'
        '<p>Order <strong id="order-id"></strong> is placed and paid: '
        '<span id="order-total"></span>.</p>'
        '<a id="view-orders" href="/orders">View your orders</a></div>'
    )
    return _page(request, "checkout", "Checkout", body, [("Cart", "/cart"), ("Checkout", None)])


@router.get("/login", response_class=HTMLResponse)
async def login_page(request: Request) -> HTMLResponse:
    """Render the sign-in form; `?next=` is where a successful sign-in goes."""
    body = (
        '<p id="signed-out" class="notice" role="status" hidden>You are signed out.</p>'
        '<form id="login-form" novalidate>'
        + field("email", "Email", "login-email", "email", ' autocomplete="username"')
        + field(
            "password", "Password", "login-password", "password", ' autocomplete="current-password"'
        )
        + '<p><label><input type="checkbox" id="remember-me" name="remember"> Remember me'
        '</label></p><button type="submit" id="login-button">Sign in</button></form>'
        '<p id="login-error" class="error" role="alert" hidden></p>'
        '<p id="login-hint">Demo account: demo@example.com / demo-password</p>'
    )
    return _page(request, "login", "Sign in", body, [("Sign in", None)])


@router.get("/orders", response_class=HTMLResponse)
async def orders_page(request: Request) -> HTMLResponse:
    """Render the orders page; the list loads from /api/ui/orders."""
    statuses = ("pending", "paid", "processing", "shipped", "delivered", "cancelled")
    choices = [("all", "All"), *((status, status.title()) for status in statuses)]
    body = (
        '<section id="orders" data-state="loading"><h2 id="orders-scope">Orders</h2>'
        '<label for="status-filter">Status</label> '
        f'<select id="status-filter" name="status">{options(choices)}</select> '
        f"{spinner('orders-loading', 'Loading orders')}"
        '<p id="orders-error" class="error" role="alert" hidden></p>'
        '<button type="button" id="retry-orders" hidden>Try again</button>'
        '<p id="orders-empty" hidden>No orders yet. '
        '<a id="start-shopping" href="/products">Start shopping</a></p>'
        '<table id="orders-table" hidden><thead><tr><th>Order</th><th>Status</th>'
        '<th>Total</th><th></th></tr></thead><tbody id="orders-rows"></tbody></table></section>'
    )
    return _page(request, "orders", "Orders", body, [("Orders", None)])


@router.get("/dashboard", response_class=HTMLResponse)
async def dashboard_page(request: Request) -> HTMLResponse:
    """Render the dashboard; its widgets load from the shop API."""
    body = (
        '<p id="greeting"></p><p><button type="button" id="refresh-dashboard">Refresh</button> '
        '<span id="last-updated"></span> (loaded <span id="refresh-count">0</span> times) '
        f"{spinner('dashboard-loading', 'Loading dashboard')}</p>"
        '<div id="widgets" data-loaded="false"></div>'
    )
    return _page(request, "dashboard", "Dashboard", body, [("Dashboard", None)])


@router.get("/settings", response_class=HTMLResponse)
async def settings_page(request: Request) -> HTMLResponse:
    """Render the settings form (kept in the browser's local storage)."""
    themes = [("light", "Light"), ("dark", "Dark"), ("system", "Same as the system")]
    languages = [("en", "English"), ("de", "Deutsch"), ("fr", "Français")]
    body = (
        '<form id="settings-form" novalidate>'
        + field("display_name", "Display name", "display-name", extra=' maxlength="60"')
        + '<div class="field"><label for="theme">Theme</label>'
        f'<select id="theme" name="theme">{options(themes)}</select></div>'
        '<div class="field"><label for="language">Language</label>'
        f'<select id="language" name="language">{options(languages)}</select></div>'
        '<p><label><input type="checkbox" id="notifications" name="notifications"> '
        "Email me about my orders</label></p>"
        '<button type="submit" id="save-settings">Save settings</button> '
        '<button type="button" id="reset-settings">Reset to defaults</button></form>'
        '<p id="settings-saved" class="notice" role="status" hidden></p>'
    )
    return _page(request, "settings", "Settings", body, [("Settings", None)])


FAQ = (
    ("How long does delivery take?", "Orders ship within two working days."),
    ("Can I return an item?", "Yes, within 30 days of delivery, unused."),
    ("Which cards do you accept?", "Visa, Mastercard and American Express."),
    ("How do I cancel an order?", "On the orders page, before it ships."),
)


@router.get("/help", response_class=HTMLResponse)
async def help_page(request: Request) -> HTMLResponse:
    """Render the help page: questions that open their answers."""
    items = "".join(
        f'<li><button type="button" id="faq-q-{n}" data-test="faq-question" '
        f'aria-expanded="false" aria-controls="faq-a-{n}">{html.escape(question)}</button>'
        f'<p id="faq-a-{n}" data-test="faq-answer" hidden>{html.escape(answer)}</p></li>'
        for n, (question, answer) in enumerate(FAQ, start=1)
    )
    body = (
        f'<button type="button" id="expand-all">Show all answers</button><ul id="faq">{items}</ul>'
    )
    return _page(request, "help", "Help", body, [("Help", None)])


@router.get("/static/ui.js", include_in_schema=False)
async def ui_script() -> Response:
    """Serve the UI's script."""
    return Response(UI_JS, media_type="text/javascript", headers={"Cache-Control": "no-cache"})


@router.get("/static/ui.css", include_in_schema=False)
async def ui_stylesheet() -> Response:
    """Serve the UI's stylesheet."""
    return Response(UI_CSS, media_type="text/css", headers={"Cache-Control": "no-cache"})


class LoginIn(BaseModel):
    """A sign-in attempt."""

    email: str = Field(max_length=254)
    password: str = Field(max_length=200)


@router.post("/api/ui/login")
async def login(body: LoginIn) -> dict[str, Any]:
    """Sign the demo account in; 401 for anything else."""
    email = body.email.strip().lower()
    account = DEMO_USERS.get(email)
    expected = (account[0] if account else "\0").encode()
    if account is None or not hmac.compare_digest(expected, body.password.encode()):
        raise HTTPException(status_code=401, detail="Invalid email or password")
    return {"user": {"email": email, "name": account[1]}}


def _read_orders(
    services: Any, customer_id: str | None, status: str | None, limit: int
) -> list[dict[str, Any]]:
    if services.faults.is_enabled(Fault.UI_FAILING_API):
        raise OrdersFeedError(
            "orders feed unavailable: the read replica refused the connection",
            context={"replica": "orders-ro-2"},
        )
    shop: Shop = services.shop
    return [shop.orders.to_dict(order) for order in shop.orders.list(customer_id, status, limit)]


@router.get("/api/ui/orders")
async def ui_orders(
    request: Request,
    customer_id: Annotated[str | None, Query(max_length=64)] = None,
    status: Annotated[str | None, Query(max_length=32)] = None,
    limit: Annotated[int, Query(ge=1, le=100)] = 20,
) -> dict[str, Any]:
    """Return the orders the UI lists (one customer's, or everyone's), newest first."""
    return {"items": _read_orders(request.app.state.services, customer_id, status, limit)}


@router.post("/api/client-errors", status_code=202)
async def client_error(report: ClientErrorIn, request: Request) -> dict[str, Any]:
    """Report a page's uncaught JavaScript error as a failure event (`source: browser`)."""
    services = request.app.state.services
    marked = {k: v for k, v in request.headers.items() if k.lower() == "x-immunity-replay"}
    event = browser_failure_event(
        report, environment=services.environment, release=services.release, headers=marked
    )
    reporter = request.app.state.reporter
    if reporter is not None:
        reporter.capture_failure(event)
    return {"accepted": True}
