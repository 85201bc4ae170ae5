"""``SyncFuulClient.add_observer``: the async client's observer API, on the sync client,
told of every settlement on the client's own thread, and removable."""

from __future__ import annotations

import threading
from collections.abc import Iterator, Sequence

import pytest

from aiofuul import SyncFuulClient
from conftest import API_KEY, EVM, fast_config
from test_cli import ThreadSandbox


@pytest.fixture
def live() -> Iterator[ThreadSandbox]:
    ts = ThreadSandbox(limits=fast_config().limits, keys={API_KEY: ["send:trigger_event"]})
    yield ts
    ts.close()


def test_an_observer_added_before_first_use_sees_every_delivery_then_is_removed(
    live: ThreadSandbox,
) -> None:
    fuul = SyncFuulClient(API_KEY, base_url=live.sb.url, config=fast_config())
    seen: list[tuple[str, int, str]] = []

    def observe(outcome: str, waited: Sequence[float]) -> None:
        seen.append((outcome, len(waited), threading.current_thread().name))

    remove = fuul.add_observer(observe)  # the async client does not exist yet
    for i in range(30):
        fuul.track("trade", EVM, args={"i": i})
    assert fuul.flush(30)
    assert sum(n for outcome, n, _ in seen if outcome == "delivered") == 30
    assert all(name != threading.current_thread().name for *_, name in seen)

    remove()
    before = len(seen)
    fuul.track("trade", EVM, args={"i": "after"})
    assert fuul.flush(30)
    assert len(seen) == before
    fuul.close()
