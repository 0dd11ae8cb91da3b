"""Scrubbing of secrets and personal data before anything is stored or shown to an LLM.

What goes: values under sensitive keys (passwords, secrets, tokens, API keys, auth, credentials,
private keys, cookies, session ids), sensitive headers and URL query parameters, URL user info,
Luhn-valid card numbers, e-mail addresses and every secret `secrets.scrub_secrets` recognises
by its shape (private keys, JWTs, bearer tokens, cloud and SaaS keys, `password=…` pairs) in
any string at any depth, keys included; plus the user's own patterns and key names
(`scrubber(patterns, keys)`; the module-level functions use none).

Speed: a service sends the same strings again and again (header values, source lines, tags),
so each scrubber remembers what it made of short strings; the detectors run on the others.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from functools import lru_cache
from typing import Any
from urllib.parse import quote, unquote, unquote_plus, urlsplit, urlunsplit

from immunity.tasks.shared.personal_data import URL_CARD_CANDIDATE, cards_and_emails, is_card
from immunity.tasks.shared.secrets import FILTERED, scrub_secrets

__all__ = [
    "FILTERED", "Scrubber", "is_sensitive_key", "scrub", "scrub_headers", "scrub_text",
    "scrub_url", "scrubber",
]  # fmt: skip

# --- keys ----------------------------------------------------------------------------------------

# Words that are sensitive wherever they appear in a key, even glued to others (`dbpassword`).
_STRONG = re.compile(
    r"passw(?:or)?d|passphrase|secret|credential|api_?key|private_?key|authorization|cookie"
    r"|sess(?:ion)?_?id|csrf|xsrf"
)
# Words that are sensitive only as a whole part of the key, because as substrings they are common
# in harmless names: `author`, `authority`, `tokenizer`, `max_tokens`, `session_count`.
_WHOLE = frozenset(
    {"auth", "token", "pwd", "jwt", "bearer", "signature", "sig", "otp", "cvv", "cvc", "creds"}
)
_PAIRS = frozenset({("session", "key"), ("access", "key")})
# LLM usage figures (`token_count`, `max_token`, `token_limit`) are numbers worth keeping.
_TOKEN_MEASURES = frozenset({"count", "counts", "usage", "limit", "limits", "budget", "length"})
_TOKEN_BOUNDS = frozenset({"max", "min", "num", "n"})
_SPLIT = re.compile(r"[^a-z0-9]+")
_CAMEL = re.compile(r"(?<=[a-z0-9])(?=[A-Z])|(?<=[A-Z])(?=[A-Z][a-z])")


@lru_cache(maxsize=4096)
def is_sensitive_key(key: str) -> bool:
    """Return True when a value stored under this key (or header, or query name) must be hidden.

    Parts are split on `-`, `_`, `.`, spaces and camelCase. `auth` and `token` count only as a
    whole part or a part's end (`x-auth-token`, `oauth_token`, `accessToken`, `authToken`), so
    `author`, `authority_name`, `tokenizer_name` and `max_tokens` are not sensitive; nor are
    token measures such as `token_count` and `max_token`.
    """
    parts = _SPLIT.split(_CAMEL.sub("_", key).lower())
    parts = [p for p in parts if p]
    if _STRONG.search("_".join(parts)):
        return True
    if key.strip().lower() == "session":
        return True
    for i, part in enumerate(parts):
        if part == "token" and _is_token_measure(parts, i):
            continue
        if part in _WHOLE or part.endswith(("token", "auth")):
            return True
    return any(pair in _PAIRS for pair in zip(parts, parts[1:], strict=False))


def _is_token_measure(parts: list[str], i: int) -> bool:
    after = parts[i + 1] if i + 1 < len(parts) else ""
    before = parts[i - 1] if i else ""
    return after in _TOKEN_MEASURES or before in _TOKEN_BOUNDS


# --- scrubbers -----------------------------------------------------------------------------------

# Deeper than this is not inspected but hidden: it also stops a self-referencing structure.
_MAX_DEPTH = 64
_SCALARS = (float, type(None))
_CARD_MIN, _CARD_MAX = 10**12, 10**19
# Strings up to this long are remembered, this many per scrubber and kind (then it starts over).
_MEMO_CHARS, _MEMO_SIZE = 256, 16_384
# Headers whose value is a URL that may carry the original request's query string.
_URL_HEADERS = frozenset({"referer", "referrer", "location", "content-location", "origin"})
_HIDDEN, _URL_VALUED, _TEXT = "hidden", "url", "text"
_FORM = re.compile(r"[\w.\[\]-]+=[^&\s]*(?:&[\w.\[\]-]+=[^&\s]*)*")  # name=value&…
# Lower-case hex and dashes with a letter (UUIDs, trace ids): no card (it has a letter), no
# token (those mix cases), no pair (no `=` or `:`).
_HEX_ID = re.compile(r"[0-9a-f-]*[a-f][0-9a-f-]*")


@dataclass(frozen=True, eq=False)  # compared and hashed by identity: one per configuration
class Scrubber:
    """The scrubbing functions of one configuration (the user's patterns and key names)."""

    scrub: Callable[[Any], Any]
    scrub_text: Callable[[str], str]
    scrub_url: Callable[[str], str]
    scrub_headers: Callable[[Mapping[str, str]], dict[str, str]]
    is_sensitive_key: Callable[[str], bool]


def _memoized(function: Callable[[str], str]) -> tuple[Callable[[str], str], dict[str, str]]:
    # A plain dict emptied when full: a hit costs one lookup, a miss no bookkeeping. Hot loops
    # look in the dict themselves and call the function only on a miss.
    memo: dict[str, str] = {}

    def remembered(value: str) -> str:
        found = memo.get(value)
        if found is None:
            found = function(value)
            if len(value) <= _MEMO_CHARS:
                if len(memo) >= _MEMO_SIZE:
                    memo.clear()
                memo[value] = found
        return found

    return remembered, memo


def _user_keys(keys: Sequence[str]) -> tuple[tuple[str, ...], tuple[str, ...]]:
    # A user's key matches any key holding it, whatever the separators and case (`x-acme-sig`
    # holds `acme_sig`); free text is searched for pairs when it holds one of the key's words.
    normal = tuple(n for n in (_SPLIT.sub("", key.lower()) for key in keys) if n)
    words = tuple({word for key in keys for word in _SPLIT.split(key.lower()) if word})
    return normal, words


def _build(patterns: tuple[str, ...], keys: tuple[str, ...]) -> Scrubber:
    extra = re.compile("|".join(f"(?:{p})" for p in patterns)) if patterns else None
    normal_keys, key_words = _user_keys(keys)
    sensitive: Callable[[str], bool] = is_sensitive_key
    if normal_keys:

        @lru_cache(maxsize=4096)
        def sensitive(key: str) -> bool:
            found = _SPLIT.sub("", key.lower())
            return is_sensitive_key(key) or any(user in found for user in normal_keys)

    def plain_text(value: str) -> str:
        # Request and trace ids: nothing to hide (all lower-case: a cheap first look).
        if extra is None and value.islower() and _HEX_ID.fullmatch(value):
            return value
        return cards_and_emails(scrub_secrets(value, sensitive, key_words, extra))

    text, text_memo = _memoized(plain_text)
    known_text = text_memo.get

    def component(raw: str, *, plus: bool = False) -> str:
        # Look at the decoded text (`a%40b.com` is an e-mail), but leave a clean component as
        # it was sent so scrubbing does not re-encode what it did not need to touch.
        decoded = unquote_plus(raw) if plus else unquote(raw)
        cleaned = text(decoded)
        if cleaned == decoded:
            return raw
        return quote(cleaned, safe="[]@:!$'()*,;=+" if not plus else "[]@:!$'()*,;")

    def params(query: str) -> str:
        parts = query.split("&")
        for i, part in enumerate(parts):
            name, sep, raw = part.partition("=")
            if sep and sensitive(unquote_plus(name)):
                parts[i] = f"{name}={FILTERED}"
            else:
                parts[i] = component(name, plus=True) + sep + component(raw, plus=True)
        return "&".join(parts)

    def nothing_to_hide(url: str) -> bool:
        # Without `@` (user info, e-mails), `%` or `+` (encoded text: `Bearer+<token>`), a
        # card-length digit run or a sensitive parameter name, the split, decode and re-join
        # below would give the URL back unchanged.
        if "@" in url or "%" in url or "+" in url or URL_CARD_CANDIDATE.search(url):
            return False
        before_fragment, _, fragment = url.partition("#")
        for query in (before_fragment.partition("?")[2], fragment):
            for part in query.split("&") if "=" in query else ():
                name, sep, _ = part.partition("=")
                if sep and sensitive(name.replace("+", " ")):
                    return False
        return True

    def plain_url(url: str) -> str:
        # Shapes first, on the whole URL: a webhook's secret is its path, a JWT may be a segment.
        url = scrub_secrets(url, sensitive, key_words, extra, pairs=False)
        if nothing_to_hide(url):
            return url
        try:
            parts = urlsplit(url)
        except ValueError:
            return text(url)
        userinfo, at, host = parts.netloc.rpartition("@")
        # Both halves of user:password can be the secret (`https://<token>@github.com`); an
        # empty one hides nothing (and `http:////@` re-joins as `http://@`: it stays).
        netloc = f"{FILTERED if userinfo else ''}{at}{text(host)}"
        # Segment by segment: `/` is legal in an e-mail's local part but separates segments.
        path = "/".join(component(segment) for segment in parts.path.split("/"))
        # The final text() catches what the `&`/`=` split cut in two (`a=b@c.com`).
        query = text(params(parts.query)) if parts.query else ""
        fragment = text(params(parts.fragment)) if parts.fragment else ""
        return urlunsplit((parts.scheme, netloc, path, query, fragment))

    url, _ = _memoized(plain_url)

    def plain_string(value: str) -> str:
        if value.startswith(("http://", "https://")) and " " not in value:
            return url(value)
        if "=" in value and ("%" in value or "+" in value) and _FORM.fullmatch(value):
            # A form-encoded body: its values are read decoded (`password%3Dx` hides nothing).
            return text(params(value))
        return plain_text(value)  # remembered once, by the caller

    string, string_memo = _memoized(plain_string)
    known_string = string_memo.get
    key_memo: dict[str, tuple[bool, str]] = {}
    known_key = key_memo.get

    def key_entry(key: str) -> tuple[bool, str]:
        # (hidden, the key as stored): a key is data too (a body keyed by e-mail address).
        found = key_memo.get(key)
        if found is None:
            if len(key_memo) >= _MEMO_SIZE:
                key_memo.clear()
            found = key_memo[key] = (sensitive(key), text(key))
        return found

    def scrub_dict(value: Mapping[Any, Any], depth: int) -> dict[Any, Any]:
        scrubbed = {}
        for key, item in value.items():
            if type(key) is str:
                entry = known_key(key)
                hidden, key = key_entry(key) if entry is None else entry
                if hidden:
                    scrubbed[key] = FILTERED
                    continue
            if type(item) is str:  # most values of a JSON object: spared a level of dispatch
                found = known_string(item)
                scrubbed[key] = string(item) if found is None else found
            elif type(item) is int and not _CARD_MIN <= item < _CARD_MAX:  # ids and counts
                scrubbed[key] = item
            else:
                scrubbed[key] = scrub_any(item, depth + 1)
        return scrubbed

    def scrub_any(value: Any, depth: int) -> Any:
        if isinstance(value, str):
            return string(value)
        if isinstance(value, int):
            # A JSON body can carry a card number as a number, not a string.
            big = _CARD_MIN <= value < _CARD_MAX and not isinstance(value, bool)
            return FILTERED if big and is_card(str(value)) else value
        if isinstance(value, _SCALARS):  # before the ABC checks below, which are slow
            return value
        if depth > _MAX_DEPTH:
            return FILTERED
        if isinstance(value, dict | Mapping):
            return scrub_dict(value, depth)
        if isinstance(value, list):
            return [scrub_any(item, depth + 1) for item in value]
        if isinstance(value, tuple):
            items = [scrub_any(item, depth + 1) for item in value]
            # A named tuple is rebuilt from its fields; a plain tuple from the list.
            return type(value)(*items) if hasattr(value, "_fields") else tuple(items)
        if isinstance(value, set | frozenset):
            return type(value)(scrub_any(item, depth + 1) for item in value)
        return value

    def scrub(value: Any) -> Any:
        if type(value) is dict:  # what events carry: spared the dispatch
            return scrub_dict(value, 0)
        return scrub_any(value, 0)

    @lru_cache(maxsize=4096)  # a service sends the same few header names with every request
    def header_kind(name: str) -> str:
        if sensitive(name):
            return _HIDDEN
        return _URL_VALUED if name.lower() in _URL_HEADERS else _TEXT

    def headers(value: Mapping[str, str]) -> dict[str, str]:
        scrubbed: dict[str, str] = {}
        for name, item in value.items():
            kind = header_kind(name)
            if kind == _HIDDEN:
                scrubbed[name] = FILTERED
            elif not isinstance(item, str):
                scrubbed[name] = scrub(item)
            elif kind == _URL_VALUED:
                scrubbed[name] = url(item)
            else:
                found = known_text(item)
                scrubbed[name] = text(item) if found is None else found
        return scrubbed

    return Scrubber(scrub, text, url, headers, sensitive)


@lru_cache(maxsize=16)
def _cached(patterns: tuple[str, ...], keys: tuple[str, ...]) -> Scrubber:
    return _build(patterns, keys)


def scrubber(patterns: Sequence[str] = (), keys: Sequence[str] = ()) -> Scrubber:
    """Return the scrubber that also hides matches of `patterns` and values under `keys`.

    Patterns are regular expressions (each match becomes FILTERED); a key name hides the value
    of any key that holds it, separators and case aside. Built once per configuration.
    """
    if not patterns and not keys:  # the common case, asked for once per event: no tuples built
        return _DEFAULT
    return _cached(tuple(patterns), tuple(keys))


_DEFAULT = _cached((), ())


def scrub(value: Any) -> Any:
    """Return a scrubbed deep copy of a JSON-like value; the input is left untouched.

    Values under sensitive keys become FILTERED whatever their type; strings (keys included)
    lose cards, e-mails and secrets (and URL strings their secrets); an integer that is a
    Luhn-valid card number becomes FILTERED; lists, tuples, sets and mappings (returned as
    dicts) are rebuilt; other objects are returned as they are.
    """
    return _DEFAULT.scrub(value)


def scrub_text(text: str) -> str:
    """Return the text with cards, e-mails and secrets found by their shape replaced."""
    return _DEFAULT.scrub_text(text)


def scrub_url(url: str) -> str:
    """Return the URL with user info, sensitive query/fragment values, cards, e-mails and
    secrets hidden."""
    return _DEFAULT.scrub_url(url)


def scrub_headers(headers: Mapping[str, str]) -> dict[str, str]:
    """Return a copy of the headers with sensitive ones FILTERED and the rest scrubbed as text.

    Authorization, Proxy-Authorization, Cookie, Set-Cookie, X-Api-Key and any header whose name
    is a sensitive key are hidden; URL-valued headers (Referer, Location) go through scrub_url;
    any other value loses the secrets found in it by their shape.
    """
    return _DEFAULT.scrub_headers(headers)
