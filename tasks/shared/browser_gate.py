"""A gate on one Chrome tab's requests by method, held over a DevTools connection of its own.

Chromedriver's `execute_cdp_cmd` sends commands but cannot answer events, and DevTools'
`Fetch` domain pauses every request until someone answers it. So the gate opens its own
WebSocket to the tab (chromedriver's `debuggerAddress`), enables `Fetch` at the request stage
and answers each paused request from a thread: continued when its method is allowed, failed
(`BlockedByClient`, nothing is sent) otherwise. Requests of the tab's dedicated workers pause
there too; service workers are targets of their own and are not gated.
"""

from __future__ import annotations

import contextlib
import itertools
import json
import threading
import urllib.request
from collections.abc import Sequence
from typing import Any

import websocket

__all__ = ["MethodGate"]

_MAX_TEXT = 500
_REPLY_TIMEOUT_S = 10.0
_PATTERNS = [{"urlPattern": "*", "requestStage": "Request"}]


def _page_socket_url(debugger_address: str, target_id: str) -> str:
    """Return the DevTools WebSocket URL of the page target `target_id`."""
    with urllib.request.urlopen(f"http://{debugger_address}/json/list", timeout=5) as answer:
        targets = json.load(answer)
    for target in targets:
        if target.get("id") == target_id and target.get("webSocketDebuggerUrl"):
            return str(target["webSocketDebuggerUrl"])
    raise RuntimeError(f"no DevTools target {target_id} at {debugger_address}")


class MethodGate:
    """Fails the tab's requests whose method is not allowed; `blocked` lists them (method, URL).

    Closed (`allow(None)`) it pauses nothing. The connection lives until `close` or until the
    browser goes; if it is lost while the gate is open, paused requests stay paused and the
    page never loads: the gate fails closed.
    """

    def __init__(self, debugger_address: str, target_id: str) -> None:
        self._socket = websocket.create_connection(
            _page_socket_url(debugger_address, target_id),
            suppress_origin=True,
            timeout=_REPLY_TIMEOUT_S,
        )
        self._socket.settimeout(None)  # the reader waits for events as long as the tab lives
        self._ids = itertools.count(1)
        self._send_lock = threading.Lock()
        self._replies: dict[int, dict[str, Any]] = {}
        self._replied = threading.Condition()
        self._allowed: frozenset[str] | None = None
        self.blocked: list[dict[str, str]] = []
        self._reader = threading.Thread(target=self._read, name="browser-gate", daemon=True)
        self._reader.start()

    def allow(self, methods: Sequence[str] | None) -> None:
        """Let only `methods` through from now on (None: open the gate, pause nothing)."""
        if methods is None:
            if self._allowed is not None:
                self._call("Fetch.disable", {})
            self._allowed = None
            return
        self._allowed = frozenset(method.upper() for method in methods)
        self._call("Fetch.enable", {"patterns": _PATTERNS})

    def _send(self, method: str, params: dict[str, Any]) -> int:
        number = next(self._ids)
        with self._send_lock:
            self._socket.send(json.dumps({"id": number, "method": method, "params": params}))
        return number

    def _call(self, method: str, params: dict[str, Any]) -> dict[str, Any]:
        number = self._send(method, params)
        with self._replied:
            if not self._replied.wait_for(lambda: number in self._replies, _REPLY_TIMEOUT_S):
                raise RuntimeError(f"DevTools did not answer {method}")
            reply = self._replies.pop(number)
        if "error" in reply:
            raise RuntimeError(f"DevTools refused {method}: {reply['error']}")
        return reply

    def _read(self) -> None:
        while True:
            try:
                message = json.loads(self._socket.recv())
            except Exception:  # the browser went away, or `close`: nothing left to answer
                return
            if "id" in message:
                with self._replied:
                    self._replies[message["id"]] = message
                    self._replied.notify_all()
            elif message.get("method") == "Fetch.requestPaused":
                with contextlib.suppress(Exception):
                    self._decide(message["params"])

    def _decide(self, params: dict[str, Any]) -> None:
        request = params.get("request", {})
        method = str(request.get("method", "GET")).upper()
        allowed = self._allowed
        if allowed is None or method in allowed:
            self._send("Fetch.continueRequest", {"requestId": params["requestId"]})
            return
        self.blocked.append({"method": method, "url": str(request.get("url", ""))[:_MAX_TEXT]})
        self._send(
            "Fetch.failRequest",
            {"requestId": params["requestId"], "errorReason": "BlockedByClient"},
        )

    def close(self) -> None:
        """Close the connection (the browser forgets this client's `Fetch` with it)."""
        with contextlib.suppress(Exception):
            self._socket.close()
        self._reader.join(2)
