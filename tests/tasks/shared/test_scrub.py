"""Scrubbing: secrets (by key or by shape), cards and e-mails never survive."""

from __future__ import annotations

import copy
import json
import random
from urllib.parse import quote, quote_plus, unquote

import pytest
from hypothesis import given
from hypothesis import strategies as st

from immunity.models.settings import Settings
from immunity.tasks.shared.scrub import (
    FILTERED,
    is_sensitive_key,
    scrub,
    scrub_headers,
    scrub_text,
    scrub_url,
    scrubber,
)
from tests.security.secrets_corpus import CORPUS, SCRUB_KEYS, SCRUB_PATTERNS, forms

VISA = "4111111111111111"
AMEX = "378282246310005"


def _luhn_digit(body: str) -> str:
    total = 0
    for i, char in enumerate(reversed(body)):
        d = int(char)
        if i % 2 == 0:
            d = d * 2 - 9 if d > 4 else d * 2
        total += d
    return str((10 - total % 10) % 10)


@pytest.mark.parametrize(
    "key",
    [
        "password",
        "Authorization",
        "Proxy-Authorization",
        "Cookie",
        "Set-Cookie",
        "X-Api-Key",
        "x-auth-token",
        "oauth_token",
        "clientSecret",
        "db.password",
        "API_KEY",
        "apiKey",
        "private_key",
        "privateKey",
        "credentials",
        "aws_secret_access_key",
        "accessToken",
        "refresh_token",
        "sessionId",
        "JSESSIONID",
        "session",
        "csrf_token",
        "X-Amz-Signature",
        "mysql_pwd",
        "DBPASSWORD",
    ],
)
def test_sensitive_keys(key: str) -> None:
    assert is_sensitive_key(key)


@pytest.mark.parametrize(
    "key",
    [
        "author",
        "authority_name",
        "tokenizer_name",
        "max_tokens",
        "prompt_tokens",
        "token_count",
        "user_agent",
        "Content-Type",
        "cache_key",
        "session_count",
        "keyboard",
        "",
    ],
)
def test_harmless_keys(key: str) -> None:
    assert not is_sensitive_key(key)


def test_scrub_text_filters_luhn_valid_cards_only() -> None:
    assert scrub_text(f"card {VISA} declined") == f"card {FILTERED} declined"
    assert scrub_text("card 4111 1111 1111 1111.") == f"card {FILTERED}."
    assert scrub_text("card 4111-1111-1111-1111") == f"card {FILTERED}"
    assert scrub_text(f"amex {AMEX}") == f"amex {FILTERED}"
    assert scrub_text("order 4111111111111112 shipped") == "order 4111111111111112 shipped"
    assert scrub_text("id 123456789012") == "id 123456789012"  # 12 digits: too short
    assert scrub_text("ts 2024-01-15 12:30:45") == "ts 2024-01-15 12:30:45"


def test_scrub_text_finds_cards_among_other_digits() -> None:
    # A card right after other digits is inside a longer run (which is no card) unless a
    # separator sets it apart; ids and UUIDs full of digits are left alone.
    assert scrub_text(f"ref 12-{VISA}") == f"ref 12-{FILTERED}"
    assert scrub_text(f"ref 7{VISA}") == f"ref 7{VISA}"
    uuid = "6994086a-81b6-06b2-d9ff-5e46156a990a"
    assert scrub_text(f"job {uuid} at 10.0.79.5:5432") == f"job {uuid} at 10.0.79.5:5432"


def test_scrub_text_finds_a_card_inside_a_longer_separated_run() -> None:
    assert scrub_text("ref 123 4111 1111 1111 1111") == f"ref 123 {FILTERED}"
    assert scrub_text("10 20 30 40 50 60 70 80") == "10 20 30 40 50 60 70 80"


def test_scrub_text_filters_emails_but_not_package_versions() -> None:
    assert scrub_text("mail john.doe+tag@example.co.uk now") == f"mail {FILTERED} now"
    assert scrub_text("installed lodash@4.17.21") == "installed lodash@4.17.21"
    assert scrub_text("nothing here") == "nothing here"


