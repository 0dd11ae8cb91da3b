"""The service's HTML pages: a home page and a small product catalogue."""

from __future__ import annotations

import html
from dataclasses import dataclass

from fastapi import APIRouter
from fastapi.responses import HTMLResponse

__all__ = ["PRODUCTS", "Product", "router"]

router = APIRouter()


@dataclass(frozen=True)
class Product:
    """One product of the catalogue."""

    id: int
    name: str
    price_cents: int
    description: str


PRODUCTS: dict[int, Product] = {
    p.id: p
    for p in (
        Product(1, "Cast-iron skillet", 3_499, "Pre-seasoned 26 cm skillet."),
        Product(2, "Chef's knife", 5_900, "20 cm stainless steel blade."),
        Product(3, "Recipe box", 1_250, "Oak box with 100 blank cards."),
        Product(4, "Spice rack", 2_775, "Holds 24 jars, wall or counter."),
        Product(5, "Cutting board", 1_999, "End-grain walnut, 40 x 30 cm."),
    )
}


def _page(title: str, body: str, *, status_code: int = 200) -> HTMLResponse:
    document = (
        "<!doctype html>\n"
        f'<html lang="en"><head><meta charset="utf-8"><title>{html.escape(title)}</title></head>'
        '<body><nav id="nav"><a id="nav-home" href="/">Home</a> '
        '<a id="nav-products" href="/products">Products</a></nav>'
        f'<main id="content"><h1 id="title">{html.escape(title)}</h1>{body}</main>'
        "</body></html>\n"
    )
    return HTMLResponse(document, status_code=status_code)


def _price(cents: int) -> str:
    return f"${cents // 100}.{cents % 100:02d}"


@router.get("/", response_class=HTMLResponse)
async def home() -> HTMLResponse:
    """Render the home page."""
    body = (
        '<p id="welcome">Kitchen goods for people who cook.</p>'
        '<p><a id="browse-products" href="/products">Browse products</a></p>'
    )
    return _page("Sample Shop", body)


@router.get("/products", response_class=HTMLResponse)
async def products_page() -> HTMLResponse:
    """Render the product list."""
    items = "".join(
        f'<li class="product" data-product-id="{p.id}">'
        f'<a href="/products/{p.id}">{html.escape(p.name)}</a>'
        f' <span class="price">{_price(p.price_cents)}</span></li>'
        for p in PRODUCTS.values()
    )
    return _page("Products", f'<ul id="product-list">{items}</ul>')


@router.get("/products/{product_id}", response_class=HTMLResponse)
async def product_page(product_id: int) -> HTMLResponse:
    """Render one product, or a 404 page."""
    product = PRODUCTS.get(product_id)
    if product is None:
        return _page("Product not found", '<p id="error">No such product.</p>', status_code=404)
    body = (
        f'<p id="product-name">{html.escape(product.name)}</p>'
        f'<p id="product-price" class="price">{_price(product.price_cents)}</p>'
        f'<p id="product-description">{html.escape(product.description)}</p>'
    )
    return _page(product.name, body)
