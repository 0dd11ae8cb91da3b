"""Tracebacks in ordinary log files: found among other lines, chained, timed and attributed."""

from __future__ import annotations

import tracemalloc
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta, timezone
from typing import Any

from immunity.models.schemas import FailureEventIn
from immunity.tasks.ingest.logparse import (
    MAX_MESSAGE_CHARS,
    STACKTRACE_HEAD_CHARS,
    STACKTRACE_TAIL_CHARS,
    iter_log_failures,
)


def _parse(text: str, **kwargs: Any) -> list[dict[str, Any]]:
    events = list(iter_log_failures(text.splitlines(keepends=True), **kwargs))
    for event in events:
        FailureEventIn.model_validate(event)  # every event is one the ingest API would accept
    return events


def _functions(event: dict[str, Any]) -> list[str]:
    return [frame["function"] for frame in event["frames"]]


# --- the python logging default format, chained "direct cause", multi-line message --------------

BRACKETED_LOGGER_LOG = """\
2026-11-20 10:00:00,001 INFO [app.web] listening on :8080
2026-11-20 10:00:01,500 ERROR [app.jobs] job 17 failed
Traceback (most recent call last):
  File "/srv/app/jobs.py", line 42, in run_job
    record = load(job_id)
             ^^^^^^^^^^^^
  File "/srv/app/store.py", line 10, in load
    return cache[job_id]
           ~~~~~^^^^^^^^
KeyError: 'customer_id'

The above exception was the direct cause of the following exception:

Traceback (most recent call last):
  File "/srv/app/worker.py", line 88, in loop
    run_job(job)
  File "/srv/app/jobs.py", line 44, in run_job
    raise ValueError("bad record\\nsecond line") from error
ValueError: bad record
second line
2026-11-20 10:00:02,250 INFO [app.web] GET /health 200
2026-11-20 10:00:03,000 WARNING [app.jobs] retrying job 18
"""


def test_logging_default_format_with_a_direct_cause_chain_is_one_event() -> None:
    [event] = _parse(BRACKETED_LOGGER_LOG, source_name="/var/log/app.log")
    assert event["error_type"] == "ValueError"
    assert event["message"] == "bad record\nsecond line"
    # The frames are the final exception's, outermost first.
    assert _functions(event) == ["loop", "run_job"]
    assert [f["lineno"] for f in event["frames"]] == [88, 44]
    assert (
        event["frames"][1]["context_line"]
        == 'raise ValueError("bad record\\nsecond line") from error'
    )
    assert event["received_at"] == "2026-11-20T10:00:01.500000+00:00"
    assert event["source"] == "file" and event["environment"] == "production"
    assert event["context"] == {
        "logger": "app.jobs",
        "log_line": "job 17 failed",
        "file": "/var/log/app.log",
        "line": 2,
    }
    stacktrace = event["stacktrace"]
    assert stacktrace.startswith('Traceback (most recent call last):\n  File "/srv/app/jobs.py"')
    assert "KeyError: 'customer_id'\n\nThe above exception was the direct cause" in stacktrace
    assert stacktrace.endswith("ValueError: bad record\nsecond line")  # no log line after it
    assert "GET /health" not in stacktrace


# --- ISO timestamps, "During handling", dotted exception types ------------------------------------

ISO_COLON_LOGGER_LOG = """\
2026-11-20T10:00:00Z INFO app.sync: syncing 3 accounts
2026-11-20T10:05:00Z ERROR app.sync: upstream unreachable for account 991
Traceback (most recent call last):
  File "/usr/lib/python3.12/site-packages/urllib3/connectionpool.py", line 793, in urlopen
    response = self._make_request(
  File "/usr/lib/python3.12/site-packages/urllib3/connection.py", line 211, in _new_conn
    raise NewConnectionError(self, "Failed to establish a new connection") from e
urllib3.exceptions.NewConnectionError: <HTTPSConnection at 0x7f3a2b1c4d50>: connection refused

During handling of the above exception, another exception occurred:

Traceback (most recent call last):
  File "/srv/app/sync.py", line 31, in sync_account
    response = session.get(url, timeout=5)
  File "/usr/lib/python3.12/site-packages/requests/adapters.py", line 700, in send
    raise ConnectionError(e, request=request)
requests.exceptions.ConnectionError: HTTPSConnectionPool(host='api.example.com'): Max retries
2026-11-20T10:05:01+02:00 INFO app.sync: next account
2026-11-20T10:06:00.250 ERROR app.sync: interrupted
Traceback (most recent call last):
  File "/srv/app/sync.py", line 12, in main
    time.sleep(60)
KeyboardInterrupt
"""