def test_scrub_nested_structures_without_mutating_input() -> None:
    original = {
        "user": {"email": "a@b.com", "password": {"nested": "x"}, "name": "Ann"},
        "items": [{"api_key": 123}, ("token", f"card {VISA}"), 7, None, 1.5, True],
        "headers": {"Authorization": "Bearer abc"},
        "callback": "https://u:p@hooks.example.com/x?token=t&ok=1",
        "card_number": int(VISA),
        "tokens": 120,
    }
    before = copy.deepcopy(original)
    result = scrub(original)
    assert original == before
    assert result == {
        "user": {"email": FILTERED, "password": FILTERED, "name": "Ann"},
        "items": [{"api_key": FILTERED}, ("token", f"card {FILTERED}"), 7, None, 1.5, True],
        "headers": {"Authorization": FILTERED},
        "callback": f"https://{FILTERED}@hooks.example.com/x?token={FILTERED}&ok=1",
        "card_number": FILTERED,
        "tokens": 120,
    }
    assert result["user"] is not original["user"]


def test_scrub_treats_prose_starting_with_a_url_as_text() -> None:
    note = "http://status.example.com is down, ask ops@example.com"
    assert scrub({"note": note}) == {"note": f"http://status.example.com is down, ask {FILTERED}"}


def test_scrub_leaves_other_scalars_alone() -> None:
    marker = object()
    assert scrub(marker) is marker
    assert scrub(42) == 42
    assert scrub(None) is None
    assert scrub("plain") == "plain"


def test_scrub_survives_self_reference() -> None:
    loop: dict[str, object] = {"a": 1}
    loop["self"] = loop
    assert scrub(loop)["a"] == 1


def test_scrub_headers() -> None:
    headers = {
        "Authorization": "Bearer abc",
        "Proxy-Authorization": "Basic xyz",
        "Cookie": "sid=1",
        "Set-Cookie": "sid=2",
        "X-Api-Key": "k",
        "X-Custom-Token": "t",
        "Referer": "https://app.example.com/cb?code=1&access_token=zzz",
        "From": "ops@example.com",
        "Accept": "application/json",
    }
    result = scrub_headers(headers)
    for name in ("Authorization", "Proxy-Authorization", "Cookie", "Set-Cookie", "X-Api-Key"):
        assert result[name] == FILTERED
    assert result["X-Custom-Token"] == FILTERED
    assert result["Referer"] == f"https://app.example.com/cb?code=1&access_token={FILTERED}"
    assert result["From"] == FILTERED
    assert result["Accept"] == "application/json"
    assert headers["Authorization"] == "Bearer abc"


def test_scrub_url() -> None:
    assert (
        scrub_url("https://bob:hunter2@api.example.com/v1/items?api_key=abc&page=2&q=x")
        == f"https://{FILTERED}@api.example.com/v1/items?api_key={FILTERED}&page=2&q=x"
    )
    assert scrub_url("/search?email=a%40b.com&n=1") == f"/search?email={FILTERED}&n=1"
    assert scrub_url("/users/a@b.com/orders") == f"/users/{FILTERED}/orders"
    assert scrub_url("https://x.com/cb#access_token=t&state=1") == (
        f"https://x.com/cb#access_token={FILTERED}&state=1"
    )
    assert scrub_url("https://x.com/a?b=1") == "https://x.com/a?b=1"
    assert scrub_url("http://[::1") == "http://[::1"  # unparsable: scrubbed as text, no error
    assert scrub_url(f"/pay/4111%201111%201111%201111?{VISA}") == f"/pay/{FILTERED}?{FILTERED}"
    # `+` is an encoded space in a query: the digits it separates are still one card.
    assert scrub_url("/pay?card=4111+1111+1111+1111&n=1") == f"/pay?card={FILTERED}&n=1"
    assert scrub_url("/x?a=1#session_id=s3") == f"/x?a=1#session_id={FILTERED}"
    # Nothing to hide: the URL comes back exactly as sent, ids and all.
    clean = "https://app.example.com/api/receipts/71192?page=1&sort=-created#top"
    assert scrub_url(clean) == clean


