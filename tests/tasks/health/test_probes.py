"""Probes against real things: an HTTP server on 127.0.0.1, TCP listeners, both stores."""

from __future__ import annotations

import asyncio
import socket
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from fastapi import FastAPI, Response
from sqlalchemy import Engine, create_engine

from immunity.examples.sample_service import start_server
from immunity.models.settings import HttpProbe
from immunity.tasks.health.probes import database_probe, http_probe, parse_address, tcp_probe


def probe_target() -> FastAPI:
    """A service to probe: /ok, /down (503) and /slow/<ms>."""
    app = FastAPI()

    @app.get("/ok")
    async def ok() -> dict[str, bool]:
        return {"ok": True}

    @app.get("/down")
    async def down() -> Response:
        return Response("maintenance", status_code=503)

    @app.get("/slow/{ms}")
    async def slow(ms: int) -> dict[str, bool]:
        await asyncio.sleep(ms / 1000)
        return {"ok": True}

    return app


@pytest.fixture(scope="module")
def base_url() -> Iterator[str]:
    with start_server(probe_target()) as server:
        yield server.base_url


@pytest.fixture
def client() -> Iterator[httpx.Client]:
    with httpx.Client() as http:
        yield http


def _closed_port() -> int:
    """A port nothing listens on: bound, read, released."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def test_http_probe_ok_reports_status_and_latency(base_url: str, client: httpx.Client) -> None:
    result = http_probe(HttpProbe(name="api", url=f"{base_url}/ok"), client)
    assert (result.name, result.kind, result.ok, result.status_code) == ("api", "http", True, 200)
    assert result.latency_ms is not None and 0 < result.latency_ms < 2_000


def test_http_probe_wrong_status_is_not_ok_unless_expected(
    base_url: str, client: httpx.Client
) -> None:
    result = http_probe(HttpProbe(name="api", url=f"{base_url}/down"), client)
    assert (result.ok, result.status_code) == (False, 503)
    assert "status 503, expected 200" in result.detail
    expected = http_probe(
        HttpProbe(name="api", url=f"{base_url}/down", expected_status=503), client
    )
    assert expected.ok and expected.status_code == 503


def test_http_probe_answer_over_the_limit_is_too_slow(base_url: str, client: httpx.Client) -> None:
    probe = HttpProbe(name="api", url=f"{base_url}/slow/250", max_latency_ms=200)
    result = http_probe(probe, client)
    # It answered (within twice the limit), right status, too late.
    assert (result.ok, result.status_code) == (False, 200)
    assert result.latency_ms is not None and result.latency_ms >= 250
    assert "over the 200 ms limit" in result.detail
    in_time = http_probe(probe.model_copy(update={"max_latency_ms": 2_000}), client)
    assert in_time.ok


def test_http_probe_without_an_answer_gives_up_at_twice_the_limit(
    base_url: str, client: httpx.Client
) -> None:
    probe = HttpProbe(name="api", url=f"{base_url}/slow/1500", max_latency_ms=100)
    result = http_probe(probe, client)
    assert (result.ok, result.status_code) == (False, None)
    assert "no answer within 200 ms" in result.detail
    assert result.latency_ms is not None and 150 <= result.latency_ms < 1_000


def test_http_probe_refused_port_is_not_ok_with_the_reason(client: httpx.Client) -> None:
    probe = HttpProbe(name="gone", url=f"http://127.0.0.1:{_closed_port()}/ok")
    result = http_probe(probe, client)
    assert (result.ok, result.status_code, result.latency_ms) == (False, None, None)
    assert result.detail.startswith("ConnectError")


def test_tcp_probe_ok_and_refused() -> None:
    with socket.create_server(("127.0.0.1", 0)) as listener:
        port = listener.getsockname()[1]
        result = tcp_probe(f"127.0.0.1:{port}")
        assert (result.name, result.kind, result.ok) == ("queue", "queue", True)
        assert result.latency_ms is not None and f"127.0.0.1:{port} accepted" in result.detail
    refused = tcp_probe(f"127.0.0.1:{_closed_port()}", timeout_s=1)
    assert not refused.ok and "refused" in refused.detail.lower()


@pytest.mark.parametrize("address", ["broker", "broker:", ":5672", "broker:0", "broker:99999"])
def test_tcp_probe_bad_address_is_not_ok(address: str) -> None:
    result = tcp_probe(address)
    assert not result.ok and "not a host:port address" in result.detail


def test_parse_address_takes_ipv6_brackets() -> None:
    assert parse_address("[::1]:5672") == ("::1", 5672)
    assert parse_address("kafka.internal:9092") == ("kafka.internal", 9092)


def test_database_probe_ok_on_each_backend(engine: Engine) -> None:
    result = database_probe(engine)
    assert (result.name, result.kind, result.ok) == ("database", "database", True)
    assert result.detail.startswith(f"{engine.dialect.name} answered")
    assert result.latency_ms is not None


def test_database_probe_bad_urls_are_not_ok(tmp_path: Path) -> None:
    engines = [
        create_engine(f"sqlite:///{tmp_path / 'no' / 'such' / 'dir' / 'x.db'}"),
        create_engine(
            f"postgresql+psycopg://root@127.0.0.1:{_closed_port()}/postgres",
            connect_args={"connect_timeout": 2},
        ),
    ]
    try:
        results = [database_probe(engine) for engine in engines]
    finally:
        for engine in engines:
            engine.dispose()
    assert [r.ok for r in results] == [False, False]
    assert "unable to open database file" in results[0].detail
    assert results[1].detail.startswith("OperationalError")
