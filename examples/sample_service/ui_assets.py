"""The shop UI's stylesheet and script, served as /static/ui.css and /static/ui.js.

All behaviour lives in one served script rather than inline in each page, so a JavaScript error's
frames name the same file and functions on every page and group into one signature. The script is
this module's core (breadcrumbs, error reporting, storage, header, cart) followed by the pages'
behaviour from `ui_scripts`.
"""

from __future__ import annotations

from .ui_scripts import PAGES_JS

__all__ = ["CORE_JS", "UI_CSS", "UI_JS"]

UI_CSS = """
[hidden] { display: none !important; }
body { font: 15px/1.5 system-ui, sans-serif; margin: 0; color: #222; background: #fafafa; }
html[data-theme="dark"] body { color: #eee; background: #1d1f21; }
header { display: flex; gap: 1rem; align-items: center; padding: .6rem 1rem; background: #264653; }
header a, header button, header span { color: #fff; }
#brand { font-weight: 700; text-decoration: none; }
#nav { display: flex; gap: .8rem; flex-wrap: wrap; }
#nav a[aria-current="page"] { text-decoration: underline; font-weight: 600; }
#page-breadcrumbs { padding: .4rem 1rem; font-size: .9rem; }
main { padding: 0 1rem 2rem; max-width: 60rem; }
.spinner { display: inline-block; width: 1rem; height: 1rem; border: 2px solid #999;
  border-top-color: transparent; border-radius: 50%; animation: spin .8s linear infinite; }
@keyframes spin { to { transform: rotate(360deg); } }
.field { margin: .5rem 0; }
.field label { display: block; font-weight: 600; }
.field.invalid input, .field.invalid select { border: 2px solid #c0392b; }
.field-error, .error { color: #c0392b; }
.notice { color: #1e7e34; }
td, th { padding: .3rem .6rem; border-bottom: 1px solid #ddd; text-align: left; }
#widgets { display: flex; gap: 1rem; flex-wrap: wrap; }
.widget { border: 1px solid #ccc; border-radius: 6px; padding: .5rem 1rem; min-width: 14rem; }
#toast { position: fixed; bottom: 1rem; right: 1rem; background: #264653; color: #fff;
  padding: .5rem 1rem; border-radius: 4px; }
footer { padding: 1rem; font-size: .8rem; color: #777; }
"""

