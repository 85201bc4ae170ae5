"""What every endpoint group of :mod:`aiofuul.api` shares: its lane, one request (a read,
or a write) through the one retry loop (:func:`aiofuul.engine.delivery.call`), and the three
paging styles turned into a :class:`~aiofuul.api.paginator.Paginator`."""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any, ClassVar, TypeVar
from urllib.parse import quote

import msgspec

from ..engine.delivery import Duplicate, call
from ..engine.limits import LaneName
from ..errors import AmbiguousWriteError, APIError, PermissionDeniedError, TransportError
from ._decode import convert, decode_json
from ._query import check_int_range
from .endpoints import Endpoints
from .paginator import Page, PageToken, Paginator

__all__ = ["Group", "Written", "check_paging", "segment"]

T = TypeVar("T")

#: Where a list's total count may be, by endpoint.
_TOTALS = ("total_results", "total_count", "count")


def segment(value: str) -> str:
    """A value as one path segment (a code holding ``/`` stays one segment)."""
    return quote(value, safe="")


class Written(msgspec.Struct, frozen=True):
    """What the server answered a write it took (a 2xx): ``body`` is the answer's JSON,
    None when it was empty (Fuul publishes no answer for most writes).

    Example::

        answer = await fuul.users.set_referrer(user, referrer)
        if answer.changed is False:
            print("already so")
    """

    body: Any = None

    @property
    def changed(self) -> bool | None:
        """The answer's ``changed`` field: False when the write found things already as
        asked (the sandbox says so; a server may), None when the answer does not say."""
        value = self.body.get("changed") if isinstance(self.body, dict) else None
        return value if isinstance(value, bool) else None


def _int(value: object) -> int | None:
    if isinstance(value, bool):
        return None
    if isinstance(value, int):
        return value
    if isinstance(value, str) and value.isdigit():
        return int(value)
    return None


def _envelope(raw: Any, items_key: str) -> tuple[list[Any], dict[str, Any]] | None:
    if not isinstance(raw, dict) or not isinstance(raw.get(items_key), list):
        return None
    return raw[items_key], raw


def check_paging(
    page_size: object, limit: object, high: int = 100, field: str = "page_size"
) -> None:
    """``page_size`` (None: the server's default) from 1 to ``high``; ``limit`` (the rows
    to yield at most; None: all) at least 0."""
    if page_size is not None:
        check_int_range(field, page_size, 1, high)
    if limit is not None:
        check_int_range("limit", limit, 0, 2**62)


