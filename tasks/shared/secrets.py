"""Secrets recognised by their shape in free text, each replaced by FILTERED.

What is found: PEM private keys, JWTs, bearer/basic/token credentials after their scheme, AWS
access key ids (and, next to one or to the word AWS, 40-character secret keys), GitHub, GitLab,
npm, Slack, Stripe, OpenAI/Anthropic, SendGrid and Google API keys, Slack webhook URLs, the user
info of any `scheme://user:pass@host` URL, and `name=value` / `name: value` / `"name": "value"`
pairs whose name is sensitive (as decided by the caller's key test), in logs, messages, JSON
text and form-encoded bodies alike.

Speed: each detector runs only after a substring test (C speed) that every match must pass, so
a clean string costs a few `in` checks. Replacements never produce text a detector matches again
(FILTERED is left as it is), so scrubbing twice changes nothing more.
"""

from __future__ import annotations

import base64
import binascii
import re
from collections.abc import Callable

__all__ = ["FILTERED", "any_word", "scrub_secrets"]

FILTERED = "[Filtered]"

_PEM = re.compile(
    r"-----BEGIN[A-Z0-9 ]{0,40}PRIVATE KEY[A-Z ]{0,10}-----.*?"
    r"(?:-----END[A-Z0-9 ]{0,40}PRIVATE KEY[A-Z ]{0,10}-----|\Z)",
    re.DOTALL,
)
_JWT = re.compile(r"eyJ[A-Za-z0-9_-]{4,}\.[A-Za-z0-9_-]{4,}\.[A-Za-z0-9_-]*")
# The scheme stays (it says what kind of credential was there); the credential goes.
_SCHEME = re.compile(r"(?i)\b(bearer|token|negotiate)([ \t]+)([A-Za-z0-9._~+/=-]{8,})")
_BASIC = re.compile(r"(?i)\b(basic[ \t]+)([A-Za-z0-9+/]{6,}={0,2})(?![A-Za-z0-9+/=])")
_AWS_ID = re.compile(r"(?<![A-Z0-9])(?:AKIA|ASIA)[A-Z0-9]{16}(?![A-Z0-9])")
_AWS_SECRET = re.compile(r"(?<![A-Za-z0-9/+=])[A-Za-z0-9/+]{40}(?![A-Za-z0-9/+=])")
_TOKENS = re.compile(
    r"(?<![A-Za-z0-9])(?:"
    r"gh[pousr]_[A-Za-z0-9]{30,255}|github_pat_[A-Za-z0-9_]{22,255}"
    r"|glpat-[A-Za-z0-9_-]{20,}|npm_[A-Za-z0-9]{30,}"
    r"|xox[abposre]-[A-Za-z0-9-]{10,}"
    r"|[sr]k_(?:live|test)_[A-Za-z0-9]{10,}"
    r"|sk-(?:proj-|ant-[a-z0-9]+-|svcacct-|admin-)?[A-Za-z0-9_-]{20,}"
    r"|AIza[A-Za-z0-9_-]{35}"
    r"|SG\.[A-Za-z0-9_-]{16,}\.[A-Za-z0-9_-]{16,}"
    r")"
)
_SLACK_HOOK = re.compile(r"hooks\.slack\.com/(?:services|workflows|triggers)/[A-Za-z0-9/_-]+")
_URL_USERINFO = re.compile(r"\b([A-Za-z][A-Za-z0-9+.-]{0,30}://)([^\s/?#@\"'<>\[\]]+)@")
# A name, an optional closing quote, `=` or `:`, then the value: quoted (kept quoted), a scheme
# and its credential, or a bare run up to a delimiter of forms, JSON and log lines.
_ASSIGNMENT = re.compile(
    # (The look-behind follows the first letter so the engine can still skip ahead to one.)
    r"(?P<key>[A-Za-z_](?<![\w.-][A-Za-z_])[\w.-]{0,63}+)(?:\\?[\"'])?[ \t]*(?P<sep>[:=])[ \t]*"
    r"(?P<value>\[Filtered\]"
    r"|\\\"(?:[^\"\\\n]|\\[^\"])*\\\""
    r"|\"(?:[^\"\\\n]|\\.)*\""
    r"|'[^'\n]*'"
    r"|(?:[Bb]earer|[Bb]asic|[Tt]oken|[Dd]igest)[ \t]+[^\s\"'\\&,;<>]+"
    r"|[^\s\"'\\&,;<>(){}\[\]]+)"
)


def _basic(match: re.Match[str]) -> str:
    # `Basic` is an English word too: only base64 of `user:password` is a credential.
    try:
        decoded = base64.b64decode(match[2] + "=" * (-len(match[2]) % 4), validate=True)
    except (binascii.Error, ValueError):
        return match[0]
    return match[1] + FILTERED if b":" in decoded else match[0]


