"""A small per-address limit on personal-link lookups (guessing tokens must be slow)."""
from __future__ import annotations

import threading
import time
from collections import defaultdict, deque


class SlidingWindowLimit:
    def __init__(self, limit: int, seconds: float):
        self.limit, self.seconds = limit, seconds
        self.hits: dict[str, deque] = defaultdict(deque)
        self.lock = threading.Lock()

    def allow(self, key: str) -> bool:
        now = time.monotonic()
        with self.lock:
            window = self.hits[key]
            while window and window[0] <= now - self.seconds:
                window.popleft()
            if len(window) >= self.limit:
                return False
            window.append(now)
            if len(self.hits) > 10_000:  # forget idle addresses
                for stale in [k for k, v in self.hits.items() if not v]:
                    del self.hits[stale]
            return True
