"""Sentry's wire format: envelopes, events as sentry-sdk 2.x sends them, sessions, and fuzzing."""

from __future__ import annotations

import json
import math
import re
from typing import Any

import pytest
from hypothesis import HealthCheck, given
from hypothesis import settings as hsettings
from hypothesis import strategies as st
from sentry_sdk.envelope import Envelope as SdkEnvelope
from sentry_sdk.envelope import Item, PayloadRef

from immunity.models.schemas import FailureEventIn, SuccessEventIn
from immunity.models.settings import Settings
from immunity.tasks.ingest.prepare import prepare_failure
from immunity.tasks.ingest.sentry import (
    MAX_SESSION_SUCCESSES,
    SentryFormatError,
    envelope_to_batch,
    event_to_failure,
    parse_envelope,
    session_outcomes,
    store_to_batch,
)

EVENT_ID = "3a79d13d386f42ab9c0a65b012c40bbf"
SITE = "/venv/lib/python3.12/site-packages"
STARLETTE_LINE = "        await self.middleware_stack(scope, receive, send)"


def sdk_event(**overrides: Any) -> dict[str, Any]:
    """An event as sentry-sdk 2.75 + FastApiIntegration sends it (trimmed: vars, most frames)."""
    event: dict[str, Any] = {
        "level": "error",
        "exception": {
            "values": [
                {
                    "mechanism": {"type": "starlette", "handled": False},
                    "module": None,
                    "type": "KeyError",
                    "value": "'missing'",
                    "stacktrace": {
                        "frames": [
                            {
                                "filename": "shop/orders.py",
                                "abs_path": "/srv/shop/orders.py",
                                "function": "load",
                                "module": "shop.orders",
                                "lineno": 30,
                                "pre_context": ["def load(data):"],
                                "context_line": '    return data["missing"]',
                                "post_context": [""],
                                "vars": {"data": {"sku": "'A-1'"}},
                            }
                        ]
                    },
                },
                {
                    "mechanism": {"type": "starlette", "handled": False},
                    "module": "shop.errors",
                    "type": "OrderFailed",
                    "value": "order 7 failed for A-1",
                    "stacktrace": {
                        "frames": [
                            {
                                "filename": "starlette/applications.py",
                                "abs_path": f"{SITE}/starlette/applications.py",
                                "function": "__call__",
                                "module": "starlette.applications",
                                "lineno": 96,
                                "context_line": STARLETTE_LINE,
                                "in_app": False,
                            },
                            {
                                "filename": "shop/orders.py",
                                "abs_path": "/srv/shop/orders.py",
                                "function": "create_order",
                                "module": "shop.orders",
                                "lineno": 32,
                                "context_line": '        raise OrderFailed(f"order {oid} failed")',
                            },
                        ]
                    },
                },
            ]
        },
        "event_id": EVENT_ID,
        "timestamp": "2026-11-21T05:49:38.391234Z",
        "contexts": {
            "trace": {
                "trace_id": "97af4da3b26647e4ad9664e2f147bed4",
                "op": "http.server",
                "data": {"thread.name": "MainThread", "http.response.status_code": 500},
            },
            "runtime": {"name": "CPython", "version": "3.12.3"},
        },
        "transaction": "/api/orders/{oid}",
        "transaction_info": {"source": "route"},
        "breadcrumbs": {"values": []},
        "user": {"id": 42, "email": "ada@example.com", "ip_address": "10.0.0.1"},
        "tags": {"region": "eu", "shard": 3},
        "request": {
            "method": "POST",
            "headers": {
                "host": "shop.example.com",
                "authorization": "[Filtered]",
                "cookie": "[Filtered]",
                "x-trace": "t1",
                "content-type": "application/json",
            },
            "query_string": "x=1",
            "url": "https://shop.example.com/api/orders/7",
            "env": {"REMOTE_ADDR": "10.0.0.1"},
            "cookies": {"sid": "1"},
            "data": {"sku": "A-1", "password": "[Filtered]"},
        },
        "release": "shop@1.2.3",
        "environment": "staging",
        "server_name": "web-1",
        "sdk": {"name": "sentry.python.fastapi", "version": "2.75.0"},
        "platform": "python",
        "_meta": {"request": {"data": {"password": {"": {"rem": [["!config", "s"]]}}}}},
    }
    event.update(overrides)
    return event