def _scheme(match: re.Match[str]) -> str:
    # `token validation failed` is prose: a credential has a digit or a symbol, or is long.
    found = match[3]
    if found.isalpha() and len(found) < 20:
        return match[0]
    return match[1] + match[2] + FILTERED


def _aws_secret(match: re.Match[str]) -> str:
    # Git hashes and other hex are 40 characters too: a secret key mixes cases and digits.
    found = match[0]
    mixed = not found.isdigit() and not found.islower() and not found.isupper()
    return FILTERED if mixed and any(c.isdigit() for c in found) else found


def _userinfo(match: re.Match[str]) -> str:
    return match[1] + FILTERED + "@"


def _assignments(text: str, sensitive_key: Callable[[str], bool]) -> str:
    def replace(match: re.Match[str]) -> str:
        value = match["value"]
        head = match[0][: match.start("value") - match.start()]
        harmless = not sensitive_key(match["key"]) or (match["sep"] == ":" and value[:2] == "//")
        if harmless:  # (`https://…` is a URL, not a pair) but its value may hold pairs
            return head + _ASSIGNMENT.sub(replace, value) if len(value) > 2 else match[0]
        if FILTERED in value:
            return match[0]
        quote = value[:2] if value[:1] == "\\" else value[:1]
        if quote in ('"', "'", '\\"'):
            if len(value) <= 2 * len(quote):
                return match[0]  # an empty value hides nothing
            return f"{head}{quote}{FILTERED}{quote}"
        return head + FILTERED

    return _ASSIGNMENT.sub(replace, text)


def scrub_secrets(
    text: str,
    sensitive_key: Callable[[str], bool],
    key_words: tuple[str, ...] = (),
    extra: re.Pattern[str] | None = None,
    *,
    pairs: bool = True,
) -> str:
    """Return the text with every secret found by its shape (see the module) replaced.

    `sensitive_key` decides which `name=value` pairs hide their value (with `pairs`: a URL's
    query is better split by its own syntax); a pair is only looked for when the text holds a
    word of `any_word` or of `key_words` (the user's key names, lower-cased). `extra` is a
    pattern of the user's whose matches go too.
    """
    lower = text.islower()
    lowered = text if lower else text.lower()  # what the cheap looks below search
    if not lower:  # keys, JWTs, AWS and SaaS tokens mix cases: all-lower-case text has none
        found = _mixed_case(text, lowered)
        if found is not text:
            text, lowered = found, found.lower()
    separated = "=" in text or ":" in text
    if separated and "@" in text and "://" in text:
        text = _URL_USERINFO.sub(_userinfo, text)
    if (" " in text or "\t" in text) and (
        "bearer" in lowered or "token" in lowered or "negotiate" in lowered
    ):
        text = _SCHEME.sub(_scheme, text)
    if separated and pairs and any_word(lowered, key_words):
        text = _assignments(text, sensitive_key)
    if extra is not None:
        text = extra.sub(FILTERED, text)
    return text


def _mixed_case(text: str, lowered: str) -> str:
    found = text
    if "PRIVATE KEY" in text:
        text = _PEM.sub(FILTERED, text)
    # Each token's prefix holds `_` or `-`, but Google's and SendGrid's.
    if (
        (("_" in text or "-" in text) and (
            "gh" in text or "_pat_" in text or "npm_" in text or "k_live_" in text
            or "k_test_" in text or "sk-" in text or "xox" in text or "glpat-" in text
        ))
        or "AIza" in text or "SG." in text
    ):  # fmt: skip
        text = _TOKENS.sub(FILTERED, text)
    if "eyJ" in text:
        text = _JWT.sub(FILTERED, text)
    if "hooks.slack.com" in lowered:
        text = _SLACK_HOOK.sub(FILTERED, text)
    aws_id = "AKIA" in text or "ASIA" in text
    if aws_id:
        text = _AWS_ID.sub(FILTERED, text)
    if len(text) >= 40 and (aws_id or "aws" in lowered):
        text = _AWS_SECRET.sub(_aws_secret, text)
    if "basic" in lowered:
        text = _BASIC.sub(_basic, text)
    return found if text == found else text


def any_word(lowered: str, extra: tuple[str, ...]) -> bool:
    """Return True when the lower-cased text holds a word every sensitive key name holds.

    (`scrub.is_sensitive_key` accepts only names with one of these; `extra` adds the user's.)
    """
    return (
        "pass" in lowered or "pwd" in lowered or "secret" in lowered or "cred" in lowered
        or ("key" in lowered and ("api" in lowered or "priv" in lowered or "access" in lowered))
        or "auth" in lowered or "token" in lowered or "sess" in lowered
        or "cookie" in lowered or "sig" in lowered or "srf" in lowered or "otp" in lowered
        or "jwt" in lowered or "bearer" in lowered or "cvv" in lowered or "cvc" in lowered
        or (bool(extra) and any(word in lowered for word in extra))
    )  # fmt: skip
