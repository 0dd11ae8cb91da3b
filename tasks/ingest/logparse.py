"""Python tracebacks found in ordinary log files, turned into failure events ready for ingestion.

Pure: the lines come from the caller (decoding, and so any non-UTF-8 bytes, is the caller's
business; `immunity ingest-log` opens files with `errors="replace"`). Memory does not grow with
the file: only the traceback being read is held, and it is clipped to a fixed budget.

A traceback belongs to the log record printed just before it (`logger.exception(...)` writes the
record's line, then the traceback) unless that record is DEBUG/INFO or already owns a traceback:
such a traceback was printed on its own (stderr merged into the log), so it gets no record.
"""

from __future__ import annotations

import re
from collections import deque
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from datetime import datetime
from enum import Enum, auto
from typing import Any

from immunity.models.enums import EventSource
from immunity.models.schemas import Frame, full_frame
from immunity.tasks.ingest.fingerprint import parse_python_traceback
from immunity.tasks.ingest.logheaders import (
    MAX_LINE_CHARS,
    LogHeader,
    is_record,
    match_stamped,
    match_unstamped,
    parse_log_header,
    parse_log_timestamp,
)

__all__ = ["iter_log_failures"]

# Budgets that keep one traceback bounded whatever the file holds. Storage keeps the last 32K
# characters of a stack trace, so the tail is kept whole and only a little of the head.
STACKTRACE_HEAD_CHARS = 8_192
STACKTRACE_TAIL_CHARS = 32_768
FRAMES_HEAD_CHARS = 16_384
FRAMES_TAIL_CHARS = 16_384
MAX_MESSAGE_CHARS = 8_192
# Past this many lines after the exception line, the "message" is unrelated output.
MAX_MESSAGE_LINES = 500

# Levels whose records do not claim the traceback that follows them (see the module docstring).
_QUIET_LEVELS = frozenset({"DEBUG", "INFO", "TRACE", "NOTSET"})


# --- traceback lines -----------------------------------------------------------------------------

_PLAIN_START = re.compile(r"^(?P<indent>[ \t]*)Traceback \(most recent call last\):\s*$")
_GROUP_START = re.compile(
    r"^(?P<indent>[ \t]*)\+ Exception Group Traceback \(most recent call last\):\s*$"
)
_CHAIN_MARKERS = frozenset(
    {
        "During handling of the above exception, another exception occurred:",
        "The above exception was the direct cause of the following exception:",
    }
)
# `KeyError: 'x'`, `requests.exceptions.ConnectionError: …`, `KeyboardInterrupt`,
# `f.<locals>.Boom: …`: the type, then `: message` unless the message is empty.
_EXCEPTION_LINE = re.compile(r"^(?P<type>[A-Za-z_][\w.<>]*)(?::[ \t]?(?P<message>.*))?$")


def _indent(line: str) -> int:
    return len(line) - len(line.lstrip(" \t"))


class _ClippedLines:
    """Lines kept within a character budget: the first ones and the last ones, the middle cut."""

    def __init__(self, head_chars: int, tail_chars: int) -> None:
        self._head: list[str] = []
        self._head_left = head_chars
        self._tail: deque[str] = deque()
        self._tail_chars = 0
        self._tail_budget = tail_chars
        self._omitted = 0

    def append(self, line: str) -> None:
        line = line[:MAX_LINE_CHARS]
        cost = len(line) + 1
        if not self._tail and not self._omitted and cost <= self._head_left:
            self._head.append(line)
            self._head_left -= cost
            return
        self._tail.append(line)
        self._tail_chars += cost
        while self._tail_chars > self._tail_budget and self._tail:
            self._tail_chars -= len(self._tail.popleft()) + 1
            self._omitted += 1

    def text(self) -> str:
        cut = [f"  [… {self._omitted} line(s) omitted …]"] if self._omitted else []
        return "\n".join([*self._head, *cut, *self._tail])


class _State(Enum):
    FRAMES = auto()  # inside `File …` lines, waiting for the exception line
    GROUP_TAIL = auto()  # after an exception group's own line: its sub-exceptions
    MESSAGE = auto()  # after the exception line: more lines of its message
    BLANKS = auto()  # blank lines after the message: a chain marker may follow
    CHAIN = auto()  # after a chain marker: the next traceback of the chain is due


@dataclass(slots=True)
class _Record:
    line: int
    text: str  # parsed only if a traceback follows it
    claimed: bool = False


