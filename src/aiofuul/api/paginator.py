"""One paginator for every list of the API, whatever its style.

Fuul pages in three ways: page numbers with a total (``total_results``, ``count`` or
``total_count``), page numbers with ``next_page`` (a number, or null at the end), and
cursors (``after`` -> ``next_cursor``), where a page may come back empty while the
cursor says there is more. A :class:`Paginator` hides them: it asks for the next page
while the server says there is one, and never stops on an empty page alone.

Example::

    page = await fuul.payouts.movements(user)          # the first page
    print(page.total, len(page.items), page.next)
    async for row in fuul.payouts.movements(user):     # every row, one page held at a time
        print(row.date, row.total_amount)
    async for page in fuul.payouts.movements(user).pages():
        ...
"""

from __future__ import annotations

from collections.abc import AsyncGenerator, AsyncIterator, Awaitable, Callable, Generator
from dataclasses import dataclass, field
from typing import Any, Generic, TypeVar

from ..errors import TransportError

__all__ = ["Page", "PageToken", "Paginator"]

T = TypeVar("T")

#: Where a page starts: a page number, or a cursor; None for the first page.
PageToken = int | str | None


@dataclass(frozen=True)
class Page(Generic[T]):
    """One page of a list: its ``items``, the ``total`` count when the server says it,
    and ``next``, the token of the next page (a page number or a cursor; None: this is
    the last page). ``extra`` holds the envelope's other fields (``calculated_at``...)."""

    items: list[T]
    total: int | None = None
    next: PageToken = None
    extra: dict[str, Any] = field(default_factory=dict)


#: Fetches the page that starts at a token.
Fetch = Callable[[PageToken], Awaitable[Page[T]]]


class Paginator(Generic[T]):
    """A list of the API, fetched lazily: ``await`` it for the first page, ``async for``
    over it for every row (one page in memory at a time), :meth:`pages` for the pages.

    ``limit`` caps the rows yielded (pages are trimmed to it); ``start`` resumes a walk
    at a page's ``next`` token (what ``aiofuul export`` keeps in its checkpoint).
    Nothing is sent until it is awaited or iterated; each walk starts afresh.
    """

    def __init__(self, fetch: Fetch[T], *, limit: int | None = None, start: PageToken = None):
        self._fetch = fetch
        self.limit = limit
        self.start = start

    def __repr__(self) -> str:
        return f"<Paginator limit={self.limit} start={self.start!r}>"

    def __await__(self) -> Generator[Any, None, Page[T]]:
        return self.first_page().__await__()

    async def first_page(self) -> Page[T]:
        """The page at ``start`` (the first one by default), trimmed to ``limit``."""
        page = await self._fetch(self.start)
        return self._trim(page, self.limit)

    @staticmethod
    def _trim(page: Page[T], left: int | None) -> Page[T]:
        if left is None or len(page.items) <= left:
            return page
        return Page(page.items[:left], page.total, page.next, page.extra)

    async def pages(self) -> AsyncGenerator[Page[T], None]:
        """Every page from ``start`` on, until the server says there is no next one (or
        ``limit`` rows were yielded). An empty page with a next token is yielded and
        walked past; an empty one pointing at itself raises
        :class:`~aiofuul.TransportError` (a server that would loop forever)."""
        token, left = self.start, self.limit
        while left is None or left > 0:
            page = self._trim(await self._fetch(token), left)
            if left is not None:
                left -= len(page.items)
            yield page
            if page.next is None:
                return
            if page.next == token and not page.items:
                # The server's word would walk in place forever: say so instead.
                raise TransportError(f"the list's cursor did not advance past {token!r}")
            token = page.next

    def __aiter__(self) -> AsyncIterator[T]:
        return self._rows()

    async def _rows(self) -> AsyncIterator[T]:
        async for page in self.pages():
            for item in page.items:
                yield item
