"""Helpers of the chaos suite: a ledger of what was accepted and what was reported, the
invariants every chaos test ends with, and a proxy that cuts responses mid-body.

Not a ``conftest.py`` on purpose: ``tests/conftest.py`` is imported as the module
``conftest`` by the other test files (``from conftest import ...``), and a second
``conftest.py`` here would replace it in ``sys.modules`` for whatever is collected next.
"""

from __future__ import annotations

import asyncio
import contextlib
import random
from collections import Counter
from collections.abc import AsyncIterator, Iterable

import aiohttp
from aiohttp import web

from aiofuul import (
    Event,
    FuulClient,
    Limits,
    RateLimit,
    RetryPolicy,
    UndeliveredError,
    User,
)
from aiofuul.sandbox import Sandbox
from conftest import API_KEY, fast_config

#: Limits that never bind: for load and fuzz tests, where the rate limits are not the point.
NO_LIMIT = RateLimit(10**9, 1.0)
UNLIMITED = Limits(single=NO_LIMIT, batch=NO_LIMIT, status=NO_LIMIT)

#: A retry policy that outlasts every outage a chaos test stages (a few seconds at most),
#: so that "every event is delivered" is the expected outcome, not "reported".
PATIENT_RETRY = RetryPolicy(
    max_attempts=100_000, initial_backoff=0.005, max_backoff=0.1, max_elapsed=60.0
)

#: Reasons after which an event may still have been stored: the server may have stored it
#: and then failed to answer (drop after store, a timeout after store), or it was in
#: flight when the client closed.
MAY_BE_STORED = frozenset({"retries_exhausted", "shutdown"})
#: Reasons after which an event can never have been stored: the server refused it (400),
#: the key cannot send (401/403/404), or it never left the queue.
NEVER_STORED = frozenset({"rejected", "stopped", "dropped"})


class Ledger:
    """Every dedup id ``track()`` accepted, and every event ``on_error`` reported.

    Pass :meth:`on_error` to the client. Appends are atomic under the GIL, so producer
    threads may record too.
    """

    def __init__(self) -> None:
        self.accepted: list[str] = []
        self.reported: Counter[str] = Counter()
        self.reasons: dict[str, str] = {}
        self.errors: list[UndeliveredError] = []
        #: Malformed reports (the client swallows what on_error raises, so keep them).
        self.problems: list[str] = []

    def on_error(self, events: list[Event], error: UndeliveredError) -> None:
        if not isinstance(error, UndeliveredError) or error.count != len(events):
            self.problems.append(f"{len(events)} events reported with {error!r}")
        self.errors.append(error)
        for event in events:
            self.reported[event.dedup_id] += 1
            self.reasons[event.dedup_id] = error.reason

    def track(self, client: FuulClient, user: User, name: str = "trade", **kw: object) -> str:
        dedup_id = client.track(name, user, **kw)  # type: ignore[arg-type]
        self.accepted.append(dedup_id)
        return dedup_id

    def track_threadsafe(
        self, client: FuulClient, user: User, name: str = "trade", **kw: object
    ) -> str:
        dedup_id = client.track_threadsafe(name, user, **kw)  # type: ignore[arg-type]
        self.accepted.append(dedup_id)
        return dedup_id


def sender_alive(client: FuulClient) -> bool:
    worker = client._sender._worker
    return worker is not None and not worker.done()


def assert_adds_up(client: FuulClient) -> None:
    s = client.stats()
    assert s.tracked == s.delivered + s.duplicates + s.rejected + s.failed + s.dropped + s.queued, s
    assert s.queued >= 0 and s.in_flight >= 0, s


