"""A bounded request queue: at most ``max_active`` requests run, ``max_queued`` wait; beyond that
the server answers RESOURCE_EXHAUSTED (reason OVERLOADED) at once instead of letting work pile up.
Waiting requests give up when their deadline passes or their caller goes away."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager

from service.errors import ServiceError, ServiceReason


class Admission:
    def __init__(
        self,
        max_active: int,
        max_queued: int,
        on_change: Callable[[int, int], None] | None = None,
    ) -> None:
        if max_active < 1 or max_queued < 0:
            raise ValueError("need max_active >= 1 and max_queued >= 0")
        self.max_active = max_active
        self.max_queued = max_queued
        self.on_change = on_change
        self.active = 0
        self.waiting = 0
        self._cond = threading.Condition()

    def _changed(self) -> None:
        if self.on_change:
            self.on_change(self.active, self.waiting)

    @contextmanager
    def slot(
        self,
        time_remaining: Callable[[], float | None] = lambda: None,
        is_active: Callable[[], bool] = lambda: True,
    ) -> Iterator[None]:
        with self._cond:
            if self.active + self.waiting >= self.max_active + self.max_queued:
                raise ServiceError(
                    ServiceReason.OVERLOADED,
                    f"the server is at capacity ({self.max_active} running, {self.max_queued} "
                    "queued); retry with backoff or lower your concurrency",
                )
            self.waiting += 1
            self._changed()
            try:
                while self.active >= self.max_active:
                    remaining = time_remaining()
                    if remaining is not None and remaining <= 0:
                        raise ServiceError(
                            ServiceReason.DEADLINE_EXCEEDED,
                            "the deadline passed while the request was queued; allow more time",
                        )
                    if not is_active():
                        raise ServiceError(ServiceReason.CANCELLED, "the caller went away")
                    self._cond.wait(timeout=0.05 if remaining is None else min(remaining, 0.05))
            finally:
                self.waiting -= 1
            self.active += 1
            self._changed()
        try:
            yield
        finally:
            with self._cond:
                self.active -= 1
                self._changed()
                self._cond.notify()

    def idle(self, timeout: float) -> bool:
        """Wait until nothing runs or waits (for shutdown); False on timeout."""
        end = time.monotonic() + timeout
        with self._cond:
            while self.active or self.waiting:
                left = end - time.monotonic()
                if left <= 0:
                    return False
                self._cond.wait(timeout=min(left, 0.05))
        return True
