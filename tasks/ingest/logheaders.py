"""Log record headers: which lines start a log record, and the time, level, logger and message.

Layouts known: logging's defaults and cookbook, Flask, gunicorn, uvicorn and celery; a line that
starts with a full date and time starts a record even in a layout not known here.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta, timezone

__all__ = [
    "MAX_LINE_CHARS",
    "LogHeader",
    "is_record",
    "match_stamped",
    "match_unstamped",
    "parse_log_header",
    "parse_log_timestamp",
]

# No line of a log is kept longer than this, whatever the file holds.
MAX_LINE_CHARS = 4_000

_TIMESTAMP = (
    r"\d{4}-\d{2}-\d{2}[T ]\d{2}:\d{2}:\d{2}(?:[.,]\d{1,9})?"
    r"(?:[ ]?(?:Z|[+-]\d{2}(?::?\d{2})?|UTC|GMT)(?!\w))?"
)
_TIMESTAMP_PARTS = re.compile(
    r"(?P<date>\d{4}-\d{2}-\d{2})[T ](?P<time>\d{2}:\d{2}:\d{2})(?:[.,](?P<fraction>\d{1,9}))?"
    r"[ ]?(?P<zone>Z|[+-]\d{2}(?::?\d{2})?|UTC|GMT)?"
)
_LEVEL = r"(?i:CRITICAL|FATAL|ERROR|EXCEPTION|WARNING|WARN|NOTICE|INFO|DEBUG|TRACE|SEVERE)(?!\w)"
_NAME = r"[A-Za-z_][\w.<>-]*"

# A line that starts with a full date and time (bare or in brackets) starts a record; celery puts
# the level inside the brackets: `[2026-11-20 10:00:00,123: ERROR/ForkPoolWorker-1]`.
_STAMPED = re.compile(
    rf"^(?:\[(?P<bracketed>{_TIMESTAMP})(?::[ \t]*(?P<bracket_level>{_LEVEL})/[^\]]*)?\]"
    rf"|(?P<bare>{_TIMESTAMP}))(?P<rest>(?:\s.*)?)$"
)
# What follows the timestamp, most specific first (a later, looser pattern would also match).
_AFTER_TIMESTAMP = [
    # `%(asctime)s - %(name)s - %(levelname)s - %(message)s` (the logging cookbook)
    re.compile(rf"^\s+-\s+(?P<logger>{_NAME})\s+-\s+(?P<level>{_LEVEL})\s+-\s?(?P<message>.*)$"),
    # Flask: `[%(asctime)s] %(levelname)s in %(module)s: %(message)s`
    re.compile(rf"^\s+(?P<level>{_LEVEL})\s+in\s+(?P<logger>{_NAME}):\s?(?P<message>.*)$"),
    # `2026-11-20 10:00:00,123 ERROR [app.jobs] message`
    re.compile(
        rf"^\s+(?:\[\d+\]\s+)?\[?(?P<level>{_LEVEL})\]?\s+\[(?P<logger>[^\]\s]+)\]:?"
        rf"(?:\s(?P<message>.*))?$"
    ),
    # `2026-11-20T10:00:00Z ERROR app.jobs: message`
    re.compile(rf"^\s+\[?(?P<level>{_LEVEL})\]?\s+(?P<logger>{_NAME}):(?:\s(?P<message>.*))?$"),
    # `2026-11-20 10:00:00 ERROR message`, gunicorn `[…] [7] [ERROR] message`, celery
    re.compile(rf"^\s+(?:\[[^\]]*\]\s+)?\[?(?P<level>{_LEVEL})\]?:?(?:\s+(?P<message>.*))?$"),
    # `%(asctime)s %(name)s %(levelname)s %(message)s`
    re.compile(rf"^\s+(?P<logger>{_NAME})\s+\[?(?P<level>{_LEVEL})\]?:?(?:\s+(?P<message>.*))?$"),
]
# Without a timestamp only the level can mark a record, and only as logging spells it.
_UNSTAMPED = [
    # logging.basicConfig: `%(levelname)s:%(name)s:%(message)s`
    re.compile(
        r"^(?P<level>CRITICAL|ERROR|WARNING|INFO|DEBUG):(?P<logger>[^:\s]+):(?P<message>.*)$"
    ),
    # uvicorn: `ERROR:    Exception in ASGI application`
    re.compile(r"^(?P<level>CRITICAL|ERROR|WARNING|INFO|DEBUG|TRACE):\s+(?P<message>.*)$"),
]


@dataclass(frozen=True, slots=True)
class LogHeader:
    """The parts of a log record's first line: timestamp (UTC), level, logger and message."""

    timestamp: datetime | None
    level: str | None
    logger: str | None
    message: str


def parse_log_timestamp(text: str) -> datetime | None:
    """Return an ISO 8601 or logging-style timestamp as an aware UTC datetime; None if invalid.

    A timestamp without a zone is taken as UTC (logging's default `asctime` has none).
    """
    match = _TIMESTAMP_PARTS.fullmatch(text.strip())
    if not match:
        return None
    fraction = (match["fraction"] or "0")[:6].ljust(6, "0")
    try:
        naive = datetime.fromisoformat(f"{match['date']}T{match['time']}")
        zone = _zone(match["zone"])
    except ValueError:
        return None
    return naive.replace(microsecond=int(fraction), tzinfo=zone).astimezone(UTC)


def _zone(text: str | None) -> timezone:
    if text is None or text in ("Z", "UTC", "GMT"):
        return UTC
    digits = text[1:].replace(":", "")
    offset = timedelta(hours=int(digits[:2]), minutes=int(digits[2:] or 0))
    return timezone(-offset if text[0] == "-" else offset)  # ValueError past ±24h


def match_stamped(line: str) -> re.Match[str] | None:
    """Return the match of a line that starts with a date and time, or None.

    The timestamp's text is in group `bracketed` or `bare`, a level inside the brackets in
    `bracket_level`, what follows in `rest`.
    """
    return _STAMPED.match(line) if line[:1].isdigit() or line[:1] == "[" else None


def match_unstamped(line: str) -> re.Match[str] | None:
    """Return the match of a line that starts a record with a level but no timestamp."""
    if not line[:1].isupper():
        return None
    for pattern in _UNSTAMPED:
        match = pattern.match(line)
        if match:
            return match
    return None


def is_record(line: str) -> bool:
    """Return whether a line starts a log record."""
    # Cheaper than parse_log_header: most lines of a log are records that own no traceback.
    return match_stamped(line) is not None or match_unstamped(line) is not None


def parse_log_header(line: str) -> LogHeader | None:
    """Return the header of a line that starts a log record, or None for any other line."""
    line = line.rstrip("\r\n")
    stamped = match_stamped(line)
    if stamped:
        timestamp = parse_log_timestamp(stamped["bracketed"] or stamped["bare"])
        rest = stamped["rest"]
        if stamped["bracket_level"]:
            return LogHeader(timestamp, stamped["bracket_level"].upper(), None, rest.strip())
        for pattern in _AFTER_TIMESTAMP:
            match = pattern.match(rest)
            if match:
                return _header(timestamp, match)
        # A date and time at the start of a line is a record even in a format we do not know.
        return LogHeader(timestamp, None, None, rest.strip())
    match = match_unstamped(line)
    return _header(None, match) if match else None


def _header(timestamp: datetime | None, match: re.Match[str]) -> LogHeader:
    groups = match.groupdict()
    logger = groups.get("logger")
    return LogHeader(
        timestamp=timestamp,
        level=match["level"].upper(),
        logger=logger or None,
        message=(groups.get("message") or "").strip()[:MAX_LINE_CHARS],
    )
