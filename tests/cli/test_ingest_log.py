"""`immunity ingest-log`: tracebacks in a log file become signatures in a real store."""

from __future__ import annotations

from pathlib import Path

import pytest
import typer
from sqlmodel import Session, select
from typer.testing import CliRunner

import immunity.flows.ingest  # noqa: F401  (see below)
from immunity.cli.ingest_log import register
from immunity.models.db import get_engine
from immunity.models.tables import FailureEvent, RegressionTest, Signature

# flows.ingest is imported above, not first inside CliRunner: Prefect sets up its log handlers on
# first import, bound to whatever sys.stderr is then, and CliRunner closes that stream afterwards.
runner = CliRunner()


def _app() -> typer.Typer:
    app = typer.Typer()

    @app.callback()
    def main() -> None:
        """A group, so `ingest-log` stays a subcommand even when it is the only one."""

    register(app)
    return app


def _lost_order(stamp: str, order: int, line: int) -> str:
    return f"""\
{stamp} ERROR [shop.orders] checkout failed for order {order}
Traceback (most recent call last):
  File "/srv/shop/views.py", line {line}, in checkout
    total = price_order(order_id)
  File "/srv/shop/pricing.py", line {line + 40}, in price_order
    return ORDERS[order_id].total
           ~~~~~~^^^^^^^^^^
KeyError: {order}
"""


LOG = (
    "2026-11-20 09:00:00,000 INFO [shop] started\n"
    + _lost_order("2026-11-20 09:15:02,120", 1001, 40)
    + "2026-11-20 09:20:00,000 INFO [shop] GET /health 200\n"
    + _lost_order("2026-11-20 11:42:17,555", 2047, 41)
    + """\
2026-11-20 12:00:00,000 ERROR [shop.mail] receipt not sent
Traceback (most recent call last):
  File "/srv/shop/mail.py", line 12, in send_receipt
    smtp.sendmail(sender, [to], body)
smtplib.SMTPServerDisconnected: Connection unexpectedly closed

During handling of the above exception, another exception occurred:

Traceback (most recent call last):
  File "/srv/shop/mail.py", line 15, in send_receipt
    raise ReceiptError(to) from None
shop.mail.ReceiptError: receipt for ann@example.com not sent
"""
    + _lost_order("2026-11-21 08:03:59,999", 3, 39)
)


@pytest.mark.usefixtures("prefect_harness")
def test_ingest_log_groups_one_bug_and_explains_why_it_has_no_test(
    fresh_store: str, tmp_path: Path
) -> None:
    path = tmp_path / "shop.log"
    path.write_text(LOG, encoding="utf-8")
    result = runner.invoke(_app(), ["ingest-log", str(path), "--environment", "staging"])
    assert result.exit_code == 0, result.output
    assert "found 4 traceback(s): accepted 4, rejected 0" in result.output
    assert "2 new signature(s); 0 test(s) created" in result.output
    assert "1 signature(s) got no test: no sample carries an HTTP request" in result.output

    with Session(get_engine(fresh_store)) as session:
        signatures = {s.error_type: s for s in session.exec(select(Signature))}
        events = sorted(session.exec(select(FailureEvent)), key=lambda e: e.context["line"])
        tests = session.exec(select(RegressionTest)).all()
    assert set(signatures) == {"KeyError", "shop.mail.ReceiptError"}
    lost = signatures["KeyError"]
    assert lost.occurrence_count == 3 and lost.culprit == "pricing in price_order"
    # Three occurrences in a day cross the threshold, but a log line is no request to replay.
    assert lost.test_id is None and tests == []
    assert lost.untestable_reason == "no sample carries an HTTP request"
    assert signatures["shop.mail.ReceiptError"].occurrence_count == 1
    assert signatures["shop.mail.ReceiptError"].untestable_reason is None  # not a candidate

    assert [e.source for e in events] == ["file"] * 4
    assert [e.environment for e in events] == ["staging"] * 4
    assert [e.context["line"] for e in events] == [2, 11, 19, 31]
    assert {e.context["file"] for e in events} == {str(path)}
    assert events[0].context["logger"] == "shop.orders"
    assert events[0].context["log_line"] == "checkout failed for order 1001"
    assert [e.received_at.isoformat() for e in events if e.error_type == "KeyError"] == [
        "2026-11-20T09:15:02.120000+00:00",
        "2026-11-20T11:42:17.555000+00:00",
        "2026-11-21T08:03:59.999000+00:00",
    ]
    receipt = next(e for e in events if e.error_type == "shop.mail.ReceiptError")
    assert "ann@example.com" not in receipt.message  # scrubbed like any other event
    assert "During handling of the above exception" in (receipt.stacktrace or "")


@pytest.mark.usefixtures("prefect_harness")
def test_ingest_log_sends_large_logs_in_batches(fresh_store: str, tmp_path: Path) -> None:
    path = tmp_path / "big.log"
    count = 50 * 2 + 17
    with path.open("w", encoding="utf-8") as handle:
        for n in range(count):
            handle.write(_lost_order(f"2026-11-20 10:{n // 60:02d}:{n % 60:02d},000", n, 40))
        handle.write("2026-11-20 12:00:00,000 INFO [shop] caf\xe9 \n")
    with path.open("ab") as handle:
        handle.write(b"2026-11-20 12:00:01,000 INFO [shop] bad bytes \xff\xfe\n")
    result = runner.invoke(_app(), ["ingest-log", str(path), "--no-generate", "--batch-size", "50"])
    assert result.exit_code == 0, result.output
    assert f"found {count} traceback(s): accepted {count}, rejected 0" in result.output
    assert "1 new signature(s); 0 test(s) created" in result.output
    with Session(get_engine(fresh_store)) as session:
        [signature] = session.exec(select(Signature)).all()
    assert signature.occurrence_count == count and signature.untestable_reason is None


def test_ingest_log_refuses_a_missing_file(fresh_store: str) -> None:
    result = runner.invoke(_app(), ["ingest-log", "/nonexistent/app.log"])
    assert result.exit_code == 2 and "no such file" in result.output


@pytest.mark.usefixtures("prefect_harness")
def test_ingest_log_says_so_when_a_log_has_no_traceback(fresh_store: str, tmp_path: Path) -> None:
    path = tmp_path / "quiet.log"
    path.write_text("2026-11-20 10:00:00,000 INFO [shop] all good\n", encoding="utf-8")
    result = runner.invoke(_app(), ["ingest-log", str(path)])
    assert result.exit_code == 0 and "no Python tracebacks found" in result.output


@pytest.mark.usefixtures("prefect_harness")
def test_ingest_log_names_the_line_of_each_rejected_traceback(
    fresh_store: str, tmp_path: Path
) -> None:
    path = tmp_path / "shop.log"
    path.write_text(LOG, encoding="utf-8")
    too_long = "e" * 65  # an environment name is at most 64 characters: every event is refused
    result = runner.invoke(
        _app(), ["ingest-log", str(path), "--environment", too_long, "--batch-size", "3"]
    )
    assert result.exit_code == 1, result.output
    assert "found 4 traceback(s): accepted 0, rejected 4" in result.output
    for line in (2, 11, 19, 31):
        assert f"traceback at line {line}: environment" in result.output
    with Session(get_engine(fresh_store)) as session:
        assert session.exec(select(Signature)).all() == []