class _Traceback:
    """One traceback (a whole chain) being read; error and frames are those of its last part."""

    def __init__(self, line: int, owner: LogHeader | None, received_at: datetime | None) -> None:
        self.line = line
        self.owner = owner
        self.received_at = received_at
        self.text = _ClippedLines(STACKTRACE_HEAD_CHARS, STACKTRACE_TAIL_CHARS)
        self.part = _ClippedLines(FRAMES_HEAD_CHARS, FRAMES_TAIL_CHARS)
        self.state = _State.FRAMES
        self.indent = 0
        self.group_prefix: str | None = None
        self.pending_blanks = 0
        self.error_type: str | None = None
        self.frames: list[Frame] = []
        self.message: list[str] = []
        self.message_chars = 0
        self.message_lines = 0
        self.message_dropped = 0

    def add(self, line: str) -> None:
        # Blank lines are only kept when something follows them: trailing ones are not ours.
        for _ in range(min(self.pending_blanks, 3)):
            self.text.append("")
        self.pending_blanks = 0
        self.text.append(line)

    def begin_part(self, line: str, start: re.Match[str], group: bool) -> None:
        self.add(line)
        self.part = _ClippedLines(FRAMES_HEAD_CHARS, FRAMES_TAIL_CHARS)
        self.part.append(line)
        self.indent = len(start["indent"])
        self.group_prefix = start["indent"] + "| " if group else None
        self.state = _State.FRAMES

    def set_exception(self, match: re.Match[str]) -> None:
        self.error_type = match["type"]
        self.frames = parse_python_traceback(self.part.text())
        self.part = _ClippedLines(0, 0)  # the frames are parsed: free the text
        self.message = []
        self.message_chars = self.message_lines = self.message_dropped = 0
        self.add_message(match["message"] or "")

    def add_message(self, line: str) -> None:
        self.message_lines += 1
        if self.message_chars >= MAX_MESSAGE_CHARS:
            self.message_dropped += 1
            return
        line = line[: MAX_MESSAGE_CHARS - self.message_chars]
        self.message.append(line)
        self.message_chars += len(line) + 1


def _start_of_traceback(line: str) -> tuple[re.Match[str], bool] | None:
    plain = _PLAIN_START.match(line)
    if plain:
        return plain, False
    group = _GROUP_START.match(line)
    return (group, True) if group else None


def _is_blank(line: str) -> bool:
    return not line.strip()


