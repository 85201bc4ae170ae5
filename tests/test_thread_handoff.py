"""The hand-over from other threads to the client's loop: every event arrives once, in
each thread's order, with one wake-up per burst rather than one per event."""

from __future__ import annotations

import asyncio
import threading

import pytest

from aiofuul import Event
from aiofuul.engine.handoff import Handoff
from conftest import EVM


def _event(thread: int, i: int) -> Event:
    return Event("trade", EVM, dedup_id=f"{thread}-{i}")


async def test_events_from_many_threads_arrive_once_each_in_order() -> None:
    loop = asyncio.get_running_loop()
    got: list[Event] = []
    handoff = Handoff(loop, got.append)
    threads, per_thread = 4, 5_000

    def produce(t: int) -> None:
        for i in range(per_thread):
            handoff.put(_event(t, i))

    workers = [threading.Thread(target=produce, args=(t,)) for t in range(threads)]
    for w in workers:
        w.start()
    while any(w.is_alive() for w in workers):
        await asyncio.sleep(0.001)  # the loop runs drains while producers put
    await asyncio.sleep(0)  # the drain scheduled by the last put
    handoff.drain()
    assert len(got) == threads * per_thread
    for t in range(threads):
        mine = [e.dedup_id for e in got if e.dedup_id.startswith(f"{t}-")]
        assert mine == [f"{t}-{i}" for i in range(per_thread)]


async def test_a_burst_wakes_the_loop_once() -> None:
    loop = asyncio.get_running_loop()
    got: list[Event] = []
    handoff = Handoff(loop, got.append)
    wakes = 0
    original = loop.call_soon_threadsafe

    def counting(*args: object, **kwargs: object) -> asyncio.Handle:
        nonlocal wakes
        wakes += 1
        return original(*args, **kwargs)  # type: ignore[arg-type]

    loop.call_soon_threadsafe = counting  # type: ignore[method-assign]
    try:
        thread = threading.Thread(target=lambda: [handoff.put(_event(0, i)) for i in range(1000)])
        thread.start()
        thread.join()  # the loop is not running meanwhile: one burst
        assert wakes == 1
        await asyncio.sleep(0)
        assert len(got) == 1000
        handoff.put(_event(1, 0))  # the next burst wakes it again
        assert wakes == 2
    finally:
        del loop.call_soon_threadsafe


def test_a_closed_loop_refuses_and_keeps_nothing() -> None:
    loop = asyncio.new_event_loop()
    got: list[Event] = []
    handoff = Handoff(loop, got.append)
    loop.close()
    with pytest.raises(RuntimeError):
        handoff.put(_event(0, 0))
    handoff.drain()
    assert got == []
