"""The reporter and its sinks: buffering, flushing, HTTP delivery with retries, the server."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import Any

import httpx
import pytest

from immunity.examples.sample_service import (
    Fault,
    FaultState,
    HttpSink,
    JsonlSink,
    Reporter,
    UnknownFaultError,
    create_app,
    start_server,
)
from immunity.examples.sample_service.reporter import frames_from_traceback, list_counts
from immunity.models.schemas import FailureEventIn, SuccessEventIn
from tests.examples.conftest import Receiver, wait_until

REPO_ROOT = Path(__file__).resolve().parents[2]


class _Recording:
    """A sink that remembers batches, optionally slowly or failing."""

    def __init__(self, delay_s: float = 0.0, fail: bool = False) -> None:
        self.batches: list[tuple[list[dict[str, Any]], list[dict[str, Any]]]] = []
        self.delay_s = delay_s
        self.fail = fail
        self.closed = False

    def write(self, failures: list[dict[str, Any]], successes: list[dict[str, Any]]) -> None:
        time.sleep(self.delay_s)
        if self.fail:
            raise OSError("disk full")
        self.batches.append((failures, successes))

    def close(self) -> None:
        self.closed = True


def _helper() -> None:
    raise ValueError("boom")


def test_frames_are_outermost_first() -> None:
    try:
        _helper()
    except ValueError as exc:
        frames = frames_from_traceback(exc.__traceback__)
    assert [f["function"] for f in frames] == ["test_frames_are_outermost_first", "_helper"]
    assert frames[-1]["context_line"] == 'raise ValueError("boom")'
    assert frames[-1]["module"] == __name__ and frames[-1]["in_app"] is False  # tests.* is not app


def test_list_counts_only_top_level_lists() -> None:
    payload = {"files": [1, 2], "meta": {"tags": [1]}, "n": 3, "empty": []}
    assert list_counts(payload) == {"$.files": 2, "$.empty": 0}
    assert list_counts([1, 2]) == {}


def test_flush_waits_for_the_batch_in_flight() -> None:
    sink = _Recording(delay_s=0.1)
    reporter = Reporter(sink, flush_interval_s=0.01)
    reporter.capture_failure({"error_type": "A"})
    time.sleep(0.03)  # the thread has taken the batch and is writing it
    reporter.capture_success({"operation": "GET /x"})
    reporter.flush()
    assert [len(f) + len(s) for f, s in sink.batches] == [1, 1]
    reporter.close()
    assert sink.closed
    reporter.capture_failure({"error_type": "late"})  # dropped, never raised
    assert reporter.dropped == 1


def test_buffer_is_bounded_and_sink_errors_stay_inside() -> None:
    sink = _Recording(fail=True)
    reporter = Reporter(sink, flush_interval_s=60, max_buffer=3, batch_size=1_000)
    for i in range(5):
        reporter.capture_failure({"error_type": f"E{i}"})
    assert reporter.dropped == 2
    reporter.flush()  # the sink raises; the reporter logs it
    reporter.close()


def test_jsonl_sink_is_thread_safe(tmp_path: Path) -> None:
    sink = JsonlSink(tmp_path)

    def write(n: int) -> None:
        for i in range(50):
            sink.write([{"error_type": "E", "n": n, "i": i, "pad": "x" * 500}], [])

    threads = [threading.Thread(target=write, args=(n,)) for n in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert len(sink.read_failures()) == 200
    assert sink.read_successes() == []


def test_fault_state() -> None:
    state = FaultState(["rate_limit"])
    assert state.enabled() == ["rate_limit"]
    state.enable(Fault.SLOW_MODEL)
    assert state.is_enabled("slow_model")
    state.reset()
    assert state.enabled() == []
    with pytest.raises(UnknownFaultError, match="unknown fault 'bogus'"):
        state.set("bogus", True)


def test_http_sink_delivers_batches_with_the_bearer_token(receiver: Receiver) -> None:
    receiver.statuses.append(503)  # the first POST fails and is retried
    sink = HttpSink(receiver.base_url, "tok-123", backoff_s=0.01)
    reporter = Reporter(sink, flush_interval_s=0.05)
    with start_server(create_app(reporter, faults=FaultState([Fault.RATE_LIMIT]))) as server:
        with httpx.Client(base_url=server.base_url) as client:
            assert client.post("/api/generate", json={"prompt": "blog"}).status_code == 429
            assert client.get("/api/executions").status_code == 200
        reporter.flush()
    reporter.close()

    assert {r.headers["Authorization"] for r in receiver.requests} == {"Bearer tok-123"}
    paths = [r.path for r in receiver.requests]
    assert paths.count("/api/v1/failures") + paths.count("/api/v1/successes") == len(paths)
    failures = [
        e for r in receiver.requests if r.path == "/api/v1/failures" for e in r.body["events"]
    ]
    successes = [
        e for r in receiver.requests if r.path == "/api/v1/successes" for e in r.body["events"]
    ]
    # The retried batch arrives twice at the receiver but only one delivery was accepted.
    assert len(receiver.requests) >= 3 and sink.sent == 2 and sink.dropped == 0
    assert {FailureEventIn.model_validate(e).error_type for e in failures} == {"RateLimitError"}
    assert {SuccessEventIn.model_validate(e).operation for e in successes} == {
        "GET /api/executions"
    }


def test_http_sink_gives_up_without_raising(receiver: Receiver) -> None:
    receiver.statuses.extend([401, 500, 500])
    sink = HttpSink(receiver.base_url, "bad", max_attempts=2, backoff_s=0.01)
    sink.write([{"error_type": "E"}], [])  # 401: not retried
    sink.write([], [{"operation": "GET /x"}])  # 500, 500: retried once, then dropped
    assert [r.path for r in receiver.requests] == ["/api/v1/failures"] + ["/api/v1/successes"] * 2
    assert sink.dropped == 2 and sink.sent == 0
    sink.close()

    with socket.socket() as probe:  # a port nobody listens on
        probe.bind(("127.0.0.1", 0))
        closed_port = probe.getsockname()[1]
    unreachable = HttpSink(f"http://127.0.0.1:{closed_port}", "t", max_attempts=2, backoff_s=0.01)
    unreachable.write([{"error_type": "E"}], [])
    assert unreachable.dropped == 1
    unreachable.close()


def test_start_server_picks_a_free_port_and_stops() -> None:
    with (
        start_server(create_app()) as first,
        start_server(create_app()) as second,
        httpx.Client(timeout=5) as client,
    ):
        assert first.port != second.port and first.port > 0
        assert client.get(f"{first.base_url}/api/health").status_code == 200
        # Without a reporter, faults still turn into their status codes.
        client.put(f"{second.base_url}/admin/faults/slow_model", json={"enabled": True})
        assert (
            client.post(f"{second.base_url}/api/generate", json={"prompt": "x"}).status_code == 504
        )
    assert not first.running
    with pytest.raises(OSError):
        socket.create_connection(("127.0.0.1", first.port), timeout=1).close()


def _accepts(port: int) -> bool:
    try:
        socket.create_connection(("127.0.0.1", port), timeout=0.2).close()
    except OSError:
        return False
    return True


def test_module_entry_point_serves_and_reports(tmp_path: Path) -> None:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    command = [
        sys.executable, "-m", "examples.sample_service", "--port", str(port),
        "--report-dir", str(tmp_path), "--fault", "executions_500", "--flush-interval", "0.05",
    ]  # fmt: skip
    env = {**os.environ, "PYTHONPATH": str(REPO_ROOT)}
    process = subprocess.Popen(
        command, cwd=REPO_ROOT, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL
    )
    try:
        assert wait_until(lambda: _accepts(port), timeout_s=15)
        with httpx.Client(base_url=f"http://127.0.0.1:{port}", timeout=5) as client:
            assert client.get("/api/executions").status_code == 500
            assert client.get("/products").status_code == 200
    finally:
        process.send_signal(signal.SIGINT)
        process.wait(timeout=10)
    (event,) = JsonlSink(tmp_path).read_failures()
    assert FailureEventIn.model_validate(event).error_type == "DatabaseError"