def envelope(
    *items: tuple[dict[str, Any], bytes], header: bytes = b"{}", end: bytes = b"\n"
) -> bytes:
    body = header + b"\n" + b"\n".join(json.dumps(h).encode() + b"\n" + p for h, p in items)
    return body + end if items else body + end


# --- envelopes ----------------------------------------------------------------------------------


def test_items_with_and_without_length_and_with_a_binary_attachment() -> None:
    binary = b"\x00\xff\n\n\xfe{not json}\n"
    data = envelope(
        ({"type": "event", "length": 13}, b'{"message":1}'),
        ({"type": "attachment", "length": len(binary), "filename": "a.bin"}, binary),
        ({"type": "session"}, b'{"status":"ok"}'),
        header=json.dumps({"event_id": EVENT_ID}).encode(),
    )
    headers, items = parse_envelope(data)
    assert headers == {"event_id": EVENT_ID}
    assert [(i.type, i.payload) for i in items] == [
        ("event", b'{"message":1}'),
        ("attachment", binary),
        ("session", b'{"status":"ok"}'),
    ]
    assert items[1].headers["filename"] == "a.bin"


@pytest.mark.parametrize("end", [b"", b"\n", b"\n\n"])
def test_the_trailing_newline_is_optional(end: bytes) -> None:
    for item in [({"type": "event"}, b"{}"), ({"type": "event", "length": 2}, b"{}")]:
        _, items = parse_envelope(envelope(item, item, end=end))
        assert [i.payload for i in items] == [b"{}", b"{}"]


def test_a_header_alone_and_an_empty_payload_are_envelopes() -> None:
    assert parse_envelope(b'{"dsn":"x"}') == ({"dsn": "x"}, [])
    _, [item] = parse_envelope(b'{}\n{"type":"client_report","length":0}\n')
    assert item.payload == b""
    _, [item] = parse_envelope(b'{}\n{"type":"client_report"}')
    assert item.payload == b""


def test_the_sdks_own_serialisation_parses() -> None:
    sdk = SdkEnvelope(headers={"event_id": EVENT_ID, "sent_at": "2026-11-21T05:49:38Z"})
    sdk.add_event(sdk_event())
    sdk.add_item(Item(payload=PayloadRef(bytes=b"\x89PNG\r\n\x1a\n"), type="attachment"))
    sdk.add_session({"sid": "s", "status": "exited", "attrs": {"release": "r"}})
    batch = envelope_to_batch(sdk.serialize())
    assert batch.event_id == EVENT_ID
    assert [f["error_type"] for f in batch.failures] == ["OrderFailed"]
    assert len(batch.successes) == 1 and batch.ignored == 1


@pytest.mark.parametrize(
    ("data", "message"),
    [
        (b"", "the envelope is empty"),
        (b"\n{}", "the envelope is empty"),
        (b"not json\n", "the envelope header is not valid JSON"),
        (b"[]\n", "the envelope header must be a JSON object, not list"),
        (b"\xff\xfe\n", "the envelope header is not valid UTF-8 (byte 0)"),
        (b'{}\n{"length":2}\n{}', "item 1's header has no type"),
        (b'{}\n{"type":""}\n{}', "item 1's header has no type"),
        (b'{}\n{"type":"event"}\n{}\n"x"\n', "item 2's header must be a JSON object, not str"),
        (b'{}\n{"type":"event","length":99}\n{}', "item 1 (event) declares 99 bytes; 2 follow"),
        (b'{}\n{"type":"event","length":-1}\n{}', "length must be a non-negative integer"),
        (b'{}\n{"type":"event","length":true}\n{}', "length must be a non-negative integer"),
        (b'{}\n{"type":"event","length":"2"}\n{}', "length must be a non-negative integer"),
        (b'{}\n{"type":"event","length":1}\n{}', "no newline after its 1-byte payload"),
    ],
)
def test_malformed_envelopes_say_what_is_wrong(data: bytes, message: str) -> None:
    with pytest.raises(SentryFormatError, match=re.escape(message)):
        parse_envelope(data)


