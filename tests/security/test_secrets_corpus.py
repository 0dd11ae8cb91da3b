"""Acceptance (issue 18, item 8): no raw secret survives ingestion, whichever way it comes in.

Every kind of the corpus (tests/security/secrets_corpus.py) is put in every field a report has:
message, stack trace, frame source lines, exception chain, log lines, transaction, server name,
release, ordinary keys (`note`, `creds`, `db_url`), tags, extra, contexts, an unusual header,
a query value and a JSON or form-encoded body. It arrives three times (so a test is generated)
through the JSON API and the Sentry envelope endpoint of a real API on 127.0.0.1, and through a
log file read by the `ingest-log` flow. The reproduction check replays each test against a
"staging" listener, and the model stand-in is asked for a fix of every signature. Then every
column of every table, every test spec, what staging received, every file under the data
directory and what the model received are searched for each secret: none is found.
"""

from __future__ import annotations

import json
import time
import uuid
from pathlib import Path
from typing import Any
from urllib.parse import quote, quote_plus

import httpx
import pytest
from sqlalchemy import Engine, inspect, text
from sqlmodel import Session, select

from immunity.api.app import create_app
from immunity.api.auth import hash_token
from immunity.examples.sample_service.server import start_server
from immunity.flows.ingest import ingest_log
from immunity.models.settings import Environment, Settings, get_settings
from immunity.models.tables import FailureEvent, RegressionTest, Signature
from immunity.tasks.generate.reproduce import verify_tests
from immunity.tasks.heal.context import gather_context
from immunity.tasks.heal.llm import ask_for_fix, make_client
from immunity.tasks.heal.prompt import build_messages
from immunity.tasks.shared.scrub import FILTERED
from tests.security.secrets_corpus import CORPUS, SCRUB_KEYS, SCRUB_PATTERNS, forms
from tests.security.test_replay_safety import Listener
from tests.standins.openai_server import OpenAIStandin, Reply

pytestmark = [
    pytest.mark.parametrize("db_url", ["sqlite", "postgres"], indirect=True),
    pytest.mark.usefixtures("prefect_harness"),
]

TOKEN = "imm_corpus_token"
SENTRY_KEY, PROJECT = "0c1d2e3f4a5b6c7d8e9f0a1b2c3d4e5f", "7"
LLM_KEY = "sk-standin-key"
KINDS = sorted(CORPUS)


def _line(carrier: str) -> str:
    # What a logger prints of a multi-line value on one line.
    return carrier.replace("\n", "\\n")


def _fields(carrier: str) -> dict[str, Any]:
    """The ordinary keys a value can hide under, each holding the carrier."""
    return {"note": carrier, "creds": carrier, "db_url": carrier, "nested": [{"memo": carrier}]}


def _api_event(n: int, kind: str) -> dict[str, Any]:
    carrier = CORPUS[kind][0]
    line = _line(carrier)
    return {
        "error_type": f"CorpusApi{n}Error",
        "message": f"upstream failed: {carrier}",
        "stacktrace": (
            "Traceback (most recent call last):\n"
            f'  File "/srv/app/orders.py", line 10, in handle_{kind}\n'
            f"    call({line!r})\n"
            f"CorpusApi{n}Error: {carrier}"
        ),
        "frames": [
            {
                "filename": "/srv/app/orders.py",
                "module": "app.orders",
                "function": f"handle_{kind}",
                "lineno": 10,
                "in_app": True,
                "context_line": f"    call({line!r})",
            }
        ],
        "environment": "staging",
        "release": line if len(line) <= 128 else None,
        "status_code": 500,
        "request": {
            "method": "POST",
            "url": f"https://shop.example.com/api/orders/{n}?next={quote(carrier, safe='')}&p=2",
            "headers": {"Content-Type": "application/json", "X-Unusual-Thing": line},
            "body": _fields(carrier),
        },
        "context": {**_fields(carrier), "transaction": carrier},
        "tags": {"note": line},
    }


