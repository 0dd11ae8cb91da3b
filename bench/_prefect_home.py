"""Imported first by a benchmark: Prefect quiet, and an ephemeral server of the run's own.

Prefect reads its settings when imported, so this runs before anything imports Prefect. The
temporary Prefect home is removed after Prefect's own exit handlers (registered later, run
earlier); subprocesses inherit the variable and leave the removal to this process.
"""

from __future__ import annotations

import atexit
import os
import shutil
import tempfile

os.environ.setdefault("PREFECT_SERVER_ANALYTICS_ENABLED", "false")
os.environ.setdefault("PREFECT_LOGGING_LEVEL", "WARNING")
# A fresh Prefect home means migrations at start-up: slow on a busy 2-core machine.
os.environ.setdefault("PREFECT_SERVER_EPHEMERAL_STARTUP_TIMEOUT_SECONDS", "180")
if "PREFECT_HOME" not in os.environ:
    os.environ["PREFECT_HOME"] = tempfile.mkdtemp(prefix="immunity-bench-prefect-")
    atexit.register(shutil.rmtree, os.environ["PREFECT_HOME"], ignore_errors=True)
