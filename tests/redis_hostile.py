"""redis-servers as a careless operator leaves them, for the tests of a misconfigured,
full or restarted Redis: a password, ACL users, maxmemory reached, TLS, no persistence."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable
from pathlib import Path

import redis

from conftest import RedisServer

#: The server's password: no message, log line or repr may ever show it.
PASSWORD = "pw-s3cret-never-shown"
#: ACL users (password "pw"), each missing something the scripts need.
USERS = {
    "noscript": ["~*", "+@all", "-@scripting"],
    "nostream": ["~*", "+@all", "-@stream"],
    "otherkeys": ["~other:*", "+@all"],
    "ours": ["~aiofuul:*", "+@all"],  # only our keys: enough
    "revocable": ["~*", "+@all"],
}


def hostile_server(directory: Path, *extra: str) -> RedisServer:
    """A redis-server without persistence, with ``extra`` arguments."""
    server = RedisServer(directory)
    server.stop()
    server.cmd += list(extra)
    server.start()
    return server


def acl_server(directory: Path) -> RedisServer:
    """A redis-server with ``requirepass`` and the :data:`USERS`."""
    server = hostile_server(directory, "--requirepass", PASSWORD)
    with admin(server) as client:
        for user, rules in USERS.items():
            client.execute_command("ACL", "SETUSER", user, "on", ">pw", *rules)
    return server


def admin(server: RedisServer) -> redis.Redis:
    """A blocking client with every right (the server's password, if it has one)."""
    password = PASSWORD if PASSWORD in server.cmd else None
    return redis.Redis(port=server.port, password=password)


def url_of(server: RedisServer, user: str = "", password: str = PASSWORD) -> str:
    return f"redis://{user}:{password}@127.0.0.1:{server.port}/0"


def fill(server: RedisServer) -> None:
    """Make it full: some data, then ``maxmemory`` below what it uses (noeviction)."""
    with admin(server) as client:
        client.config_set("maxmemory-policy", "noeviction")
        for i in range(50):
            client.set(f"fill:{i}", b"x" * 20_000)
        used = int(client.info("memory")["used_memory"])
        client.config_set("maxmemory", used - 500_000)
        try:
            client.set("fill:probe", b"x")
        except redis.exceptions.OutOfMemoryError:
            return
        raise AssertionError("the server did not refuse a write: not full")


def make_room(server: RedisServer) -> None:
    with admin(server) as client:
        client.config_set("maxmemory", 0)


async def until(check: Callable[[], object], timeout: float = 15.0) -> None:
    """Wait for ``check()`` to hold; the deadline only fails a real hang."""
    deadline = time.monotonic() + timeout
    while not check():
        assert time.monotonic() < deadline, "timed out"
        await asyncio.sleep(0.02)