def _sentry_envelope(n: int, kind: str) -> bytes:
    carrier = CORPUS[kind][0]
    line = _line(carrier)
    frame = {
        "filename": "app/views.py",
        "abs_path": "/srv/app/views.py",
        "module": "app.views",
        "function": f"view_{kind}",
        "lineno": 20,
        "in_app": True,
        "context_line": f"    send({line!r})",
        "pre_context": [line],
        "vars": _fields(carrier),
    }
    event = {
        "event_id": uuid.uuid4().hex,
        "timestamp": time.time(),
        "platform": "python",
        "level": "error",
        "environment": "staging",
        "release": line[:128],
        "server_name": line,
        "transaction": line,
        "logentry": {"message": carrier},
        "exception": {
            "values": [
                {"type": "ValueError", "value": carrier, "mechanism": {"type": "chained"}},
                {
                    "type": f"CorpusSentry{n}Error",
                    "value": carrier,
                    "stacktrace": {"frames": [frame]},
                    "mechanism": {"type": "generic", "handled": False},
                },
            ]
        },
        "tags": {"note": line},
        "extra": _fields(carrier),
        "contexts": {"app": _fields(carrier), "response": {"status_code": 500}},
        "request": {
            "method": "POST",
            "url": f"https://shop.example.com/api/pay/{n}",
            "query_string": f"next={quote(carrier, safe='')}&p=2",
            "headers": {
                "Content-Type": "application/x-www-form-urlencoded",
                "X-Unusual-Thing": line,
            },
            "data": f"note={quote_plus(carrier)}&password={quote_plus(carrier)}&p=2",
        },
        "breadcrumbs": {"values": [{"message": carrier, "category": "log"}]},
    }
    payload = json.dumps(event).encode()
    header = json.dumps({"type": "event", "length": len(payload)}).encode()
    return b"\n".join([json.dumps({"event_id": event["event_id"]}).encode(), header, payload])


def _log_file(path: Path) -> None:
    blocks = []
    for n, kind in enumerate(KINDS):
        carrier = CORPUS[kind][0]
        line = _line(carrier)
        for second in range(3):
            blocks.append(
                f"2026-12-08 01:00:0{second},000 ERROR app.worker: job failed with {line}\n"
                "Traceback (most recent call last):\n"
                f'  File "/srv/app/worker.py", line 30, in job_{kind}\n'
                f"    connect({line!r})\n"
                f"CorpusLog{n}Error: {carrier}\n"
            )
    path.write_text("".join(blocks))


def _store_text(engine: Engine) -> str:
    """Every row of every table of the store, as text."""
    dumped = []
    with engine.connect() as connection:
        for table in inspect(engine).get_table_names():
            rows = connection.execute(text(f'SELECT * FROM "{table}"')).all()
            dumped.extend(f"{table}: {tuple(row)!r}" for row in rows)
    return "\n".join(dumped)


def _files_text(root: Path) -> str:
    return "\n".join(
        path.read_bytes().decode("latin-1") for path in sorted(root.rglob("*")) if path.is_file()
    )


def _leaks(haystacks: dict[str, str]) -> list[tuple[str, str]]:
    found = []
    for kind, (_, secret) in CORPUS.items():
        wanted = forms(secret) + ([secret.replace(" ", "")] if kind == "card" else [])
        found += [
            (kind, where) for where, hay in haystacks.items() if any(w in hay for w in wanted)
        ]
    return found


def _settle(engine: Engine, timeout_s: float = 60) -> list[RegressionTest]:
    """Wait until the API's background reproduction checks are done; return the tests."""
    deadline = time.monotonic() + timeout_s
    while True:
        with Session(engine) as session:
            tests = list(session.exec(select(RegressionTest)).all())
        if tests and all(test.reproduction != "pending" for test in tests):
            return tests
        if time.monotonic() > deadline:
            return tests
        time.sleep(0.2)


