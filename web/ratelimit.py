"""A per-client limit on failed personal-link look-ups, kept by the `limits` library: guessing
tokens is slowed down, while a partner with a valid link is never refused, whatever their address
did before (the limit is consulted only when a token turns out to be unknown)."""
from __future__ import annotations

import ipaddress
import logging
import math
import time

from limits import RateLimitItemPerSecond
from limits.errors import StorageError
from limits.storage import storage_from_string
from limits.strategies import FixedWindowRateLimiter

log = logging.getLogger(__name__)


def client_key(address: str) -> str:
    """The address counted: IPv4 as it is, IPv6 by its /64, the smallest block one client gets."""
    try:
        ip = ipaddress.ip_address(address)
    except ValueError:
        return address or "?"
    if ip.version == 4:
        return str(ip)
    if ip.ipv4_mapped is not None:
        return str(ip.ipv4_mapped)
    return str(ipaddress.ip_network(f"{ip}/64", strict=False))


class FailedLookupLimit:
    """At most ``limit`` unknown tokens per ``seconds`` from one client.

    ``storage_url``: ``memory://`` in the embedded mode (one process), ``redis://…`` in production
    so that every gunicorn worker and container shares one count.

    A fixed window that starts with a client's first failure: in memory its counter and expiry
    are deleted once the window is over (``MemoryStorage`` drops expired keys on the next hit from
    any client, and on a read of that key), in Redis the key carries an EXPIRE. So the table holds
    only the clients that failed within the last window. (The moving-window strategy would be
    exact, but its memory storage keeps an empty list for every address it has ever seen.)
    """

    def __init__(self, storage_url: str, *, limit: int = 30, seconds: int = 60):
        options = {} if storage_url.startswith("memory") else {
            # A hung Redis must not hang the 404 page.
            "socket_timeout": 2, "socket_connect_timeout": 2}
        self.storage = storage_from_string(storage_url, wrap_exceptions=True, **options)
        self.limiter = FixedWindowRateLimiter(self.storage)
        self.item = RateLimitItemPerSecond(limit, seconds, namespace="link-lookup")

    def failure(self, address: str) -> int | None:
        """Count a failed look-up; when it is over the limit, the seconds to wait, else None."""
        key = client_key(address)
        try:
            if self.limiter.hit(self.item, key):
                return None
            reset_at = self.limiter.get_window_stats(self.item, key).reset_time
        except StorageError:
            # Failing open costs nothing real (a token has 256 random bits); a 500 page for every
            # mistyped link while Redis is away would.
            log.warning("link rate limit storage unavailable; failed look-up not counted",
                        exc_info=True)
            return None
        return max(1, math.ceil(reset_at - time.time()))
