"""The replay marker cannot be forged: only a valid, unexpired, signed marker makes a replay.

A forged, an expired and a valid marker go through the real ingest pipeline after a generated
test has been `reproduced`, each on a report of another error: only the valid one is treated as
the replay's report (and flips the verdict); the other two are ordinary occurrences.
"""

from __future__ import annotations

import os
import stat
import time
from pathlib import Path
from typing import Any

import pytest
from pydantic import SecretStr
from sqlalchemy import Engine
from sqlmodel import Session, select

from immunity.models.db import create_schema
from immunity.models.settings import Environment, Settings
from immunity.models.specs import REPLAY_HEADER
from immunity.models.tables import RegressionTest, Signature
from immunity.tasks.ingest.pipeline import process_failures
from immunity.tasks.shared.replay_marker import KEY_FILE, sign, verify


def _settings(tmp_path: Path, **extra: Any) -> Settings:
    return Settings(
        data_dir=tmp_path / "data",
        environments={"staging": Environment(base_url="http://127.0.0.1:9")},
        **extra,
    )


def test_a_signed_marker_verifies_and_nothing_else_does(tmp_path: Path) -> None:
    settings = _settings(tmp_path)
    key = settings.data_dir / KEY_FILE
    assert verify(f"verify:7:{int(time.time()) + 60}:AAAA", settings) is None
    assert not key.exists(), "verifying never creates the key"

    marker = sign("verify", 7, settings)
    assert marker.startswith("verify:7:") and verify(marker, settings) == ("verify", "7")
    assert stat.S_IMODE(os.stat(key).st_mode) == 0o600
    first = key.read_bytes()
    assert verify(sign("run", 7, settings), settings) == ("run", "7")
    assert key.read_bytes() == first, "the key is created once"

    kind, id_, expiry, mac = marker.split(":")
    forged = [
        "verify:7",  # the old, unsigned form
        "run",
        f"verify:8:{expiry}:{mac}",  # another test
        f"run:7:{expiry}:{mac}",  # another kind
        f"verify:7:{int(expiry) + 3600}:{mac}",  # a later expiry
        f"verify:7:{expiry}:{mac[:-2]}xx",
        f"verify:7:{expiry}:",
        marker + "x" * 600,
        "",
    ]
    assert [verify(value, settings) for value in forged] == [None] * len(forged)
    assert verify(sign("verify", 7, settings, ttl_s=-1), settings) is None  # expired
    # Another data directory has another key.
    assert verify(marker, _settings(tmp_path / "other")) is None


def test_a_configured_secret_signs_without_a_key_file(tmp_path: Path) -> None:
    settings = _settings(tmp_path, replay_secret=SecretStr("s3cret-for-replays"))
    marker = sign("verify", 3, settings)
    assert verify(marker, settings) == ("verify", "3")
    assert not (settings.data_dir / KEY_FILE).exists()
    other = settings.model_copy(update={"replay_secret": SecretStr("another")})
    assert verify(marker, other) is None


def _report(error_type: str, marker: str | None) -> dict[str, Any]:
    headers = {"content-type": "application/json"}
    if marker is not None:
        headers[REPLAY_HEADER.lower()] = marker
    return {
        "error_type": error_type,
        "message": f"{error_type} happened",
        "frames": [{"module": "app.views", "function": error_type.lower(), "in_app": True}],
        "status_code": 500,
        "environment": "staging",
        "request": {"method": "GET", "url": "http://127.0.0.1:9/api/thing", "headers": headers},
    }


def _reproduced_test(engine: Engine, settings: Settings) -> int:
    result = process_failures(
        [_report("OriginalError", None) for _ in range(3)],
        engine=engine,
        settings=settings,
        generate=True,
    )
    [test_id] = [outcome.test_id for outcome in result.generated if outcome.created]
    with Session(engine) as session:
        test = session.get(RegressionTest, test_id)
        test.reproduction = "reproduced"
        session.add(test)
        session.commit()
    return test_id


def _state(engine: Engine, test_id: int) -> tuple[str, dict[str, Any]]:
    with Session(engine) as session:
        test = session.get(RegressionTest, test_id)
        return test.reproduction, dict(test.reproduction_evidence or {})


def _occurrences(engine: Engine) -> dict[str, int]:
    with Session(engine) as session:
        return {s.error_type: s.occurrence_count for s in session.exec(select(Signature)).all()}


def test_only_a_valid_marker_makes_a_report_a_replay(engine: Engine, tmp_path: Path) -> None:
    create_schema(engine)
    settings = _settings(tmp_path)
    test_id = _reproduced_test(engine, settings)
    valid = sign("verify", test_id, settings)
    _, _, expiry, mac = valid.split(":")
    cases = {
        "ForgedError": f"verify:{test_id}",
        "SignedElsewhereError": sign("verify", test_id, _settings(tmp_path / "attacker")),
        "TamperedError": f"verify:{test_id}:{int(expiry) + 86_400}:{mac}",
        "ExpiredError": sign("verify", test_id, settings, ttl_s=-1),
    }
    for error_type, marker in cases.items():
        result = process_failures(
            [_report(error_type, marker)], engine=engine, settings=settings, generate=True
        )
        assert result.replays == 0 and result.accepted == 1, error_type
        state, evidence = _state(engine, test_id)
        assert state == "reproduced" and "reported" not in evidence, error_type
    # Each was an ordinary occurrence of its own error.
    assert _occurrences(engine) == {"OriginalError": 3, **dict.fromkeys(cases, 1)}

    result = process_failures(
        [_report("ValidError", valid)], engine=engine, settings=settings, generate=True
    )
    assert (result.replays, result.accepted) == (1, 0)
    state, evidence = _state(engine, test_id)
    assert state == "not_reproduced", evidence
    assert evidence["reported"]["error_type"] == "ValidError"
    assert evidence["reported"]["same_signature"] is False
    assert "ValidError" not in _occurrences(engine), "a replay's report is not an occurrence"


@pytest.mark.parametrize("db_url", ["sqlite"], indirect=True)
def test_a_valid_suite_run_marker_is_dropped_not_counted(engine: Engine, tmp_path: Path) -> None:
    create_schema(engine)
    settings = _settings(tmp_path)
    test_id = _reproduced_test(engine, settings)
    run = sign("run", test_id, settings)
    result = process_failures(
        [_report("OriginalError", run), _report("OriginalError", "run")],
        engine=engine,
        settings=settings,
    )
    assert (result.replays, result.accepted) == (1, 1)  # the unsigned "run" is an occurrence
    assert _occurrences(engine) == {"OriginalError": 4}
    assert _state(engine, test_id)[0] == "reproduced"