class Group:
    """An endpoint group (``fuul.users``, ``fuul.payouts``, ...): its requests go on the
    client's lane of the same name, within that lane's limit."""

    _lane: ClassVar[LaneName]
    #: The kind of key the group's endpoints need, named in a 403's message.
    _needs: ClassVar[str] = "read"

    def __init__(self, client: Endpoints):
        self._client = client

    def __repr__(self) -> str:
        return f"<{type(self).__name__} of {self._client!r}>"

    @property
    def _check_format(self) -> bool:
        return self._client._events.check_format

    async def _get(self, path: str, params: Mapping[str, str], read: Callable[[Any], T]) -> T:
        """``GET path``, retried as every call is; ``read`` makes the answer of the
        decoded JSON (raising ``msgspec.ValidationError``, ``KeyError``,
        ``TypeError`` or ``ValueError`` when it is not the API's answer: retried)."""
        return await self._send("GET", path, params, None, read, needs=self._needs)

    async def _write(
        self,
        method: str,
        path: str,
        read: Callable[[Any], T],
        *,
        params: Mapping[str, str] | None = None,
        body: Any = None,
        idempotent: bool = True,
        check: str = "",
    ) -> T:
        """A write (a service-role key): ``body`` is sent as JSON; an empty answer is
        ``read(None)``. ``idempotent=False``: sent again only when it surely did not
        arrive, else :class:`~aiofuul.AmbiguousWriteError` saying how to ``check``."""
        encoded = None if body is None else msgspec.json.encode(body)
        try:
            return await self._send(
                method, path, params, encoded, read, needs="service-role",
                empty_ok=True, idempotent=idempotent,
            )  # fmt: skip
        except AmbiguousWriteError as exc:
            raise exc.with_check(check) from exc.cause

    async def _send(
        self,
        method: str,
        path: str,
        params: Mapping[str, str] | None,
        body: bytes | None,
        read: Callable[[Any], T],
        *,
        needs: str,
        empty_ok: bool = False,
        idempotent: bool = True,
    ) -> T:
        client = self._client
        client._check_usable()
        lane = client._lanes[self._lane]

        # The answer travels in a 1-tuple: None is how accept says "not the API's answer".
        def accept(answer: bytes) -> tuple[T] | None:
            empty = empty_ok and not answer.strip()
            raw = None if empty else decode_json(answer)
            try:
                return None if raw is None and not empty else (read(raw),)
            except (msgspec.ValidationError, KeyError, TypeError, ValueError, RecursionError):
                return None  # RecursionError: nested deeper than the readers recurse

        try:
            outcome = await call(
                lane, client._transport, client.config.retry, accept, body=body,
                params=params, path=path, method=method, idempotent=idempotent,
            )  # fmt: skip
        except PermissionDeniedError as exc:
            raise exc.for_scope(needs) from None
        if isinstance(outcome, Duplicate):
            if method == "GET":
                raise TransportError(f"GET {path}: answered 409 to a read")
            raise APIError(409, f"{method} {path}: conflict")
        return outcome.value[0]

    async def _one(self, path: str, params: Mapping[str, str], model: type[T]) -> T:
        return await self._get(path, params, lambda raw: convert(raw, model))

    def _numbered(
        self,
        path: str,
        params: Mapping[str, str],
        model: type[T],
        *,
        page_size: int | None,
        limit: int | None,
        start: PageToken,
        items: str = "results",
    ) -> Paginator[T]:
        """A list in pages ``page=1, 2...``; the next page is ``next_page`` when the
        answer has that key, else the next number while ``total`` says rows remain, else
        (no total either) the next number after a full page. ``page_size`` is sent only
        when the caller gives one (the server's default otherwise)."""

        learned = [0]

        def read(raw: Any, number: int) -> Page[T]:
            found = _envelope(raw, items)
            if found is None:
                raise ValueError("not a page")
            rows, envelope = found
            total = next((_int(envelope[k]) for k in _TOTALS if k in envelope), None)
            # The page size the server used; when neither it nor the caller says, the
            # longest page seen so far stands for it (the server's default size).
            learned[0] = max(learned[0], len(rows))
            size = _int(envelope.get("page_size")) or page_size or learned[0]
            following: int | None
            if "next_page" in envelope:
                following = _int(envelope["next_page"])
            elif total is not None:
                following = number + 1 if size and number * size < total else None
            else:
                following = number + 1 if size and len(rows) >= size else None
            rest = {k: v for k, v in envelope.items() if k not in (items, "next_page", *_TOTALS)}
            return Page([convert(r, model) for r in rows], total, following, rest)

        async def fetch(token: PageToken) -> Page[T]:
            number = 1 if token is None else int(token)
            query = {**params, "page": str(number)}
            if page_size is not None:
                query["page_size"] = str(page_size)
            return await self._get(path, query, lambda raw: read(raw, number))

        return Paginator(fetch, limit=limit, start=start)

    def _cursor(
        self,
        path: str,
        params: Mapping[str, str],
        model: type[T],
        *,
        size: tuple[str, int] | None,
        limit: int | None,
        start: PageToken,
        items: str = "results",
    ) -> Paginator[T]:
        """A list walked with ``after=<cursor>``: it ends when ``next_cursor`` is null,
        and only then (a page may be empty before the end)."""

        def read(raw: Any) -> Page[T]:
            found = _envelope(raw, items)
            if found is None:
                raise ValueError("not a page")
            rows, envelope = found
            cursor = envelope.get("next_cursor")
            following = str(cursor) if cursor not in (None, "") else None
            # "count" is kept in extra: whether it counts the page or the list is not said.
            rest = {k: v for k, v in envelope.items() if k not in (items, "next_cursor")}
            return Page([convert(r, model) for r in rows], None, following, rest)

        async def fetch(token: PageToken) -> Page[T]:
            query = dict(params)
            if size is not None:
                query[size[0]] = str(size[1])
            if token is not None:
                query["after"] = str(token)
            return await self._get(path, query, read)

        return Paginator(fetch, limit=limit, start=start)
