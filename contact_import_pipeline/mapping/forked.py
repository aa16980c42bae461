"""Pure-Python work over many rows on every core (phonenumbers, nameparser).

One process uses one core, so the rows go in chunks to forked workers, which start with the data
and the libraries' metadata already in memory (copy-on-write) instead of receiving them pickled.
"""

from __future__ import annotations

import multiprocessing
import os
import threading
from collections.abc import Callable
from concurrent.futures import ProcessPoolExecutor
from typing import Any, TypeVar

T = TypeVar("T")

_WORK: Callable[[int], Any] | None = None  # what the forked workers run; set only while they exist
_WORK_LOCK = threading.Lock()


def _run(start: int) -> Any:
    assert _WORK is not None  # set by map_chunks before the workers fork
    return _WORK(start)


def map_chunks(work: Callable[[int], T], total: int, chunk: int) -> list[T]:
    """``work(start)`` for each chunk ``start`` in ``range(0, total, chunk)``, in order: in this
    process for a single chunk (or without fork), else on forked workers, one per core."""
    global _WORK
    starts = range(0, total, chunk)
    workers = min(os.cpu_count() or 1, len(starts))
    if workers < 2 or "fork" not in multiprocessing.get_all_start_methods():
        return [work(start) for start in starts]
    with _WORK_LOCK:
        _WORK = work
        try:
            with ProcessPoolExecutor(workers, mp_context=multiprocessing.get_context("fork")) as pool:
                return list(pool.map(_run, starts))
        finally:
            _WORK = None
