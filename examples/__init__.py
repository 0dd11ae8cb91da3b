"""Examples: the sample target service, the traffic that drives it and its scenario pack."""

from __future__ import annotations

from pathlib import Path

__all__ = ["SCENARIO_PACK"]

# The workflow scenarios that exercise the sample service, one YAML file per category.
SCENARIO_PACK = Path(__file__).resolve().parent / "scenarios"
