"""Bulk import: any number of events through ``POST /v1/events/batch``, 100 a request,
a few requests in flight, acknowledged in order so that an interrupted import resumes.

Every request is a :meth:`~aiofuul.FuulClient.send_batch` (or, to take a refused batch
apart, a :meth:`~aiofuul.FuulClient.send_event`): the import waits for the client's rate
limits and retries with its :class:`~aiofuul.RetryPolicy` like any direct call, and adds
no retries of its own.

Example::

    from aiofuul import Event, FuulClient, User
    from aiofuul.bulk import import_events

    user = User("0x52908400098527886E0F7030069857D2E4169EE7", "evm_address")
    events = [Event("trade", user, dedup_id=f"t-{i}", args={"size": i}) for i in range(250)]
    async with FuulClient() as fuul:  # key from FUUL_API_KEY
        result = await import_events(fuul, events)
    print(result.ingested, result.skipped, result.rejected)

A referral graph (who referred whom) is imported with :func:`import_referrers` (see
:mod:`aiofuul.referrers`): one ``PUT user-referrers`` a row, at the users lane's pace.

Resuming: ``result.committed`` (and each ``on_commit(committed)``) is how many leading
events are settled: stored, skipped as known, or refused for good. A rerun with
``events[committed:]`` continues there; events past the prefix may have been stored
already (they were in flight, or answered out of order), and the server skips them by
their dedup id, so every event needs a dedup id that a rerun repeats.
"""

from __future__ import annotations

import asyncio
import re
from collections.abc import AsyncGenerator, AsyncIterable, AsyncIterator, Callable, Iterable
from contextlib import aclosing
from dataclasses import dataclass, field
from typing import Any

from .client import FuulClient
from .errors import BadRequestError, ConfigurationError, ValidationError
from .referrers import ReferrerImportResult, ReferrerRow, import_referrers
from .wire.models import MAX_BATCH_EVENTS, Event

__all__ = [
    "EventSource",
    "ImportResult",
    "Importer",
    "ReferrerImportResult",
    "ReferrerRow",
    "import_events",
    "import_referrers",
]

#: What :func:`import_events` reads: events, from an iterable or an async iterable.
EventSource = Iterable[Event] | AsyncIterable[Event]

# The event a batch validation error names: "[3].user.identifier".
_INDEX = re.compile(r"\[(\d+)\]\.")


@dataclass
class ImportResult:
    """What an import did, counted over its committed prefix.

    ``ingested`` events were stored, ``skipped`` the server already had (by dedup id),
    and ``rejected`` holds ``(index, reason)`` for each event refused for good (by the
    server, or by the client's validation: then it was not sent); indices count from 0
    in the events given. The first ``committed`` events are settled (one of the three):
    a rerun with ``events[committed:]`` resumes. ``answered`` also counts events past
    the prefix whose batch was answered. ``complete``: every event was committed
    (False when ``stop`` ended the import first).

    Example::

        result = await import_events(fuul, events)
        if not result.complete:  # stopped early: the rest, later
            rest = await import_events(fuul, events[result.committed :])
    """

    ingested: int = 0
    skipped: int = 0
    rejected: list[tuple[int, str]] = field(default_factory=list)
    committed: int = 0
    answered: int = 0
    complete: bool = False


@dataclass
class _Batch:
    """Up to 100 events and their indices in the input; ``seq`` orders the commits."""

    seq: int
    indices: list[int] = field(default_factory=list)
    events: list[Event] = field(default_factory=list)


@dataclass
class _Outcome:
    ingested: int = 0
    skipped: int = 0
    rejected: list[tuple[int, str]] = field(default_factory=list)


async def _each(events: EventSource) -> AsyncGenerator[Event, None]:
    if isinstance(events, AsyncIterable):
        async for event in events:
            yield event
    else:
        for event in events:
            yield event


