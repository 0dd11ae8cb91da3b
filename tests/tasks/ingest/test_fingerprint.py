"""Fingerprints: one bug is one signature across ids, paths and depth; different bugs differ."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from immunity.models.schemas import Frame, full_frame
from immunity.tasks.ingest.fingerprint import (
    fingerprint,
    frames_fingerprint,
    is_in_app,
    module_from_filename,
    normalize_message,
    parse_python_traceback,
)


def _frames(root: str, line_shift: int = 0, handler: str = "handle") -> list[Frame]:
    return [
        Frame(filename=f"{root}/lib/python3.11/site-packages/flask/app.py", function="dispatch"),
        Frame(filename=f"{root}/src/shop/views.py", function="checkout", lineno=40 + line_shift),
        Frame(filename=f"{root}/src/shop/orders.py", function=handler, lineno=12 + line_shift),
        Frame(filename="/usr/lib/python3.11/json/decoder.py", function="decode", lineno=337),
    ]


# --- normalize_message ---------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("message", "expected"),
    [
        ("user bob@example.com not found", "user <email> not found"),
        ("GET https://api.example.com/v1/items?id=5 failed", "GET <url> failed"),
        ("connect 10.0.0.12:5432 refused", "connect <ip> refused"),
        ("bind 2001:db8:85a3:0:0:8a2e:370:7334 and ::1", "bind <ip> and <ip>"),
        ("job 123e4567-e89b-12d3-a456-426614174000 lost", "job <uuid> lost"),
        ("at 2024-01-15T12:30:45.123Z", "at <date>"),
        ("at 2024-01-15 12:30:45+00:00 ok", "at <date> ok"),
        ("on Jan 15, 2024 and 15/01/2024 and 12:30:45", "on <date> and <date> and <date>"),
        ("Mon, 15 Jan 2024 10:00:00 GMT", "<date>"),
        ("md5 d41d8cd98f00b204e9800998ecf8427e", "md<int> <hash>"),
        ("sha1 a94a8fe5ccb19ba61c4c0873d391e987982fbbd3", "sha<int> <hash>"),
        (f"sha256 {'ab' * 32}", "sha<int> <hash>"),
        ("object at 0x7f3a2b1c4d50", "object at <hex>"),
        ("request ab12cd34ef99 failed", "request <hex> failed"),
        ("took 3.25s, limit 1e-5", "took <float>s, limit <float>"),
        ("job-4821 failed after 3 tries", "job-<int> failed after <int> tries"),
        ("KeyError: 'customer_id'", "KeyError: <quoted>"),
        ('field "name" missing', "field <quoted> missing"),
        ("can't read users' files", "can't read users' files"),
        ("a  lot\n of\tspace ", "a lot of space"),
        ("deadbeef decade", "deadbeef decade"),
    ],
)
def test_normalize_message(message: str, expected: str) -> None:
    assert normalize_message(message) == expected


def test_normalize_message_groups_variants_of_one_message() -> None:
    first = "Order 1001 for ann@x.io failed at 2024-01-01T00:00:00Z (trace {})"
    second = "Order 77 for bob@y.org failed at 2025-06-30T23:59:59Z (trace {})"
    assert normalize_message(first.format("5f2b9c1e-1111-4a2b-9c3d-0123456789ab")) == (
        normalize_message(second.format("00000000-aaaa-4bbb-8ccc-dddddddddddd"))
    )
    assert (
        normalize_message(first.format("x")) == "Order <int> for <email> failed at <date> (trace x)"
    )


@given(st.text(max_size=200))
def test_normalize_message_is_idempotent(message: str) -> None:
    once = normalize_message(message)
    assert normalize_message(once) == once


@given(
    st.lists(
        st.sampled_from(
            ["id", "42", "3.5", "'x'", '"y"', "a@b.co", "http://h/p", "1.2.3.4", "0xff", ":", "-"]
        )
        | st.text(max_size=5),
        max_size=20,
    )
)
def test_normalize_message_is_idempotent_on_token_soup(tokens: list[str]) -> None:
    once = normalize_message(" ".join(tokens))
    assert normalize_message(once) == once


# --- is_in_app -----------------------------------------------------------------------------------


def test_is_in_app_rules() -> None:
    assert is_in_app(Frame(filename="/srv/app/views.py"))
    assert not is_in_app(Frame(filename="/venv/lib/python3.11/site-packages/httpx/_client.py"))
    assert not is_in_app(Frame(filename="/usr/lib/python3/dist-packages/yaml/loader.py"))
    assert not is_in_app(Frame(filename="/usr/local/lib/python3.12/asyncio/tasks.py"))
    assert not is_in_app(Frame(filename="C:\\Python311\\Lib\\json\\decoder.py"))
    assert not is_in_app(Frame(filename="<frozen importlib._bootstrap>"))
    assert not is_in_app(Frame(module="asyncio.tasks"))
    assert is_in_app(Frame(module="shop.views"))
    # The frame's own flag wins over the path.
    assert is_in_app(Frame(filename="/venv/site-packages/shop/x.py", in_app=True))
    assert not is_in_app(Frame(filename="/srv/app/views.py", in_app=False))
    assert is_in_app(Frame(function="anonymous"))  # nothing says it is a library's


def test_is_in_app_include_prefixes_are_package_aware() -> None:
    frame = Frame(module="mylib.core", filename="/venv/lib/python3.11/site-packages/mylib/core.py")
    assert is_in_app(frame, include=["mylib"])
    assert is_in_app(frame, include=["mylib.core"])
    assert not is_in_app(frame, include=["myl"])
    assert not is_in_app(frame)
    # Without a module the one derived from the path is matched.
    assert is_in_app({**frame, "module": ""}, include=["mylib"])


def test_module_from_filename() -> None:
    assert module_from_filename("/venv/lib/python3.11/site-packages/requests/sessions.py") == (
        "requests.sessions"
    )
    assert module_from_filename("/venv/lib/python3.11/site-packages/pkg/__init__.py") == "pkg"
    assert module_from_filename("/usr/lib/python3.11/asyncio/tasks.py") == "asyncio.tasks"
    assert module_from_filename("C:\\Python311\\Lib\\json\\decoder.py") == "json.decoder"
    assert module_from_filename("/home/ann/proj/shop/views.py") == "views"
    assert module_from_filename("/app/shop/__init__.py") == "shop"
    assert module_from_filename("<frozen importlib._bootstrap>") == "importlib._bootstrap"
    assert module_from_filename("") == ""


# --- fingerprint ---------------------------------------------------------------------------------


def test_same_bug_across_ids_paths_and_lines_has_one_fingerprint() -> None:
    first = fingerprint(
        "ValueError",
        "order 1001 of ann@x.io rejected (req 5f2b9c1e-1111-4a2b-9c3d-0123456789ab)",
        _frames("/home/ann/proj"),
    )
    second = fingerprint(
        "ValueError",
        "order 77 of bob@y.org rejected (req 00000000-aaaa-4bbb-8ccc-dddddddddddd)",
        _frames("/opt/releases/2024-06-01", line_shift=9),
    )
    assert first.hash == second.hash
    assert len(first.hash) == 32
    assert first.normalized_message == second.normalized_message


def test_different_exception_types_differ() -> None:
    frames = _frames("/app")
    assert fingerprint("ValueError", "x", frames).hash != fingerprint("KeyError", "x", frames).hash


def test_different_call_paths_differ() -> None:
    first = fingerprint("ValueError", "x", _frames("/app", handler="handle"))
    second = fingerprint("ValueError", "x", _frames("/app", handler="refund"))
    assert first.hash != second.hash


def test_only_in_app_frames_count() -> None:
    frames = _frames("/app")
    without_library = [f for f in frames if is_in_app(f)]
    assert fingerprint("E", "", frames).hash == fingerprint("E", "", without_library).hash


def test_recursion_depth_does_not_change_the_fingerprint() -> None:
    def recursive(depth: int) -> list[Frame]:
        head = [Frame(module="shop.views", function="checkout")]
        loop = [Frame(module="shop.tree", function="walk")] * depth
        mutual = [Frame(module="shop.a", function="ping"), Frame(module="shop.b", function="pong")]
        return head + loop + mutual * depth

    hashes = {fingerprint("RecursionError", "deep", recursive(depth)).hash for depth in (1, 5, 300)}
    assert len(hashes) == 1


def test_when_no_frame_is_in_app_all_frames_count() -> None:
    library = [
        Frame(filename="/venv/lib/python3.11/site-packages/httpx/_client.py", function="send"),
        Frame(filename="/venv/lib/python3.11/site-packages/httpx/_transports.py", function="io"),
    ]
    other = [library[0], {**library[0], "function": "other"}]
    result = fingerprint("ReadTimeout", "", library)
    assert result.hash != fingerprint("ReadTimeout", "", other).hash
    assert result.culprit == "httpx._transports in io"


def test_no_frames_falls_back_to_the_normalised_message() -> None:
    first = fingerprint("ValueError", "quota 5 exceeded for a@b.io", [])
    assert first.hash == fingerprint("ValueError", "quota 9 exceeded for c@d.io", []).hash
    assert first.hash != fingerprint("ValueError", "disk full", []).hash
    assert first.culprit == ""


def test_culprit_is_the_innermost_in_app_frame() -> None:
    assert fingerprint("E", "", _frames("/app")).culprit == "orders in handle"
    frames = [Frame(module="shop.views", function="checkout"), Frame(module="shop.db")]
    assert fingerprint("E", "", frames).culprit == "shop.db"


def test_frames_fingerprint_is_the_hash_and_culprit_of_fingerprint() -> None:
    # Ingestion groups through the cached frames_fingerprint; it must agree with fingerprint,
    # and what the cache is keyed on (frames, type, in-app rules) must each still count.
    frames = _frames("/srv")
    whole = [full_frame(frame) for frame in frames]
    found = fingerprint("OrderError", "order 7 failed", frames)
    assert frames_fingerprint("OrderError", whole) == (found.hash, found.culprit)
    assert frames_fingerprint("OrderError", whole) == frames_fingerprint("OrderError", whole)
    assert frames_fingerprint("KeyError", whole) != frames_fingerprint("OrderError", whole)
    library_first = [full_frame(f) for f in [frames[0], frames[1]]]
    # Only the flask frame and views are left; `flask` made in-app joins the hash.
    assert frames_fingerprint("E", library_first, ["flask"]) != frames_fingerprint(
        "E", library_first
    )
    moved = [full_frame(frame) for frame in _frames("/opt/other", line_shift=9)]
    assert frames_fingerprint("OrderError", moved) == frames_fingerprint("OrderError", whole)
    assert frames_fingerprint("OrderError", []) is None


def test_normalized_message_is_capped() -> None:
    result = fingerprint("E", "word " * 1000, [])
    assert len(result.normalized_message) == 1000


# --- parse_python_traceback ----------------------------------------------------------------------

CHAINED = """\
Traceback (most recent call last):
  File "/app/shop/orders.py", line 12, in handle
    data = json.loads(body)
           ^^^^^^^^^^^^^^^^
  File "/usr/lib/python3.11/json/__init__.py", line 346, in loads
    return _default_decoder.decode(s)