class _Scanner:
    """The line-by-line state machine behind `iter_log_failures`."""

    def __init__(self, source_name: str, environment: str) -> None:
        self.source_name = source_name
        self.environment = environment
        self.record: _Record | None = None
        self.last_stamp: str | None = None  # the timestamp text of the last record that had one
        self.traceback: _Traceback | None = None

    def feed(self, number: int, line: str) -> dict[str, Any] | None:
        """Read one line; return the event of a traceback that this line showed to be over."""
        event = None
        if self.traceback is not None:
            if self._continue(self.traceback, line):
                return None
            event = self.finish()
        self._outside(number, line)
        return event

    def finish(self) -> dict[str, Any] | None:
        """End the current traceback; return its event, or None when it never got its error."""
        traceback, self.traceback = self.traceback, None
        if traceback is None or traceback.error_type is None:
            return None  # cut short before its exception line: nothing to group it by
        return self._event(traceback)

    def _outside(self, number: int, line: str) -> None:
        start = _start_of_traceback(line)
        if start is not None:
            self._begin(number, line, *start)
            return
        stamped = match_stamped(line)
        if stamped is not None:
            self.record = _Record(number, line[:MAX_LINE_CHARS])
            self.last_stamp = stamped["bracketed"] or stamped["bare"]
        elif match_unstamped(line) is not None:
            self.record = _Record(number, line[:MAX_LINE_CHARS])
        # Anything else continues the last record's message or is unrelated output.

    def _begin(self, number: int, line: str, start: re.Match[str], group: bool) -> None:
        record, owner = self.record, None
        if record is not None and not record.claimed:
            header = parse_log_header(record.text)
            if header is not None and header.level not in _QUIET_LEVELS:
                owner, record.claimed = header, True
        received_at = owner.timestamp if owner is not None else None
        if received_at is None and self.last_stamp is not None:
            # Printed on its own (or by a record without a time): no earlier than the last record.
            received_at = parse_log_timestamp(self.last_stamp)
        line_number = record.line if owner is not None and record is not None else number
        traceback = _Traceback(line_number, owner, received_at)
        traceback.begin_part(line, start, group)
        self.traceback = traceback

    def _continue(self, tb: _Traceback, line: str) -> bool:
        """Take the line into the traceback; False when it is not part of it."""
        if tb.state is _State.FRAMES:
            return self._frames(tb, line)
        if tb.state is _State.GROUP_TAIL:
            if _is_blank(line):
                tb.pending_blanks, tb.state = 1, _State.BLANKS
                return True
            if _indent(line) > 0:
                tb.add(line)
                return True
            return False
        if tb.state is _State.MESSAGE:
            return self._message(tb, line)
        if tb.state is _State.BLANKS:
            if _is_blank(line):
                tb.pending_blanks += 1
                return True
            if line.strip() in _CHAIN_MARKERS:
                tb.add(line)
                tb.state = _State.CHAIN
                return True
            return False
        # CHAIN: blank lines, then the next traceback of the chain.
        if _is_blank(line):
            tb.pending_blanks += 1
            return True
        start = _start_of_traceback(line)
        if start is None:
            return False  # the chain was cut short: keep what was complete
        tb.begin_part(line, *start)
        return True

    def _frames(self, tb: _Traceback, line: str) -> bool:
        if _is_blank(line):
            return False  # tracebacks print no blank lines before their exception line
        if tb.group_prefix is not None:
            return self._group_frames(tb, line, tb.group_prefix)
        indent = _indent(line)
        if indent > tb.indent:
            tb.add(line)
            tb.part.append(line)
            return True
        if indent < tb.indent or _start_of_traceback(line) or is_record(line):
            return False
        match = _EXCEPTION_LINE.match(line[indent:].rstrip())
        if match is None:
            return False
        tb.add(line)
        tb.set_exception(match)
        tb.state = _State.MESSAGE
        return True

    def _group_frames(self, tb: _Traceback, line: str, prefix: str) -> bool:
        if _indent(line) == 0:
            return False  # an exception group is drawn entirely inside its indented border
        tb.add(line)
        rest = line[len(prefix) :] if line.startswith(prefix) else ""
        # The group's own exception line sits right at the border; its frames sit deeper.
        match = _EXCEPTION_LINE.match(rest.rstrip()) if rest[:1].strip() else None
        if match is None:
            tb.part.append(line)
            return True
        tb.set_exception(match)
        tb.state = _State.GROUP_TAIL
        return True

    def _message(self, tb: _Traceback, line: str) -> bool:
        if _is_blank(line):
            tb.pending_blanks, tb.state = 1, _State.BLANKS
            return True
        if line.strip() in _CHAIN_MARKERS:
            tb.add(line)
            tb.state = _State.CHAIN
            return True
        if (
            _indent(line) < tb.indent
            or tb.message_lines >= MAX_MESSAGE_LINES
            or _start_of_traceback(line)
            or is_record(line)
        ):
            return False
        tb.add(line)
        tb.add_message(line[tb.indent :].rstrip()[:MAX_LINE_CHARS])
        return True

    def _event(self, tb: _Traceback) -> dict[str, Any]:
        owner = tb.owner
        message = "\n".join(tb.message)
        if tb.message_dropped:
            message += f"\n[… {tb.message_dropped} more line(s)]"
        return {
            "error_type": tb.error_type,
            "message": message,
            "frames": [full_frame(frame) for frame in tb.frames],
            "stacktrace": tb.text.text(),
            "received_at": tb.received_at.isoformat() if tb.received_at else None,
            "environment": self.environment,
            "source": EventSource.FILE.value,
            "context": {
                "logger": owner.logger if owner is not None else None,
                "log_line": owner.message if owner is not None else None,
                "file": self.source_name,
                "line": tb.line,
            },
        }


def iter_log_failures(
    lines: Iterable[str], *, source_name: str = "", environment: str = "production"
) -> Iterator[dict[str, Any]]:
    """Yield one failure-event dict (valid for `FailureEventIn`) per Python traceback in a log.

    A chained traceback is one event carrying the last exception's type, message and frames;
    `stacktrace` holds the whole chain. `received_at` is the owning record's timestamp as an
    ISO 8601 UTC string (when that record has none, or there is no record, the last timestamp
    before the traceback; None when the log has none). `context` holds `logger`, `log_line`
    (the record's message), `file` (`source_name`) and `line` (1-based: where the record, or
    else the traceback, starts). A traceback cut off before its exception line yields nothing.
    """
    scanner = _Scanner(source_name, environment)
    for number, raw in enumerate(lines, start=1):
        event = scanner.feed(number, raw.rstrip("\r\n"))
        if event is not None:
            yield event
    event = scanner.finish()
    if event is not None:
        yield event