CORE_JS = r"""/* Sample Shop UI: breadcrumbs, error reporting, storage, the header and the cart. */
"use strict";
const ROOT = document.documentElement;
const FAULTS = new Set((ROOT.dataset.faults || "").split(" ").filter(Boolean));
const MAX_CRUMBS = 20, MAX_REPORTS = 10;
const crumbs = [], pending = new Set();
let reports = 0, DATA = {catalog: {}};

// --- breadcrumbs: this page's last user actions, shaped like UI test steps (replayable after
// opening the page's URL, which the error report carries)
function isUnique(selector) {
  try { return document.querySelectorAll(selector).length === 1; } catch (err) { return false; }
}
function selectorPart(el) {
  if (el.id) return "#" + CSS.escape(el.id);
  const tag = el.tagName.toLowerCase();
  if (el.dataset.test) {
    const product = el.dataset.productId ? `[data-product-id="${el.dataset.productId}"]` : "";
    return `[data-test="${el.dataset.test}"]${product}`;
  }
  if (el.name) return `${tag}[name="${el.name}"]`;
  let index = 1;
  for (let sib = el.previousElementSibling; sib; sib = sib.previousElementSibling) {
    if (sib.tagName === el.tagName) index++;
  }
  return `${tag}:nth-of-type(${index})`;
}
function selectorFor(el) {
  let selector = selectorPart(el);
  for (let node = el.parentElement; node && node !== ROOT && !isUnique(selector);
    node = node.parentElement) {
    selector = selectorPart(node) + " " + selector;
  }
  return selector;
}
const NOT_TEXT = ["checkbox", "radio", "submit", "button", "reset", "file", "hidden"];
function isTextField(el) {
  return el.tagName === "TEXTAREA" || (el.tagName === "INPUT" && !NOT_TEXT.includes(el.type));
}
function addCrumb(crumb) {
  crumbs.push(crumb);
  if (crumbs.length > MAX_CRUMBS) crumbs.shift();
}
function typedCrumb(el) {
  pending.delete(el);
  const crumb = {action: "type", selector: selectorFor(el)};
  if (el.type !== "password" && !("private" in el.dataset)) crumb.value = el.value;
  addCrumb(crumb);
}
// A field typed into but not yet left (no `change` yet) is recorded before the next action.
function flushTyping() { [...pending].forEach(typedCrumb); }
document.addEventListener("input", (e) => {
  if (isTextField(e.target)) pending.add(e.target);
}, true);
document.addEventListener("change", function onChangeCrumb(e) {
  const el = e.target;
  if (el.tagName === "SELECT") {
    addCrumb({action: "select", selector: selectorFor(el), value: el.value});
  } else if (isTextField(el)) {
    typedCrumb(el);
  }
}, true);
document.addEventListener("click", function onClickCrumb(e) {
  const el = e.target.closest("a,button,input,select,textarea,label,summary,[data-test],[id]");
  if (!el || el.tagName === "SELECT" || isTextField(el)) return;
  flushTyping();
  addCrumb({action: "click", selector: selectorFor(el)});
}, true);
document.addEventListener("submit", function onSubmitCrumb(e) {
  flushTyping();
  addCrumb({action: "submit", selector: selectorFor(e.target)});
}, true);

// --- error reporting: uncaught errors and rejections go to the service with the breadcrumbs
function reportError(error, fallback) {
  if (reports >= MAX_REPORTS) return;  // a handler that throws in a loop must not flood
  reports++;
  flushTyping();
  const body = {
    url: location.href,
    name: String((error && error.name) || "Error"),
    message: String((error && error.message) || fallback || "Script error"),
    stack: error && error.stack ? String(error.stack) : null,
    breadcrumbs: crumbs.slice(),
  };
  fetch("/api/client-errors", {
    method: "POST", keepalive: true, headers: {"Content-Type": "application/json"},
    body: JSON.stringify(body),
  }).catch(() => {});
}
window.addEventListener("error", (e) => reportError(e.error, e.message));
window.addEventListener("unhandledrejection", (e) => reportError(e.reason instanceof Error
  ? e.reason : {name: "UnhandledRejection", message: String(e.reason)}));

// --- helpers
const $ = (selector, root) => (root || document).querySelector(selector);
const $$ = (selector, root) => [...(root || document).querySelectorAll(selector)];
const show = (el, on) => { if (el) el.hidden = !on; };
const money = (cents) => "$" + (cents / 100).toFixed(2);
const dollars = (amount) => money(Math.round(amount * 100));
const plural = (n, word) => `${n} ${word}${n === 1 ? "" : "s"}`;
const params = new URLSearchParams(location.search);
function h(tag, attrs, ...children) {
  const el = document.createElement(tag);
  for (const [key, value] of Object.entries(attrs || {})) el.setAttribute(key, value);
  el.append(...children.filter((c) => c !== null && c !== undefined).map(
    (c) => (c instanceof Node ? c : String(c))));
  return el;
}
async function api(method, path, body) {
  const response = await fetch(path, {
    method, body: body ? JSON.stringify(body) : undefined,
    headers: body ? {"Content-Type": "application/json"} : {},
  });
  const data = await response.json().catch(() => ({}));
  if (!response.ok) {
    const detail = typeof data.detail === "string" ? data.detail : `HTTP ${response.status}`;
    throw Object.assign(new Error(detail), {status: response.status});
  }
  return data;
}
const store = {
  get(key, fallback) {
    try {
      const value = localStorage.getItem("shop." + key);
      return value === null ? fallback : JSON.parse(value);
    } catch (err) { return fallback; }
  },
  set(key, value) { localStorage.setItem("shop." + key, JSON.stringify(value)); },
  drop(key) { localStorage.removeItem("shop." + key); },
};
const DEFAULT_SETTINGS = {display_name: "", theme: "light", language: "en", notifications: true};
const settings = () => Object.assign({}, DEFAULT_SETTINGS, store.get("settings", {}));
ROOT.dataset.theme = settings().theme;
function toast(text) {
  $("#toast").textContent = text;
  show($("#toast"), true);
}
function cartLines() {
  return Object.entries(store.get("cart", {}))
    .filter(([id, qty]) => DATA.catalog[id] && qty > 0)
    .map(([id, qty]) => ({product: DATA.catalog[id], qty}));
}
const cartUnits = (lines) => lines.reduce((sum, line) => sum + line.qty, 0);
const cartCents = (lines) => lines.reduce((sum, l) => sum + l.product.price_cents * l.qty, 0);
function renderHeader() {
  $("#cart-count").textContent = String(cartUnits(cartLines()));
  const user = store.get("user", null);
  $("#user-name").textContent = user ? settings().display_name || user.name : "";
  show($("#user-name"), !!user);
  show($("#logout-button"), !!user);
  show($("#nav-login"), !user);
}
function setFieldErrors(form, errors) {
  for (const field of $$("[data-field]", form)) {
    const message = errors[field.dataset.field] || "";
    field.classList.toggle("invalid", !!message);
    $("input,select", field).setAttribute("aria-invalid", message ? "true" : "false");
    $(".field-error", field).textContent = message;
  }
}
function onLogout() {
  store.drop("user");
  location.assign("/login?signed_out=1");
}

// --- products and product detail
function onAddToCart(event) { addToCart(event.currentTarget); }
function addToCart(button) {
  // ui_button_throws: the handler reads the attribute by its pre-rename name, `data-product`.
  const id = FAULTS.has("ui_button_throws") ? button.dataset.product : button.dataset.productId;
  const product = DATA.catalog[id];
  const qty = Number(($("#quantity") || {value: 1}).value);
  const cart = store.get("cart", {});
  cart[product.id] = Math.min((cart[product.id] || 0) + qty, 99);
  store.set("cart", cart);
  renderHeader();
  toast(`Added ${qty} × ${product.name} to your cart`);
}
const SORTS = {
  featured: (a, b) => a.dataset.rank - b.dataset.rank,
  "price-asc": (a, b) => a.dataset.price - b.dataset.price,
  "price-desc": (a, b) => b.dataset.price - a.dataset.price,
  name: (a, b) => a.dataset.name.localeCompare(b.dataset.name),
};
function applyFilters() {
  const category = $("#category-filter").value, list = $("#product-list");
  const cards = $$('[data-test="product-card"]', list).sort(SORTS[$("#sort").value]);
  for (const card of cards) {
    card.hidden = category !== "all" && card.dataset.category !== category;
  }
  list.append(...cards);
  $("#product-count").textContent = plural(cards.filter((c) => !c.hidden).length, "product");
}
async function loadAvailability() {
  try {
    const data = await api("GET", "/api/shop/products?category=storefront&limit=50");
    const bySku = new Map(data.items.map((item) => [item.sku, item]));
    for (const card of $$('[data-test="product-card"]')) {
      const item = bySku.get(card.dataset.sku);
      $('[data-test="availability"]', card).textContent =
        item && item.available > 0 ? "In stock" : "Out of stock";
    }
  } catch (err) {
    $("#products-error").textContent = "Could not load availability: " + err.message;
    show($("#products-error"), true);
  }
  show($("#products-loading"), false);
  $("#product-list").dataset.loaded = "true";
}
async function loadStock() {
  const widget = $("#stock"), level = $("#stock-level");
  try {
    const stock = await api("GET", "/api/shop/inventory/" + widget.dataset.shopId);
    level.textContent = stock.available > 0
      ? `In stock (${stock.available} available)` : "Out of stock";
  } catch (err) {
    level.textContent = "Stock unavailable: " + err.message;
  }
  show($("#stock-loading"), false);
  show(level, true);
  widget.dataset.loaded = "true";
}

// --- search
async function runSearch(q, fromForm) {
  if (q.length < 2) {
    $("#search-error").textContent = "Enter at least 2 characters";
    show($("#search-error"), true);
    return;
  }
  if (fromForm) history.replaceState(null, "", "/search?q=" + encodeURIComponent(q));
  ["#search-error", "#no-results", "#search-failed"].forEach((s) => show($(s), false));
  show($("#search-loading"), true);
  $("#search-results").replaceChildren();
  $("#search-summary").textContent = "";
  try {
    const path = "/api/shop/products?category=storefront&limit=50&q=" + encodeURIComponent(q);
    const data = await api("GET", path);
    const bySku = new Map(Object.values(DATA.catalog).map((p) => [p.sku, p]));
    const found = data.items.map((item) => bySku.get(item.sku)).filter(Boolean);
    $("#search-results").replaceChildren(...found.map((p) => h("li",
      {class: "result", "data-test": "search-result", "data-product-id": p.id},
      h("a", {href: "/products/" + p.id}, p.name), " ",
      h("span", {class: "price"}, money(p.price_cents)))));
    $("#search-summary").textContent = `${plural(found.length, "result")} for “${q}”`;
    $("#no-results").textContent = `No products match “${q}”.`;
    show($("#no-results"), !found.length);
  } catch (err) {
    $("#search-failed").textContent = "Search failed: " + err.message;
    show($("#search-failed"), true);
  }
  show($("#search-loading"), false);
}

// --- cart
function renderCart() {
  const lines = cartLines();
  $("#cart-lines").replaceChildren(...lines.map(({product, qty}) => {
    const button = (test, label) => h("button", {type: "button", id: `${test}-${product.id}`,
      "data-test": test, "data-product-id": product.id}, label);
    return h("tr", {"data-test": "cart-line", "data-product-id": product.id},
      h("td", {class: "line-name"}, product.name),
      h("td", {}, button("decrease", "−"),
        h("span", {class: "line-qty", "data-test": "line-qty"}, qty), button("increase", "+")),
      h("td", {class: "line-total"}, money(product.price_cents * qty)),
      h("td", {}, button("remove-line", "Remove")));
  }));
  $("#cart-total").textContent = money(cartCents(lines));
  show($("#cart-empty"), !lines.length);
  show($("#cart-table"), !!lines.length);
  show($("#cart-actions"), !!lines.length);
  renderHeader();
}
function onCartClick(event) {
  const button = event.target.closest("button[data-product-id]");
  if (!button) return;
  const cart = store.get("cart", {}), id = button.dataset.productId;
  const step = {increase: 1, decrease: -1, "remove-line": -100}[button.dataset.test];
  cart[id] = Math.min(Math.max((cart[id] || 0) + step, 0), 99);
  if (!cart[id]) delete cart[id];
  store.set("cart", cart);
  renderCart();
}
function onClearCart() {
  store.drop("cart");
  renderCart();
  toast("Your cart is empty now");
}
"""

UI_JS = CORE_JS + PAGES_JS