def test_items_that_do_not_parse_are_named_in_the_error() -> None:
    with pytest.raises(SentryFormatError, match=r"^item 2 \(event\): its payload is not valid"):
        envelope_to_batch(envelope(({"type": "span"}, b"{}"), ({"type": "event"}, b"{oops")))
    with pytest.raises(SentryFormatError, match=r"^item 1 \(event\): the event has neither"):
        envelope_to_batch(envelope(({"type": "event"}, b"{}")))
    two = ({"type": "event"}, json.dumps(sdk_event()).encode())
    with pytest.raises(SentryFormatError, match=r"^item 2 \(event\): .*at most one event"):
        envelope_to_batch(envelope(two, two))


def test_other_item_types_are_accepted_and_ignored() -> None:
    kinds = ["transaction", "attachment", "client_report", "profile", "check_in", "log", "new"]
    batch = envelope_to_batch(envelope(*[({"type": k}, b"\xff not even json") for k in kinds]))
    assert (batch.failures, batch.successes, batch.ignored) == ([], [], len(kinds))


# --- events -------------------------------------------------------------------------------------


def test_a_realistic_sdk_event_maps_field_by_field() -> None:
    failure = event_to_failure(sdk_event())
    assert failure == {
        "error_type": "OrderFailed",
        "message": "order 7 failed for A-1",
        "frames": [
            {
                "filename": f"{SITE}/starlette/applications.py",
                "module": "starlette.applications",
                "function": "__call__",
                "lineno": 96,
                "in_app": False,
                "context_line": STARLETTE_LINE,
            },
            {
                "filename": "/srv/shop/orders.py",
                "module": "shop.orders",
                "function": "create_order",
                "lineno": 32,
                "in_app": None,
                "context_line": '        raise OrderFailed(f"order {oid} failed")',
            },
        ],
        "received_at": "2026-11-21T05:49:38.391234+00:00",
        "environment": "staging",
        "release": "shop@1.2.3",
        "request": {
            "method": "POST",
            "url": "https://shop.example.com/api/orders/7?x=1",
            "headers": {
                "host": "shop.example.com",
                "authorization": "[Filtered]",
                "cookie": "[Filtered]",
                "x-trace": "t1",
                "content-type": "application/json",
            },
            "body": {"sku": "A-1", "password": "[Filtered]"},
        },
        "status_code": 500,
        "context": {
            "sentry": {
                "event_id": EVENT_ID,
                "platform": "python",
                "transaction": "/api/orders/{oid}",
                "server_name": "web-1",
            },
            "exception_chain": [
                {
                    "type": "KeyError",
                    "module": None,
                    "value": "'missing'",
                    "handled": False,
                    "mechanism": "starlette",
                },
                {
                    "type": "OrderFailed",
                    "module": "shop.errors",
                    "value": "order 7 failed for A-1",
                    "handled": False,
                    "mechanism": "starlette",
                },
            ],
            "contexts": sdk_event()["contexts"],
        },
        "tags": {"region": "eu", "shard": "3"},
        "user": "42",
        "source": "sentry",
        "severity": "high",
    }
    event = FailureEventIn.model_validate(failure)
    prepared = prepare_failure(event, Settings())
    assert prepared.culprit == "shop.orders in create_order"
    assert prepared.severity == "high" and prepared.row["source"] == "sentry"


def test_a_message_event_without_exception() -> None:
    event = {
        "message": "disk %s is full",
        "logentry": {"message": "disk %s is full", "formatted": "disk /var is full"},
        "level": "warning",
        "timestamp": 1795240178.5,
        "user": {"ip_address": "{{auto}}", "username": "ada"},
        "stacktrace": {"frames": [{"function": "check", "module": "ops.disk", "lineno": 3}]},
    }
    failure = event_to_failure(event)
    assert failure["error_type"] == "Message" and failure["message"] == "disk /var is full"
    assert failure["severity"] == "medium" and failure["user"] == "ada"
    assert failure["received_at"] == "2026-11-21T05:49:38.500000+00:00"
    assert failure["frames"][0]["function"] == "check"
    assert failure["environment"] == "production" and "request" not in failure


