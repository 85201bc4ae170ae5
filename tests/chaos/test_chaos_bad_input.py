"""Bad input: hypothesis throws arbitrary Python values at every argument of ``track()``
(and ``atrack``/``track_threadsafe``), ``send_event`` and ``send_batch``.

The contract checked: each call either accepts or raises ``ValidationError`` whose
``field`` names the argument; never any other exception; and the sender survives the run
and still delivers a normal event. What the client accepts, the sandbox (which judges by
its own table of the documented shapes) stores, with one exception: a shape no Fuul
document shows is sent anyway (with a warning) unless the client is strict, so the
server may refuse it. Such an event is one that ``validate_event(..., strict=True)``
refuses (tier 2), and it then ends stored or ``rejected``, never lost.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import math
import re
import string
from collections.abc import Coroutine, Iterable, Iterator
from typing import Any, TypeVar

import pytest
from chaos_support import UNLIMITED, Ledger, sender_alive
from hypothesis import HealthCheck, event, given, settings
from hypothesis import strategies as st

import aiofuul.wire.shapes
from aiofuul import (
    Amount,
    BadRequestError,
    BatchResult,
    ClientConfig,
    Currency,
    Event,
    FuulClient,
    RetryPolicy,
    SendResult,
    User,
    ValidationError,
)
from aiofuul.sandbox import Sandbox
from aiofuul.wire.validation import validate_batch, validate_event
from conftest import API_KEY, EVM, FAST_RETRY, fast_config, wait_until

#: The chaos tier: minutes of faults in all; `nox -s quick` leaves it out.
pytestmark = pytest.mark.slow

T = TypeVar("T")

FUZZ = settings(
    max_examples=200,
    deadline=None,
    database=None,  # each run independent of the last: no example database
    suppress_health_check=[HealthCheck.too_slow],
)

BASE58 = "123456789ABCDEFGHJKLMNPQRSTUVWXYZabcdefghijkmnopqrstuvwxyz"
HEX = "0123456789abcdefABCDEF"

# -- strategies ---------------------------------------------------------------------------

SURROGATE = st.integers(0xD800, 0xDFFF).map(chr)
#: Any text: every code point including lone surrogates and NUL, short or over 200 chars.
weird_text = st.one_of(
    st.text(st.one_of(st.characters(), SURROGATE), max_size=20),
    st.text(st.characters(), min_size=190, max_size=260),
    st.sampled_from(["", " ", "\x00", "\ud800", "é", "🙂", "a" * 200, "a" * 201]),
)
huge_ints = st.one_of(
    st.integers(),
    st.integers(min_value=2**62, max_value=2**66),
    st.integers(min_value=-(2**66), max_value=-(2**62)),
    st.sampled_from([2**63 - 1, 2**63, 2**64 - 1, 2**64, -(2**63), -(2**63) - 1, 10**40]),
)
floats = st.floats(allow_nan=True, allow_infinity=True)


class Text(str):
    """A str subclass (an enum-like or a tagged string type in user code)."""


scalars = st.one_of(
    st.none(),
    st.booleans(),
    huge_ints,
    floats,
    weird_text,
    st.binary(max_size=20),
    st.sampled_from(["trade", EVM.identifier, "5"]).map(Text),
)


def _containers(inner: st.SearchStrategy[Any]) -> st.SearchStrategy[Any]:
    return st.one_of(
        st.lists(inner, max_size=3),
        st.tuples(inner, inner),
        st.dictionaries(st.one_of(weird_text, huge_ints), inner, max_size=3),
        st.frozensets(st.one_of(weird_text, huge_ints), max_size=3),
    )


plain_garbage = st.recursive(scalars, _containers, max_leaves=6)
currencies = st.one_of(
    st.builds(
        Currency,
        name=st.one_of(st.none(), st.sampled_from(["USDC", "USD", "POINT", "EUR"]), plain_garbage),
        identifier=st.one_of(st.none(), weird_text, plain_garbage),
        identifier_type=st.one_of(
            st.none(), st.sampled_from(["evm_contract", "solana_mint"]), plain_garbage
        ),
        chain_identifier=st.one_of(st.none(), st.just("evm:1"), weird_text, plain_garbage),
    ),
    st.fixed_dictionaries(
        {"name": st.sampled_from(["USDC", "USD", "POINT", "EUR"])},
        optional={"identifier": weird_text, "chain_identifier": weird_text, "x": plain_garbage},
    ),
)
amount_text = st.one_of(st.from_regex(r"-?[0-9]{1,30}", fullmatch=True), weird_text)
amounts = st.one_of(
    st.builds(Amount, amount_text, currencies),
    st.builds(Amount, plain_garbage, plain_garbage),
    st.fixed_dictionaries({"amount": amount_text, "currency": currencies}),
    st.fixed_dictionaries({"amount": amount_text}, optional={"currency": currencies, "x": scalars}),
)


def _valid_user() -> st.SearchStrategy[User]:
    def text(alphabet: str, lo: int, hi: int | None = None) -> st.SearchStrategy[str]:
        return st.text(alphabet, min_size=lo, max_size=lo if hi is None else hi)

    return st.one_of(
        st.just(EVM),
        text(HEX, 40).map(lambda s: User("0x" + s, "evm_address")),
        text(HEX, 64).map(lambda s: User("0x" + s, "sui_address")),
        text(BASE58, 32, 44).map(lambda s: User(s, "solana_address")),
        text(BASE58, 24, 34).map(lambda s: User("r" + s, "xrpl_address")),
        text(string.ascii_uppercase + "234567", 55).map(lambda s: User("G" + s, "stellar_address")),
        st.from_regex(r"[a-z0-9.+_-]{1,20}@[a-z0-9-]{1,10}\.[a-z]{2,6}", fullmatch=True).map(
            lambda s: User(s, "email")
        ),
    )


identifier_types = st.one_of(
    st.sampled_from(
        [
            "evm_address",
            "solana_address",
            "xrpl_address",
            "sui_address",
            "stellar_address",
            "email",
            "stellar_contract",
            "EVM_ADDRESS",
        ]
    ),
    plain_garbage,
)
valid_users = _valid_user()
bad_users = st.one_of(
    st.builds(User, st.one_of(weird_text, plain_garbage), identifier_types),
    st.builds(User, st.just(EVM.identifier), identifier_types),
    plain_garbage,
)
valid_names = st.one_of(
    st.sampled_from(["trade", "signup", "deposit"]),
    st.text(string.printable, min_size=1, max_size=200),
    st.text(st.characters(exclude_categories=["Cs"]), min_size=1, max_size=200),
)
valid_dedup_ids = st.text(st.characters(exclude_categories=["Cs"]), min_size=1, max_size=200)
valid_arg_values = st.one_of(
    st.text(st.characters(exclude_categories=["Cs"]), min_size=1, max_size=30),
    st.integers(min_value=-(2**63), max_value=2**64 - 1),
    st.floats(allow_nan=False, allow_infinity=False),
    st.booleans(),
    st.builds(
        Amount,
        st.from_regex(r"-?[0-9]{1,30}", fullmatch=True),
        st.sampled_from([Currency(name="USDC"), Currency(name="POINT")]),
    ),
    st.fixed_dictionaries(
        {
            "amount": st.from_regex(r"[0-9]{1,30}", fullmatch=True),
            "currency": st.sampled_from(
                [
                    {"name": "USD"},
                    {"identifier": "0xA0b8", "identifier_type": "evm_contract"},
                    {
                        "identifier": "EPjFWdd5",
                        "identifier_type": "solana_mint",
                        "chain_identifier": "solana:1",
                    },
                ]
            ),
        }
    ),
)
valid_arg_keys = st.one_of(
    st.sampled_from(["size", "value", "revenue", "chain_id", "tx"]),
    st.text(st.characters(exclude_categories=["Cs"]), min_size=1, max_size=20),
)
valid_args = st.one_of(st.none(), st.dictionaries(valid_arg_keys, valid_arg_values, max_size=4))
#: Broken args: a dict with at least one broken key or value among good ones, or no dict.
bad_args = st.one_of(
    st.tuples(
        st.dictionaries(valid_arg_keys, valid_arg_values, max_size=3),
        st.one_of(weird_text, huge_ints, st.none(), valid_arg_keys),
        st.one_of(amounts, plain_garbage, valid_arg_values),
    ).map(lambda t: {**t[0], t[1]: t[2]}),
    plain_garbage,
)
valid_timestamps = st.one_of(
    st.none(), st.integers(min_value=1_600_000_000_000, max_value=2_000_000_000_000)
)

VALID = {
    "name": valid_names,
    "user": valid_users,
    "dedup_id": st.one_of(st.none(), valid_dedup_ids),
    "args": valid_args,
    "timestamp": valid_timestamps,
}
BAD = {
    "name": st.one_of(weird_text, plain_garbage),
    "user": bad_users,
    "dedup_id": st.one_of(weird_text, plain_garbage),
    "args": bad_args,
    "timestamp": st.one_of(huge_ints, plain_garbage),
}


@st.composite
def call_args(draw: st.DrawFn, *, event: bool = False) -> dict[str, Any]:
    """Keyword arguments (or Event fields) with zero, one or two of them broken: most
    examples break one argument at a time, and a good share are valid (and must then be
    delivered)."""
    fields = ["name", "user", "dedup_id", "args", "timestamp"]
    broken = draw(st.permutations(fields))[: draw(st.sampled_from([0, 0, 1, 1, 1, 1, 2]))]
    kwargs = {}
    for field in fields:
        if field in broken:
            kwargs[field] = draw(BAD[field])
        elif field in ("name", "user") or event or draw(st.booleans()):
            kwargs[field] = draw(VALID[field])
    if event and kwargs["dedup_id"] is None:
        kwargs["dedup_id"] = draw(st.uuids()).hex
    return kwargs


events = call_args(event=True).map(lambda kw: Event(**kw))


def _plain_json(value: object) -> bool:
    """Whether ``value`` is JSON that validation lets through, by exact type."""
    kind = type(value)
    if value is None or kind is bool:
        return True
    if kind is str:
        try:
            value.encode()  # type: ignore[union-attr]
        except UnicodeEncodeError:
            return False
        return True
    if kind is int:
        return -(2**63) <= value <= 2**64 - 1  # type: ignore[operator]
    if kind is float:
        return math.isfinite(value)  # type: ignore[arg-type]
    if kind is Amount or kind is Currency:
        return all(_plain_json(getattr(value, f)) for f in value.__struct_fields__)  # type: ignore[union-attr]
    if kind is list or kind is tuple:
        return all(_plain_json(item) for item in value)  # type: ignore[union-attr]
    if kind is dict:
        return all(type(k) is str and _plain_json(k) and _plain_json(v) for k, v in value.items())  # type: ignore[union-attr]
    return False


def strict_refusal(kwargs: dict[str, Any]) -> ValidationError | None:
    """What a strict client says of arguments the default client accepted: None, or a
    tier 2 refusal (a shape no Fuul document shows, which the server may refuse)."""
    fields = {**kwargs, "dedup_id": kwargs.get("dedup_id") or "placeholder"}
    refusal: ValidationError | None = None
    try:
        validate_event(Event(**fields), strict=True)
    except ValidationError as exc:
        refusal = exc
    assert refusal is None or refusal.tier == 2, str(refusal)
    return refusal


def _root(field: str) -> str:
    """``args`` of ``args.value.currency``, ``[3].args key`` or ``args: ...``."""
    return re.split(r"[.: ]", field.lstrip("[0123456789]."), maxsplit=1)[0]


def check_server_refusal(
    exc: BadRequestError, strict: ValidationError | None, kwargs: dict[str, Any]
) -> None:
    """A 400 is allowed only for what a strict client refuses (tier 2), and it names the
    same part of the event."""
    assert strict is not None, f"the client sent what the server refuses: {exc}"
    messages = exc.message if isinstance(exc.message, list) else [str(exc.message)]
    assert _root(strict.field) in {_root(m) for m in messages}, (str(strict), messages)


# -- harness ---------------------------------------------------------------------------------


class Harness:
    """A sandbox and a client on a loop of the test's own, so that one client serves
    every hypothesis example (state accumulates, as in a long-running process) and the
    test can check the aftermath of the whole run."""

    def __init__(self) -> None:
        self.loop = asyncio.new_event_loop()
        self.ledger = Ledger()
        self.sb = Sandbox(limits=UNLIMITED)
        self.run(self.sb.start())
        config = ClientConfig(limits=UNLIMITED, retry=FAST_RETRY, timeout=2.0, linger=0.01)
        self.fuul = FuulClient(
            API_KEY, base_url=self.sb.url, config=config, on_error=self.ledger.on_error
        )
        self.run(self.fuul.__aenter__())

    def run(self, coro: Coroutine[Any, Any, T]) -> T:
        return self.loop.run_until_complete(coro)

    def close(self) -> None:
        try:
            self.run(self.fuul.aclose(5.0))
            self.run(self.sb.stop())
            self.run(self.loop.shutdown_asyncgens())
        finally:
            self.loop.close()


@pytest.fixture
def harness() -> Iterator[Harness]:
    h = Harness()
    try:
        yield h
    finally:
        h.close()


def check_refusal(exc: BaseException, fields: Iterable[str]) -> None:
    """A refusal is a ValidationError naming one of ``fields`` (``args.size`` names args)."""
    assert isinstance(exc, ValidationError), f"{type(exc).__name__}: {exc}"
    assert exc.field, exc
    assert _root(exc.field) in set(fields), (exc.field, str(exc))
    assert str(exc).startswith(exc.field + ":"), str(exc)
    assert exc.tier in (1, 3), str(exc)  # tier 2 only when strict, and these clients are not


async def assert_still_delivers(h: Harness) -> None:
    assert sender_alive(h.fuul)
    dedup_id = h.fuul.track("after-the-fuzz", EVM)
    assert await h.fuul.flush(timeout=10)
    assert h.sb.stored_count(dedup_id) == 1
    assert sender_alive(h.fuul)


# -- the properties --------------------------------------------------------------------------

_FIELDS = ("name", "user", "dedup_id", "args", "timestamp")


def test_track_accepts_or_refuses_with_validation_error(harness: Harness) -> None:
    """track(), atrack() and track_threadsafe() with arbitrary arguments: a dedup id or a
    ValidationError naming the argument. Afterwards everything accepted in a documented
    shape was stored (duplicates are dedup ids hypothesis drew twice), an undocumented
    one was stored or rejected by the server (and is the only
    kind ever reported), and the sender is alive and delivers."""
    h = harness
    fuul = h.fuul
    documented: set[str] = set()
    undocumented: set[str] = set()

    async def once(kwargs: dict[str, Any], via: str) -> None:
        try:
            if via == "track":
                dedup_id = fuul.track(**kwargs)
            elif via == "atrack":
                dedup_id = await fuul.atrack(**kwargs)
            else:
                dedup_id = await asyncio.to_thread(fuul.track_threadsafe, **kwargs)
        except Exception as exc:
            check_refusal(exc, _FIELDS)
            event(f"refused: {exc.field}")  # type: ignore[attr-defined]
            return
        assert type(dedup_id) is str and dedup_id
        h.ledger.accepted.append(dedup_id)
        if strict_refusal(kwargs) is None:
            event("accepted")
            documented.add(dedup_id)
        else:
            event("accepted, undocumented")
            undocumented.add(dedup_id)
        await asyncio.sleep(0)  # let the sender run: intake and delivery interleave
        assert sender_alive(fuul)

    @FUZZ
    @given(kwargs=call_args(), via=st.sampled_from(["track", "atrack", "track_threadsafe"]))
    def prop(kwargs: dict[str, Any], via: str) -> None:
        h.run(once(kwargs, via))

    prop()

    async def aftermath() -> None:
        assert len(documented) > 20  # the strategies reach the happy path too
        # track_threadsafe hands events over with call_soon_threadsafe: let them land.
        await wait_until(lambda: fuul.stats().tracked == len(h.ledger.accepted))
        assert await fuul.flush(timeout=20)
        s = fuul.stats()
        assert s.tracked == len(h.ledger.accepted)
        reported = set(h.ledger.reported)
        assert not reported - undocumented, [str(e) for e in h.ledger.errors[:3]]
        assert set(h.ledger.reasons.values()) <= {"rejected"}, h.ledger.reasons
        assert s.delivered + s.duplicates + s.rejected == s.tracked, s
        missing = [i for i in documented if h.sb.stored_count(i) != 1]
        assert not missing, missing[:5]
        lost = [i for i in undocumented - documented if h.sb.stored_count(i) + (i in reported) != 1]
        assert not lost, lost[:5]
        await assert_still_delivers(h)

    h.run(aftermath())


def test_send_event_accepts_or_refuses_with_validation_error(harness: Harness) -> None:
    """send_event(): a SendResult (stored now, or the dedup id was known) or a
    ValidationError. A BadRequestError is allowed only for a shape no Fuul document
    shows (a strict client refuses it); any other exception is a crash."""
    h = harness

    async def once(kwargs: dict[str, Any]) -> None:
        try:
            result = await h.fuul.send_event(**kwargs)
        except BadRequestError as exc:
            check_server_refusal(exc, strict_refusal(kwargs), kwargs)
            return
        except Exception as exc:
            check_refusal(exc, _FIELDS)
            return
        assert isinstance(result, SendResult)
        assert h.sb.stored_count(result.dedup_id) == 1

    @FUZZ
    @given(kwargs=call_args())
    def prop(kwargs: dict[str, Any]) -> None:
        h.run(once(kwargs))

    prop()
    h.run(assert_still_delivers(h))


good_events = st.builds(Event, st.just("ok"), _valid_user(), st.uuids().map(str))
#: (events, container): an iterator or generator is built from the list at send time.
batches = st.one_of(
    st.tuples(
        st.lists(st.one_of(events, good_events), max_size=5),
        st.sampled_from(["list", "tuple", "iter", "generator"]),
    ),
    st.tuples(
        st.builds(
            lambda n, tag: [Event("ok", EVM, f"{tag}-{i}") for i in range(n)],
            st.integers(99, 102),
            st.uuids(),
        ),
        st.just("list"),
    ),
    st.tuples(plain_garbage, st.just("as is")),
)
_WRAP = {
    "list": list,
    "tuple": tuple,
    "iter": iter,
    "generator": lambda b: (e for e in b),
    "as is": lambda b: b,
}


def check_batch_server_refusal(
    exc: BadRequestError, strict: ValidationError | None, batch: Any
) -> None:
    """A 400 for a batch only when a strict client refuses it for a shape (tier 2)."""
    assert strict is not None, f"the client sent what the server refuses: {exc}"
    assert strict.tier == 2, str(strict)


def _strict_batch_refusal(batch: Any) -> ValidationError | None:
    try:
        validate_batch(batch, strict=True)
    except ValidationError as exc:
        return exc
    return None


def test_send_batch_accepts_or_refuses_with_validation_error(harness: Harness) -> None:
    """send_batch(): a BatchResult with every event stored, or a ValidationError naming
    the batch (``events``) or the event (``[3].user.identifier``), or (only when a strict
    client would refuse the batch, tier 2) the server's 400."""
    h = harness

    async def once(batch: Any, strict: ValidationError | None, events: Any) -> None:
        try:
            result = await h.fuul.send_batch(batch)
        except BadRequestError as exc:
            check_batch_server_refusal(exc, strict, events)
            return
        except Exception as exc:
            check_refusal(exc, ("events", "event", *_FIELDS))
            return
        assert isinstance(result, BatchResult)
        # What was sent: only Events get this far.
        sent = h.sb.requests[-1].events
        assert result.ingested + result.skipped == sent

    @FUZZ
    @given(batch_and_container=batches)
    def prop(batch_and_container: tuple[Any, str]) -> None:
        batch, container = batch_and_container
        # Judged before it is wrapped: an iterator cannot be looked into twice.
        strict = _strict_batch_refusal(batch)
        h.run(once(_WRAP[container](batch), strict, batch))

    prop()
    h.run(assert_still_delivers(h))


