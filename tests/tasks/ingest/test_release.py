"""Freeing a batch on another thread: what is handed over is freed there, also after a fork."""

from __future__ import annotations

import os
import threading
import weakref

from immunity.tasks.ingest.release import release_in_background


class _Row:
    """Something a weak reference can watch (a plain dict cannot be watched)."""


def _watch(obj: _Row) -> tuple[weakref.ref[_Row], threading.Event, list[str]]:
    """Return a weak reference to `obj` (keep it), an event set when `obj` is freed, and a list
    that gets the name of the thread that freed it."""
    freed, where = threading.Event(), []

    def note(_: object) -> None:
        where.append(threading.current_thread().name)
        freed.set()

    return weakref.ref(obj, note), freed, where


def test_what_is_handed_over_is_freed_on_the_release_thread() -> None:
    rows = [_Row() for _ in range(3)]
    ref, freed, where = _watch(rows[1])
    release_in_background(rows, {"nested": rows})
    del rows
    assert freed.wait(10), "the handed-over batch was never freed"
    assert ref() is None
    assert where == ["immunity-release"]


def test_a_forked_child_gets_its_own_release_thread() -> None:
    release_in_background([_Row()])  # the parent's thread is running before the fork
    pid = os.fork()
    if pid == 0:  # the child: its copy of the parent's thread does not run
        row = _Row()
        ref, freed, where = _watch(row)
        release_in_background([row])
        del row
        os._exit(0 if freed.wait(10) and where == ["immunity-release"] else 1)
    _, status = os.waitpid(pid, 0)
    assert os.waitstatus_to_exitcode(status) == 0