def assert_accounted(
    client: FuulClient,
    sb: Sandbox,
    ledger: Ledger,
    *,
    all_delivered: bool,
    others: Iterable[str] = (),
    alive: bool = True,
    watcher: Watcher | None = None,
) -> None:
    """The invariants after a flush (or a close): call it once nothing is queued.

    - ``stats()`` adds up and nothing is queued or in flight;
    - every accepted dedup id is unique, and stored exactly once **or** reported exactly
      once through ``on_error`` (an event reported as ``retries_exhausted`` or
      ``shutdown`` may also have been stored: the server can store and then fail to
      answer; one reported as ``rejected``/``stopped``/``dropped`` never was);
    - the counters match the outcomes one for one: ``delivered + duplicates`` is the
      number of events not reported, ``rejected + failed + dropped`` the number reported;
    - the server stored nothing the client did not send (no dedup id was ever invented
      or changed on a retry);
    - ``all_delivered``: the staged outage ended before the retry policy gave up, so
      nothing at all may be reported;
    - ``alive``: the sender task is still running;
    - ``watcher``: stopped, and no event was ever found nowhere while it sampled.
    """
    if watcher is not None:
        watcher.stop()
    s = client.stats()
    assert_adds_up(client)
    assert s.queued == 0 and s.in_flight == 0, s
    accepted = set(ledger.accepted)
    assert len(accepted) == len(ledger.accepted), "track() returned a dedup id twice"
    assert s.tracked == len(ledger.accepted), (s.tracked, len(ledger.accepted))

    assert not ledger.problems, ledger.problems[:5]
    twice = {i: n for i, n in ledger.reported.items() if n != 1}
    assert not twice, f"events reported more than once: {list(twice.items())[:5]}"
    strangers = set(ledger.reported) - accepted
    assert not strangers, f"on_error reported events never tracked: {list(strangers)[:5]}"

    stored_ids = sb.stored_ids()
    assert len(stored_ids) == len(set(stored_ids))
    unknown = set(stored_ids) - accepted - set(others)
    assert not unknown, f"the server stored dedup ids nobody sent: {list(unknown)[:5]}"

    lost, wrongly_stored = [], []
    for dedup_id in ledger.accepted:
        stored = sb.stored_count(dedup_id)
        assert stored <= 1
        reason = ledger.reasons.get(dedup_id)
        if reason is None:
            if stored != 1:
                lost.append(dedup_id)
        elif reason in NEVER_STORED:
            if stored:
                wrongly_stored.append((dedup_id, reason))
        else:
            assert reason in MAY_BE_STORED, reason
    assert not lost, f"{len(lost)} events neither stored nor reported, e.g. {lost[:5]}"
    assert not wrongly_stored, f"reported as never stored, yet stored: {wrongly_stored[:5]}"

    n_reported = len(ledger.reported)
    assert s.delivered + s.duplicates == len(ledger.accepted) - n_reported, (s, n_reported)
    assert s.rejected + s.failed + s.dropped == n_reported, (s, n_reported)
    if all_delivered:
        reasons = Counter(ledger.reasons.values())
        assert n_reported == 0, f"reported although the outage ended in time: {reasons}"
    if alive:
        assert sender_alive(client), "the sender task died"


async def produce(
    client: FuulClient,
    ledger: Ledger,
    user: User,
    *,
    tasks: int,
    per_task: int,
    every: int = 5,
    pause: float = 0.0,
    name: str = "trade",
) -> None:
    """``tasks`` concurrent producers, each tracking ``per_task`` events and yielding
    (sleeping ``pause``) every ``every`` events."""

    async def one(n: int) -> None:
        for i in range(per_task):
            ledger.track(client, user, name, args={"producer": n, "i": i})
            if i % every == every - 1:
                await asyncio.sleep(pause)

    await asyncio.gather(*(one(n) for n in range(tasks)))