def test_a_logged_exception_keeps_the_log_message_in_context() -> None:
    failure = event_to_failure(sdk_event(logentry={"message": "payment failed"}))
    assert failure["message"] == "order 7 failed for A-1"
    assert failure["context"]["log_message"] == "payment failed"


@pytest.mark.parametrize(
    ("level", "severity"),
    [("fatal", "critical"), ("error", "high"), ("warning", "medium"), ("info", "low")]
    + [("debug", "low"), ("ERROR", "high"), ("bogus", None), (None, None), (3, None)],
)
def test_levels_become_severities(level: Any, severity: str | None) -> None:
    assert event_to_failure(sdk_event(level=level)).get("severity") == severity


@pytest.mark.parametrize(
    ("data", "body"),
    [
        ("", None),  # the SDK's "raw body not sent"
        ("[Filtered]", "[Filtered]"),
        ('{"a": 1}', '{"a": 1}'),
        ({"field": ["x", "y"]}, {"field": ["x", "y"]}),
        (None, None),
    ],
)
def test_request_bodies_are_kept_as_sent(data: Any, body: Any) -> None:
    request = {**sdk_event()["request"], "data": data}
    assert event_to_failure(sdk_event(request=request))["request"]["body"] == body


def test_request_variants_headers_as_pairs_query_as_dict_and_no_method() -> None:
    request = {
        "method": "get",
        "url": "https://x.test/search",
        "query_string": [["q", "a b"], ["page", 2]],
        "headers": [["Accept", "text/html"], ["X-Bad"], [1, "x"]],
    }
    failure = event_to_failure(sdk_event(request=request))
    assert failure["request"]["url"] == "https://x.test/search?q=a+b&page=2"
    assert failure["request"]["headers"] == {"Accept": "text/html"}
    assert FailureEventIn.model_validate(failure).request.method == "GET"  # type: ignore[union-attr]
    failure = event_to_failure(sdk_event(request={"url": "https://x.test/a"}))
    assert "request" not in failure and failure["context"]["request_url"] == "https://x.test/a"


def test_overlong_names_are_cut_to_what_the_store_holds() -> None:
    failure = event_to_failure(sdk_event(environment="e" * 100, release="r" * 200))
    assert (failure["environment"], failure["release"]) == ("e" * 64, "r" * 128)
    FailureEventIn.model_validate(failure)


def test_exception_as_a_bare_list_and_unusable_values() -> None:
    failure = event_to_failure({"exception": [{"value": "no type"}], "timestamp": "yesterday"})
    assert failure["error_type"] == "Error" and failure["message"] == "no type"
    assert "received_at" not in failure
    with pytest.raises(SentryFormatError, match="must be a JSON object, not list"):
        event_to_failure([])


def test_strings_the_store_cannot_hold_are_cleaned() -> None:
    failure = event_to_failure(
        {"message": "a\x00b\ud800c", "extra": {"k\x00": [math.nan, math.inf, 1.5, "\udfff"]}}
    )
    assert failure["message"] == "ab?c"
    assert failure["context"]["extra"] == {"k": [None, None, 1.5, "?"]}


def test_deep_and_wide_structures_are_bounded() -> None:
    deep: Any = "leaf"
    for _ in range(200):
        deep = {"d": deep}
    wide = {f"k{i}": i for i in range(10_000)}
    failure = event_to_failure({"message": "m", "extra": {"deep": deep, "wide": wide}})
    text = json.dumps(failure["context"], allow_nan=False, ensure_ascii=False)
    assert "[…]" in text and len(text) < 100_000


# --- sessions -----------------------------------------------------------------------------------


def test_a_session_counts_once_it_has_ended() -> None:
    attrs = {"release": "r1", "environment": "e1"}
    ok = session_outcomes("session", {"status": "ok", "attrs": attrs})
    assert ok == ([], {}, 0)
    successes, failures, dropped = session_outcomes(
        "session", {"status": "exited", "timestamp": "2026-11-21T05:50:06Z", "attrs": attrs}
    )
    assert successes == [
        {
            "operation": "session",
            "environment": "e1",
            "metadata": {"source": "sentry", "release": "r1"},
            "received_at": "2026-11-21T05:50:06+00:00",
        }
    ]
    assert (failures, dropped) == ({}, 0)
    SuccessEventIn.model_validate(successes[0])
    for status in ("crashed", "abnormal", "errored"):
        assert session_outcomes("session", {"status": status}) == ([], {status: 1}, 0)
    # The SDK ends a session that saw a handled error as "exited" with errors > 0.
    assert session_outcomes("session", {"status": "exited", "errors": 1}) == ([], {"errored": 1}, 0)