# -- regressions of bugs the properties found ---------------------------------------------------


async def test_args_key_with_a_lone_surrogate_does_not_sink_its_batch(sandbox: Sandbox) -> None:
    """Found by the properties above (fixed in a901042): the key was accepted, could not
    be encoded, and the sender retried it to exhaustion with the other 99 events of its
    batch."""
    ledger = Ledger()
    config = fast_config(retry=RetryPolicy(max_attempts=3, initial_backoff=0.01))
    async with FuulClient(
        API_KEY, base_url=sandbox.url, config=config, on_error=ledger.on_error
    ) as fuul:
        good = [fuul.track("trade", EVM, args={"i": i}) for i in range(50)]
        with pytest.raises(ValidationError, match=r"^args"):
            fuul.track("trade", EVM, args={"\ud800": 1})
        good += [fuul.track("trade", EVM, args={"i": i}) for i in range(50, 99)]
        assert await fuul.flush(timeout=10)
        lost = [i for i in good if sandbox.stored_count(i) != 1]
        assert not lost, f"{len(lost)} valid events lost with the bad one: {ledger.errors}"


async def test_send_event_args_key_with_a_lone_surrogate_is_a_validation_error(
    client: FuulClient,
) -> None:
    """Found by the properties above (fixed in a901042): UnicodeEncodeError from msgspec."""
    with pytest.raises(ValidationError) as info:
        await client.send_event("trade", EVM, args={"\ud800": 1})
    assert info.value.field.startswith("args")


