"""The sending rate: one pace for every worker, kept in the broker's Redis, slowed down when the
mail server says we send too fast.

A token bucket in its GCRA form: the bucket is one instant, the next free slot. Each mail
*reserves* the next slot and sleeps until it, so the mails of all workers leave evenly spaced
(a fixed or moving window would let a window's worth leave at once, which a server that refuses
above its rate answers with 452). ``burst`` slots may be taken at once after a quiet spell; the
default 1 spaces every mail.

The pace is ``MARGIN`` of the configured rate: a mail that reaches the server a few milliseconds
late (a busy CPU, the network) followed by one on time would otherwise put one mail too many into
a second of a server that counts exactly; 3 % of a second leaves 30 ms for such jitter (measured
on a loaded two-core machine: 20 to 35 ms).

When the server answers 421/451/452 after a quiet spell, the pace drops by ``FIRST_STEP`` (2 %):
that most often means one mail came late, as above. If it answers so again within
``RECENT_SECONDS`` of a drop, the pace is too fast and drops by ``STEP`` (20 %) each time, never
below ``FLOOR`` of the rate. Such replies within ``HOLD_SECONDS`` of a drop do not count: a server
counts over a second or more, so the mails of the second before the drop are still in its count.
The pace climbs back linearly, ``RECOVERY_SECONDS`` from nothing to the full pace (2 % in 12 s,
20 % in 2 minutes): against a server whose limit is below the configured rate it settles just
under that limit and tries a little above it now and then.

The state lives in Redis under one key per mail server and is changed by one Lua script (atomic;
Redis's clock is the only clock). If Redis cannot be reached, each process keeps its own pace
at the configured rate (a server that still finds it too fast slows it down) and says so once;
Redis is tried again after ``REDIS_RETRY_SECONDS``. The throttle never fails a send.
"""
from __future__ import annotations

import logging
import threading
import time

import redis

from infra.settings import Settings
from workflow.delivery import NoThrottle, Throttle

log = logging.getLogger(__name__)

MARGIN = 0.97
FIRST_STEP = 0.98
STEP = 0.8
RECENT_SECONDS = 10.0
HOLD_SECONDS = 1.0
FLOOR = 0.1
RECOVERY_SECONDS = 600.0
REDIS_RETRY_SECONDS = 30.0

# KEYS[1]: the bucket. ARGV: operation ("take", "slow" or "rate"), full pace per second, burst,
# RECOVERY_SECONDS, FIRST_STEP, STEP, RECENT_SECONDS, FLOOR, HOLD_SECONDS. Returns [the wait, or
# 1 when the pace dropped; the pace]. Numbers cross as strings both ways: Redis turns a Lua
# number into an integer.
_SCRIPT = """
local t = redis.call('TIME')
local now = tonumber(t[1]) + tonumber(t[2]) / 1000000
local op, pace, burst = ARGV[1], tonumber(ARGV[2]), tonumber(ARGV[3])
local recovery = tonumber(ARGV[4])
local s = redis.call('HMGET', KEYS[1], 'tat', 'factor', 'since')
local tat = math.max(tonumber(s[1]) or now, now)
local since = tonumber(s[3])
local factor = math.min(1, (tonumber(s[2]) or 1) + (now - (since or now)) / recovery)
local function keep(last)
  redis.call('PEXPIRE', KEYS[1], math.ceil((last - now + recovery + 1) * 1000))
end
if op == 'take' then
  local interval = 1 / (pace * factor)
  local wait = math.max(0, tat - (burst - 1) * interval - now)
  redis.call('HSET', KEYS[1], 'tat', string.format('%.6f', tat + interval))
  keep(tat + interval)
  return {string.format('%.6f', wait), string.format('%.6f', pace * factor)}
end
if op == 'slow' and (since == nil or now - since >= tonumber(ARGV[9])) then
  local step = tonumber(ARGV[5])
  if since and now - since < tonumber(ARGV[7]) then
    step = tonumber(ARGV[6])
  end
  factor = math.max(tonumber(ARGV[8]), factor * step)
  redis.call('HSET', KEYS[1], 'factor', string.format('%.6f', factor),
             'since', string.format('%.6f', now))
  keep(tat)
  return {'1', string.format('%.6f', pace * factor)}
end
return {'0', string.format('%.6f', pace * factor)}
"""


def throttle_for(settings: Settings) -> Throttle:
    """No limit unless SEND_RATE_PER_SECOND is set; shared through the broker's Redis when there
    is one, else (embedded mode) kept in this process."""
    rate = settings.send_rate_per_second
    if rate <= 0:
        return NoThrottle()
    if settings.broker_url.startswith(("redis://", "rediss://")):
        smtp = settings.smtp
        server = f"{smtp.host}:{smtp.port}" if smtp and smtp.scheme != "maildir" else "local"
        return RedisThrottle(settings.broker_url, rate, settings.send_burst,
                             key=f"reportcycles:send-rate:{server}")
    return LocalThrottle(rate, settings.send_burst)


