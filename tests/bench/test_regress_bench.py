"""bench/regress.py runs end to end on a few tests: every contender passes, the ratios print."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
TESTS = 30


def test_regress_benchmark_runs_every_contender_and_prints_the_targets() -> None:
    # Its own ephemeral Prefect server and store: nothing of this session's settings leaks in.
    env = {
        key: value
        for key, value in os.environ.items()
        if not key.startswith("IMMUNITY_") and key not in ("PREFECT_API_URL", "PREFECT_HOME")
    }
    env["PREFECT_SERVER_ANALYTICS_ENABLED"] = "false"
    command = [
        sys.executable,
        str(ROOT / "bench" / "regress.py"),
        *("--tests", str(TESTS), "--repeat", "1", "--flow-repeat", "1"),
    ]
    result = subprocess.run(command, cwd=ROOT, env=env, capture_output=True, text=True, timeout=240)
    output = result.stdout + result.stderr
    assert result.returncode == 0, output[-6000:]
    for contender in (
        "A  sequential pytest (pytest's own time)",
        "B  bare async httpx loop",
        "C(i)  immunity runner (run_cases_sync)",
        "C(ii)  immunity flow, SQLite",
    ):
        assert re.search(rf"^{re.escape(contender)} +{TESTS}/{TESTS}\b", result.stdout, re.M), (
            contender,
            output[-6000:],
        )
    for name in ("immunity runner (run_cases_sync)", "immunity flow, SQLite"):
        speedup = (
            rf"^speed-up: {re.escape(name)} vs sequential pytest +[\d.]+× +>= 5× +(PASS|FAIL)$"
        )
        overhead = (
            rf"^overhead: {re.escape(name)} vs the bare loop +[-+][\d.]+ ms/test +<= 2 ms/test"
        )
        assert re.search(speedup, result.stdout, re.M), output[-6000:]
        assert re.search(overhead, result.stdout, re.M), output[-6000:]
