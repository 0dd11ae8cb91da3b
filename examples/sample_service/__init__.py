"""The sample target service: a FastAPI app with switchable faults that reports to immunity."""

from __future__ import annotations

from .app import create_app
from .faults import Fault, FaultState, UnknownFaultError
from .reporter import Reporter, ReportingMiddleware
from .server import RunningServer, start_server
from .sinks import HttpSink, JsonlSink, Sink

__all__ = [
    "Fault",
    "FaultState",
    "HttpSink",
    "JsonlSink",
    "Reporter",
    "ReportingMiddleware",
    "RunningServer",
    "Sink",
    "UnknownFaultError",
    "create_app",
    "start_server",
]