def _describe(pace: float, rate: float) -> str:
    return f"{pace:.2f} mails/s (configured {rate:g}/s)"


class LocalThrottle:
    """The same pace kept in this process, shared by its threads (embedded mode, or while Redis
    is away)."""

    def __init__(self, rate: float, burst: int = 1, *, recovery_seconds: float = RECOVERY_SECONDS):
        self.rate, self.pace = float(rate), float(rate) * MARGIN
        self.burst, self.recovery = max(1, int(burst)), recovery_seconds
        self._lock = threading.Lock()
        self._tat = 0.0
        self._factor, self._since = 1.0, None

    def _current_factor(self, now: float) -> float:
        if self._since is None:
            return 1.0
        return min(1.0, self._factor + (now - self._since) / self.recovery)

    def reserve(self) -> float:
        """Take the next slot; the seconds until it."""
        with self._lock:
            now = time.monotonic()
            interval = 1.0 / (self.pace * self._current_factor(now))
            tat = max(self._tat, now)
            self._tat = tat + interval
            return max(0.0, tat - (self.burst - 1) * interval - now)

    def acquire(self) -> None:
        wait = self.reserve()
        if wait > 0:
            time.sleep(wait)

    def slow_down(self) -> None:
        with self._lock:
            now = time.monotonic()
            if self._since is not None and now - self._since < HOLD_SECONDS:
                return
            recent = self._since is not None and now - self._since < RECENT_SECONDS
            self._factor = max(FLOOR, self._current_factor(now) * (STEP if recent
                                                                   else FIRST_STEP))
            self._since = now
            pace = self.pace * self._factor
        log.warning("the mail server says we send too fast: this process now sends %s",
                    _describe(pace, self.rate))

    def current_rate(self) -> float:
        """The pace now, in mails per second."""
        with self._lock:
            return self.pace * self._current_factor(time.monotonic())


class RedisThrottle:
    """The pace of every worker process, in Redis (``url``: the broker's)."""

    def __init__(self, url: str, rate: float, burst: int = 1, *,
                 key: str = "reportcycles:send-rate", recovery_seconds: float = RECOVERY_SECONDS):
        self.url, self.key = url, key
        self.rate, self.pace = float(rate), float(rate) * MARGIN
        self.burst, self.recovery = max(1, int(burst)), recovery_seconds
        self.local = LocalThrottle(rate, burst, recovery_seconds=recovery_seconds)
        self._script = None  # made on first use: building the services connects to nothing
        self._lock = threading.Lock()
        self._away_until: float | None = None  # Redis unreachable: local pace until then

    def _run(self, operation: str) -> tuple[float, float] | None:
        """Run the script; None when Redis cannot be reached (the caller uses the local pace)."""
        with self._lock:
            if self._away_until is not None and time.monotonic() < self._away_until:
                return None
        try:
            if self._script is None:
                client = redis.Redis.from_url(self.url, socket_timeout=2,
                                              socket_connect_timeout=2)
                self._script = client.register_script(_SCRIPT)  # EVALSHA, loaded when missing
            first, pace = self._script(keys=[self.key], args=[
                operation, repr(self.pace), self.burst, repr(self.recovery), repr(FIRST_STEP),
                repr(STEP), repr(RECENT_SECONDS), repr(FLOOR), repr(HOLD_SECONDS)])
        except (redis.RedisError, OSError, ValueError) as exc:  # the mail leaves all the same
            with self._lock:
                first_failure = self._away_until is None
                self._away_until = time.monotonic() + REDIS_RETRY_SECONDS
            if first_failure:
                log.warning("the sending rate cannot be shared through Redis (%s: %s): each "
                            "worker process now keeps %g mails/s on its own until Redis is back",
                            exc.__class__.__name__, str(exc)[:200], self.rate)
            return None
        with self._lock:
            if self._away_until is not None:
                self._away_until = None
                log.warning("Redis is back: the sending rate is shared by all workers again")
        return float(first), float(pace)

    def acquire(self) -> None:
        answer = self._run("take")
        wait = self.local.reserve() if answer is None else answer[0]
        if wait > 0:
            time.sleep(wait)

    def slow_down(self) -> None:
        answer = self._run("slow")
        if answer is None:
            self.local.slow_down()
        elif answer[0]:
            log.warning("the mail server says we send too fast: all workers now send %s",
                        _describe(answer[1], self.rate))

    def current_rate(self) -> float:
        """The pace now, in mails per second, as all workers keep it."""
        answer = self._run("rate")
        return self.local.current_rate() if answer is None else answer[1]