# --- properties ----------------------------------------------------------------------------------


@st.composite
def cards(draw: st.DrawFn) -> str:
    length = draw(st.integers(13, 19))
    body = draw(st.text("0123456789", min_size=length - 1, max_size=length - 1))
    digits = body + _luhn_digit(body)
    sep = draw(st.sampled_from(["", " ", "-"]))
    if not sep:
        return digits
    return sep.join(digits[i : i + 4] for i in range(0, len(digits), 4))


def test_card_strategy_makes_luhn_valid_numbers() -> None:
    rng = random.Random(1)
    body = "".join(rng.choice("0123456789") for _ in range(15))
    assert scrub_text(body + _luhn_digit(body)) == FILTERED


json_leaves = st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text()
json_values = st.recursive(
    json_leaves,
    lambda children: (
        st.lists(children, max_size=4) | st.dictionaries(st.text(max_size=12), children, max_size=4)
    ),
    max_leaves=20,
)


@given(json_values)
def test_scrub_never_raises_and_is_idempotent(value: object) -> None:
    once = scrub(value)
    assert scrub(once) == once


@given(st.text(max_size=40), st.emails(), st.text(max_size=40))
def test_no_generated_email_survives(prefix: str, email: str, suffix: str) -> None:
    text = f"{prefix} {email} {suffix}"
    assert email not in scrub_text(text)
    result = scrub({"note": text, "list": [email]})
    assert email not in result["note"]
    assert result["list"] == [FILTERED]
    # In a URL `/ ? # & %` are structure (a real URL would percent-encode them in an address).
    if not set("/?#&%") & set(email):
        url = f"https://h.example.com/p/{text}?q={text}#{text}"
        assert email not in scrub_url(url)


@given(st.text(max_size=40), cards(), st.text(max_size=40))
def test_no_luhn_valid_card_survives(prefix: str, card: str, suffix: str) -> None:
    text = f"{prefix} {card} {suffix}"
    assert card not in scrub_text(text)
    assert card not in scrub([{"memo": text}])[0]["memo"]
    assert scrub(card) == FILTERED
    # Decoded, so a re-encoded space (`%20`) cannot glue its digits onto the text around it.
    assert card not in unquote(scrub_url(f"https://{text}/p/{text}?{text}=1&q={text}#{text}"))


url_texts = st.text(alphabet="ab1234567890%@+-&=?#/:.[] _xX", max_size=40)


@given(st.sampled_from(["http://", "https://"]), url_texts)
def test_scrubbing_a_url_twice_changes_nothing_more(scheme: str, rest: str) -> None:
    once = scrub(scheme + rest)
    assert scrub(once) == once
    # An empty user info hides nothing (`http:////@` re-joins as `http://@`).
    assert scrub_url("http:////@") == scrub_url("http://@") == "http://@"


# --- secrets found by their shape ----------------------------------------------------------------

USER = scrubber(SCRUB_PATTERNS, SCRUB_KEYS)


