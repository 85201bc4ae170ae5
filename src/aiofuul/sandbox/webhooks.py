"""The sandbox's webhooks: a ``reward.earned`` POSTed for each payout it makes, as Fuul
does, so that a receiver can be tested end to end.

The sandbox makes one payout per stored event whose pipeline ends in ``"success"``
(:mod:`~aiofuul.sandbox.reads`), ``pipeline_delay`` seconds after the event was stored.
Given a webhook URL, :class:`WebhookSender` then POSTs
``{"event_type": "reward.earned", "movement": {...}}`` from a background task, so that
no request to the sandbox ever waits for it, and retries a non-2xx answer, a timeout or a
refused connection with exponential backoff (:class:`WebhookRetry`, bounded) until a 2xx:
at least once, so a receiver must be idempotent (:attr:`aiofuul.webhooks.RewardEarned.key`).

The movement mirrors the payout ``GET events/pipeline`` shows (type ``point``, reason
``end_user_payout``, the payout's amount, status and time). Its ``status_details`` names
the event and the payout it is for: a movement has no id, and this keeps two payouts to
one user in one instant apart (and traceable) in a test. A field no client knows
(``"sandbox": true``) rides along: receivers must tolerate it.

Example (a test)::

    sb = Sandbox(webhook_url=receiver_url, webhook_retry=WebhookRetry(initial_backoff=0.01))
    async with sb:
        ...  # send events to sb.url
        assert sb.webhooks is not None
        await sb.webhooks.join()  # every webhook delivered or given up
        assert sb.webhooks.failed == 0
"""

from __future__ import annotations

import asyncio
import logging
import random
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any, NamedTuple, Protocol

import aiohttp
import msgspec

from ..webhooks import REWARD_EARNED

# The payout's fields and the attribution's conversion live in reads.py: one copy of
# what the sandbox pays, whether it is read back or POSTed.
from .reads import _conversion_of, _iso, _payout
from .store import EventStore, StoredEvent

__all__ = ["WebhookAttempt", "WebhookRetry", "WebhookSender", "movement_of"]

_log = logging.getLogger("aiofuul.sandbox.webhooks")
_HEADERS = {"Content-Type": "application/json", "User-Agent": "aiofuul-sandbox-webhooks"}
# POSTs in flight at once: a load test storing thousands of events must not open
# thousands of connections to a receiver.
_CONCURRENCY = 16


@dataclass(frozen=True)
class WebhookRetry:
    """How the sandbox retries a webhook: up to ``attempts`` POSTs, waiting
    ``initial_backoff`` seconds after the first failure, doubling up to ``max_backoff``
    (each wait jittered down by up to half); each POST may take ``timeout`` seconds.
    Compress it in tests: ``WebhookRetry(initial_backoff=0.01, max_backoff=0.05)``."""

    attempts: int = 8
    initial_backoff: float = 0.5
    max_backoff: float = 30.0
    timeout: float = 10.0

    def __post_init__(self) -> None:
        if self.attempts < 1:
            raise ValueError(f"attempts must be >= 1, not {self.attempts!r}")
        for name in ("initial_backoff", "max_backoff", "timeout"):
            if not getattr(self, name) >= 0:
                raise ValueError(f"{name} must be a number of seconds >= 0")

    def backoff(self, failures: int, rng: random.Random) -> float:
        """Seconds to wait after ``failures`` failed POSTs (1 or more)."""
        ceiling = min(self.max_backoff, self.initial_backoff * 2.0 ** (failures - 1))
        return ceiling * rng.uniform(0.5, 1.0)


class WebhookAttempt(NamedTuple):
    """One POST of a webhook: the body sent, and the answer's ``status`` (None when
    there was none) or the ``error`` that stood for it."""

    body: bytes
    status: int | None
    error: str | None


class _Pipeline(Protocol):
    """What the sender reads of the sandbox when a payout falls due."""

    pipeline_status: str
    pipeline_delay: float
    conversions: list[dict[str, Any]]


def movement_of(
    record: StoredEvent, conversions: Sequence[Mapping[str, Any]], delay: float
) -> dict[str, Any]:
    """The movement of the payout the sandbox makes for ``record``."""
    created_at = _iso(record.wall + delay)
    payout = _payout(record, created_at)
    event = record.event
    who: str | None
    kind: str | None
    if event.user is not None:
        who, kind = event.user.identifier, event.user.identifier_type
    elif event.user_address is not None:
        who, kind = event.user_address, "evm_address"
    else:
        tracking = (event.metadata or {}).get("tracking_id")
        who, kind = (tracking if isinstance(tracking, str) else None), None
    return {
        "type": "point" if payout["currency"] == "POINT" else "onchain-currency",
        "reason": "end_user_payout",
        "status": payout["status"],
        "status_details": f"sandbox payout {payout['id']} for event {event.dedup_id!r}",
        "user_identifier": who,
        "user_identifier_type": kind,
        "amount": payout["amount"],
        "currency": {"name": payout["currency"]},
        "conversion_name": _conversion_of(conversions, event.name).get("name"),
        "created_at": created_at,
        "sandbox": True,  # a field no client knows: it must be tolerated
    }


