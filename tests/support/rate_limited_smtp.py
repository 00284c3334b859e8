"""An SMTP server (aiosmtpd) that refuses mail arriving faster than its rate, as a provider does:
at most ``rate × window`` messages in any ``window`` seconds; a message over the limit gets
``452 4.3.1 too many messages`` at the end of DATA and is not counted."""
from __future__ import annotations

import threading
import time
from collections import deque
from contextlib import contextmanager
from email.parser import BytesHeaderParser

from aiosmtpd.controller import Controller

from tests.support.servers import free_port

TOO_MANY = "452 4.3.1 too many messages"


class RateLimitedHandler:
    def __init__(self, rate: float, window: float = 1.0):
        self.limit = max(1, round(rate * window))
        self.window = window
        self.lock = threading.Lock()
        self.accepted: list[float] = []  # monotonic arrival times
        self.message_ids: list[str] = []
        self.refused: list[float] = []
        self._recent: deque[float] = deque()

    async def handle_DATA(self, server, session, envelope):
        now = time.monotonic()
        with self.lock:
            while self._recent and self._recent[0] <= now - self.window:
                self._recent.popleft()
            if len(self._recent) >= self.limit:
                self.refused.append(now)
                return TOO_MANY
            self._recent.append(now)
            self.accepted.append(now)
            self.message_ids.append(_message_id(envelope.content))
        return "250 Message accepted for delivery"

    def rate(self, skip: int = 0) -> float:
        """Mails accepted per second from the ``skip``-th accepted mail to the last."""
        with self.lock:
            times = self.accepted[skip:]
        return (len(times) - 1) / (times[-1] - times[0]) if len(times) > 1 else 0.0

    def busiest_window(self) -> int:
        """The most mails accepted within any ``window`` seconds."""
        with self.lock:
            times = list(self.accepted)
        most, start = 0, 0
        for end, at in enumerate(times):
            while times[start] <= at - self.window:
                start += 1
            most = max(most, end - start + 1)
        return most


def _message_id(content: bytes) -> str:
    return str(BytesHeaderParser().parsebytes(content)["Message-ID"] or "")


@contextmanager
def rate_limited_smtp(rate: float, window: float = 1.0):
    """The server on a free loopback port: yields (controller, handler)."""
    handler = RateLimitedHandler(rate, window)
    controller = Controller(handler, hostname="127.0.0.1", port=free_port())
    controller.start()
    try:
        yield controller, handler
    finally:
        controller.stop()
