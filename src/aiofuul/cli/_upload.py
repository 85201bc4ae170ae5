"""The sending half of ``aiofuul import``: full batches of 100 on the batch endpoint,
a few in flight, as fast as the limits allow, committing a checkpoint as the server
acknowledges them in order."""

from __future__ import annotations

import asyncio
import dataclasses
import signal
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from pathlib import Path

from ..client import FuulClient
from ..errors import BadRequestError
from ..models import MAX_BATCH_EVENTS, Event
from ._checkpoint import Checkpoint
from ._output import Progress, bar, fmt_duration
from ._records import Record

__all__ = ["Batch", "Uploader", "batches"]


@dataclass
class Batch:
    """Up to 100 events, and the records ``start`` to ``end - 1`` they came from
    (invalid and blank records included, so that the checkpoint covers them)."""

    seq: int
    start: int
    end: int
    next_line: int
    events: list[Event] = field(default_factory=list)
    lines: list[int] = field(default_factory=list)


def batches(records: Iterable[Record], start: int) -> Iterator[Batch]:
    """The batches of the records from index ``start`` on."""
    seq = 0
    current: Batch | None = None
    for record in records:
        if record.index < start:
            continue
        if current is None:
            current = Batch(seq, record.index, record.index, record.line)
        current.end, current.next_line = record.index + 1, record.line + 1
        if record.event is not None:
            current.events.append(record.event)
            current.lines.append(record.line)
            if len(current.events) == MAX_BATCH_EVENTS:
                yield current
                seq, current = seq + 1, None
    if current is not None:
        yield current


@dataclass
class _Outcome:
    ingested: int = 0
    skipped: int = 0
    rejected: list[tuple[int, str]] = field(default_factory=list)


