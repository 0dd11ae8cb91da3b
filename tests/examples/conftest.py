"""Fixtures for the sample service: a real server on 127.0.0.1 reporting to a JSON-lines sink."""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import httpx
import pytest

from immunity.examples.sample_service import (
    JsonlSink,
    Reporter,
    RunningServer,
    create_app,
    start_server,
)


@dataclass
class Service:
    """A running sample service, a client for it and the events it reported during one test."""

    server: RunningServer
    client: httpx.Client
    reporter: Reporter
    sink: JsonlSink
    failures_before: int = 0
    successes_before: int = 0

    @property
    def base_url(self) -> str:
        return self.server.base_url

    def set_fault(self, name: str, enabled: bool = True) -> httpx.Response:
        return self.client.put(f"/admin/faults/{name}", json={"enabled": enabled})

    def failures(self) -> list[dict[str, Any]]:
        """Return the failure events reported since this test began."""
        self.reporter.flush()
        return self.sink.read_failures()[self.failures_before :]

    def successes(self) -> list[dict[str, Any]]:
        """Return the success events reported since this test began."""
        self.reporter.flush()
        return self.sink.read_successes()[self.successes_before :]


@pytest.fixture(scope="module")
def running_service(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Service]:
    """One sample service per test module, reporting to a JsonlSink in a temporary directory."""
    sink = JsonlSink(tmp_path_factory.mktemp("events"))
    reporter = Reporter(sink, flush_interval_s=0.05)
    server = start_server(create_app(reporter, release="sample@test", environment="testing"))
    client = httpx.Client(base_url=server.base_url, timeout=10)
    try:
        yield Service(server, client, reporter, sink)
    finally:
        client.close()
        server.stop()
        reporter.close()


@pytest.fixture
def service(running_service: Service) -> Service:
    """The module's service with every fault off and event counts taken from now."""
    assert running_service.client.post("/admin/faults/reset").status_code == 200
    running_service.reporter.flush()
    running_service.failures_before = len(running_service.sink.read_failures())
    running_service.successes_before = len(running_service.sink.read_successes())
    return running_service


def wait_until(predicate: Callable[[], bool], timeout_s: float = 5.0) -> bool:
    """Poll `predicate` until it holds or the timeout passes; return whether it held."""
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if predicate():
            return True
        time.sleep(0.01)
    return predicate()


@dataclass
class Received:
    """One request the local receiver got."""

    method: str
    path: str
    headers: dict[str, str]
    body: Any


@dataclass
class Receiver:
    """A tiny ingest stand-in: records requests and answers with queued statuses (then 202)."""

    base_url: str
    requests: list[Received] = field(default_factory=list)
    statuses: list[int] = field(default_factory=list)
    lock: threading.Lock = field(default_factory=threading.Lock)


@pytest.fixture
def receiver() -> Iterator[Receiver]:
    """Run a real HTTP server on 127.0.0.1 that records what is POSTed to it."""
    state = Receiver(base_url="")

    class Handler(BaseHTTPRequestHandler):
        def do_POST(self) -> None:
            length = int(self.headers.get("Content-Length", "0"))
            raw = self.rfile.read(length)
            with state.lock:
                status = state.statuses.pop(0) if state.statuses else 202
                state.requests.append(
                    Received("POST", self.path, dict(self.headers.items()), json.loads(raw))
                )
            payload = json.dumps({"accepted": status < 300}).encode()
            self.send_response(status)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(payload)))
            self.end_headers()
            self.wfile.write(payload)

        def log_message(self, format: str, *args: Any) -> None:
            return

    httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=httpd.serve_forever, kwargs={"poll_interval": 0.05})
    thread.start()
    host, port = httpd.server_address[:2]
    state.base_url = f"http://{host}:{port}"
    try:
        yield state
    finally:
        httpd.shutdown()
        httpd.server_close()
        thread.join()
