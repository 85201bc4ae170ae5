"""aiofuul.metrics: the OpenTelemetry instruments against the sandbox, read back through
the SDK's in-memory reader."""

from __future__ import annotations

import subprocess
import sys
import textwrap
from collections.abc import Iterator, Sequence
from typing import Any

import pytest
from opentelemetry.sdk.metrics import MeterProvider
from opentelemetry.sdk.metrics.export import InMemoryMetricReader, NumberDataPoint

from aiofuul import FuulClient, Stats, SyncFuulClient, User
from aiofuul.engine.seams import Settlement
from aiofuul.metrics import Instrumentation, instrument
from aiofuul.sandbox import Sandbox
from conftest import API_KEY, EVM, FAST_LIMITS, fast_config
from test_cli import ThreadSandbox

Series = dict[str, dict[tuple[tuple[str, Any], ...], Any]]


@pytest.fixture
def reader() -> InMemoryMetricReader:
    return InMemoryMetricReader()


@pytest.fixture
def provider(reader: InMemoryMetricReader) -> Iterator[MeterProvider]:
    """A provider of its own per test, read by ``reader``."""
    provider = MeterProvider(metric_readers=[reader])
    yield provider
    provider.shutdown()


def collect(reader: InMemoryMetricReader) -> Series:
    """Metric name -> {sorted attributes: value (a number, or a histogram point)}."""
    out: Series = {}
    data = reader.get_metrics_data()
    assert data is not None
    for resource in data.resource_metrics:
        for scope in resource.scope_metrics:
            assert scope.scope.name == "aiofuul"
            for metric in scope.metrics:
                points = out.setdefault(metric.name, {})
                for p in metric.data.data_points:
                    key = tuple(sorted((p.attributes or {}).items()))
                    points[key] = p.value if isinstance(p, NumberDataPoint) else p
    return out


def by(series: Series, name: str, attribute: str) -> dict[str, Any]:
    """The series of ``name`` keyed by the value of ``attribute``."""
    return {dict(key)[attribute]: value for key, value in series[name].items()}


def assert_matches(series: Series, stats: Stats) -> None:
    events = by(series, "fuul.client.events", "fuul.outcome")
    assert events == {
        "tracked": stats.tracked,
        "delivered": stats.delivered,
        "duplicate": stats.duplicates,
        "rejected": stats.rejected,
        "failed": stats.failed,
        "dropped": stats.dropped,
        "handed_off": stats.handed_off,
    }
    requests = by(series, "fuul.client.requests", "fuul.endpoint")
    assert requests == {"single": stats.requests_single, "batch": stats.requests_batch}
    limited = by(series, "fuul.client.rate_limited", "fuul.endpoint")
    assert limited == {"single": stats.rate_limited_single, "batch": stats.rate_limited_batch}
    assert list(series["fuul.client.retries"].values()) == [stats.retries]
    assert list(series["fuul.client.queued"].values()) == [stats.queued]
    assert list(series["fuul.client.in_flight"].values()) == [stats.in_flight]
    assert list(series["fuul.client.oldest_queued_age"].values()) == [stats.oldest_queued_age]
    latency = by(series, "fuul.client.delivery.duration", "fuul.outcome")
    assert sum(p.count for p in latency.values()) == stats.delivered + stats.duplicates


async def test_counters_match_stats_and_latency_counts_each_delivered_event(
    client: FuulClient, reader: InMemoryMetricReader, provider: MeterProvider
) -> None:
    instrument(client, provider)
    ids = [client.track("trade", EVM, args={"i": i}) for i in range(120)]
    client.track("trade", EVM, dedup_id=ids[0])  # a duplicate, answered as one
    assert await client.flush(timeout=10)
    stats = client.stats()
    assert stats.delivered == 120 and stats.duplicates == 1 and stats.queued == 0
    series = collect(reader)
    assert_matches(series, stats)
    assert stats.requests_single + stats.requests_batch > 0
    latency = by(series, "fuul.client.delivery.duration", "fuul.outcome")
    assert latency["delivered"].count == 120 and latency["duplicate"].count == 1
    assert 0 < latency["delivered"].max < 10
    units = {m.name: m.unit for m in _metrics(reader)}
    assert units["fuul.client.delivery.duration"] == "s"
    assert units["fuul.client.oldest_queued_age"] == "s"
    assert units["fuul.client.events"] == "{event}"
    # No attribute, name or description carries the key.
    assert API_KEY not in reader.get_metrics_data().to_json()  # type: ignore[union-attr]


def _metrics(reader: InMemoryMetricReader) -> list[Any]:
    data = reader.get_metrics_data()
    assert data is not None
    return [m for r in data.resource_metrics for s in r.scope_metrics for m in s.metrics]


