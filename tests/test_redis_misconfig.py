"""A misconfigured Redis is refused early: an unknown URL option when the client is
made, a wrong password, an ACL without what the scripts need or a TLS mismatch when it
starts (``async with``, ``start()``, the sync client's first use), naming the problem
and never the password. Leaving ``async with`` never raises for Redis."""

from __future__ import annotations

import asyncio
import logging
import shutil
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest

from aiofuul import ClientStateError, FuulClient, FuulError
from aiofuul.errors import ConfigurationError
from aiofuul.sandbox import Sandbox
from aiofuul.storage.redis_errors import RedisRefusedError
from aiofuul.sync import SyncFuulClient
from conftest import EVM, RedisServer, fast_config
from redis_hostile import PASSWORD, acl_server, admin, hostile_server, until, url_of

KEY = "sk_test_misconfig_01"


@pytest.mark.parametrize("field", ["limiter", "outbox"])
@pytest.mark.parametrize("option", ["bogus=1", "adopt-after=10", "socket_timeout=100"])
def test_an_unknown_url_option_is_refused_when_the_client_is_made(field: str, option: str) -> None:
    url = f"redis://user:{PASSWORD}@127.0.0.1:1/0?{option}"
    with pytest.raises(ConfigurationError) as caught:
        FuulClient(KEY, **{field: url})  # type: ignore[arg-type]
    error = caught.value
    assert isinstance(error, FuulError) and isinstance(error, ValueError)
    text = str(error)
    assert text.startswith(f"{field}: unknown option {option.split('=')[0]!r}")
    for valid in ("db", "adopt_after", "ssl_ca_certs", "client_name"):
        assert valid in text
    assert PASSWORD not in text and "***" in text


@pytest.mark.parametrize(
    ("url", "said"),
    [
        ("redis://127.0.0.1:6379/0?adopt_after=0", "'adopt_after' must be seconds > 0"),
        ("redis://127.0.0.1:6379/0?adopt_after=soon", "'adopt_after' must be seconds > 0"),
        ("redis://127.0.0.1:6379/0?db=-1", "'db' must be an integer >= 0"),
        ("redis://127.0.0.1:6379/x", "must be a database number"),
        ("redis://127.0.0.1:6379/1?db=2", "gives the database twice"),
        ("redis://127.0.0.1:6379/0?db=1&db=2", "given twice"),
        ("redis://127.0.0.1:6379/0?ssl_ca_certs=/ca.pem", "needs a rediss:// URL"),
        ("rediss://127.0.0.1:6379/0?ssl_check_hostname=maybe", "must be true or false"),
        ("redis://127.0.0.1:99999/0", "not a valid URL"),
        ("redis:///0", "names no host"),
    ],
)
def test_a_bad_url_value_is_refused_when_the_client_is_made(url: str, said: str) -> None:
    with pytest.raises(ConfigurationError, match="limiter: ") as caught:
        FuulClient(KEY, limiter=url)
    assert said in str(caught.value)


def test_the_options_we_support_are_taken() -> None:
    url = "rediss://127.0.0.1:1/3?adopt_after=2.5&client_name=w1&ssl_check_hostname=false"
    fuul = FuulClient(KEY, limiter=url, outbox=url)
    assert fuul._remote is not None and fuul._remote.url.kwargs == {
        "db": 3, "client_name": "w1", "ssl_check_hostname": False,
    }  # fmt: skip
    asyncio.run(fuul.aclose())


# -- a real redis-server with a password and ACL users ---------------------------------
@pytest.fixture(scope="module")
def acl_redis(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RedisServer]:
    server = acl_server(tmp_path_factory.mktemp("acl"))
    yield server
    server.stop()


REFUSED = [
    ("limiter", "", "wrong-password", "invalid username-password"),
    ("limiter", "nobody", "pw", "invalid username-password"),
    ("limiter", "noscript", "pw", "evalsha"),
    ("limiter", "otherkeys", "pw", "NoPermissionError"),
    ("outbox", "", "wrong-password", "invalid username-password"),
    ("outbox", "noscript", "pw", "evalsha"),
    ("outbox", "nostream", "pw", "can't run this command"),
    ("outbox", "otherkeys", "pw", "NoPermissionError"),
]


@pytest.mark.parametrize(("field", "user", "password", "said"), REFUSED)
async def test_what_redis_refuses_is_raised_at_start_and_never_shows_the_password(
    acl_redis: RedisServer,
    sandbox: Sandbox,
    caplog: pytest.LogCaptureFixture,
    field: str,
    user: str,
    password: str,
    said: str,
) -> None:
    url = url_of(acl_redis, user, password)
    fuul = FuulClient(KEY, base_url=sandbox.url, config=fast_config(), **{field: url})  # type: ignore[arg-type]
    with pytest.raises(RedisRefusedError) as caught:
        async with fuul:
            pytest.fail("started with a Redis that refuses us")
    error = caught.value
    assert isinstance(error, FuulError) and isinstance(error, ConfigurationError)
    text = str(error)
    assert text.startswith(f"{field}=redis://{user}:***@127.0.0.1:{acl_redis.port}/0: ")
    assert said.lower() in text.lower()
    assert password not in text and password not in caplog.text
    # The client is closed: a later use says so, and closing again is harmless.
    with pytest.raises(ClientStateError):
        fuul.track("trade", EVM)
    await fuul.aclose()