def test_session_aggregates_count_every_state() -> None:
    payload = {
        "attrs": {"environment": "staging", "release": "shop@1.2.3"},
        "aggregates": [
            {"started": "2026-11-21T05:50:00.000000Z", "exited": 2, "crashed": 1},
            {"started": "2026-11-21T05:51:00.000000Z", "errored": 3, "abnormal": 1, "exited": 1},
        ],
    }
    successes, failures, dropped = session_outcomes("sessions", payload)
    assert [s["received_at"] for s in successes] == ["2026-11-21T05:50:00+00:00"] * 2 + [
        "2026-11-21T05:51:00+00:00"
    ]
    assert {s["environment"] for s in successes} == {"staging"}
    assert failures == {"crashed": 1, "errored": 3, "abnormal": 1} and dropped == 0


def test_huge_aggregates_are_bounded_and_the_rest_counted_as_dropped() -> None:
    payload = json.dumps({"aggregates": [{"exited": 10**12}, {"exited": 5}]}).encode()
    batch = envelope_to_batch(envelope(({"type": "sessions"}, payload)))
    assert len(batch.successes) == MAX_SESSION_SUCCESSES
    assert batch.sessions_dropped == 10**12 + 5 - MAX_SESSION_SUCCESSES


@pytest.mark.parametrize(
    ("kind", "payload", "message"),
    [
        ("session", [], "must be a JSON object"),
        ("session", {"status": "weird"}, "unknown session status 'weird'"),
        ("session", {"status": "exited", "errors": -1}, "errors must be a non-negative"),
        ("sessions", {}, "needs an aggregates list"),
        ("sessions", {"aggregates": [1]}, "must be a JSON object"),
        ("sessions", {"aggregates": [{"crashed": "1"}]}, "crashed must be a non-negative"),
    ],
)
def test_malformed_sessions_say_what_is_wrong(kind: str, payload: Any, message: str) -> None:
    with pytest.raises(SentryFormatError, match=message):
        session_outcomes(kind, payload)


def test_store_bodies_are_one_json_event() -> None:
    batch = store_to_batch(json.dumps(sdk_event()).encode())
    assert batch.event_id == EVENT_ID and len(batch.failures) == 1
    with pytest.raises(SentryFormatError, match="^the body is not valid JSON"):
        store_to_batch(b"{")
    with pytest.raises(SentryFormatError, match="^the body is not valid JSON"):
        store_to_batch(b"[" * 100_000)


# --- fuzzing ------------------------------------------------------------------------------------

FUZZ = hsettings(suppress_health_check=list(HealthCheck))  # examples: the profile's
# The session's Prefect test server (another module's fixture) draws from the global `random` in
# background threads; Hypothesis would blame these strategies for it and fail them as flaky.
BACKGROUND_RANDOM = pytest.mark.filterwarnings(
    "ignore:Do not use the `random` module inside strategies"
    ":hypothesis.errors.HypothesisDeprecationWarning"
)
scalars = st.none() | st.booleans() | st.integers() | st.floats() | st.text(max_size=30)
json_values = st.recursive(
    scalars,
    lambda inner: (
        st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=10), inner, max_size=4)
    ),
    max_leaves=25,
)
frame = st.fixed_dictionaries(
    {},
    optional={k: json_values for k in ("filename", "abs_path", "module", "function", "lineno")}
    | {"in_app": st.booleans() | json_values, "context_line": st.text() | json_values},
)
exception = st.fixed_dictionaries(
    {"type": st.text(max_size=20) | json_values, "value": st.text() | json_values},
    optional={"stacktrace": st.fixed_dictionaries({"frames": st.lists(frame, max_size=4)})},
)
sentry_like = st.fixed_dictionaries(
    {},
    optional={
        "exception": st.fixed_dictionaries({"values": st.lists(exception, max_size=3)})
        | st.lists(exception, max_size=2)
        | json_values,
        "message": st.text() | json_values,
        "logentry": json_values,
        "level": st.sampled_from(["fatal", "error", "warning", "info", "debug"]) | json_values,
        "timestamp": st.floats() | st.integers() | st.text(max_size=40) | st.datetimes().map(str),
        "request": st.fixed_dictionaries(
            {},
            optional={
                k: json_values | st.text()
                for k in ("method", "url", "query_string", "headers", "data")
            },
        ),
        **{k: json_values for k in ("user", "tags", "contexts", "extra")},
        **{k: json_values | st.text(min_size=60, max_size=200) for k in ("environment", "release")},
    },
)

