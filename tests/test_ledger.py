"""The ledger: every accepted event is counted once, and flush() waits for exactly
the events accepted before it, even on a clock too coarse to tell them apart."""

from __future__ import annotations

from aiofuul import Event
from aiofuul.engine.ledger import Ledger
from conftest import EVM


async def test_flush_waits_for_exactly_the_events_accepted_before_it() -> None:
    ledger = Ledger(None, None, max_queue=10, clock=lambda: 100.0)  # a frozen clock
    first, second = (ledger.accept(Event("t", EVM, f"d{i}")) for i in range(2))
    assert first.enqueued < second.enqueued  # still strictly ordered
    done = ledger.flush_waiter()
    assert done is not None
    later = ledger.accept(Event("t", EVM, "d2"))
    assert later.enqueued > second.enqueued

    ledger.settle([later], "delivered")  # accepted after the flush: does not count
    assert not done.done()
    ledger.settle([first], "delivered")
    assert not done.done()
    ledger.settle([second], "failed")
    assert done.done()
    assert ledger.tracked == 3
    assert ledger.settled() == 3


async def test_flush_waiter_is_none_when_everything_settled() -> None:
    ledger = Ledger(None, None, max_queue=10)
    assert ledger.flush_waiter() is None
    item = ledger.accept(Event("t", EVM, "d"))
    ledger.settle([item], "duplicates")
    assert ledger.flush_waiter() is None