def test_no_raw_secret_reaches_the_store_specs_replays_artifacts_or_the_model(
    store: str, engine: Engine, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    data_dir, inputs = tmp_path / "data", tmp_path / "inputs"
    inputs.mkdir()
    with Listener("staging") as staging, OpenAIStandin(api_key=LLM_KEY) as llm:
        environments = {"staging": Environment(base_url=staging.base_url)}
        settings = Settings(
            api_tokens=[hash_token(TOKEN)],
            sentry_projects={PROJECT: SENTRY_KEY},
            environments=environments,
            reproduction_environment="staging",
            reproduction_retry_minutes=0,
            data_dir=data_dir,
            scrub_patterns=SCRUB_PATTERNS,
            scrub_keys=SCRUB_KEYS,
            llm_api_key=LLM_KEY,
            llm_base_url=llm.base_url,
            llm_max_retries=1,
        )
        # The flows read the same configuration from the environment.
        for name, value in {
            "ENVIRONMENTS": json.dumps({"staging": {"base_url": staging.base_url}}),
            "REPRODUCTION_ENVIRONMENT": "staging",
            "DATA_DIR": str(data_dir),
            "SCRUB_PATTERNS": json.dumps(SCRUB_PATTERNS),
            "SCRUB_KEYS": json.dumps(SCRUB_KEYS),
        }.items():
            monkeypatch.setenv(f"IMMUNITY_{name}", value)
        get_settings.cache_clear()

        # (a) the JSON API and (b) Sentry's envelope endpoint, on a real server.
        with (
            start_server(create_app(settings, engine)) as server,
            httpx.Client(base_url=server.base_url, timeout=60) as client,
        ):
            auth = {"Authorization": f"Bearer {TOKEN}"}
            events = [_api_event(n, kind) for n, kind in enumerate(KINDS) for _ in range(3)]
            answer = client.post("/api/v1/failures", json={"events": events}, headers=auth)
            assert answer.status_code == 200, answer.text
            assert answer.json()["accepted"] == 3 * len(KINDS), answer.json()
            sentry = {"X-Sentry-Auth": f"Sentry sentry_key={SENTRY_KEY}, sentry_version=7"}
            for n, kind in enumerate(KINDS):
                for _ in range(3):
                    sent = client.post(
                        f"/api/{PROJECT}/envelope/",
                        content=_sentry_envelope(n, kind),
                        headers={**sentry, "Content-Type": "application/x-sentry-envelope"},
                    )
                    assert sent.status_code == 200, sent.text
            tests = _settle(engine)

        # (c) a log file through the ingest-log flow.
        log = inputs / "app.log"
        _log_file(log)
        report = ingest_log(str(log), environment="staging")
        assert report.accepted == 3 * len(KINDS), report

        # Every test has had its replay against staging (the API's checks ran in the background).
        with Session(engine) as session:
            tests = list(session.exec(select(RegressionTest)).all())
            signatures = list(session.exec(select(Signature)).all())
            stored_events = list(session.exec(select(FailureEvent)).all())
        verify_tests(engine, settings, [test.id for test in tests])
        assert len(tests) == 2 * len(KINDS), len(tests)  # HTTP tests: API and Sentry
        assert len(signatures) == 3 * len(KINDS), len(signatures)
        assert len(stored_events) == 9 * len(KINDS)
        assert staging.requests, "no replay reached staging"

        # The model is asked for a fix of every signature, with the context heal gathers.
        fix = {
            "root_cause": "r",
            "diff": "",
            "explanation": "e",
            "confidence": 0,
            "risk_level": "low",
            "risk_reasons": [],
            "files_touched": [],
        }
        llm.responder = lambda body: Reply.of_json(fix)
        client_llm = make_client(settings)
        assert client_llm is not None
        for signature in signatures:
            context, _ = gather_context(engine, signature.id, settings)
            messages = build_messages(context, with_source=False)
            ask_for_fix(client_llm, model=settings.llm_model, messages=messages)
        assert len(llm.requests) == len(signatures)

    with Session(engine) as session:
        specs = [test.spec for test in session.exec(select(RegressionTest)).all()]
    haystacks = {
        "store": _store_text(engine),
        "test specs": json.dumps(specs),
        "staging": json.dumps(staging.requests),
        "artifacts": _files_text(tmp_path / "data") if data_dir.exists() else "",
        "model": json.dumps(llm.requests),
    }
    # The search can find a secret: every one is in the log file that went in.
    assert not set(CORPUS) - {kind for kind, _ in _leaks({"input": log.read_text()})}
    assert FILTERED in haystacks["store"] and FILTERED in haystacks["model"]
    leaks = _leaks(haystacks)
    print(
        f"{len(CORPUS)} kinds, {len(stored_events)} events, {len(tests)} tests, "
        f"{len(staging.requests)} replays to staging, {len(llm.requests)} model requests, "
        f"{sum(map(len, haystacks.values())):,} characters searched: {len(leaks)} raw secrets"
    )
    assert leaks == [], leaks
