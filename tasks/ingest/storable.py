"""Values every store accepts (PostgreSQL refuses NUL, lone surrogates and NaN in JSON)."""

from __future__ import annotations

import math
from typing import Any

__all__ = ["storable", "storable_text"]


def storable_text(text: str) -> str:
    """Return `text` without NUL characters and with lone surrogates replaced."""
    if "\x00" in text:
        text = text.replace("\x00", "")
    if not text.isascii():
        # Lone surrogates (JSON escapes such as "\ud800" make them) cannot be UTF-8 at all.
        text = text.encode("utf-8", "replace").decode("utf-8")
    return text


def storable(value: Any) -> Any:
    """Return a copy of a JSON-like value with storable strings and NaN/Infinity as null."""
    if isinstance(value, str):
        return storable_text(value)
    if isinstance(value, dict):
        return {storable_text(str(key)): storable(item) for key, item in value.items()}
    if isinstance(value, list | tuple):
        return [storable(item) for item in value]
    if isinstance(value, float) and not math.isfinite(value):
        return None
    return value
