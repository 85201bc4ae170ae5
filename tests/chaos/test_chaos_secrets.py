"""Secrets: with every logger at DEBUG (asyncio's debug mode too) and every error path
exercised, the API key appears in no log record, no exception (message, repr,
traceback, cause and context chain), no warning and no repr of the client's objects."""

from __future__ import annotations

import asyncio
import contextlib
import gc
import logging
import pickle
import traceback
import warnings
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import pytest
from chaos_support import Ledger, RawServer, self_signed_certificate

from aiofuul import (
    ClientConfig,
    ClientStateError,
    Event,
    FuulClient,
    FuulError,
    Limits,
    QueueFullError,
    RateLimit,
    RetryPolicy,
    User,
    ValidationError,
)
from aiofuul.sandbox import Faults, Sandbox
from conftest import EVM, FAST_LIMITS, fast_config, wait_until

#: The chaos tier: minutes of faults in all; `nox -s quick` leaves it out.
pytestmark = pytest.mark.slow

SECRET = "sk_live_SECRET_abc123"
#: Any part that would give the key away: the whole key, or its distinctive tail.
TELLTALES = (SECRET, "SECRET_abc123")

# A refused key's tracked events wait up to max_elapsed (not attempts): keep it short.
BRIEF = RetryPolicy(max_attempts=2, initial_backoff=0.005, max_backoff=0.01, max_elapsed=0.5)


class Capture(logging.Handler):
    """Keeps every record, formatted with its args and exc_info as a handler would."""

    def __init__(self) -> None:
        super().__init__(logging.DEBUG)
        self.texts: list[str] = []
        self.count = 0
        self._formatter = logging.Formatter()

    def emit(self, record: logging.LogRecord) -> None:
        self.count += 1
        self.texts.append(self._formatter.format(record))
        self.texts.append(repr(record.args))
        self.texts.append(repr(record.__dict__))


@pytest.fixture
def capture() -> Iterator[Capture]:
    handler = Capture()
    root = logging.getLogger()
    saved = root.level, logging.getLogger("aiofuul").level
    root.addHandler(handler)
    root.setLevel(logging.DEBUG)
    logging.getLogger("aiofuul").setLevel(logging.DEBUG)
    logging.captureWarnings(True)
    try:
        yield handler
    finally:
        logging.captureWarnings(False)
        root.removeHandler(handler)
        root.setLevel(saved[0])
        logging.getLogger("aiofuul").setLevel(saved[1])


def exception_texts(exc: BaseException) -> list[str]:
    """str, repr and the formatted traceback of ``exc``, and the same for every exception
    reachable through ``__cause__`` and ``__context__`` (suppressed or not: a reporter
    that walks the chain sees them all), and for an ``UndeliveredError``'s ``cause``."""
    texts: list[str] = []
    seen: set[int] = set()
    todo: list[BaseException | None] = [exc]
    while todo:
        current = todo.pop()
        if current is None or id(current) in seen:
            continue
        seen.add(id(current))
        texts += [str(current), repr(current), *traceback.format_exception(current)]
        texts.append(repr(vars(current)) if hasattr(current, "__dict__") else "")
        with contextlib.suppress(Exception):
            texts.append(repr(pickle.loads(pickle.dumps(current))))
        todo += [current.__cause__, current.__context__, getattr(current, "cause", None)]
    return texts


class Scan:
    """Collects everything that could show the key."""

    def __init__(self) -> None:
        self.texts: list[str] = []
        self.exceptions = 0

    def exc(self, exc: BaseException) -> None:
        self.exceptions += 1
        self.texts += exception_texts(exc)

    def text(self, *values: object) -> None:
        self.texts += [repr(v) for v in values] + [str(v) for v in values]

    @contextlib.asynccontextmanager
    async def expect(self, *types: type[BaseException]) -> AsyncIterator[None]:
        try:
            yield
        except types as exc:
            self.exc(exc)
        else:
            raise AssertionError(f"expected one of {types}")

    def client(self, fuul: FuulClient) -> None:
        self.text(
            fuul,
            fuul.stats(),
            fuul.config,
            fuul._transport,
            vars(fuul),
            vars(fuul._sender),
            fuul._lanes["single"],
            vars(fuul._lanes["single"]),
        )