async def test_a_rejected_event_is_counted_under_rejected_and_not_timed(
    reader: InMemoryMetricReader, provider: MeterProvider
) -> None:
    config = fast_config(check_identifier_format=False)  # the sandbox checks it
    async with (
        Sandbox(limits=FAST_LIMITS) as sb,
        FuulClient(API_KEY, base_url=sb.url, config=config, on_error=lambda *_: None) as fuul,
    ):
        instrument(fuul, provider, name="worker")
        for i in range(20):
            fuul.track("trade", User("0xnot-an-address", "evm_address") if i == 3 else EVM)
        assert await fuul.flush(timeout=10)
        stats = fuul.stats()
        series = collect(reader)
    assert stats.rejected == 1 and stats.delivered == 19
    assert_matches(series, stats)
    for points in series.values():  # every series carries the name
        assert all(dict(key)["fuul.client.name"] == "worker" for key in points)
    latency = by(series, "fuul.client.delivery.duration", "fuul.outcome")
    assert set(latency) == {"delivered"} and latency["delivered"].count == 19


async def test_instrumented_before_start_and_queued_gauges_while_waiting(
    sandbox: Sandbox, reader: InMemoryMetricReader, provider: MeterProvider
) -> None:
    fuul = FuulClient(API_KEY, base_url=sandbox.url, config=fast_config(linger=0.5))
    instrument(fuul, provider)
    async with fuul:
        for i in range(5):
            fuul.track("trade", EVM, args={"i": i})
        series = collect(reader)
        assert list(series["fuul.client.queued"].values()) == [5]
        assert next(iter(series["fuul.client.oldest_queued_age"].values())) >= 0
        assert await fuul.flush(timeout=10)
        assert_matches(collect(reader), fuul.stats())


async def test_another_observer_keeps_seeing_settlements_and_close_removes_only_ours(
    client: FuulClient, reader: InMemoryMetricReader, provider: MeterProvider
) -> None:
    seen: list[tuple[str, int]] = []

    def theirs(outcome: Settlement, waited: Sequence[float]) -> None:
        seen.append((outcome, len(waited)))

    remove = client.add_observer(theirs)
    registration = instrument(client, provider)
    assert isinstance(registration, Instrumentation)
    client.track("trade", EVM)
    assert await client.flush(timeout=5)
    assert seen == [("delivered", 1)]
    assert instrument(client, provider) is registration  # twice: counted once
    assert by(collect(reader), "fuul.client.events", "fuul.outcome")["delivered"] == 1
    registration.close()
    registration.close()
    client.track("trade", EVM)
    assert await client.flush(timeout=5)
    assert seen == [("delivered", 1), ("delivered", 1)]
    assert "fuul.client.events" not in collect(reader)
    remove()


async def test_two_named_clients_on_one_provider_keep_their_own_series(
    sandbox: Sandbox, reader: InMemoryMetricReader, provider: MeterProvider
) -> None:
    async with (
        FuulClient(API_KEY, base_url=sandbox.url, config=fast_config()) as a,
        FuulClient(API_KEY, base_url=sandbox.url, config=fast_config()) as b,
    ):
        instrument(a, provider, name="a")
        instrument(b, provider, name="b")
        for i in range(3):
            a.track("trade", EVM, args={"i": i})
        b.track("trade", EVM)
        assert await a.flush(timeout=5) and await b.flush(timeout=5)
        events = collect(reader)["fuul.client.events"]
    delivered = {
        dict(k)["fuul.client.name"]: v
        for k, v in events.items()
        if ("fuul.outcome", "delivered") in k
    }
    assert delivered == {"a": 3, "b": 1}


def test_sync_client_is_not_started_by_instrument_and_is_measured_once_it_is(
    reader: InMemoryMetricReader, provider: MeterProvider
) -> None:
    live = ThreadSandbox(limits=fast_config().limits)
    try:
        fuul = SyncFuulClient(API_KEY, base_url=live.sb.url, config=fast_config())
        instrument(fuul, provider, name="sync")
        assert fuul._runner is None  # lazy as before: no thread yet
        for i in range(30):
            fuul.track("trade", EVM, args={"i": i})
        assert fuul.flush(timeout=10)
        stats = fuul.stats()
        assert stats.delivered == 30
        assert_matches(collect(reader), stats)
        fuul.close()
    finally:
        live.close()


@pytest.mark.slow
def test_import_aiofuul_without_opentelemetry() -> None:
    code = textwrap.dedent(
        """
        import sys
        sys.modules["opentelemetry"] = None  # as if not installed
        import aiofuul
        from aiofuul import FuulClient
        from aiofuul.metrics import instrument
        try:
            instrument(FuulClient("k"))
        except ImportError as exc:
            assert "pip install 'aiofuul[otel]'" in str(exc), exc
        else:
            raise AssertionError("no ImportError")
        """
    )
    subprocess.run([sys.executable, "-c", code], check=True, timeout=60)
