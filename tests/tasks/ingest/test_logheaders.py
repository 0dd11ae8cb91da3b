"""Log record headers: the time, level, logger and message of a record's first line."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from immunity.tasks.ingest.logheaders import LogHeader, parse_log_header, parse_log_timestamp


@pytest.mark.parametrize(
    ("line", "expected"),
    [
        (
            "2026-11-20 10:00:00,123 ERROR [app.jobs] message",
            LogHeader(
                datetime(2026, 11, 20, 10, 0, 0, 123000, UTC), "ERROR", "app.jobs", "message"
            ),
        ),
        (
            "2026-11-20T10:00:00Z ERROR app.jobs: message",
            LogHeader(datetime(2026, 11, 20, 10, tzinfo=UTC), "ERROR", "app.jobs", "message"),
        ),
        (
            "[2026-11-20 10:00:00] ERROR in app: boom",
            LogHeader(datetime(2026, 11, 20, 10, tzinfo=UTC), "ERROR", "app", "boom"),
        ),
        (
            "ERROR:app.jobs:message: with colons",
            LogHeader(None, "ERROR", "app.jobs", "message: with colons"),
        ),
        ("CRITICAL:root:", LogHeader(None, "CRITICAL", "root", "")),
        (
            "2026-11-20 10:00:00 app.jobs WARNING slow",
            LogHeader(datetime(2026, 11, 20, 10, tzinfo=UTC), "WARNING", "app.jobs", "slow"),
        ),
        (
            "2026-11-20 10:00:00.5 error something broke",
            LogHeader(
                datetime(2026, 11, 20, 10, 0, 0, 500000, UTC), "ERROR", None, "something broke"
            ),
        ),
        (
            "2026-11-20 12:00:00+02:00 | unknown layout",
            LogHeader(datetime(2026, 11, 20, 10, tzinfo=UTC), None, None, "| unknown layout"),
        ),
        ("Traceback (most recent call last):", None),
        ("KeyError: 'x'", None),
        ('  File "/srv/app/jobs.py", line 3, in run', None),
        ("Error: not a level prefix", None),
        ("2026-11-20 is a date only", None),
    ],
)
def test_parse_log_header(line: str, expected: LogHeader | None) -> None:
    assert parse_log_header(line) == expected


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("2026-11-20T10:00:00Z", datetime(2026, 11, 20, 10, tzinfo=UTC)),
        ("2026-11-20 10:00:00,123", datetime(2026, 11, 20, 10, 0, 0, 123000, UTC)),
        ("2026-11-20T10:00:00", datetime(2026, 11, 20, 10, tzinfo=UTC)),
        ("2026-11-20T10:00:00.123456789+05:30", datetime(2026, 11, 20, 4, 30, 0, 123456, UTC)),
        ("2026-11-20 10:00:00 -0800", datetime(2026, 11, 20, 18, tzinfo=UTC)),
        ("2026-11-20 10:00:00 UTC", datetime(2026, 11, 20, 10, tzinfo=UTC)),
        ("2026-02-30 10:00:00", None),
        ("2026-11-20 10:00:00 +25:00", None),
        ("yesterday", None),
    ],
)
def test_parse_log_timestamp(text: str, expected: datetime | None) -> None:
    parsed = parse_log_timestamp(text)
    assert parsed == expected
    if parsed is not None:
        assert parsed.tzinfo is UTC or parsed.utcoffset() == timedelta(0)
