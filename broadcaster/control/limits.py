"""The console's rate limits: token buckets per connection and per client address.

A console's commands draw from its connection's bucket; a message past it is refused (and a client that
keeps sending past it is closed). Each client address has a bucket of connection attempts and one of
failed authentications: an address that spends the latter is locked out until it refills, so the token
cannot be guessed faster than ``auth_failures_per_address`` per ``auth_lockout_s``, however many
connections the guesses are spread over. The clock is injected so tests run on virtual time.
"""

from __future__ import annotations

import time
from collections import OrderedDict
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

Clock = Callable[[], float]
MAX_ADDRESSES = 4096  # addresses remembered; the least recently seen are forgotten first


class TokenBucket:
    """``capacity`` tokens, refilled at ``rate`` per second; ``take`` spends one when there is one."""

    def __init__(self, rate: float, capacity: float, clock: Clock = time.monotonic) -> None:
        self.rate = rate
        self.capacity = capacity
        self.clock = clock
        self._tokens = capacity
        self._at = clock()

    def _refill(self) -> float:
        now = self.clock()
        self._tokens = min(self.capacity, self._tokens + (now - self._at) * self.rate)
        self._at = now
        return self._tokens

    def take(self) -> bool:
        """Spend a token: False (and nothing spent) when the bucket is empty."""
        if self._refill() < 1:
            return False
        self._tokens -= 1
        return True

    def empty(self) -> bool:
        """Whether there is not one whole token left."""
        return self._refill() < 1

    def wait_s(self) -> float:
        """Seconds until the next token."""
        return max(0.0, (1 - self._refill()) / self.rate) if self.rate > 0 else float("inf")


@dataclass(frozen=True)
class Limits:
    """The figures of ``[control]`` that the buckets use."""

    connect_rate: float = 10.0
    connect_burst: int = 60
    auth_failures: int = 20
    auth_lockout_s: float = 300.0


@dataclass
class _Address:
    connects: TokenBucket
    failures: TokenBucket


def client_address(connection: Any) -> str:
    """A connection's client address without its port: what the per-address limits count."""
    try:
        return str(connection.remote_address[0])
    except (AttributeError, TypeError, IndexError, OSError):
        return "?"


class AddressLimits:
    """Connection attempts and failed authentications per client address (see the module docstring)."""

    def __init__(self, limits: Limits, clock: Clock = time.monotonic) -> None:
        self.limits = limits
        self.clock = clock
        self._seen: OrderedDict[str, _Address] = OrderedDict()

    def _get(self, address: str) -> _Address:
        entry = self._seen.get(address)
        if entry is None:
            lim = self.limits
            entry = _Address(
                TokenBucket(lim.connect_rate, lim.connect_burst, self.clock),
                TokenBucket(lim.auth_failures / lim.auth_lockout_s, lim.auth_failures, self.clock),
            )
            self._seen[address] = entry
            self._forget()
        self._seen.move_to_end(address)
        return entry

    def _forget(self) -> None:
        while len(self._seen) > MAX_ADDRESSES:
            oldest = next(iter(self._seen))
            self._seen.pop(oldest)

    def connect(self, address: str) -> bool:
        """A connection attempt from ``address``: False when it comes too fast."""
        return self._get(address).connects.take()

    def locked(self, address: str) -> float:
        """Seconds ``address`` stays locked out for failed authentications (0: it is not)."""
        entry = self._seen.get(address)
        if entry is None or not entry.failures.empty():
            return 0.0
        return entry.failures.wait_s()

    def failed(self, address: str) -> None:
        """A wrong token from ``address``."""
        self._get(address).failures.take()
