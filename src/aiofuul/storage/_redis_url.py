"""The Redis URLs of ``limiter=`` and ``outbox=``, checked when the client is made.

redis-py passes a query option it does not know to the connection as a keyword, where
it fails (a ``TypeError``) at the first command, long after the client started, and a
known one it takes as a string (``?ssl_check_hostname=false`` is true). So the URL is
parsed here, once: every option is one of :data:`OPTIONS`, with its value checked and
converted, and anything else is refused with the list of the valid ones.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, NamedTuple
from urllib.parse import parse_qsl, urlsplit, urlunsplit

from ..errors import ConfigurationError

__all__ = ["OPTIONS", "RedisUrl", "parse_redis_url", "redact"]

_SCHEMES = ("redis", "rediss", "unix")
ADOPT_AFTER = 30.0


def _non_negative_int(value: str) -> int:
    number = int(value)
    if number < 0:
        raise ValueError
    return number


def _positive(value: str) -> float:
    number = float(value)
    if not number > 0 or number == float("inf"):
        raise ValueError
    return number


def _bool(value: str) -> bool:
    lowered = value.lower()
    if lowered in ("true", "yes", "1"):
        return True
    if lowered in ("false", "no", "0"):
        return False
    raise ValueError


def _cert_reqs(value: str) -> str:
    if value not in ("none", "optional", "required"):
        raise ValueError
    return value


def _text(value: str) -> str:
    if not value:
        raise ValueError
    return value


#: Every option a Redis URL may carry: what it takes, and its parser.
OPTIONS: dict[str, tuple[str, Callable[[str], Any]]] = {
    "db": ("an integer >= 0 (or the path: redis://host:6379/0)", _non_negative_int),
    "adopt_after": (
        "seconds > 0 before a silent worker's events are adopted (the outbox's; the "
        "limiter ignores it, so one URL serves both)",
        _positive,
    ),
    "client_name": ("a name for CLIENT LIST", _text),
    "ssl_cert_reqs": ("none, optional or required (rediss:// only)", _cert_reqs),
    "ssl_ca_certs": ("a CA bundle file (rediss:// only)", _text),
    "ssl_certfile": ("a client certificate file (rediss:// only)", _text),
    "ssl_keyfile": ("its key file (rediss:// only)", _text),
    "ssl_check_hostname": ("true or false (rediss:// only)", _bool),
}
_OURS = ("adopt_after",)  # read here, never passed to redis-py


class RedisUrl(NamedTuple):
    """A checked Redis URL: what to give redis-py, and our own option."""

    url: str
    """Without its query: redis-py takes the options as ``kwargs``."""
    kwargs: dict[str, Any]
    adopt_after: float
    shown: str
    """The URL with its password replaced by ``***``: for messages."""


def redact(url: str) -> str:
    """``url`` without its password (for a message, a log line, a repr)."""
    try:
        parts = urlsplit(url)
        if parts.password is None:
            return url
        host = parts.netloc.rpartition("@")[2]
        user = parts.username or ""
        return urlunsplit(parts._replace(netloc=f"{user}:***@{host}"))
    except ValueError:
        return "<a Redis URL that cannot be parsed>"


def _valid() -> str:
    return "; ".join(f"{name}: {what}" for name, (what, _) in OPTIONS.items())


def parse_redis_url(url: str, field: str) -> RedisUrl:
    """Check ``url`` (given as ``field``: ``limiter`` or ``outbox``); raise
    :class:`~aiofuul.errors.ConfigurationError` naming the field and the rule.

    Example::

        parse_redis_url("redis://redis:6379/0?adopt_after=10", "outbox").adopt_after  # 10.0
    """
    if not isinstance(url, str):
        raise ConfigurationError(f"{field}: a Redis URL must be a str, not {type(url).__name__}")
    shown = redact(url)
    try:
        parts = urlsplit(url)
        parts.port  # noqa: B018 - raises ValueError for a port that is no number
    except ValueError as exc:
        raise ConfigurationError(f"{field}: {shown} is not a valid URL ({exc})") from None
    if parts.scheme not in _SCHEMES:
        raise ConfigurationError(
            f"{field}: {shown} must start with redis://, rediss:// (TLS) or unix://"
        )
    if parts.scheme != "unix" and not parts.hostname:
        raise ConfigurationError(f"{field}: {shown} names no host (redis://host:6379/0)")
    kwargs: dict[str, Any] = {}
    adopt_after = ADOPT_AFTER
    seen: set[str] = set()
    for name, value in parse_qsl(parts.query, keep_blank_values=True):
        if name not in OPTIONS:
            raise ConfigurationError(
                f"{field}: unknown option {name!r} in the Redis URL {shown}; valid "
                f"options are {_valid()}"
            )
        if name in seen:
            raise ConfigurationError(f"{field}: option {name!r} given twice in {shown}")
        seen.add(name)
        what, parse = OPTIONS[name]
        if name.startswith("ssl_") and parts.scheme != "rediss":
            raise ConfigurationError(f"{field}: option {name!r} needs a rediss:// URL (TLS)")
        try:
            parsed = parse(value)
        except ValueError:
            raise ConfigurationError(
                f"{field}: option {name!r} must be {what}, not {value!r}"
            ) from None
        if name == "adopt_after":
            adopt_after = parsed
        elif name not in _OURS:
            kwargs[name] = parsed
    if parts.scheme != "unix" and parts.path not in ("", "/"):
        if "db" in kwargs:
            raise ConfigurationError(f"{field}: {shown} gives the database twice (path and ?db=)")
        try:
            kwargs["db"] = _non_negative_int(parts.path.strip("/"))
        except ValueError:
            raise ConfigurationError(
                f"{field}: the path of {shown} must be a database number (redis://host:6379/0)"
            ) from None
    # The database goes in kwargs: redis-py would let the path override them.
    path = parts.path if parts.scheme == "unix" else ""
    bare = urlunsplit(parts._replace(path=path, query="", fragment=""))
    return RedisUrl(bare, kwargs, adopt_after, shown)