@pytest.mark.parametrize("kind", sorted(CORPUS))
def test_every_kind_of_secret_goes_from_every_kind_of_string(kind: str) -> None:
    carrier, secret = CORPUS[kind]
    places = {
        "text": USER.scrub_text(carrier),
        "prose": USER.scrub_text(f"Error: upstream failed ({carrier}); retry later"),
        "value": USER.scrub({"note": carrier})["note"],
        "nested": USER.scrub({"a": [{"b": {"c": carrier}}]})["a"][0]["b"]["c"],
        "key": next(iter(USER.scrub({carrier: 1}))),
        "header": USER.scrub_headers({"X-Unusual-Thing": carrier})["X-Unusual-Thing"],
        "query": USER.scrub_url(f"https://app.example.com/p?next={quote(carrier, safe='')}&n=1"),
        "query+": USER.scrub_url(f"https://app.example.com/p?next={quote_plus(carrier)}&n=1"),
        "form": USER.scrub(f"note={quote_plus(carrier)}&page=2"),
        "json text": USER.scrub_text(json.dumps({"note": carrier})),
    }
    for place, scrubbed in places.items():
        leaked = [form for form in forms(secret) if form in scrubbed]
        assert not leaked, (place, scrubbed)
        assert USER.scrub_text(scrubbed) == scrubbed, place  # twice changes nothing more
    assert FILTERED in places["text"]


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("password=hunter2&user=ada", f"password={FILTERED}&user=ada"),
        ('{"api_key": "k-1", "n": 2}', f'{{"api_key": "{FILTERED}", "n": 2}}'),
        ("Authorization: Bearer abc.def-123", f"Authorization: Bearer {FILTERED}"),
        ("retry with Bearer abc.def-123", f"retry with Bearer {FILTERED}"),
        ("db postgresql://u:pw@db:5432/x down", f"db postgresql://{FILTERED}@db:5432/x down"),
        ("key AKIAZ7QX3MPLR4TUVW2Y", f"key {FILTERED}"),
        ("a\n-----BEGIN PRIVATE KEY-----\nMIIB\n-----END PRIVATE KEY-----\nb", f"a\n{FILTERED}\nb"),
        ("cut -----BEGIN EC PRIVATE KEY-----\nMHcCAQEE", f"cut {FILTERED}"),
        ('body={\\"secret\\": \\"s3\\"}', f'body={{\\"secret\\": \\"{FILTERED}\\"}}'),
    ],
)
def test_secrets_in_text_are_replaced_and_the_rest_kept(text: str, expected: str) -> None:
    assert scrub_text(text) == expected


@pytest.mark.parametrize(
    "text",
    [
        "token validation failed for job 12",
        "basic validation failed",
        "commit 3f2a9c1e5b7d4f6a8c0e2b4d6f8a0c2e4b6d8f0a merged",
        "see https://github.com/@octocat and https://app.example.com/a?b=1",
        "KeyError: 'password'",
        "could not connect to 10.0.1.5:5432: connection refused",
        "tokens: 120, max_tokens: 4096",
        "author=ada; authority=root",
        "session_count=3",
        "installed lodash@4.17.21",
        "disk-usage at 91%, task-runner restarted",
        "Expecting value: line 1 column 1 (char 0)",
    ],
)
def test_ordinary_text_is_left_alone(text: str) -> None:
    assert scrub_text(text) == text


def test_user_patterns_and_keys_count_only_for_their_scrubber() -> None:
    assert USER.is_sensitive_key("X-Acme-Ticket") and USER.is_sensitive_key("xAcmeTicket")
    assert not is_sensitive_key("x_acme_ticket")
    assert USER.scrub({"x_acme_ticket": "t-1", "x": "ACME-TKT-12345678"}) == {
        "x_acme_ticket": FILTERED,
        "x": FILTERED,
    }
    assert scrub({"x": "ACME-TKT-12345678"}) == {"x": "ACME-TKT-12345678"}
    assert USER.scrub_url("/a?x-acme-ticket=9&b=1") == f"/a?x-acme-ticket={FILTERED}&b=1"
    assert USER.scrub_text("x_acme_ticket: t-2") == f"x_acme_ticket: {FILTERED}"
    assert scrubber(SCRUB_PATTERNS, SCRUB_KEYS) is USER  # built once per configuration


def test_settings_refuse_a_pattern_that_is_not_a_regular_expression() -> None:
    with pytest.raises(ValueError, match="not a regular expression"):
        Settings(scrub_patterns=["("])


@given(st.sampled_from(sorted(CORPUS)), st.text(max_size=30), st.text(max_size=30))
def test_a_secret_among_any_text_goes_and_scrubbing_settles(
    kind: str, prefix: str, suffix: str
) -> None:
    carrier, secret = CORPUS[kind]
    once = USER.scrub_text(f"{prefix} {carrier} {suffix}")
    assert secret not in once
    assert USER.scrub_text(once) == once
