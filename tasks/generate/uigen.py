"""Pure rules of UI test generation: a page's JavaScript error becomes steps that replay it.

A browser failure event carries the page URL (as its request) and breadcrumbs of the last user
actions (`context.breadcrumbs`: `{"action", "selector", "value"}`). The generated UI test opens
the page, repeats the actions and expects no console error. Its steps are marked as from a report
(`from_report`): they are untrusted, so the environment's replay rules always hold for them
(tasks/ui/policy.py).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any
from urllib.parse import urlsplit

from pydantic import ValidationError

from immunity.models.settings import Environment
from immunity.models.ui_specs import UiSpec

__all__ = ["MAX_BREADCRUMBS", "ui_replay_spec"]

MAX_BREADCRUMBS = 30
_ACTIONS = {"click", "type", "select", "submit"}


def _page_path(url: str, environment: Environment | None) -> str | None:
    if environment and url.startswith(environment.base_url.rstrip("/") + "/"):
        return url[len(environment.base_url.rstrip("/")) :]
    parts = urlsplit(url)
    if parts.scheme not in ("http", "https") or not parts.path.startswith("/"):
        return None
    return parts.path + (f"?{parts.query}" if parts.query else "")


def _step(crumb: Mapping[str, Any]) -> dict[str, Any] | None:
    action, selector = crumb.get("action"), crumb.get("selector")
    if action not in _ACTIONS or not isinstance(selector, str) or not selector.strip():
        return None
    step: dict[str, Any] = {"action": action, "selector": selector}
    if action in ("type", "select"):
        value = crumb.get("value")
        step["value"] = "" if value is None else str(value)
    return step


def ui_replay_spec(
    request: Mapping[str, Any] | None,
    context: Mapping[str, Any] | None,
    environment: Environment | None,
) -> tuple[UiSpec | None, str | None]:
    """Return the UI steps replaying a page error, or None and the reason they cannot."""
    url = (request or {}).get("url")
    if not url:
        return None, "the browser error carries no page URL"
    path = _page_path(str(url), environment)
    if path is None:
        return None, f"the page URL is not an HTTP URL: {str(url)[:200]}"
    crumbs = (context or {}).get("breadcrumbs") or []
    steps: list[dict[str, Any]] = [{"action": "open", "path": path}]
    if isinstance(crumbs, list):
        steps += [s for c in crumbs[-MAX_BREADCRUMBS:] if isinstance(c, dict) and (s := _step(c))]
    steps.append({"action": "assert_no_console_errors"})
    try:
        return UiSpec.model_validate({"steps": steps, "from_report": True}), None
    except ValidationError as exc:
        return None, f"the breadcrumbs do not make valid steps: {exc.errors()[0]['msg']}"
