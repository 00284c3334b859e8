"""A per-address limit on failed personal-link lookups: guessing tokens must be slow, while a
partner working on the report is never slowed down."""
from __future__ import annotations

import threading
import time
from collections import defaultdict, deque


class FailedLookupLimit:
    def __init__(self, limit: int, seconds: float):
        self.limit, self.seconds = limit, seconds
        self.failures: dict[str, deque] = defaultdict(deque)
        self.lock = threading.Lock()

    def _window(self, key: str, now: float) -> deque:
        window = self.failures[key]
        while window and window[0] <= now - self.seconds:
            window.popleft()
        return window

    def blocked(self, key: str) -> bool:
        with self.lock:
            return len(self._window(key, time.monotonic())) >= self.limit

    def record_failure(self, key: str):
        now = time.monotonic()
        with self.lock:
            self._window(key, now).append(now)
            if len(self.failures) > 10_000:  # forget idle addresses
                for stale in [k for k, v in self.failures.items() if not v]:
                    del self.failures[stale]
