"""bench/ui.py's shop: a home page, a catalogue, product pages, a search form, a 404.

A FastAPI app served in a subprocess of its own (`serve`, `site_process`), so the browsers and
the site do not share a GIL; the sample service's own pages are being reworked, and a benchmark
must not move with them.
"""

from __future__ import annotations

import subprocess
import sys
import time
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from html import escape
from pathlib import Path

import httpx
from fastapi import FastAPI
from fastapi.responses import HTMLResponse

__all__ = ["CATEGORIES", "PRODUCTS", "Product", "price", "serve", "site", "site_process"]

START_TIMEOUT_S = 60.0


@dataclass(frozen=True)
class Product:
    id: int
    name: str
    price_cents: int
    category: str
    description: str


PRODUCTS = {
    p.id: p
    for p in (
        Product(1, "Cast-iron skillet", 3_499, "cookware", "Pre-seasoned 26 cm skillet."),
        Product(2, "Chef's knife", 5_900, "knives", "20 cm stainless steel blade."),
        Product(3, "Recipe box", 1_250, "storage", "Oak box with 100 blank cards."),
        Product(4, "Spice rack", 2_775, "storage", "Holds 24 jars, wall or counter."),
        Product(5, "Cutting board", 1_999, "cookware", "End-grain walnut, 40 x 30 cm."),
    )
}
CATEGORIES = {"cookware": "Cookware", "knives": "Knives", "storage": "Storage"}


def price(cents: int) -> str:
    """Return cents as the site shows them: `$34.99`."""
    return f"${cents // 100}.{cents % 100:02d}"


def _page(title: str, body: str, status_code: int = 200) -> HTMLResponse:
    return HTMLResponse(
        '<!doctype html><html lang="en"><head><meta charset="utf-8">'
        f"<title>{escape(title)}</title></head><body>"
        '<nav><a id="nav-home" href="/">Home</a> <a id="nav-products" href="/products">'
        'Products</a> <a id="nav-search" href="/search">Search</a></nav>'
        f'<main><h1 id="title">{escape(title)}</h1>{body}</main></body></html>',
        status_code=status_code,
    )


def _items(products: Sequence[Product], css: str) -> str:
    return "".join(
        f'<li class="{css}" data-product-id="{p.id}"><a href="/products/{p.id}">'
        f'{escape(p.name)}</a> <span class="price">{price(p.price_cents)}</span></li>'
        for p in products
    )


def site() -> FastAPI:
    """Return the shop the checks run against."""
    app = FastAPI()

    @app.get("/")
    async def home() -> HTMLResponse:
        return _page(
            "Bench Shop",
            '<p id="welcome">Kitchen goods for people who cook.</p>'
            '<p><a id="browse-products" href="/products">Browse products</a></p>'
            '<div id="news"></div><script>setTimeout(() => { document.getElementById("news")'
            ".innerHTML = \"<p id='offer'>Free delivery this week</p>\"; }, 30);</script>",
        )

    @app.get("/products")
    async def catalogue() -> HTMLResponse:
        items = _items(list(PRODUCTS.values()), "product")
        return _page("Products", f'<ul id="product-list">{items}</ul>')

    @app.get("/products/{product_id}")
    async def product(product_id: int) -> HTMLResponse:
        item = PRODUCTS.get(product_id)
        if item is None:
            return _page("Product not found", '<p id="error">No such product.</p>', 404)
        return _page(
            item.name,
            f'<p id="product-price" class="price">{price(item.price_cents)}</p>'
            f'<p id="product-description">{escape(item.description)}</p>',
        )

    @app.get("/search")
    async def search(q: str = "", category: str = "") -> HTMLResponse:
        options = "".join(
            f'<option value="{key}"{" selected" if key == category else ""}>{name}</option>'
            for key, name in {"": "All", **CATEGORIES}.items()
        )
        found = [
            p
            for p in PRODUCTS.values()
            if q.lower() in p.name.lower() and category in ("", p.category)
        ]
        results = (
            f'<p id="summary">{len(found)} result(s)</p><ul id="results">'
            f"{_items(found, 'result')}</ul>"
        )
        return _page(
            "Search",
            f'<form id="search" action="/search"><input id="q" name="q" value="{escape(q)}">'
            f'<select id="category" name="category">{options}</select>'
            f'<button id="go" type="submit">Search</button></form>{results}',
        )

    return app


def serve() -> None:
    """In the site's subprocess: serve the site, print its URL, stop when stdin closes."""
    from immunity.examples.sample_service import start_server

    server = start_server(site())
    print(server.base_url, flush=True)
    sys.stdin.read()
    server.stop()


@contextmanager
def site_process(workdir: Path) -> Iterator[str]:
    """Run the site in a subprocess; yield its base URL once its home page answers."""
    log_path = workdir / "site.log"
    command = [sys.executable, str(Path(__file__).resolve())]
    with log_path.open("w") as log:
        process = subprocess.Popen(
            command, stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=log, text=True
        )
    assert process.stdin is not None and process.stdout is not None
    try:
        base_url = process.stdout.readline().strip()
        if not base_url.startswith("http"):
            raise RuntimeError(f"the site did not start:\n{log_path.read_text()}")
        deadline = time.monotonic() + START_TIMEOUT_S
        while httpx.get(base_url + "/", timeout=5).status_code != 200:
            if time.monotonic() > deadline:
                raise RuntimeError(f"{base_url}/ did not answer 200")
            time.sleep(0.1)
        yield base_url
    finally:
        process.stdin.close()  # the site stops at end of input
        try:
            process.wait(timeout=15)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()


if __name__ == "__main__":
    serve()
