"""A corpus of fake secrets of every kind scrubbing must catch, each in the text that carries it.

`CORPUS` maps a kind to (carrier, secret): the carrier is how the secret shows up in a log line,
a message or a field (`password=…`, `Bearer …`, a URL); the secret is what must never be found
again once scrubbed. All of them are made up; none grants anything.
"""

from __future__ import annotations

import random
import string
from urllib.parse import quote, quote_plus

__all__ = ["CORPUS", "SCRUB_KEYS", "SCRUB_PATTERNS", "USER_KEY", "forms"]

_rng = random.Random(18)


def _chars(n: int, alphabet: str = string.ascii_letters + string.digits) -> str:
    # Mixed case and digits, as real tokens are (a lower-case-only token is no real token).
    while True:
        found = "".join(_rng.choice(alphabet) for _ in range(n))
        if any(c.isupper() for c in found) and any(c.islower() for c in found):
            if any(c.isdigit() for c in found):
                return found


_JWT = (
    "eyJhbGciOiJIUzI1NiIsInR5cCI6IkpXVCJ9.eyJzdWIiOiI0MjQyIiwibmFtZSI6IkFkYSIsImFkbWluIjp0cnVlfQ."
    + _chars(43, string.ascii_letters + string.digits + "-_")
)
_RSA_LINE = "MIIEowIBAAKCAQEA" + _chars(48, string.ascii_letters + string.digits + "+/")
_RSA = (
    "-----BEGIN RSA PRIVATE KEY-----\n"
    + _RSA_LINE
    + "\n"
    + _chars(64)
    + "\n-----END RSA PRIVATE KEY-----"
)
_SSH_LINE = "b3BlbnNzaC1rZXktdjEAAAAA" + _chars(40)
_SSH = f"-----BEGIN OPENSSH PRIVATE KEY-----\n{_SSH_LINE}\n-----END OPENSSH PRIVATE KEY-----"
_AWS_SECRET = _chars(18) + "/" + _chars(10) + "+" + _chars(10)  # 40 characters
_BASIC = "YWRtaW46czNjcjN0LVBhc3MtOTE="  # admin:s3cr3t-Pass-91

USER_KEY = "x_acme_ticket"
SCRUB_PATTERNS = [r"ACME-TKT-\d{8}"]
SCRUB_KEYS = [USER_KEY]

_OPAQUE = "9f8e7d6c5b4a3f2e1d0c9b8a7f6e5d4c"  # an opaque token: only its scheme tells
_GITHUB = f"ghp_{_chars(36)}"
_GITHUB_PAT = f"github_pat_11{_chars(20)}_{_chars(59)}"
_GITLAB = f"glpat-{_chars(20)}"
_NPM = f"npm_{_chars(36)}"
_SLACK = f"xoxb-123456789012-1234567890123-{_chars(24)}"
_HOOK = _chars(24)
_STRIPE = f"sk_live_{_chars(24)}"
_OPENAI = f"sk-proj-{_chars(40)}"
_GOOGLE = f"AIza{_chars(35)}"

CORPUS: dict[str, tuple[str, str]] = {
    "form_password": ("password=Tr0ub4dor-Zx9q&user=ada", "Tr0ub4dor-Zx9q"),
    "json_password": ('{"user": "ada", "passwd": "Hunter2-Qw7e"}', "Hunter2-Qw7e"),
    "bearer": (f"retried with Bearer {_OPAQUE}", _OPAQUE),
    "basic": (f"Basic {_BASIC}", _BASIC),
    "jwt": (f"token was {_JWT}", _JWT),
    "aws_access_key": ("key id AKIAZ7QX3MPLR4TUVW2Y rejected", "AKIAZ7QX3MPLR4TUVW2Y"),
    "aws_secret": (f"aws_secret_access_key={_AWS_SECRET}", _AWS_SECRET),
    "github_classic": (f"clone with {_GITHUB}", _GITHUB),
    "github_fine_grained": (f"pat {_GITHUB_PAT}", _GITHUB_PAT),
    "gitlab": (f"{_GITLAB} expired", _GITLAB),
    "npm": (f"//registry.npmjs.org/:_authToken={_NPM}", _NPM),
    "slack_token": (f"slack {_SLACK}", _SLACK),
    "slack_webhook": (
        f"posting to https://hooks.slack.com/services/T0AB1CD2E/B0FG3HI4J/{_HOOK}",
        _HOOK,
    ),
    "stripe": (f"charge failed with {_STRIPE}", _STRIPE),
    "openai": (f"model key {_OPENAI}", _OPENAI),
    "google_api_key": (f"maps key {_GOOGLE}", _GOOGLE),
    "pem_rsa": (_RSA, _RSA_LINE),
    "pem_openssh": (_SSH, _SSH_LINE),
    "postgres_url": ("postgresql://app_user:Pg-S3cret-77x@db.internal:5432/app", "Pg-S3cret-77x"),
    "redis_url": ("redis://:R3dis-Pa55-x1q@cache.internal:6379/0", "R3dis-Pa55-x1q"),
    "card": ("paid with 4242 4242 4242 4242 exp 12/30", "4242 4242 4242 4242"),
    "email": ("contact jane.roe.7@corp-mail.example now", "jane.roe.7@corp-mail.example"),
    "user_pattern": ("ticket ACME-TKT-88771234 open", "ACME-TKT-88771234"),
    "user_key": (f"{USER_KEY}=Tkt-Value-5521z", "Tkt-Value-5521z"),
    "creds": ("creds=svc-admin:Cr3ds-Ok-88", "Cr3ds-Ok-88"),
}


def forms(secret: str) -> list[str]:
    """Return the secret as it could be written anywhere: raw, URL-encoded, JSON-escaped."""
    found = {secret, quote(secret, safe=""), quote_plus(secret), secret.replace("/", "\\/")}
    return sorted(found)
