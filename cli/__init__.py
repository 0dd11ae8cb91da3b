"""The `immunity` command (typer + rich)."""

import os

# Before anything imports Prefect: its telemetry otherwise prints a traceback on this network.
os.environ.setdefault("PREFECT_SERVER_ANALYTICS_ENABLED", "false")
# Ephemeral mode starts a server (and migrates its database) on first use; Prefect's 20 s limit
# was measured too short for a fresh database on a slow two-core machine (the demo then fails).
os.environ.setdefault("PREFECT_SERVER_EPHEMERAL_STARTUP_TIMEOUT_SECONDS", "120")
