"""What a UI test may make the browser send: the environment's replay rules, applied to a browser.

Where replays go is configuration, never input (issue 18). A UI test runs only against an
environment that allows replays; a step that would submit a form (a `submit`, a click on a
submit control, Enter in a form's field) with a method the environment does not allow is
refused before the browser acts; and the browser sends nothing to another origin than the
environment's base URL and `ui_allow_hosts` (`reach`: the browser is started with every other
destination sent to a proxy that refuses, so navigations and redirects are blocked too). Steps
derived from a report's breadcrumbs are untrusted: a test's `allow_unsafe` never lifts the
method rule for them.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlsplit

from immunity.models.settings import SAFE_METHODS, Environment, Settings
from immunity.models.specs import TestCase
from immunity.models.ui_specs import UiSpec

__all__ = ["ENTER_KEYS", "SUBMITS_SCRIPT", "ReplayPolicy", "policy_for"]

# What `send_keys` turns into Enter: typed into a form's field, it submits the form.
ENTER_KEYS = ("\n", "\r", "\ue006", "\ue007")
_WHERE = "IMMUNITY_ENVIRONMENTS"
_URLPATTERN_SPECIAL = set("\\*?+(){}:[]")

# Runs in every document of the tab before the page's own scripts. New windows would escape the
# tab's request rules, so links, forms and window.open stay in this tab; requests by the page's
# scripts with a method the environment does not allow are refused (and logged, to be recorded).
_GUARD = """
(() => {
  const [allowed, origins, hosts] = %s;
  const here = (url) => {
    try {
      const parsed = new URL(url, document.baseURI);
      if (!['http:', 'https:', 'ws:', 'wss:'].includes(parsed.protocol)) { return true; }
      return origins.includes(parsed.origin) || hosts.includes(parsed.hostname);
    } catch (error) { return true; }
  };
  const ok = (method) => allowed === null || allowed.includes(String(method).toUpperCase());
  const note = (what) => console.warn('immunity refused: ' + what);
  const stay = (target) => ['', '_self', '_top', '_parent'].includes((target || '').toLowerCase());
  window.open = function (url) { note('window.open ' + url); return null; };
  document.addEventListener('click', (event) => {
    const link = event.target instanceof Element && event.target.closest('a[href], area[href]');
    if (!link) { return; }
    if (!stay(link.target)) { link.target = '_self'; }
    if (!here(link.href)) { event.preventDefault(); note('GET ' + link.href); }
  }, true);
  const formMethod = (form, submitter) =>
    (submitter && submitter.hasAttribute('formmethod') ? submitter.formMethod : form.method);
  window.addEventListener('submit', (event) => {
    const form = event.target, method = formMethod(form, event.submitter);
    if (!stay(form.target)) { form.target = '_self'; }
    if (method !== 'dialog' && (!ok(method) || !here(form.action))) {
      event.preventDefault();
      note(method.toUpperCase() + ' ' + form.action);
    }
  }, true);
  const submit = HTMLFormElement.prototype.submit;
  HTMLFormElement.prototype.submit = function () {
    if (!stay(this.target)) { this.target = '_self'; }
    if (this.method !== 'dialog' && (!ok(this.method) || !here(this.action))) {
      note(this.method.toUpperCase() + ' ' + this.action); return;
    }
    return submit.call(this);
  };
  if (allowed === null) { return; }
  const fetch = window.fetch;
  window.fetch = function (input, init) {
    const method = (init && init.method) || (input instanceof Request ? input.method : 'GET');
    if (!ok(method)) {
      note(String(method).toUpperCase() + ' ' + (input instanceof Request ? input.url : input));
      return Promise.reject(new TypeError('immunity refused ' + method));
    }
    return fetch.apply(this, arguments);
  };
  const open = XMLHttpRequest.prototype.open, send = XMLHttpRequest.prototype.send;
  XMLHttpRequest.prototype.open = function (method, url) {
    this.__immunity = [String(method), String(url)];
    return open.apply(this, arguments);
  };
  XMLHttpRequest.prototype.send = function () {
    const [method, url] = this.__immunity || ['GET', ''];
    if (!ok(method)) {
      note(method.toUpperCase() + ' ' + url);
      throw new DOMException('immunity refused ' + method, 'NetworkError');
    }
    return send.apply(this, arguments);
  };
  if (navigator.sendBeacon && !ok('POST')) {
    navigator.sendBeacon = function (url) { note('POST ' + url + ' (beacon)'); return false; };
  }
})();
"""

# What an action on the element would send: the form (or link), its method and where it would go
# (or null). A click submits through a submit control (or a label of one); Enter through the
# field; a click on a link navigates.
SUBMITS_SCRIPT = """
const [el, action] = arguments;
let form = null, control = null;
if (action === 'submit') {
  form = el.tagName === 'FORM' ? el : (el.form || el.closest('form'));
} else if (action === 'click') {
  control = el.closest('button, input');
  if (!control) { const label = el.closest('label'); control = label && label.control; }
  const submits = control && (control.tagName === 'BUTTON'
    ? control.type === 'submit' : ['submit', 'image'].includes(control.type));
  form = submits ? control.form : null;
  const link = !form && el.closest('a[href], area[href]');
  if (link) { return ['a link', 'GET', String(link.href)]; }
} else {
  form = el.form || null;
}
if (!form) { return null; }
const own = control && control.form === form;
const method = own && control.hasAttribute('formmethod') ? control.formMethod : form.method;
const target = own && control.hasAttribute('formaction') ? control.formAction : form.action;
const name = form.id ? 'form#' + form.id : (form.name ? 'form ' + form.name : 'a form');
return [name, String(method).toUpperCase(), String(target)];
"""


def _escaped(text: str) -> str:
    return "".join(f"\\{char}" if char in _URLPATTERN_SPECIAL else char for char in text)


def _origin(url: str) -> str:
    """Return the URL's origin as browsers write it (no user, no default port)."""
    parts = urlsplit(url)
    scheme, host = parts.scheme.lower(), (parts.hostname or "").lower()
    host = f"[{host}]" if ":" in host else host
    try:
        port = parts.port
    except ValueError:
        port = None
    default = {"http": 80, "https": 443, "ws": 80, "wss": 443}.get(scheme)
    return f"{scheme}://{host}" + (f":{port}" if port is not None and port != default else "")


