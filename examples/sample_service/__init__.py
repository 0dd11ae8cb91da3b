"""The sample target service: a FastAPI app with switchable faults that reports to immunity."""

from __future__ import annotations

from examples.sample_service.app import create_app
from examples.sample_service.faults import Fault, FaultState, UnknownFaultError
from examples.sample_service.reporter import Reporter, ReportingMiddleware
from examples.sample_service.server import RunningServer, start_server
from examples.sample_service.sinks import HttpSink, JsonlSink, Sink

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
