"""The sandbox's webhooks: a ``reward.earned`` POSTed for each payout it makes, as Fuul
does, so that a receiver can be tested end to end.

The payouts are :class:`~aiofuul.sandbox.state.FuulState`'s (the same ones
``GET events/pipeline``, ``payouts/movements`` and the leaderboards show): the sender
subscribes to its ``on_payout``, so each movement the state makes, the end user's and
the referrer's, is POSTed once as ``{"event_type": "reward.earned", "movement": {...}}``
(:func:`~aiofuul.sandbox.movements.reward_movement`). The state makes payouts lazily;
after a send the server nudges the sender (:meth:`~WebhookSender.nudge`), whose
background task asks the state to catch up a moment later (one catch-up for a burst of
sends), and again when the next stored event's ``pipeline_delay`` is over. No request ever waits for a
payout or a POST.

A POST that gets a non-2xx answer, a timeout or a refused connection is retried with
exponential backoff (:class:`WebhookRetry`, bounded) until a 2xx: at least once, so a
receiver must be idempotent (:attr:`aiofuul.webhooks.RewardEarned.key`).

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
import contextlib
import logging
import random
from collections import deque
from dataclasses import dataclass
from typing import NamedTuple

import aiohttp
import msgspec

from ..webhooks import REWARD_EARNED
from .movements import reward_movement
from .state import FuulState, Payout

__all__ = ["WebhookAttempt", "WebhookRetry", "WebhookSender"]

_log = logging.getLogger("aiofuul.sandbox.webhooks")
_HEADERS = {"Content-Type": "application/json", "User-Agent": "aiofuul-sandbox-webhooks"}
# POSTs in flight at once: a load test storing thousands of events must not open
# thousands of connections to a receiver.
_CONCURRENCY = 16
# How long the sender lets a burst of sends land before it asks the state to catch up:
# one catch-up (and one wake-up) for many requests, yet prompt for a receiver under test.
_DEBOUNCE = 0.01
# The longest the sender sleeps without looking at the state: events a test stored
# directly (no send, no nudge) and a pipeline_delay changed meanwhile are seen this late.
_RECHECK = 0.5


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


class WebhookSender:
    """POSTs ``reward.earned`` to ``url`` for each payout ``state`` makes (it subscribes
    to ``state.on_payout``); owned by a :class:`~aiofuul.sandbox.Sandbox`
    (``sb.webhooks``), which calls :meth:`start`, :meth:`nudge` after each send that
    stored events, and :meth:`close`.

    :attr:`attempts` records every POST, :attr:`delivered` and :attr:`failed` count the
    webhooks answered 2xx and those given up after ``retry.attempts`` POSTs (logged as
    warnings); :meth:`join` waits until none is pending.
    """

    def __init__(self, url: str, retry: WebhookRetry | None, state: FuulState):
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
        self._state = state
        self._session: aiohttp.ClientSession | None = None
        self._rng = random.Random()
        self._loop: asyncio.AbstractEventLoop | None = None
        self._follower: asyncio.Task[None] | None = None
        self._nudged = asyncio.Event()
        # Webhooks due for a POST, oldest first. A payout is queued as is (cheap: it is
        # queued during a catch-up, which a read may run) and rendered by the worker that
        # first POSTs it; a retry is queued as the body it sent, with its failure count.
        self._queue: deque[tuple[Payout | bytes, int]] = deque()
        # At most _CONCURRENCY workers drain the queue, one POST each at a time; none
        # runs while the queue is empty. A few tasks, not one per payout: a catch-up of
        # 20,000 events must not create 40,000 tasks.
        self._workers: set[asyncio.Task[None]] = set()
        self._in_flight = 0
        # Retries waiting out their backoff (they hold no worker meanwhile).
        self._backoffs: set[asyncio.TimerHandle] = set()
        state.on_payout.append(self._on_payout)

    def start(self) -> None:
        """Start following the state (the sandbox calls it once it serves)."""
        if self._follower is not None:
            return
        self._loop = asyncio.get_running_loop()
        self._nudged = asyncio.Event()
        self._follower = self._loop.create_task(self._follow())
        self._staff()  # payouts made before start (a catch-up outside the loop)

    def nudge(self) -> None:
        """Events were just stored: have the state make their payouts soon (off the
        request path), so their webhooks go out."""
        self._nudged.set()

    async def join(self) -> None:
        """Wait until every stored event is processed and every webhook of its payouts
        delivered or given up (events still within ``pipeline_delay`` are waited for)."""
        loop = asyncio.get_running_loop()
        while True:
            self._state.catch_up()
            self._staff()
            if self._workers:
                await asyncio.wait(set(self._workers))
            elif self._backoffs:
                await asyncio.sleep(max(0.0, min(h.when() for h in self._backoffs) - loop.time()))
            else:
                due = self._state.due_in()
                if due is None:
                    return
                await asyncio.sleep(due)

    async def close(self) -> None:
        """Stop: webhooks still pending are dropped (and logged), the session closed."""
        follower, self._follower = self._follower, None
        self._loop = None  # payouts made from now on wait for the next start()
        if follower is not None:
            follower.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await follower
        dropped = len(self._queue) + len(self._backoffs) + self._in_flight
        self._queue.clear()
        for handle in self._backoffs:
            handle.cancel()
        self._backoffs.clear()
        workers = [task for task in self._workers if not task.done()]
        for task in workers:
            task.cancel()
        if workers:
            await asyncio.wait(workers)
        waiting = self._state.unprocessed()
        if dropped or waiting:
            _log.warning(
                "sandbox stopped with %d webhook(s) not delivered and %d stored event(s) "
                "not processed yet (no payout made, no webhook sent)",
                dropped,
                waiting,
            )
        if self._session is not None:
            await self._session.close()
            self._session = None

    def _on_payout(self, payout: Payout) -> None:
        self._queue.append((payout, 0))
        self._staff()

    def _staff(self) -> None:
        """Start workers for the queue, up to _CONCURRENCY (none before start())."""
        loop = self._loop
        if loop is None:
            return
        while len(self._workers) < min(_CONCURRENCY, len(self._queue)):
            task = loop.create_task(self._work())
            self._workers.add(task)
            task.add_done_callback(self._workers.discard)

    async def _follow(self) -> None:
        """Catch the state up after each nudge (debounced), and when the next stored
        event falls due."""
        while True:
            due = self._state.due_in()
            wait = _RECHECK if due is None else min(due, _RECHECK)
            with contextlib.suppress(asyncio.TimeoutError):
                await asyncio.wait_for(self._nudged.wait(), wait)
            self._nudged.clear()
            await asyncio.sleep(_DEBOUNCE)
            try:
                self._state.catch_up()
            except Exception:  # a bug here must be seen, and must not stop the webhooks
                _log.exception("sandbox payouts failed")

    async def _work(self) -> None:
        while self._queue:
            what, failures = self._queue.popleft()
            self._in_flight += 1
            try:
                await self._attempt(what, failures)
            except Exception:  # a bug here must be seen, not lost in a worker
                self.failed += 1
                _log.exception("webhook failed: %r", what)
            finally:
                self._in_flight -= 1

    async def _attempt(self, what: Payout | bytes, failures: int) -> None:
        """POST one webhook once; a failure is queued again after its backoff."""
        if isinstance(what, bytes):
            body = what
        else:
            movement = reward_movement(what)
            body = msgspec.json.encode({"event_type": REWARD_EARNED, "movement": movement})
        status, error = await self._post(body)
        self.attempts.append(WebhookAttempt(body, status, error))
        if status is not None and 200 <= status < 300:
            self.delivered += 1
            return
        failures += 1
        why = error if status is None else f"HTTP {status}"
        if failures >= self.retry.attempts:
            self.failed += 1
            _log.warning("webhook to %s given up after %d attempts (%s)", self.url, failures, why)
            return
        _log.debug("webhook to %s failed (%s): retrying", self.url, why)
        self._retry_later(body, failures, self.retry.backoff(failures, self._rng))

    def _retry_later(self, body: bytes, failures: int, delay: float) -> None:
        loop = asyncio.get_running_loop()

        def due() -> None:
            self._backoffs.discard(handle)
            self._queue.append((body, failures))
            self._staff()

        handle = loop.call_later(delay, due)
        self._backoffs.add(handle)

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
