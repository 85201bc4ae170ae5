"""OpenTelemetry metrics for a Fuul client, off unless asked for.

Needs ``opentelemetry-api`` (``pip install 'aiofuul[otel]'``); ``import aiofuul`` does
not. The counters and gauges are read from ``stats()`` when a reader collects them, so
they cost nothing in between; only the delivery latency is recorded as events settle.

Example::

    from opentelemetry.sdk.metrics import MeterProvider
    from opentelemetry.sdk.metrics.export import InMemoryMetricReader

    from aiofuul import FuulClient
    from aiofuul.metrics import instrument

    reader = InMemoryMetricReader()
    fuul = FuulClient()
    instrument(fuul, MeterProvider(metric_readers=[reader]), name="web")
"""

from __future__ import annotations

import logging
import operator
import threading
import weakref
from collections.abc import Callable, Iterable, Sequence
from typing import TYPE_CHECKING, Any

from ._version import __version__
from .client import FuulClient
from .engine.seams import Settlement
from .sync import SyncFuulClient

if TYPE_CHECKING:
    from opentelemetry.metrics import CallbackOptions, Histogram, Meter, MeterProvider, Observation

__all__ = ["Instrumentation", "instrument"]

log = logging.getLogger("aiofuul")

#: Delivery latency buckets (s): a lone event's few milliseconds to a long backlog.
_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 300.0)
# (name, kind, unit, description, attribute, {attribute value: Stats field}); a sum of
# the clients registered with one provider, except the age (the largest).
_OBSERVED: tuple[tuple[str, str, str, str, str, dict[str, str]], ...] = (
    ("fuul.client.events", "counter", "{event}",
     "Events accepted by track() (tracked), and settled, by outcome.", "fuul.outcome",
     {"tracked": "tracked", "delivered": "delivered", "duplicate": "duplicates",
      "rejected": "rejected", "failed": "failed", "dropped": "dropped",
      "handed_off": "handed_off"}),
    ("fuul.client.requests", "counter", "{request}", "Requests sent, by endpoint.",
     "fuul.endpoint", {"single": "requests_single", "batch": "requests_batch"}),
    ("fuul.client.rate_limited", "counter", "{request}", "Requests answered 429, by endpoint.",
     "fuul.endpoint", {"single": "rate_limited_single", "batch": "rate_limited_batch"}),
    ("fuul.client.retries", "counter", "{retry}",
     "Failed or rate-limited requests whose events were queued again.", "", {"": "retries"}),
    ("fuul.client.queued", "up_down_counter", "{event}",
     "Events accepted and not settled yet (in flight included).", "", {"": "queued"}),
    ("fuul.client.in_flight", "up_down_counter", "{event}",
     "Events in requests awaiting an answer.", "", {"": "in_flight"}),
    ("fuul.client.oldest_queued_age", "gauge", "s",
     "How long the oldest event waiting to be sent has waited.", "", {"": "oldest_queued_age"}),
)  # fmt: skip
#: What the histogram shows: the outcome's counter, and its name in the attribute.
_SETTLED: dict[Settlement, str] = {"delivered": "delivered", "duplicates": "duplicate"}


class Instrumentation:
    """One client's metrics, as :func:`instrument` registered them. Keeping it is not
    needed: they last as long as the client; :meth:`close` stops them sooner."""

    def __init__(self, fuul: FuulClient | SyncFuulClient, meters: _Meters, name: str | None):
        self._fuul = weakref.ref(fuul)
        self._meters = meters
        self._attributes: dict[str, str] = {} if name is None else {"fuul.client.name": name}
        self._latency = {k: {**self._attributes, "fuul.outcome": v} for k, v in _SETTLED.items()}
        # What removes our observer, per client timed.
        self._hooked: weakref.WeakKeyDictionary[FuulClient, Callable[[], None]]
        self._hooked = weakref.WeakKeyDictionary()
        self._closed = False

    def close(self) -> None:
        """Stop measuring: the client's series leave the next collection, and its
        settlements are no longer timed. Safe to call twice."""
        self._closed = True
        self._meters.registrations.discard(self)
        for remove in list(self._hooked.values()):
            remove()
        self._hooked.clear()

    def _hook(self, client: FuulClient) -> None:
        """Time the settlements of ``client``, through its observer API."""
        if self._closed or client in self._hooked:
            return
        record, latency = self._meters.histogram.record, self._latency

        def observe(outcome: Settlement, waited: Sequence[float]) -> None:
            attributes = latency.get(outcome)
            if attributes is None or self._closed:
                return
            for seconds in waited:
                record(seconds, attributes)

        self._hooked[client] = client.add_observer(observe)


