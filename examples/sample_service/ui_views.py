"""The storefront catalogue and the HTML the UI pages share: layout, header, form fields.

Every page loads /static/ui.js, carries the catalogue as JSON (`#page-data`) and names its UI
faults in `<html data-faults>`; ids, `data-test` attributes and `data-field` wrappers are the
stable selectors UI tests and breadcrumbs use.
"""

from __future__ import annotations

import html
import json
from collections.abc import Iterable
from dataclasses import dataclass

from fastapi.responses import HTMLResponse

from .faults import UI_FAULTS, FaultState
from .shop import Shop

__all__ = [
    "CATALOG",
    "CATEGORIES",
    "STOREFRONT_CATEGORY",
    "CatalogProduct",
    "field",
    "home_body",
    "options",
    "price",
    "product_body",
    "products_body",
    "render_page",
    "spinner",
    "storefront_ids",
]

STOREFRONT_CATEGORY = "storefront"
e = html.escape


@dataclass(frozen=True)
class CatalogProduct:
    """One product of the storefront, with the pages' own numeric id."""

    id: int
    name: str
    price_cents: int
    category: str
    description: str
    featured: bool = False

    @property
    def sku(self) -> str:
        """The shop SKU the storefront keeps this product under."""
        return f"STOREFRONT-{self.id:03d}"


CATALOG: tuple[CatalogProduct, ...] = (
    CatalogProduct(1, "Cast-iron skillet", 3_499, "cookware", "Pre-seasoned 26 cm skillet.", True),
    CatalogProduct(2, "Chef's knife", 5_900, "tools", "20 cm stainless steel blade.", True),
    CatalogProduct(3, "Recipe box", 1_250, "storage", "Oak box with 100 blank cards."),
    CatalogProduct(4, "Spice rack", 2_775, "storage", "Holds 24 jars, wall or counter."),
    CatalogProduct(5, "Cutting board", 1_999, "tools", "End-grain walnut, 40 x 30 cm.", True),
    CatalogProduct(6, "Dutch oven", 8_900, "cookware", "Enamelled cast iron, 5.5 litres."),
    CatalogProduct(7, "Mixing bowls", 2_450, "tools", "Three nesting stainless steel bowls."),
    CatalogProduct(8, "Salt cellar", 1_500, "storage", "Olive wood with a swivel lid."),
)
CATEGORIES = ("cookware", "tools", "storage")
NAV = (
    ("nav-home", "/", "Home", {"home"}),
    ("nav-products", "/products", "Products", {"products", "product"}),
    ("nav-search", "/search", "Search", {"search"}),
    ("nav-orders", "/orders", "Orders", {"orders"}),
    ("nav-dashboard", "/dashboard", "Dashboard", {"dashboard"}),
    ("nav-settings", "/settings", "Settings", {"settings"}),
    ("nav-help", "/help", "Help", {"help"}),
    ("nav-cart", "/cart", 'Cart (<span id="cart-count" data-test="cart-count">0</span>)', {"cart"}),
    ("nav-login", "/login", "Sign in", {"login"}),
)


def storefront_ids(shop: Shop) -> dict[int, str]:
    """Return each catalogue product's shop id, adding the storefront to the shop on first use."""
    _, found = shop.products.search(STOREFRONT_CATEGORY, None, None, 200, 0)
    by_sku = {product.sku: product.id for product in found}
    for product in CATALOG:
        if product.sku not in by_sku:
            created = shop.products.create(
                {
                    "sku": product.sku,
                    "name": product.name,
                    "description": product.description,
                    "price": product.price_cents / 100,
                    "category": STOREFRONT_CATEGORY,
                    "stock": 100_000,  # a long demo's many checkouts never sell it out
                }
            )
            by_sku[product.sku] = created.id
    return {product.id: by_sku[product.sku] for product in CATALOG}


def price(cents: int) -> str:
    """Return cents as dollars, e.g. `$34.99`."""
    return f"${cents // 100}.{cents % 100:02d}"


def _page_data(shop: Shop) -> str:
    ids = storefront_ids(shop)
    catalog = {
        str(p.id): {
            "id": str(p.id),
            "name": p.name,
            "price_cents": p.price_cents,
            "category": p.category,
            "sku": p.sku,
            "shop_id": ids[p.id],
        }
        for p in CATALOG
    }
    # `<` escaped so no product text can close the script element.
    return json.dumps({"catalog": catalog}).replace("<", "\\u003c")


def _header(page: str) -> str:
    current = ' aria-current="page"'
    links = "".join(
        f'<a id="{id_}" href="{href}"{current if page in pages else ""}>{label}</a>'
        for id_, href, label, pages in NAV
    )
    return (
        f'<header id="site-header"><a id="brand" href="/">Sample Shop</a>'
        f'<nav id="nav" aria-label="Main">{links}</nav><span id="user-name" hidden></span>'
        '<button type="button" id="logout-button" hidden>Sign out</button></header>'
    )


def _trail(trail: Iterable[tuple[str, str | None]]) -> str:
    parts = [
        f'<a data-test="crumb" href="{href}">{e(label)}</a>'
        if href
        else f'<span aria-current="page">{e(label)}</span>'
        for label, href in trail
    ]
    if not parts:
        return ""
    return f'<nav id="page-breadcrumbs" aria-label="Breadcrumb">{" › ".join(parts)}</nav>'