async def test_redis_without_a_password_given_is_refused_too(
    acl_redis: RedisServer, sandbox: Sandbox
) -> None:
    url = f"redis://127.0.0.1:{acl_redis.port}/0"
    with pytest.raises(RedisRefusedError, match=r"(?i)auth"):
        async with FuulClient(KEY, base_url=sandbox.url, outbox=url, limiter=url):
            pass


async def test_a_user_allowed_only_our_keys_works(acl_redis: RedisServer, sandbox: Sandbox) -> None:
    url = url_of(acl_redis, "ours", "pw")
    config = fast_config()
    async with FuulClient(
        KEY, base_url=sandbox.url, config=config, limiter=url, outbox=url
    ) as fuul:
        ids = [fuul.track("trade", EVM, args={"i": i}) for i in range(10)]
        assert await fuul.flush(timeout=10)
        assert not fuul.stats().outbox_down and not fuul.stats().shared_limiter_down
    assert all(sandbox.stored_count(i) == 1 for i in ids)
    with admin(acl_redis) as client:  # the start checks leave nothing for good
        assert all(client.pttl(key) > 0 for key in client.scan_iter(match="*probe*"))


def test_the_sync_client_raises_on_first_use(acl_redis: RedisServer, sandbox: Sandbox) -> None:
    fuul = SyncFuulClient(KEY, base_url=sandbox.url, outbox=url_of(acl_redis, "noscript", "pw"))
    try:
        with pytest.raises(RedisRefusedError, match="evalsha"):
            fuul.track("trade", EVM)
    finally:
        fuul.close()


async def test_leaving_async_with_never_raises_when_redis_refuses_us_later(
    acl_redis: RedisServer, sandbox: Sandbox, caplog: pytest.LogCaptureFixture
) -> None:
    """Rights taken away after a good start: a degraded mode (local limits, events in
    memory), one error line each, every event delivered, and a quiet exit."""
    url = url_of(acl_redis, "revocable", "pw")
    config = fast_config()
    with caplog.at_level(logging.WARNING, logger="aiofuul"):
        async with FuulClient(
            KEY, base_url=sandbox.url, config=config, limiter=url, outbox=url
        ) as fuul:
            assert await fuul.flush(timeout=5)
            await asyncio.to_thread(_revoke, acl_redis)
            sandbox.faults.error_rate = 1.0  # kept queued until the outbox tried them
            ids = [fuul.track("trade", EVM, args={"i": i}) for i in range(10)]
            await until(lambda: fuul.stats().outbox_down)
            sandbox.faults.error_rate = 0.0
            assert await fuul.flush(timeout=20)
            assert fuul.stats().shared_limiter_down and fuul.stats().outbox_down
    await asyncio.to_thread(_restore, acl_redis)
    assert all(sandbox.stored_count(i) == 1 for i in ids)
    errors = [r.getMessage() for r in caplog.records if r.levelno >= logging.ERROR]
    limiter = [m for m in errors if m.startswith("shared limiter")]
    outbox = [m for m in errors if m.startswith("shared outbox")]
    assert len(limiter) == 1 and "refuses us" in limiter[0], errors
    assert len(outbox) == 1 and "refused by Redis" in outbox[0], errors


def _revoke(server: RedisServer) -> None:
    with admin(server) as client:
        client.execute_command("ACL", "SETUSER", "revocable", "-@scripting", "-@stream")


def _restore(server: RedisServer) -> None:
    with admin(server) as client:
        client.execute_command("ACL", "SETUSER", "revocable", "+@all")


# -- TLS ---------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def tls_redis(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RedisServer]:
    if shutil.which("openssl") is None:
        pytest.skip("openssl is not installed")
    directory: Path = tmp_path_factory.mktemp("tls")
    cert, key = directory / "cert.pem", directory / "key.pem"
    subprocess.run(
        ["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "1",
         "-subj", "/CN=localhost", "-keyout", str(key), "-out", str(cert)],
        check=True, capture_output=True,
    )  # fmt: skip
    # The TLS port in place of the plain one (a later --port wins).
    server = RedisServer(directory)
    server.stop()
    server.cmd += ["--port", "0", "--tls-port", str(server.port), "--tls-cert-file", str(cert),
                   "--tls-key-file", str(key), "--tls-auth-clients", "no"]  # fmt: skip
    server.start()
    yield server
    server.stop()


@pytest.mark.parametrize(
    ("scheme", "said"),
    [("redis", "does the server expect TLS"), ("rediss", "CERTIFICATE_VERIFY_FAILED")],
)
async def test_a_tls_mismatch_is_refused_at_start(
    tls_redis: RedisServer, sandbox: Sandbox, scheme: str, said: str
) -> None:
    url = f"{scheme}://127.0.0.1:{tls_redis.port}/0"
    with pytest.raises(RedisRefusedError, match=said):
        async with FuulClient(KEY, base_url=sandbox.url, limiter=url):
            pass


async def test_redis_down_at_start_is_a_degraded_start_not_an_error(
    tmp_path: Path, sandbox: Sandbox
) -> None:
    server = hostile_server(tmp_path)
    server.stop()  # nothing listens on its port now
    url = server.url
    async with FuulClient(
        KEY, base_url=sandbox.url, config=fast_config(), limiter=url, outbox=url
    ) as fuul:
        ids = [fuul.track("trade", EVM, args={"i": i}) for i in range(5)]
        assert await fuul.flush(timeout=10)
        assert fuul.stats().shared_limiter_down and fuul.stats().outbox_down
    assert all(sandbox.stored_count(i) == 1 for i in ids)
