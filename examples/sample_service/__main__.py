"""Serve the sample service: `python -m examples.sample_service --port 8000 --report-dir DIR`."""

from __future__ import annotations

import argparse
import logging
import os
from collections.abc import Sequence

import uvicorn

from .app import create_app
from .faults import Fault, FaultState
from .reporter import HttpSink, JsonlSink, Reporter


def parse_args(argv: Sequence[str] | None = None) -> argparse.Namespace:
    """Parse the command line."""
    parser = argparse.ArgumentParser(
        prog="python -m examples.sample_service",
        description="Serve the sample target service, reporting its failures to immunity.",
    )
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=8000)
    parser.add_argument("--release", default="sample@1.0.0")
    parser.add_argument("--environment", default="production")
    target = parser.add_mutually_exclusive_group()
    target.add_argument("--report-dir", help="append events to failures/successes.jsonl here")
    target.add_argument("--report-url", help="immunity's base URL, e.g. http://127.0.0.1:8100")
    parser.add_argument(
        "--token",
        default=os.environ.get("IMMUNITY_TOKEN"),
        help="bearer token for --report-url (default: $IMMUNITY_TOKEN)",
    )
    parser.add_argument(
        "--fault",
        action="append",
        default=[],
        choices=[fault.value for fault in Fault],
        help="switch a fault on at start (repeatable)",
    )
    parser.add_argument("--flush-interval", type=float, default=1.0, help="seconds")
    return parser.parse_args(argv)


def main(argv: Sequence[str] | None = None) -> None:
    """Build the reporter and the app from the arguments and serve until interrupted."""
    args = parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")
    reporter: Reporter | None = None
    if args.report_dir:
        reporter = Reporter(JsonlSink(args.report_dir), flush_interval_s=args.flush_interval)
    elif args.report_url:
        sink = HttpSink(args.report_url, args.token)
        reporter = Reporter(sink, flush_interval_s=args.flush_interval)
    app = create_app(
        reporter,
        release=args.release,
        environment=args.environment,
        faults=FaultState(args.fault),
    )
    try:
        uvicorn.run(app, host=args.host, port=args.port)
    finally:
        if reporter is not None:
            reporter.close()


if __name__ == "__main__":
    main()