def render_page(
    *,
    shop: Shop,
    faults: FaultState,
    release: str,
    page: str,
    title: str,
    body: str,
    trail: Iterable[tuple[str, str | None]] = (),
    status_code: int = 200,
) -> HTMLResponse:
    """Return a whole page: header, breadcrumb trail, the body under an h1, toast and footer."""
    on = " ".join(fault.value for fault in UI_FAULTS if faults.is_enabled(fault))
    full_title = title if page == "home" else f"{title} | Sample Shop"
    document = (
        "<!doctype html>\n"
        f'<html lang="en" data-page="{page}" data-faults="{on}"><head><meta charset="utf-8">'
        f"<title>{e(full_title)}</title>"
        # An empty icon: the browser must not ask for /favicon.ico (a 404 is a failed request).
        '<link rel="icon" href="data:,"><link rel="stylesheet" href="/static/ui.css">'
        '<script src="/static/ui.js"></script>'
        f'<script id="page-data" type="application/json">{_page_data(shop)}</script>'
        f"</head><body>{_header(page)}{_trail(trail)}"
        f'<main id="content"><h1 id="title">{e(title)}</h1>{body}</main>'
        '<div id="toast" data-test="toast" role="status" hidden></div>'
        f'<footer id="footer">Sample Shop · release {e(release)}</footer>'
        "</body></html>\n"
    )
    return HTMLResponse(document, status_code=status_code)


def field(name: str, label: str, id_: str, type_: str = "text", extra: str = "") -> str:
    """Return a labelled input in a `data-field` wrapper with its error message element."""
    return (
        f'<div class="field" data-field="{name}"><label for="{id_}">{label}</label>'
        f'<input id="{id_}" name="{name}" type="{type_}" aria-invalid="false"{extra}>'
        f'<span class="field-error" id="{id_}-error" data-test="field-error"></span></div>'
    )


def options(pairs: Iterable[tuple[str, str]]) -> str:
    """Return `<option>`s for (value, text) pairs."""
    return "".join(f'<option value="{value}">{e(text)}</option>' for value, text in pairs)


def spinner(id_: str, label: str, *, hidden: bool = False) -> str:
    """Return a loading spinner, announced to screen readers by its label."""
    flag = " hidden" if hidden else ""
    return f'<span id="{id_}" class="spinner" role="status" aria-label="{label}"{flag}></span>'


def home_body() -> str:
    """Return the home page: welcome, a search box and the featured products."""
    featured = "".join(
        f'<li data-test="featured-product" data-product-id="{p.id}">'
        f'<a href="/products/{p.id}">{e(p.name)}</a> <span class="price">'
        f"{price(p.price_cents)}</span></li>"
        for p in CATALOG
        if p.featured
    )
    return (
        '<p id="welcome">Kitchen goods for people who cook.</p>'
        '<p><a id="browse-products" href="/products">Browse products</a></p>'
        '<form id="home-search" action="/search" method="get" role="search">'
        '<label for="home-search-input">Search the shop</label> '
        '<input id="home-search-input" name="q" type="search"> '
        '<button id="home-search-button" type="submit">Search</button></form>'
        f'<h2>Featured</h2><ul id="featured">{featured}</ul>'
    )


def products_body() -> str:
    """Return the product list with its filters; availability loads from the shop API."""
    cards = "".join(
        f'<li class="product" data-test="product-card" data-product-id="{p.id}" '
        f'data-sku="{p.sku}" data-category="{p.category}" data-price="{p.price_cents}" '
        f'data-name="{e(p.name)}" data-rank="{rank}">'
        f'<a class="product-link" id="product-link-{p.id}" href="/products/{p.id}">{e(p.name)}</a>'
        f' <span class="price">{price(p.price_cents)}</span> '
        '<span class="availability" data-test="availability">Checking stock…</span> '
        f'<button type="button" id="add-to-cart-{p.id}" class="add-to-cart" '
        f'data-test="add-to-cart" data-product-id="{p.id}">Add to cart</button></li>'
        for rank, p in enumerate(CATALOG)
    )
    categories = [("all", "All categories"), *((c, c.title()) for c in CATEGORIES)]
    sorts = [
        ("featured", "Featured"),
        ("price-asc", "Price: low to high"),
        ("price-desc", "Price: high to low"),
        ("name", "Name"),
    ]
    return (
        '<div id="product-filters"><label for="category-filter">Category</label> '
        f'<select id="category-filter" name="category">{options(categories)}</select> '
        f'<label for="sort">Sort by</label> <select id="sort" name="sort">{options(sorts)}'
        f'</select></div><p><span id="product-count">{len(CATALOG)} products</span> '
        f"{spinner('products-loading', 'Loading availability')}</p>"
        '<p id="products-error" class="error" role="alert" hidden></p>'
        f'<ul id="product-list">{cards}</ul>'
    )


def product_body(product: CatalogProduct, shop_id: str) -> str:
    """Return one product's page: details, live stock, quantity and add-to-cart."""
    return (
        f'<p id="product-name">{e(product.name)}</p>'
        f'<p id="product-price" class="price">{price(product.price_cents)}</p>'
        f'<p id="product-description">{e(product.description)}</p>'
        f'<p id="product-category">Category: {product.category.title()}</p>'
        f'<div id="stock" data-shop-id="{shop_id}">{spinner("stock-loading", "Checking stock")}'
        '<span id="stock-level" hidden></span></div>'
        '<p><label for="quantity">Quantity</label> <select id="quantity" name="quantity">'
        f"{options((str(n), str(n)) for n in range(1, 6))}</select> "
        '<button type="button" id="add-to-cart" data-test="add-to-cart" '
        f'data-product-id="{product.id}">Add to cart</button></p>'
        '<p><a id="back-to-products" href="/products">Back to all products</a> · '
        '<a id="go-to-cart" href="/cart">View cart</a></p>'
    )
