"""``SyncFuulClient``: the asyncio client for sync code (Django or Flask views, Celery
tasks, scripts, serverless handlers), run on a private event loop in a daemon thread.

Every call delegates to a :class:`~aiofuul.FuulClient` living on that loop: one code
path, the same options, errors, counters, outbox and shared limiter.

Example::

    from aiofuul import SyncFuulClient, User

    fuul = SyncFuulClient()                        # key from FUUL_API_KEY
    user = User("0x52908400098527886E0F7030069857D2E4169EE7", "evm_address")
    fuul.track("trade", user, args={"size": 2})   # non-blocking, thread-safe
    fuul.send_event("deposit", user, dedup_id="dep-1", timeout=10)   # blocking
    fuul.flush(timeout=5)
    # a client kept in a global needs no close(): at exit it delivers within close_timeout

Life cycle:

- Lazy: nothing runs until the first call, so a pre-fork master (gunicorn --preload)
  that only creates the client starts no thread and opens no outbox.
- The loop thread and its async client (a runner) are held by this module until
  stopped, not by the SyncFuulClient: a client the user drops without ``close()``
  delivers what it holds in the background, then stops, and says once where it was made.
- At exit (and at the end of a ``multiprocessing`` child), one hook closes every runner
  of the process at once, each within its ``config.close_timeout``
  (``close_at_exit=False`` turns this off); the count that could not be delivered is
  logged. See :mod:`aiofuul._exit` for why that hook runs where it does.
- After ``os.fork()`` the child's first call starts a fresh loop and client with an
  empty queue (the parent's events stay the parent's); with an outbox, the child uses
  :func:`outbox_for_pid` of the configured path. :func:`leftover_outboxes` finds the
  files of dead processes. A Redis outbox (``outbox="redis://..."``) is shared: every
  process joins it, and live ones adopt what dead ones left.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import logging
import os
import sys
import threading
import time
import weakref
from collections.abc import Callable, Coroutine, Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any, TypeVar

import msgspec

from .api.sync_groups import SyncApiGroups
from .client import FuulClient
from .config import ClientConfig
from .engine.seams import Observer, OnError, Stats
from .errors import ClientStateError, FuulTimeoutError
from .lifecycle import creation_site
from .runner import GRACE, Runner
from .storage.redis_outbox import is_redis_url
from .wire.models import BatchResult, Conversion, Event, EventPipeline, SendResult, User
from .wire.transport import Transport, resolve_base_url

if TYPE_CHECKING:
    from typing_extensions import Unpack

    from .engine.events import EventFields

__all__ = ["SyncFuulClient", "leftover_outboxes", "outbox_for_pid"]

T = TypeVar("T")
log = logging.getLogger("aiofuul")


_clients: weakref.WeakSet[SyncFuulClient] = weakref.WeakSet()


def _after_fork_in_child() -> None:
    for client in list(_clients):
        client._forked_reset()


if hasattr(os, "register_at_fork"):
    os.register_at_fork(after_in_child=_after_fork_in_child)


def outbox_for_pid(path: str | os.PathLike[str], pid: int) -> Path:
    """The outbox file of a forked process: ``events.db`` -> ``events.<pid>.db``."""
    p = Path(path)
    return p.with_name(f"{p.stem}.{pid}{p.suffix}")


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # someone else's process: alive
        return True
    return True


def leftover_outboxes(path: str | os.PathLike[str]) -> list[Path]:
    """The per-process outbox files derived from ``path`` whose process is gone, so a
    restarted worker (or a cron job) can deliver what they kept: open a client on each
    (``SyncFuulClient(outbox=p)``), ``flush()``, ``close()``. A file still in use is
    refused by its lock, so a reused pid cannot make two clients share one."""
    p = Path(path)
    found: list[Path] = []
    for candidate in sorted(p.parent.glob(f"{p.stem}.*{p.suffix}")):
        middle = candidate.name[len(p.stem) + 1 : len(candidate.name) - len(p.suffix)]
        if middle.isdigit() and int(middle) != os.getpid() and not _alive(int(middle)):
            found.append(candidate)
    return found


def _check_gevent() -> None:
    """asyncio's loop blocks in select(); under gevent's patched threading the loop
    "thread" is a greenlet and would block the hub, or never run: events silently lost.
    Refuse instead."""
    monkey = sys.modules.get("gevent.monkey")
    if monkey is not None and monkey.is_module_patched("threading"):
        raise ClientStateError(
            "SyncFuulClient cannot run under gevent monkey-patching: its event loop needs "
            "a real OS thread. Send events from gevent code with FuulClient on an asyncio "
            "loop in an unpatched thread, or do not patch threading"
        )


class SyncFuulClient(SyncApiGroups):
    """The Fuul events API client for sync code. Thread-safe; one per API key and
    process is enough (threads share it). Takes :class:`~aiofuul.FuulClient`'s options,
    except ``session`` (an aiohttp session belongs to another loop), plus:

    :param close_at_exit: deliver queued events at interpreter exit, within
        ``config.close_timeout`` (default True).

    ``on_error`` is called on the client's own thread. A ``transport`` is shared with a
    forked child as it is.
    """

    def __init__(
        self,
        api_key: str | None = None,
        *,
        base_url: str | None = None,
        config: ClientConfig | None = None,
        on_error: OnError | None = None,
        outbox: str | os.PathLike[str] | None = None,
        limiter: str | None = None,
        project_id: str | None = None,
        transport: Transport | None = None,
        clock: Callable[[], float] = time.monotonic,
        close_at_exit: bool = True,
    ):
        _check_gevent()
        key = api_key if api_key is not None else os.environ.get("FUUL_API_KEY", "")
        if not key or not key.strip():
            raise ClientStateError("no API key: pass api_key=... or set FUUL_API_KEY")
        self.config = config or ClientConfig()
        resolve_base_url(base_url, self.config.allow_insecure_http)  # refuse it now
        self._options: dict[str, Any] = dict(
            api_key=key, base_url=base_url, config=self.config, on_error=on_error,
            limiter=limiter, project_id=project_id, transport=transport, clock=clock,
        )  # fmt: skip
        self._outbox = outbox
        self._pid = os.getpid()
        self._lock = threading.Lock()
        self._runner: Runner | None = None
        # The hot path reads this alone: None until started, after close or a fork.
        self._client: FuulClient | None = None
        self._closed = False
        self._final: Stats | None = None
        self._hooks: list[Callable[[FuulClient], None]] = []  # see _each_client
        self.close_at_exit = close_at_exit
        self._site = creation_site()  # for the warning if it is dropped unclosed
        _clients.add(self)

    def __repr__(self) -> str:
        state = "closed" if self._closed else "open"
        return f"<SyncFuulClient api_key=<redacted> {state}>"

    def __enter__(self) -> SyncFuulClient:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    # -- life cycle ---------------------------------------------------------------------
    def _forked_reset(self) -> None:
        """In a forked child: the lock may have been held by a thread that is gone."""
        self._lock = threading.Lock()
        self._client = None

    def _running(self) -> FuulClient:
        """The async client, started on first use here (or in a forked child)."""
        with self._lock:
            if self._closed:
                raise ClientStateError("this SyncFuulClient is closed")
            runner = self._runner
            if runner is not None and runner.pid == os.getpid():
                self._client = runner.client
                return runner.client
            self._runner = runner = Runner.start(
                self._make_client(), self._site, self.close_at_exit
            )
            self._client = runner.client
            return runner.client

    def _make_client(self) -> FuulClient:
        outbox = self._outbox
        # A Redis outbox is shared by design: a forked child joins it as a consumer.
        if outbox is not None and not is_redis_url(outbox) and os.getpid() != self._pid:
            outbox = outbox_for_pid(outbox, os.getpid())
        client = FuulClient(outbox=outbox, **self._options)
        for hook in self._hooks:
            hook(client)
        return client

    def _each_client(self, hook: Callable[[FuulClient], None]) -> None:
        """Call ``hook`` with the async client running in this process, if any, and with
        each one made later (on first use, in a forked child) before it starts: how
        :mod:`aiofuul.metrics` follows a client that may not exist yet."""
        with self._lock:
            self._hooks.append(hook)
            runner = self._own_runner()
        if runner is not None:
            hook(runner.client)

    def _own_runner(self) -> Runner | None:
        runner = self._runner
        return runner if runner is not None and runner.pid == os.getpid() else None

    def close(self, timeout: float | None = None) -> None:
        """Stop taking events, deliver what is queued within ``timeout`` seconds (default
        ``config.close_timeout``), report the rest (``on_error``, the log), stop the
        thread. Safe to call twice; returns within ``timeout`` plus three seconds."""
        with self._lock:
            if self._closed:
                return
            runner = self._own_runner()
            if runner is not None and threading.get_ident() == runner.thread.ident:
                # Before any state changes: the client goes on, and closes later.
                raise ClientStateError("close() called on the client's own thread (on_error?)")
            self._closed, self._client = True, None
        if runner is None:
            return
        wait = self.config.close_timeout if timeout is None else timeout
        lost = runner.stop(wait)
        self._final = runner.client.stats()
        if lost:
            log.warning("SyncFuulClient closed: %d event(s) could not be delivered", lost)

    def __del__(self) -> None:
        # Dropped unclosed: its runner delivers what it holds, then closes itself.
        runner: Runner | None = getattr(self, "_runner", None)
        if runner is None or runner.pid != os.getpid() or self._closed:
            return
        if not sys.is_finalizing():
            runner.drop(self.close_at_exit)

    # -- tracking -----------------------------------------------------------------------
    def track(
        self,
        name: str,
        user: User | None = None,
        *,
        dedup_id: str | None = None,
        args: Mapping[str, Any] | None = None,
        timestamp: int | str | None = None,
        **fields: Unpack[EventFields],
    ) -> str:
        """Queue an event and return its ``dedup_id`` at once; see
        :meth:`FuulClient.track <aiofuul.FuulClient.track>`. Non-blocking and
        thread-safe; raises :class:`~aiofuul.ValidationError` in the caller."""
        client = self._client
        if client is None:
            client = self._running()
        return client.track_threadsafe(
            name, user, dedup_id=dedup_id, args=args, timestamp=timestamp, **fields
        )

    def flush(self, timeout: float | None = None) -> bool:
        """Block until every event tracked before this call is delivered or reported;
        False if ``timeout`` seconds passed first. True at once if nothing was tracked."""
        if self._own_runner() is None or self._client is None:
            return True
        client = self._client
        try:
            return self._call(client.flush(timeout), timeout)
        except TimeoutError:
            return False

    def add_observer(self, observer: Observer) -> Callable[[], None]:
        """Tell ``observer(outcome, waited)`` of every settlement of a tracked event from
        now on, as :meth:`FuulClient.add_observer <aiofuul.FuulClient.add_observer>` does.
        It runs on the client's own thread (keep it quick), and follows the client into a
        forked child. Returns a function that removes it.

        Example::

            remove = fuul.add_observer(lambda outcome, waited: print(outcome, len(waited)))
            ...
            remove()
        """
        removers: list[Callable[[], None]] = []
        active = True

        def hook(client: FuulClient) -> None:
            if active:
                removers.append(client.add_observer(observer))

        self._each_client(hook)

        def remove() -> None:
            nonlocal active
            active = False
            for undo in removers:
                undo()
            removers.clear()

        return remove

    def stats(self) -> Stats:
        """A snapshot of the counters (see :class:`~aiofuul.Stats`); all zero before the
        first call in this process, the final ones after :meth:`close`."""
        runner = self._own_runner()
        if runner is not None:
            return runner.client.stats()
        if self._final is not None:
            return self._final
        return _zero_stats()

    # -- blocking calls -------------------------------------------------------------------
    def _call(self, coro: Coroutine[Any, Any, T], timeout: float | None) -> T:
        """Run ``coro`` on the client's loop and wait for it; :class:`FuulTimeoutError`
        (and the call cancelled) if ``timeout`` seconds pass."""
        runner = self._runner
        if runner is None or threading.get_ident() == runner.thread.ident:
            coro.close()
            raise ClientStateError("a blocking call cannot run on the client's own thread")
        future = asyncio.run_coroutine_threadsafe(coro, runner.loop)
        try:
            return future.result(None if timeout is None else timeout + GRACE)
        except concurrent.futures.TimeoutError:
            future.cancel()
            raise FuulTimeoutError(f"no answer within {timeout} s") from None

    def send_event(
        self,
        name: str,
        user: User | None = None,
        *,
        dedup_id: str | None = None,
        args: Mapping[str, Any] | None = None,
        timestamp: int | str | None = None,
        timeout: float | None = None,
        **fields: Unpack[EventFields],
    ) -> SendResult:
        """:meth:`FuulClient.send_event <aiofuul.FuulClient.send_event>`, blocking; raises
        the same errors, and :class:`~aiofuul.FuulTimeoutError` after ``timeout`` seconds."""
        client = self._running()
        coro = client.send_event(
            name, user, dedup_id=dedup_id, args=args, timestamp=timestamp, **fields
        )
        return self._call(coro, timeout)

    def send_batch(
        self,
        events: Sequence[Event],
        *,
        project_id: str | None = None,
        timeout: float | None = None,
    ) -> BatchResult:
        """:meth:`FuulClient.send_batch <aiofuul.FuulClient.send_batch>`, blocking."""
        client = self._running()
        return self._call(client.send_batch(events, project_id=project_id), timeout)

    def event_status(
        self, user: User, name: str, *, project_id: str | None = None, timeout: float | None = None
    ) -> bool:
        """:meth:`FuulClient.event_status <aiofuul.FuulClient.event_status>`, blocking."""
        client = self._running()
        return self._call(client.event_status(user, name, project_id=project_id), timeout)

    def event_pipeline(
        self,
        event_id: str | None = None,
        *,
        dedup_id: str | None = None,
        event_name: str | None = None,
        project_id: str | None = None,
        timeout: float | None = None,
    ) -> EventPipeline | None:
        """:meth:`FuulClient.event_pipeline <aiofuul.FuulClient.event_pipeline>`,
        blocking."""
        client = self._running()
        coro = client.event_pipeline(
            event_id, dedup_id=dedup_id, event_name=event_name, project_id=project_id
        )
        return self._call(coro, timeout)

    def wait_for_pipeline(
        self,
        event_id: str | None = None,
        *,
        dedup_id: str | None = None,
        event_name: str | None = None,
        timeout: float = 60.0,
        interval: float = 3.0,
        project_id: str | None = None,
    ) -> EventPipeline | None:
        """:meth:`FuulClient.wait_for_pipeline <aiofuul.FuulClient.wait_for_pipeline>`,
        blocking: polls every ``interval`` s for up to ``timeout`` s, then returns the
        last answer (None if the event was never found)."""
        client = self._running()
        coro = client.wait_for_pipeline(
            event_id, dedup_id=dedup_id, event_name=event_name, timeout=timeout,
            interval=interval, project_id=project_id,
        )  # fmt: skip
        # The poll bounds itself; the margin lets its last request answer.
        return self._call(coro, timeout + self.config.timeout)

    def conversions(
        self, *, project_id: str | None = None, timeout: float | None = None
    ) -> list[Conversion]:
        """:meth:`FuulClient.conversions <aiofuul.FuulClient.conversions>`, blocking."""
        client = self._running()
        return self._call(client.conversions(project_id=project_id), timeout)


def _zero_stats() -> Stats:
    fields: dict[str, Any] = {f.name: 0 for f in msgspec.structs.fields(Stats) if f.required}
    return Stats(**fields)
