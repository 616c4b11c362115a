"""How much feedback one client may send: a token bucket per client (FEEDBACK_BURST, refilled at FEEDBACK_PER_MINUTE),
the buckets in a bounded LRU so that memory stays flat however many clients there are.

Hand-written (40 lines) rather than a library: the in-memory stores of the rate-limit packages grow with every client
seen until a timer expires them, and the serve image stays lean. A client forgotten when the table is full simply
starts over with a full bucket: the bound costs precision under a flood of distinct addresses, never memory.
"""

from __future__ import annotations

import math
from collections import OrderedDict
from time import monotonic

from starlette.requests import Request

MAX_CLIENTS = 10_000  # buckets kept: ~2 MB; the least recently seen client is forgotten first


class RateLimiter:
    def __init__(self, per_minute: float, burst: int, max_clients: int = MAX_CLIENTS) -> None:
        self.rate = per_minute / 60.0  # tokens a second
        self.burst = float(burst)
        self.max_clients = max_clients
        self._buckets: OrderedDict[str, tuple[float, float]] = OrderedDict()  # client -> (tokens, when)

    def take(self, client: str, now: float | None = None) -> float:
        """Spend one token of `client`'s bucket: 0 when allowed, else the seconds until one is back (Retry-After)."""
        now = monotonic() if now is None else now
        tokens, when = self._buckets.pop(client, (self.burst, now))
        tokens = min(self.burst, tokens + (now - when) * self.rate)
        allowed = tokens >= 1.0
        self._buckets[client] = (tokens - 1.0 if allowed else tokens, now)
        if len(self._buckets) > self.max_clients:
            self._buckets.popitem(last=False)
        return 0.0 if allowed else (1.0 - tokens) / self.rate

    def __len__(self) -> int:
        return len(self._buckets)


def client_of(request: Request, *, behind_front_end: bool) -> str:
    """Who is asking. Behind Cloud Run's front end the peer is Google's proxy, and X-Forwarded-For reads
    "<what the client claimed>, ..., <the address that reached the front end>": the front end appends the last
    entry itself, while every entry to its left came from the client and can be forged. So the right-most entry is
    the one a client cannot choose. Anywhere else the header is the client's own words: the peer address decides."""
    if behind_front_end:
        forwarded = request.headers.get("x-forwarded-for", "")
        last = forwarded.rsplit(",", 1)[-1].strip()
        if last:
            return last
    return request.client.host if request.client else "unknown"


def retry_after(seconds: float) -> str:
    return str(max(1, math.ceil(seconds)))
