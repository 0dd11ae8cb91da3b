"""Probes: is an HTTP endpoint answering as expected and in time, the store up, a queue reachable.

A probe never raises for what it probes: an unreachable thing is a result that is not ok, with
the reason in `detail`.
"""

from __future__ import annotations

import socket
import time
from typing import TYPE_CHECKING

import httpx
from sqlalchemy import text
from sqlalchemy.exc import SQLAlchemyError

from immunity.models.readiness import ProbeResult

if TYPE_CHECKING:
    from sqlalchemy import Engine

    from immunity.models.settings import HttpProbe

__all__ = ["database_probe", "http_probe", "parse_address", "tcp_probe"]

# A probe over its latency limit is waited for a while longer, so the report says how slow it
# was and what it answered rather than only "timed out".
_PATIENCE = 2.0


def _elapsed_ms(started: float) -> float:
    return round((time.perf_counter() - started) * 1000, 2)


def _reason(error: BaseException) -> str:
    # SQLAlchemy wraps the driver's error and appends a link; the driver's first line says it.
    cause = getattr(error, "orig", None) or error
    first = (str(cause).strip().splitlines() or [""])[0]
    return f"{type(cause).__name__}: {first}" if first else type(cause).__name__


def http_probe(probe: HttpProbe, client: httpx.Client) -> ProbeResult:
    """Return whether GET `probe.url` answered the expected status within the latency limit."""
    limit_s = probe.max_latency_ms / 1000
    started = time.perf_counter()
    try:
        response = client.get(probe.url, timeout=limit_s * _PATIENCE)
    except httpx.TimeoutException:
        return ProbeResult(
            name=probe.name,
            kind="http",
            ok=False,
            latency_ms=_elapsed_ms(started),
            detail=f"no answer within {probe.max_latency_ms * _PATIENCE:g} ms "
            f"(limit {probe.max_latency_ms:g} ms)",
        )
    except httpx.HTTPError as error:
        return ProbeResult(name=probe.name, kind="http", ok=False, detail=_reason(error))
    latency = _elapsed_ms(started)
    problems = []
    if response.status_code != probe.expected_status:
        problems.append(f"status {response.status_code}, expected {probe.expected_status}")
    if latency > probe.max_latency_ms:
        problems.append(f"{latency:.0f} ms, over the {probe.max_latency_ms:g} ms limit")
    return ProbeResult(
        name=probe.name,
        kind="http",
        ok=not problems,
        status_code=response.status_code,
        latency_ms=latency,
        detail="; ".join(problems) or f"{response.status_code} in {latency:.0f} ms",
    )


def database_probe(engine: Engine) -> ProbeResult:
    """Return whether the store answers `SELECT 1`."""
    where = engine.url.render_as_string(hide_password=True)
    started = time.perf_counter()
    try:
        with engine.connect() as conn:
            conn.execute(text("SELECT 1")).scalar_one()
    except (SQLAlchemyError, OSError) as error:
        return ProbeResult(name="database", kind="database", ok=False, detail=_reason(error))
    latency = _elapsed_ms(started)
    return ProbeResult(
        name="database",
        kind="database",
        ok=True,
        latency_ms=latency,
        detail=f"{engine.dialect.name} answered in {latency:.0f} ms ({where})",
    )


def parse_address(address: str) -> tuple[str, int]:
    """Return (host, port) of `host:port` or `[v6]:port`; ValueError when it is neither."""
    host, sep, port = address.strip().rpartition(":")
    host = host.removeprefix("[").removesuffix("]")
    if not sep or not host or not port.isdigit() or not 0 < int(port) < 65_536:
        raise ValueError(f"not a host:port address: {address!r}")
    return host, int(port)


def tcp_probe(address: str, timeout_s: float = 2, *, name: str = "queue") -> ProbeResult:
    """Return whether a TCP connection to `host:port` opens within `timeout_s`."""
    try:
        host, port = parse_address(address)
    except ValueError as error:
        return ProbeResult(name=name, kind="queue", ok=False, detail=str(error))
    started = time.perf_counter()
    try:
        with socket.create_connection((host, port), timeout=timeout_s):
            pass
    except TimeoutError:
        return ProbeResult(
            name=name,
            kind="queue",
            ok=False,
            latency_ms=_elapsed_ms(started),
            detail=f"{address}: no connection within {timeout_s:g} s",
        )
    except OSError as error:
        return ProbeResult(name=name, kind="queue", ok=False, detail=f"{address}: {error}")
    latency = _elapsed_ms(started)
    return ProbeResult(
        name=name,
        kind="queue",
        ok=True,
        latency_ms=latency,
        detail=f"{address} accepted a connection in {latency:.0f} ms",
    )