def test_iso_timestamps_and_during_handling_chain_and_bare_exception() -> None:
    connection, interrupt = _parse(ISO_COLON_LOGGER_LOG, source_name="sync.log")
    assert connection["error_type"] == "requests.exceptions.ConnectionError"
    assert connection["message"] == ("HTTPSConnectionPool(host='api.example.com'): Max retries")
    assert _functions(connection) == ["sync_account", "send"]
    assert connection["frames"][1]["module"] == "requests.adapters"
    assert connection["received_at"] == "2026-11-20T10:05:00+00:00"
    assert connection["context"] == {
        "logger": "app.sync",
        "log_line": "upstream unreachable for account 991",
        "file": "sync.log",
        "line": 2,
    }
    assert "During handling of the above exception" in connection["stacktrace"]
    assert "urllib3.exceptions.NewConnectionError" in connection["stacktrace"]

    assert interrupt["error_type"] == "KeyboardInterrupt" and interrupt["message"] == ""
    assert _functions(interrupt) == ["main"]
    # No zone: taken as UTC; the traceback ends the file.
    assert interrupt["received_at"] == "2026-11-20T10:06:00.250000+00:00"
    assert interrupt["context"]["line"] == 19 and interrupt["context"]["log_line"] == "interrupted"
    assert interrupt["stacktrace"].endswith("KeyboardInterrupt")


# --- Flask, Python 3.11+ position markers ---------------------------------------------------------

FLASK_LOG = """\
[2026-11-20 10:00:00,120] INFO in app: 127.0.0.1 - - "GET /api/jobs HTTP/1.1" 200 -
[2026-11-20 10:00:00,457] ERROR in app: Exception on /api/jobs [POST]
Traceback (most recent call last):
  File "/srv/venv/lib/python3.11/site-packages/flask/app.py", line 1455, in wsgi_app
    response = self.full_dispatch_request()
               ^^^^^^^^^^^^^^^^^^^^^^^^^^^^
  File "/srv/venv/lib/python3.11/site-packages/flask/app.py", line 869, in full_dispatch_request
    rv = self.dispatch_request()
         ^^^^^^^^^^^^^^^^^^^^^^^
  File "/srv/app/views.py", line 23, in create_job
    total = payload["count"] / payload["batches"]
            ~~~~~~~~~~~~~~~~~^~~~~~~~~~~~~~~~~~~~
ZeroDivisionError: division by zero
[2026-11-20 10:00:01] INFO in app: 127.0.0.1 - - "POST /api/jobs HTTP/1.1" 500 -
"""


def test_flask_format_with_position_markers() -> None:
    [event] = _parse(FLASK_LOG)
    assert event["error_type"] == "ZeroDivisionError"
    assert event["message"] == "division by zero"
    assert _functions(event) == ["wsgi_app", "full_dispatch_request", "create_job"]
    assert event["frames"][2]["context_line"] == 'total = payload["count"] / payload["batches"]'
    assert event["received_at"] == "2026-11-20T10:00:00.457000+00:00"
    assert event["context"] == {
        "logger": "app",
        "log_line": "Exception on /api/jobs [POST]",
        "file": "",
        "line": 2,
    }
    assert "POST /api/jobs HTTP/1.1" not in event["stacktrace"]


# --- logging.basicConfig, SyntaxError, tracebacks without a log line ------------------------------

BASIC_CONFIG_LOG = """\
Traceback (most recent call last):
  File "/srv/app/boot.py", line 5, in <module>
    import plugins
ModuleNotFoundError: No module named 'plugins'
INFO:app.jobs:worker started
ERROR:app.jobs:cannot load template report.tpl
Traceback (most recent call last):
  File "/srv/app/templates.py", line 14, in compile_template
    code = compile(source, path, "exec")
  File "/srv/templates/report.tpl", line 3
    def render(:
               ^
SyntaxError: invalid syntax
INFO:app.jobs:worker idle
Traceback (most recent call last):
  File "/srv/app/jobs.py", line 30, in poll
    raise RuntimeError("queue closed")
RuntimeError: queue closed"""


