"""The `immunity` command (typer + rich)."""

import os

# Before anything imports Prefect: its telemetry otherwise prints a traceback on this network.
os.environ.setdefault("PREFECT_SERVER_ANALYTICS_ENABLED", "false")
