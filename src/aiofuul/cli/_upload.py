"""The sending half of ``aiofuul import``: :mod:`aiofuul.bulk` does the sending; this
module adds what is the command's own: the checkpoint file kept at the committed
prefix, the rejected lines and the progress line on stderr, and SIGINT/SIGTERM."""

from __future__ import annotations

import asyncio
import signal
from collections.abc import Iterable, Iterator
from pathlib import Path

from ..bulk import Importer, ImportResult
from ..client import FuulClient
from ..wire.models import Event
from ._checkpoint import Checkpoint
from ._output import Progress, bar, fmt_duration
from ._records import Record

__all__ = ["Uploader"]


class Uploader:
    """Runs an :class:`~aiofuul.bulk.Importer` on the records from ``checkpoint`` on,
    and keeps ``checkpoint`` at the longest acknowledged prefix (saved to ``path`` after
    each advance, if given).

    Example::

        uploader = Uploader(fuul, checkpoint, path, Progress(), total_events=n,
                            done_events=0, concurrency=4)
        await uploader.run(source.records())   # uploader.signal: set if interrupted
    """

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
        self.checkpoint = checkpoint
        self.path = path
        self.progress = progress
        self.total_events = total_events
        self.done_events = done_events
        batch = fuul.config.limits.batch
        self.rate = batch.requests * fuul.config.max_batch / batch.period  # events/s
        self.signal: int | None = None
        self.importer = Importer(
            fuul, concurrency=concurrency, on_commit=self._on_commit, on_progress=self._on_progress
        )
        # The checkpoint's totals before this run: the importer counts this run only.
        self._base = (checkpoint.ingested, checkpoint.skipped, checkpoint.rejected)
        # (record index, line) of each event sent but not yet committed, by its index in
        # this run: what the checkpoint and the rejection messages need.
        self._positions: dict[int, tuple[int, int]] = {}
        self._read = 0
        self._last: Record | None = None
        self._exhausted = False

    def _events(self, records: Iterable[Record]) -> Iterator[Event]:
        """The events of the records from the checkpoint's on, noting their positions."""
        start = self.checkpoint.next_record
        for record in records:
            if record.index < start:
                continue
            self._last = record
            if record.event is not None:
                self._positions[self._read] = (record.index, record.line)
                self._read += 1
                yield record.event
        self._exhausted = True

    def _on_commit(self, committed: int) -> None:
        """The prefix advanced to ``committed`` events: report, update, save."""
        result, cp = self.importer.result, self.checkpoint
        shown = cp.rejected - self._base[2]
        for index, reason in result.rejected[shown:]:
            line = self._positions[index][1]
            self.progress.message(f"aiofuul: line {line}: rejected by the server: {reason}")
        record, line = self._positions[committed - 1]
        if self._exhausted and committed == self._read and self._last is not None:
            # The last batch covers the invalid and blank records after its last event.
            record, line = self._last.index, self._last.line
        cp.next_record, cp.next_line = record + 1, line + 1
        cp.ingested = self._base[0] + result.ingested
        cp.skipped = self._base[1] + result.skipped
        cp.rejected = self._base[2] + len(result.rejected)
        for index in [i for i in self._positions if i < committed]:
            del self._positions[index]
        self._save()

    def _on_progress(self, result: ImportResult) -> None:
        self.show()

    def _save(self) -> None:
        if self.path is not None:
            self.checkpoint.save(self.path)

    def show(self, force: bool = False) -> None:
        """Redraw the progress line (ETA from the limits, not from the past)."""
        done = self.done_events + self.importer.result.answered
        total, cp = self.total_events, self.checkpoint
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
        self.importer.stop.set()

    async def _ticker(self) -> None:
        while True:
            await asyncio.sleep(1.0)
            self.show()

    async def run(self, records: Iterable[Record]) -> None:
        """Import the events of ``records`` (from the checkpoint's record on); returns
        early (``self.signal`` set) on SIGINT or SIGTERM; raises the first error that is
        not a refusal of single events (the checkpoint is saved first in every case)."""
        handled = self._handle_signals()
        ticker = asyncio.ensure_future(self._ticker())
        try:
            result = await self.importer.run(self._events(records))
            if result.complete and self.signal is None:
                self._complete()
        finally:
            ticker.cancel()
            await asyncio.gather(ticker, return_exceptions=True)
            loop = asyncio.get_running_loop()
            for sig in handled:
                loop.remove_signal_handler(sig)
            self._save()
            self.progress.done()

    def _complete(self) -> None:
        # Covers the records after the last event (all of them, when none was an event).
        if self._last is not None:
            cp = self.checkpoint
            cp.next_record, cp.next_line = self._last.index + 1, self._last.line + 1
        self.checkpoint.complete = True
        self._save()
        self.show(force=True)

    def _handle_signals(self) -> list[signal.Signals]:
        loop = asyncio.get_running_loop()
        handled = []
        for sig in (signal.SIGINT, signal.SIGTERM):
            try:
                loop.add_signal_handler(sig, self._on_signal, sig)
                handled.append(sig)
            except (NotImplementedError, RuntimeError):  # Windows: KeyboardInterrupt instead
                pass
        return handled