def test_basic_config_format_syntax_error_and_unattributed_tracebacks() -> None:
    boot, syntax, stray = _parse(BASIC_CONFIG_LOG, environment="staging")
    # At the start of the file: no record before it, and no timestamp anywhere in this format.
    assert boot["error_type"] == "ModuleNotFoundError"
    assert boot["message"] == "No module named 'plugins'"
    assert _functions(boot) == ["<module>"]
    assert boot["received_at"] is None and boot["environment"] == "staging"
    assert boot["context"] == {"logger": None, "log_line": None, "file": "", "line": 1}

    assert syntax["error_type"] == "SyntaxError" and syntax["message"] == "invalid syntax"
    # A SyntaxError's last "frame" is the file that failed to compile: no function.
    assert _functions(syntax) == ["compile_template", ""]
    assert syntax["frames"][1]["filename"] == "/srv/templates/report.tpl"
    assert syntax["frames"][1]["context_line"] == "def render(:"
    assert syntax["stacktrace"].endswith(
        "    def render(:\n               ^\nSyntaxError: invalid syntax"
    )
    assert syntax["context"]["logger"] == "app.jobs"
    assert syntax["context"]["log_line"] == "cannot load template report.tpl"
    assert syntax["context"]["line"] == 6

    # After an INFO record and at the very end of the file without a newline: printed on its own.
    assert stray["error_type"] == "RuntimeError" and stray["message"] == "queue closed"
    assert stray["context"] == {"logger": None, "log_line": None, "file": "", "line": 15}


# --- interleaving, stray output, chains cut short -------------------------------------------------

INTERLEAVED_LOG = """\
2026-11-20 09:59:59,000 INFO [app] tick
2026-11-20 10:00:00,000 ERROR [app.pay] charge failed for order 5521
  while calling the card gateway
Traceback (most recent call last):
  File "/srv/app/pay.py", line 77, in charge
    gateway.charge(order)
app.pay.GatewayError: card declined (code 51)
2026-11-20 10:00:00,100 INFO [app] tick
2026-11-20 10:00:00,200 DEBUG [app.cache] miss
Exception in thread worker-2:
Traceback (most recent call last):
  File "/usr/lib/python3.12/threading.py", line 1075, in _bootstrap_inner
    self.run()
  File "/srv/app/cache.py", line 19, in refresh
    raise TimeoutError("cache refresh took too long")
TimeoutError: cache refresh took too long

2026-11-20 10:00:01,000 ERROR [app.pay] charge failed for order 5522
Traceback (most recent call last):
  File "/srv/app/pay.py", line 77, in charge
2026-11-20 10:00:01,500 ERROR [app.jobs] job crashed
Traceback (most recent call last):
  File "/srv/app/jobs.py", line 9, in step
    return 1 / n
ZeroDivisionError: division by zero

During handling of the above exception, another exception occurred:

2026-11-20 10:00:02,000 INFO [app] tick
"""


def test_interleaved_lines_stray_tracebacks_and_truncated_ones() -> None:
    gateway, stray, crashed = _parse(INTERLEAVED_LOG)
    # The record's message spans two lines; the traceback still belongs to it.
    assert gateway["error_type"] == "app.pay.GatewayError"
    assert gateway["message"] == "card declined (code 51)"
    assert gateway["context"]["log_line"] == "charge failed for order 5521"
    assert gateway["context"]["line"] == 2 and gateway["context"]["logger"] == "app.pay"

    # Printed by a thread after a DEBUG record: not that record's; timed by the last record.
    assert stray["error_type"] == "TimeoutError"
    assert _functions(stray) == ["_bootstrap_inner", "refresh"]
    assert stray["context"] == {"logger": None, "log_line": None, "file": "", "line": 11}
    assert stray["received_at"] == "2026-11-20T10:00:00.200000+00:00"
    assert not stray["stacktrace"].endswith("\n")

    # Order 5522's traceback was cut off before its exception line: no event. The chain after
    # "job crashed" was cut off after its first part: that part is the event.
    assert crashed["error_type"] == "ZeroDivisionError"
    assert _functions(crashed) == ["step"]
    assert crashed["context"]["log_line"] == "job crashed" and crashed["context"]["line"] == 21


