"""One request and what its answer means: ``judge`` (the table from an answer to an
outcome), ``deliver`` (one request in a held slot, and what its lane learns), and
``call`` (the retry loop of the awaited calls), on a fake clock and a MockTransport.

No test waits on the wall clock: every retry here either needs no pause (no backoff)
or is given up because its wait would pass the deadline.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from typing import Any

import pytest

from aiofuul import RateLimit, RetryPolicy, TransportError
from aiofuul.engine.delivery import (
    Delivered,
    Duplicate,
    RateLimited,
    Rejected,
    Retry,
    Stopped,
    accept_batch,
    accept_event,
    call,
    deliver,
    judge,
)
from aiofuul.engine.lanes import Lane
from aiofuul.errors import (
    APIError,
    AuthenticationError,
    BadRequestError,
    NotFoundError,
    PermissionDeniedError,
    RateLimitError,
    ServerError,
)
from aiofuul.testing import MockRequest, MockTransport, respond
from aiofuul.wire.transport import Response
from conftest import FakeClock

SINGLE_LIMIT = RateLimit(100, 60.0)
NO_BACKOFF = RetryPolicy(max_attempts=3, initial_backoff=0.0, max_backoff=0.0, max_elapsed=10.0)


def make_lane(
    clock: FakeClock,
    policy: RetryPolicy = NO_BACKOFF,
    limit: RateLimit = SINGLE_LIMIT,
    params: dict[str, str] | None = None,
) -> Lane:
    return Lane("single", "POST", "events", limit, policy, params=params, clock=clock)


def scripted(
    *answers: Response | Exception, clock: FakeClock | None = None, step: float = 0.0
) -> MockTransport:
    """A transport answering with ``answers`` in turn (an exception is raised); each
    request moves ``clock`` on by ``step`` seconds."""
    queue = list(answers)

    def handler(request: MockRequest) -> Response:
        if clock is not None:
            clock.now += step
        answer = queue.pop(0)
        if isinstance(answer, Exception):
            raise answer
        return answer

    return MockTransport(handler)


# -- judge -------------------------------------------------------------------------------------
def read_value(body: bytes) -> dict[str, Any] | None:
    return {"raw": body.decode()} if body else None


JudgeCase = tuple[Response, Callable[[bytes], Any], int, type, dict[str, Any]]

# (response, accept, events, outcome type, fields of the outcome to check)
JUDGE: dict[str, JudgeCase] = {
    "201 empty: one event": (respond(201), accept_event, 1, Delivered, {"ingested": 1}),
    "200 object: one event": (respond(200, json={"id": "x"}), accept_event, 1, Delivered, {"ingested": 1}),
    "200 array for an event: not the API": (respond(200, json=[1]), accept_event, 1, Retry, {"after": None}),
    "200 html: not the API": (respond(200, body=b"<html>hi</html>"), accept_event, 1, Retry, {}),
    "200 truncated json": (respond(200, body=b'{"id": "x'), accept_event, 1, Retry, {}),
    "batch: empty body, all stored": (respond(200), accept_batch(3), 3, Delivered, {"ingested": 3, "value": 3}),
    "batch: 2 of 3 stored": (respond(200, json={"ingested_events": 2}), accept_batch(3), 3, Delivered, {"ingested": 2}),
    "batch: 0 of 3 stored": (respond(200, json={"ingested_events": 0}), accept_batch(3), 3, Delivered, {"ingested": 0}),
    "batch: more stored than sent": (respond(200, json={"ingested_events": 4}), accept_batch(3), 3, Retry, {}),
    "batch: negative count": (respond(200, json={"ingested_events": -1}), accept_batch(3), 3, Retry, {}),
    "batch: count as a string": (respond(200, json={"ingested_events": "2"}), accept_batch(3), 3, Retry, {}),
    "batch: another shape": (respond(200, json={"ok": True}), accept_batch(3), 3, Retry, {}),
    "read: the value, no events": (respond(200, body=b"v"), read_value, 0, Delivered, {"ingested": 0, "value": {"raw": "v"}}),
    "409: duplicate": (respond(409), accept_event, 1, Duplicate, {}),
    "429 with Retry-After": (respond(429, retry_after=2), accept_event, 1, RateLimited, {"after": 2.0}),
    "429 with an HTTP-date Retry-After in the past": (respond(429, retry_after="Wed, 21 Oct 2015 07:28:00 GMT"), accept_event, 1, RateLimited, {"after": 0.0}),
    "429 without Retry-After": (respond(429), accept_event, 1, RateLimited, {"after": None}),
    "500": (respond(500), accept_event, 1, Retry, {"after": None}),
    "503 with Retry-After": (respond(503, retry_after=7), accept_event, 1, Retry, {"after": 7.0}),
    "408": (respond(408), accept_event, 1, Retry, {}),
    "401": (respond(401), accept_event, 1, Stopped, {}),
    "403": (respond(403), accept_event, 1, Stopped, {}),
    "404": (respond(404), accept_event, 1, Stopped, {}),
    "400 on one event": (respond(400, json={"message": ["[0].name: bad"]}), accept_event, 1, Rejected, {"by_index": None}),
    "422": (respond(422, json={"message": "no"}), accept_event, 1, Rejected, {"by_index": None}),
}  # fmt: skip


@pytest.mark.parametrize(
    ("response", "accept", "events", "kind", "fields"),
    [pytest.param(*case, id=name) for name, case in JUDGE.items()],
)
def test_judge(
    response: Response,
    accept: Callable[[bytes], Any],
    events: int,
    kind: type,
    fields: dict[str, Any],
) -> None:
    outcome = judge(response, accept, events)
    assert type(outcome) is kind
    for name, value in fields.items():
        assert getattr(outcome, name) == value, name


@pytest.mark.parametrize(
    ("status", "error"),
    [
        (401, AuthenticationError),
        (403, PermissionDeniedError),
        (404, NotFoundError),
        (429, RateLimitError),
        (500, ServerError),
        (408, APIError),
        (400, BadRequestError),
    ],
)
def test_judge_causes_carry_status_and_message(status: int, error: type[APIError]) -> None:
    outcome = judge(respond(status, json={"message": "nope"}), accept_event, 1)
    assert not isinstance(outcome, (Delivered, Duplicate))
    assert type(outcome.cause) is error
    assert isinstance(outcome.cause, APIError)
    assert (outcome.cause.status, outcome.cause.message) == (status, "nope")


def test_judge_garbage_2xx_is_a_transport_error() -> None:
    outcome = judge(respond(200, body=b"<html>"), accept_event, 1)
    assert isinstance(outcome, Retry)
    assert type(outcome.cause) is TransportError
    assert "not the API's answer" in str(outcome.cause)


@pytest.mark.parametrize(
    ("messages", "by_index"),
    [
        (["[1].user.identifier: bad"], {1: ["[1].user.identifier: bad"]}),
        (
            ["[1].user.identifier: bad", "[1].args.size: bad", "2.name must be a string"],
            {1: ["[1].user.identifier: bad", "[1].args.size: bad"], 2: ["2.name must be a string"]},
        ),
        (["[0].name: bad", "something else"], None),  # one names no event: nobody knows
        (["[3].name: bad"], None),  # outside a batch of 3
        ("[2].name: bad", {2: ["[2].name: bad"]}),  # a bare string
        ("Bad Request", None),
    ],
)
def test_judge_refused_batch_names_events_by_index(
    messages: str | list[str], by_index: dict[int, list[str]] | None
) -> None:
    outcome = judge(respond(400, json={"message": messages}), accept_batch(3), 3)
    assert isinstance(outcome, Rejected)
    assert outcome.by_index == by_index
    assert isinstance(outcome.cause, BadRequestError)


# -- deliver -----------------------------------------------------------------------------------
async def test_deliver_sends_on_the_lane_with_its_params() -> None:
    clock = FakeClock()
    lane = make_lane(clock, params={"project_id": "p1"})
    transport = scripted(respond(201), respond(201))
    outcome = await deliver(lane, transport, accept_event, body=b'{"name":"x"}', events=1)
    assert outcome == Delivered(1, 1)
    await deliver(lane, transport, accept_event, body=b"{}", params={"project_id": "p2", "n": "1"})
    assert transport.requests == [
        MockRequest("POST", "events", b'{"name":"x"}', {"project_id": "p1"}),
        MockRequest("POST", "events", b"{}", {"project_id": "p2", "n": "1"}),
    ]
    assert lane.requests == 2


async def test_deliver_transport_error_is_a_retry_and_backs_off() -> None:
    clock = FakeClock(10.0)
    lane = make_lane(clock, RetryPolicy(initial_backoff=4.0, max_backoff=4.0))
    outcome = await deliver(lane, scripted(TransportError("reset")), accept_event)
    assert isinstance(outcome, Retry) and isinstance(outcome.cause, TransportError)
    assert lane.failures_in_a_row == 1
    assert 10.0 <= lane.next_free(10.0) <= 14.0  # a jittered backoff of at most 4 s


async def test_deliver_other_exceptions_are_bugs_and_propagate() -> None:
    def handler(request: MockRequest) -> Response:
        raise KeyError("bug")

    lane = make_lane(FakeClock())
    with pytest.raises(KeyError):
        await deliver(lane, MockTransport(handler), accept_event)


async def test_deliver_429_pauses_the_lane_for_retry_after_capped() -> None:
    clock = FakeClock(100.0)
    # A 10 s window: the pause, not the window, is what holds the lane.
    lane = make_lane(clock, RetryPolicy(max_retry_after=30.0), RateLimit(100, 10.0))
    assert lane.try_acquire(100.0)
    outcome = await deliver(lane, scripted(respond(429, retry_after=500)), accept_event)
    lane.release()
    assert isinstance(outcome, RateLimited) and outcome.after == 500.0
    assert lane.rate_limited == 1
    assert lane.free_slots(100.0) == 0
    assert lane.next_free(100.0) == 130.0  # capped by max_retry_after
    assert lane.limiter.capacity == 1  # one was in use: 80 % of it, at least one


async def test_deliver_5xx_retry_after_pauses_the_lane() -> None:
    clock = FakeClock(100.0)
    lane = make_lane(clock)
    outcome = await deliver(lane, scripted(respond(503, retry_after=3)), accept_event)
    assert isinstance(outcome, Retry) and outcome.after == 3.0
    assert lane.next_free(100.0) == 103.0


async def test_deliver_stop_and_recovery() -> None:
    lane = make_lane(FakeClock())
    transport = scripted(respond(401), respond(409), respond(201))
    assert isinstance(await deliver(lane, transport, accept_event), Stopped)
    assert isinstance(lane.stopped, AuthenticationError)
    assert isinstance(await deliver(lane, transport, accept_event), Duplicate)
    assert lane.stopped is not None  # a duplicate proves nothing about the key
    assert isinstance(await deliver(lane, transport, accept_event), Delivered)
    assert lane.stopped is None


async def test_deliver_a_final_answer_resets_the_failure_count() -> None:
    lane = make_lane(FakeClock())
    transport = scripted(respond(500), respond(500), respond(400))
    for _ in range(2):
        await deliver(lane, transport, accept_event)
    assert lane.failures_in_a_row == 2
    assert isinstance(await deliver(lane, transport, accept_event), Rejected)
    assert lane.failures_in_a_row == 0


# -- call --------------------------------------------------------------------------------------
async def test_call_retries_until_delivered() -> None:
    lane = make_lane(FakeClock())
    transport = scripted(respond(503), TransportError("reset"), respond(201))
    outcome = await call(lane, transport, NO_BACKOFF, accept_event, body=b"{}", events=1)
    assert outcome == Delivered(1, 1)
    assert len(transport.requests) == 3
    assert lane.requests == 3
    assert lane.limiter.in_flight == 0  # every slot given back


async def test_call_returns_a_duplicate() -> None:
    outcome = await call(make_lane(FakeClock()), scripted(respond(409)), NO_BACKOFF, accept_event)
    assert outcome == Duplicate()


async def test_call_gives_up_after_max_attempts() -> None:
    lane = make_lane(FakeClock())
    transport = scripted(*[respond(500, json={"message": f"try {n}"}) for n in range(5)])
    with pytest.raises(ServerError) as caught:
        await call(lane, transport, NO_BACKOFF, accept_event)
    assert len(transport.requests) == NO_BACKOFF.max_attempts
    assert caught.value.message == "try 2"  # the last error


async def test_call_gives_up_after_max_elapsed() -> None:
    clock = FakeClock()
    policy = RetryPolicy(max_attempts=100, initial_backoff=0.0, max_backoff=0.0, max_elapsed=10.0)
    transport = scripted(*[respond(500)] * 5, clock=clock, step=6.0)
    with pytest.raises(ServerError):
        await call(make_lane(clock), transport, policy, accept_event)
    # 6 s, then 12 s >= 10 s: two requests.
    assert len(transport.requests) == 2


@pytest.mark.parametrize(
    ("answer", "error"),
    [
        (respond(400, json={"message": ["name: bad"]}), BadRequestError),
        (respond(403), PermissionDeniedError),
        (respond(404), NotFoundError),
    ],
)
async def test_call_raises_a_refusal_at_once(answer: Response, error: type[APIError]) -> None:
    transport = scripted(answer, respond(201))
    with pytest.raises(error):
        await call(make_lane(FakeClock()), transport, NO_BACKOFF, accept_event)
    assert len(transport.requests) == 1


@pytest.mark.parametrize(
    ("answer", "error"),
    [(respond(429, retry_after=60), RateLimitError), (respond(503, retry_after=60), ServerError)],
)
async def test_call_does_not_wait_past_its_deadline(
    answer: Response, error: type[APIError]
) -> None:
    """A Retry-After that ends after ``max_elapsed``: the last error is raised instead of
    waiting (no time passes here: the fake clock never moves)."""
    clock = FakeClock()
    lane = make_lane(clock, RetryPolicy(max_retry_after=120.0, max_elapsed=10.0))
    transport = scripted(answer, respond(201))
    with pytest.raises(error):
        await call(lane, transport, NO_BACKOFF, accept_event)
    assert len(transport.requests) == 1
    assert lane.limiter.in_flight == 0


async def test_call_waits_for_a_slot_held_in_flight() -> None:
    clock = FakeClock()
    lane = make_lane(clock, limit=RateLimit(1, 60.0))
    assert lane.try_acquire(0.0)  # another request holds the only slot
    transport = scripted(respond(201))
    task = asyncio.ensure_future(call(lane, transport, NO_BACKOFF, accept_event))
    for _ in range(5):
        await asyncio.sleep(0)
    assert not task.done() and transport.requests == []
    lane.cancel()  # that request was never sent: its slot does not count
    assert await task == Delivered(0, 1)
    assert len(transport.requests) == 1


async def test_call_cancelled_while_waiting_gives_nothing_back_twice() -> None:
    lane = make_lane(FakeClock(), limit=RateLimit(1, 60.0))
    assert lane.try_acquire(0.0)
    task = asyncio.ensure_future(call(lane, scripted(respond(201)), NO_BACKOFF, accept_event))
    await asyncio.sleep(0)
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    assert lane.limiter.in_flight == 1  # still the other request's, nothing more
    lane.cancel()
    assert lane.limiter.in_flight == 0 and lane.free_slots(0.0) == 1
