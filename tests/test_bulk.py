"""``aiofuul.bulk``: the bulk import as a library, against the sandbox."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from typing import Any

import pytest

from aiofuul import AuthenticationError, BadRequestError, Event, FuulClient, SendResult, User
from aiofuul.bulk import Importer, ImportResult, import_events
from aiofuul.sandbox import Sandbox
from conftest import API_KEY, EVM, FAST_LIMITS, fast_config

#: Sent by the client (a shape no Fuul document shows: one warning), refused by the sandbox.
REFUSED_ARGS = {"value": {"amount": "1.5", "currency": {"name": "USDC"}}}


def make_events(n: int, prefix: str = "b") -> list[Event]:
    return [Event("trade", EVM, f"{prefix}-{i}", args={"size": i}) for i in range(n)]


def assert_stored_once(sb: Sandbox, events: list[Event]) -> None:
    ids = sb.stored_ids()
    assert len(ids) == len(set(ids))
    assert sorted(ids) == sorted(e.dedup_id for e in events)


async def test_imports_every_event_exactly_once_in_committed_order(
    sandbox: Sandbox, client: FuulClient
) -> None:
    events = make_events(250)
    commits: list[int] = []
    progress: list[int] = []
    result = await import_events(
        client,
        events,
        concurrency=4,
        on_commit=commits.append,
        on_progress=lambda r: progress.append(r.committed),
    )
    assert (result.ingested, result.skipped, result.rejected) == (250, 0, [])
    assert result.committed == result.answered == 250 and result.complete
    assert commits == sorted(set(commits)) and commits[-1] == 250
    assert set(commits) <= {100, 200, 250}  # the prefix moves by whole batches
    assert progress == commits
    assert sandbox.count("events/batch") == 3
    assert_stored_once(sandbox, events)

    again = await import_events(client, events)
    assert (again.ingested, again.skipped, again.committed) == (0, 250, 250)
    assert_stored_once(sandbox, events)


async def test_an_event_the_server_names_is_rejected_the_rest_stored(
    sandbox: Sandbox, client: FuulClient
) -> None:
    events = make_events(150)
    bad = Event("trade", EVM, "b-bad", args=REFUSED_ARGS)
    events[42] = bad
    commits: list[int] = []
    result = await import_events(client, events, on_commit=commits.append)
    assert [index for index, _ in result.rejected] == [42]
    assert "args.value" in result.rejected[0][1]
    assert (result.ingested, result.skipped, result.committed) == (149, 0, 150)
    assert result.complete and commits[-1] == 150
    assert_stored_once(sandbox, [e for e in events if e is not bad])


async def test_an_event_the_client_refuses_is_rejected_unsent(
    sandbox: Sandbox, client: FuulClient
) -> None:
    events = make_events(120)
    # Built without validation (a msgspec Struct): the client's own check refuses it.
    events[105] = Event("trade", User("0xnot-hex", "evm_address"), "b-105")

    async def stream() -> AsyncIterator[Event]:  # an async iterable works the same
        for event in events:
            await asyncio.sleep(0)
            yield event

    result = await import_events(client, stream())
    assert [index for index, _ in result.rejected] == [105]
    assert result.rejected[0][1].startswith("user.identifier: must be an evm_address")
    assert (result.ingested, result.committed) == (119, 120)
    assert_stored_once(sandbox, events[:105] + events[106:])


@pytest.mark.slow
async def test_stop_ends_early_and_a_rerun_from_the_prefix_completes(
    sandbox: Sandbox, client: FuulClient
) -> None:
    events = make_events(2_000)
    stop = asyncio.Event()
    commits: list[int] = []

    def on_commit(committed: int) -> None:
        commits.append(committed)
        stop.set()  # as a signal handler would, mid-import

    first = await import_events(client, events, concurrency=2, stop=stop, on_commit=on_commit)
    assert not first.complete
    assert 0 < first.committed < len(events) and first.committed == commits[-1]
    assert first.ingested == first.committed
    assert len(sandbox.stored_ids()) < len(events)

    rest = events[first.committed :]
    commits.clear()
    second = await import_events(client, rest, concurrency=2, on_commit=commits.append)
    assert second.complete and second.committed == len(rest)
    assert commits == sorted(set(commits)) and commits[-1] == len(rest)
    # Batches in flight at the stop may have been stored: the rerun's copies are skipped.
    assert second.ingested + second.skipped == len(rest)
    assert second.skipped <= 2 * 100
    assert_stored_once(sandbox, events)
    assert all(sandbox.stored_count(e.dedup_id) == 1 for e in events)


async def test_a_stop_set_before_the_start_sends_nothing(
    sandbox: Sandbox, client: FuulClient
) -> None:
    stop = asyncio.Event()
    stop.set()
    result = await import_events(client, make_events(10), stop=stop)
    assert (result.committed, result.complete) == (0, False)
    assert sandbox.requests == []


async def test_the_importer_result_is_live_and_errors_propagate(sandbox: Sandbox) -> None:
    seen: list[tuple[int, int]] = []
    async with FuulClient(API_KEY, base_url=sandbox.url, config=fast_config()) as fuul:
        importer = Importer(fuul, concurrency=1)
        importer.on_commit = lambda n: seen.append((n, importer.result.ingested))
        result = await importer.run(make_events(230))
        assert result is importer.result
        assert seen == [(100, 100), (200, 200), (230, 230)]
    keyed = Sandbox(limits=FAST_LIMITS, keys={API_KEY: ["send:trigger_event"]})
    async with keyed, FuulClient("sk_wrong", base_url=keyed.url, config=fast_config()) as fuul:
        wrong = Importer(fuul)
        with pytest.raises(AuthenticationError):
            await wrong.run(make_events(10))
        assert wrong.result.committed == 0 and keyed.stored_ids() == []
    with pytest.raises(ValueError, match="concurrency"):
        Importer(fuul, concurrency=0)


class _UnnamedRefusal:
    """A stand-in client whose batch endpoint refuses without naming an event, and whose
    single endpoint refuses ``bad``: the import must fall back to one by one."""

    def __init__(self, bad: str):
        self.bad = bad
        self.singles: list[str] = []

    async def send_batch(self, events: list[Event]) -> Any:
        raise BadRequestError(400, "batch refused")

    async def send_event(self, name: str, user: User | None, **fields: Any) -> SendResult:
        self.singles.append(fields["dedup_id"])
        if fields["dedup_id"] == self.bad:
            raise BadRequestError(400, "no such trigger")
        return SendResult(fields["dedup_id"], duplicate=fields["dedup_id"] == "b-0")


async def test_a_batch_refused_without_names_is_sent_one_by_one() -> None:
    fake = _UnnamedRefusal("b-3")
    result: ImportResult = await import_events(fake, make_events(5))  # type: ignore[arg-type]
    assert fake.singles == [f"b-{i}" for i in range(5)]
    assert result.rejected == [(3, "HTTP 400: no such trigger")]
    assert (result.ingested, result.skipped, result.committed) == (3, 1, 5)