class ChaosProxy:
    """A reverse proxy in front of a sandbox, for the faults the sandbox cannot stage.

    - ``cut_rate``: for this fraction of responses, send the status line, the headers
      (with the full ``Content-Length``) and *half* the body, then reset the connection:
      the events are stored, the client reads a truncated answer.
    - ``answer_delay``: hold every answer this many seconds *after* the sandbox stored
      the events (the sandbox's own ``latency`` comes before it reads the body, so a
      client that gave up meanwhile leaves nothing stored).

    An upstream that cannot be reached becomes a 502 HTML page, as a real proxy sends.
    """

    def __init__(
        self, upstream: Sandbox, cut_rate: float = 0.0, answer_delay: float = 0.0, seed: int = 0
    ):
        self.upstream = upstream
        self.cut_rate = cut_rate
        self.answer_delay = answer_delay
        self.resets = 0
        self._rng = random.Random(seed)
        self._runner: web.AppRunner | None = None
        self._session: aiohttp.ClientSession | None = None
        self.port = 0

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}/api/v1/"

    async def __aenter__(self) -> ChaosProxy:
        app = web.Application(client_max_size=16 << 20)
        app.router.add_route("*", "/{tail:.*}", self._handle)
        runner = web.AppRunner(app, access_log=None, handle_signals=False, shutdown_timeout=0.2)
        await runner.setup()
        await web.TCPSite(runner, "127.0.0.1", 0).start()
        self.port = int(runner.addresses[0][1])
        self._runner = runner
        self._session = aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=10))
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        if self._runner is not None:
            await self._runner.cleanup()
        if self._session is not None:
            await self._session.close()

    async def _handle(self, request: web.Request) -> web.StreamResponse:
        assert self._session is not None
        body = await request.read()
        headers = {
            name: request.headers[name]
            for name in ("Authorization", "Content-Type")
            if name in request.headers
        }
        origin = f"http://127.0.0.1:{self.upstream.port}"
        try:
            async with self._session.request(
                request.method, origin + request.path_qs, data=body, headers=headers
            ) as upstream:
                status, data = upstream.status, await upstream.read()
                retry_after = upstream.headers.get("Retry-After")
        except (aiohttp.ClientError, asyncio.TimeoutError):
            page = "<html><body><h1>502 Bad Gateway</h1><hr>nginx</body></html>"
            return web.Response(status=502, text=page, content_type="text/html")
        if self.answer_delay:
            await asyncio.sleep(self.answer_delay)
        if self.cut_rate and self._rng.random() < self.cut_rate:
            self.resets += 1
            cut = web.StreamResponse(status=status)
            cut.content_type = "application/json"
            cut.content_length = len(data)
            await cut.prepare(request)
            await cut.write(data[: len(data) // 2])
            if request.transport is not None:
                request.transport.abort()
            return cut
        response = web.Response(status=status, body=data, content_type="application/json")
        if retry_after is not None:
            response.headers["Retry-After"] = retry_after
        return response


_BOMB: bytes | None = None


class RawServer:
    """A tiny aiohttp server on loopback that answers every request with whatever
    ``mode`` says (set it between requests), optionally over TLS."""

    BIG = 5 * 1024 * 1024

    def __init__(self, mode: str = "ok", ssl_context: object = None, redirect_to: str = ""):
        self.mode = mode
        self.redirect_to = redirect_to
        self.hits = 0
        self._ssl = ssl_context
        self._runner: web.AppRunner | None = None
        self.port = 0

    @property
    def url(self) -> str:
        scheme = "https" if self._ssl is not None else "http"
        return f"{scheme}://127.0.0.1:{self.port}/api/v1/"

    @staticmethod
    def _bomb() -> bytes:
        global _BOMB
        if _BOMB is None:
            import zlib

            packer = zlib.compressobj(9, zlib.DEFLATED, 31)  # gzip framing
            _BOMB = packer.compress(bytes(64 << 20)) + packer.flush()
        return _BOMB

    async def __aenter__(self) -> RawServer:
        # Bodies are built before the test measures anything (the server shares the
        # process with the client under test).
        self._big = b" " * self.BIG
        if self.mode == "gzip-bomb":
            self._bomb()
        app = web.Application(client_max_size=16 << 20)
        app.router.add_route("*", "/{tail:.*}", self._handle)
        runner = web.AppRunner(app, access_log=None, handle_signals=False, shutdown_timeout=0.2)
        await runner.setup()
        site = web.TCPSite(runner, "127.0.0.1", 0, ssl_context=self._ssl)  # type: ignore[arg-type]
        await site.start()
        self.port = int(runner.addresses[0][1])
        self._runner = runner
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        if self._runner is not None:
            await self._runner.cleanup()

    async def _handle(self, request: web.Request) -> web.StreamResponse:
        self.hits += 1
        await request.read()
        mode = self.mode
        if mode == "ok":
            return web.json_response({"ingested_events": 1, "created": True}, status=201)
        if mode == "redirect":  # to another host: the key must not follow
            raise web.HTTPTemporaryRedirect(self.redirect_to + request.path.split("/v1/")[-1])
        if mode == "big-with-length":  # 5 MB, announced in Content-Length
            return web.Response(status=201, body=self._big, content_type="application/json")
        if mode in ("big-chunked", "big-error-chunked"):  # 5 MB, no Content-Length
            status = 500 if mode == "big-error-chunked" else 201
            response = web.StreamResponse(status=status)
            response.content_type = "application/json"
            response.enable_chunked_encoding()
            await response.prepare(request)
            chunk = b" " * 65536
            try:
                for _ in range(self.BIG // len(chunk)):
                    await response.write(chunk)
            except (ConnectionError, RuntimeError):
                pass  # the client stopped reading: expected
            return response
        if mode == "gzip-bomb":  # 64 KB on the wire, 64 MB once inflated
            return web.Response(
                status=201,
                body=self._bomb(),
                headers={"Content-Encoding": "gzip", "Content-Type": "application/json"},
            )
        raise AssertionError(f"unknown mode {mode!r}")


def self_signed_certificate(directory: str) -> tuple[str, str] | None:
    """A self-signed certificate for 127.0.0.1 and localhost, as (cert path, key path),
    made with ``cryptography`` or else the ``openssl`` command; None if neither exists."""
    import os

    cert_path = os.path.join(directory, "cert.pem")
    key_path = os.path.join(directory, "key.pem")
    try:
        _cryptography_certificate(cert_path, key_path)
    except ImportError:
        import shutil
        import subprocess

        if shutil.which("openssl") is None:
            return None
        subprocess.run(
            [
                "openssl", "req", "-x509", "-nodes", "-days", "1",
                "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1",
                "-keyout", key_path, "-out", cert_path, "-subj", "/CN=localhost",
                "-addext", "subjectAltName=DNS:localhost,IP:127.0.0.1",
            ],
            check=True,
            capture_output=True,
        )  # fmt: skip
    return cert_path, key_path


def _cryptography_certificate(cert_path: str, key_path: str) -> None:
    import datetime
    import ipaddress

    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import NameOID

    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "localhost")])
    now = datetime.datetime.now(datetime.timezone.utc)
    cert = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(days=1))
        .not_valid_after(now + datetime.timedelta(days=1))
        .add_extension(
            x509.SubjectAlternativeName(
                [x509.DNSName("localhost"), x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]
            ),
            critical=False,
        )
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        .sign(key, hashes.SHA256())
    )
    with open(cert_path, "wb") as f:
        f.write(cert.public_bytes(serialization.Encoding.PEM))
    with open(key_path, "wb") as f:
        f.write(
            key.private_bytes(
                serialization.Encoding.PEM,
                serialization.PrivateFormat.PKCS8,
                serialization.NoEncryption(),
            )
        )


