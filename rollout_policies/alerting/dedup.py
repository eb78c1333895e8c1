"""Remembers which notifications were already handled, for a while, so a resend does nothing twice."""

from __future__ import annotations

import threading
import time
from collections import OrderedDict
from collections.abc import Callable


class Deduplicator:
    """Keys seen in the last ``ttl`` seconds (at most ``capacity``, oldest dropped first). Thread-safe.

    The time-to-live should exceed Alertmanager's ``repeat_interval``: a still-firing group is
    resent then with the same key, and must not roll back again.
    """

    def __init__(
        self, ttl: float = 6 * 3600.0, capacity: int = 10_000, clock: Callable[[], float] = time.monotonic
    ) -> None:
        self.ttl = ttl
        self.capacity = capacity
        self.clock = clock
        self._seen: OrderedDict[str, float] = OrderedDict()
        self._lock = threading.Lock()

    def _prune(self, now: float) -> None:
        while self._seen:
            key, expires = next(iter(self._seen.items()))
            if expires > now and len(self._seen) <= self.capacity:
                break
            del self._seen[key]

    def seen(self, key: str) -> bool:
        with self._lock:
            now = self.clock()
            self._prune(now)
            return key in self._seen

    def remember(self, key: str) -> None:
        with self._lock:
            now = self.clock()
            self._seen.pop(key, None)
            self._seen[key] = now + self.ttl
            self._prune(now)

    def __len__(self) -> int:
        with self._lock:
            self._prune(self.clock())
            return len(self._seen)
