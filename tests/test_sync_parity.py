"""``SyncFuulClient`` mirrors ``FuulClient``: every public method and every endpoint group
(``fuul.<group>.<method>``) of the async client exists on the sync one, with the same
parameters (plus ``timeout=``; a group's methods may forward ``*args, **kwargs``).
Compared generically, on instances, so that a method or group added to ``FuulClient``
fails here until the sync client has it too."""

from __future__ import annotations

import inspect
from typing import Any

import pytest

from aiofuul import FuulClient, FuulError, FuulTimeoutError, SyncFuulClient
from conftest import API_KEY

#: Public names of FuulClient that the sync client does not need, and why.
ASYNC_ONLY = {
    "aclose": "the sync client has close()",
    "atrack": "waiting for room is an await; the sync track() is already thread-safe",
    "start": "the sync client starts on first use",
    "track_threadsafe": "the sync track() is thread-safe",
    "base_url": "resolved by the async client inside the sync one",
}


def public(obj: object) -> set[str]:
    return {name for name in dir(obj) if not name.startswith("_")}


def is_group(value: object) -> bool:
    """An endpoint group: an object of aiofuul's own with public methods."""
    if inspect.ismethod(value) or inspect.isfunction(value):
        return False
    own = type(value).__module__.startswith("aiofuul")
    return own and any(callable(getattr(value, n)) for n in public(value))


def check_method(name: str, async_method: Any, sync_method: Any) -> None:
    assert callable(sync_method), f"SyncFuulClient.{name} is not callable"
    wanted = set(inspect.signature(async_method).parameters)
    params = inspect.signature(sync_method).parameters
    kinds = {p.kind for p in params.values()}
    if {inspect.Parameter.VAR_POSITIONAL, inspect.Parameter.VAR_KEYWORD} <= kinds:
        # A forwarder (the endpoint groups' SyncGroup): it passes every argument on to
        # the async method of the same name; it must still take a timeout.
        assert "timeout" in params, f"SyncFuulClient.{name} takes no timeout"
        return
    missing = wanted - set(params)
    assert not missing, f"SyncFuulClient.{name} lacks parameters {sorted(missing)}"


@pytest.fixture
def pair() -> Any:
    fuul = FuulClient(API_KEY)
    sync = SyncFuulClient(API_KEY)
    yield fuul, sync
    sync.close()


def test_every_public_name_of_the_async_client_exists_on_the_sync_one(pair: Any) -> None:
    fuul, sync = pair
    missing = public(fuul) - public(sync) - set(ASYNC_ONLY)
    assert not missing, f"SyncFuulClient lacks {sorted(missing)}"


def test_methods_and_groups_take_the_same_parameters(pair: Any) -> None:
    fuul, sync = pair
    for name in sorted(public(fuul) - set(ASYNC_ONLY)):
        value = getattr(fuul, name)
        if inspect.ismethod(value):
            check_method(name, value, getattr(sync, name))
        elif is_group(value):
            group = getattr(sync, name)
            for member in sorted(public(value)):
                async_member = getattr(value, member)
                if callable(async_member):
                    sync_member = getattr(group, member, None)
                    assert sync_member is not None, f"SyncFuulClient.{name}.{member} is missing"
                    check_method(f"{name}.{member}", async_member, sync_member)


def test_sync_blocking_calls_take_a_timeout(pair: Any) -> None:
    _, sync = pair
    for name in ("send_event", "send_batch", "event_status", "event_pipeline", "conversions"):
        assert "timeout" in inspect.signature(getattr(sync, name)).parameters, name


def test_the_exempt_list_names_only_what_exists() -> None:
    # A stale exemption would hide a real gap later.
    fuul = FuulClient(API_KEY)
    assert set(ASYNC_ONLY) <= public(fuul)


def test_timeouts_are_fuul_errors_and_timeout_errors() -> None:
    assert issubclass(FuulTimeoutError, FuulError)
    assert issubclass(FuulTimeoutError, TimeoutError)