json.decoder.JSONDecodeError: Expecting value: line 1 column 1 (char 0)

During handling of the above exception, another exception occurred:

Traceback (most recent call last):
  File "/venv/lib/python3.11/site-packages/flask/app.py", line 880, in dispatch
    rv = self.dispatch_request()
  File "<frozen importlib._bootstrap>", line 1176, in _find_and_load
  File "/app/shop/views.py", line 40, in checkout
    raise ValueError("bad order") from exc
ValueError: bad order
"""


def test_parse_returns_the_last_traceback_of_a_chain() -> None:
    frames = parse_python_traceback(CHAINED)
    assert [(f["module"], f["function"], f["lineno"]) for f in frames] == [
        ("flask.app", "dispatch", 880),
        ("importlib._bootstrap", "_find_and_load", 1176),
        ("views", "checkout", 40),
    ]
    assert frames[0]["context_line"] == "rv = self.dispatch_request()"
    assert frames[1]["context_line"] is None
    assert frames[2]["context_line"] == 'raise ValueError("bad order") from exc'
    assert frames[2]["filename"] == "/app/shop/views.py"


def test_parse_direct_cause_chain_and_single_traceback() -> None:
    direct = CHAINED.replace(
        "During handling of the above exception, another exception occurred:",
        "The above exception was the direct cause of the following exception:",
    )
    assert [f["function"] for f in parse_python_traceback(direct)][-1] == "checkout"
    first = CHAINED.split("During handling")[0]
    frames = parse_python_traceback(first)
    assert [f["function"] for f in frames] == ["handle", "loads"]
    assert frames[0]["context_line"] == "data = json.loads(body)"


def test_parse_without_frames() -> None:
    assert parse_python_traceback("") == []
    assert parse_python_traceback("ValueError: nothing to see") == []


def test_parsed_traceback_fingerprints_like_structured_frames() -> None:
    parsed = fingerprint("ValueError", "bad order", parse_python_traceback(CHAINED))
    moved = CHAINED.replace("/app/", "/srv/releases/42/").replace("line 40", "line 97")
    assert parsed.hash == fingerprint("ValueError", "x", parse_python_traceback(moved)).hash
    assert parsed.culprit == "views in checkout"
