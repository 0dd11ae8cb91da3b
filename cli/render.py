"""Rich tables of what the store holds."""

from __future__ import annotations

from collections.abc import Sequence

from rich.markup import escape
from rich.table import Table

from immunity.models.tables import RegressionTest, Signature
from immunity.tasks.shared.queries import confidence_band

__all__ = ["reproduction_label", "signatures_table", "tests_table", "unverified_table"]


def reproduction_label(test: RegressionTest) -> str:
    """Return whether a generated test reproduced its failure (— for manual tests)."""
    if test.reproduction is None:
        return "—"
    colour = {"reproduced": "green", "not_reproduced": "red"}.get(test.reproduction, "yellow")
    return f"[{colour}]{test.reproduction}[/]"


def signatures_table(signatures: Sequence[Signature], title: str = "Signatures") -> Table:
    """Return a table of signatures: what failed, how often, and whether it has a test."""
    table = Table(title=title, title_justify="left")
    for column in (
        "id",
        "fingerprint",
        "error type",
        "category",
        "severity",
        "seen",
        "status",
        "test",
        "suspect deploy",
        "culprit",
    ):
        table.add_column(column, overflow="fold")
    for s in signatures:
        table.add_row(
            str(s.id),
            s.fingerprint[:8],
            s.error_type,
            s.category,
            s.severity,
            str(s.occurrence_count),
            s.status,
            str(s.test_id) if s.test_id else (s.untestable_reason or "—"),
            f"#{s.suspect_deployment_id}" if s.suspect_deployment_id else "—",
            s.culprit,
        )
    return table


def tests_table(tests: Sequence[RegressionTest], title: str = "Regression tests") -> Table:
    """Return a table of regression tests: what each replays and how far it is trusted."""
    table = Table(title=title, title_justify="left")
    columns = (
        "id",
        "name",
        "kind",
        "replays",
        "expects",
        "confidence",
        "band",
        "runs",
        "reproduced",
        "tags",
    )
    for column in (*columns, "signature"):
        # A name is copied into commands, so it is never broken across lines.
        table.add_column(column, overflow="fold", no_wrap=column == "name")
    for t in tests:
        if t.kind == "scenario":
            replays = f"{len(t.spec.get('steps', []))} steps"
        else:
            replays = f"{t.spec.get('method', '')} {t.spec.get('path', '')}".strip()
        expects = ", ".join(f"{key}={value}" for key, value in sorted(t.expectations.items()))
        runs = f"{t.pass_count}✓ {t.fail_count}✗ {t.flaky_count}~"
        if t.quarantined:
            runs += " quarantined"
        table.add_row(
            str(t.id),
            t.name,
            t.kind,
            replays,
            expects,
            str(t.confidence),
            confidence_band(t.confidence),
            runs,
            reproduction_label(t),
            ", ".join(t.tags),
            str(t.created_from_signature_id or "—"),
        )
    return table


def unverified_table(tests: Sequence[RegressionTest]) -> Table:
    """Return a table of untrusted generated tests: state, why, and what the capture lacks."""
    table = Table(title="Tests not trusted until they reproduce", title_justify="left")
    for column in ("id", "name", "state", "why", "capture issues", "checked (UTC)", "signature"):
        table.add_column(column, overflow="fold", no_wrap=column == "name")
    for t in tests:
        evidence = t.reproduction_evidence or {}
        table.add_row(
            str(t.id),
            t.name,
            reproduction_label(t),
            escape(str(evidence.get("reason") or "not checked yet")),
            escape("; ".join(t.capture_issues or ()) or "—"),
            f"{t.reproduction_checked_at:%Y-%m-%d %H:%M}" if t.reproduction_checked_at else "—",
            str(t.created_from_signature_id or "—"),
        )
    return table