# --- other common formats and headers -------------------------------------------------------------

OTHER_FORMATS_LOG = """\
2026-11-20 10:00:00,000 - app.billing - ERROR - invoice 7 failed
Traceback (most recent call last):
  File "/srv/app/billing.py", line 3, in invoice
    raise LookupError("no invoice 7")
LookupError: no invoice 7
[2026-11-20 10:00:01 +0000] [7] [ERROR] Error handling request /export
Traceback (most recent call last):
  File "/srv/app/export.py", line 8, in export
    raise MemoryError()
MemoryError
[2026-11-20 10:00:02,000: ERROR/ForkPoolWorker-1] Task app.tasks.send[1f2e] raised: OSError()
Traceback (most recent call last):
  File "/srv/app/tasks.py", line 40, in send
    handle.write(data)
OSError: [Errno 28] No space left on device
INFO:     127.0.0.1:50312 - "GET /items HTTP/1.1" 500 Internal Server Error
ERROR:    Exception in ASGI application
Traceback (most recent call last):
  File "/srv/app/api.py", line 12, in items
    return query(filters)
  File "/srv/app/db.py", line 5, in query
    raise sqlalchemy.exc.OperationalError("SELECT 1", {}, Exception("gone"))
sqlalchemy.exc.OperationalError: (builtins.Exception) gone
[SQL: SELECT 1]
(Background on this error at: https://sqlalche.me/e/20/e3q8)
"""


def test_cookbook_gunicorn_celery_and_uvicorn_formats() -> None:
    billing, export, celery, asgi = _parse(OTHER_FORMATS_LOG)
    assert (billing["error_type"], billing["context"]["logger"]) == ("LookupError", "app.billing")
    assert billing["context"]["log_line"] == "invoice 7 failed"
    assert (export["error_type"], export["message"]) == ("MemoryError", "")
    assert export["context"]["log_line"] == "Error handling request /export"
    assert export["received_at"] == "2026-11-20T10:00:01+00:00"
    assert celery["error_type"] == "OSError"
    assert celery["message"] == "[Errno 28] No space left on device"
    assert celery["context"]["line"] == 11 and celery["context"]["logger"] is None
    assert asgi["error_type"] == "sqlalchemy.exc.OperationalError"
    assert asgi["message"] == (
        "(builtins.Exception) gone\n[SQL: SELECT 1]\n"
        "(Background on this error at: https://sqlalche.me/e/20/e3q8)"
    )
    assert _functions(asgi) == ["items", "query"]
    assert asgi["context"]["log_line"] == "Exception in ASGI application"
    assert asgi["context"]["line"] == 17 and asgi["received_at"] == celery["received_at"]


def test_a_timestamp_with_an_offset_is_stored_in_utc() -> None:
    log = (
        "2026-11-20T12:00:00+02:00 ERROR app.jobs: failed\n"
        "Traceback (most recent call last):\n"
        '  File "/srv/app/jobs.py", line 1, in run\n'
        "ValueError: x\n"
    )
    [event] = _parse(log)
    received = datetime.fromisoformat(event["received_at"])
    assert received == datetime(2026, 11, 20, 12, tzinfo=timezone(timedelta(hours=2)))
    assert received.utcoffset() == timedelta(0)


def test_exception_group_is_one_event_with_the_groups_own_frames() -> None:
    log = """\
2026-11-20 10:00:00,000 ERROR [app.batch] batch failed
  + Exception Group Traceback (most recent call last):
  |   File "/srv/app/batch.py", line 20, in run_batch
  |     raise ExceptionGroup("2 jobs failed", errors)
  | ExceptionGroup: 2 jobs failed (2 sub-exceptions)
  +-+---------------- 1 ----------------
    | Traceback (most recent call last):
    |   File "/srv/app/batch.py", line 12, in one
    |     raise ValueError("job 1")
    | ValueError: job 1
    +---------------- 2 ----------------
    | TypeError: job 2
    +------------------------------------
2026-11-20 10:00:01,000 INFO [app.batch] next batch
"""
    [event] = _parse(log)
    assert event["error_type"] == "ExceptionGroup"
    assert event["message"] == "2 jobs failed (2 sub-exceptions)"
    assert _functions(event) == ["run_batch"]
    assert event["stacktrace"].endswith("    +------------------------------------")
    assert event["context"]["line"] == 1


