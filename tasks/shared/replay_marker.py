"""The replay marker: a signed `X-Immunity-Replay` value a report cannot forge.

Every request immunity sends carries `<kind>:<id>:<expiry>:<mac>`: what sent it (`verify` for a
reproduction check, `run` for a suite run) and which test, until when the marker holds (Unix
seconds), and a keyed HMAC-SHA256 of the rest. A target that reports its failures back to
immunity copies the header into the report; only a marker that verifies makes the report a
replay's. A missing, expired or forged marker is an ordinary occurrence.

The key is `IMMUNITY_REPLAY_SECRET`, or else a random key kept in `<data_dir>/replay.key` (mode
0600, created once by whichever process signs first). Processes that sign and verify (the API,
the workers) must share one of the two.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import os
import secrets
import time
from pathlib import Path

from immunity.models.settings import Settings

__all__ = ["KEY_FILE", "sign", "verify"]

KEY_FILE = "replay.key"
# A marker is a few dozen characters; anything much longer is not one (and is not hashed).
_MAX_LENGTH = 512
_keys: dict[str, tuple[int, int, bytes]] = {}


def sign(kind: str, id: int | str, settings: Settings, ttl_s: float | None = None) -> str:
    """Return the marker `<kind>:<id>:<expiry>:<mac>`, valid for `ttl_s` seconds (default: the
    settings' `replay_marker_ttl_minutes`)."""
    if not kind or ":" in kind:
        raise ValueError(f"a marker kind is a word without ':', not {kind!r}")
    ttl = settings.replay_marker_ttl_minutes * 60 if ttl_s is None else ttl_s
    signed = f"{kind}:{id}:{int(time.time() + ttl)}"
    return f"{signed}:{_mac(_key(settings, create=True), signed)}"


def verify(value: str, settings: Settings) -> tuple[str, str] | None:
    """Return (kind, id) of a valid, unexpired marker, or None for anything else."""
    if not value or len(value) > _MAX_LENGTH:
        return None
    signed, _, mac = value.rpartition(":")
    rest, _, expiry = signed.rpartition(":")
    kind, _, id_ = rest.partition(":")
    if not (kind and id_ and expiry.isdigit() and mac):
        return None
    key = _key(settings, create=False)
    if key is None:  # nothing was ever signed with this data directory's key
        return None
    # Compared before the expiry is looked at, so a forged marker costs the same either way.
    valid = hmac.compare_digest(_mac(key, signed).encode(), mac.encode("utf-8", "replace"))
    if not valid or int(expiry) < time.time():
        return None
    return kind, id_


def _mac(key: bytes, signed: str) -> str:
    digest = hmac.new(key, signed.encode("utf-8"), hashlib.sha256).digest()
    return base64.urlsafe_b64encode(digest).rstrip(b"=").decode("ascii")


def _key(settings: Settings, *, create: bool) -> bytes | None:
    if settings.replay_secret is not None and settings.replay_secret.get_secret_value():
        return settings.replay_secret.get_secret_value().encode("utf-8")
    path = settings.data_dir / KEY_FILE
    key = _read(path)
    if key is None and create:
        _create(path)
        key = _read(path)
        if key is None:
            raise RuntimeError(f"the replay key {path} could not be created")
    return key


def _read(path: Path) -> bytes | None:
    """Return the key kept at `path` (read again only when the file changes), or None."""
    try:
        stat = path.stat()
    except FileNotFoundError:
        return None
    cached = _keys.get(str(path))
    if cached is not None and cached[:2] == (stat.st_mtime_ns, stat.st_ino):
        return cached[2]
    key = path.read_bytes().strip()
    if not key:
        return None
    _keys[str(path)] = (stat.st_mtime_ns, stat.st_ino, key)
    return key


def _create(path: Path) -> None:
    """Create the key file once: written aside, then linked into place (first process wins)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    aside = path.with_name(f".{path.name}.{os.getpid()}.{secrets.token_hex(4)}")
    descriptor = os.open(aside, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    try:
        with os.fdopen(descriptor, "w") as handle:
            handle.write(secrets.token_hex(32) + "\n")
        try:
            os.link(aside, path)
        except FileExistsError:
            pass  # another process made it first: its key is the key
    finally:
        aside.unlink(missing_ok=True)