class _Meters:
    """The instruments of one meter provider, shared by every client registered with
    it: the SDK keeps the first callbacks of an instrument name and ignores later ones."""

    def __init__(self, meter: Meter, observation: type[Observation]):
        self.registrations: set[Instrumentation] = set()
        self._observation = observation
        self.histogram: Histogram = _histogram(meter)
        for name, kind, unit, description, key, fields in _OBSERVED:
            create = getattr(meter, f"create_observable_{kind}")
            callback = self._callback(key, fields, max if kind == "gauge" else operator.add)
            create(name, callbacks=[callback], unit=unit, description=description)

    def _callback(
        self, key: str, fields: dict[str, str], combine: Callable[[float, float], float]
    ) -> Callable[[CallbackOptions], Iterable[Observation]]:
        def observe(options: CallbackOptions) -> Iterable[Observation]:
            found: dict[tuple[tuple[str, str], ...], tuple[dict[str, str], float]] = {}
            for registration in tuple(self.registrations):
                fuul = registration._fuul()
                if fuul is None:
                    self.registrations.discard(registration)
                    continue
                stats, own = fuul.stats(), registration._attributes
                for value, field in fields.items():
                    attributes = {**own, key: value} if key else own
                    series, number = tuple(sorted(attributes.items())), getattr(stats, field)
                    old = found.get(series)
                    found[series] = (attributes, number if old is None else combine(old[1], number))
            return [self._observation(number, attrs) for attrs, number in found.values()]

        return observe


def _histogram(meter: Meter) -> Histogram:
    name, unit = "fuul.client.delivery.duration", "s"
    description = "From track() accepting an event to its delivery (or duplicate answer)."
    try:  # the advisory needs opentelemetry-api 1.23
        return meter.create_histogram(
            name, unit, description, explicit_bucket_boundaries_advisory=_BUCKETS
        )
    except TypeError:  # pragma: no cover - depends on the installed version
        return meter.create_histogram(name, unit, description)


_providers: weakref.WeakKeyDictionary[Any, _Meters] = weakref.WeakKeyDictionary()
_lock = threading.Lock()


def instrument(
    fuul: FuulClient | SyncFuulClient,
    meter_provider: MeterProvider | None = None,
    *,
    name: str | None = None,
) -> Instrumentation:
    """Publish ``fuul``'s counters and delivery latency as OpenTelemetry metrics on
    ``meter_provider`` (default: ``opentelemetry.metrics.get_meter_provider()``), under
    the meter ``aiofuul``. ``name`` becomes the ``fuul.client.name`` attribute of every
    series: give one to each client when several share a provider (their series
    would otherwise add up). Works before or after the client starts; a
    :class:`~aiofuul.SyncFuulClient` is not started by it."""
    try:
        from opentelemetry import metrics
    except ImportError:
        raise ImportError("aiofuul.metrics needs: pip install 'aiofuul[otel]'") from None
    provider = meter_provider if meter_provider is not None else metrics.get_meter_provider()
    with _lock:
        meters = _providers.get(provider)
        if meters is None:
            meter = provider.get_meter("aiofuul", __version__)
            meters = _providers[provider] = _Meters(meter, metrics.Observation)
        registration = Instrumentation(fuul, meters, name)
        for same in tuple(meters.registrations):  # twice the same: counted once
            if same._fuul() is fuul and same._attributes == registration._attributes:
                return same
        meters.registrations.add(registration)
    if isinstance(fuul, SyncFuulClient):
        fuul._each_client(registration._hook)
    else:
        registration._hook(fuul)
    return registration