def test_windows_line_endings_and_indented_tracebacks() -> None:
    log = (
        "2026-11-20 10:00:00,000 ERROR [app] failed\r\n"
        "    Traceback (most recent call last):\r\n"
        '      File "/srv/app/main.py", line 4, in main\r\n'
        "        run()\r\n"
        "    ValueError: bad value\r\n"
        "      detail on the next line\r\n"
        "2026-11-20 10:00:01,000 INFO [app] ok\r\n"
    )
    [event] = _parse(log)
    assert (event["error_type"], event["message"]) == (
        "ValueError",
        "bad value\n  detail on the next line",
    )
    assert _functions(event) == ["main"] and "\r" not in event["stacktrace"]


# --- bounds ---------------------------------------------------------------------------------------


def test_a_traceback_that_never_ends_is_clipped() -> None:
    def lines() -> Iterator[str]:
        yield "2026-11-20 10:00:00,000 ERROR [app] failed\n"
        yield "Traceback (most recent call last):\n"
        for depth in range(20_000):
            yield f'  File "/srv/app/deep.py", line {depth}, in level_{depth}\n'
            yield f"    level_{depth + 1}()\n"
        yield "RecursionError: maximum recursion depth exceeded\n"
        for n in range(100_000):
            yield f"message line {n} that never stops\n"

    [event] = list(iter_log_failures(lines()))
    assert event["error_type"] == "RecursionError"
    assert len(event["stacktrace"]) < STACKTRACE_HEAD_CHARS + STACKTRACE_TAIL_CHARS + 100
    assert "line(s) omitted" in event["stacktrace"]
    assert len(event["message"]) < MAX_MESSAGE_CHARS + 100
    # The innermost frames survive the clipping; the outermost too.
    assert _functions(event)[0] == "level_0" and _functions(event)[-1] == "level_19999"


def _big_log(total_lines: int, tracebacks: int) -> Iterator[str]:
    """Yield a log of `total_lines` lines: `tracebacks` chained tracebacks among INFO records."""
    start = datetime(2026, 11, 20, tzinfo=UTC)
    every = total_lines // tracebacks
    for n in range(tracebacks):
        stamp = (start + timedelta(minutes=n)).strftime("%Y-%m-%d %H:%M:%S")
        block = [
            f"{stamp},000 ERROR [app.jobs] job {n} failed",
            "Traceback (most recent call last):",
            '  File "/srv/app/worker.py", line 88, in loop',
            "    run_job(job)",
            '  File "/srv/app/jobs.py", line 42, in run_job',
            "    record = load(job_id)",
            f"KeyError: 'job-{n}'",
            "",
            "During handling of the above exception, another exception occurred:",
            "",
            "Traceback (most recent call last):",
            '  File "/srv/app/jobs.py", line 44, in run_job',
            "    raise JobError(job_id)",
            f"app.errors.JobError: job {n} lost",
        ]
        for line in block:
            yield line + "\n"
        for i in range(every - len(block)):
            yield f"{stamp},{i % 1000:03d} INFO [app.web] GET /items/{i} 200 in 12ms\n"


def test_a_large_log_is_parsed_in_bounded_memory() -> None:
    tracemalloc.start()
    try:
        lines = 0

        def counted() -> Iterator[str]:
            nonlocal lines
            for line in _big_log(50_000, 500):
                lines += 1
                yield line

        count = 0
        last: dict[str, Any] | None = None
        for event in iter_log_failures(counted(), source_name="big.log"):
            count += 1
            last = event
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert lines == 50_000 and count == 500
    assert last is not None and last["error_type"] == "app.errors.JobError"
    assert last["message"] == "job 499 lost"
    assert peak < 10 * 1024 * 1024, f"peak {peak / 1e6:.1f} MB"