count = st.integers(-2, 3) | json_values
session_like = st.fixed_dictionaries(
    {},
    optional={
        "status": st.sampled_from(["ok", "exited", "crashed", "abnormal", "errored"]) | json_values,
        "errors": count,
        "timestamp": st.text(max_size=30) | st.floats() | st.integers(),
        "attrs": st.fixed_dictionaries(
            {},
            optional={k: json_values | st.text(max_size=200) for k in ("release", "environment")},
        ),
        "aggregates": st.lists(
            st.fixed_dictionaries(
                {},
                optional={k: count for k in ("exited", "errored", "crashed", "abnormal")}
                | {"started": json_values},
            )
            | json_values,
            max_size=3,
        ),
    },
)


def _assert_storable(failure: dict[str, Any]) -> None:
    event = FailureEventIn.model_validate(failure)
    prepare_failure(event, Settings())
    text = json.dumps(failure, allow_nan=False)
    assert "\\u0000" not in text
    text.encode("utf-8")  # no lone surrogates


@BACKGROUND_RANDOM
@FUZZ
@given(st.binary(max_size=300))
def test_fuzz_arbitrary_bytes_raise_only_format_errors(data: bytes) -> None:
    try:
        batch = envelope_to_batch(data)
    except SentryFormatError:
        return
    for failure in batch.failures:
        _assert_storable(failure)


@BACKGROUND_RANDOM
@FUZZ
@given(
    items=st.lists(
        st.tuples(
            st.sampled_from(["event", "session", "sessions", "attachment", "transaction"]),
            st.booleans(),
            json_values | sentry_like | session_like,
        ),
        max_size=4,
    ),
    cuts=st.lists(st.tuples(st.integers(0, 10_000), st.binary(max_size=3)), max_size=3),
)
def test_fuzz_mutated_envelopes_raise_only_format_errors(
    items: list[tuple[str, bool, Any]], cuts: list[tuple[int, bytes]]
) -> None:
    parts = []
    for kind, with_length, payload in items:
        body = json.dumps(payload).encode()
        header = {"type": kind, **({"length": len(body)} if with_length else {})}
        parts.append((header, body))
    data = envelope(*parts)
    for at, replacement in cuts:  # overwrite, insert or delete a few bytes
        at %= len(data) + 1
        data = data[:at] + replacement + data[at + len(replacement) % 2 :]
    try:
        batch = envelope_to_batch(data)
    except SentryFormatError:
        return
    for failure in batch.failures:
        _assert_storable(failure)
    for success in batch.successes:
        SuccessEventIn.model_validate(success)


@BACKGROUND_RANDOM
@FUZZ
@given(json_values | sentry_like | st.dictionaries(st.text(max_size=8), json_values))
def test_fuzz_any_json_maps_to_a_valid_event_or_a_format_error(event: Any) -> None:
    try:
        failure = event_to_failure(event)
    except SentryFormatError:
        return
    _assert_storable(failure)


@BACKGROUND_RANDOM
@FUZZ
@given(st.sampled_from(["session", "sessions"]), json_values | session_like)
def test_fuzz_sessions_map_to_valid_successes_or_a_format_error(kind: str, payload: Any) -> None:
    try:
        successes, failures, dropped = session_outcomes(kind, payload, limit=50)
    except SentryFormatError:
        return
    assert len(successes) <= 50 and dropped >= 0 and all(n > 0 for n in failures.values())
    for success in successes:
        SuccessEventIn.model_validate(success)
