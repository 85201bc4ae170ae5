"""Every knob of the client, in one place: :class:`ClientConfig` and :class:`RetryPolicy`.

Example (a test against the sandbox with limits compressed 60x: one minute lasts a
second; a sandbox started with ``--time-scale 1/60`` has exactly these limits)::

    config = ClientConfig(limits=DEFAULT_LIMITS.scaled(1 / 60), linger=0.05)
    async with FuulClient("test-key", base_url=sandbox.url, config=config) as fuul:
        ...
"""

from __future__ import annotations

import random
from dataclasses import dataclass, field, replace
from typing import Literal

from .engine.limits import DEFAULT_LIMITS, Limits
from .errors import ConfigurationError
from .wire.models import MAX_BATCH_EVENTS

__all__ = ["ClientConfig", "QueueFullPolicy", "RetryPolicy"]

#: What ``track()`` does when the queue is full: drop the new event, drop the oldest
#: queued one, or raise :class:`~aiofuul.errors.QueueFullError`.
QueueFullPolicy = Literal["drop_new", "drop_old", "raise"]


@dataclass(frozen=True)
class RetryPolicy:
    """When and how often a failed request is tried again.

    Transport errors, timeouts, 5xx and 429 are retried; 400/401/403/404 never are.
    The wait before retry ``n`` (from 0) is drawn uniformly from
    ``[0, min(max_backoff, initial_backoff * multiplier**n)]`` ("full jitter"), or is the
    server's ``Retry-After`` when it sent one (capped at ``max_retry_after``). A request
    is given up after ``max_attempts`` tries or ``max_elapsed`` seconds, whichever first.
    """

    max_attempts: int = 8
    initial_backoff: float = 0.5
    max_backoff: float = 30.0
    multiplier: float = 2.0
    max_elapsed: float = 600.0
    max_retry_after: float = 120.0

    def exhausted(self, attempts: int, first_try: float, now: float) -> bool:
        """Whether a request (or an event) that failed ``attempts`` times, the first at
        ``first_try``, is given up: the one rule of the direct calls and the sender."""
        return attempts >= self.max_attempts or now - first_try >= self.max_elapsed

    def backoff(self, retry: int, rng: random.Random | None = None) -> float:
        """The wait before retry number ``retry`` (0 for the first retry), jittered."""
        ceiling = min(self.max_backoff, self.initial_backoff * self.multiplier ** min(retry, 64))
        return (rng or random).uniform(0.0, ceiling)


@dataclass(frozen=True)
class ClientConfig:
    """The settings of a :class:`~aiofuul.FuulClient`; every field has a safe default.

    Use ``dataclasses.replace(config, field=value)`` (or ``config.with_(...)``) to derive one.
    """

    limits: Limits = DEFAULT_LIMITS
    """Requests per window, per endpoint (and optionally shared); see :class:`Limits`."""
    retry: RetryPolicy = field(default_factory=RetryPolicy)
    """Retry policy of both direct calls and the background sender."""
    timeout: float = 10.0
    """Seconds one request may take in all (connect, send, wait, read)."""
    max_in_flight: int = 8
    """Requests the background sender keeps in flight at most."""
    max_queue: int = 100_000
    """Events waiting to be sent (retries included) before ``queue_full`` applies."""
    queue_full: QueueFullPolicy = "drop_new"
    """What ``track()`` does when the queue is full; ``atrack()`` waits instead."""
    max_batch: int = MAX_BATCH_EVENTS
    """Events per batch request (1 to 100)."""
    linger: float | None = None
    """Seconds an event may wait for company before a batch slot is spent on a partial
    batch. None: one batch period divided by its requests (6 s with the documented
    limits), the rate at which batch slots come back."""
    check_identifier_format: bool = True
    """Check the identifier's format for its type (hex lengths, base58, ...); the type
    itself is always checked (validation tier 3)."""
    strict: bool = False
    """Refuse ``args`` shapes that no Fuul document shows (validation tier 2) instead of
    sending them with one warning per shape."""
    check_event_names: bool = False
    """Fetch the project's conversions once (``async with`` or :meth:`FuulClient.start`)
    and warn when ``track()`` gets a name no trigger has (refuse it when ``strict``)."""
    allow_insecure_http: bool = False
    """Allow a plain ``http://`` base URL that is not loopback (the key would travel
    in clear)."""
    max_response_bytes: int = 1 << 20
    """Response bodies larger than this are refused (TransportError)."""
    close_timeout: float = 10.0
    """Seconds leaving ``async with`` may spend delivering what is queued."""

    def __post_init__(self) -> None:
        if not 1 <= self.max_batch <= MAX_BATCH_EVENTS:
            raise ConfigurationError(f"max_batch must be 1 to {MAX_BATCH_EVENTS}")
        if self.max_in_flight < 1 or self.max_queue < 1:
            raise ConfigurationError("max_in_flight and max_queue must be at least 1")
        if self.queue_full not in ("drop_new", "drop_old", "raise"):
            raise ConfigurationError("queue_full must be 'drop_new', 'drop_old' or 'raise'")
        if self.timeout <= 0:
            raise ConfigurationError("timeout must be positive")

    @property
    def effective_linger(self) -> float:
        """``linger``, or the batch lane's refill interval when it is None."""
        if self.linger is not None:
            return self.linger
        batch = self.limits.batch
        return batch.period / batch.requests

    def with_(self, **changes: object) -> ClientConfig:
        """A copy with some fields changed: ``config.with_(timeout=2.0)``."""
        return replace(self, **changes)  # type: ignore[arg-type]