class Watcher:
    """Samples the client's counters every millisecond while a test runs, and keeps
    what broke: every accepted event must at every moment be settled, queued (waiting
    or back for a retry) or in flight, ``queued <= backlog + in_flight``; an event in
    none of these places is lost without a trace.

    (Not ``==``: ``in_flight`` lags, see test_in_flight_never_exceeds_queued.)"""

    def __init__(self, client: FuulClient):
        self.client = client
        self.samples = 0
        self.violations: list[str] = []
        self._task = asyncio.get_running_loop().create_task(self._watch(), name="chaos-watcher")

    async def _watch(self) -> None:
        sender = self.client._sender
        while True:
            s = self.client.stats()
            backlog = sender.backlog
            self.samples += 1
            ok = s.queued <= backlog + s.in_flight and s.in_flight >= 0 and s.queued >= 0
            if not ok and len(self.violations) < 20:
                self.violations.append(f"backlog={backlog} {s}")
            await asyncio.sleep(0.001)

    def stop(self) -> None:
        """Stop sampling and assert nothing broke."""
        self._task.cancel()
        assert self.samples > 0
        assert not self.violations, "\n".join(self.violations)


@contextlib.asynccontextmanager
async def running(
    ledger: Ledger, sandbox: Sandbox, **config: object
) -> AsyncIterator[tuple[Sandbox, FuulClient]]:
    """``sandbox`` started, and a client on it (``fast_config(**config)``) that reports
    to ``ledger``; both closed after."""
    async with (
        sandbox as sb,
        FuulClient(
            API_KEY, base_url=sb.url, config=fast_config(**config), on_error=ledger.on_error
        ) as fuul,
    ):
        yield sb, fuul
