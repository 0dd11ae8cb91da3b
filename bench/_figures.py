"""What every benchmark prints: its figures, each against its target, as one table."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

__all__ = ["Figure", "say", "figures_table"]


@dataclass(frozen=True)
class Figure:
    """One printed line: a measurement, its value and, when it has one, its target."""

    name: str
    value: str
    target: str = ""
    passed: bool | None = None

    @property
    def verdict(self) -> str:
        return "" if self.passed is None else ("PASS" if self.passed else "FAIL")


def say(message: str) -> None:
    """Print at once (benchmarks run for minutes; progress must show)."""
    print(message, flush=True)


def figures_table(figures: Sequence[Figure], heading: tuple[str, str, str]) -> str:
    """Return the figures as aligned text under `heading` (name, value, target columns)."""
    width = max(len(f.name) for f in [*figures, Figure(heading[0], "")])
    lines = [f"{heading[0]:<{width}}  {heading[1]:>14}  {heading[2]:>14}  result"]
    lines += [f"{f.name:<{width}}  {f.value:>14}  {f.target:>14}  {f.verdict}" for f in figures]
    return "\n".join(lines)
