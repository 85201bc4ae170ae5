"""Transport safety: TLS verification on by default, plain http refused off loopback
unless explicitly allowed, redirects not followed, and response bodies read with a
size cap (announced, chunked, compressed, or on an error status)."""

from __future__ import annotations

import ssl
import tracemalloc
from pathlib import Path

import aiohttp
import pytest
from chaos_support import Ledger, RawServer, self_signed_certificate

from aiofuul import APIError, ClientConfig, FuulClient, RetryPolicy, TransportError
from conftest import API_KEY, EVM

#: The chaos tier: minutes of faults in all; `nox -s quick` leaves it out.
pytestmark = pytest.mark.slow

ONCE = RetryPolicy(max_attempts=2, initial_backoff=0.01, max_backoff=0.02)


@pytest.fixture
def certificate(tmp_path: Path) -> tuple[str, str]:
    made = self_signed_certificate(str(tmp_path))
    if made is None:
        pytest.skip("cannot make a certificate: neither cryptography nor openssl is available")
    return made


def _server_context(certificate: tuple[str, str]) -> ssl.SSLContext:
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    context.load_cert_chain(*certificate)
    return context


async def test_tls_verification_is_on_by_default(certificate: tuple[str, str]) -> None:
    async with RawServer(ssl_context=_server_context(certificate)) as server:
        ledger = Ledger()
        async with FuulClient(
            API_KEY,
            base_url=server.url,
            config=ClientConfig(retry=ONCE, timeout=5.0),
            on_error=ledger.on_error,
        ) as fuul:
            # The session the client built verifies certificates (aiohttp's ssl=True).
            connector = fuul._transport._get_session().connector
            assert connector is not None
            verify = connector._ssl  # type: ignore[attr-defined]
            assert verify is True or (
                isinstance(verify, ssl.SSLContext)
                and verify.verify_mode == ssl.CERT_REQUIRED
                and verify.check_hostname
            ), verify

            with pytest.raises(TransportError, match=r"(?i)certificate"):
                await fuul.send_event("trade", EVM)
            fuul.track("trade", EVM)
            assert await fuul.flush(timeout=5)
            assert [e.reason for e in ledger.errors] == ["retries_exhausted"]
            assert isinstance(ledger.errors[0].cause, TransportError)
        assert server.hits == 0  # the handshake failed: no request was ever read

        # Control: the same server, trusted explicitly, works; so the failure above was
        # the verification, not the server.
        trusting = ssl.create_default_context(cafile=certificate[0])
        async with (
            aiohttp.ClientSession(connector=aiohttp.TCPConnector(ssl=trusting)) as session,
            FuulClient(
                API_KEY, base_url=server.url, config=ClientConfig(retry=ONCE), session=session
            ) as fuul,
        ):
            assert (await fuul.send_event("trade", EVM, dedup_id="tls-1")).dedup_id == "tls-1"
        assert server.hits == 1


@pytest.mark.parametrize(
    "url",
    [
        "http://api.fuul.xyz/api/v1/",
        "http://10.0.0.1/api/v1/",
        "http://0.0.0.0:8080/api/v1/",
        "http://localhost.evil.example/api/v1/",
        "http://127.0.0.1.nip.io/api/v1/",
        "http://evil.example#@127.0.0.1/",
        "HTTP://api.fuul.xyz/api/v1/",
    ],
)
def test_plain_http_off_loopback_is_refused_unless_allowed(
    url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    with pytest.raises(ValueError, match="plain-http"):
        FuulClient(API_KEY, base_url=url)
    monkeypatch.setenv("FUUL_BASE_URL", url)
    with pytest.raises(ValueError, match="plain-http"):
        FuulClient(API_KEY)
    allowed = FuulClient(API_KEY, base_url=url, config=ClientConfig(allow_insecure_http=True))
    assert allowed.base_url.lower().startswith("http://")


@pytest.mark.parametrize(
    "url",
    [
        "http://127.0.0.1:8080/api/v1/",
        "http://127.0.0.2/api/v1/",
        "http://localhost:8080/api/v1",
        "http://[::1]:8080/api/v1/",
        "https://api.fuul.xyz/api/v1/",
    ],
)
def test_https_and_loopback_http_are_accepted(url: str) -> None:
    assert FuulClient(API_KEY, base_url=url).base_url.endswith("/")


@pytest.mark.parametrize(
    "url", ["ftp://api.fuul.xyz/", "ws://127.0.0.1/", "api.fuul.xyz/api/v1/", "https:///v1/"]
)
def test_base_url_that_is_not_http_is_refused(url: str) -> None:
    with pytest.raises(ValueError, match="base_url"):
        FuulClient(API_KEY, base_url=url, config=ClientConfig(allow_insecure_http=True))


@pytest.mark.parametrize(
    "url",
    [
        "http://user:pw@127.0.0.1:8080/api/v1/",
        "https://user@api.example/api/v1/",
        "http://127.0.0.1@evil.example/api/v1/",
    ],
)
def test_base_url_with_credentials_is_refused_up_front(url: str) -> None:
    # aiohttp would refuse to send them beside the Authorization header on every request.
    for allow in (False, True):
        with pytest.raises(ValueError, match="credentials"):
            FuulClient(API_KEY, base_url=url, config=ClientConfig(allow_insecure_http=allow))


async def test_redirects_are_not_followed() -> None:
    """A 307 to another host would carry the Authorization header there: never follow."""
    async with RawServer() as elsewhere, RawServer("redirect", redirect_to=elsewhere.url) as server:
        ledger = Ledger()
        async with FuulClient(
            API_KEY, base_url=server.url, config=ClientConfig(retry=ONCE), on_error=ledger.on_error
        ) as fuul:
            with pytest.raises(APIError, match="307"):
                await fuul.send_event("trade", EVM)
            fuul.track("trade", EVM)
            assert await fuul.flush(timeout=5)
            assert [e.reason for e in ledger.errors] == ["rejected"]
        assert server.hits == 2 and elsewhere.hits == 0


@pytest.mark.parametrize(
    "mode", ["big-with-length", "big-chunked", "big-error-chunked", "gzip-bomb"]
)
async def test_response_bodies_are_read_with_a_size_cap(mode: str) -> None:
    """5 MB (or 64 MB inflated) against the default cap of 1 MiB: a TransportError,
    without holding the body in memory."""
    async with RawServer(mode) as server:
        ledger = Ledger()
        async with FuulClient(
            API_KEY,
            base_url=server.url,
            config=ClientConfig(retry=ONCE, timeout=10.0),
            on_error=ledger.on_error,
        ) as fuul:
            assert fuul.config.max_response_bytes == 1 << 20
            tracemalloc.start()
            try:
                with pytest.raises(TransportError, match="max_response_bytes"):
                    await fuul.send_event("trade", EVM)
                peak = tracemalloc.get_traced_memory()[1]
            finally:
                tracemalloc.stop()
            assert peak < 16 << 20, f"peak {peak / 1e6:.0f} MB while refusing the body"
            fuul.track("trade", EVM)
            assert await fuul.flush(timeout=10)
            assert [e.reason for e in ledger.errors] == ["retries_exhausted"]
            assert "max_response_bytes" in str(ledger.errors[0].cause)
