"""UI checks: N Selenium checks against a small shop site, reused browsers vs one per test.

The site (bench/_ui_site.py: a home page, a catalogue, product pages, a search form with a menu,
a 404, an element rendered by script) is served in a subprocess of its own on a free port: the
sample service's pages are being reworked, and a benchmark must not move with them. The same N
checks (open, click, type, select, submit, wait, assertions on text, title, URL, counts, the
console and the network) run twice in one run, at the same concurrency (`--browsers`, one
thread per browser):

A. immunity's runner with a pool of `--browsers` Chromium sessions, reused and cleaned between
   tests (pool start-up and shutdown included in the time);
B. a new Chromium session per test: started, used for one test, quit.

Target: A at least 3× faster than B. Every check must pass in both, or the run fails (exit 1): a
benchmark that measures failures measures nothing. A missed target exits 0 unless `--strict`.

    uv run python bench/ui.py [--checks 50] [--browsers 2] [--repeat 1] [--strict]
"""

from __future__ import annotations

import argparse
import os
import shutil
import subprocess
import sys
import tempfile
import time
from collections import Counter
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from _figures import Figure, figures_table, say
from _ui_site import CATEGORIES, PRODUCTS, price, site_process

from immunity.models.enums import ExecutionStatus
from immunity.models.settings import Settings
from immunity.models.specs import TestCase
from immunity.models.ui_specs import UiSpec
from immunity.tasks.ui.runner import BrowserPool, chromium_missing, run_ui_cases

MIN_SPEEDUP = 3.0  # a reused pool vs a new browser per test
Steps = list[dict[str, Any]]

# --- the checks -------------------------------------------------------------------------------


def home(variant: int) -> Steps:
    return [
        {"action": "open", "path": "/"},
        {"action": "assert_title", "text": "Bench Shop"},
        {"action": "assert_text", "selector": "#welcome", "text": "Kitchen goods"},
        {"action": "wait", "selector": "#offer", "text": "Free delivery"},
        {"action": "click", "selector": "#browse-products"},
        {"action": "wait", "selector": "#product-list"},
        {"action": "assert_url", "text": "/products"},
        {"action": "assert_count", "selector": "li.product", "count": len(PRODUCTS)},
        {"action": "assert_no_console_errors"},
    ]


def catalogue(variant: int) -> Steps:
    product = list(PRODUCTS.values())[variant % len(PRODUCTS)]
    return [
        {"action": "open", "path": "/products"},
        {"action": "assert_count", "selector": "li.product", "min_count": 1},
        {"action": "assert_text", "selector": "#product-list", "text": product.name},
        {"action": "click", "selector": f"li.product[data-product-id='{product.id}'] a"},
        {"action": "wait", "selector": "#title", "text": product.name},
        {"action": "assert_title", "text": product.name},
        {"action": "assert_no_failed_requests"},
    ]


def product(variant: int) -> Steps:
    item = list(PRODUCTS.values())[variant % len(PRODUCTS)]
    return [
        {"action": "open", "path": f"/products/{item.id}"},
        {"action": "assert_title", "text": item.name},
        {"action": "assert_text", "selector": "#product-price", "text": price(item.price_cents)},
        {"action": "assert_text", "selector": "#product-description", "text": item.description},
        {"action": "assert_no_console_errors"},
        {"action": "assert_no_failed_requests"},
    ]


def navigation(variant: int) -> Steps:
    item = list(PRODUCTS.values())[variant % len(PRODUCTS)]
    return [
        {"action": "open", "path": f"/products/{item.id}"},
        {"action": "click", "selector": "#nav-home"},
        {"action": "wait", "selector": "#welcome"},
        {"action": "assert_title", "text": "Bench Shop"},
        {"action": "click", "selector": "//a[@id='nav-products']"},
        {"action": "wait", "text": item.name},
    ]


def missing(variant: int) -> Steps:
    return [
        {"action": "open", "path": f"/products/{900 + variant}"},
        {"action": "assert_title", "text": "Product not found"},
        {"action": "assert_text", "selector": "#error", "text": "No such product"},
    ]


def search(variant: int) -> Steps:
    category, name = list(CATEGORIES.items())[variant % len(CATEGORIES)]
    found = [p for p in PRODUCTS.values() if p.category == category]
    return [
        {"action": "open", "path": "/search"},
        {"action": "type", "selector": "#q", "value": found[0].name.split()[0]},
        {"action": "select", "selector": "#category", "value": name},
        {"action": "submit", "selector": "#q"},
        {"action": "wait", "selector": "#summary"},
        {"action": "assert_url", "text": f"category={category}"},
        {"action": "assert_count", "selector": "li.result", "min_count": 1},
        {"action": "assert_text", "selector": "#results", "text": found[0].name},
        {"action": "assert_no_console_errors"},
    ]


KINDS: list[Callable[[int], Steps]] = [home, catalogue, product, navigation, missing, search]


