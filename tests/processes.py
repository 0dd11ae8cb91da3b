"""Whether a process or a server is really gone: shared by the tests that stop them."""

from __future__ import annotations

import os
from pathlib import Path

import httpx

__all__ = ["gone", "refused"]


def gone(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return True
    # A killed orphan stays a zombie until whoever adopted it reaps it: dead all the same.
    stat = Path(f"/proc/{pid}/stat")
    return stat.exists() and stat.read_text().rsplit(")", 1)[1].split()[0] == "Z"


def refused(url: str) -> bool:
    try:
        httpx.get(url, timeout=2)
    except httpx.ConnectError:
        return True
    return False