@dataclass(frozen=True)
class ReplayPolicy:
    """The rules one UI test runs under in one environment."""

    environment: str
    settings: Environment
    base_url: str
    allow_hosts: tuple[str, ...] = ()
    # A hand-written test's allow_unsafe lifts production's default (safe methods only), never
    # an environment's explicit `replay_methods`.
    lift_method_rule: bool = False

    @property
    def allows_replay(self) -> bool:
        """Whether the test may run here at all."""
        return self.settings.allows_replay

    def allows(self, method: str) -> bool:
        """Whether the browser may send `method` here."""
        if self.lift_method_rule and self.settings.replay_methods is None:
            return True
        return self.settings.allows_method(method)

    @property
    def methods(self) -> list[str] | None:
        """The methods allowed here (None: any)."""
        if self.settings.replay_methods is not None:
            return sorted({method.upper() for method in self.settings.replay_methods})
        if self.lift_method_rule or not self.settings.is_production:
            return None
        return list(SAFE_METHODS)

    def refusal(self) -> str | None:
        """Return why no step may run here (nothing is sent), or None."""
        if self.allows_replay:
            return None
        return (
            f"refused: environment {self.environment!r} does not allow replays, nothing was sent"
            f' (set "replay": true on it in {_WHERE}, or set IMMUNITY_REPRODUCTION_ENVIRONMENT'
            " to one that allows them)"
        )

    def method_refusal(self, method: str, what: str) -> str | None:
        """Return why `what` may not send `method` here, or None when it may."""
        if self.allows(method):
            return None
        allowed = ", ".join(self.methods or []) or "none"
        return (
            f"refused before the browser acted: {what} would send {method.upper()} to"
            f" environment {self.environment!r}, which allows {allowed} only"
            f' (add {method.upper()} to its "replay_methods" in {_WHERE} to allow it)'
        )

    def allows_origin(self, url: str) -> bool:
        """Whether the browser may send a request to `url`."""
        # Chromium's blocked URLs hold for a page's requests but not for its navigations, so a
        # click on a link or form to another origin is refused before it is made.
        parts = urlsplit(url)
        if parts.scheme not in ("http", "https", "ws", "wss"):
            return True  # data:, blob:, about: never leave the browser
        return _origin(url) == _origin(self.base_url) or (parts.hostname or "") in {
            host.lower() for host in self.allow_hosts
        }

    def reach(self) -> tuple[str, ...]:
        """Return where the browser may send requests: the base URL's `host:port`, then hosts.

        The scheme is left out: the same server's WebSocket (ws: for http:) is reached too.
        """
        base = urlsplit(self.base_url)
        host = (base.hostname or "").lower()
        try:
            port = base.port
        except ValueError:
            port = None
        if port is None:
            port = 443 if base.scheme.lower() in ("https", "wss") else 80
        here = f"[{host}]:{port}" if ":" in host else f"{host}:{port}"
        return (here, *sorted({host.lower() for host in self.allow_hosts}))

    def blocked_url_patterns(self) -> list[dict[str, Any]]:
        """Return `Network.setBlockedURLs` patterns: the allowed origins, then everything else."""
        base = urlsplit(self.base_url)
        port = f":{base.port}" if base.port is not None else ""
        patterns = [f"{base.scheme}://{_escaped(base.hostname or '')}{port}/*"]
        patterns += [f"*://{_escaped(host.lower())}:*/*" for host in self.allow_hosts]
        allowed = [{"urlPattern": pattern, "block": False} for pattern in patterns]
        return [*allowed, {"urlPattern": "*://*:*/*", "block": True}]

    def guard(self) -> str:
        """Return the script each document of the tab runs before the page's own."""
        hosts = sorted({host.lower() for host in self.allow_hosts})
        return _GUARD % json.dumps([self.methods, [_origin(self.base_url)], hosts])


def policy_for(case: TestCase, spec: UiSpec, settings: Settings) -> ReplayPolicy:
    """Return the rules `case` runs under: its environment's, from the settings.

    A case whose environment is not configured (a test's own `TestCase`) gets the defaults of
    an environment at its base URL: no replays in production, any method elsewhere.
    """
    configured = settings.environments.get(case.environment)
    if configured is None:
        configured = Environment(base_url=case.base_url, is_production=case.is_production)
    return ReplayPolicy(
        environment=case.environment,
        settings=configured,
        base_url=case.base_url,
        allow_hosts=tuple(settings.ui_allow_hosts),
        lift_method_rule=case.allow_unsafe and not spec.from_report,
    )
