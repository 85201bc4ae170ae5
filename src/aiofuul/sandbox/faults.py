"""The failures a :class:`~aiofuul.sandbox.Sandbox` can inject, the dice that choose them, and
the bodies it sends with them.

Every rate is the probability (0.0 to 1.0) that one request suffers that fault; all
default to off. The fields are plain attributes, so a test can change them while the
sandbox runs::

    sb.faults.error_rate = 1.0   # every request is answered 500, 502 or 503
    ...
    sb.faults.error_rate = 0.0
"""

from __future__ import annotations

import random
from dataclasses import dataclass
from http import HTTPStatus

import msgspec

__all__ = ["Dice", "Faults", "error_body", "roll"]


@dataclass
class Faults:
    """What goes wrong, and how often.

    - ``error_rate``: answer with a status from ``error_statuses`` (HTML or JSON body);
      nothing is stored.
    - ``latency``: seconds of delay before a request is processed (after it was counted
      against the rate limit).
    - ``drop_rate``: close the connection without any response. ``drop_after_store`` is
      the fraction of those drops that happen *after* the events were stored, so the
      client never learns that it succeeded.
    - ``garbage_rate``: answer a successful request (events stored) with a 2xx and an
      unreadable body, alternately ``<html>oops</html>`` and truncated JSON.
      ``garbage_stores=False`` makes it "2xx garbage, nothing stored": the body is still
      parsed and validated (an invalid one gets its 400), but a valid one is not stored
      (the store is not touched at all) and is answered 201 with the garbage body.
    - ``hang_rate``: never answer; the request waits until the client gives up or the
      sandbox stops. Nothing is stored.
    - ``seed``: seeds the random choices, for reproducible runs.
    """

    error_rate: float = 0.0
    error_statuses: tuple[int, ...] = (500, 502, 503)
    latency: float = 0.0
    drop_rate: float = 0.0
    drop_after_store: float = 0.5
    garbage_rate: float = 0.0
    hang_rate: float = 0.0
    seed: int | None = None
    garbage_stores: bool = True


def roll(rng: random.Random, rate: float) -> bool:
    """True with probability ``rate``; draws nothing when the fault is off, so turning one
    fault on does not change the random sequence another seeded fault sees."""
    return rate > 0.0 and (rate >= 1.0 or rng.random() < rate)


def _phrase(status: int) -> str:
    try:
        return HTTPStatus(status).phrase
    except ValueError:
        return "Error"


def error_body(rng: random.Random, status: int) -> tuple[bytes, str]:
    """A body and content type for an injected error: what a proxy in front of the API
    (HTML) or the API itself (JSON) would send."""
    title = f"{status} {_phrase(status)}"
    if rng.random() < 0.5:
        html = f"<html><head><title>{title}</title></head><body><h1>{title}</h1></body></html>"
        return html.encode(), "text/html"
    return msgspec.json.encode({"message": title, "statusCode": status}), "application/json"


def _garbage_body(good: bytes, html: bool) -> tuple[bytes, str]:
    """An unreadable body standing in for ``good``: HTML, or ``good`` cut in half (still
    labelled JSON, as a proxy that cut the stream would leave it)."""
    if html:
        return b"<html>oops</html>", "text/html"
    return good[: max(1, len(good) // 2)], "application/json"


class Dice:
    """The faults' random choices: one sequence seeded by ``Faults.seed``, started again
    when the faults or their seed change, so that a seeded run repeats its faults."""

    def __init__(self) -> None:
        self._rng = random.Random()
        self._rng_for: tuple[Faults, int | None] | None = None
        self._garbage_html = True

    def reset(self) -> None:
        """Start the sequence again from the seed (and the garbage bodies from HTML)."""
        self._rng_for = None
        self._garbage_html = True

    def rng(self, faults: Faults) -> random.Random:
        """The random source of ``faults``, reseeded when they or their seed changed."""
        last = self._rng_for
        # Identity, not equality: a new Faults object starts a new sequence.
        if last is None or last[0] is not faults or last[1] != faults.seed:
            self._rng = random.Random(faults.seed)
            self._rng_for = (faults, faults.seed)
        return self._rng

    def garbage_body(self, good: bytes) -> tuple[bytes, str]:
        """An unreadable body standing in for ``good``: HTML and cut JSON in turn."""
        body = _garbage_body(good, self._garbage_html)
        self._garbage_html = not self._garbage_html
        return body