def build_cases(count: int, base_url: str) -> list[TestCase]:
    """Return `count` UI tests cycling through the kinds of check."""
    cases = []
    for index in range(count):
        kind = KINDS[index % len(KINDS)]
        spec = UiSpec.model_validate({"steps": kind(index // len(KINDS))}).dump()
        cases.append(
            TestCase(
                test_id=index + 1,
                name=f"bench-ui-{index:03d}-{kind.__name__}",
                kind="ui",
                spec=spec,
                expectations={},
                base_url=base_url,
                environment="staging",
            )
        )
    return cases


def describe_cases(cases: Sequence[TestCase]) -> str:
    kinds = Counter(case.name.rsplit("-", 1)[1] for case in cases)
    steps = sum(len(case.spec["steps"]) for case in cases)
    return ", ".join(f"{n} × {kind}" for kind, n in kinds.items()) + f" ({steps} steps in all)"


# --- the contenders ---------------------------------------------------------------------------


@dataclass(frozen=True)
class Contender:
    """One run of the checks: its time, how many passed, how many browsers it started."""

    name: str
    seconds: float
    passed: int
    started: int


def run(cases: Sequence[TestCase], settings: Settings, *, reuse: bool) -> Contender:
    """Run every check through the runner: sessions reused by the pool, or one per test."""
    started = time.perf_counter()
    with BrowserPool(
        settings.ui_browsers,
        chromium_binary=settings.chromium_binary,
        chromedriver=settings.chromedriver,
        timeout_s=settings.ui_timeout_s,
        reuse=reuse,
    ) as pool:
        results = run_ui_cases(cases, settings=settings, reruns=0, pool=pool)
    seconds = time.perf_counter() - started
    for result in results:
        if result.status != ExecutionStatus.PASSED:
            say(f"    {result.name}: {result.status}: {result.error}")
    passed = sum(1 for result in results if result.status == ExecutionStatus.PASSED)
    at_once = f"{settings.ui_browsers} at a time"
    name = f"A  reused pool, {at_once}" if reuse else f"B  a new browser per test, {at_once}"
    return Contender(name, seconds, passed, pool.started)


def chromium_version(settings: Settings) -> str:
    try:
        command = [settings.chromium_binary, "--version"]
        return subprocess.run(command, capture_output=True, text=True, timeout=30).stdout.strip()
    except (OSError, subprocess.TimeoutExpired):
        return "Chromium (version unknown)"


def load() -> str:
    one, five, _ = os.getloadavg()
    return f"{one:.2f} (5-min {five:.2f}) on {os.cpu_count()} CPUs"


# --- the run ----------------------------------------------------------------------------------


def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--checks", type=int, default=50, help="how many UI checks (default 50)")
    parser.add_argument("--browsers", type=int, default=2, help="at a time in A and B (2)")
    parser.add_argument("--repeat", type=int, default=1, help="runs of A and B; best counts")
    parser.add_argument("--strict", action="store_true", help="exit 1 when a target is missed")
    args = parser.parse_args(argv)
    if min(args.checks, args.repeat) < 1 or not 1 <= args.browsers <= 16:
        parser.error("--checks and --repeat must be at least 1, --browsers from 1 to 16")
    return args


def measure(args: argparse.Namespace, settings: Settings, base_url: str) -> list[Contender]:
    """Return every run of A and B, alternating (a load peak hits both)."""
    cases = build_cases(args.checks, base_url)
    say(f"{len(cases)} UI checks against the bench shop at {base_url}")
    say(f"checks: {describe_cases(cases)}")
    say(f"{chromium_version(settings)}; {args.browsers} browser(s) at a time")
    say(f"machine load {load()}")
    # Untimed: the first Chromium start reads its files from disk, later ones from the cache.
    warm = run(cases[:1], settings.model_copy(update={"ui_browsers": 1}), reuse=False)
    say(f"\n[warm-up] one check in a new browser (untimed): {warm.seconds:.2f} s")
    runs = []
    for round_ in range(1, args.repeat + 1):
        for reuse in (True, False):
            runs.append(contender := run(cases, settings, reuse=reuse))
            say(
                f"[{contender.name[0]}, run {round_}] {contender.seconds:.2f} s, "
                f"{contender.passed}/{len(cases)} passed, {contender.started} browser(s) started"
            )
    return runs


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(argv)
    workdir = Path(tempfile.mkdtemp(prefix="immunity-bench-ui-"))
    settings = Settings(data_dir=workdir).model_copy(
        update={"ui_browsers": args.browsers, "regression_reruns": 0}
    )
    reason = chromium_missing(settings)
    if reason is not None:
        say(f"FAILED: cannot run UI checks: {reason}")
        return 1
    before = load()
    try:
        with site_process(workdir) as base_url:
            runs = measure(args, settings, base_url)
    finally:
        shutil.rmtree(workdir, ignore_errors=True)
    count = args.checks
    pool, fresh = (min((r for r in runs if r.name[0] == k), key=lambda r: r.seconds) for k in "AB")
    width = max(len(pool.name), len(fresh.name))
    say(f"\n{'contender':<{width}}  passed  {'seconds':>8}  {'ms/check':>8}  browsers started")
    for c in (pool, fresh):
        say(
            f"{c.name:<{width}}  {f'{c.passed}/{count}':>6}  {c.seconds:>8.2f}  "
            f"{1000 * c.seconds / count:>8.0f}  {c.started}"
        )
    speedup = fresh.seconds / pool.seconds
    name = "speed-up: reused pool vs a new browser per test"
    wanted = f">= {MIN_SPEEDUP:.0f}×"
    figures = [Figure(name, f"{speedup:.1f}×", wanted, speedup >= MIN_SPEEDUP)]
    say("\n" + figures_table(figures, ("target", "value", "wanted")))
    say(f"best of {args.repeat} run(s) each; machine load (1-min): {before} before, {load()} after")
    if any(r.passed != count for r in runs):
        say("FAILED: some checks did not pass (see above)")
        return 1
    return 1 if speedup < MIN_SPEEDUP and args.strict else 0


if __name__ == "__main__":
    sys.exit(main())