async def _direct_and_tracked(
    scan: Scan, url: str, config: ClientConfig, *errors: type[BaseException]
) -> None:
    """A direct call expected to fail with ``errors``, and a tracked event reported."""
    ledger = Ledger()
    async with FuulClient(SECRET, base_url=url, config=config, on_error=ledger.on_error) as fuul:
        async with scan.expect(*errors):
            await fuul.send_event("trade", EVM)
        async with scan.expect(*errors):
            await fuul.send_batch([Event("trade", EVM, "secret-scan-1")])
        fuul.track("trade", EVM)
        assert await fuul.flush(timeout=10)
        scan.client(fuul)
    assert ledger.errors, "the tracked event was not reported"
    for error in ledger.errors:
        scan.exc(error)
    scan.text(ledger.errors)


async def test_the_api_key_never_shows(capture: Capture, tmp_path: Path) -> None:
    asyncio.get_running_loop().set_debug(True)
    scan = Scan()
    config = fast_config(retry=BRIEF, timeout=0.3)

    # 401: the sandbox knows another key; 403: it knows ours, without the scope.
    async with Sandbox(limits=FAST_LIMITS, keys={"someone-else": ["service_role"]}) as sb:
        await _direct_and_tracked(scan, sb.url, config, FuulError)
        async with (
            FuulClient(SECRET, base_url=sb.url, config=config) as fuul,
            scan.expect(FuulError),
        ):
            await fuul.event_status(EVM, "trade")
    async with Sandbox(limits=FAST_LIMITS, keys={SECRET: []}) as sb:
        await _direct_and_tracked(scan, sb.url, config, FuulError)

    async with Sandbox(limits=FAST_LIMITS) as sb:
        # 400: the client's format check is off, the server's is on.
        lax = config.with_(check_identifier_format=False)
        bad_user = User("not-an-evm-address", "evm_address")
        ledger = Ledger()
        async with FuulClient(
            SECRET, base_url=sb.url, config=lax, on_error=ledger.on_error
        ) as fuul:
            async with scan.expect(FuulError):
                await fuul.send_event("trade", bad_user)
            async with scan.expect(FuulError):
                await fuul.send_batch([Event("trade", bad_user, "b-1"), Event("trade", EVM, "b-2")])
            fuul.track("trade", bad_user)
            for _ in range(150):  # a batch with one bad event: isolated, then rejected
                fuul.track("trade", EVM)
            fuul.track("trade", bad_user)
            assert await fuul.flush(timeout=10)
            scan.client(fuul)
        for error in ledger.errors:
            scan.exc(error)

        # 429 (without Retry-After, so that the two attempts come quickly): a server
        # far below the client's limits; what is left at close is reported (shutdown).
        tight = Limits(single=RateLimit(1, 5), batch=RateLimit(1, 5), status=RateLimit(1, 5))
        async with Sandbox(limits=tight, retry_after="none") as slow:
            ledger = Ledger()
            async with FuulClient(
                SECRET,
                base_url=slow.url,
                config=config.with_(close_timeout=0.3),
                on_error=ledger.on_error,
            ) as fuul:
                await fuul.send_event("trade", EVM)
                async with scan.expect(FuulError):
                    await fuul.send_event("trade", EVM)
                await fuul.event_status(EVM, "trade")
                async with scan.expect(FuulError):
                    await fuul.event_status(EVM, "trade")
                await fuul.send_batch([Event("trade", EVM, "tight-b1")])  # spends the batch lane
                for _ in range(5):
                    fuul.track("trade", EVM)
                assert not await fuul.flush(timeout=0.3)  # still rate limited
                scan.client(fuul)
            assert ledger.errors
            for error in ledger.errors:
                scan.exc(error)

        # 5xx, hangs (timeouts), drops before/after store, garbage 2xx.
        # A 500 on its own first: drawn among the four, six draws missed it one run in
        # five, and the scan below must see one.
        for faults in (
            Faults(error_rate=1.0, error_statuses=(500,)),
            Faults(error_rate=1.0, error_statuses=(502, 503, 504)),
            Faults(hang_rate=1.0),
            Faults(drop_rate=1.0, drop_after_store=0.5),
        ):
            sb.faults = faults
            await _direct_and_tracked(scan, sb.url, config, FuulError)
        sb.faults = Faults(garbage_rate=1.0)
        async with (
            FuulClient(SECRET, base_url=sb.url, config=config) as fuul,
            scan.expect(FuulError),
        ):
            await fuul.event_status(EVM, "trade")
        sb.faults = Faults()

        # Validation errors, a full queue, a closed client, the wrong thread.
        full = config.with_(max_queue=1, queue_full="raise", linger=10.0)
        ledger = Ledger()
        async with FuulClient(
            SECRET, base_url=sb.url, config=full, on_error=ledger.on_error
        ) as fuul:
            for bad in ({"name": ""}, {"user": "x"}, {"args": {"v": float("nan")}}):
                kwargs = {"name": "trade", "user": EVM, **bad}
                async with scan.expect(ValidationError):
                    fuul.track(**kwargs)  # type: ignore[arg-type]
                async with scan.expect(ValidationError):
                    await fuul.send_event(**kwargs)  # type: ignore[arg-type]
            async with scan.expect(ValidationError):
                await fuul.send_batch([])
            fuul.track("trade", EVM, dedup_id="q-1")
            async with scan.expect(QueueFullError):
                fuul.track("trade", EVM, dedup_id="q-2")
            await asyncio.to_thread(fuul.track_threadsafe, "trade", EVM)  # queued or dropped
            # It reaches the loop through call_soon_threadsafe: counted either way.
            await wait_until(lambda: fuul.stats().tracked == 2, what="the thread's event")
            scan.client(fuul)
        for error in ledger.errors:
            scan.exc(error)
        async with scan.expect(ClientStateError):
            fuul.track("trade", EVM)
        async with scan.expect(ClientStateError):
            await fuul.send_event("trade", EVM)
        async with scan.expect(ClientStateError):
            fuul.track_threadsafe("trade", EVM)
        scan.client(fuul)

        # The server goes away: connection refused.
        await sb.stop()
        await _direct_and_tracked(scan, sb.url, config, FuulError)

    # Transport refusals: oversize body, TLS failure, insecure URL.
    async with RawServer("big-chunked") as raw:
        await _direct_and_tracked(scan, raw.url, config, FuulError)
    made = self_signed_certificate(str(tmp_path))
    if made is not None:
        import ssl

        context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
        context.load_cert_chain(*made)
        async with RawServer(ssl_context=context) as tls:
            await _direct_and_tracked(scan, tls.url, config, FuulError)
    async with scan.expect(ValueError):
        FuulClient(SECRET, base_url="http://api.fuul.xyz/api/v1/")

    # A client dropped without aclose(): its log line and its ResourceWarning.
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        dropped = FuulClient(SECRET, base_url="http://127.0.0.1:9/api/v1/", config=config)
        await dropped.__aenter__()
        dropped.track("trade", EVM)
        scan.client(dropped)
        del dropped
        gc.collect()
        # It closes itself on its loop once its retries are spent (aiofuul.lifecycle).
        for _ in range(1500):
            if any(issubclass(w.category, ResourceWarning) for w in caught):
                break
            await asyncio.sleep(0.02)
    assert any(issubclass(w.category, ResourceWarning) for w in caught), caught
    scan.text(*[w.message for w in caught])

    # The scan sees what it must not miss: the key is in the client's header dict.
    probe = FuulClient(SECRET, base_url="https://api.fuul.xyz/api/v1/")
    assert any(t in repr(probe._transport._headers) for t in TELLTALES)

    texts = scan.texts + capture.texts
    assert scan.exceptions >= 40 and capture.count >= 30, (scan.exceptions, capture.count)
    joined = "\n".join(texts)
    for needle in ("401", "403", "400", "429", "500", "timed out", "max_response_bytes"):
        assert needle in joined, f"the scan never saw {needle!r}: an error path was skipped"
    leaks = [t for t in texts if any(s in t for s in TELLTALES)]
    assert not leaks, f"the API key shows in {len(leaks)} texts, e.g.:\n{leaks[0][:2000]}"


async def test_the_api_key_is_not_in_the_context_of_a_malformed_response_error() -> None:
    async def bad_status_line(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await reader.read(65536)
        writer.write(b"HTTP/1.1 abc Broken\r\n\r\n")
        await writer.drain()
        writer.close()

    server = await asyncio.start_server(bad_status_line, "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    try:
        config = ClientConfig(retry=RetryPolicy(max_attempts=1))
        url = f"http://127.0.0.1:{port}/api/v1/"
        async with FuulClient(SECRET, base_url=url, config=config) as fuul:
            with pytest.raises(FuulError) as info:
                await fuul.send_event("trade", EVM)
        texts = exception_texts(info.value)
        leaks = [t for t in texts if SECRET in t]
        assert not leaks, leaks[0][:500]
    finally:
        server.close()
        await server.wait_closed()
