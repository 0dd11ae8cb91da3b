"""Freeing a stored batch's objects on another thread, while the database commits."""

from __future__ import annotations

import queue
import threading

__all__ = ["release_in_background"]

_garbage: queue.SimpleQueue[tuple[object, ...]] = queue.SimpleQueue()
_lock = threading.Lock()
_worker: threading.Thread | None = None


def _drop_forever(garbage: queue.SimpleQueue[tuple[object, ...]]) -> None:
    while True:
        garbage.get()  # dropped at once: freeing it is the whole of the work


def release_in_background(*objects: object) -> None:
    """Hand over the last references to `objects`: a daemon thread drops them.

    Freeing a batch's validated events and rows (hundreds of thousands of objects) costs about
    a tenth of ingesting it. Handed over just before the commit, it is done while the ingesting
    thread waits for the database (which releases the GIL), so the batch returns that much
    sooner. The caller must hold no other reference, or nothing is freed here.
    """
    global _garbage, _worker
    with _lock:
        if _worker is None or not _worker.is_alive():  # first use, or in a forked child
            _garbage = queue.SimpleQueue()  # a fork's copy of the queue may be mid-operation
            _worker = threading.Thread(
                target=_drop_forever, args=(_garbage,), name="immunity-release", daemon=True
            )
            _worker.start()
        _garbage.put(objects)
