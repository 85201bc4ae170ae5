"""Bulk upsert of a referral graph: one ``PUT user-referrers`` a row, a few in flight,
at the pace of the client's ``users`` lane (its rate limit), each row answered *set*,
*unchanged* (the server said it already was so) or *refused* (with the reason).

Every request is a :meth:`fuul.users.set_referrer <aiofuul.api.Users.set_referrer>`: it
waits for the lane's limit and retries like any call (a PUT is idempotent), and the
import adds no retries of its own. Usually reached as :func:`aiofuul.bulk.import_referrers`.

Example::

    from aiofuul import FuulClient, User
    from aiofuul.bulk import ReferrerRow, import_referrers

    bob = User("bob@example.com", "email")
    rows = [ReferrerRow(User(f"u{i}@example.com", "email"), bob) for i in range(500)]
    async with FuulClient() as fuul:  # key from FUUL_API_KEY, a service-role key
        result = await import_referrers(fuul, rows)
    print(result.set, result.unchanged, result.refused)

Stopping and resuming: setting ``stop`` starts no new row and lets those in flight be
answered, so every row is either answered (``on_done``) or never sent. A row started
(``on_start``) and not answered (the process died) is uncertain: pass its index in
``verify`` on the next run, and it is read back (``GET user/referrer``) before it is
sent again, so that no row is sent twice.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncGenerator, AsyncIterable, Callable, Container, Iterable
from contextlib import aclosing
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Literal

from .api.users import referral_body
from .errors import BadRequestError, NotFoundError, UnprocessableEntityError, ValidationError
from .wire.models import User

if TYPE_CHECKING:
    from .client import FuulClient

__all__ = ["ReferrerImportResult", "ReferrerRow", "RowOutcome", "import_referrers"]

#: What became of one row.
RowOutcome = Literal["set", "unchanged", "refused"]
#: What refuses one row for good, and only that row (anything else ends the import; a
#: 404 refuses only a row with a code, which may not exist).
_REFUSALS = (ValidationError, BadRequestError, UnprocessableEntityError)


@dataclass(frozen=True)
class ReferrerRow:
    """One edge of the graph: ``referrer`` referred ``user`` (through ``code``)."""

    user: User
    referrer: User
    code: str | None = None

    def check(self, check_format: bool = True) -> None:
        """Raise :class:`~aiofuul.ValidationError` naming the field when the client's
        rules refuse this row (the rules of ``set_referrer``)."""
        referral_body(self.user, self.referrer, self.code, check_format)


@dataclass
class ReferrerImportResult:
    """What an import did: rows ``set``, ``unchanged`` and ``refused`` (``(index,
    reason)``, indices counting from 0 in the rows given, in order). ``complete``: every row was
    answered (False when ``stop`` ended it first)."""

    set: int = 0
    unchanged: int = 0
    refused: list[tuple[int, str]] = field(default_factory=list)
    complete: bool = False

    @property
    def answered(self) -> int:
        """Rows answered so far."""
        return self.set + self.unchanged + len(self.refused)


async def _each(
    rows: Iterable[ReferrerRow] | AsyncIterable[ReferrerRow],
) -> AsyncGenerator[ReferrerRow, None]:
    if isinstance(rows, AsyncIterable):
        async for row in rows:
            yield row
    else:
        for row in rows:
            yield row


async def _already(fuul: FuulClient, row: ReferrerRow) -> bool:
    """Whether the server already holds this row (an uncertain row of a past run)."""
    who = await fuul.users.referrer(row.user)
    return who.referrer_identifier == row.referrer.identifier and who.referrer_code == row.code


async def _upsert(fuul: FuulClient, row: ReferrerRow, verify: bool) -> tuple[RowOutcome, str]:
    try:
        if verify and await _already(fuul, row):
            return "unchanged", ""
        answer = await fuul.users.set_referrer(row.user, row.referrer, row.code)
    except NotFoundError as exc:
        if row.code is None:
            # Only a code can be missing in this request: a 404 without one says the
            # endpoint is (a wrong base URL), for every row alike.
            raise
        return "refused", f"referral code {row.code!r} not found ({exc})"
    except _REFUSALS as exc:
        return "refused", str(exc)
    return ("unchanged" if answer.changed is False else "set"), ""


async def import_referrers(
    fuul: FuulClient,
    rows: Iterable[ReferrerRow] | AsyncIterable[ReferrerRow],
    *,
    concurrency: int = 8,
    stop: asyncio.Event | None = None,
    verify: Container[int] = (),
    on_start: Callable[[int], object] | None = None,
    on_done: Callable[[int, RowOutcome, str], object] | None = None,
) -> ReferrerImportResult:
    """Upsert every row (read as it goes), at most ``concurrency`` in flight; see the
    module docstring for ``stop``, ``verify``, ``on_start(index)`` and
    ``on_done(index, outcome, reason)``.

    A row refused (by the client's rules: not sent; or 400/422, or 404 for its code) is
    reported in ``refused``; any other error (a wrong key or base URL, retries run out)
    ends the import once the rows in flight are answered, and is raised.
    """
    if type(concurrency) is not int or concurrency < 1:
        raise ValidationError("concurrency", "must be an integer of at least 1", concurrency)
    result = ReferrerImportResult()
    stop = stop if stop is not None else asyncio.Event()
    running: set[asyncio.Task[None]] = set()
    # A row whose error ends the import: raised once the rows in flight are answered.
    failed: list[asyncio.Task[None]] = []

    def finished(task: asyncio.Task[None]) -> None:
        running.discard(task)
        if not task.cancelled() and task.exception() is not None:
            failed.append(task)

    async def one(index: int, row: ReferrerRow) -> None:
        outcome, reason = await _upsert(fuul, row, index in verify)
        if outcome == "refused":
            result.refused.append((index, reason))
        elif outcome == "set":
            result.set += 1
        else:
            result.unchanged += 1
        if on_done is not None:
            on_done(index, outcome, reason)

    stopping = asyncio.ensure_future(stop.wait())
    exhausted = False
    try:
        async with aclosing(_each(rows)) as source:
            index = 0
            async for row in source:
                while len(running) >= concurrency and not (stop.is_set() or failed):
                    await asyncio.wait({*running, stopping}, return_when=asyncio.FIRST_COMPLETED)
                if stop.is_set() or failed:
                    break
                if on_start is not None:
                    on_start(index)
                task = asyncio.ensure_future(one(index, row))
                running.add(task)
                task.add_done_callback(finished)
                index += 1
            else:
                exhausted = True
        if running:  # drained, not abandoned: every row sent gets its answer recorded
            await asyncio.wait(set(running))
    except BaseException:
        for task in running:
            task.cancel()
        await asyncio.gather(*running, return_exceptions=True)
        raise
    finally:
        stopping.cancel()
    result.refused.sort()  # answered in any order: reported in the rows' order
    if failed:
        failed[0].result()  # raises its error
    result.complete = exhausted
    return result