class Uploader:
    """Sends batches with at most ``concurrency`` in flight and keeps ``checkpoint`` at
    the longest acknowledged prefix (saved to ``path`` after each advance, if given)."""

    def __init__(
        self,
        fuul: FuulClient,
        checkpoint: Checkpoint,
        path: Path | None,
        progress: Progress,
        total_events: int,
        done_events: int,
        concurrency: int,
    ):
        self.fuul = fuul
        self.checkpoint = checkpoint
        self.path = path
        self.progress = progress
        self.total_events = total_events
        self.done_events = done_events
        self.concurrency = concurrency
        batch = fuul.config.limits.batch
        self.rate = batch.requests * fuul.config.max_batch / batch.period  # events/s
        self.signal: int | None = None
        self._stop = asyncio.Event()

    # -- one batch ---------------------------------------------------------------------
    async def _send(self, batch: Batch) -> _Outcome:
        if not batch.events:
            return _Outcome()
        try:
            result = await self.fuul.send_batch(batch.events)
            return _Outcome(result.ingested, result.skipped)
        except BadRequestError as exc:
            # Atomic: one event the server refuses sinks the batch (rare: every line was
            # validated). When the server names them, report those and send the rest;
            # else find them by sending each alone (single lane).
            bad = exc.event_errors(len(batch.events))
            if bad is None:
                return await self._one_by_one(batch)
        keep = [i for i in range(len(batch.events)) if i not in bad]
        outcome = _Outcome(rejected=[(batch.lines[i], "; ".join(bad[i])) for i in sorted(bad)])
        if keep:
            rest = await self._send(
                dataclasses.replace(
                    batch,
                    events=[batch.events[i] for i in keep],
                    lines=[batch.lines[i] for i in keep],
                )
            )
            outcome.ingested, outcome.skipped = rest.ingested, rest.skipped
            outcome.rejected += rest.rejected
        return outcome

    async def _one_by_one(self, batch: Batch) -> _Outcome:
        outcome = _Outcome()
        for event, line in zip(batch.events, batch.lines, strict=True):
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
                )
            except BadRequestError as exc:
                outcome.rejected.append((line, str(exc)))
                continue
            if sent.duplicate:
                outcome.skipped += 1
            else:
                outcome.ingested += 1
        return outcome

    # -- the loop -------------------------------------------------------------------------
    def _commit(self, batch: Batch, outcome: _Outcome) -> None:
        cp = self.checkpoint
        cp.next_record, cp.next_line = batch.end, batch.next_line
        cp.ingested += outcome.ingested
        cp.skipped += outcome.skipped
        cp.rejected += len(outcome.rejected)
        for line, reason in outcome.rejected:
            self.progress.message(f"aiofuul: line {line}: rejected by the server: {reason}")

    def _save(self) -> None:
        if self.path is not None:
            self.checkpoint.save(self.path)

    def show(self, force: bool = False) -> None:
        """Redraw the progress line (ETA from the limits, not from the past)."""
        done, total = self.done_events, self.total_events
        cp = self.checkpoint
        fraction = done / total if total else 1.0
        eta = (total - done) / self.rate
        self.progress.update(
            f"import {bar(fraction)} {fraction:4.0%} {done:,}/{total:,} events | "
            f"ingested {cp.ingested:,} skipped {cp.skipped:,} rejected {cp.rejected:,} | "
            f"ETA {fmt_duration(eta)}",
            force,
        )

    def _on_signal(self, signum: int) -> None:
        if self.signal is None:
            self.signal = signum
        self._stop.set()

    async def _ticker(self) -> None:
        while True:
            await asyncio.sleep(1.0)
            self.show()

    async def run(self, work: Iterator[Batch]) -> None:
        """Send every batch of ``work``; returns early (``self.signal`` set) on SIGINT or
        SIGTERM; raises the first error that is not a refusal of single events (the
        checkpoint is saved first in every case)."""
        loop = asyncio.get_running_loop()
        handled = []
        for sig in (signal.SIGINT, signal.SIGTERM):
            try:
                loop.add_signal_handler(sig, self._on_signal, sig)
                handled.append(sig)
            except (NotImplementedError, RuntimeError):  # Windows: KeyboardInterrupt instead
                pass
        pending: dict[asyncio.Task[_Outcome], Batch] = {}
        finished: dict[int, tuple[Batch, _Outcome]] = {}
        next_seq = 0
        stop = asyncio.ensure_future(self._stop.wait())
        ticker = asyncio.ensure_future(self._ticker())
        exhausted = False
        error: BaseException | None = None
        try:
            while True:
                # Finished-but-uncommitted batches count too: they would be sent again
                # after an interruption, so at most `concurrency` batches are ever at risk.
                while (
                    not exhausted
                    and not self._stop.is_set()
                    and len(pending) + len(finished) < self.concurrency
                ):
                    batch = next(work, None)
                    if batch is None:
                        exhausted = True
                    else:
                        pending[asyncio.ensure_future(self._send(batch))] = batch
                if not pending or self._stop.is_set() or error is not None:
                    break
                done, _ = await asyncio.wait({*pending, stop}, return_when=asyncio.FIRST_COMPLETED)
                for task, batch in list(pending.items()):
                    if task not in done:
                        continue
                    del pending[task]
                    if task.exception() is not None:
                        error = error or task.exception()
                        continue
                    finished[batch.seq] = (batch, task.result())
                    self.done_events += len(batch.events)
                advanced = False
                while next_seq in finished:
                    self._commit(*finished.pop(next_seq))
                    next_seq, advanced = next_seq + 1, True
                if advanced:
                    self._save()
                    self.show()
                if error is not None:
                    raise error  # saved again below; what finished after it is resent
            if exhausted and not pending and self.signal is None:
                self.checkpoint.complete = True
                self._save()
                self.show(force=True)
        finally:
            # Interrupted or failed: what is in flight is abandoned. The server may have
            # stored some of it; the rerun sends it again and the server skips it.
            for future in [*pending, stop, ticker]:
                future.cancel()
            await asyncio.gather(*pending, stop, ticker, return_exceptions=True)
            for sig in handled:
                loop.remove_signal_handler(sig)
            self._save()
            self.progress.done()