async def _batches(events: EventSource) -> AsyncGenerator[_Batch, None]:
    """The events in full batches of 100 (the last one may be smaller)."""
    batch = _Batch(0)
    async with aclosing(_each(events)) as source:
        async for event in source:
            batch.indices.append(batch.seq * MAX_BATCH_EVENTS + len(batch.events))
            batch.events.append(event)
            if len(batch.events) == MAX_BATCH_EVENTS:
                yield batch
                batch = _Batch(batch.seq + 1)
    if batch.events:
        yield batch


class Importer:
    """One bulk import, whose :attr:`result` is kept up to date while it runs (for
    progress displays and checkpoints; :func:`import_events` is the short form).

    At most ``concurrency`` batches are sent or awaiting their commit at a time. Setting
    ``stop`` (an :class:`asyncio.Event`, e.g. from a signal handler) ends :meth:`run`
    soon: no new batch starts, those in flight are abandoned, and the result says how
    far it got. After each advance of the committed prefix, ``on_commit(committed)`` is
    called, then ``on_progress(result)``.

    Example::

        stop = asyncio.Event()
        importer = Importer(fuul, stop=stop, on_commit=lambda n: save_position(n))
        result = await importer.run(events)
    """

    def __init__(
        self,
        fuul: FuulClient,
        *,
        concurrency: int = 4,
        stop: asyncio.Event | None = None,
        on_commit: Callable[[int], object] | None = None,
        on_progress: Callable[[ImportResult], object] | None = None,
    ):
        if concurrency < 1:
            raise ConfigurationError(f"concurrency must be at least 1, not {concurrency}")
        self.fuul = fuul
        self.concurrency = concurrency
        self.stop = stop if stop is not None else asyncio.Event()
        self.on_commit = on_commit
        self.on_progress = on_progress
        self.result = ImportResult()
        self._pending: dict[asyncio.Future[_Outcome], _Batch] = {}
        self._finished: dict[int, tuple[_Batch, _Outcome]] = {}
        self._next_seq = 0

    async def run(self, events: EventSource) -> ImportResult:
        """Send every event (once per :class:`Importer`) and return :attr:`result`.

        Raises the first error that is not a refusal of single events (a wrong key,
        retries run out, ...); what was committed before it went to ``on_commit``.
        """
        source = _batches(events)
        stopping: asyncio.Future[Any] = asyncio.ensure_future(self.stop.wait())
        exhausted = False
        try:
            while True:
                if not exhausted:
                    exhausted = await self._fill(source)
                if not self._pending or self.stop.is_set():
                    break
                done, _ = await asyncio.wait(
                    {*self._pending, stopping}, return_when=asyncio.FIRST_COMPLETED
                )
                error = self._collect(done)
                self._advance()
                if error is not None:
                    raise error
            self.result.complete = exhausted and not self._pending
        finally:
            await self._abandon(stopping)
            await source.aclose()
        return self.result

    async def _fill(self, source: AsyncIterator[_Batch]) -> bool:
        """Start batches while there is room; True once the events ran out."""
        # Answered-but-uncommitted batches count too: they would be sent again after an
        # interruption, so at most `concurrency` batches are ever at risk.
        while (
            not self.stop.is_set() and len(self._pending) + len(self._finished) < self.concurrency
        ):
            batch = await anext(source, None)
            if batch is None:
                return True
            task = asyncio.ensure_future(self._send(batch.indices, batch.events))
            self._pending[task] = batch
        return False

    def _collect(self, done: set[asyncio.Future[Any]]) -> BaseException | None:
        """Move the answered batches to ``_finished``; the first error among them."""
        error: BaseException | None = None
        for task, batch in list(self._pending.items()):  # in start order: the first error
            if task not in done:
                continue
            del self._pending[task]
            if task.exception() is not None:
                error = error or task.exception()
                continue
            self._finished[batch.seq] = (batch, task.result())
            self.result.answered += len(batch.events)
        return error

    def _advance(self) -> None:
        """Commit the answered batches that continue the prefix, in order."""
        result = self.result
        start = result.committed
        while self._next_seq in self._finished:
            batch, outcome = self._finished.pop(self._next_seq)
            result.ingested += outcome.ingested
            result.skipped += outcome.skipped
            result.rejected += outcome.rejected
            result.committed += len(batch.events)
            self._next_seq += 1
        if result.committed != start:
            if self.on_commit is not None:
                self.on_commit(result.committed)
            if self.on_progress is not None:
                self.on_progress(result)

    async def _abandon(self, stopping: asyncio.Future[Any]) -> None:
        # Stopped or failed: what is in flight is abandoned. The server may have stored
        # some of it; a rerun from the committed prefix sends it again and it is skipped.
        futures: list[asyncio.Future[Any]] = [*self._pending, stopping]
        for future in futures:
            future.cancel()
        await asyncio.gather(*futures, return_exceptions=True)
        self._pending.clear()
        self._finished.clear()

    async def _send(self, indices: list[int], events: list[Event]) -> _Outcome:
        """One batch, taken apart if it is refused for some of its events."""
        try:
            answer = await self.fuul.send_batch(events)
            return _Outcome(answer.ingested, answer.skipped)
        except BadRequestError as exc:
            # Atomic: one event the server refuses sinks the batch. When the server names
            # them, report those and send the rest; else find them by sending each alone.
            bad = exc.event_errors(len(events))
            if bad is None:
                return await self._one_by_one(indices, events)
            reasons = {i: "; ".join(messages) for i, messages in bad.items()}
        except ValidationError as exc:
            # Refused by the client before sending: the error names the first bad event.
            match = _INDEX.match(exc.field)
            if match is None or int(match[1]) >= len(events):
                return await self._one_by_one(indices, events)
            reasons = {int(match[1]): str(exc).removeprefix(match[0])}
        return await self._without(indices, events, reasons)

    async def _without(
        self, indices: list[int], events: list[Event], reasons: dict[int, str]
    ) -> _Outcome:
        """Report the events ``reasons`` names (by position in ``events``), send the rest."""
        outcome = _Outcome(rejected=[(indices[i], reasons[i]) for i in sorted(reasons)])
        keep = [i for i in range(len(events)) if i not in reasons]
        if keep:
            rest = await self._send([indices[i] for i in keep], [events[i] for i in keep])
            outcome.ingested, outcome.skipped = rest.ingested, rest.skipped
            outcome.rejected += rest.rejected
        return outcome

    async def _one_by_one(self, indices: list[int], events: list[Event]) -> _Outcome:
        """Each event alone (single-event lane): the refused ones are rejected."""
        outcome = _Outcome()
        for index, event in zip(indices, events, strict=True):
            try:
                sent = await self.fuul.send_event(
                    event.name,
                    event.user,
                    dedup_id=event.dedup_id,
                    args=event.args,
                    timestamp=event.timestamp,
                    metadata=event.metadata,
                    user_address=event.user_address,
                    signature=event.signature,
                    signature_message=event.signature_message,
                    signature_public_key=event.signature_public_key,
                    account_chain_id=event.account_chain_id,
                    project_id=event.project_id,
                )
            except (BadRequestError, ValidationError) as exc:
                outcome.rejected.append((index, str(exc)))
                continue
            if sent.duplicate:
                outcome.skipped += 1
            else:
                outcome.ingested += 1
        return outcome


async def import_events(
    fuul: FuulClient,
    events: EventSource,
    *,
    concurrency: int = 4,
    stop: asyncio.Event | None = None,
    on_commit: Callable[[int], object] | None = None,
    on_progress: Callable[[ImportResult], object] | None = None,
) -> ImportResult:
    """Send ``events`` (an iterable or async iterable of :class:`~aiofuul.Event`, read
    as it goes) in batches of 100 on ``POST /v1/events/batch``; see :class:`Importer`
    for the options and :class:`ImportResult` for the answer.

    Example::

        async with FuulClient() as fuul:
            result = await import_events(fuul, events, concurrency=4)
        for index, reason in result.rejected:
            print(f"event {index}: {reason}")
    """
    importer = Importer(
        fuul, concurrency=concurrency, stop=stop, on_commit=on_commit, on_progress=on_progress
    )
    return await importer.run(events)
