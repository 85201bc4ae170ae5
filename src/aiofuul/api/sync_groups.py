"""The endpoint groups of :mod:`aiofuul.api` for :class:`~aiofuul.SyncFuulClient`: every
method, reads and writes, blocking, with a ``timeout=`` (seconds; None: as long as the
retries take), and every list a :class:`SyncPaginator` (plain iterators instead of
async ones).

Written once for all groups: a call is the async group's method run on the sync
client's loop, so the rules, lanes, limits, retries and errors are the same (a
``generate`` whose answer was lost raises :class:`~aiofuul.AmbiguousWriteError` here
too). A ``timeout`` that expires cancels the call: ``generate`` and ``use`` may have
been sent by then, which is as ambiguous as a lost answer (check before trying again).

Example::

    fuul = SyncFuulClient()
    who = fuul.users.referrer(user, timeout=10)
    fuul.users.set_referrer(user, referrer)
    codes = fuul.referral_codes.generate(user, quantity=2)
    for movement in fuul.payouts.movements(user):
        print(movement.date, movement.total_amount)
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable, Coroutine, Iterator
from typing import TYPE_CHECKING, Any, Generic, TypeVar

from .paginator import Page, Paginator

if TYPE_CHECKING:
    from ..client import FuulClient

__all__ = ["SyncApiGroups", "SyncGroup", "SyncPaginator"]

T = TypeVar("T")

#: Runs a coroutine on the client's loop and waits for it: ``(coro, timeout) -> result``.
Runner = Callable[[Coroutine[Any, Any, Any], "float | None"], Any]


class SyncPaginator(Generic[T]):
    """A :class:`~aiofuul.api.paginator.Paginator` for sync code: iterate it for every
    row (one page in memory at a time), :meth:`pages` for the pages, :meth:`first_page`
    for the first. Each page waits at most ``timeout`` seconds."""

    def __init__(self, paginator: Paginator[T], run: Runner, timeout: float | None):
        self._paginator = paginator
        self._run = run
        self._timeout = timeout

    def first_page(self) -> Page[T]:
        """The first page (``await paginator`` of the async client)."""
        page: Page[T] = self._run(self._paginator.first_page(), self._timeout)
        return page

    def pages(self) -> Iterator[Page[T]]:
        """Every page, fetched as the loop asks for it."""
        walk = self._paginator.pages()
        try:
            while True:
                try:
                    page: Page[T] = self._run(_next(walk), self._timeout)
                except StopAsyncIteration:
                    return
                yield page
        finally:
            # The walk lives on the client's loop: it is closed there.
            self._run(walk.aclose(), self._timeout)

    def __iter__(self) -> Iterator[T]:
        for page in self.pages():
            yield from page.items


async def _next(walk: AsyncIterator[T]) -> T:
    return await walk.__anext__()


class SyncGroup:
    """One endpoint group of the sync client: ``fuul.payouts.totals(user, timeout=5)``
    calls ``FuulClient.payouts.totals`` on the client's loop. Methods that return a
    paginator return a :class:`SyncPaginator`."""

    def __init__(self, owner: SyncApiGroups, name: str):
        self._owner = owner
        self._name = name

    def __repr__(self) -> str:
        return f"<SyncGroup {self._name}>"

    def __getattr__(self, method: str) -> Callable[..., Any]:
        if method.startswith("_"):
            raise AttributeError(method)
        owner, name = self._owner, self._name

        def blocking(*args: Any, timeout: float | None = None, **kwargs: Any) -> Any:
            client = owner._running()
            result = getattr(getattr(client, name), method)(*args, **kwargs)
            if isinstance(result, Paginator):
                return SyncPaginator(result, owner._call, timeout)
            return owner._call(result, timeout)

        blocking.__name__ = method
        return blocking


class SyncApiGroups:
    """The endpoint groups of :class:`~aiofuul.SyncFuulClient` (a base class of it)."""

    def _running(self) -> FuulClient:
        raise NotImplementedError

    def _call(self, coro: Coroutine[Any, Any, T], timeout: float | None) -> T:
        raise NotImplementedError

    @property
    def users(self) -> SyncGroup:
        """:attr:`FuulClient.users <aiofuul.FuulClient.users>`, blocking."""
        return SyncGroup(self, "users")

    @property
    def referral_codes(self) -> SyncGroup:
        """:attr:`FuulClient.referral_codes <aiofuul.FuulClient.referral_codes>`, blocking."""
        return SyncGroup(self, "referral_codes")

    @property
    def affiliates(self) -> SyncGroup:
        """:attr:`FuulClient.affiliates <aiofuul.FuulClient.affiliates>`, blocking."""
        return SyncGroup(self, "affiliates")

    @property
    def leaderboards(self) -> SyncGroup:
        """:attr:`FuulClient.leaderboards <aiofuul.FuulClient.leaderboards>`, blocking."""
        return SyncGroup(self, "leaderboards")

    @property
    def payouts(self) -> SyncGroup:
        """:attr:`FuulClient.payouts <aiofuul.FuulClient.payouts>`, blocking."""
        return SyncGroup(self, "payouts")

    @property
    def claim_checks(self) -> SyncGroup:
        """:attr:`FuulClient.claim_checks <aiofuul.FuulClient.claim_checks>`, blocking."""
        return SyncGroup(self, "claim_checks")

    @property
    def audiences(self) -> SyncGroup:
        """:attr:`FuulClient.audiences <aiofuul.FuulClient.audiences>`, blocking."""
        return SyncGroup(self, "audiences")

    @property
    def affiliate_portal(self) -> SyncGroup:
        """:attr:`FuulClient.affiliate_portal <aiofuul.FuulClient.affiliate_portal>`,
        blocking."""
        return SyncGroup(self, "affiliate_portal")
