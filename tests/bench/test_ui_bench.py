"""bench/ui.py runs end to end on a few checks: both contenders pass, the ratio prints."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

from immunity.models.settings import Settings

ROOT = Path(__file__).resolve().parents[2]
CHECKS = 6


def test_ui_benchmark_runs_both_contenders_and_prints_the_target(chromium: Settings) -> None:
    env = {key: value for key, value in os.environ.items() if not key.startswith("IMMUNITY_")}
    env["IMMUNITY_CHROMIUM_BINARY"] = chromium.chromium_binary
    env["IMMUNITY_CHROMEDRIVER"] = chromium.chromedriver
    command = [sys.executable, str(ROOT / "bench" / "ui.py"), "--checks", str(CHECKS)]
    result = subprocess.run(command, cwd=ROOT, env=env, capture_output=True, text=True, timeout=300)
    output = result.stdout + result.stderr
    assert result.returncode == 0, output[-6000:]
    for contender, started in (
        ("A  reused pool, 2 at a time", 2),
        ("B  a new browser per test, 2 at a time", CHECKS),
    ):
        line = rf"^{re.escape(contender)} +{CHECKS}/{CHECKS} +[\d.]+ +\d+ +{started}$"
        assert re.search(line, result.stdout, re.M), (contender, output[-6000:])
    speedup = r"^speed-up: reused pool vs a new browser per test +[\d.]+× +>= 3× +(PASS|FAIL)$"
    assert re.search(speedup, result.stdout, re.M), output[-6000:]