class _Name(str):
    pass


async def test_str_subclass_arguments_are_sent_or_refused(
    sandbox: Sandbox, client: FuulClient
) -> None:
    cases = [
        {"name": _Name("trade"), "user": EVM},
        {"name": "trade", "user": EVM, "dedup_id": _Name("sub-1")},
        {"name": "trade", "user": User(_Name(EVM.identifier), "evm_address")},
        {
            "name": "trade",
            "user": EVM,
            "args": {_Name("value"): {"amount": _Name("5"), "currency": {"name": _Name("USD")}}},
        },
    ]
    for kwargs in cases:
        try:
            result = await client.send_event(**kwargs)  # type: ignore[arg-type]
        except ValidationError:
            continue
        assert sandbox.stored_count(result.dedup_id) == 1
    ledger = Ledger()
    async with FuulClient(
        API_KEY, base_url=sandbox.url, config=fast_config(), on_error=ledger.on_error
    ) as fuul:
        for kwargs in cases:
            with contextlib.suppress(ValidationError):
                fuul.track(**{**kwargs, "dedup_id": None})  # type: ignore[arg-type]
        assert await fuul.flush(timeout=10)
    assert not ledger.errors, [str(e) for e in ledger.errors]


async def test_amount_struct_of_str_subclasses_is_sent_or_refused(
    sandbox: Sandbox, client: FuulClient
) -> None:
    args = {"value": Amount(_Name("5"), Currency(_Name("USD")))}
    try:
        result = await client.send_event("trade", EVM, args=args)
    except ValidationError:
        return
    assert sandbox.stored_count(result.dedup_id) == 1