class WebhookSender:
    """POSTs ``reward.earned`` to ``url`` for each payout the sandbox makes; owned by a
    :class:`~aiofuul.sandbox.Sandbox` (``sb.webhooks``).

    :attr:`attempts` records every POST, :attr:`delivered` and :attr:`failed` count the
    webhooks answered 2xx and those given up after ``retry.attempts`` POSTs (logged as
    warnings); :meth:`join` waits until none is pending.
    """

    def __init__(self, url: str, retry: WebhookRetry | None, pipeline: _Pipeline):
        if not url.startswith(("http://", "https://")):
            raise ValueError(f"webhook_url must be an http:// or https:// URL, not {url!r}")
        self.url = url
        self.retry = retry if retry is not None else WebhookRetry()
        #: Every POST made, in order.
        self.attempts: list[WebhookAttempt] = []
        #: Webhooks answered 2xx.
        self.delivered = 0
        #: Webhooks given up after every attempt failed.
        self.failed = 0
        self._pipeline = pipeline
        self._tasks: set[asyncio.Task[None]] = set()
        self._session: aiohttp.ClientSession | None = None
        self._gate = asyncio.Semaphore(_CONCURRENCY)
        self._rng = random.Random()

    def payouts_for(self, store: EventStore, since: int) -> None:
        """Schedule the webhook of the payout of each event stored at position ``since``
        or later (the ones a request just stored), without waiting."""
        for event in store.events[since:]:
            record = store.lookup(event.dedup_id)
            if record is None:
                continue
            task = asyncio.get_running_loop().create_task(self._when_due(record))
            self._tasks.add(task)
            task.add_done_callback(self._tasks.discard)

    async def join(self) -> None:
        """Wait until every scheduled webhook is delivered or given up."""
        while self._tasks:
            await asyncio.wait(set(self._tasks))

    async def close(self) -> None:
        """Stop: webhooks still pending are dropped (and logged), the session closed."""
        pending = [task for task in self._tasks if not task.done()]
        for task in pending:
            task.cancel()
        if pending:
            await asyncio.wait(pending)
            _log.warning("sandbox stopped with %d webhook(s) not delivered", len(pending))
        if self._session is not None:
            await self._session.close()
            self._session = None

    async def _when_due(self, record: StoredEvent) -> None:
        try:
            await self._pay(record)
        except Exception:  # a bug here must be seen, not lost in an unawaited task
            self.failed += 1
            _log.exception("webhook for event %r failed", record.event.dedup_id)

    async def _pay(self, record: StoredEvent) -> None:
        delay = self._pipeline.pipeline_delay
        wait = record.at + delay - time.monotonic()
        if wait > 0:
            await asyncio.sleep(wait)
        if self._pipeline.pipeline_status != "success":
            return  # no payout, no webhook
        movement = movement_of(record, self._pipeline.conversions, delay)
        if movement["user_identifier"] is None:
            return  # an event that names nobody: no one to pay
        await self._deliver(
            msgspec.json.encode({"event_type": REWARD_EARNED, "movement": movement})
        )

    async def _deliver(self, body: bytes) -> None:
        failures = 0
        while True:
            async with self._gate:
                status, error = await self._post(body)
            self.attempts.append(WebhookAttempt(body, status, error))
            if status is not None and 200 <= status < 300:
                self.delivered += 1
                return
            failures += 1
            why = error if status is None else f"HTTP {status}"
            if failures >= self.retry.attempts:
                self.failed += 1
                _log.warning(
                    "webhook to %s given up after %d attempts (%s)", self.url, failures, why
                )
                return
            _log.debug("webhook to %s failed (%s): retrying", self.url, why)
            await asyncio.sleep(self.retry.backoff(failures, self._rng))

    async def _post(self, body: bytes) -> tuple[int | None, str | None]:
        if self._session is None:
            self._session = aiohttp.ClientSession(headers=_HEADERS)
        timeout = aiohttp.ClientTimeout(total=self.retry.timeout)
        try:
            async with self._session.post(self.url, data=body, timeout=timeout) as response:
                await response.read()
                return response.status, None
        except asyncio.TimeoutError:
            return None, f"no answer within {self.retry.timeout:g} s"
        except (aiohttp.ClientError, OSError) as exc:
            return None, f"{type(exc).__name__}: {exc}"