async def test_currency_by_name_with_a_chain_identifier_is_the_servers_call(
    sandbox: Sandbox, client: FuulClient, caplog: pytest.LogCaptureFixture
) -> None:
    """Found by the properties above (a901042): the client let it through, the server
    answered 400. No Fuul document shows a named currency with a chain_identifier, so
    the client now sends it with one warning and the server decides (the sandbox refuses
    it, naming the field); a strict client refuses it without sending anything."""
    aiofuul.wire.shapes._warned.clear()
    caplog.set_level(logging.WARNING, logger="aiofuul")
    bad = {"value": {"amount": "1", "currency": {"name": "USD", "chain_identifier": 5}}}
    with pytest.raises(BadRequestError) as info:
        await client.send_event("trade", EVM, args=bad)
    messages = info.value.message
    assert isinstance(messages, list)
    assert any(m.startswith("args.value.currency") for m in messages), messages
    warned = [m for m in caplog.messages if m.startswith("args.value.currency: ")]
    assert len(warned) == 1, caplog.messages
    assert sandbox.stored_ids() == []
    sent = len(sandbox.requests)
    async with FuulClient(API_KEY, base_url=sandbox.url, config=fast_config(strict=True)) as strict:
        with pytest.raises(ValidationError) as refused:
            await strict.send_event("trade", EVM, args=bad)
    assert (refused.value.field, refused.value.tier) == ("args.value.currency", 2)
    assert len(sandbox.requests) == sent  # nothing sent


async def test_send_batch_of_a_non_iterable_is_a_validation_error(client: FuulClient) -> None:
    for batch in (None, 5, 1.5, EVM):
        with pytest.raises(ValidationError) as info:
            await client.send_batch(batch)  # type: ignore[arg-type]
        assert info.value.field == "events"


async def test_args_changed_after_track_do_not_change_what_is_sent(
    sandbox: Sandbox, client: FuulClient
) -> None:
    """Found here and by the benchmark work (fixed in 89afdf8): the queue held the
    caller's dict, so a change after track() changed what was sent, or broke it."""
    changed_validly = {"size": 1}
    changed_badly = {"size": 1}
    first = client.track("trade", EVM, args=changed_validly)
    second = client.track("trade", EVM, args=changed_badly)
    changed_validly["size"] = 2
    changed_badly["size"] = object()
    assert await client.flush(timeout=10)
    stored = {e.dedup_id: e for e in sandbox.events}
    assert second in stored, "the event was lost: args broken after validation"
    assert stored[first].args == {"size": 1}
    assert stored[second].args == {"size": 1}
